"""One entry point for the infrastructure, whatever the mode.

>>> endpoints = up()            # embedded by default; reuses running servers
>>> endpoints.kafka_bootstrap
>>> down()

``up()`` also works as a context manager: ``with up() as endpoints: ...`` stops on exit
what that call started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pydantic import SecretStr

from sales_stream.clients import redact_uri
from sales_stream.config import Mode, Settings, load_settings
from sales_stream.infra import docker, embedded, external


@dataclass(frozen=True)
class Endpoints:
    """How to reach the running services."""

    mode: Mode
    kafka_bootstrap: str
    mongo_uri: SecretStr
    sql_uri: str | None = None
    state_dir: Path | None = None
    started_here: bool = field(default=False, compare=False)

    def describe(self) -> dict[str, str]:
        """Return printable endpoints, with any password redacted."""
        shown = {
            "mode": self.mode.value,
            "kafka": self.kafka_bootstrap,
            "mongodb": redact_uri(self.mongo_uri.get_secret_value()),
        }
        if self.sql_uri:
            shown["postgresql"] = self.sql_uri
        if self.state_dir:
            shown["state_dir"] = str(self.state_dir)
        return shown

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.started_here:
            down(load_settings(mode=self.mode, state_dir=self.state_dir))


def up(settings: Settings | None = None, *, mode: Mode | str | None = None) -> Endpoints:
    """Bring up (or find) the infrastructure for ``settings`` and wait until it answers.

    Args:
        settings: Settings to use; read from the environment when omitted.
        mode: Override of ``settings.mode``.

    Raises:
        InfraError: a service did not start or answer; the message says which setting.
        ConfigError: a setting is invalid.

    """
    settings = _resolve(settings, mode)
    if settings.mode is Mode.EMBEDDED:
        return _embedded_endpoints(settings, embedded.start(settings))
    if settings.mode is Mode.DOCKER:
        bootstrap, uri = docker.start(settings)
        return Endpoints(Mode.DOCKER, bootstrap, SecretStr(uri), started_here=True)
    bootstrap, uri = external.check(settings)
    return Endpoints(Mode.EXTERNAL, bootstrap, SecretStr(uri))


def status(settings: Settings | None = None) -> Endpoints | None:
    """Return the running endpoints without starting anything (None if not running)."""
    settings = _resolve(settings, None)
    if settings.mode is Mode.EMBEDDED:
        services = embedded.status(settings.state_dir)
        return None if services is None else _embedded_endpoints(settings, services)
    if settings.mode is Mode.DOCKER:
        return up(settings) if docker.running(settings) else None
    return up(settings)


def down(settings: Settings | None = None, *, mode: Mode | str | None = None) -> list[str]:
    """Stop the infrastructure of ``settings``; return what was stopped."""
    settings = _resolve(settings, mode)
    if settings.mode is Mode.EMBEDDED:
        return embedded.stop(settings.state_dir)
    if settings.mode is Mode.DOCKER:
        return docker.stop(settings)
    return []


def _resolve(settings: Settings | None, mode: Mode | str | None) -> Settings:
    if settings is None:
        return load_settings(mode=mode)
    if mode is not None:
        return settings.model_copy(update={"mode": Mode(mode)})
    return settings


def _embedded_endpoints(settings: Settings, services: embedded.EmbeddedServices) -> Endpoints:
    sql_uri = (
        f"postgresql://{settings.sql_user}@{settings.sql_host}:"
        f"{services.database.sql_port}/{settings.db}"
    )
    return Endpoints(
        mode=Mode.EMBEDDED,
        kafka_bootstrap=services.kafka.bootstrap,
        mongo_uri=SecretStr(services.database.mongo_uri),
        sql_uri=sql_uri,
        state_dir=settings.state_dir.resolve(),
        started_here=services.started_here,
    )
