"""Hyper export on the real embedded MongoDB and real Hyper files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pantab
import pytest
from pymongo.database import Database
from tableauhyperapi import (
    NOT_NULLABLE,
    Connection,
    HyperException,
    HyperProcess,
    SqlType,
    Telemetry,
)

from sales_stream import infra
from sales_stream.config import Settings
from sales_stream.events import SaleEvent
from sales_stream.export.hyper import HyperExporter
from sales_stream.extract import (
    ARROW_SCHEMA,
    EXTRACT_TABLE,
    STATE_TABLE,
    ExtractOwnedError,
    read_extract,
)
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.hyper import HyperSink
from sales_stream.sinks.mongo import MongoSink
from sales_stream.stream import Batch, StreamState
from sales_stream.ui.export_panel import export_panel, summary_text

COUNT = f"SELECT COUNT(*) FROM {EXTRACT_TABLE}"


@pytest.fixture
def uri(endpoints: infra.Endpoints) -> str:
    return endpoints.mongo_uri.get_secret_value()


@pytest.fixture
def gen() -> SaleGenerator:
    return SaleGenerator(seed=7)


@pytest.fixture
def hyper() -> Iterator[HyperProcess]:
    """A Hyper process of the test's own, as a reader such as Tableau would have."""
    with HyperProcess(
        Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters={"log_config": ""}
    ) as p:
        yield p


def write(db: Database, events: list[SaleEvent], *, at: datetime | None = None) -> None:
    """Store events as the consumer does (the sink stamps ``ingested_at``)."""
    MongoSink(db, clock=None if at is None else lambda: at).write(Batch.of(events))


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def send(endpoints: infra.Endpoints, topic: str, events: list[SaleEvent]) -> None:
    """Publish ``events`` to ``topic`` as the producer does."""
    from kafka import KafkaProducer

    from sales_stream.events import encode

    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, linger_ms=5)
    try:
        for event in events:
            producer.send(topic, key=event.region.encode(), value=encode(event))
        producer.flush()
    finally:
        producer.close()


def summary(frame: pd.DataFrame) -> dict[str, object]:
    """What must agree between MongoDB and the extract."""
    return {
        "count": len(frame),
        "ids": frame["event_id"].nunique(),
        "by_region": frame.groupby("region")["amount"].sum().round(2).to_dict(),
        "by_product": frame.groupby("product")["amount"].sum().round(2).to_dict(),
        "quantity": int(frame["quantity"].sum()),
        "ts": (frame["ts"].min(), frame["ts"].max()),
    }


def mongo_frame(db: Database) -> pd.DataFrame:
    docs = list(db.sales.find({}))
    frame = pd.DataFrame(docs).rename(columns={"_id": "event_id"})
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_localize(None).astype("M8[us]")
    return frame


def assert_same_as_mongo(db: Database, path: Path) -> None:
    extract = read_extract(path)
    assert summary(extract) == summary(mongo_frame(db))
    assert extract["event_id"].is_unique


def test_round_trip_through_refreshes_late_events_and_a_restart(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path
):
    path = tmp_path / "out" / "sales.hyper"
    history = list(gen.backfill(2, events_per_day=800))
    write(db, history)
    with HyperExporter(uri, path, db=db.name) as exporter:
        first = exporter.refresh()
        assert (first.full, first.rows_added, first.total_rows) == (
            True,
            len(history),
            len(history),
        )
        for _ in range(3):
            write(db, gen.events(300))
            result = exporter.refresh()
            assert (result.full, result.rows_added) == (False, 300)
        # Late in event time: a month old, stored after newer sales (e.g. a late backfill).
        late = list(gen.backfill(1, end=datetime.now(UTC) - timedelta(days=30), events_per_day=400))
        write(db, late)
        assert exporter.refresh().rows_added == len(late)
        published = path.stat().st_mtime_ns
        idle = exporter.refresh()
        assert (idle.rows_added, idle.total_rows) == (0, len(history) + 900 + len(late))
        assert path.stat().st_mtime_ns == published  # nothing new: nothing rewritten
    write(db, gen.events(250))
    with HyperExporter(uri, path, db=db.name) as restarted:
        result = restarted.refresh()
        assert (result.full, result.rows_added) == (False, 250)
        assert result.total_rows == len(history) + 1150 + len(late)
    assert_same_as_mongo(db, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["sales.hyper"]  # no temp file left
    assert list(db.sales.index_information()) == ["_id_"]  # the hot collection: _id only


def test_a_batch_stored_late_is_exported_within_the_late_window(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path
):
    now = datetime.now(UTC)
    clock = [now]
    path = tmp_path / "sales.hyper"
    with HyperExporter(uri, path, db=db.name, late_window_s=5.0, clock=lambda: clock[0]) as ex:
        write(db, gen.events(100), at=now - timedelta(seconds=60))
        assert ex.refresh().rows_added == 100
        clock[0] = now + timedelta(seconds=10)
        assert ex.refresh().rows_added == 0
        # Stamped 2 s before that refresh, visible only after it (a slow insert_many).
        write(db, gen.events(40), at=now + timedelta(seconds=8))
        clock[0] = now + timedelta(seconds=20)
        assert ex.refresh().rows_added == 40
        # Later than the window (stamped before watermark now+15 s): the documented limit...
        write(db, gen.events(7), at=now + timedelta(seconds=12))
        clock[0] = now + timedelta(seconds=30)
        assert ex.refresh().rows_added == 0
        # ... which a full export reconciles.
        full = ex.full_export()
        assert (full.full, full.total_rows) == (True, 147)
    assert_same_as_mongo(db, path)


def test_readers_never_see_a_partial_file_nor_fewer_rows(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path, hyper: HyperProcess
):
    path = tmp_path / "sales.hyper"
    write(db, gen.events(500))
    counts: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        finished = False
        while not (finished and len(counts) >= 100):
            finished = done.is_set()  # one more read once the last refresh is published
            try:
                with Connection(hyper.endpoint, path) as conn:
                    rows = conn.execute_scalar_query(COUNT)
                    distinct = conn.execute_scalar_query(
                        f"SELECT COUNT(DISTINCT event_id) FROM {EXTRACT_TABLE}"
                    )
                counts.append(rows)
                if distinct != rows:
                    errors.append(AssertionError(f"{rows} rows, {distinct} distinct ids"))
            except HyperException as exc:
                errors.append(exc)

    with HyperExporter(uri, path, db=db.name) as exporter:
        exporter.refresh()
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for i in range(20):
                wait_until(lambda i=i: len(counts) >= 5 * (i + 1) or bool(errors))
                write(db, gen.events(50))
                assert exporter.refresh().rows_added == 50
        finally:
            done.set()
            thread.join(60)
    assert not errors
    assert len(counts) >= 100
    assert counts == sorted(counts)
    assert counts[0] >= 500
    assert counts[-1] == 1500
    assert len(set(counts)) >= 10  # the reads interleaved with the refreshes


def test_columns_types_and_values(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path, hyper: HyperProcess
):
    path = tmp_path / "sales.hyper"
    events = gen.events(30) + gen.events(5, ts=datetime(2026, 3, 1, 23, 59, 59, 999000, UTC))
    write(db, events)
    with HyperExporter(uri, path, db=db.name) as exporter:
        exporter.refresh()
    text, double = SqlType.text(), SqlType.double()
    expected = [
        ("event_id", text),
        ("ts", SqlType.timestamp()),
        ("date", SqlType.date()),
        ("hour", SqlType.small_int()),
        ("product", text),
        ("category", text),
        ("region", text),
        ("city", text),
        ("lat", double),
        ("lon", double),
        ("quantity", SqlType.int()),
        ("unit_price", double),
        ("amount", double),
        ("currency", text),
        ("channel", text),
    ]
    with Connection(hyper.endpoint, path) as conn:
        assert conn.catalog.get_schema_names()  # a readable Hyper file
        columns = conn.catalog.get_table_definition(EXTRACT_TABLE).columns
    assert [(c.name.unescaped, c.type) for c in columns] == expected
    assert {c.nullability for c in columns} == {NOT_NULLABLE}
    rows = read_extract(path).set_index("event_id")
    for event in events:
        row = rows.loc[event.event_id]
        naive = event.ts.replace(tzinfo=None)
        assert row["ts"] == pd.Timestamp(naive)  # UTC, stored without a zone
        assert (row["date"], row["hour"]) == (naive.date(), naive.hour)
        assert (row["product"], row["category"], row["region"], row["city"]) == (
            event.product,
            event.category,
            event.region,
            event.city,
        )
        assert (row["lat"], row["lon"], row["quantity"]) == (event.lat, event.lon, event.quantity)
        assert (row["unit_price"], row["amount"]) == (event.unit_price, event.amount)
        assert (row["currency"], row["channel"]) == (event.currency, event.channel)


def test_an_empty_collection_gives_a_valid_empty_extract(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path
):
    path = tmp_path / "sales.hyper"
    with HyperExporter(uri, path, db=db.name) as exporter:
        empty = exporter.refresh()
        assert (empty.full, empty.total_rows) == (True, 0)
        extract = read_extract(path)
        assert (len(extract), list(extract.columns)) == (0, ARROW_SCHEMA.names)
        write(db, gen.events(30))
        assert exporter.refresh().rows_added == 30
    assert len(read_extract(path)) == 30


def test_a_file_of_another_layout_is_rebuilt(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path
):
    path = tmp_path / "sales.hyper"
    pantab.frame_to_hyper(pd.DataFrame({"event_id": ["x"]}), path, table=EXTRACT_TABLE)
    write(db, gen.events(12))
    with HyperExporter(uri, path, db=db.name) as exporter:
        result = exporter.refresh()
    assert (result.full, result.total_rows) == (True, 12)
    assert_same_as_mongo(db, path)


def test_one_writer_per_extract_and_no_false_watermark(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path, hyper: HyperProcess
):
    """The live extract (Kafka) keeps no watermark; the MongoDB exporter refuses to continue it.

    Before: the sink stored ``watermark = now`` and ``export`` trusted it, skipping every sale
    MongoDB ingested before that moment.
    """
    earlier = gen.events(40)
    write(db, earlier)  # in MongoDB before the live extract existed
    live = tmp_path / "live.hyper"
    sink = HyperSink(live)
    try:
        assert sink.write(Batch.of(gen.events(10))).stored == 10
    finally:
        sink.close()
    with Connection(hyper.endpoint, live) as conn:
        state = conn.execute_list_query(f"SELECT writer, watermark FROM {STATE_TABLE}")
    assert [(row[0], row[1]) for row in state] == [("stream", None)]
    with HyperExporter(uri, live, db=db.name) as exporter, pytest.raises(ExtractOwnedError) as err:
        exporter.refresh()
    assert str(err.value).count("\n") == 0
    assert "stream" in str(err.value)
    assert len(read_extract(live)) == 10  # left as it was

    exported = tmp_path / "exported.hyper"
    with HyperExporter(uri, exported, db=db.name) as exporter:
        assert exporter.refresh().total_rows == 40
    sink = HyperSink(exported)
    try:
        with pytest.raises(ExtractOwnedError, match="mongodb"):
            sink.write(Batch.of(gen.events(5)))
    finally:
        sink.close()
    assert_same_as_mongo(db, exported)


def test_malformed_documents_are_skipped_and_reported(
    db: Database, uri: str, gen: SaleGenerator, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "sales.hyper"
    with HyperExporter(uri, path, db=db.name) as exporter:
        exporter.refresh()
        write(db, gen.events(10))
        broken = gen.events(1)[0].to_document() | {"ingested_at": datetime.now(UTC)}
        del broken["region"]
        db.sales.insert_one(broken)
        with caplog.at_level(logging.WARNING):
            result = exporter.refresh()
    assert (result.rows_added, result.skipped) == (10, 1)
    assert broken["_id"] in caplog.text


def test_export_panel_shows_the_extract_runtime_and_its_recovery(
    settings: Settings, endpoints: infra.Endpoints, topic: str, tmp_path: Path
) -> None:
    from sales_stream.app import Stack

    events = SaleGenerator(72).events(65)
    send(endpoints, topic, events[:40])
    path = tmp_path / "sales.hyper"
    path.mkdir()  # a folder where the extract should go: every write fails
    stack = Stack(settings.model_copy(update={"topic": topic}), endpoints)
    worker = stack.hyper_worker(path, group_id=f"p_{topic}", flush_seconds=0.1)
    panel = export_panel(worker, refresh_s=0.05)
    try:
        assert not panel.start_button.disabled
        panel.start_button.click()
        wait_until(lambda: worker.stats.state == StreamState.WAITING_SINK)
        failing = panel.refresh()
        assert "injoignable" in panel.counters.value
        assert "IsADirectoryError" in (failing.last_error or "")
        assert "Dernière erreur" in summary_text(failing, path=path)
        assert panel.start_button.disabled
        assert not panel.stop_button.disabled
        path.rmdir()  # fixed: the retried batch goes through
        wait_until(lambda: worker.stats.stored == 40)
        send(endpoints, topic, events[40:])
        wait_until(lambda: worker.stats.stored == 65 and worker.stats.total_lag == 0)
        stats = panel.refresh()
        assert stats.stored == 65
        assert "<b>65</b>" in panel.counters.value
        panel.stop_button.click()
        wait_until(lambda: not worker.running)
        panel.refresh()
        assert not panel.start_button.disabled
    finally:
        panel.close()
        worker.stop()
        worker.runtime.close()
    text = summary_text(worker.stats, path=path)
    assert text.splitlines()[0] == f"Extrait Hyper : arrêté ({path})."
    assert "Lignes écrites : 65" in text
    assert "Retard : 0 message ;" in text
    assert sorted(read_extract(path)["event_id"]) == sorted(e.event_id for e in events)


def test_cli_exports_then_refreshes(
    settings: Settings, db: Database, gen: SaleGenerator, tmp_path: Path
):
    path = tmp_path / "cli" / "sales.hyper"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SALES_STREAM_", "TABLEAU_"))}
    env |= {
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir.resolve()),
        "SALES_STREAM_DB": db.name,
    }

    def export(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sales_stream", "export", "--hyper", str(path), *extra]
        return subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    write(db, gen.events(30))
    first = export()
    assert first.returncode == 0, first.stderr
    assert "full export: +30 rows, 30 in total" in first.stdout
    write(db, gen.events(5))
    second = export()
    assert second.returncode == 0, second.stderr
    assert "refresh: +5 rows, 35 in total" in second.stdout
    refused = export("--publish")
    assert refused.returncode == 2
    assert "TABLEAU_SERVER_URL, TABLEAU_SITE, TABLEAU_PAT_NAME, TABLEAU_PAT_SECRET" in (
        refused.stderr
    )
    assert len(read_extract(path)) == 35
    assert list(db.sales.index_information()) == ["_id_"]  # the export indexed nothing


def test_the_hyper_sink_is_fed_by_the_stream_without_scanning_mongodb(
    settings: Settings, endpoints: infra.Endpoints, topic: str, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    from sales_stream.app import Stack

    events = SaleGenerator(71).events(900)
    send(endpoints, topic, [*events, *events[:100]])  # re-sends add nothing
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    producer.send(topic, key=b"Bretagne", value=b"not json")
    producer.flush()
    producer.close()
    stack = Stack(settings.model_copy(update={"topic": topic}), endpoints)
    path = tmp_path / "sales.hyper"
    runtime = stack.hyper(path, group_id=f"h_{topic}", flush_seconds=0.3)
    stats = runtime.run(until_idle=1.5)
    runtime.close()
    assert (stats.stored, stats.duplicates, stats.consumed) == (900, 100, 1001)
    frame = read_extract(path)
    assert sorted(frame["event_id"]) == sorted(e.event_id for e in events)
    # A group with no commit reads everything again: still one row per sale.
    runtime = stack.hyper(path, group_id=f"h2_{topic}", flush_seconds=0.3)
    again = runtime.run(until_idle=1.5)
    runtime.close()
    assert (again.stored, again.duplicates) == (0, 1000)
    assert len(read_extract(path)) == 900
    assert not list(tmp_path.glob(".*.tmp.hyper"))
