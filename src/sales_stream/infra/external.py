"""External mode: your own Kafka cluster and MongoDB (e.g. Atlas), reachability check only."""

from __future__ import annotations

from sales_stream.config import Settings
from sales_stream.errors import ConfigError
from sales_stream.infra import health

CHECK_TIMEOUT_S = 10.0


def check(settings: Settings) -> tuple[str, str]:
    """Return (bootstrap, mongo URI) from the settings once both answer.

    Raises:
        ConfigError: a URL is missing.
        InfraError: a service does not answer (the message names the variable).

    """
    if not settings.kafka_bootstrap:
        raise ConfigError("SALES_STREAM_KAFKA_BOOTSTRAP: required in external mode (host:port,...)")
    if settings.mongo_uri is None:
        raise ConfigError("SALES_STREAM_MONGO_URI: required in external mode (mongodb://...)")
    uri = settings.mongo_uri.get_secret_value()
    health.require_kafka(
        settings.kafka_bootstrap, timeout=CHECK_TIMEOUT_S, setting="SALES_STREAM_KAFKA_BOOTSTRAP"
    )
    health.require_mongo(uri, timeout=CHECK_TIMEOUT_S, setting="SALES_STREAM_MONGO_URI")
    return settings.kafka_bootstrap, uri
