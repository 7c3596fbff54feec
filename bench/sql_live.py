"""The dashboard's three queries through the PostgreSQL endpoint vs MongoDB aggregation.

On a fresh embedded instance: produce N sales to Kafka (key = region), consume them into
MongoDB with the rollup sink, declare the SQL tables, then run revenue over time (by hour),
revenue per region and the top 10 products, each with a region filter, through
`sales_stream.read.mongo_queries` (``$group`` over the raw ``sales`` collection, indexed) and
through
`sales_stream.read.sql_queries` (SQL over the declared rollup tables). The answers must be equal;
the ratio SQL / Mongo is printed (target <= 1.5). For context: the region query in SQL without
rollups, over the declared raw table ``sales`` (what the live workbook reads), and the consumer's
throughput with and without the rollup hook. Usage::

    python bench/sql_live.py [--events 100000] [--repeats 3]
"""

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
from kafka import KafkaProducer
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.events import encode
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read import sql_queries
from sales_stream.sql import connect
from sales_stream.sql.schema import ensure_schema
from sales_stream.store import DAILY, HOURLY, SALES

TARGET = 1.5
END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 14
TOPIC = "bench_sales"
REGIONS = ["Bretagne"]


def timed(func: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median duration of ``repeats`` calls, and the last result."""
    durations = []
    result: object = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations), result


def produce(bootstrap: str, n: int) -> None:
    events = SaleGenerator(2025).backfill(DAYS, end=END, events_per_day=n // DAYS + n // 50)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for event in itertools.islice(events, n):
        producer.send(TOPIC, key=event.region.encode(), value=encode(event))
    producer.flush()
    producer.close()


def consume(
    settings: Settings, endpoints: infra.Endpoints, db: str, n: int, *, rollups: bool
) -> float:
    """Consume the topic into ``db``; return the rate in events/s."""
    update = {"topic": TOPIC, "db": db, "sql_rollups": rollups}
    stack = Stack(settings.model_copy(update=update), endpoints)
    start = time.perf_counter()
    stats = stack.consumer(group_id=f"bench_{db}").run(max_events=n)
    stack.close()
    if stats.stored != n:
        raise SystemExit(f"consumed {stats.stored} sales into {db}, expected {n}")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, repeats = args.events, args.repeats
    with tempfile.TemporaryDirectory(prefix="sql_live_") as state:
        settings = Settings(_env_file=None, state_dir=Path(state))
        with infra.up(settings) as endpoints:
            ensure_topic(endpoints.kafka_bootstrap, TOPIC, partitions=3)
            produce(endpoints.kafka_bootstrap, n)
            plain_rate = consume(settings, endpoints, "bench_plain", n, rollups=False)
            rollup_rate = consume(settings, endpoints, settings.db, n, rollups=True)
            db = mongo_client(endpoints.mongo_uri.get_secret_value())[settings.db]
            with connect(endpoints.sql_uri) as conn:
                ensure_schema(conn, db)
                ok = compare(db, conn, n, repeats)
            print(
                f"consumer: {plain_rate:,.0f} sales/s without rollups, "
                f"{rollup_rate:,.0f} sales/s with the rollup sink"
            )
    sys.exit(0 if ok else 1)


def compare(db: Database, conn: psycopg.Connection, n: int, repeats: int) -> bool:
    """Print the timings of both paths; return whether every answer is the same."""
    cells = {c: db[c].estimated_document_count() for c in (HOURLY.collection, DAILY.collection)}
    print(f"{n:,} sales; rollup cells: {cells}; median of {repeats} runs")
    region_filter = queries.Filters(regions=REGIONS)
    ok, ratio = run_cases(db, conn, region_filter, repeats)
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"target SQL <= {TARGET} x Mongo with the region filter: {verdict}")
    ok &= run_cases(db, conn, None, repeats)[0]
    sql = (
        f"SELECT region, SUM(amount), COUNT(*), SUM(quantity) FROM {SALES} "
        "WHERE region IN (%s) GROUP BY region"
    )
    raw_s, _ = timed(lambda: conn.execute(sql, REGIONS).fetchall(), 1)
    mongo_s, _ = timed(lambda: queries.revenue_by_region(db, filters=region_filter), 1)
    print(
        f"context, revenue per region without rollups, over {SALES!r}: {raw_s:.2f} s "
        f"({raw_s / mongo_s:.1f} x Mongo)"
    )
    return ok


def run_cases(
    db: Database, conn: psycopg.Connection, filters: queries.Filters | None, repeats: int
) -> tuple[bool, float]:
    """Time the three queries both ways; return (same answers, total SQL / total Mongo)."""
    cases = [
        (
            "revenue over time (hour)",
            lambda: queries.revenue_over_time(db, unit="hour", filters=filters),
            lambda: sql_queries.revenue_over_time(conn, unit="hour", filters=filters),
        ),
        (
            "revenue per region",
            lambda: queries.revenue_by_region(db, filters=filters),
            lambda: sql_queries.revenue_by_region(conn, filters=filters),
        ),
        (
            "top 10 products",
            lambda: queries.top_products(db, n=10, filters=filters),
            lambda: sql_queries.top_products(conn, n=10, filters=filters),
        ),
    ]
    shown = f"regions={list(filters.regions)}" if filters and filters.regions else "no filter"
    print(f"{shown:<26}{'mongo s':>9}{'sql s':>9}{'ratio':>7}  same answer")
    total_mongo = total_sql = 0.0
    ok = True
    for name, mongo_query, sql_query in cases:
        mongo_s, expected = timed(mongo_query, repeats)
        sql_s, got = timed(sql_query, repeats)
        same = isinstance(expected, pd.DataFrame) and expected.equals(got) and len(expected) > 0
        ok &= same
        total_mongo += mongo_s
        total_sql += sql_s
        print(f"  {name:<24}{mongo_s:>9.2f}{sql_s:>9.2f}{sql_s / mongo_s:>7.2f}  {same}")
    ratio = total_sql / total_mongo
    print(f"  {'all three':<24}{total_mongo:>9.2f}{total_sql:>9.2f}{ratio:>7.2f}")
    return ok, ratio


if __name__ == "__main__":
    main()
