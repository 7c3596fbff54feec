"""Settings read from the environment (prefix ``SALES_STREAM_``) and an optional ``.env`` file."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sales_stream.errors import ConfigError

ENV_PREFIX = "SALES_STREAM_"


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
    db: str = Field(default="sales_db", min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_-]+$")
    partitions: int = Field(default=3, ge=1, le=64)
    state_dir: Path = Path(".sales_stream")
    sql_host: str = "127.0.0.1"
    sql_port: int | None = Field(default=None, ge=1, le=65535)
    sql_user: str = "tableau"
    sql_password: SecretStr | None = None
    sql_rollups: bool = True
    mongo_user: str | None = None
    mongo_password: SecretStr | None = None
    compose_file: Path = Path("docker-compose.yml")
    lake: str = "lake"

    @model_validator(mode="after")
    def _sql_password_beyond_loopback(self) -> Settings:
        if not _is_loopback(self.sql_host) and self.sql_password is None:
            raise ValueError(
                f"sql_host={self.sql_host!r} is not loopback: set SALES_STREAM_SQL_PASSWORD in .env"
            )
        return self


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
    value = first.get("input")
    shown = "" if loc == [] or isinstance(value, dict) else f" (got {value!r})"
    return f"{name}: {message}{shown}"
