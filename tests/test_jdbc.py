"""The PostgreSQL endpoint as Tableau's read-only login, through pgjdbc and psycopg.

Everything here runs against servers started by ``python -m sales_stream up`` alone (module
fixture): no ``sql setup``. `jdbc/TableauProbe.java` is compiled at test time: it lists the
tables, the views and the columns of ``sales`` with ``DatabaseMetaData``, runs two
Tableau-style queries (custom SQL over ``sales``, a table query over a rollup), or tries
statements given on stdin (``--try``). Every relation listed serves Tableau's cursors.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from pymongo.database import Database

from sales_stream import infra
from sales_stream.clients import mongo_client
from sales_stream.config import Settings
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read.mongo_queries import Filters
from sales_stream.sinks.mongo import MongoSink
from sales_stream.sinks.rollups import RollupSink
from sales_stream.sql import connect
from sales_stream.sql.schema import DAILY_TABLE, HOURLY_TABLE, TABLES
from sales_stream.store import DEAD_LETTERS, SALES, ensure_indexes
from sales_stream.stream import Batch

PGJDBC = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).parent / "jdbc" / "TableauProbe.java"
END = datetime(2025, 4, 2, tzinfo=UTC)
SALES_JDBC_TYPES = [
    ("_id", "text"),
    ("ts", "timestamptz"),
    ("product", "text"),
    ("category", "text"),
    ("region", "text"),
    ("city", "text"),
    ("lat", "float8"),
    ("lon", "float8"),
    ("quantity", "int4"),
    ("unit_price", "float8"),
    ("amount", "float8"),
    ("currency", "text"),
    ("channel", "text"),
    ("schema_version", "int4"),
    ("ingested_at", "timestamptz"),
]
RELATIONS = (SALES, HOURLY_TABLE, DAILY_TABLE)
WRITES = [
    *(f"INSERT INTO {name} (region) VALUES ('x')" for name in RELATIONS),
    *(f"UPDATE {name} SET region = 'x'" for name in RELATIONS),
    *(f"DELETE FROM {name}" for name in RELATIONS),
    *(f"DROP TABLE {name}" for name in (SALES, HOURLY_TABLE, DAILY_TABLE)),
    f"TRUNCATE {SALES}",
    "CREATE TABLE intruder (a integer)",
    "CREATE OR REPLACE VIEW intruder AS SELECT 1 AS one",
    f"ALTER TABLE {SALES} ADD COLUMN intruder integer",
    f"WITH gone AS (DELETE FROM {SALES} RETURNING *) SELECT count(*) FROM gone",
]
#: Refused too, with 42501 or (when the database answers first) 42P01 "does not exist".
HIDDEN = [
    f"SELECT * FROM {DEAD_LETTERS}",
    f"SELECT * FROM public.{DEAD_LETTERS}",
    f"SELECT count(*) FROM {SALES} WHERE _id IN (SELECT _id FROM {DEAD_LETTERS})",
    f"SELECT * INTO intruder FROM {SALES}",
]

_missing = [name for name in ("javac", "java") if shutil.which(name) is None]
if not PGJDBC.exists():
    _missing.append(str(PGJDBC))
needs_jdbc = pytest.mark.skipif(
    bool(_missing),
    reason=f"needs a JDK and pgjdbc (apt: default-jdk-headless libpostgresql-jdbc-java); "
    f"missing: {', '.join(_missing)}",
)


@dataclass(frozen=True)
class Served:
    """What ``python -m sales_stream up`` printed, and the database behind it."""

    sql_uri: str
    db: Database

    @property
    def jdbc_url(self) -> str:
        address = urlsplit(self.sql_uri)
        return f"jdbc:postgresql://{address.hostname}:{address.port}{address.path}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The services of a ``python -m sales_stream up`` run with nothing else done."""
    home = tmp_path_factory.mktemp("up")
    env = {**os.environ, "SALES_STREAM_STATE_DIR": str(home / "state")}
    up = subprocess.Popen(
        [sys.executable, "-m", "sales_stream", "up"],
        env=env, cwd=home, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    shown = {}
    for line in up.stdout:
        name, _, value = line.strip().partition(": ")
        shown[name] = value
        if line.startswith("up;"):
            break
    assert "***" in shown["mongodb"]  # printed without its password
    endpoints = infra.status(Settings(_env_file=None, state_dir=home / "state"))
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    try:
        yield Served(shown["postgresql"], client[urlsplit(shown["postgresql"]).path.strip("/")])
    finally:
        client.close()
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)


@pytest.fixture(scope="module")
def sales(served: Served) -> list:
    """Three days of sales stored the way the consumer stores them (sales and rollups)."""
    events = list(SaleGenerator(11).backfill(3, end=END, events_per_day=300))
    ensure_indexes(served.db)
    MongoSink(served.db).write(Batch.of(events))
    rollups = RollupSink(served.db)
    rollups.write(Batch.of(events))
    rollups.flush()
    served.db[DEAD_LETTERS].insert_one({"_id": "dl-1", "raw": "secret payload", "reason": "x"})
    return events


@pytest.fixture(scope="module")
def probe_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jdbc")
    subprocess.run(
        ["javac", "-cp", str(PGJDBC), "-d", str(out), str(PROBE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _probe(classes: Path, *args: str, stdin: str | None = None) -> list[list[str]]:
    run = subprocess.run(
        ["java", "-cp", f"{classes}:{PGJDBC}", "TableauProbe", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [line.split("\t") for line in run.stdout.splitlines()]


def _counts(db: Database) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in (SALES, HOURLY_TABLE, DAILY_TABLE)}


def _listed(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables "
        "WHERE table_schema = 'public' ORDER BY table_name"
    ).fetchall()


@needs_jdbc
def test_up_alone_lists_the_tables_and_views_over_pgjdbc(served: Served, probe_classes) -> None:
    lines = _probe(probe_classes, served.jdbc_url, "tableau", "2025-01-01 00:00:00",
                   "2025-01-02 00:00:00", "Bretagne", "x")  # fmt: skip
    assert sorted(line[1:] for line in lines if line[0] == "TABLE") == sorted(
        [[name, "TABLE"] for name in TABLES]
    )


@needs_jdbc
def test_tableau_style_session_over_pgjdbc(served: Served, sales, probe_classes: Path) -> None:
    db = served.db
    start, end = END - timedelta(days=2), END
    regions = ["Île-de-France", "Bretagne", "Hauts-de-France"]
    products = sorted({e.product for e in sales})[::2]
    lines = _probe(
        probe_classes,
        served.jdbc_url,
        "tableau",
        start.strftime("%Y-%m-%d %H:%M:%S"),
        end.strftime("%Y-%m-%d %H:%M:%S"),
        ",".join(regions),
        ",".join(products),
    )
    assert [tuple(line[1:3]) for line in lines if line[0] == "COLUMN"] == SALES_JDBC_TYPES
    expected = queries.revenue_over_time(
        db, unit="day", filters=Filters(start=start, end=end, regions=regions, products=products)
    )
    rows = [line[1:] for line in lines if line[0] == "ROW"]
    assert rows == [
        [bucket.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{revenue:.2f}", str(sales)]
        for bucket, revenue, sales in expected.itertuples(index=False)
    ]
    assert len(rows) == 2
    top = queries.top_products(db, n=10, filters=Filters(regions=regions))
    assert [line[1:] for line in lines if line[0] == "TOP"] == [
        [row.product, f"{row.revenue:.2f}"] for row in top.itertuples(index=False)
    ]


@needs_jdbc
def test_bi_login_cannot_write_over_pgjdbc(served: Served, sales, probe_classes: Path) -> None:
    before = _counts(served.db)
    statements = "\n".join([*WRITES, *HIDDEN])
    lines = _probe(probe_classes, served.jdbc_url, "tableau", "--try", stdin=statements)
    assert [line[0] for line in lines[: len(WRITES)]] == ["ERROR 42501"] * len(WRITES), lines
    assert {line[0] for line in lines[len(WRITES) :]} <= {"ERROR 42501", "ERROR 42P01"}, lines
    assert _counts(served.db) == before
    assert before[SALES] == len(sales)


def test_bi_login_reads_but_never_writes_over_psycopg(served: Served, sales) -> None:
    before = _counts(served.db)
    with connect(served.sql_uri) as conn:
        listed = _listed(conn)
        assert conn.execute(f"SELECT count(*) FROM {SALES}").fetchone() == (len(sales),)
        assert conn.execute(f"SELECT sum(sales) FROM {DAILY_TABLE}").fetchone() == (len(sales),)
        for statement in WRITES:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="read-only"):
                conn.execute(statement)
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="COPY"),
            conn.cursor().copy(f"COPY {SALES} FROM STDIN") as copy,
        ):
            copy.write_row(["x"])
        for statement in HIDDEN:
            with pytest.raises(
                (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable)
            ):
                conn.execute(statement)
        assert _listed(conn) == listed
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session is still usable
    assert _counts(served.db) == before
    assert served.db[DEAD_LETTERS].count_documents({}) == 1


def test_bi_login_may_use_temporary_tables_and_cursors(served: Served, sales) -> None:
    regions = sorted({e.region for e in sales})[:2]
    with connect(served.sql_uri) as conn:
        # SecantusDB has no LOCAL / ON COMMIT forms; its temporary tables are per session.
        conn.execute('CREATE TEMPORARY TABLE "#Tableau_1_Filter" ("region" TEXT)')
        for region in regions:
            conn.execute('INSERT INTO "#Tableau_1_Filter" VALUES (%s)', (region,))
        got = conn.execute(
            f"SELECT count(*) FROM {SALES} WHERE region IN "
            '(SELECT "region" FROM "#Tableau_1_Filter")'
        ).fetchone()
        assert got == (sum(e.region in regions for e in sales),)
        conn.execute('DROP TABLE "#Tableau_1_Filter"')
        with conn.transaction():
            conn.execute(f'DECLARE "c1" CURSOR FOR SELECT region FROM {SALES}')
            assert len(conn.execute('FETCH 10 FROM "c1"').fetchall()) == 10
            conn.execute('CLOSE "c1"')


@pytest.mark.parametrize(
    ("user", "database", "message"),
    [
        ("admin", None, 'role "admin" is not permitted'),
        ("tableau", "other_db", 'database "other_db" does not exist'),
    ],
)
def test_only_the_configured_login_and_database(
    served: Served, user: str, database: str | None, message: str
) -> None:
    address = urlsplit(served.sql_uri)
    uri = f"postgresql://{user}@{address.hostname}:{address.port}/{database or address.path[1:]}"
    with pytest.raises(psycopg.OperationalError, match=message):
        connect(uri).close()


def test_every_relation_the_bi_login_lists_serves_tableaus_cursor(served: Served, sales) -> None:
    """What Tableau does with a relation: ``DECLARE … CURSOR WITH HOLD``, then ``FETCH``."""
    with connect(served.sql_uri) as conn:  # the read-only login
        listed = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_name"
        ).fetchall()
        assert listed == sorted(("public", name) for name in TABLES)
        for schema, name in listed:
            relation = f'"{schema}"."{name}"'
            plain = conn.execute(f"SELECT * FROM {relation}").fetchall()
            assert plain, name
            with conn.transaction():  # WITH HOLD: the cursor outlives its transaction
                conn.execute(f'DECLARE "SQL_CUR1" CURSOR WITH HOLD FOR SELECT * FROM {relation}')
            fetched = []
            while rows := conn.execute('FETCH 10000 IN "SQL_CUR1"').fetchall():
                fetched += rows
            conn.execute('CLOSE "SQL_CUR1"')
            assert sorted(fetched, key=repr) == sorted(plain, key=repr), name
        assert len(conn.execute(f'SELECT * FROM "public"."{SALES}"').fetchall()) == len(sales)
