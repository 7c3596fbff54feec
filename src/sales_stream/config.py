"""Settings read from the environment (prefix ``SALES_STREAM_``) and an optional ``.env`` file."""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sales_stream.clients import redact_uri
from sales_stream.errors import ConfigError
from sales_stream.store import DATABASE

ENV_PREFIX = "SALES_STREAM_"
#: The password ``.env.example`` ships with; never accepted as a real one.
PLACEHOLDER_PASSWORD = "change-me"
MONGO_SCHEMES = ("mongodb", "mongodb+srv")
#: Fields whose value is never shown in an error message.
_SECRET_FIELDS = frozenset({"mongo_uri", "mongo_password", "sql_password"})
#: Filesystems that cannot hold a state directory (kernel views, devices).
_PSEUDO_FILESYSTEMS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2"})


class Mode(StrEnum):
    """Where the infrastructure comes from."""

    EMBEDDED = "embedded"
    DOCKER = "docker"
    EXTERNAL = "external"


class Settings(BaseSettings):
    """All pipeline settings; every field maps to ``SALES_STREAM_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    mode: Mode = Mode.EMBEDDED
    kafka_bootstrap: str | None = None
    mongo_uri: SecretStr | None = None
    topic: str = Field(default="sales", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")
    db: str = Field(default=DATABASE, min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_-]+$")
    partitions: int = Field(default=3, ge=1, le=64)
    state_dir: Path = Path(".sales_stream")
    sql_host: str = "127.0.0.1"
    sql_port: int | None = Field(default=None, ge=1, le=65535)
    sql_user: str = "tableau"
    sql_password: SecretStr | None = None
    sql_rollups: bool = True
    #: Runtime knobs: most records per checkpoint, how long records accumulate (seconds).
    consumer_max_batch: int = Field(default=5000, ge=1)
    #: How often the consumer flushes its rollups and commits: each flush inserts one row per
    #: cell touched (`sales_stream.sinks.rollups`), so rarer flushes serve more sales per row.
    rollup_flush_s: float = Field(default=2.0, ge=0)
    lake_max_batch: int = Field(default=10_000, ge=1)
    lake_flush_s: float = Field(default=5.0, ge=0)
    hyper_max_batch: int = Field(default=200_000, ge=1)
    hyper_flush_s: float = Field(default=1.0, ge=0)
    #: Most of the time the extract may spend writing: each publication copies the whole file
    #: (`sales_stream.sinks.hyper`), so a large extract is published less often.
    hyper_write_share: float = Field(default=0.25, gt=0, le=1)
    mongo_user: str | None = None
    mongo_password: SecretStr | None = None
    compose_file: Path = Path("docker-compose.yml")
    #: The data lake: a path or URL; empty = the mode's default (`sales_stream.app.lake_url`).
    lake: str = ""
    #: Where the notebooks write their extract, workbooks and figures (``make run``: ``out``),
    #: so two state directories never write into each other's files.
    out_dir: Path = Path("out/lab")

    @field_validator("state_dir")
    @classmethod
    def _state_dir_is_writable(cls, value: Path) -> Path:
        problem = state_dir_problem(value)
        if problem:
            raise ValueError(
                f"{problem}: set it to a writable directory (in .env or the environment)"
            )
        return value

    @field_validator("mongo_uri")
    @classmethod
    def _mongo_uri_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value.get_secret_value())
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"not a URI ({exc})") from None
        if parts.scheme not in MONGO_SCHEMES or not parts.hostname:
            raise ValueError(
                f"{redact_uri(value.get_secret_value())!r} is not a MongoDB URI: "
                "use mongodb://HOST:PORT/ or mongodb+srv://HOST/"
            )
        return value

    @field_validator("sql_password")
    @classmethod
    def _sql_password_not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() == PLACEHOLDER_PASSWORD:
            raise ValueError(_placeholder_message("SQL_PASSWORD"))
        return value

    @model_validator(mode="after")
    def _passwords(self) -> Settings:
        if not _is_loopback(self.sql_host) and self.sql_password is None:
            raise ValueError(
                f"sql_host={self.sql_host!r} is not loopback: set SALES_STREAM_SQL_PASSWORD in .env"
            )
        password = self.mongo_password
        if (
            self.mode is Mode.DOCKER
            and password
            and password.get_secret_value() == PLACEHOLDER_PASSWORD
        ):
            raise ValueError(_placeholder_message("MONGO_PASSWORD"))
        return self


def _placeholder_message(name: str) -> str:
    return (
        f"{ENV_PREFIX}{name} is {PLACEHOLDER_PASSWORD!r}, the placeholder of .env.example: "
        f"set a real password as {ENV_PREFIX}{name}=... in .env (or the environment)"
    )


def state_dir_problem(path: Path) -> str | None:
    """Return why ``path`` cannot be (or become) a writable state directory, or None."""
    path = Path(os.path.abspath(path))
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing != path and not existing.is_dir():
        return f"{path} is below {existing}, which is not a directory"
    if existing == path and not path.is_dir():
        return f"{path} exists and is not a directory"
    fstype = _filesystem_type(existing)
    if fstype in _PSEUDO_FILESYSTEMS:
        return f"{path} is on the {fstype} pseudo-filesystem"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _filesystem_type(path: Path) -> str:
    """Return the type of the filesystem mounted deepest above ``path`` ('' if unknown)."""
    best, fstype = "", ""
    try:
        partitions = psutil.disk_partitions(all=True)
    except OSError:
        return ""
    for partition in partitions:
        point = partition.mountpoint
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, partition.fstype
    return fstype


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``, with explicit overrides on top.

    Raises:
        ConfigError: one line naming the offending ``SALES_STREAM_*`` variable.

    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part]
    name = ENV_PREFIX + loc[0].upper() if loc else "settings"
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if message.startswith(ENV_PREFIX):  # the message names its variable(s) already
        return message
    value = first.get("input")
    hidden = loc == [] or isinstance(value, dict) or loc[0] in _SECRET_FIELDS
    shown = "" if hidden or first.get("type") == "value_error" else f" (got {value!r})"
    return f"{name}: {message}{shown}"
