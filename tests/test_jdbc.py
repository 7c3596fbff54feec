"""The PostgreSQL endpoint through pgjdbc, the driver Tableau Desktop uses for PostgreSQL.

`jdbc/TableauProbe.java` is compiled at test time and run against the embedded server: it
lists the tables, the views and the columns of ``ventes`` with ``DatabaseMetaData``, then runs
two Tableau-style queries (custom SQL over ``ventes``, and a table query over a rollup).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo.database import Database

from sales_stream import infra, queries
from sales_stream.consumer import Batch
from sales_stream.generator import SaleGenerator
from sales_stream.queries import Filters
from sales_stream.rollups import RollupWriter
from sales_stream.sinks.mongo import MongoSink, ensure_indexes
from sales_stream.sql import connect
from sales_stream.sql.schema import TABLES, VIEWS, ensure_schema

PGJDBC = Path("/usr/share/java/postgresql.jar")
PROBE = Path(__file__).parent / "jdbc" / "TableauProbe.java"
END = datetime(2025, 4, 2, tzinfo=UTC)
VENTES_JDBC_TYPES = [
    ("event_id", "text"),
    ("ts", "timestamptz"),
    ("date", "date"),
    ("hour", "int4"),
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
]

_missing = [name for name in ("javac", "java") if shutil.which(name) is None]
if not PGJDBC.exists():
    _missing.append(str(PGJDBC))
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"needs a JDK and pgjdbc (apt: default-jdk-headless libpostgresql-jdbc-java); "
    f"missing: {', '.join(_missing)}",
)


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


def test_tableau_style_session_over_pgjdbc(
    endpoints: infra.Endpoints, db: Database, probe_classes: Path
) -> None:
    events = list(SaleGenerator(11).backfill(3, end=END, events_per_day=300))
    ensure_indexes(db)
    MongoSink(db).write(events, [])
    positions = [(0, offset) for offset in range(len(events))]
    RollupWriter(db).apply(Batch("sales", events, positions, [], {0: 0}, {0: len(events)}))
    with connect(endpoints.sql_admin_uri.get_secret_value(), dbname=db.name) as conn:
        ensure_schema(conn, db)

    start, end = END - timedelta(days=2), END
    regions = ["Île-de-France", "Bretagne", "Hauts-de-France"]
    products = sorted({e.product for e in events})[::2]
    address = urlsplit(endpoints.sql_uri)
    url = f"jdbc:postgresql://{address.hostname}:{address.port}/{db.name}"
    run = subprocess.run(
        [
            "java",
            "-cp",
            f"{probe_classes}:{PGJDBC}",
            "TableauProbe",
            url,
            address.username or "",
            start.strftime("%Y-%m-%d %H:%M:%S"),
            end.strftime("%Y-%m-%d %H:%M:%S"),
            ",".join(regions),
            ",".join(products),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = [line.split("\t") for line in run.stdout.splitlines()]

    assert sorted(line[1:] for line in lines if line[0] == "TABLE") == sorted(
        [[name, "TABLE"] for name in TABLES] + [[name, "VIEW"] for name in VIEWS]
    )
    assert [tuple(line[1:3]) for line in lines if line[0] == "COLUMN"] == VENTES_JDBC_TYPES
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
