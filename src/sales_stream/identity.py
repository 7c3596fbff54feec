"""A sale's identities: its Kafka key and its content hash (what deduplicating sinks compare)."""

from __future__ import annotations

import hashlib

from sales_stream.events import SaleEvent, encode


def kafka_key(event: SaleEvent) -> bytes:
    """The message key: the region, so a region's sales share a partition, in order."""
    return event.region.encode()


def event_digest(event: SaleEvent) -> bytes:
    """SHA-256 of the event's canonical encoding (its content identity)."""
    return hashlib.sha256(encode(event)).digest()


def event_hash(event: SaleEvent) -> str:
    """`event_digest` in hex, as dead letters show it."""
    return event_digest(event).hex()
