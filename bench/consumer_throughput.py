"""Consumer throughput on the embedded services: ours vs a naive consumer vs raw insert_many.

One run, on a private embedded instance (temporary state directory):

1. ours: `MongoConsumer` end to end (poll, decode, validate, ``insert_many``, commit) over
   the pre-produced topic;
2. naive: the common design, one ``insert_one`` per message with auto-committed offsets
   (limited to ``--naive-events`` messages: it is slow);
3. raw: ``insert_many`` of the same documents in batches of 5,000 straight into MongoDB,
   with no Kafka at all (the physical limit here).

Ours and raw run twice, alternately, and keep their best run (the machine may be shared).
Every variant writes to its own database with the same indexes and journaled writes:
``--indexes dashboard`` (default) creates those of `sales_stream.sinks.mongo.ensure_indexes`,
``--indexes none`` only ``_id``. Targets: ours ≥ 8× naive, ours ≥ 0.8× raw. On SecantusDB
each secondary index costs about as much per document as the insert itself, which bounds
ours / naive by raw / naive (printed as the ceiling). Usage::

    python bench/consumer_throughput.py [--events 50000] [--naive-events 5000] [--indexes none]
"""

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from common import produce
from kafka import KafkaConsumer
from pymongo.database import Database

from sales_stream import infra
from sales_stream.clients import consumer_config, ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.consumer import MongoConsumer
from sales_stream.events import SaleEvent, decode
from sales_stream.generator import SaleGenerator
from sales_stream.sinks import mongo as sink

TOPIC = "bench-sales"
RAW_BATCH = 5000
Prepare = Callable[[Database], None]


def dashboard_indexes(db: Database) -> None:
    sink.ensure_indexes(db)


def no_indexes(db: Database) -> None:
    """Only ``_id``: the consumer's own indexes are switched off for this run."""


INDEXES: dict[str, Prepare] = {"dashboard": dashboard_indexes, "none": no_indexes}


def ours(
    endpoints: infra.Endpoints, n: int, run: int, prepare: Prepare
) -> tuple[float, float, float]:
    """Our consumer over ``n`` events.

    Returns:
        Rate after the group join, rate including it (events/s), and the consumer
        process's CPU time per event in µs.
    """
    uri = endpoints.mongo_uri.get_secret_value()
    client = mongo_client(uri)
    prepare(client[f"bench_ours_{run}"])
    client.close()
    consumer = MongoConsumer(
        endpoints.kafka_bootstrap,
        TOPIC,
        uri,
        db=f"bench_ours_{run}",
        group_id=f"bench-ours-{run}",
        create_indexes=False,  # created above, as for the other variants
    )
    joined: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.005):
            if consumer.stats.status != "joining group":
                joined.append(time.perf_counter())
                return

    watcher = threading.Thread(target=watch, daemon=True)
    start, cpu = time.perf_counter(), time.process_time()
    watcher.start()
    stats = consumer.run(max_events=n)
    end, cpu = time.perf_counter(), time.process_time() - cpu
    done.set()
    watcher.join()
    if stats.stored != n:
        raise RuntimeError(f"ours stored {stats.stored} of {n}: {stats}")
    return n / (end - joined[0]), n / (end - start), cpu / n * 1e6


def naive(endpoints: infra.Endpoints, n: int, prepare: Prepare) -> float:
    """One insert_one per message, auto-commit: rate in events/s after the first message."""
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    sales = client["bench_naive"][sink.SALES]
    prepare(client["bench_naive"])
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=endpoints.kafka_bootstrap,
        **consumer_config(group_id="bench-naive", enable_auto_commit=True),
    )
    start = 0.0
    for count, message in enumerate(consumer, start=1):
        if count == 1:
            start = time.perf_counter()
        event = decode(message.value)
        if isinstance(event, SaleEvent):
            sales.insert_one(event.to_document())
        if count == n:
            break
    rate = (n - 1) / (time.perf_counter() - start)
    consumer.close()
    client.close()
    return rate


def raw(endpoints: infra.Endpoints, events: list[SaleEvent], run: int, prepare: Prepare) -> float:
    """insert_many of the consumer's documents in batches of 5,000: rate in docs/s."""
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    db = client[f"bench_raw_{run}"]
    prepare(db)
    now = datetime.now(UTC)
    docs = [{**event.to_document(), "ingested_at": now} for event in events]
    start = time.perf_counter()
    for i in range(0, len(docs), RAW_BATCH):
        db[sink.SALES].insert_many(docs[i : i + RAW_BATCH], ordered=False)
    rate = len(docs) / (time.perf_counter() - start)
    client.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--indexes", choices=sorted(INDEXES), default="dashboard")
    args = parser.parse_args()
    prepare = INDEXES[args.indexes]
    events = SaleGenerator(42).events(args.events)

    with tempfile.TemporaryDirectory(prefix="sales-bench-") as tmp:
        settings = Settings(_env_file=None, mode="embedded", state_dir=Path(tmp) / "state")
        with infra.up(settings) as endpoints:
            ensure_topic(endpoints.kafka_bootstrap, TOPIC, partitions=3)
            produce_rate = produce(endpoints.kafka_bootstrap, TOPIC, events)
            raws, runs = [], []
            for run in (1, 2):
                raws.append(raw(endpoints, events, run, prepare))
                runs.append(ours(endpoints, len(events), run, prepare))
            naive_rate = naive(endpoints, args.naive_events, prepare)

    raw_rate = max(raws)
    ours_rate, ours_with_join, cpu_us = max(runs)
    print(f"events: {len(events):,} pre-produced at {produce_rate:,.0f}/s, 3 partitions, "
          f"indexes: {args.indexes}")  # fmt: skip
    print(f"raw insert_many: {raw_rate:>7,.0f} docs/s   (runs: "
          f"{', '.join(f'{r:,.0f}' for r in raws)})")  # fmt: skip
    print(f"ours:            {ours_rate:>7,.0f} events/s (runs: "
          f"{', '.join(f'{r[0]:,.0f}' for r in runs)}; with the group join "
          f"{ours_with_join:,.0f}/s; consumer CPU {cpu_us:.0f} µs/event)")  # fmt: skip
    print(f"naive:           {naive_rate:>7,.0f} events/s ({args.naive_events:,} messages)")
    print(f"ours / naive = {ours_rate / naive_rate:5.1f}  (target >= 8; "
          f"ceiling raw / naive = {raw_rate / naive_rate:.1f})")  # fmt: skip
    print(f"ours / raw   = {ours_rate / raw_rate:5.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
