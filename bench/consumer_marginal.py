"""The CLI consumer's marginal rate against raw ``insert_many``, on one embedded server.

What a user runs, on a private embedded instance (temporary state directory, the durable
stack: the broker's log in the object store):

1. raw ``insert_many`` of the consumer's documents in batches of 5,000 into an ``_id``-only
   collection, no Kafka (the database's own write rate), timed **before** the consumers;
2. ``python -m sales_stream consume --until-idle 2`` over ``N1`` events, then over ``N2``
   events (each on its own topic and database, everything ``make run`` has: dead letters,
   rollups); each timed from the command's start to its exit. The start-up, the group join
   and the idle wait are the same in both, so the marginal rate ``(N2 - N1) / (T2 - T1)`` is
   the consumer's own;
3. raw again, **after** (the database slows down as it serves; the ratio uses the mean).

The whole round runs ``--rounds`` times, each on fresh servers; the median ratio is the result
(one round on a shared machine varies by ±0.1).

Rates are counted on the database's side: each consume run is checked to have stored its
events (``sales``) and counted them in the rollups. Target: marginal ≥ 0.8× raw. Usage::

    python bench/consumer_marginal.py [--n1 20000] [--n2 80000] [--rounds 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import produce
from consumer_throughput import raw

from sales_stream import infra
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import HOURLY, SALES

TARGET = 0.9


def consume(settings: Settings, endpoints: infra.Endpoints, topic: str, n: int) -> float:
    """Time ``consume --until-idle 2`` over ``topic`` (``n`` events); check the database."""
    env = {
        **os.environ,
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": topic,
        "SALES_STREAM_DB": topic,
    }
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sales_stream", "consume", "--until-idle", "2"],
        env=env, check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    stored, counted = client[topic][SALES].count_documents({}), totals(client[topic], HOURLY)[0]
    client.close()
    if stored != n or counted != n:
        raise RuntimeError(f"{topic}: {stored} of {n} sales stored, {counted} in the rollups")
    return elapsed


def one_round(events: list, n1: int, n2: int) -> tuple[float, float, float, float, float]:
    """Raw before, consume ``n1``, consume ``n2``, raw after, on fresh servers."""
    with tempfile.TemporaryDirectory(prefix="sales-bench-") as tmp:
        settings = Settings(_env_file=None, mode="embedded", state_dir=Path(tmp) / "state")
        with infra.up(settings) as endpoints:
            for topic, n in (("marginal_n1", n1), ("marginal_n2", n2)):
                ensure_topic(endpoints.kafka_bootstrap, topic, partitions=3)
                produce(endpoints.kafka_bootstrap, topic, events[:n])
            before = raw(endpoints, events[:n1], "before")
            t1 = consume(settings, endpoints, "marginal_n1", n1)
            t2 = consume(settings, endpoints, "marginal_n2", n2)
            after = raw(endpoints, events[:n1], "after")
    return before, after, t1, t2, (n2 - n1) / (t2 - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=20_000)
    parser.add_argument("--n2", type=int, default=80_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = SaleGenerator(42).events(args.n2)
    print(f"durable embedded stack (Tansu on SeaweedFS, SecantusDB); {args.n1:,} and "
          f"{args.n2:,} events, 3 partitions; the CLI consumer, dead letters, rollups")  # fmt: skip
    ratios = []
    for index in range(1, args.rounds + 1):
        before, after, t1, t2, marginal = one_round(events, args.n1, args.n2)
        ratios.append(marginal / ((before + after) / 2))
        print(f"round {index}: raw {before:,.0f} docs/s before, {after:,.0f} after; consume "
              f"{t1:.2f} s / {t2:.2f} s; marginal {marginal:,.0f} events/s = "
              f"{ratios[-1]:.2f}x raw")  # fmt: skip
    ratio, lowest = statistics.median(ratios), min(ratios)
    word = "met" if lowest >= TARGET else "NOT met"
    print(f"marginal / raw  = {ratio:.2f}  (median of {args.rounds}, lowest {lowest:.2f}; "
          f"target >= {TARGET} in every round): {word}")  # fmt: skip


if __name__ == "__main__":
    main()
