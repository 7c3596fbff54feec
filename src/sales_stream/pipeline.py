"""The main job (``make run``): the whole pipeline on fresh services, then the notebooks.

Stages: start a fresh embedded instance; start the runtimes of `sales_stream.app.Stack`
(MongoDB, the rollups, the Parquet lake, the Hyper extract); publish the history (backfill)
and a live stream on a simulated clock at the history's intensity (`catch_up_clock`: the live
phase fills the simulated hours just before notebook 02's, so no hour dwarfs the history);
wait until every runtime has caught up; write the workbooks (``sales.twb``, ``sales.twbx``,
``sales_live.twb``); execute notebooks 01→05 headless into ``out/notebooks/`` (02 adds a
small live stream of its own that ends when it runs, `catch_up_run`: no sale is dated after
the run; the committed notebooks are refreshed by ``make notebooks``); check that the counts
agree.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from sales_stream import infra, notebooks
from sales_stream.app import Stack
from sales_stream.config import Mode, Settings
from sales_stream.errors import SalesStreamError
from sales_stream.export.package import write_workbooks
from sales_stream.export.workbook import write_live_workbook
from sales_stream.extract import read_extract
from sales_stream.lake.tree import lake_stats
from sales_stream.produce.backfill import backfill
from sales_stream.produce.generator import (
    SaleGenerator,
    SimulatedClock,
    catch_up_clock,
    catch_up_run,
    live_rate,
)
from sales_stream.produce.producer import ProducerThread
from sales_stream.sql.schema import setup_endpoint
from sales_stream.store import DEAD_LETTERS, SALES
from sales_stream.stream import StreamWorker

Progress = Callable[[str], None]

#: The files ``make run`` leaves in its output folder (listed in ``summary.json``).
OUTPUT_FILES = ("sales.hyper", "sales.twb", "sales.twbx", "sales_live.twb")
#: Where ``make run`` writes the executed notebooks, inside its output folder.
NOTEBOOKS_DIR = "notebooks"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What ``make run`` does; the defaults finish in a few minutes on two cores."""

    out_dir: Path = Path("out")
    notebook_dir: Path = Path()
    backfill_days: int = 7
    #: Lighter than the lab's `DEFAULT_EVENTS_PER_DAY` (the run must be short); notebook 02's
    #: live sales get the same intensity.
    events_per_day: int = 1500
    live_seconds: float = 20.0
    #: Simulated seconds per real second of the live phase (720: 20 s show 4 hours).
    speedup: float = 720.0
    bad_ratio: float = 0.02
    seed: int = 42
    notebook_live_events: int = 300
    #: Simulated clock of notebook 02's live stream (fast: its few sales span a few hours).
    notebook_speedup: float = 6000.0
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
    started = time.monotonic()
    with infra.up(settings) as endpoints:
        progress(f"[infra] {endpoints.describe()}")
        _live_pipeline(settings, endpoints, config, out, progress)
        if config.run_notebooks:
            _notebooks(config, out, progress)
        summary = _summary(settings, endpoints, out)
    files = {name: name for name in OUTPUT_FILES if (out / name).exists()}
    (out / "summary.json").write_text(
        json.dumps(asdict(summary) | {"agrees": summary.agrees, "files": files})
    )
    progress(f"[done] {time.monotonic() - started:.0f} s — {_format(summary)}")
    if not summary.agrees:
        raise SalesStreamError(f"counts disagree: {_format(summary)}")
    return summary


def _fresh(settings: Settings, out: Path) -> None:
    """Stop and wipe the run's own state directory and outputs, so counts start at zero."""
    infra.down(settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    for stale in ("sales.hyper", "figures", "notebooks"):  # its lake is in the state directory
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
    stack = Stack.from_settings(settings, endpoints=endpoints)
    bootstrap = endpoints.kafka_bootstrap
    stack.ensure_topic()
    tables = setup_endpoint(endpoints, stack.db)
    progress(f"[sql] {', '.join(tables)} at {endpoints.sql_uri}")
    workers = stack.live_workers(lake=stack.lake_location(), hyper=out / "sales.hyper")
    for worker in workers:
        worker.start()
    try:
        # the live phase fills the last live_seconds x speedup simulated seconds before the
        # span that notebook 02's live sales fill up to the time it runs: none in the future
        end = datetime.now(UTC) - _notebook_span(config)
        live_from = catch_up_clock(
            live_seconds=config.live_seconds, speedup=config.speedup, now=end
        ).start
        progress(f"[backfill] {config.backfill_days} days x {config.events_per_day} sales/day")
        history = backfill(
            bootstrap,
            settings.topic,
            days=config.backfill_days,
            events_per_day=config.events_per_day,
            seed=config.seed,
            end=live_from,
        )
        progress(f"[backfill] {history.acked} sent, {history.failed} failed")
        rate = live_rate(events_per_day=config.events_per_day, speedup=config.speedup)
        live_events = max(1, round(rate * config.live_seconds))
        progress(
            f"[live] {live_events} sales at {rate:.1f}/s on a x{config.speedup:.0f} clock "
            f"from {live_from:%Y-%m-%d %H:%M} UTC, bad ratio {config.bad_ratio}"
        )
        # started now (after the backfill), the clock reaches the catch-up end in live_seconds
        clock = SimulatedClock(live_from, speedup=config.speedup, until=end)
        producer = ProducerThread(
            bootstrap,
            settings.topic,
            rate=rate,
            bad_ratio=config.bad_ratio,
            seed=config.seed + 1,
            max_events=live_events,
            generator=SaleGenerator(config.seed + 1, clock=clock),
        )
        producer.start()
        while not producer.wait(timeout=2.0):
            progress(f"[live] produced {producer.stats.acked} — {_status(workers)}")
        live = producer.stop()
        _drain(history.acked + live.acked, workers, config.drain_timeout_s, progress)
    finally:
        for worker in workers:
            worker.stop()
            worker.runtime.close()
        stack.close()
    progress(f"[hyper] {len(read_extract(out / 'sales.hyper'))} rows in {out / 'sales.hyper'}")
    books = write_workbooks(out / "sales.hyper")
    status = infra.embedded.status(settings.state_dir)
    write_live_workbook(
        out / "sales_live.twb",
        host="127.0.0.1",
        port=status.database.sql_port,
        database=settings.db,
        user=settings.sql_user,
    )
    progress(f"[tableau] {books.twb}, {books.twbx}, {out / 'sales_live.twb'}")


def _notebook_span(config: RunConfig) -> timedelta:
    """The simulated time notebook 02's live sales fill before the moment it runs."""
    if not config.run_notebooks:
        return timedelta(0)
    clock, _ = catch_up_run(
        config.notebook_live_events,
        events_per_day=config.events_per_day,
        speedup=config.notebook_speedup,
    )
    assert clock.until is not None  # a catch-up clock ends
    return clock.until - clock.start


def _drain(
    expected: int, workers: Sequence[StreamWorker], timeout: float, progress: Progress
) -> None:
    deadline = time.monotonic() + timeout
    while any(worker.stats.consumed < expected for worker in workers):
        if time.monotonic() > deadline:
            raise SalesStreamError(
                f"sinks did not catch up within {timeout:.0f} s: expected {expected}, "
                f"{_status(workers)}"
            )
        progress(f"[drain] expected {expected}: {_status(workers)}")
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
            "events_per_day": config.events_per_day,  # the history's intensity, not the lab's
            "rate": None,
            "speedup": config.notebook_speedup,
            "bad_ratio": config.bad_ratio,
        },
        "03_consumer.ipynb": {"interactive": False},
        "04_export_tableau.ipynb": {"interactive": False, "out_dir": shown_out},
        "05_data_lake.ipynb": {"interactive": False},
    }
    executed = out / NOTEBOOKS_DIR
    executed.mkdir(parents=True, exist_ok=True)
    for name in notebooks.NOTEBOOKS:
        path = config.notebook_dir.resolve() / name
        started = time.monotonic()
        results = notebooks.execute(path, output=executed / name, parameters=parameters[name])
        progress(f"[notebook] {name} in {time.monotonic() - started:.0f} s: {results}")


def _summary(settings: Settings, endpoints: infra.Endpoints, out: Path) -> Summary:
    stack = Stack(settings, endpoints)
    try:
        db = stack.db
        lake = lake_stats(stack.lake_location())
        return Summary(
            kafka_messages=_topic_size(endpoints.kafka_bootstrap, settings.topic),
            stored=db[SALES].count_documents({}),
            dead_lettered=db[DEAD_LETTERS].count_documents({}),
            lake_rows=lake["rows"],
            lake_dead_letters=lake["dead_letters"],
            extract_rows=len(read_extract(out / "sales.hyper")),
        )
    finally:
        stack.close()


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


def _status(workers: Sequence[StreamWorker]) -> str:
    return ", ".join(
        f"{w.name} {w.stats.consumed} ({w.stats.state}, +{w.stats.dead_lettered} dead)"
        for w in workers
    )


def _format(summary: Summary) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(summary).items())
