"""Consumer throughput on the embedded services: ours vs a naive consumer vs raw insert_many.

One run, on a private embedded instance (temporary state directory):

1. ours: the full-feature consumer exactly as ``make run`` builds it,
   `sales_stream.app.Stack.consumer`: poll, decode, dead letters, ``insert_many`` into
   ``sales`` with its indexes (``_id`` only by design), then its rollups in the same chain
   (held in memory, flushed every two seconds as one inserted row per cell touched, with the
   fences, in one transaction), commit; timed until it has stopped with everything flushed
   and committed, and checked on the database (every sale stored and counted);
2. naive: the common design, one ``insert_one`` per message into an ``_id``-only collection
   with auto-committed offsets (limited to ``--naive-events`` messages: it is slow);
3. raw: ``insert_many`` of the same documents in batches of 5,000 straight into an
   ``_id``-only collection, with no Kafka at all (the physical limit here);
4. for the record, not a target: the consumer alone (ours without its rollups), which
   shows what the rollups cost.

Each variant runs twice on freshly started embedded servers (the database slows down as it
serves, even after a drop, so a shared server would favour whichever runs first), in the
order raw, ours, alone, then the reverse; each keeps its best run (the machine may be shared).
Rates are counted on the database's side: the documents in the collection at the end (checked
equal to the events sent) over the wall time of the variant. Targets: ours ≥ 8× naive,
ours ≥ 0.8× raw. Usage::

    python bench/consumer_throughput.py [--events 50000] [--naive-events 5000]
"""

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from common import produce
from kafka import KafkaConsumer

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import consumer_config, ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.events import SaleEvent, decode
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import HOURLY, SALES
from sales_stream.stream import StreamState, StreamWorker

TOPIC = "bench-sales"
RAW_BATCH = 5000


def ours(
    settings: Settings, endpoints: infra.Endpoints, n: int, run: str, *, rollups: bool = True
) -> tuple[float, float]:
    """``make run``'s consumer (with its rollups unless ``rollups`` is off) over ``n`` events.

    Returns:
        Rate from the group join until it is done, and the process's CPU µs per event.
    """
    db_name = f"bench_ours_{run}"
    update = {"topic": TOPIC, "db": db_name, "sql_rollups": rollups}
    stack = Stack(settings.model_copy(update=update), endpoints)
    worker = StreamWorker(stack.consumer(group_id=f"bench-ours-{run}"))
    cpu = time.process_time()
    worker.start(max_events=n)
    while worker.stats.state is StreamState.JOINING:
        time.sleep(0.005)
    joined = time.perf_counter()
    worker.wait()
    end, cpu = time.perf_counter(), time.process_time() - cpu
    db = stack.db
    stored = db[SALES].count_documents({})
    counted = totals(db, HOURLY)[0] if rollups else n
    worker.runtime.close()
    stack.close()
    if stored != n or counted != n:
        raise RuntimeError(f"ours stored {stored} of {n} sales, the rollups counted {counted}")
    return stored / (end - joined), cpu / n * 1e6


def naive(endpoints: infra.Endpoints, n: int) -> float:
    """One insert_one per message, auto-commit: rate in events/s after the first message."""
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    sales = client["bench_naive"][SALES]
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
    elapsed = time.perf_counter() - start
    stored = sales.count_documents({})
    consumer.close()
    client.close()
    return (stored - 1) / elapsed


def raw(endpoints: infra.Endpoints, events: list[SaleEvent], run: str) -> float:
    """insert_many of the consumer's documents in batches of 5,000: rate in docs/s."""
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    db = client[f"bench_raw_{run}"]
    now = datetime.now(UTC)
    docs = [{**event.to_document(), "ingested_at": now} for event in events]
    start = time.perf_counter()
    for i in range(0, len(docs), RAW_BATCH):
        db[SALES].insert_many(docs[i : i + RAW_BATCH], ordered=False)
    elapsed = time.perf_counter() - start
    stored = db[SALES].count_documents({})
    client.close()
    return stored / elapsed


@contextmanager
def fresh_services() -> Iterator[tuple[Settings, infra.Endpoints]]:
    """Embedded servers on a new state directory, with the bench topic; stopped after."""
    with tempfile.TemporaryDirectory(prefix="sales-bench-") as tmp:
        settings = Settings(_env_file=None, mode="embedded", state_dir=Path(tmp) / "state")
        with infra.up(settings) as endpoints:
            ensure_topic(endpoints.kafka_bootstrap, TOPIC, partitions=3)
            yield settings, endpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    args = parser.parse_args()
    events = SaleGenerator(42).events(args.events)

    raws: list[float] = []
    runs: list[tuple[float, float]] = []
    alone: list[tuple[float, float]] = []
    variants: dict[str, Callable[[Settings, infra.Endpoints, str], None]] = {
        "raw": lambda _s, e, run: raws.append(raw(e, events, run)),
        "ours": lambda s, e, run: runs.append(ours(s, e, len(events), run)),
        "alone": lambda s, e, run: alone.append(ours(s, e, len(events), run, rollups=False)),
    }
    # Each variant on freshly started servers (the embedded database slows down as it
    # serves, even after a drop), in the order raw, ours, alone, then the reverse.
    rates = []
    for run, order in enumerate((list(variants), list(reversed(variants))), start=1):
        for name in order:
            with fresh_services() as (settings, endpoints):
                rates.append(produce(endpoints.kafka_bootstrap, TOPIC, events))
                variants[name](settings, endpoints, f"{name}{run}")
    with fresh_services() as (settings, endpoints):
        rates.append(produce(endpoints.kafka_bootstrap, TOPIC, events[: args.naive_events]))
        naive_rate = naive(endpoints, args.naive_events)
    produce_rate = min(rates)

    raw_rate = max(raws)
    ours_rate, cpu_us = max(runs)
    print(f"events: {len(events):,} pre-produced at >= {produce_rate:,.0f}/s, 3 partitions; "
          "ours = make run's consumer + rollups")  # fmt: skip
    print(f"raw insert_many: {raw_rate:>7,.0f} docs/s   (runs: "
          f"{', '.join(f'{r:,.0f}' for r in raws)})")  # fmt: skip
    print(f"ours:            {ours_rate:>7,.0f} events/s (runs: "
          f"{', '.join(f'{r[0]:,.0f}' for r in runs)}; "
          f"consumer CPU {cpu_us:.0f} µs/event)")  # fmt: skip
    print(f"naive:           {naive_rate:>7,.0f} events/s ({args.naive_events:,} messages)")
    alone_rate = max(rate for rate, _ in alone)
    print(f"consumer alone:  {alone_rate:>7,.0f} events/s (runs: "
          f"{', '.join(f'{r[0]:,.0f}' for r in alone)}; no rollups: "
          f"{alone_rate / raw_rate:.2f}x raw, for the record)")  # fmt: skip
    print(f"ours / naive = {ours_rate / naive_rate:5.1f}  (target >= 8; "
          f"ceiling raw / naive = {raw_rate / naive_rate:.1f})")  # fmt: skip
    print(f"ours / raw   = {ours_rate / raw_rate:5.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
