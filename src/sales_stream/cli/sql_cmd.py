"""``sql setup``: declare what Tableau reads over the PostgreSQL endpoint (embedded mode).

``up`` already does it; this is the explicit, idempotent command (e.g. for a new database).
It goes through the SQL admin login, never the read-only BI login.
"""

from __future__ import annotations

import argparse

from sales_stream import infra
from sales_stream.config import load_settings
from sales_stream.errors import InfraError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sql`` command."""
    parser = subparsers.add_parser("sql", help="the PostgreSQL endpoint for Tableau (embedded)")
    actions = parser.add_subparsers(dest="sql_action", required=True, metavar="ACTION")
    setup = actions.add_parser("setup", help="declare the SQL tables and views (idempotent)")
    setup.set_defaults(func=_setup)


def _setup(args: argparse.Namespace) -> int:
    from sales_stream.clients import mongo_client
    from sales_stream.sql.schema import setup_endpoint

    settings = load_settings()
    endpoints = infra.status(settings)
    if endpoints is None:
        raise InfraError("not running; start with: python -m sales_stream up")
    if endpoints.sql_uri is None:
        raise InfraError(f"no PostgreSQL endpoint in {settings.mode.value} mode (embedded only)")
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    try:
        names = setup_endpoint(endpoints, client[settings.db])
    finally:
        client.close()
    print(f"{', '.join(names)} ready at {endpoints.sql_uri}")
    return 0
