"""Docker mode: Apache Kafka (KRaft) and MongoDB with auth from ``docker-compose.yml``."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import quote_plus

from sales_stream.config import Settings
from sales_stream.errors import ConfigError, InfraError
from sales_stream.infra import health

KAFKA_BOOTSTRAP = "127.0.0.1:9092"
MONGO_HOSTPORT = "127.0.0.1:27017"
HEALTH_TIMEOUT_S = 120.0


def compose_command(settings: Settings) -> list[str]:
    """Return the ``docker compose`` argv prefix for the project's compose file."""
    if shutil.which("docker") is None:
        raise InfraError("docker mode needs Docker: install it, or set SALES_STREAM_MODE=embedded")
    if not settings.compose_file.exists():
        raise ConfigError(f"SALES_STREAM_COMPOSE_FILE: {settings.compose_file} does not exist")
    return ["docker", "compose", "-f", str(settings.compose_file)]


def mongo_uri(settings: Settings) -> str:
    """Build the authenticated MongoDB URI from ``SALES_STREAM_MONGO_USER/PASSWORD``."""
    if settings.mongo_uri is not None:
        return settings.mongo_uri.get_secret_value()
    if not settings.mongo_user or settings.mongo_password is None:
        raise ConfigError(
            "SALES_STREAM_MONGO_USER / SALES_STREAM_MONGO_PASSWORD: required in docker mode "
            "(copy .env.example to .env)"
        )
    user = quote_plus(settings.mongo_user)
    password = quote_plus(settings.mongo_password.get_secret_value())
    return f"mongodb://{user}:{password}@{MONGO_HOSTPORT}/?authSource=admin&directConnection=true"


def start(settings: Settings) -> tuple[str, str]:
    """Run ``docker compose up --wait`` and return (bootstrap, mongo URI) once healthy."""
    uri = mongo_uri(settings)
    _run([*compose_command(settings), "up", "-d", "--wait", "kafka", "mongodb"])
    health.require_kafka(
        KAFKA_BOOTSTRAP, timeout=HEALTH_TIMEOUT_S, setting="docker compose logs kafka"
    )
    health.require_mongo(uri, timeout=HEALTH_TIMEOUT_S, setting="docker compose logs mongodb")
    return KAFKA_BOOTSTRAP, uri


def running(settings: Settings) -> bool:
    """Return True if the compose services are running."""
    result = _run([*compose_command(settings), "ps", "-q", "kafka", "mongodb"])
    return bool(result.strip())


def stop(settings: Settings) -> list[str]:
    """Run ``docker compose down`` (volumes are kept)."""
    _run([*compose_command(settings), "down"])
    return ["kafka", "mongodb"]


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InfraError(f"{' '.join(argv[:2])} {argv[-1]} failed: {last[0]}")
    return result.stdout
