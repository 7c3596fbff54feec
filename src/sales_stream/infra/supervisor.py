"""The supervisor of the embedded servers: ``python -m sales_stream.infra.supervisor``.

Started detached by `sales_stream.infra.embedded.start` (one per state directory) on the
ports it chose (`sales_stream.infra.ports.stable_ports`), it starts the object store and the
database, then the broker once the object store serves its bucket, records them in
``services.json``, then watches:

* a server that exits is started again on the same ports and storage, and the others keep
  running; a server that dies before it ever answered is a start-up error instead;
* a ``hold-<server>`` file in the state directory keeps that server down (fault tests);
* SIGTERM/SIGINT (``python -m sales_stream down``) or the exit of the owner process stop
  the servers (the broker before the object store), then the supervisor.

Every event is one line on stdout (``logs/supervisor.log``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sales_stream.infra import embedded, objectstore
from sales_stream.infra.health import port_open
from sales_stream.infra.process import pid_alive, pid_start_time, reap, terminate
from sales_stream.store import DATABASE

POLL_S = 0.2
#: Seconds between two restarts of the same server, doubling up to `MAX_BACKOFF_S`.
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.5, 5.0


def log(message: str) -> None:
    """Print one timestamped event line."""
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


class Supervisor:
    """Owns the servers of one state directory, on ``ports`` (service → port)."""

    def __init__(
        self, state_dir: Path, *, owner_pid: int, config: dict[str, str], ports: dict[str, int]
    ):
        self.state_dir = state_dir
        self.owner_pid = owner_pid
        self.owner_start = pid_start_time(owner_pid)
        self.config = config
        self.ports = ports
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.entries: dict[str, Any] = {}
        self.ready: set[str] = set()
        self.down_since: dict[str, float] = {}
        self.next_try: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.stop_reason: str | None = None
        self.error: str | None = None

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop both servers (from a signal handler)."""
        self.stop_reason = self.stop_reason or reason

    def run(self) -> int:
        """Start the servers, supervise them until asked to stop; return the exit status."""
        log(f"supervisor {os.getpid()} for {self.state_dir}, owner pid {self.owner_pid}")
        for name in ("objectstore", "database"):  # the broker once the store is ready
            self._spawn(name)
        self._write()
        while self.stop_reason is None and self.error is None:
            if not self._owner_alive():
                self.request_stop(f"owner process {self.owner_pid} exited")
                break
            for name in embedded.SERVERS:
                self._watch(name)
            time.sleep(POLL_S)
        self._shutdown()
        return 1 if self.error else 0

    def _owner_alive(self) -> bool:
        if not pid_alive(self.owner_pid):
            return False
        return self.owner_start is None or pid_start_time(self.owner_pid) == self.owner_start

    def _spawn(self, name: str) -> None:
        if name == "kafka":
            proc, entry = embedded.spawn_kafka(
                self.state_dir, self.ports["kafka"], s3_port=self.ports["s3"]
            )
            where = f"127.0.0.1:{entry.port}, cluster id {entry.incarnation}"
        elif name == "objectstore":
            proc, entry = embedded.spawn_objectstore(self.state_dir, self.ports)
            where = f"S3 {entry.s3_endpoint}, filer {entry.filer_url}"
        else:
            proc, entry = embedded.spawn_database(
                self.state_dir,
                self.config,
                mongo_port=self.ports["mongo"],
                sql_port=self.ports["sql"],
            )
            sql = f"{self.config['sql_host']}:{entry.sql_port}"
            where = f"MongoDB 127.0.0.1:{entry.mongo_port}, PostgreSQL {sql}"
        self.procs[name] = proc
        self.entries[name] = entry.__dict__
        log(f"{name} started (pid {proc.pid}) on {where}")

    def _answering(self, name: str) -> bool:
        if name == "kafka":
            return port_open("127.0.0.1", self.ports["kafka"])
        if name == "objectstore":
            return objectstore.ready(self.state_dir, self.ports["s3"])
        return port_open("127.0.0.1", self.ports["mongo"]) and port_open(
            self.config["sql_host"], self.ports["sql"]
        )

    def _watch(self, name: str) -> None:
        proc = self.procs.get(name)
        now = time.monotonic()
        if name not in self.entries:  # not started yet: the broker waits for the object store
            if "objectstore" in self.ready:
                self._spawn(name)
                self._write()
            return
        if proc is not None and proc.poll() is None:
            if name not in self.ready and self._answering(name):
                self.ready.add(name)
                since = self.down_since.pop(name, None)
                back = f" again after {now - since:.1f} s" if since is not None else ""
                log(f"{name} ready{back} (pid {proc.pid})")
                self.backoff.pop(name, None)
                self._write()
            return
        if proc is not None:  # it just exited
            code = proc.returncode
            reap(proc)
            del self.procs[name]
            if name not in self.ready and name not in self.down_since:
                self.error = (
                    f"the embedded {name} exited during start-up (code {code}): see "
                    f"{embedded.log_path(self.state_dir, name)}"
                )
                log(self.error)
                self._write()
                return
            self.ready.discard(name)
            self.down_since.setdefault(name, now)
            log(f"{name} exited (pid {proc.pid}, code {code}); the other server keeps running")
            self._write()
        if embedded.hold_file(self.state_dir, name).exists():
            return
        if now < self.next_try.get(name, 0.0):
            return
        delay = self.backoff.get(name, FIRST_BACKOFF_S)
        self.backoff[name] = min(delay * 2, MAX_BACKOFF_S)
        self.next_try[name] = now + delay
        log(f"restarting {name} on the same ports and storage")
        self._spawn(name)
        self._write()

    def _write(self) -> None:
        state: dict[str, Any] = {
            "supervisor": {"pid": os.getpid(), "owner_pid": self.owner_pid},
            **{name: self.entries[name] for name in embedded.SERVERS if name in self.entries},
            "ready": set(embedded.SERVERS) <= self.ready,
            "error": self.error,
        }
        embedded.write_state(self.state_dir, state)

    def _shutdown(self) -> None:
        if self.stop_reason:
            log(f"stopping the servers: {self.stop_reason}")
        for name in embedded.STOP_ORDER:
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:  # SeaweedFS's graceful stop waits ~25 s on idle streams
                terminate(proc.pid, timeout=5.0 if name == "objectstore" else 10.0)
            reap(proc)
            log(f"{name} stopped")
        if not self.error:
            (self.state_dir / embedded.STATE_FILE).unlink(missing_ok=True)
        log("supervisor exited")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, supervise until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--owner-pid", type=int, required=True)
    parser.add_argument("--sql-host", default="127.0.0.1")
    parser.add_argument("--ports", type=json.loads, required=True, help="JSON: service → port")
    parser.add_argument("--sql-user", default="tableau")
    parser.add_argument("--db", default=DATABASE)
    args = parser.parse_args(argv)
    supervisor = Supervisor(
        args.state_dir,
        owner_pid=args.owner_pid,
        config={"sql_host": args.sql_host, "sql_user": args.sql_user, "db": args.db},
        ports=args.ports,
    )

    def _on_signal(signum: int, _frame: object) -> None:
        supervisor.request_stop(
            f"{signal.Signals(signum).name} received (python -m sales_stream down)"
        )

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
