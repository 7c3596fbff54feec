"""End-to-end freshness with every feature on: sale ``ts`` → MongoDB → Hyper extract.

The pipeline runs as ``make run`` builds it (`sales_stream.app.Stack`: the consumer with
its rollups, the Parquet lake and the Hyper extract runtimes) on its own embedded services,
fed by the producer at ``--rate`` for ``--seconds``. Freshness is read on the stores' side:

* event → MongoDB: each stored sale's ``ingested_at`` (the sink's clock when its batch was
  written) minus its ``ts``, read after the run from every document — no polling load on the
  database while it runs; a batch is visible at most one ``insert_many`` after its stamp;
* event → extract: an observer re-reads the extract's ids each time the file is published
  and records when each sale first appeared, minus its ``ts`` (in its own process: its
  growing re-reads are the instrument's cost, not the pipeline's).

    .venv/bin/python bench/end_to_end.py [--rate 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse

from common import percentiles, run_every_feature

MONGO_P95_S = 1.0
EXTRACT_P95_S = 3.0


def main() -> int:
    """Run the pipeline at the rate and print the freshness and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    run = run_every_feature(args.rate, args.seconds)
    mongo_text, mongo_p95 = percentiles([fresh for _, fresh in run.mongo])
    extract_text, extract_p95 = percentiles([fresh for _, fresh in run.extract])
    sent = run.sent
    print(f"== {args.rate:.0f} sales/s for {args.seconds:.0f} s, every feature on ==")
    print(f"sent                   : {sent.acked} sales, achieved {sent.average_rate:.0f}/s")
    print(f"stored                 : {len(run.mongo)} in MongoDB, {run.rollup_sales} in the "
          f"rollups, {len(run.extract)} in the extract")  # fmt: skip
    print(f"event -> MongoDB       : {mongo_text}")
    print(f"event -> Hyper extract : {extract_text}")
    print(f"backlog drained in     : {run.drain_s:.2f} s after the last send")
    ok = mongo_p95 <= MONGO_P95_S and extract_p95 <= EXTRACT_P95_S and len(run.mongo) == sent.acked
    print(f"targets p95 MongoDB <= {MONGO_P95_S} s, extract <= {EXTRACT_P95_S} s: "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
