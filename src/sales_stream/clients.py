"""Factories for Kafka and MongoDB clients with the settings this project relies on."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:  # the clients are imported on use, so the CLI starts at once
    from pymongo import MongoClient

#: URI query options whose value is a secret (compared lower-case).
SECRET_QUERY_OPTIONS = frozenset(
    {
        "password",
        "tlscertificatekeyfilepassword",
        "sslclientcertificatekeypassword",
        "authmechanismproperties",
    }
)

#: Consumer-group timings: the embedded broker waits half the session timeout on join.
GROUP_TIMINGS: dict[str, int] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


def consumer_config(**overrides: Any) -> dict[str, Any]:
    """Return kafka-python consumer options for manual commits and fast group joins."""
    config: dict[str, Any] = {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 5000,
        "fetch_max_bytes": 16 * 1024 * 1024,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        **GROUP_TIMINGS,
    }
    config.update(overrides)
    return config


def local_mongo_uri(uri: str) -> str:
    """Add ``directConnection`` and ``retryWrites=false`` to a loopback URI without them.

    Retryable writes make each write slower than the last on the embedded server, and
    a single local server needs no topology discovery. Remote URIs are left untouched.
    """
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    if parts.scheme != "mongodb" or host not in {"127.0.0.1", "localhost", "::1"}:
        return uri
    query = dict(parse_qsl(parts.query))
    query.setdefault("directConnection", "true")
    query.setdefault("retryWrites", "false")
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(query)))


def mongo_client(uri: str, **kwargs: Any) -> MongoClient:
    """Return a MongoClient for ``uri`` (tz-aware datetimes, journaled writes, local tuning).

    Writes wait for the journal (``j: true``): on the embedded server an acknowledged but
    unjournaled write is lost if the process is killed right after, and offsets are only
    committed once a write is durable.
    """
    from pymongo import MongoClient

    kwargs.setdefault("tz_aware", True)
    kwargs.setdefault("journal", True)
    kwargs.setdefault("serverSelectionTimeoutMS", 5000)
    return MongoClient(local_mongo_uri(uri), **kwargs)


def redact_uri(uri: str) -> str:
    """Return ``uri`` with its password and secret query options replaced by ``***``."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # unparsable: show nothing that could be a secret
        return "<unparsable URI>"
    if password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[1]}")
    if parts.query:
        query = [
            (key, "***" if key.lower() in SECRET_QUERY_OPTIONS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*:/,"))
    return urlunsplit(parts)


def ensure_topic(bootstrap: str, topic: str, *, partitions: int = 3, timeout: float = 15.0) -> None:
    """Create ``topic`` with ``partitions`` if missing and wait until its partitions are visible.

    Raises:
        ValueError: the topic exists with fewer partitions than asked.
    """
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sales-stream-admin")
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([NewTopic(topic, partitions, 1)])
        consumer = KafkaConsumer(bootstrap_servers=bootstrap)
        try:
            deadline = time.monotonic() + timeout
            while not (found := consumer.partitions_for_topic(topic)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {topic!r} not visible after {timeout:.0f} s")
                time.sleep(0.1)
                consumer.topics()  # refresh metadata
        finally:
            consumer.close()
    finally:
        admin.close()
    if len(found) < partitions:
        raise ValueError(f"topic {topic!r} has {len(found)} partitions, expected {partitions}")
