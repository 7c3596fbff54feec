"""Run a stream runtime in the foreground: Ctrl-C stops gracefully, progress lines on a timer."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sales_stream.stream import StreamRuntime, StreamStats


def progress_line(stats: StreamStats) -> str:
    """One line of progress for the terminal."""
    line = (
        f"[{stats.name}] {stats.status}: consumed {stats.consumed}, stored {stats.stored}, "
        f"duplicates {stats.duplicates}, dead letters {stats.dead_lettered}, "
        f"batches {stats.batches}, lag {stats.total_lag}"
    )
    extra = [f"{name} {t.stored}" for name, t in list(stats.sinks.items())[1:]]
    return line + (f" ({', '.join(extra)})" if extra else "")


def run_foreground(
    runtime: StreamRuntime,
    *,
    until_idle: float | None,
    max_events: int | None,
    every_s: float,
    line: Callable[[StreamStats], str] = progress_line,
) -> StreamStats:
    """Run until idle, ``max_events``, SIGINT or SIGTERM; print progress every ``every_s``."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    done = threading.Event()

    def report() -> None:
        while not done.wait(every_s):
            print(line(runtime.stats), flush=True)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        stats = runtime.run(until_idle=until_idle, max_events=max_events, stop=stop)
    finally:
        done.set()
        reporter.join()
        runtime.close()
    print(line(stats), flush=True)
    if stats.last_error:
        print(f"last error: {stats.last_error}", flush=True)
    return stats
