"""The PostgreSQL endpoint: declared tables, cursors, exact rollups, live reads, faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import psycopg
import pytest
from bson import Decimal128
from kafka import KafkaProducer
from pymongo.database import Database

from sales_stream import cli, infra
from sales_stream.app import Stack
from sales_stream.clients import mongo_client
from sales_stream.config import Settings
from sales_stream.events import SaleEvent, encode
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read import sql_queries
from sales_stream.read.mongo_queries import Filters
from sales_stream.sinks.mongo import MongoSink
from sales_stream.sinks.rollups import DELTA_SEPARATOR, RollupSink, compact
from sales_stream.sql import connect
from sales_stream.sql.schema import (
    DAILY_TABLE,
    HOURLY_TABLE,
    TABLES,
    ensure_schema,
)
from sales_stream.store import DAILY, FENCES, HOURLY, SALES, ensure_indexes
from sales_stream.stream import Batch

END = datetime(2025, 3, 10, tzinfo=UTC)
REGIONS = ("Bretagne", "Normandie")
SALES_TYPES = {
    "_id": "text",
    "ts": "timestamp with time zone",
    "product": "text",
    "category": "text",
    "region": "text",
    "city": "text",
    "lat": "double precision",
    "lon": "double precision",
    "quantity": "integer",
    "unit_price": "double precision",
    "amount": "double precision",
    "currency": "text",
    "channel": "text",
}


def _events(seed: int, *, days: int = 2, per_day: int = 300) -> list[SaleEvent]:
    return list(SaleGenerator(seed).backfill(days, end=END, events_per_day=per_day))


def _positions(events: list[SaleEvent], *, partitions: int = 3) -> list[tuple[int, int, SaleEvent]]:
    """Kafka-like positions: one region per partition, offsets counted per partition."""
    regions = sorted({e.region for e in events})
    next_offset = [0] * partitions
    placed = []
    for event in events:
        partition = regions.index(event.region) % partitions
        placed.append((partition, next_offset[partition], event))
        next_offset[partition] += 1
    return placed


def _batch(items: list[tuple[int, int, SaleEvent]], *, topic: str = "sales") -> Batch:
    items = sorted(items, key=lambda item: item[:2])
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for partition, offset, _ in items:
        first.setdefault(partition, offset)
        last[partition] = offset + 1
    return Batch(
        topic,
        "",
        [event for _, _, event in items],
        [(partition, offset) for partition, offset, _ in items],
        [],
        first,
        last,
    )


def _consume(db: Database, writer: RollupSink, items: list[tuple[int, int, SaleEvent]]) -> None:
    """What the consumer's chain does with a batch: durable write, the rollups, a flush."""
    batch = _batch(items)
    writer.prepare(batch)  # as the runtime does, while the previous batch is written
    kept = MongoSink(db).write(batch).kept
    assert kept is not None
    writer.write(kept)
    writer.flush()


def _assert_frames(mongo_frame: pd.DataFrame, sql_frame: pd.DataFrame) -> None:
    assert len(mongo_frame) > 0
    pd.testing.assert_frame_equal(mongo_frame, sql_frame)


def _assert_same_answers(db: Database, conn: psycopg.Connection, filters: Filters | None) -> None:
    for unit in ("hour", "day"):
        _assert_frames(
            queries.revenue_over_time(db, unit=unit, filters=filters),
            sql_queries.revenue_over_time(conn, unit=unit, filters=filters),
        )
    _assert_frames(
        queries.revenue_by_region(db, filters=filters),
        sql_queries.revenue_by_region(conn, filters=filters),
    )
    _assert_frames(
        queries.top_products(db, n=10, filters=filters),
        sql_queries.top_products(conn, n=10, filters=filters),
    )


def _rollup_sales(db: Database, collection: str) -> int:
    rows = list(db[collection].aggregate([{"$group": {"_id": None, "n": {"$sum": "$sales"}}}]))
    return rows[0]["n"] if rows else 0


def _wait_until(condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def sql(endpoints: infra.Endpoints, db: Database) -> Iterator[psycopg.Connection]:
    """An admin connection to the test's own database, its tables declared."""
    ensure_indexes(db)
    with connect(endpoints.sql_admin_uri.get_secret_value(), dbname=db.name) as conn:
        ensure_schema(conn, db)
        yield conn


def test_rollups_are_exact_under_replays_and_duplicates(db: Database, sql) -> None:
    placed = _positions(_events(1))
    writer = RollupSink(db)
    _consume(db, writer, placed[:300])
    # A crash after the hook and before the commit: the batch comes back, cut differently.
    _consume(db, writer, placed[150:420])
    _consume(db, writer, placed[100:500])
    _consume(db, writer, placed[500:])
    # The same sales re-sent later at new offsets (e.g. a producer re-run with one seed).
    offsets = [1 + max(o for p, o, _ in placed if p == part) for part in range(3)]
    resent = [(p, offsets[p] + i, e) for i, (p, _, e) in enumerate(placed[:40])]
    result = MongoSink(db).write(_batch(resent))
    assert result.duplicates == 40
    assert result.kept is not None
    assert result.kept.events == []  # a re-send never reaches the rollups

    total = len(placed)
    assert db[SALES].count_documents({}) == total
    assert _rollup_sales(db, HOURLY.collection) == total
    assert _rollup_sales(db, DAILY.collection) == total
    _assert_same_answers(db, sql, None)


class _DiesBeforeCommit(RollupSink):
    """A process that dies inside a flush, once its deltas are inserted."""

    def _move(self, session, part, fence, end):  # type: ignore[no-untyped-def]
        raise SystemExit("killed")


def test_a_flush_that_dies_counts_nothing_and_what_it_held_is_counted_once(
    db: Database, sql
) -> None:
    placed = _positions(_events(2))
    batch = _batch(placed)
    kept = MongoSink(db).write(batch).kept
    assert kept is not None
    dying = _DiesBeforeCommit(db)
    dying.write(kept)
    with pytest.raises(SystemExit):
        dying.flush()
    assert db[HOURLY.collection].count_documents({}) == 0  # the transaction left nothing
    held = RollupSink(db)
    held.write(_batch(placed[:200]))  # held, then lost in a crash: never flushed
    again = MongoSink(db).write(batch).kept  # the batch read again: the sales are its own
    assert again is not None
    assert len(again.events) == len(placed)
    writer = RollupSink(db)
    writer.write(again)
    writer.flush()
    writer.flush()  # nothing held: nothing added
    assert _rollup_sales(db, HOURLY.collection) == _rollup_sales(db, DAILY.collection)
    assert _rollup_sales(db, DAILY.collection) == len(placed)
    _assert_same_answers(db, sql, Filters(regions=list(REGIONS)))


def test_two_writers_holding_the_same_records_count_them_once(db: Database, sql) -> None:
    placed = _positions(_events(5))
    kept = MongoSink(db).write(_batch(placed)).kept
    assert kept is not None
    first, second = RollupSink(db), RollupSink(db)  # e.g. a member and its replacement
    first.write(kept)
    second.write(_batch(placed[: len(placed) // 2]))
    second.flush()
    first.flush()  # adds only what is above the fences the second one moved
    second.write(_batch(placed[len(placed) // 2 :]))
    second.flush()
    assert second.pending == 0
    assert _rollup_sales(db, HOURLY.collection) == len(placed)
    assert _rollup_sales(db, DAILY.collection) == len(placed)
    assert db[FENCES].count_documents({}) == 3  # one per partition
    _assert_same_answers(db, sql, None)


def test_a_fence_moved_outside_a_flush_is_reported(db: Database, caplog) -> None:
    placed = _positions(_events(12, days=1))
    writer = RollupSink(db)
    _consume(db, writer, placed[: len(placed) // 2])
    assert writer.anomaly is None
    fence = db[FENCES].find_one({})
    assert fence is not None
    db[FENCES].update_one({"_id": fence["_id"]}, {"$set": {"next": 1_000_000_000}})  # from outside
    _consume(db, writer, placed[len(placed) // 2 :])
    assert writer.anomaly is not None
    assert f"rollup fence {fence['_id']} moved outside a flush: next=1000000000" in writer.anomaly
    assert writer.anomaly in caplog.text


def test_compaction_leaves_one_row_per_cell_with_the_same_sums(db: Database, sql) -> None:
    placed = _positions(_events(6, days=2, per_day=600))
    writer = RollupSink(db, compact_every=10**9)
    for start in range(0, len(placed), 40):  # many flushes: several deltas per cell
        _consume(db, writer, placed[start : start + 40])
    deltas = db[DAILY.collection].count_documents({})
    mongo_answers = queries.top_products(db, n=10), queries.revenue_by_region(db)
    RollupSink(db).flush()  # a new sink compacts at its first flush
    for rollup in (HOURLY, DAILY):
        ids = db[rollup.collection].distinct("_id")
        assert not any(DELTA_SEPARATOR in i for i in ids)
        assert _rollup_sales(db, rollup.collection) == len(placed)
    assert db[DAILY.collection].count_documents({}) < deltas
    pd.testing.assert_frame_equal(mongo_answers[0], sql_queries.top_products(sql, n=10))
    pd.testing.assert_frame_equal(mongo_answers[1], sql_queries.revenue_by_region(sql))
    _assert_same_answers(db, sql, None)


def test_a_live_compaction_rewrites_only_the_buckets_it_wrote_to(db: Database, sql) -> None:
    placed = sorted(_positions(_events(8, days=2, per_day=600)), key=lambda item: item[2].ts)
    last_day = END - timedelta(days=1)
    history = [item for item in placed if item[2].ts < last_day]
    live = [item for item in placed if item[2].ts >= last_day]
    _consume(db, RollupSink(db), history)
    writer = RollupSink(db, compact_every=1)  # compacts whenever its deltas match the rows
    _consume(db, writer, live[:50])  # its first flush compacted every bucket
    old = db[HOURLY.collection].find_one({HOURLY.time_field: {"$lt": last_day}})
    assert old is not None
    probe = {**old, "_id": f"{old['_id']}{DELTA_SEPARATOR}probe", "sales": 0, "quantity": 0}
    db[HOURLY.collection].insert_one({**probe, "amount": Decimal128("0")})  # an old delta
    for start in range(50, len(live), 50):
        _consume(db, writer, live[start : start + 50])
    merged = db[DAILY.collection].count_documents(
        {DAILY.time_field: {"$gte": last_day}, "_id": {"$not": {"$regex": DELTA_SEPARATOR}}}
    )
    assert merged > 0  # the sink compacted the live day...
    assert db[HOURLY.collection].find_one({"_id": probe["_id"]})  # ...and left the old ones
    for rollup in (HOURLY, DAILY):
        assert _rollup_sales(db, rollup.collection) == len(placed)
    _assert_same_answers(db, sql, None)
    compact(db[HOURLY.collection])  # every bucket: the old delta merged too
    assert db[HOURLY.collection].find_one({"_id": probe["_id"]}) is None
    assert _rollup_sales(db, HOURLY.collection) == len(placed)


def test_cells_fed_by_several_partitions_stay_exact(db: Database, sql) -> None:
    events = _events(3)
    # Keys that are not the region: every region in every partition.
    placed = [(i % 3, i // 3, e) for i, e in enumerate(events)]
    writer = RollupSink(db)
    _consume(db, writer, placed[: len(placed) // 2])
    _consume(db, writer, placed[len(placed) // 3 :])
    _consume(db, writer, placed)
    assert _rollup_sales(db, HOURLY.collection) == len(events)
    _assert_same_answers(db, sql, None)


def test_sql_queries_match_mongo_for_every_filter(db: Database, sql) -> None:
    events = _events(4, days=3)
    _consume(db, RollupSink(db), _positions(events))
    products = sorted({e.product for e in events})[:5]
    day = END - timedelta(days=2)
    for filters in (
        Filters(regions=list(REGIONS)),
        Filters(start=day, end=day + timedelta(days=1), regions=["Île-de-France"]),
        Filters(start=day + timedelta(hours=5), end=day + timedelta(hours=30)),
        Filters(products=products, regions=list(REGIONS)),
        Filters(start=day + timedelta(minutes=90), products=products),  # falls back to sales
    ):
        _assert_same_answers(db, sql, filters)
    minutes = Filters(
        start=day + timedelta(hours=10), end=day + timedelta(hours=16), regions=list(REGIONS)
    )  # shop hours: the generator sells little at night
    _assert_frames(
        queries.revenue_over_time(db, unit="minute", filters=minutes),
        sql_queries.revenue_over_time(sql, unit="minute", filters=minutes),
    )
    empty = Filters(regions=[])
    assert sql_queries.revenue_by_region(sql, filters=empty).empty
    assert sql_queries.top_products(sql, filters=empty).empty


def test_tables_are_listed_by_pg_catalog_with_their_types(db: Database, sql) -> None:
    _consume(db, RollupSink(db), _positions(_events(5, days=1)))
    assert ensure_schema(sql, db) == tuple(TABLES)  # idempotent
    with pytest.raises(ValueError, match="MongoDB 'elsewhere'"):
        ensure_schema(sql, db.client["elsewhere"])
    listed = sql.execute(
        "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'v', 'm') AND n.nspname = 'public' ORDER BY c.relname"
    ).fetchall()
    assert listed == sorted((t, "r") for t in TABLES)
    tables = sql.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'public' ORDER BY table_name"
    ).fetchall()
    assert tables == sorted((t, "BASE TABLE") for t in TABLES)
    assert dict(_columns(sql, SALES)).items() >= SALES_TYPES.items()
    hourly = dict(_columns(sql, HOURLY_TABLE))
    assert hourly["hour_start"] == "timestamp with time zone"
    assert hourly["amount"] == "numeric"
    assert "fence" not in hourly


def test_declared_tables_read_before_and_after_the_first_sale(db: Database, sql) -> None:
    for table in TABLES:
        assert sql.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,)
    events = _events(9, days=1)
    _consume(db, RollupSink(db), _positions(events))
    assert sql.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (len(events),)
    region = events[0].region
    row = sql.execute(
        f"SELECT SUM(sales), SUM(amount) FROM {DAILY_TABLE} WHERE region = %s", (region,)
    ).fetchone()
    mine = [e for e in events if e.region == region]
    assert row == (len(mine), Decimal(sum(round(e.amount * 100) for e in mine)) / 100)


def test_sales_reads_the_mongo_count_and_revenue(db: Database, sql) -> None:
    events = _events(6)
    _consume(db, RollupSink(db), _positions(events))
    assert sql.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (len(events),)
    rows = sql.execute(
        f"SELECT region, SUM(amount) FROM {SALES} GROUP BY region ORDER BY region"
    ).fetchall()
    by_region = queries.revenue_by_region(db).set_index("region")["revenue"]
    assert {r: round(v, 2) for r, v in rows} == by_region.to_dict()
    first = min(events, key=lambda e: (e.ts, e.event_id))
    row = sql.execute(
        f"SELECT _id, ts, amount FROM {SALES} WHERE _id = %s", (first.event_id,)
    ).fetchone()
    assert row == (first.event_id, first.ts, first.amount)


def test_live_through_the_consumer_with_replays(
    settings: Settings, endpoints: infra.Endpoints, db: Database, sql, topic: str, group_id: str
) -> None:
    stack = Stack(settings.model_copy(update={"topic": topic, "db": db.name}), endpoints)
    events = _events(7, days=2, per_day=400)
    half = len(events) // 2
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)

    def produce(chunk: list[SaleEvent]) -> None:
        for event in chunk:
            producer.send(topic, key=event.region.encode(), value=encode(event))
        producer.flush()

    def consume(group: str, count: int, *, max_batch: int) -> None:
        stack.consumer(group_id=group, max_batch=max_batch).run(max_events=count)

    try:
        produce(events[:half])
        consume(group_id, half, max_batch=500)
        assert sql.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (half,)
        assert sql.execute(f"SELECT SUM(sales) FROM {HOURLY_TABLE}").fetchone() == (half,)
        produce(events[half:])
        consume(group_id, len(events) - half, max_batch=500)
        # Same connection, nothing restarted: the new sales are there.
        assert sql.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (len(events),)
        assert sql.execute(f"SELECT SUM(sales) FROM {DAILY_TABLE}").fetchone() == (len(events),)
        # Everything re-read from offset 0 in other batch sizes: what a crash before every
        # commit would replay. Nothing is counted twice.
        consume(f"{group_id}_replay", len(events), max_batch=37)
    finally:
        producer.close()
        stack.close()
    assert sql.execute(f"SELECT SUM(sales) FROM {HOURLY_TABLE}").fetchone() == (len(events),)
    assert sql.execute(f"SELECT SUM(sales) FROM {DAILY_TABLE}").fetchone() == (len(events),)
    _assert_same_answers(db, sql, Filters(regions=list(REGIONS)))


def test_cli_sql_setup(
    settings: Settings, endpoints: infra.Endpoints, db: Database, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("SALES_STREAM_MODE", "embedded")
    monkeypatch.setenv("SALES_STREAM_DB", db.name)
    monkeypatch.setenv("SALES_STREAM_STATE_DIR", str(tmp_path / "nothing"))
    assert cli.main(["sql", "setup"]) == 2
    assert "not running" in capsys.readouterr().err
    monkeypatch.setenv("SALES_STREAM_STATE_DIR", str(settings.state_dir))
    assert cli.main(["sql", "setup"]) == 0
    assert f"{', '.join(TABLES)} ready at postgresql://" in capsys.readouterr().out
    with connect(endpoints.sql_admin_uri.get_secret_value(), dbname=db.name) as conn:
        listed = conn.execute("SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'v'")
        assert listed.fetchall() == []


def test_bad_sql_gets_an_error_and_the_endpoint_stays_up(endpoints: infra.Endpoints, sql) -> None:
    for statement in ("SELEC 1", "SELECT * FROM no_such_view", "SELECT 1/0"):
        with pytest.raises(psycopg.Error):
            sql.execute(statement)
    assert sql.execute("SELECT 41 + 1").fetchone() == (42,)
    with connect(endpoints.sql_uri) as other:
        assert other.execute("SELECT 1").fetchone() == (1,)


def test_both_endpoints_survive_sigkill(tmp_path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")
    events = _events(8, days=1)
    with infra.up(settings) as endpoints:
        client = mongo_client(endpoints.mongo_uri.get_secret_value())
        db = client[settings.db]
        _consume(db, RollupSink(db), _positions(events))
        with connect(endpoints.sql_uri) as conn:  # the BI login: up declared the schema
            assert conn.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (len(events),)
        infra.embedded.stop_database(settings.state_dir, kill=True)
        with pytest.raises(psycopg.OperationalError):
            connect(endpoints.sql_uri).close()
        infra.embedded.restart_database(settings)
        assert db[SALES].count_documents({}) == len(events)
        _wait_until(lambda: _reachable(endpoints.sql_uri))
        with connect(endpoints.sql_uri) as conn:
            assert conn.execute(f"SELECT COUNT(*) FROM {SALES}").fetchone() == (len(events),)
            assert conn.execute(f"SELECT SUM(sales) FROM {HOURLY_TABLE}").fetchone() == (
                len(events),
            )
        client.close()


def _columns(conn: psycopg.Connection, relation: str) -> list[tuple[str, str]]:
    """Columns and types of a relation as pg_catalog lists them (what pgjdbc reads)."""
    return conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "WHERE c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (relation,),
    ).fetchall()


def _reachable(uri: str) -> bool:
    try:
        connect(uri).close()
    except psycopg.OperationalError:
        return False
    return True
