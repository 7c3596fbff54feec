"""Lake sink throughput (consume + decode + write Parquet) vs a raw write of the same rows.

Starts its own embedded broker in a temporary state directory, produces the events, runs
the lake runtime (`sales_stream.app.Stack.lake`) over them once, then writes the same rows
with one bare ``pyarrow.parquet.write_table`` call and prints both rates and their ratio. Usage::

    python bench/lake_throughput.py [--events 100000] [--flush-events 10000]
"""

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import produce

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic
from sales_stream.config import Settings
from sales_stream.events import SaleEvent
from sales_stream.lake.files import COMPRESSION
from sales_stream.lake.tables import events_table
from sales_stream.lake.tree import lake_stats
from sales_stream.produce.generator import SaleGenerator

TOPIC = "bench-lake"


def raw_write_rate(events: list[SaleEvent], path: Path) -> float:
    """Rows/s of one ``write_table`` of the same rows (the Arrow table is built beforehand)."""
    table = events_table(events).append_column(
        "region", pa.array([e.region for e in events], pa.string())
    )
    start = time.perf_counter()
    pq.write_table(table, path, compression=COMPRESSION)
    return len(events) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--flush-events", type=int, default=10_000)
    args = parser.parse_args()

    end = datetime(2024, 6, 1, tzinfo=UTC)
    events = list(SaleGenerator(1).backfill(7, end=end, events_per_day=args.events // 7))
    n = len(events)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, mode="embedded", state_dir=work / "state")
        with infra.up(settings) as endpoints:
            bootstrap = endpoints.kafka_bootstrap
            ensure_topic(bootstrap, TOPIC, partitions=3)
            produce_rate = produce(bootstrap, TOPIC, events)
            stack = Stack(settings.model_copy(update={"topic": TOPIC}), endpoints)
            runtime = stack.lake(
                work / "lake",
                group_id="bench-lake",
                flush_events=args.flush_events,
                flush_seconds=600,
            )
            start = time.perf_counter()
            stats = runtime.run(max_events=n)
            rate = n / (time.perf_counter() - start)
            files = runtime.sinks[0].files  # type: ignore[attr-defined]
        lake = lake_stats(work / "lake")
        baseline = raw_write_rate(events, work / "raw.parquet")
        raw_size = (work / "raw.parquet").stat().st_size

    if stats.stored != n or lake["rows"] != n:
        raise SystemExit(f"expected {n} rows, the sink wrote {stats.stored} ({lake['rows']})")
    print(f"events: {n} over 7 days, 3 partitions, flush every {args.flush_events} events")
    print(f"produce (kafka-python):        {produce_rate:>10,.0f} events/s")
    print(
        f"lake sink (consume+decode+write): {rate:>7,.0f} events/s (with the group join; "
        f"{files} files, {stats.batches} checkpoints, {lake['bytes'] / n:.1f} bytes/event)"
    )
    print(
        f"raw pq.write_table:            {baseline:>10,.0f} rows/s "
        f"(1 file, {raw_size / n:.1f} bytes/row)"
    )
    print(f"ratio sink / raw write: {rate / baseline:.3f}")


if __name__ == "__main__":
    main()
