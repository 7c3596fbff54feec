"""Rate control and throughput of the producers, against a raw kafka-python loop.

Starts its own embedded broker in a temporary state directory, then measures:

* achieved / target rate of `ProducerThread` at 100, 1,000 and 5,000 events/s (after a
  one-second warm-up, over ``--duration`` seconds);
* the maximum rate of `ProducerThread` (target = `MAX_RATE`) and of a raw kafka-python send
  loop of pre-encoded payloads with the same client settings, in the same run;
* the rate of `backfill` with its batching settings and with the live ones.

Usage::

    python bench/producer_rate.py [--duration 5]
"""

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path

import kafka
from kafka import KafkaProducer

from sales_stream import infra
from sales_stream.clients import ensure_topic
from sales_stream.config import Settings
from sales_stream.events import encode
from sales_stream.produce.backfill import backfill
from sales_stream.produce.delivery import LIVE_CONFIG
from sales_stream.produce.generator import SaleGenerator
from sales_stream.produce.producer import MAX_RATE, ProducerThread

TARGETS = (100.0, 1_000.0, 5_000.0)
WARM_UP_S = 1.0
END = datetime(2024, 6, 1, tzinfo=UTC)


def thread_rate(bootstrap: str, topic: str, rate: float, duration: float) -> float:
    """Events/s sent by a `ProducerThread` at ``rate`` over ``duration`` s after a warm-up."""
    thread = ProducerThread(bootstrap, topic, rate=rate, seed=1)
    thread.start()
    time.sleep(WARM_UP_S)
    first = thread.stats
    time.sleep(duration)
    last = thread.stats
    stats = thread.stop()
    if stats.failed or stats.state != "stopped":
        raise RuntimeError(f"producer at {rate:g}/s: {stats}")
    return (last.sent - first.sent) / (last.elapsed_s - first.elapsed_s)


def raw_loop_rate(bootstrap: str, topic: str, duration: float) -> float:
    """Events/s of a bare ``send`` loop over pre-encoded payloads, flush included."""
    payloads = [(e.region.encode(), encode(e)) for e in SaleGenerator(2).events(50_000)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, **LIVE_CONFIG)
    sent = 0
    start = time.perf_counter()
    deadline = start + duration
    for key, value in cycle(payloads):
        producer.send(topic, key=key, value=value)
        sent += 1
        if sent % 1000 == 0 and time.perf_counter() >= deadline:
            break
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return sent / elapsed


def backfill_rate(bootstrap: str, topic: str, config: dict[str, object]) -> tuple[int, float]:
    """Events sent and events/s of a 10-day backfill at 5,000 events/day."""
    stats = backfill(
        bootstrap, topic, days=10, events_per_day=5_000, seed=3, end=END, producer_config=config
    )
    if stats.failed:
        raise RuntimeError(f"backfill: {stats}")
    return stats.sent, stats.current_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    duration = args.duration

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, state_dir=Path(tmp) / "state")
        with infra.up(settings) as endpoints:
            bootstrap = endpoints.kafka_bootstrap
            topics = iter(f"bench_{i}" for i in range(100))

            def fresh_topic() -> str:
                name = next(topics)
                ensure_topic(bootstrap, name, partitions=3)
                return name

            print(f"kafka-python {kafka.__version__}, {os.cpu_count()} CPU(s), {duration:g} s each")
            print()
            print(f"{'target ev/s':>12} {'achieved ev/s':>14} {'ratio':>7}")
            for target in TARGETS:
                achieved = thread_rate(bootstrap, fresh_topic(), target, duration)
                print(f"{target:>12,.0f} {achieved:>14,.1f} {achieved / target:>7.3f}")

            print()
            best = thread_rate(bootstrap, fresh_topic(), MAX_RATE, duration)
            raw = raw_loop_rate(bootstrap, fresh_topic(), duration)
            rows = [
                ("raw send loop, pre-encoded payloads", raw, ""),
                ("ProducerThread (generate + encode + pace)", best, ""),
            ]
            for name, config in (
                ("backfill, linger 20 ms / 256 KiB batches", {}),
                ("backfill, live batching (5 ms / 64 KiB)", {"linger_ms": 5, "batch_size": 65536}),
            ):
                count, rate = backfill_rate(bootstrap, fresh_topic(), config)
                rows.append((name, rate, f"({count:,} events)"))
            print(f"{'max rate':<44} {'ev/s':>8} {'vs raw':>7}")
            for name, rate, note in rows:
                print(f"{name:<44} {rate:>8,.0f} {rate / raw:>7.2f}   {note}".rstrip())


if __name__ == "__main__":
    main()
