"""One entry point for the infrastructure, whatever the mode.

>>> endpoints = up()            # embedded by default; reuses running servers
>>> endpoints.kafka_bootstrap
>>> down()

In embedded mode the servers belong to a supervisor process (`sales_stream.infra.supervisor`)
that restarts a dead server and stops both on `down` or when its owner exits — the JupyterLab
server for a notebook kernel, else the calling process — so one kernel's shutdown never stops
the services under the others. `up` also declares the SQL tables and views Tableau lists.

``up()`` also works as a context manager: ``with up() as endpoints: ...`` stops on exit
what that call started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

from pydantic import SecretStr

from sales_stream.clients import redact_uri
from sales_stream.config import Mode, Settings, load_settings
from sales_stream.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs as pafs
from sales_stream.infra import docker, embedded, external, objectstore


@dataclass(frozen=True)
class Endpoints:
    """How to reach the running services."""

    mode: Mode
    kafka_bootstrap: str
    mongo_uri: SecretStr
    sql_uri: str | None = None
    state_dir: Path | None = None
    started_here: bool = field(default=False, compare=False)
    #: The embedded broker's cluster id, kept with its log in the object store: a Kafka offset
    #: is an identity only within one incarnation (it changes if the store is wiped).
    kafka_incarnation: str | None = None
    #: The embedded object store's S3 endpoint and the web page where a person browses it.
    s3_endpoint: str | None = None
    filer_url: str | None = None
    #: The privileged SQL login (password inside) used only to declare the schema.
    sql_admin_uri: SecretStr | None = field(default=None, repr=False)

    def describe(self) -> dict[str, str]:
        """Return printable endpoints, with any password redacted."""
        shown = {
            "mode": self.mode.value,
            "kafka": self.kafka_bootstrap,
            "mongodb": redact_uri(self.mongo_uri.get_secret_value()),
        }
        if self.sql_uri:
            shown["postgresql"] = self.sql_uri
        if self.s3_endpoint and self.filer_url:
            shown["s3"] = self.s3_endpoint
            shown["files"] = self.filer_url
        if self.state_dir:
            shown["state_dir"] = str(self.state_dir)
        return shown

    def s3_filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow filesystem on the embedded object store (its credentials inside)."""
        if self.state_dir is None or self.s3_endpoint is None:
            raise ConfigError(
                f"s3:// lakes on the embedded object store need SALES_STREAM_MODE=embedded "
                f"(mode is {self.mode.value}): set SALES_STREAM_LAKE to a URL of your store"
            )
        port = urlsplit(self.s3_endpoint).port or 0
        return objectstore.filesystem(self.state_dir, port)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.started_here:
            down(load_settings(mode=self.mode, state_dir=self.state_dir))


def up(
    settings: Settings | None = None,
    *,
    mode: Mode | str | None = None,
    owner_pid: int | None = None,
) -> Endpoints:
    """Bring up (or find) the infrastructure for ``settings`` and wait until it answers.

    Args:
        settings: Settings to use; read from the environment when omitted.
        mode: Override of ``settings.mode``.
        owner_pid: Embedded mode: the process whose exit stops the services when this call
            starts them (default: JupyterLab for a kernel, else this process).

    Raises:
        InfraError: a service did not start or answer; the message says which setting.
        ConfigError: a setting is invalid.

    """
    settings = _resolve(settings, mode)
    if settings.mode is Mode.EMBEDDED:
        endpoints = _embedded_endpoints(settings, embedded.start(settings, owner_pid=owner_pid))
        if endpoints.started_here:
            _declare_sql(endpoints, settings)
        return endpoints
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


def _declare_sql(endpoints: Endpoints, settings: Settings) -> None:
    """Declare the SQL relations (idempotent) so Tableau lists them right after ``up``."""
    from sales_stream.clients import mongo_client
    from sales_stream.sql.schema import setup_endpoint

    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    try:
        setup_endpoint(endpoints, client[settings.db])
    except Exception:
        down(settings)
        raise
    finally:
        client.close()


def _embedded_endpoints(settings: Settings, services: embedded.EmbeddedServices) -> Endpoints:
    address = f"{settings.sql_host}:{services.database.sql_port}/{settings.db}"
    sql_uri = f"postgresql://{settings.sql_user}@{address}"
    admin = embedded.sql_admin_password(settings.state_dir)
    return Endpoints(
        mode=Mode.EMBEDDED,
        kafka_bootstrap=services.kafka.bootstrap,
        mongo_uri=services.database.mongo_uri,
        sql_uri=sql_uri,
        state_dir=settings.state_dir.resolve(),
        started_here=services.started_here,
        kafka_incarnation=services.kafka.incarnation,
        s3_endpoint=services.objectstore.s3_endpoint,
        filer_url=services.objectstore.filer_url,
        sql_admin_uri=SecretStr(f"postgresql://{embedded.SQL_ADMIN_USER}:{admin}@{address}"),
    )
