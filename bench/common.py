"""Helpers shared by the benchmarks (run them as ``python bench/<name>.py``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from kafka import KafkaProducer

from sales_stream.events import SaleEvent, encode


def produce(bootstrap: str, topic: str, events: Sequence[SaleEvent]) -> float:
    """Send the events keyed by region as fast as kafka-python goes; return events/s."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    start = time.perf_counter()
    for event in events:
        producer.send(topic, key=event.region.encode(), value=encode(event))
    producer.flush()
    rate = len(events) / (time.perf_counter() - start)
    producer.close()
    return rate
