"""How long ``python -m sales_stream`` takes to answer ``--help``, ``status`` and ``down``.

Each command runs 5 times in a fresh interpreter (wall clock, no services running, a
throw-away state directory); the median is printed beside the median of ``python -c pass``
measured in the same run, the floor any Python CLI pays. Target: ≤ 1 s per command. Usage::

    .venv/bin/python bench/cli_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 5
COMMANDS = (["--help"], ["status"], ["down"])


def median_seconds(argv: list[str], env: dict[str, str]) -> float:
    """Median wall-clock time of ``RUNS`` runs of ``argv``."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "SALES_STREAM_STATE_DIR": os.path.join(home, "state")}
        baseline = median_seconds([sys.executable, "-c", "pass"], env)
        print(f"median of {RUNS} runs, {os.cpu_count()} cores")
        print(f"{'python -c pass':<36} {baseline:6.3f} s  (baseline)")
        for command in COMMANDS:
            argv = [sys.executable, "-m", "sales_stream", *command]
            took = median_seconds(argv, env)
            verdict = "ok" if took <= 1.0 else "OVER 1 s"
            label = "python -m sales_stream " + " ".join(command)
            print(f"{label:<36} {took:6.3f} s  {took / baseline:5.1f}x baseline  {verdict}")


if __name__ == "__main__":
    main()
