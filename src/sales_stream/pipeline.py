"""The main job (``make run``): the whole pipeline on fresh services, then the notebooks.

Stages: start a fresh embedded instance; start the Mongo consumer, the Parquet lake sink and
the Hyper refresher; publish the history (backfill) and a live stream; wait until every sink
has caught up; write the workbooks and charts; execute notebooks 01→05 headless (they add a
small live stream of their own); check that the counts agree; stop everything.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from sales_stream import infra, notebooks
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Mode, Settings
from sales_stream.consumer import ConsumerThread
from sales_stream.errors import SalesStreamError
from sales_stream.export.hyper import HyperExporter, read_extract
from sales_stream.export.refresher import HyperRefresher
from sales_stream.export.workbook import write_extract_workbook, write_live_workbook
from sales_stream.lake import lake_stats
from sales_stream.producer import ProducerThread, backfill
from sales_stream.rollups import consumer_hooks
from sales_stream.sinks.mongo import DEAD_LETTERS, SALES, ensure_indexes
from sales_stream.sinks.parquet import LakeThread
from sales_stream.sql.schema import setup_endpoint

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What ``make run`` does; the defaults finish in a few minutes on two cores."""

    out_dir: Path = Path("out")
    notebook_dir: Path = Path()
    backfill_days: int = 7
    events_per_day: int = 1500
    live_seconds: float = 20.0
    rate: float = 200.0
    bad_ratio: float = 0.02
    seed: int = 42
    notebook_live_events: int = 300
    run_notebooks: bool = True
    drain_timeout_s: float = 300.0


@dataclass(frozen=True)
class Summary:
    """Counts at the end of the run, which must agree."""

    kafka_messages: int
    stored: int
    dead_lettered: int
    lake_rows: int
    lake_dead_letters: int
    extract_rows: int

    @property
    def agrees(self) -> bool:
        """True when every sink holds exactly what was produced."""
        return (
            self.stored + self.dead_lettered == self.kafka_messages
            and self.lake_rows == self.stored
            and self.lake_dead_letters == self.dead_lettered
            and self.extract_rows == self.stored
        )


def run(settings: Settings, config: RunConfig, *, progress: Progress = print) -> Summary:
    """Run the whole pipeline on a fresh embedded instance and return the final counts."""
    if settings.mode is not Mode.EMBEDDED:
        raise SalesStreamError("make run uses the embedded mode: unset SALES_STREAM_MODE")
    out = config.out_dir.resolve()
    _fresh(settings, out)
    os.environ["SALES_STREAM_STATE_DIR"] = str(settings.state_dir.resolve())
    started = time.monotonic()
    with infra.up(settings) as endpoints:
        progress(f"[infra] {endpoints.describe()}")
        _live_pipeline(settings, endpoints, config, out, progress)
        if config.run_notebooks:
            _notebooks(config, out, progress)
        summary = _summary(settings, endpoints, out)
    (out / "summary.json").write_text(json.dumps(asdict(summary) | {"agrees": summary.agrees}))
    progress(f"[done] {time.monotonic() - started:.0f} s — {_format(summary)}")
    if not summary.agrees:
        raise SalesStreamError(f"counts disagree: {_format(summary)}")
    return summary


def _fresh(settings: Settings, out: Path) -> None:
    """Stop and wipe the run's own state directory and outputs, so counts start at zero."""
    infra.down(settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    for stale in ("lake", "sales.hyper", "figures"):
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _live_pipeline(
    settings: Settings,
    endpoints: infra.Endpoints,
    config: RunConfig,
    out: Path,
    progress: Progress,
) -> None:
    uri = endpoints.mongo_uri.get_secret_value()
    bootstrap = endpoints.kafka_bootstrap
    ensure_topic(bootstrap, settings.topic, partitions=settings.partitions)
    db = mongo_client(uri)[settings.db]
    ensure_indexes(db)
    tables = setup_endpoint(endpoints, db)
    progress(f"[sql] {', '.join(tables)} at {endpoints.sql_uri}")
    consumer = ConsumerThread(
        bootstrap,
        settings.topic,
        uri,
        db=settings.db,
        after_write=consumer_hooks(db, endpoints=endpoints, settings=settings),
    )
    lake = LakeThread(bootstrap, settings.topic, out / "lake", flush_seconds=5.0)
    exporter = HyperExporter(uri, out / "sales.hyper", db=settings.db)
    refresher = HyperRefresher(exporter, interval_s=5.0)
    for worker in (consumer, lake, refresher):
        worker.start()
    try:
        progress(f"[backfill] {config.backfill_days} days x {config.events_per_day} sales/day")
        history = backfill(
            bootstrap,
            settings.topic,
            days=config.backfill_days,
            events_per_day=config.events_per_day,
            seed=config.seed,
        )
        progress(f"[backfill] {history.acked} sent, {history.failed} failed")
        live_events = int(config.rate * config.live_seconds)
        progress(f"[live] {live_events} sales at {config.rate:.0f}/s, bad ratio {config.bad_ratio}")
        producer = ProducerThread(
            bootstrap,
            settings.topic,
            rate=config.rate,
            bad_ratio=config.bad_ratio,
            seed=config.seed + 1,
            max_events=live_events,
        )
        producer.start()
        while not producer.wait(timeout=2.0):
            progress(f"[live] {_status(producer, consumer, lake, refresher)}")
        live = producer.stop()
        expected = history.acked + live.acked
        _drain(expected, consumer, lake, config.drain_timeout_s, progress)
    finally:
        consumer.stop()
        lake.stop()
        refresher.stop()
    final = exporter.refresh()
    exporter.close()
    progress(f"[hyper] {final.total_rows} rows in {out / 'sales.hyper'}")
    write_extract_workbook(out / "sales.twb", extract_path=out / "sales.hyper")
    status = infra.embedded.status(settings.state_dir)
    write_live_workbook(
        out / "sales_live.twb",
        host="127.0.0.1",
        port=status.database.sql_port,
        database=settings.db,
        user=settings.sql_user,
    )
    progress(f"[tableau] {out / 'sales.twb'}, {out / 'sales_live.twb'}")


def _drain(
    expected: int,
    consumer: ConsumerThread,
    lake: LakeThread,
    timeout: float,
    progress: Progress,
) -> None:
    deadline = time.monotonic() + timeout
    while consumer.stats.consumed < expected or lake.stats.consumed < expected:
        if time.monotonic() > deadline:
            raise SalesStreamError(
                f"sinks did not catch up within {timeout:.0f} s: expected {expected}, "
                f"mongo consumed {consumer.stats.consumed}, lake consumed {lake.stats.consumed}"
            )
        progress(
            f"[drain] mongo {consumer.stats.consumed}/{expected}, "
            f"lake {lake.stats.consumed}/{expected}"
        )
        time.sleep(1.0)


def _notebooks(config: RunConfig, out: Path, progress: Progress) -> None:
    # Paths as the notebooks show them: relative to the notebooks when the output is below them.
    shown_out = os.path.relpath(out, config.notebook_dir.resolve())
    if shown_out.startswith(".."):
        shown_out = str(out)
    parameters: dict[str, dict[str, Any]] = {
        "01_setup.ipynb": {},
        "02_producer.ipynb": {
            "interactive": False,
            "backfill_days": 0,
            "live_events": config.notebook_live_events,
            "rate": 100.0,
            "bad_ratio": config.bad_ratio,
        },
        "03_consumer.ipynb": {"interactive": False},
        "04_export_tableau.ipynb": {"interactive": False, "out_dir": shown_out},
        "05_data_lake.ipynb": {"interactive": False, "lake_path": f"{shown_out}/lake"},
    }
    for name in notebooks.NOTEBOOKS:
        path = config.notebook_dir.resolve() / name
        started = time.monotonic()
        results = notebooks.execute(path, output=path, parameters=parameters[name])
        progress(f"[notebook] {name} in {time.monotonic() - started:.0f} s: {results}")


def _summary(settings: Settings, endpoints: infra.Endpoints, out: Path) -> Summary:
    db = mongo_client(endpoints.mongo_uri.get_secret_value())[settings.db]
    lake = lake_stats(out / "lake")
    return Summary(
        kafka_messages=_topic_size(endpoints.kafka_bootstrap, settings.topic),
        stored=db[SALES].count_documents({}),
        dead_lettered=db[DEAD_LETTERS].count_documents({}),
        lake_rows=lake["rows"],
        lake_dead_letters=lake["dead_letters"],
        extract_rows=len(read_extract(out / "sales.hyper")),
    )


def _topic_size(bootstrap: str, topic: str, *, idle_polls: int = 3) -> int:
    """Count the topic's records by reading it all (the embedded broker's end offsets lag)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, max_poll_records=10_000)
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        consumer.seek_to_beginning()
        count, empty = 0, 0
        while empty < idle_polls:
            batch = consumer.poll(timeout_ms=500)
            count += sum(len(records) for records in batch.values())
            empty = 0 if batch else empty + 1
        return count
    finally:
        consumer.close()


def _status(
    producer: ProducerThread, consumer: ConsumerThread, lake: LakeThread, refresher: HyperRefresher
) -> str:
    p, c = producer.stats, consumer.stats
    return (
        f"produced {p.acked} ({p.current_rate:.0f}/s), mongo {c.stored} (+{c.dead_lettered} dead), "
        f"lake {lake.stats.consumed}, extract {refresher.stats.rows}"
    )


def _format(summary: Summary) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(summary).items())
