"""End-to-end freshness with every feature on: sale ``ts`` → MongoDB → Hyper extract.

The pipeline runs as ``make run`` builds it (`sales_stream.app.Stack`: the consumer with
its rollups, the Parquet lake and the Hyper extract runtimes) on its own embedded services,
fed by the producer at ``--rate`` for ``--seconds``. Freshness is read on the stores' side:

* event → MongoDB: each stored sale's ``ingested_at`` (the sink's clock when its batch was
  written) minus its ``ts``, read after the run from every document — no polling load on the
  database while it runs; a batch is visible at most one ``insert_many`` after its stamp;
* event → extract: an observer re-reads the extract's ids each time the file is published
  and records when each sale first appeared, minus its ``ts``.

    .venv/bin/python bench/end_to_end.py [--rate 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path

import pantab

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.config import Settings
from sales_stream.producer import ProducerThread
from sales_stream.rollups import HOURLY, totals
from sales_stream.sinks.mongo import SALES
from sales_stream.sql.schema import setup_endpoint

MONGO_P95_S = 1.0
EXTRACT_P95_S = 3.0


class ExtractObserver(threading.Thread):
    """Reads the extract's ids whenever it is published; records when each sale appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.seen: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Poll the file's modification time until stopped."""
        published = 0.0
        while not self.stop_event.wait(0.1):
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                continue
            if mtime == published:
                continue
            published = mtime
            now = time.time()
            frame = pantab.frame_from_hyper_query(
                self.path, 'SELECT "event_id", "ts" FROM "Extract"."Extract"'
            )
            for event_id, ts in zip(frame["event_id"], frame["ts"], strict=True):
                if event_id not in self.seen:
                    self.seen[event_id] = now - ts.replace(tzinfo=UTC).timestamp()


def percentiles(values: list[float]) -> tuple[str, float]:
    """``p50 / p95 / max`` text and the p95 of ``values`` in seconds."""
    if len(values) < 20:
        return "n/a", float("inf")
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49]:.2f} s, p95 {cuts[94]:.2f} s, max {max(values):.2f} s", cuts[94]


def main() -> int:
    """Run the pipeline at the rate and print the freshness and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, state_dir=work / "state")
        with infra.up(settings) as endpoints:
            stack = Stack.from_settings(settings, endpoints=endpoints)
            stack.ensure_topic()
            setup_endpoint(endpoints, stack.db)
            extract = work / "sales.hyper"
            workers = [
                stack.consumer_worker(),
                stack.lake_worker(work / "lake", flush_seconds=5.0),
                stack.hyper_worker(extract, flush_seconds=1.0),
            ]
            observer = ExtractObserver(extract)
            for worker in workers:
                worker.start()
            observer.start()
            for worker in workers:
                worker.wait_idle(idle_s=0.5, timeout=60)  # joined, nothing to read yet
            producer = ProducerThread(
                endpoints.kafka_bootstrap,
                settings.topic,
                rate=args.rate,
                max_events=int(args.rate * args.seconds),
                seed=11,
            )
            producer.start()
            producer.wait(timeout=args.seconds * 3 + 30)
            sent = producer.stop()
            ended = time.monotonic()
            while any(w.stats.consumed < sent.acked for w in workers):
                if time.monotonic() - ended > 120:
                    break
                time.sleep(0.05)
            drain_s = time.monotonic() - ended
            time.sleep(1.5)
            observer.stop_event.set()
            observer.join()
            for worker in workers:
                worker.stop()
                worker.runtime.close()
            docs = stack.db[SALES].find({}, {"ts": 1, "ingested_at": 1})
            mongo = [(d["ingested_at"] - d["ts"]).total_seconds() for d in docs]
            rollup_sales, _ = totals(stack.db, HOURLY)
            stack.close()
    mongo_text, mongo_p95 = percentiles(mongo)
    extract_text, extract_p95 = percentiles(list(observer.seen.values()))
    print(f"== {args.rate:.0f} sales/s for {args.seconds:.0f} s, every feature on ==")
    print(f"sent                   : {sent.acked} sales, achieved {sent.average_rate:.0f}/s")
    print(f"stored                 : {len(mongo)} in MongoDB, {rollup_sales} in the rollups, "
          f"{len(observer.seen)} in the extract")  # fmt: skip
    print(f"event -> MongoDB       : {mongo_text}")
    print(f"event -> Hyper extract : {extract_text}")
    print(f"backlog drained in     : {drain_s:.2f} s after the last send")
    ok = mongo_p95 <= MONGO_P95_S and extract_p95 <= EXTRACT_P95_S and len(mongo) == sent.acked
    print(f"targets p95 MongoDB <= {MONGO_P95_S} s, extract <= {EXTRACT_P95_S} s: "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
