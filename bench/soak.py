"""Soak: every feature on the durable embedded stack at ``--rate`` for ``--minutes``.

The same pipeline as ``bench/end_to_end.py`` (`common.run_every_feature`: the consumer and
its rollups, the lake on the object store, the Hyper extract), with `monitor.Monitor`
sampling it. Printed per minute of the run: p50/p95 sale → MongoDB (each sale's
``ingested_at``), → extract (the observer's sample), → lake and → rollups (counts turned
into freshness, see `monitor.count_freshness`), the broker's produce latency (a probe);
RSS and CPU per process; the dashboard's refresh on the final data. Written as text and as
a PNG of each series (``--png``).

Verdicts: every count equal; p95 → MongoDB <= 1 s and → extract <= 3 s in every full
minute; no series grows with the total (the last 10 minutes' median p95 within 1.5x of
minutes 5-15's); dashboard refresh <= 1 s.

    .venv/bin/python bench/soak.py [--rate 1000] [--minutes 60] [--png docs/bench/soak.png]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from common import FullRun, run_every_feature
from monitor import Samples, count_freshness

MONGO_P95_S = 1.0
EXTRACT_P95_S = 3.0
GROWTH = 1.5
DASHBOARD_S = 1.0


def per_minute(samples: Sequence[tuple[float, float]], start: float) -> dict[int, list[float]]:
    """Values grouped by minute since ``start``."""
    minutes: dict[int, list[float]] = defaultdict(list)
    for at, value in samples:
        if at >= start:
            minutes[int((at - start) // 60)].append(value)
    return dict(sorted(minutes.items()))


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile, ``None`` for fewer than 5 values."""
    if len(values) < 5:
        return None
    return statistics.quantiles(values, n=20)[18]


def growth(series: dict[int, float], full: int) -> float | None:
    """Median of the last 10 full minutes over the median of minutes 5-15."""
    early = [series[m] for m in range(5, 15) if m in series]
    late = [series[m] for m in range(max(0, full - 10), full) if m in series]
    if not early or not late or full < 25:
        return None
    return statistics.median(late) / statistics.median(early)


def main() -> int:
    """Run the soak, print the series and the verdicts, draw the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--png", type=Path, default=Path("docs/bench/soak.png"))
    args = parser.parse_args()
    run = run_every_feature(args.rate, args.minutes * 60, monitor=True)
    samples = run.samples
    if samples is None or run.dashboard_s is None:
        raise SystemExit("the run was not monitored")
    start = min(at for at, _ in run.mongo)
    full = int((max(at for at, _ in run.mongo) - start) // 60)  # minutes spanned entirely
    sorted_ts = sorted(at - fresh for at, fresh in run.mongo)
    series = {
        "MongoDB": per_minute(run.mongo, start),
        "extract": per_minute(run.extract, start),
        "lake": per_minute(count_freshness(samples.lake, sorted_ts), start),
        "rollups": per_minute(count_freshness(samples.rollups, sorted_ts), start),
        "produce": per_minute(samples.produce, start),
    }
    print(f"== soak: {args.rate:.0f} sales/s for {args.minutes:.0f} min, every feature on ==")
    print("durable embedded stack: Tansu on SeaweedFS, SecantusDB, the lake on s3://lake/")
    print(f"sent {run.sent.acked}, stored {len(run.mongo)}, rollups {run.rollup_sales}, "
          f"extract {run.extract_rows}, lake {run.lake_rows}, "
          f"drained {run.drain_s:.1f} s after the end")  # fmt: skip
    print("per minute, p50/p95 in s (sale -> store; produce: the probe's acks=all round trip)")
    p95s: dict[str, dict[int, float]] = {name: {} for name in series}
    for minute in range(full):
        cells = []
        for name, minutes in series.items():
            values = minutes.get(minute, [])
            q = p95(values)
            if q is not None:
                p95s[name][minute] = q
                cells.append(f"{name} {statistics.median(values):.2f}/{q:.2f}")
            else:
                cells.append(f"{name} n/a")
        print(f"minute {minute:>2}: " + " | ".join(cells))
    print_processes(samples, start)
    dash = max(run.dashboard_s)
    print(f"dashboard refresh on the final data: max {dash:.2f} s over {len(run.dashboard_s)}")
    return verdicts(run, p95s, full, dash, args, samples, start)


def print_processes(samples: Samples, start: float) -> None:
    """RSS and CPU per process kind: at minute 5, at the end, the max; mean CPU."""
    print("processes: RSS MB at minute 5 / at the end / max; CPU % of one core, mean")
    for kind, points in sorted(samples.processes.items()):
        at5 = min(points, key=lambda p: abs(p[0] - start - 300))
        rss_max = max(p[1] for p in points)
        cpu = statistics.mean(p[2] for p in points)
        print(f"  {kind:<32} {at5[1] / 1e6:>6.0f} / {points[-1][1] / 1e6:>6.0f} / "
              f"{rss_max / 1e6:>6.0f} MB   CPU {cpu:>5.1f} %")  # fmt: skip


def verdicts(
    run: FullRun,
    p95s: dict[str, dict[int, float]],
    full: int,
    dash: float,
    args: argparse.Namespace,
    samples: Samples,
    start: float,
) -> int:
    """Print each verdict; 0 when all are met."""
    counts = {run.sent.acked, len(run.mongo), run.rollup_sales, run.extract_rows, run.lake_rows}
    checks = [("sent = stored = rollups = extract = lake", len(counts) == 1)]
    mongo, extract = p95s["MongoDB"], p95s["extract"]
    worst_m = max(mongo.values(), default=float("inf"))
    worst_x = max(extract.values(), default=float("inf"))
    mongo_ok = worst_m <= MONGO_P95_S and len(mongo) == full
    extract_ok = worst_x <= EXTRACT_P95_S and len(extract) == full
    checks += [
        (f"p95 -> MongoDB <= {MONGO_P95_S} s every minute (worst {worst_m:.2f} s)", mongo_ok),
        (f"p95 -> extract <= {EXTRACT_P95_S} s every minute (worst {worst_x:.2f} s)", extract_ok),
    ]
    for name, values in p95s.items():
        ratio = growth(values, full)
        text = "n/a (under 25 minutes)" if ratio is None else f"{ratio:.2f}x"
        flat = ratio is not None and ratio <= GROWTH
        checks.append((f"{name} p95, last 10 min / minutes 5-15: {text} (<= {GROWTH}x)", flat))
    checks.append((f"dashboard refresh {dash:.2f} s (<= {DASHBOARD_S} s)", dash <= DASHBOARD_S))
    first_mongo, last_mongo = mongo.get(0, float("inf")), mongo.get(full - 1, float("inf"))
    print(f"p95 event -> MongoDB: first minute {first_mongo:.2f} s, last full minute "
          f"({full - 1}) {last_mongo:.2f} s (target <= {MONGO_P95_S} s both): "
          f"{'met' if worst_m <= MONGO_P95_S else 'NOT met'}")  # fmt: skip
    for text, ok in checks:
        print(f"{'met' if ok else 'NOT met':>7}: {text}")
    draw(args.png, p95s, samples, start, f"{args.rate:.0f} ventes/s, {args.minutes:.0f} min")
    return 0 if all(ok for _, ok in checks) else 1


def draw(
    png: Path, p95s: dict[str, dict[int, float]], samples: Samples, start: float, title: str
) -> None:
    """Three panels over the run: p95 freshness per store, RSS and CPU per process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, rss, cpu) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for name, values in p95s.items():
        minutes = sorted(values)
        lat.plot(minutes, [values[m] for m in minutes], marker=".", label=name)
    lat.set_ylabel("p95 (s)")
    lat.set_title(f"Soak : {title} — p95 par minute (vente → stockage ; produce : sonde)")
    lat.legend(fontsize=8)
    for kind, points in sorted(samples.processes.items()):
        minutes = [(at - start) / 60 for at, _, _ in points]
        rss.plot(minutes, [p[1] / 1e6 for p in points], label=kind)
        cpu.plot(minutes, [p[2] for p in points], label=kind)
    rss.set_ylabel("RSS (Mo)")
    rss.legend(fontsize=7)
    cpu.set_ylabel("CPU (% d'un cœur)")
    cpu.set_xlabel("minute")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    print(f"plot: {png}")


if __name__ == "__main__":
    raise SystemExit(main())
