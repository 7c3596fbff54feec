# SPDX-License-Identifier: GPL-2.0-only
"""Run SecantusDB's MongoDB and PostgreSQL endpoints in one process over one storage.

This file is the only part of sales-stream that imports ``secantus`` (GPL-2.0-only), and
it is only ever executed as a separate process (``python -m
sales_stream.infra.secantus_launcher``); nothing imports it. WiredTiger admits one process
per storage directory, so both wire protocols must share this process's ``Storage``.

The PostgreSQL endpoint admits two logins and no other: the BI login (``--sql-user``, on
``--sql-database`` only, read-only: every statement passes
`sales_stream.sql.readonly.ReadOnlyPolicy` first, ``COPY`` and large-object writes are refused)
and the privileged ``--sql-admin-user`` that declares the schema (``sql setup``), which always
authenticates with SCRAM. Passwords come from the environment, never a command line:
``SALES_STREAM_SQL_PASSWORD`` (the BI login's, optional on loopback) and
``SALES_STREAM_SQL_ADMIN_PASSWORD`` (required).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from secantus.server import SecantusDBServer
from secantus.sql import authz, errors, pgwire
from secantus.sql.pgserver import SecantusPGServer

from sales_stream.sql.readonly import ReadOnlyPolicy, Refused

_STARTUP = threading.local()  # the startup packet of the connection this thread serves
_INSUFFICIENT_PRIVILEGE = "42501"


class GuardedPGServer(SecantusPGServer):
    """The PostgreSQL endpoint with one read-only BI login and one admin login."""

    def __init__(
        self,
        *,
        bi_user: str,
        bi_password: str | None,
        database: str,
        admin_user: str,
        admin_password: str,
        readable: frozenset[str],
        **kwargs: Any,
    ) -> None:
        users = {admin_user: admin_password}
        if bi_password:
            users[bi_user] = bi_password
        super().__init__(default_database=database, require_auth=True, users=users, **kwargs)
        self.bi_user, self.bi_password, self.database = bi_user, bi_password, database
        self.admin_user, self.readable = admin_user, readable

    def _authenticate(self, io: Any, user: str) -> bool:
        params = getattr(_STARTUP, "params", {})
        database = params.get("database") or user
        if user == self.admin_user:
            return super()._authenticate(io, user)
        if user != self.bi_user:
            io.sendall(
                pgwire.error_response(
                    "28000", f'role "{user}" is not permitted to log in: use "{self.bi_user}"'
                )
            )
            return False
        if database != self.database:
            io.sendall(
                pgwire.error_response(
                    "3D000", f'database "{database}" does not exist: use "{self.database}"'
                )
            )
            return False
        return super()._authenticate(io, user) if self.bi_password else True

    def _handshake(self, conn: Any) -> Any:
        result = super()._handshake(conn)
        if result is not None and result[1].user == self.bi_user:
            result[1].bi_policy = ReadOnlyPolicy(self.readable, user=self.bi_user)
        return result

    def _handle_copy(self, conn: Any, session: Any, stmt: Any) -> None:
        if getattr(session, "bi_policy", None) is not None:
            message = f"permission denied: the login {self.bi_user!r} is read-only (COPY)"
            conn.sendall(pgwire.error_response(_INSUFFICIENT_PRIVILEGE, message))
            conn.sendall(pgwire.ready_for_query(session.txn_status()))
            return
        super()._handle_copy(conn, session, stmt)

    def _authorize_lo_write(self, session: Any) -> None:
        if getattr(session, "bi_policy", None) is not None:
            raise errors.SQLError(
                _INSUFFICIENT_PRIVILEGE,
                f"permission denied: the login {self.bi_user!r} is read-only (large objects)",
            )
        super()._authorize_lo_write(session)


def _install_hooks() -> None:
    """Record each connection's startup packet; check every statement of a BI session."""
    read_startup_packet = pgwire.read_startup_packet
    authorize = authz.authorize

    def _read_startup_packet(sock: Any) -> Any:
        packet = read_startup_packet(sock)
        _STARTUP.params = getattr(packet, "params", {})
        return packet

    def _authorize(stmt: Any, session: Any, storage: Any, catalog: Any = None) -> None:
        policy = getattr(session, "bi_policy", None)
        if policy is not None:
            try:
                policy.check(stmt)
            except Refused as exc:
                raise errors.SQLError(_INSUFFICIENT_PRIVILEGE, str(exc)) from None
        authorize(stmt, session, storage, catalog)

    pgwire.read_startup_packet = _read_startup_packet
    authz.authorize = _authorize


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mongo-port", type=int, required=True)
    parser.add_argument("--sql-host", default="127.0.0.1")
    parser.add_argument("--sql-port", type=int, required=True)
    parser.add_argument("--sql-database", default="sales_db")
    parser.add_argument("--sql-user", default="tableau")
    parser.add_argument("--sql-admin-user", required=True)
    parser.add_argument("--sql-readable", required=True, help="comma-separated relations")
    parser.add_argument("--storage-path", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start both endpoints, block until SIGTERM/SIGINT, then stop them cleanly."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    admin_password = os.environ.get("SALES_STREAM_SQL_ADMIN_PASSWORD")
    if not admin_password:
        print("SALES_STREAM_SQL_ADMIN_PASSWORD is not set", file=sys.stderr)
        return 2
    _install_hooks()
    mongo = SecantusDBServer(host=args.host, port=args.mongo_port, storage_path=args.storage_path)
    mongo.start()
    sql = GuardedPGServer(
        host=args.sql_host,
        port=args.sql_port,
        storage=mongo.storage,
        database=args.sql_database,
        bi_user=args.sql_user,
        bi_password=os.environ.get("SALES_STREAM_SQL_PASSWORD"),
        admin_user=args.sql_admin_user,
        admin_password=admin_password,
        readable=frozenset(name.lower() for name in args.sql_readable.split(",") if name),
    )
    try:
        sql.start()
    except OSError as exc:
        print(
            f"error: the PostgreSQL endpoint cannot listen on {args.sql_host}:{args.sql_port}: "
            f"{exc}",
            file=sys.stderr,
            flush=True,
        )
        mongo.stop()
        return 3
    stopped = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"ready mongo={args.host}:{args.mongo_port} sql={args.sql_host}:{args.sql_port}", flush=True
    )
    stopped.wait()
    sql.stop()
    mongo.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
