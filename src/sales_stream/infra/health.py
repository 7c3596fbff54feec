"""Readiness and reachability checks for Kafka, MongoDB and the SQL endpoint."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from sales_stream.clients import mongo_client, redact_uri
from sales_stream.errors import ConfigError, InfraError

# kafka-python logs every refused connection at ERROR while a broker starts.
logging.getLogger("kafka").setLevel(logging.CRITICAL)


def port_open(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_ready(bootstrap: str, *, timeout: float = 3.0) -> bool:
    """Return True if the broker answers a metadata request within ``timeout``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port.isdigit() or not port_open(host or "127.0.0.1", int(port)):
        return False
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout * 1000),
            client_id="sales-stream-health",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def mongo_ready(uri: str, *, timeout: float = 2.0) -> bool:
    """Return True if the server answers ``ping`` within ``timeout``."""
    from pymongo.errors import PyMongoError

    client = mongo_client(uri, serverSelectionTimeoutMS=int(timeout * 1000), connectTimeoutMS=1000)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def wait_for(
    name: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    setting: str,
    target: str,
    interval: float = 0.2,
) -> None:
    """Poll ``check()`` until it returns True, else raise a one-line InfraError."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise InfraError(
                f"{name} at {target} did not answer within {timeout:.0f} s: check {setting}"
            )
        time.sleep(interval)


def require_kafka(bootstrap: str, *, timeout: float, setting: str) -> None:
    """Wait for Kafka at ``bootstrap`` or raise naming ``setting``."""
    wait_for(
        "Kafka",
        lambda: kafka_ready(bootstrap),
        timeout=timeout,
        setting=setting,
        target=bootstrap,
    )


def require_mongo(uri: str, *, timeout: float, setting: str) -> None:
    """Wait for MongoDB at ``uri`` or raise naming ``setting`` (password redacted).

    Raises:
        ConfigError: the driver refuses the URI itself (bad option, bad host list...).
        InfraError: the server does not answer within ``timeout``.
    """
    from pymongo.errors import ConfigurationError

    try:
        mongo_client(uri, connect=False).close()
    except ConfigurationError as exc:
        raise ConfigError(f"{setting}: the MongoDB driver refuses this URI ({exc})") from None
    wait_for(
        "MongoDB",
        lambda: mongo_ready(uri),
        timeout=timeout,
        setting=setting,
        target=redact_uri(uri),
    )
