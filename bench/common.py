"""Helpers shared by the benchmarks (run them as ``python bench/<name>.py``)."""

from __future__ import annotations

import json
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pantab
from kafka import KafkaProducer
from monitor import Monitor, Samples
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic
from sales_stream.config import Settings
from sales_stream.contract import INGESTED_AT
from sales_stream.events import SaleEvent, encode
from sales_stream.lake.tree import lake_stats
from sales_stream.produce.producer import ProducerThread
from sales_stream.produce.stats import ProducerStats
from sales_stream.read.dashboard_views import Selection, load_snapshot
from sales_stream.sinks.rollups import totals
from sales_stream.sql.schema import setup_endpoint
from sales_stream.store import HOURLY, SALES
from sales_stream.ui.dashboard import figures


def produce(bootstrap: str, topic: str, events: Sequence[SaleEvent]) -> float:
    """Send the events keyed by region as fast as kafka-python goes; return events/s."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    start = time.perf_counter()
    for event in events:
        producer.send(topic, key=event.region.encode(), value=encode(event))
    producer.flush()
    rate = len(events) / (time.perf_counter() - start)
    producer.close()
    return rate


#: The observer's sample of the extract: ids starting with 0 (1 in 16).
SAMPLED_QUERY = """SELECT "event_id", "ts" FROM "Extract"."Extract" WHERE "event_id" LIKE '0%'"""
COUNT_QUERY = 'SELECT count(*) FROM "Extract"."Extract"'


class ExtractObserver:
    """Reads the extract whenever it is published; records when sampled sales appeared.

    The instrument must not weigh on what it measures: it runs in its own process (not
    under the pipeline's GIL) and follows a fixed 1-in-16 sample of the sales (ids starting
    with ``0``; UUID4s are uniform), so a re-read stays small as the extract grows.
    `stop` returns a map from sampled event id to ``(seen_at, seen_at - ts)`` in epoch
    seconds, and the extract's final row count.
    """

    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=_observe_extract, args=(path, self._stop, self._results), daemon=True
        )

    def start(self) -> None:
        """Start watching the file."""
        self._process.start()

    def stop(self) -> tuple[dict[str, tuple[float, float]], int]:
        """Stop watching; return the sampled sales seen and the extract's row count."""
        self._stop.set()
        seen, rows = self._results.get(timeout=60)
        self._process.join(timeout=10)
        return seen, rows


def _observe_extract(path: Path, stop: Any, results: Any) -> None:
    """The observer process: poll the file's modification time until ``stop`` is set."""
    seen: dict[str, tuple[float, float]] = {}
    published = 0.0
    while not stop.wait(0.1):
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if mtime == published:
            continue
        published = mtime
        now = time.time()
        frame = pantab.frame_from_hyper_query(path, SAMPLED_QUERY)
        for event_id, ts in zip(frame["event_id"], frame["ts"], strict=True):
            if event_id not in seen:
                seen[event_id] = (now, now - ts.replace(tzinfo=UTC).timestamp())
    rows = 0
    if path.exists():
        rows = int(pantab.frame_from_hyper_query(path, COUNT_QUERY).iloc[0, 0])
    results.put((seen, rows))


def percentiles(values: Sequence[float]) -> tuple[str, float]:
    """``p50 / p95 / max`` text and the p95 of ``values`` in seconds."""
    if len(values) < 20:
        return "n/a", float("inf")
    cuts = statistics.quantiles(values, n=100)
    return f"p50 {cuts[49]:.2f} s, p95 {cuts[94]:.2f} s, max {max(values):.2f} s", cuts[94]


@dataclass
class FullRun:
    """What `run_every_feature` measured.

    Attributes:
        sent: The producer's final stats.
        mongo: ``(ingested_at, ingested_at - ts)`` of every stored sale, epoch seconds.
        extract: ``(seen_at, seen_at - ts)`` of the sampled sales seen in the extract.
        extract_rows: Rows in the extract at the end.
        drain_s: Seconds from the last send until every runtime had consumed everything.
        rollup_sales: Sales counted in the hourly rollup.
        lake_rows: Rows in the lake's live files at the end (on the embedded object store).
        samples: What the `monitor.Monitor` sampled, when asked.
        dashboard_s: Refreshes of the notebook dashboard on the final data, when monitored.
    """

    sent: ProducerStats
    mongo: list[tuple[float, float]]
    extract: list[tuple[float, float]]
    extract_rows: int
    drain_s: float
    rollup_sales: int
    lake_rows: int
    samples: Samples | None = None
    dashboard_s: list[float] | None = None


#: The topic the monitor's produce probe writes to (the pipeline does not read it).
PROBE_TOPIC = "soak-probe"


def run_every_feature(rate: float, seconds: float, *, monitor: bool = False) -> FullRun:
    """``make run``'s runtimes on fresh embedded services, fed at ``rate`` for ``seconds``.

    The consumer with its rollups, the lake (on the object store, as by default) and the
    Hyper extract; freshness is read from the stores after the run. With ``monitor``, a
    `monitor.Monitor` samples the run and the dashboard's refresh is timed at the end.
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, state_dir=work / "state")
        with infra.up(settings) as endpoints:
            stack = Stack.from_settings(settings, endpoints=endpoints)
            stack.ensure_topic()
            setup_endpoint(endpoints, stack.db)
            extract = work / "sales.hyper"
            lake = stack.lake_location()
            workers = stack.live_workers(lake=lake, hyper=extract)
            lake_worker = workers[1]
            observer = ExtractObserver(extract)
            sampler = None
            if monitor:
                ensure_topic(endpoints.kafka_bootstrap, PROBE_TOPIC, partitions=1)
                sampler = Monitor(
                    lake_count=lambda: lake_worker.stats.stored,
                    rollup_count=lambda: totals(stack.db, HOURLY)[0],
                    bootstrap=endpoints.kafka_bootstrap,
                    probe_topic=PROBE_TOPIC,
                    state_dir=settings.state_dir,
                )
            for worker in workers:
                worker.start()
            observer.start()
            for worker in workers:
                worker.wait_idle(idle_s=0.5, timeout=60)  # joined, nothing to read yet
            producer = ProducerThread(
                endpoints.kafka_bootstrap,
                settings.topic,
                rate=rate,
                max_events=int(rate * seconds),
                seed=11,
            )
            if sampler is not None:
                sampler.start()
            producer.start()
            producer.wait(timeout=seconds * 3 + 30)
            sent = producer.stop()
            ended = time.monotonic()
            while any(w.stats.consumed < sent.acked for w in workers):
                if time.monotonic() - ended > 120:
                    break
                time.sleep(0.05)
            drain_s = time.monotonic() - ended
            time.sleep(1.5)
            samples = sampler.stop() if sampler is not None else None
            seen, extract_rows = observer.stop()
            for worker in workers:
                worker.stop()
                worker.runtime.close()
            docs = stack.db[SALES].find({}, {"ts": 1, INGESTED_AT: 1})
            mongo = [
                (d[INGESTED_AT].timestamp(), (d[INGESTED_AT] - d["ts"]).total_seconds())
                for d in docs
            ]
            rollup_sales, _ = totals(stack.db, HOURLY)
            lake_rows = lake_stats(lake)["rows"]
            dashboard_s = dashboard_refreshes(stack.db) if monitor else None
            stack.close()
    return FullRun(
        sent,
        mongo,
        list(seen.values()),
        extract_rows,
        drain_s,
        rollup_sales,
        lake_rows,
        samples,
        dashboard_s,
    )


def dashboard_refreshes(db: Database, *, repeats: int = 5) -> list[float]:
    """Seconds of the notebook dashboard's refresh (read the data, build the figures' JSON)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        json.dumps(figures(load_snapshot(db).view(Selection())))
        times.append(time.perf_counter() - start)
    return times
