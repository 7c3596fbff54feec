# SPDX-License-Identifier: GPL-2.0-only
"""Run SecantusDB's MongoDB and PostgreSQL endpoints in one process over one storage.

This file is the only part of sales-stream that imports ``secantus`` (GPL-2.0-only), and
it is only ever executed as a separate process (``python -m
sales_stream.infra.secantus_launcher``); nothing imports it. WiredTiger admits one process
per storage directory, so both wire protocols must share this process's ``Storage``.

The PostgreSQL endpoint admits two logins and no other: the BI login (``--sql-user``, on
``--sql-database`` only) and the privileged ``--sql-admin-user`` that declares the schema (``sql
setup``), which always authenticates with SCRAM. SecantusDB's PostgreSQL server has no roles,
so the BI login's read-only wall is ours, `sales_stream.sql.readonly.ReadOnlyPolicy`, applied
twice: to the text of every simple Query and every Parse message before the engine sees it
(parsed by the engine's own parser; the statements it intercepts before parsing — LISTEN/NOTIFY,
two-phase commit, ``DROP INDEX a, b`` — are refused), then to each statement the engine is
about to run, with the session's state at that moment. A name is the session's temporary table
only when the engine resolves it (under the session's ``search_path``) into the session's own
``pg_temp_N`` namespace where it created it. ``COPY`` and the Fastpath (large objects) are
refused to the BI login in every protocol.

The MongoDB endpoint runs with SecantusDB's ``--auth``: every command but the handshake
(``hello``, ``ping``, the SCRAM conversation) needs a login. Its one user, ``--mongo-user``
(role ``root``), is written into the storage before the port opens — what SecantusDB's
``createUser`` does on a start without auth, without ever serving the data unauthenticated —
and its credentials are derived again from the current password at every start.

Passwords come from the environment, never a command line: ``SALES_STREAM_SQL_PASSWORD`` (the
BI login's, optional on loopback), ``SALES_STREAM_SQL_ADMIN_PASSWORD`` and
``SALES_STREAM_EMBEDDED_MONGO_PASSWORD`` (both required).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Any

from secantus.auth import SCRAM_SHA_256, derive_credentials
from secantus.server import SecantusDBServer
from secantus.sql import authz, errors, pgserver, pgwire, planner
from secantus.sql import engine as sql_engine
from secantus.sql.catalog import Catalog
from secantus.sql.pgextended import ExtendedSession
from secantus.sql.pgserver import SecantusPGServer
from sqlglot import exp

from sales_stream.sql.readonly import ReadOnlyPolicy, Refused
from sales_stream.store import DATABASE

_STARTUP = threading.local()  # the startup packet of the connection this thread serves
_INSUFFICIENT_PRIVILEGE = "42501"


class EngineResolver:
    """The engine's view of one session, for `ReadOnlyPolicy` (see `readonly.Resolver`)."""

    def __init__(self, storage: Any, session: Any, catalog: Any = None) -> None:
        self.storage, self.session = storage, session
        self.catalog = catalog if catalog is not None else Catalog(storage)

    def _scope(self) -> Any:
        """The session's open transaction, so its uncommitted temporary tables are seen."""
        session = self.session
        if session.txn_handle is not None and not session.txn_failed:
            return self.storage.use_user_transaction(session.txn_handle)
        return contextlib.nullcontext()

    def parse(self, sql: str) -> list[exp.Expression]:
        """The engine's parser (a syntax error is the engine's own 42601)."""
        return planner.parse(sql)

    def resolve(self, stmt: exp.Expression) -> exp.Expression:
        """A copy of ``stmt`` qualified by the engine's ``search_path`` resolution."""
        probe = stmt.copy()
        with self._scope():
            planner.qualify_from_search_path(
                probe, self.catalog, self.session.database, self.session
            )
        return probe

    def is_own_temp(self, schema: str, name: str) -> bool:
        """Whether the engine created ``schema.name`` as this session's temporary table."""
        key = f"{schema}.{name}"
        if schema != self.session.temp_schema or (self.session.database, key) not in (
            self.session.temp_tables
        ):
            return False
        with self._scope():
            table = self.catalog.get(self.session.database, key)
        return table is not None and bool(table.temp)

    def taken(self, name: str) -> bool:
        """Whether a relation of the catalogue or a collection is called ``name``."""
        db = self.session.database
        with self._scope():
            return self.catalog.exists(db, name) or self.storage.collection_exists(db, name)


def _refusal(policy: ReadOnlyPolicy, exc: Refused) -> errors.SQLError:
    """The engine error (42501) for a refusal of ``policy``."""
    return errors.SQLError(_INSUFFICIENT_PRIVILEGE, str(exc))


def _check_text(storage: Any, session: Any, sql: str) -> None:
    """Check a whole message's SQL text before the engine sees it; raise `errors.SQLError`."""
    policy: ReadOnlyPolicy = session.bi_policy
    if session.get_setting("standard_conforming_strings").lower() in ("off", "false", "0"):
        sql = planner.decode_nonstandard_strings(sql)  # as the engine will read it
    if (
        sql_engine.is_pubsub_statement(sql)
        or sql_engine.is_two_phase_statement(sql)
        or sql_engine.is_multi_drop_index(sql)
    ):
        word = sql.split(None, 1)[0].upper() if sql.strip() else "this"
        raise errors.SQLError(_INSUFFICIENT_PRIVILEGE, str(policy.refused(f"{word} statements")))
    resolver = EngineResolver(storage, session)
    try:
        policy.check_all(resolver.parse(sql), resolver)
    except Refused as exc:
        raise _refusal(policy, exc) from None


class GuardedExtendedSession(ExtendedSession):
    """The extended protocol with the BI login's Parse messages checked first."""

    def _parse(self, payload: bytes) -> bytes:
        if getattr(self.session, "bi_policy", None) is not None:
            _, query, _ = pgwire.parse_parse(payload, self.session.wire_encoding)
            _check_text(self.storage, self.session, query)
        return super()._parse(payload)

    def _execute_copy_out(self, portal: Any) -> bytes:
        if getattr(self.session, "bi_policy", None) is not None:
            raise _refusal(self.session.bi_policy, self.session.bi_policy.refused("COPY"))
        return super()._execute_copy_out(portal)


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

    def _handle_query(self, conn: Any, session: Any, sql: str) -> None:
        if getattr(session, "bi_policy", None) is not None:
            try:
                _check_text(self.storage, session, sql)
            except errors.SQLError as exc:
                if session.txn_handle is not None:
                    session.txn_failed = True  # an error aborts the block, as in PostgreSQL
                conn.sendall(
                    pgwire.error_response(exc.sqlstate, exc.message, encoding=session.wire_encoding)
                    + pgwire.ready_for_query(session.txn_status())
                )
                return
        super()._handle_query(conn, session, sql)

    def _handle_fastpath(self, session: Any, payload: bytes) -> bytes:
        if getattr(session, "bi_policy", None) is not None:
            message = str(session.bi_policy.refused("Fastpath function calls"))
            return pgwire.error_response(_INSUFFICIENT_PRIVILEGE, message) + (
                pgwire.ready_for_query(session.txn_status())
            )
        return super()._handle_fastpath(session, payload)

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
    """Record each connection's startup packet; check every statement of a BI session.

    Every message of a BI session is checked before the engine sees it, and every statement
    again right before it runs (``authz.authorize``, which the engine calls per statement).
    """
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
                policy.check(stmt, EngineResolver(storage, session, catalog))
            except Refused as exc:
                raise _refusal(policy, exc) from None
        authorize(stmt, session, storage, catalog)

    plan_drop_table = planner.plan_drop_table

    def _plan_drop_table(stmt: Any) -> Any:
        # SecantusDB 0.7 reads the target of DROP TABLE from ``this``, where sqlglot 30
        # leaves None and puts it in ``tables``: every DROP TABLE failed with XX000.
        tables = stmt.args.get("tables") or []
        if stmt.this is None and len(tables) == 1:
            stmt.set("this", tables[0].copy())
        return plan_drop_table(stmt)

    pgwire.read_startup_packet = _read_startup_packet
    authz.authorize = _authorize
    planner.plan_drop_table = _plan_drop_table
    pgserver.ExtendedSession = GuardedExtendedSession


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mongo-port", type=int, required=True)
    parser.add_argument("--mongo-user", required=True)
    parser.add_argument("--sql-host", default="127.0.0.1")
    parser.add_argument("--sql-port", type=int, required=True)
    parser.add_argument("--sql-database", default=DATABASE)
    parser.add_argument("--sql-user", default="tableau")
    parser.add_argument("--sql-admin-user", required=True)
    parser.add_argument("--sql-readable", required=True, help="comma-separated relations")
    parser.add_argument("--storage-path", required=True)
    return parser.parse_args(argv)


def provision_mongo_user(storage: Any, user: str, password: str) -> None:
    """Make ``user`` the MongoDB endpoint's ``root`` login with ``password`` (SCRAM-SHA-256).

    The record is the one SecantusDB's ``createUser`` stores in ``admin``; it is replaced, so
    the credentials always match the current password.
    """
    credentials = derive_credentials(password, mechanism=SCRAM_SHA_256, username=user).to_doc()
    record = {
        "_id": f"admin.{user}",
        "user": user,
        "db": "admin",
        "credentials": credentials,
        "roles": [{"role": "root", "db": "admin"}],
        "mechanisms": [SCRAM_SHA_256],
    }
    storage.add_user("admin", user, record, replace=True)


def main(argv: list[str] | None = None) -> int:
    """Start both endpoints, block until SIGTERM/SIGINT, then stop them cleanly."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    names = ("SALES_STREAM_SQL_ADMIN_PASSWORD", "SALES_STREAM_EMBEDDED_MONGO_PASSWORD")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        print(f"{', '.join(missing)} not set", file=sys.stderr)
        return 2
    admin_password, mongo_password = (os.environ[name] for name in names)
    _install_hooks()
    mongo = SecantusDBServer(
        host=args.host,
        port=args.mongo_port,
        storage_path=args.storage_path,
        require_auth=True,
        enable_test_commands=False,  # as secantusd: no fail points for whoever reaches the port
    )
    provision_mongo_user(mongo.storage, args.mongo_user, mongo_password)
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
