"""The BI login's SQL wall, attacked through both protocols, and Tableau's workload through it.

Every statement of `ATTACKS` runs as the read-only login through the simple protocol
(psycopg's ``ClientCursor``) and the extended one (``prepare=True``: Parse/Bind/Execute), each
outside and inside a transaction, on a fresh connection: each is refused with a SQLSTATE, and
afterwards every MongoDB collection of the database has the count and content hash it had.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import bson
import pandas as pd
import psycopg
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from sales_stream import infra
from sales_stream.config import Settings
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read import sql_queries
from sales_stream.read.mongo_queries import Filters
from sales_stream.sinks.mongo import MongoSink
from sales_stream.sinks.rollups import RollupSink
from sales_stream.sql import connect
from sales_stream.sql.schema import DAILY_TABLE, HOURLY_TABLE, TABLES
from sales_stream.store import DEAD_LETTERS, FENCES, SALES, ensure_indexes
from sales_stream.stream import Batch

INTERNAL = (DEAD_LETTERS, FENCES, "__sql_catalog__", "__sql_views__")
DECLARED = (SALES, HOURLY_TABLE, DAILY_TABLE)
SPELLINGS = ("{t}", "public.{t}", '"{t}"', 'public."{t}"', "{T}", "/**/{t}")


def _spelled(template: str, names: tuple[str, ...]) -> list[str]:
    """``template`` for each name, in turn spelled each way of `SPELLINGS`."""
    return [
        template.format(rel=SPELLINGS[i % len(SPELLINGS)].format(t=name, T=name.upper()))
        for i, name in enumerate(names)
    ]


ATTACKS: list[str] = [
    # Writes to every relation, quoted, qualified, upper case, behind a comment.
    *(
        template.format(rel=spelling.format(t=name, T=name.upper()))
        for name in (*DECLARED, DEAD_LETTERS, FENCES)
        for template, spelling in zip(
            (
                "INSERT INTO {rel} (_id) VALUES ('x')",
                "UPDATE {rel} SET _id = 'x'",
                "DELETE FROM {rel}",
                "TRUNCATE {rel}",
                "DROP TABLE {rel}",
                "delete from {rel} where true",
            ),
            SPELLINGS,
            strict=True,
        )
    ),
    f"UPDATE {FENCES} SET next = 1000000000",
    f"update public.{FENCES} set next = 1000000000",
    f"CREATE OR REPLACE VIEW intruder AS SELECT * FROM {SALES}",
    f"ALTER TABLE {HOURLY_TABLE} RENAME TO gone",
    f"ALTER TABLE {SALES} ADD COLUMN intruder integer",
    f"ALTER TABLE {SALES} RENAME TO gone",
    f"DROP TABLE IF EXISTS {SALES}, {DEAD_LETTERS}",
    "DROP SCHEMA public CASCADE",
    "DROP INDEX a, b",
    f"DROP INDEX {SALES}_pkey",
    f"DROP INDEX IF EXISTS {SALES}_pkey, x",
    f"CREATE INDEX intruder ON {SALES} (region)",
    f"CREATE UNIQUE INDEX intruder ON {DEAD_LETTERS} (_id)",
    "CREATE TABLE intruder (a integer)",
    "CREATE TABLE public.intruder (a integer)",
    "CREATE TABLE pg_temp.intruder (a integer)",
    "CREATE UNLOGGED TABLE intruder (a integer)",
    f"CREATE TABLE intruder AS SELECT * FROM {SALES}",
    "CREATE SCHEMA intruder",
    "CREATE SEQUENCE intruder",
    "CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql",
    "CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'",
    f"CREATE RULE r AS ON SELECT TO {SALES} DO INSTEAD NOTHING",
    "CREATE ROLE intruder",
    "ALTER ROLE tableau SUPERUSER",
    f"GRANT ALL ON {SALES} TO tableau",
    f"REVOKE ALL ON {SALES} FROM tableau",
    f"COMMENT ON TABLE {SALES} IS 'x'",
    # The temporary-table attacks and their variants.
    f"CREATE TEMP TABLE {DEAD_LETTERS} (a int)",
    f'CREATE TEMPORARY TABLE "{DEAD_LETTERS}" (a int)',
    f"CREATE TEMP TABLE {FENCES} (_id text, next bigint)",
    f"CREATE TEMP TABLE {SALES} (a int)",
    f"CREATE TEMP TABLE {DAILY_TABLE} (a int)",
    "CREATE TEMP TABLE __sql_catalog__ (a int)",
    f"CREATE TEMP TABLE {DEAD_LETTERS.upper()} (a int)",
    f"CREATE TEMP TABLE public.{DEAD_LETTERS} (a int)",
    f"CREATE TEMP TABLE intruder (LIKE {DEAD_LETTERS})",
    f"CREATE TEMP TABLE intruder AS SELECT * FROM {DEAD_LETTERS}",
    f"SELECT * INTO TEMP intruder FROM {SALES}",
    "CREATE TEMP VIEW intruder AS SELECT 1",
    "CREATE TEMP SEQUENCE intruder",
    f"CREATE TEMP TABLE {DEAD_LETTERS} (a int); DELETE FROM public.{DEAD_LETTERS}",
    f"CREATE TEMP TABLE {DEAD_LETTERS} (a int); INSERT INTO public.{DEAD_LETTERS} VALUES (1)",
    f"CREATE TEMP TABLE {FENCES} (next int); UPDATE public.{FENCES} SET next = 1000000000",
    f"SET search_path = pg_catalog; CREATE TEMP TABLE {DEAD_LETTERS} (a int); "
    f"DELETE FROM public.{DEAD_LETTERS}",
    f"SET search_path = pg_catalog; DELETE FROM public.{DEAD_LETTERS}",
    f"SET search_path = pg_temp, public; DELETE FROM {DEAD_LETTERS}",
    "CREATE TEMP TABLE tmp_ok (a int); DELETE FROM public.tmp_ok",
    "CREATE TEMP TABLE tmp_ok (a int); DROP TABLE public.tmp_ok",
    f"CREATE TEMP TABLE tmp_ok (a int); INSERT INTO tmp_ok SELECT 1 FROM {DEAD_LETTERS}",
    f"CREATE TEMP TABLE tmp_ok (a int); DROP TABLE tmp_ok; DELETE FROM {SALES}",
    f"CREATE TEMP TABLE tmp_ok (a int); DELETE FROM tmp_ok USING {DEAD_LETTERS} d",
    f"CREATE TEMP TABLE tmp_ok (a int); UPDATE tmp_ok SET a = 1 FROM {FENCES} f",
    "CREATE TEMP TABLE tmp_ok (a int); DROP TABLE tmp_ok, dead_letters",
    # Reads of what is not declared readable.
    *_spelled("SELECT * FROM {rel}", (*INTERNAL, DEAD_LETTERS, FENCES)),
    f'SELECT * FROM "{DEAD_LETTERS.upper()}"',
    f'SELECT * FROM "PUBLIC"."{DEAD_LETTERS}"',
    f"SELECT count(*) FROM {SALES} WHERE _id IN (SELECT _id FROM {DEAD_LETTERS})",
    f"SELECT (SELECT max(next) FROM {FENCES})",
    f"SELECT * FROM {SALES} s JOIN {DEAD_LETTERS} d ON d._id = s._id",
    f"SELECT region FROM {SALES} UNION SELECT raw FROM {DEAD_LETTERS}",
    f"SELECT * FROM {SALES} WHERE EXISTS (SELECT 1 FROM {FENCES})",
    f"WITH {DEAD_LETTERS} AS (SELECT * FROM {DEAD_LETTERS}) SELECT * FROM {DEAD_LETTERS}",
    f"WITH x AS (SELECT * FROM {DEAD_LETTERS}) SELECT * FROM x",
    f"SELECT * FROM sales_db.public.{SALES}",
    f"SELECT * FROM pg_temp.{DEAD_LETTERS}",
    f"DECLARE c CURSOR WITH HOLD FOR SELECT * FROM {DEAD_LETTERS}",
    f"DECLARE c CURSOR WITH HOLD FOR DELETE FROM {SALES}",
    f'DECLARE "for" CURSOR WITH HOLD FOR SELECT raw FROM {DEAD_LETTERS}',
    f"EXPLAIN ANALYZE DELETE FROM {SALES}",
    f"EXPLAIN ANALYZE SELECT * FROM {SALES}",
    f"EXPLAIN (ANALYZE) DELETE FROM {SALES}",
    f"EXPLAIN SELECT * FROM {DEAD_LETTERS}",
    # CTEs that write.
    f"WITH gone AS (DELETE FROM {SALES} RETURNING *) SELECT count(*) FROM gone",
    f"WITH x AS (UPDATE {FENCES} SET next = 0 RETURNING *) SELECT 1",
    f"WITH x AS (INSERT INTO {DEAD_LETTERS} (_id) VALUES ('x') RETURNING *) SELECT * FROM x",
    f"SELECT * FROM (WITH x AS (DELETE FROM {SALES} RETURNING 1) SELECT * FROM x) y",
    f"WITH x AS (DELETE FROM {SALES} RETURNING 1) INSERT INTO tmp_ok SELECT 1",
    f"MERGE INTO {SALES} USING {HOURLY_TABLE} v ON true WHEN MATCHED THEN DELETE",
    # COPY, whatever the protocol.
    f"COPY {DEAD_LETTERS} TO STDOUT",
    f"copy {DEAD_LETTERS} to stdout with (format csv)",
    f"COPY (SELECT * FROM {DEAD_LETTERS}) TO STDOUT",
    f"COPY (SELECT * FROM {SALES}) TO STDOUT",
    f"COPY {SALES} FROM STDIN",
    f"COPY {SALES} TO '/tmp/sales_stream_intruder'",
    f"COPY {SALES} TO PROGRAM 'id'",
    f"SELECT 1; COPY {DEAD_LETTERS} TO STDOUT",
    # Functions that change state or run SQL text.
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT set_config('search_path', 'pg_catalog', false)",
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)",
    "SELECT \"set_config\"('search_path', 'pg_catalog', false)",
    "SELECT SET_CONFIG('search_path', 'pg_catalog', false)",
    f"SELECT region FROM {SALES} WHERE set_config('x.y', region, false) IS NULL",
    "SELECT nextval('s')",
    "SELECT setval('s', 1)",
    "SELECT pg_notify('channel', 'payload')",
    "SELECT lo_creat(-1)",
    "SELECT lo_unlink(1)",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_sleep(0)",
    "SELECT pg_terminate_backend(1)",
    "SELECT pg_cancel_backend(1)",
    "SELECT pg_reload_conf()",
    f"SELECT query_to_xml('select * from {DEAD_LETTERS}', true, true, '')",
    f"SELECT table_to_xml('{DEAD_LETTERS}', true, true, '')",
    "SELECT * FROM dblink('dbname=x', 'select 1') AS t(a int)",
    "SELECT pg_read_file('/etc/passwd')",
    f"SELECT * FROM {SALES} FOR UPDATE",
    f"SELECT * FROM {SALES} FOR SHARE",
    # Blocks, procedures, prepared statements, session identity, pub/sub, two-phase commit.
    f"DO $$ BEGIN DELETE FROM {SALES}; END $$",
    f"DO $$ BEGIN EXECUTE 'DELETE FROM {DEAD_LETTERS}'; END $$",
    "DO 'BEGIN NULL; END'",
    "DO LANGUAGE plpgsql $$ BEGIN PERFORM pg_advisory_lock(1); END $$",
    "CALL p()",
    f"PREPARE p AS DELETE FROM {SALES}",
    f"PREPARE p (text) AS INSERT INTO {DEAD_LETTERS} (_id) VALUES ($1)",
    f"PREPARE p AS SELECT * FROM {DEAD_LETTERS}",
    f"PREPARE p AS SELECT * FROM {SALES}; EXECUTE p",
    "EXECUTE p",
    "PREPARE TRANSACTION 'x'",
    "COMMIT PREPARED 'x'",
    "ROLLBACK PREPARED 'x'",
    "SET ROLE admin",
    "SET SESSION AUTHORIZATION admin",
    "SET standard_conforming_strings = off",
    "SET LOCAL standard_conforming_strings TO off",
    "SET session_replication_role = replica",
    "NOTIFY channel",
    "NOTIFY channel, 'payload'",
    "LISTEN channel",
    "UNLISTEN *",
    # Maintenance and everything else off the list.
    f"LOCK TABLE {SALES}",
    f"VACUUM {SALES}",
    f"ANALYZE {SALES}",
    f"CLUSTER {SALES}",
    f"REINDEX TABLE {SALES}",
    "CHECKPOINT",
    "REFRESH MATERIALIZED VIEW intruder",
    "LOAD 'intruder'",
    f"SECURITY LABEL ON TABLE {SALES} IS 'x'",
    "IMPORT FOREIGN SCHEMA x FROM SERVER y INTO public",
    # Several statements in one string: the allowed ones first.
    f"SELECT 1; DELETE FROM {SALES}",
    f"select 1;delete from {DEAD_LETTERS}",
    f"SHOW search_path; TRUNCATE {FENCES}",
    f"BEGIN; DELETE FROM {SALES}; COMMIT",
    f"SET search_path = public; UPDATE {FENCES} SET next = 0",
    f"SELECT 1 /* ; */; DROP TABLE {SALES}",
    f"-- a comment\nDELETE FROM {SALES}",
    f"DeLeTe FrOm {SALES.upper()}",
]
#: Only the syntax error of a statement the engine cannot parse stands for a refusal too.
REFUSALS = {"42501", "42601"}


def _fingerprint(db: Database) -> dict[str, tuple[int, str]]:
    """Every collection (temporary tables aside): its count and a hash of its documents."""
    shown = {}
    for name in sorted(db.list_collection_names()):
        if name.startswith("pg_temp_"):
            continue
        digest = hashlib.sha256()
        documents = sorted(db[name].find(), key=lambda doc: bson.encode({"k": doc["_id"]}))
        for document in documents:
            digest.update(bson.encode(document))
        shown[name] = (len(documents), digest.hexdigest())
    return shown


def pd_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """The same non-empty frame."""
    assert len(left) > 0
    pd.testing.assert_frame_equal(left, right)


def _no_temporary_tables(db: Database) -> bool:
    return not any(name.startswith("pg_temp_") for name in db.list_collection_names())


def _wait_until(condition, *, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def bi_db(settings: Settings, endpoints: infra.Endpoints, mongo: MongoClient) -> Iterator[Database]:
    """The BI login's database with sales, rollups, a dead letter and fences in it."""
    db = mongo[settings.db]
    events = list(SaleGenerator(23).backfill(2, events_per_day=200))
    ensure_indexes(db)
    MongoSink(db).write(Batch.of(events))
    rollups = RollupSink(db)
    rollups.write(Batch.of(events))
    rollups.flush()
    db[DEAD_LETTERS].insert_one({"_id": "dl-wall", "raw": '{"password":"hunter2"}', "reason": "x"})
    yield db
    mongo.drop_database(settings.db)


def _run(uri: str, sql: str, *, extended: bool, in_transaction: bool) -> str | None:
    """Run ``sql`` on a fresh BI connection; the SQLSTATE it was refused with, or None."""
    with connect(uri) as conn:
        try:
            if in_transaction:
                with conn.transaction():
                    _execute(conn, sql, extended=extended)
            else:
                _execute(conn, sql, extended=extended)
        except psycopg.Error as exc:
            assert conn.execute("SELECT 1").fetchone() == (1,)  # the session is still usable
            return exc.sqlstate
    return None


def _execute(conn: psycopg.Connection, sql: str, *, extended: bool) -> None:
    if extended:
        conn.execute(sql, prepare=True)
    else:
        psycopg.ClientCursor(conn).execute(sql)


def test_at_least_150_attacks() -> None:
    assert len(ATTACKS) >= 150
    assert len(set(ATTACKS)) == len(ATTACKS)


@pytest.mark.parametrize(
    ("extended", "in_transaction"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["simple", "simple-in-transaction", "extended", "extended-in-transaction"],
)
def test_every_attack_is_refused_and_nothing_changes(
    endpoints: infra.Endpoints, bi_db: Database, extended: bool, in_transaction: bool
) -> None:
    before = _fingerprint(bi_db)
    assert set(INTERNAL) - {"__sql_views__"} <= set(before)  # that one exists once a view does
    outcomes = {
        sql: _run(endpoints.sql_uri, sql, extended=extended, in_transaction=in_transaction)
        for sql in ATTACKS
    }
    passed = [sql for sql, state in outcomes.items() if state is None]
    assert passed == []
    odd = {sql: state for sql, state in outcomes.items() if state not in REFUSALS}
    assert odd == {}
    _wait_until(lambda: _no_temporary_tables(bi_db))
    assert _fingerprint(bi_db) == before


def test_the_catalogue_lists_only_the_readable_relations(
    endpoints: infra.Endpoints, bi_db: Database
) -> None:
    with connect(endpoints.sql_uri) as conn:
        names = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relkind IN ('r','v','m','p')"
            )
        }
        tables = {n for (n,) in conn.execute("SELECT table_name FROM information_schema.tables")}
        columns = conn.execute(
            "SELECT DISTINCT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    readable = set(TABLES)
    assert {n for n in names if not n.startswith("pg_")} == readable
    assert {n for n in tables if not n.startswith(("pg_", "_pg"))} >= readable
    assert not set(INTERNAL) & (names | tables)
    assert {name for (name,) in columns} <= readable


def test_a_temporary_table_for_a_big_filter_and_a_cursor(
    endpoints: infra.Endpoints, bi_db: Database
) -> None:
    regions = sorted(bi_db[SALES].distinct("region"))[:3]
    expected = bi_db[SALES].count_documents({"region": {"$in": regions}})
    with connect(endpoints.sql_uri) as conn:
        conn.execute('CREATE TEMPORARY TABLE "#Tableau_2_Filter" ("region" TEXT)')
        with conn.cursor() as cursor:
            cursor.executemany(
                'INSERT INTO "#Tableau_2_Filter" VALUES (%s)', [(r,) for r in regions]
            )
        joined = conn.execute(
            f'SELECT count(*) FROM {SALES} v JOIN "#Tableau_2_Filter" f ON f.region = v.region'
        ).fetchone()
        assert joined == (expected,)
        conn.execute('DROP TABLE "#Tableau_2_Filter"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute('INSERT INTO "#Tableau_2_Filter" VALUES (%s)', ("x",))
        with conn.transaction(), conn.cursor(name="tableau_cursor") as cursor:
            cursor.execute(f"SELECT region FROM {SALES}")  # a server-side cursor: DECLARE/FETCH
            fetched = cursor.fetchmany(25) + cursor.fetchall()
        assert len(fetched) == bi_db[SALES].count_documents({})
    _wait_until(lambda: _no_temporary_tables(bi_db))


def test_the_dashboards_queries_as_the_bi_login(
    endpoints: infra.Endpoints, bi_db: Database
) -> None:
    regions = sorted(bi_db[SALES].distinct("region"))[:2]
    with connect(endpoints.sql_uri) as conn:
        for filters in (None, Filters(regions=regions)):
            for unit in ("hour", "day"):
                pd_equal(
                    queries.revenue_over_time(bi_db, unit=unit, filters=filters),
                    sql_queries.revenue_over_time(conn, unit=unit, filters=filters),
                )
            pd_equal(
                queries.revenue_by_region(bi_db, filters=filters),
                sql_queries.revenue_by_region(conn, filters=filters),
            )
            pd_equal(
                queries.top_products(bi_db, n=10, filters=filters),
                sql_queries.top_products(conn, n=10, filters=filters),
            )
