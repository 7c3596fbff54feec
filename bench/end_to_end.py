"""End-to-end freshness: sale ``ts`` -> visible in MongoDB -> visible in the Hyper extract.

The pipeline runs as ``make run`` configures it (consumer with the SQL rollups, Hyper
refresher) on its own embedded services. Two observers poll from outside the pipeline: one
reads new documents by the indexed ``ingested_at`` watermark every 100 ms, the other re-reads
the extract's ids after each refresh; an event's freshness is when an observer first saw it
minus its ``ts``. Then shorter steps at higher rates find the largest rate at which the
consumer keeps up (p95 to MongoDB under 2 s and the backlog drained within 5 s of the end).

    .venv/bin/python bench/end_to_end.py [--rate 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pantab

from sales_stream import infra
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.consumer import ConsumerThread
from sales_stream.export.hyper import HyperExporter
from sales_stream.export.refresher import HyperRefresher
from sales_stream.producer import ProducerThread
from sales_stream.rollups import RollupWriter
from sales_stream.sinks.mongo import ensure_indexes
from sales_stream.sql.schema import setup_endpoint

P95_BOUND_S = 2.0
DRAIN_BOUND_S = 5.0


class MongoObserver(threading.Thread):
    """Polls new documents by ``ingested_at`` and records when each sale became visible."""

    def __init__(self, db) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.seen: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Poll until stopped."""
        watermark = datetime(2000, 1, 1, tzinfo=UTC)
        while not self.stop_event.wait(0.1):
            now = time.time()
            query = {"ingested_at": {"$gte": watermark}}
            for doc in self.db.sales.find(query, {"ts": 1, "ingested_at": 1}):
                if doc["_id"] not in self.seen:
                    self.seen[doc["_id"]] = now - doc["ts"].timestamp()
                watermark = max(watermark, doc["ingested_at"])


class HyperObserver(threading.Thread):
    """Reads the extract's ids after each refresh and records when each sale appeared."""

    def __init__(self, path: Path, refresher: HyperRefresher) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.refresher = refresher
        self.seen: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Poll until stopped."""
        done = 0
        while not self.stop_event.wait(0.1):
            refreshes = self.refresher.stats.refreshes
            if refreshes == done or not self.path.exists():
                continue
            done = refreshes
            now = time.time()
            frame = pantab.frame_from_hyper_query(
                self.path, 'SELECT "event_id", "ts" FROM "Extract"."Extract"'
            )
            for event_id, ts in zip(frame["event_id"], frame["ts"], strict=True):
                if event_id not in self.seen:
                    self.seen[event_id] = now - ts.replace(tzinfo=UTC).timestamp()


def percentiles(values: list[float]) -> str:
    """p50 / p95 / max of ``values`` in seconds."""
    if len(values) < 20:
        return "n/a"
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49]:.2f} s, p95 {cuts[94]:.2f} s, max {max(values):.2f} s"


def step(
    endpoints, settings, rate: float, seconds: float, work: Path, *, hyper: bool, rollups: bool
):
    """Run the pipeline at ``rate`` for ``seconds``; return freshness samples and drain time."""
    topic = f"e2e_{int(rate)}_{int(time.time())}"
    ensure_topic(endpoints.kafka_bootstrap, topic, partitions=settings.partitions)
    uri = endpoints.mongo_uri.get_secret_value()
    db = mongo_client(uri)[f"e2e_{int(rate)}"]
    db.client.drop_database(db.name)
    ensure_indexes(db)
    consumer = ConsumerThread(
        endpoints.kafka_bootstrap,
        topic,
        uri,
        db=db.name,
        group_id=f"{topic}-mongo",
        after_write=[RollupWriter(db).apply] if rollups else [],
    )
    mongo_seen = MongoObserver(db)
    threads: list = [consumer, mongo_seen]
    exporter = refresher = hyper_seen = None
    if hyper:
        exporter = HyperExporter(uri, work / f"{topic}.hyper", db=db.name)
        refresher = HyperRefresher(exporter, interval_s=2.0)
        hyper_seen = HyperObserver(work / f"{topic}.hyper", refresher)
        threads += [refresher, hyper_seen]
    for thread in threads:
        thread.start()
    consumer.wait_idle(idle_s=0.5, timeout=60)  # joined the group, nothing to read yet
    producer = ProducerThread(
        endpoints.kafka_bootstrap, topic, rate=rate, max_events=int(rate * seconds), seed=11
    )
    producer.start()
    producer.wait(timeout=seconds * 3 + 30)
    sent = producer.stop()
    ended = time.monotonic()
    while consumer.stats.consumed < sent.acked and time.monotonic() - ended < 120:
        time.sleep(0.05)
    drain_s = time.monotonic() - ended
    time.sleep(2.5 if hyper else 0.3)
    mongo_seen.stop_event.set()
    mongo_seen.join()
    hyper_values: list[float] = []
    if hyper:
        refresher.refresh_now()
        refresher.wait_for(refresher.stats.refreshes + 1, timeout=30)
        time.sleep(0.5)
        hyper_seen.stop_event.set()
        hyper_seen.join()
        refresher.stop()
        exporter.close()
        hyper_values = list(hyper_seen.seen.values())
    consumer.stop()
    return sent, list(mongo_seen.seen.values()), hyper_values, drain_s


def main() -> int:
    """Run the measured step, then the search for the sustainable rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--max-rates", type=float, nargs="*", default=[2000, 3000, 4000, 6000])
    parser.add_argument("--no-rollups", action="store_true", help="consumer without SQL rollups")
    args = parser.parse_args()
    rollups = not args.no_rollups
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, state_dir=work / "state")
        with infra.up(settings) as endpoints:
            db = mongo_client(endpoints.mongo_uri.get_secret_value())[settings.db]
            setup_endpoint(endpoints, db)
            sent, mongo, hyper, drain = step(
                endpoints, settings, args.rate, args.seconds, work, hyper=True, rollups=rollups
            )
            print(f"== {args.rate:.0f} ev/s for {args.seconds:.0f} s: {sent.acked} sales ==")
            print(f"achieved rate          : {sent.average_rate:.0f} ev/s")
            print(f"event -> MongoDB       : {percentiles(mongo)} ({len(mongo)} sales)")
            print(f"event -> Hyper extract : {percentiles(hyper)} ({len(hyper)} sales)")
            print(f"backlog drained in     : {drain:.2f} s after the last send")
            print(f"== sustainable rate (steps of {args.step_seconds:.0f} s, Mongo only) ==")
            best = args.rate if _bounded(mongo, drain) else 0.0
            for rate in args.max_rates:
                sent, mongo, _, drain = step(
                    endpoints, settings, rate, args.step_seconds, work, hyper=False, rollups=rollups
                )
                ok = _bounded(mongo, drain)
                print(
                    f"{rate:>6.0f} ev/s: achieved {sent.average_rate:.0f} ev/s, "
                    f"{percentiles(mongo)}, drained in {drain:.2f} s -> "
                    f"{'bounded' if ok else 'NOT bounded'}"
                )
                if not ok:
                    break
                best = rate
            print(f"max sustainable rate measured: {best:.0f} ev/s")
    return 0


def _bounded(values: list[float], drain_s: float) -> bool:
    if len(values) < 20:
        return False
    return statistics.quantiles(values, n=100)[94] <= P95_BOUND_S and drain_s <= DRAIN_BOUND_S


if __name__ == "__main__":
    raise SystemExit(main())
