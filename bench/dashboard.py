"""Latency of the notebook dashboard (04): one refresh and one filter change, at 10k and 100k sales.

On a fresh embedded instance, for each size: produce N sales of history to Kafka, consume them
into MongoDB with the rollup hook (as notebook 03 does), then time, over a fixed list of
selections (period / regions / products):

* baseline: the previous dashboard's refresh, three ``$group`` aggregations over ``sales``
  (`sales_stream.read.mongo_queries`), without drawing anything;
* refresh: `sales_stream.read.dashboard_views.load_snapshot` (rollup cells + live window), the
  view and the plotly figures serialised to JSON (`sales_stream.ui.dashboard.figures`): what
  the worker does every few seconds before the browser draws;
* filter change: the view and the figures from the snapshot held: what a click costs;
* for context, the static snapshot's matplotlib PNGs (drawn once when the cell is shown).

Prints p50/p95 of each and the ratio to the baseline; target p95 <= 1 s. Usage::

    python bench/dashboard.py [--sizes 10000 100000] [--repeats 3]
"""

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from common import produce
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.produce.generator import SaleGenerator
from sales_stream.read import mongo_queries as queries
from sales_stream.read.dashboard_views import PERIODS, DashboardSnapshot, Selection, load_snapshot
from sales_stream.ui.dashboard import figures, render

TARGET_S = 1.0
END = datetime(2026, 11, 20, 18, tzinfo=UTC)
DAYS = 7
SELECTIONS = (
    Selection(),
    Selection(period="1h"),
    Selection(period="24h", regions=("Bretagne",)),
    Selection(period="7d", products=("Smartphone premium",)),
    Selection(
        regions=("Île-de-France", "Occitanie"),
        products=("Câble USB-C", "Casque à réduction de bruit"),
    ),
    Selection(products=("Câble USB-C",)),
)


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def fill(endpoints: infra.Endpoints, db_name: str, topic: str, n: int) -> Database:
    """History of ``n`` sales over `DAYS` days, consumed with its rollups."""
    ensure_topic(endpoints.kafka_bootstrap, topic, partitions=3)
    history = SaleGenerator(2026).backfill(DAYS, end=END, events_per_day=n // DAYS + n // 50)
    produce(endpoints.kafka_bootstrap, topic, list(itertools.islice(history, n)))
    uri = endpoints.mongo_uri.get_secret_value()
    db = mongo_client(uri)[db_name]
    settings = Settings(_env_file=None, topic=topic, db=db_name)
    stack = Stack(settings, endpoints)
    stats = stack.consumer(group_id=f"bench_{db_name}").run(max_events=n)
    stack.close()
    if stats.stored != n:
        raise SystemExit(f"consumed {stats.stored} sales into {db_name}, expected {n}")
    return db


def draw(snapshot: DashboardSnapshot, selection: Selection) -> int:
    """What the dashboard's worker computes and sends for ``selection``; returns the bytes."""
    return len(json.dumps(figures(snapshot.view(selection))))


def baseline(db: Database, selection: Selection, latest: datetime) -> None:
    span = PERIODS[selection.period][1]
    filters = queries.Filters(
        start=None if span is None else latest - span,
        regions=list(selection.regions) or None,
        products=list(selection.products) or None,
    )
    queries.revenue_over_time(db, unit="hour", filters=filters)
    queries.revenue_by_region(db, filters=filters)
    queries.top_products(db, n=10, filters=filters)


def measure(db: Database, n: int, repeats: int) -> bool:
    snapshot = load_snapshot(db)
    if snapshot.source != "rollups":
        raise SystemExit("the rollups are empty: the bench measures the rollup path")
    total = int(snapshot.hourly["sales"].sum())
    if total != n:
        raise SystemExit(f"rollups hold {total} sales, expected {n}")
    base = [timed(lambda s=s: baseline(db, s, snapshot.latest)) for s in SELECTIONS]
    refresh, change = [], []
    for _ in range(repeats):
        for selection in SELECTIONS:
            refresh.append(timed(lambda s=selection: draw(load_snapshot(db), s)))
            change.append(timed(lambda s=selection: draw(snapshot, s)))
    pngs = [timed(lambda s=s: render(snapshot.view(s))) for s in SELECTIONS]
    rows = [("baseline (3 aggregations over sales)", base)]
    rows += [("refresh (rollups + live window + figures)", refresh)]
    rows += [("filter change (in memory + figures)", change)]
    rows += [("context: static snapshot PNGs (matplotlib)", pngs)]
    print(f"{n:,} sales, {len(snapshot.hourly):,} hourly and {len(snapshot.daily):,} daily cells")
    print(f"  {'':42} {'p50 s':>7} {'p95 s':>7} {'p95 / baseline p95':>20}")
    for name, values in rows:
        ratio = p95(values) / p95(base)
        print(f"  {name:42} {statistics.median(values):7.3f} {p95(values):7.3f} {ratio:20.3f}")
    ok = p95(refresh) <= TARGET_S and p95(change) <= TARGET_S
    verdict = "met" if ok else "NOT met"
    print(f"  target p95 <= {TARGET_S:.0f} s for refresh and filter change: {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="dashboard_") as state:
        settings = Settings(_env_file=None, state_dir=Path(state))
        with infra.up(settings) as endpoints:
            for n in args.sizes:
                db = fill(endpoints, f"bench_dashboard_{n}", f"bench_dashboard_{n}", n)
                ok &= measure(db, n, args.repeats)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
