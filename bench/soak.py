"""Soak: every feature on at ``--rate`` for ``--minutes``; freshness must not drift.

The same pipeline as ``bench/end_to_end.py`` (`common.run_every_feature`). The live path
never counts or scans ``sales`` (the hot collection has only ``_id``; the extract is fed by
its own runtime). Printed per minute of ingestion: event → MongoDB and event → extract p95;
the verdict compares the last minute with the first (target: both ≤ 1 s to MongoDB).

    .venv/bin/python bench/soak.py [--rate 1000] [--minutes 10]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from common import percentiles, run_every_feature

MONGO_P95_S = 1.0


def per_minute(samples: list[tuple[float, float]]) -> dict[int, list[float]]:
    """Freshness samples grouped by minute since the first one."""
    if not samples:
        return {}
    start = min(at for at, _ in samples)
    minutes: dict[int, list[float]] = defaultdict(list)
    for at, fresh in samples:
        minutes[int((at - start) // 60)].append(fresh)
    return dict(sorted(minutes.items()))


def full_minutes(samples: list[tuple[float, float]]) -> list[int]:
    """The minutes of `per_minute` that the samples span entirely (not a trailing part)."""
    if not samples:
        return []
    span = max(at for at, _ in samples) - min(at for at, _ in samples)
    return [minute for minute in per_minute(samples) if (minute + 1) * 60 <= span]


def main() -> int:
    """Run the soak and print the per-minute freshness and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    run = run_every_feature(args.rate, args.minutes * 60)
    mongo, extract = per_minute(run.mongo), per_minute(run.extract)
    print(f"== soak: {args.rate:.0f} sales/s for {args.minutes:.0f} min, every feature on ==")
    print(f"sent {run.sent.acked}, stored {len(run.mongo)}, rollups {run.rollup_sales}, "
          f"extract {len(run.extract)}, drained {run.drain_s:.1f} s after the end")  # fmt: skip
    for minute, values in mongo.items():
        text, _ = percentiles(values)
        hyper, _ = percentiles(extract.get(minute, []))
        print(f"minute {minute:>2}: MongoDB {text} | extract {hyper}")
    full = full_minutes(run.mongo)
    if not full:
        return 1
    first, last = mongo[full[0]], mongo[full[-1]]  # a trailing part-minute is not a minute
    p95_first, p95_last = percentiles(first)[1], percentiles(last)[1]
    ok = p95_first <= MONGO_P95_S and p95_last <= MONGO_P95_S and len(run.mongo) == run.sent.acked
    print(f"p95 event -> MongoDB: first minute {p95_first:.2f} s, last full minute "
          f"({full[-1]}) {p95_last:.2f} s "
          f"(target <= {MONGO_P95_S} s both): {'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
