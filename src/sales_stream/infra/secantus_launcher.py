# SPDX-License-Identifier: GPL-2.0-only
"""Run SecantusDB's MongoDB and PostgreSQL endpoints in one process over one storage.

This file is the only part of sales-stream that imports ``secantus`` (GPL-2.0-only), and
it is only ever executed as a separate process (``python -m
sales_stream.infra.secantus_launcher``); nothing imports it. WiredTiger admits one process
per storage directory, so both wire protocols must share this process's ``Storage``.

The PostgreSQL password, if any, is read from ``SALES_STREAM_SQL_PASSWORD`` in the
environment so that it never shows on a command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from secantus.server import SecantusDBServer
from secantus.sql.pgserver import SecantusPGServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mongo-port", type=int, required=True)
    parser.add_argument("--sql-host", default="127.0.0.1")
    parser.add_argument("--sql-port", type=int, required=True)
    parser.add_argument("--sql-database", default="sales_db")
    parser.add_argument("--sql-user", default="tableau")
    parser.add_argument("--storage-path", required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start both endpoints, block until SIGTERM/SIGINT, then stop them cleanly."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    password = os.environ.get("SALES_STREAM_SQL_PASSWORD")
    mongo = SecantusDBServer(host=args.host, port=args.mongo_port, storage_path=args.storage_path)
    mongo.start()
    sql = SecantusPGServer(
        host=args.sql_host,
        port=args.sql_port,
        storage=mongo.storage,
        default_database=args.sql_database,
        require_auth=password is not None,
        users={args.sql_user: password} if password else None,
    )
    sql.start()
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
