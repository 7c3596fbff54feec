"""The SQL relations Tableau lists and reads, declared idempotently over the MongoDB collections.

SecantusDB reads a collection as a table of the same name in two ways. Undeclared, it is
*reflected*: missing from ``pg_catalog`` (a client that lists tables, like Tableau or pgjdbc's
``getTables``, sees nothing), typed by sampling documents, and every query first scans the
whole collection twice to sample it. Declared with ``CREATE TABLE`` over the existing
collection, it is listed with fixed types, reads the documents pymongo writes (a column reads
the field of the same name, other fields are ignored, writes are not checked) and a ``WHERE``
on indexed fields becomes an index lookup. So every collection Tableau reads is declared:

* ``sales``: the raw sales (``_id`` is the event id).
* ``ventes_par_heure`` and ``ventes_par_jour``: the rollups of `sales_stream.sinks.rollups`, the
  fast path of the dashboard (a few thousand rows: one per cell, plus the latest deltas).

No view: Tableau reads a relation through a server-side cursor (``DECLARE … CURSOR WITH HOLD
FOR SELECT * FROM "public"."<relation>"``, then ``FETCH 10000``) and SecantusDB 0.7's cursors
do not resolve views (``relation "public.ventes" does not exist``, where a plain ``SELECT``
works). The per-sale relation is therefore the ``sales`` table itself, and the catalogue
lists only what serves a cursor. (Earlier versions declared a view ``ventes``; SecantusDB 0.7
has no ``DROP VIEW``, so a state folder from then keeps it: ``down``, remove the folder.)

SQL writes (these declarations) are not synced to SecantusDB's journal, so `ensure_schema`
checkpoints them with an ``fsync`` through MongoDB: a SIGKILL right after cannot lose them.
"""

from __future__ import annotations

from typing import Protocol

import psycopg
from pydantic import SecretStr
from pymongo.database import Database

from sales_stream.contract import sql_table_columns
from sales_stream.errors import InfraError
from sales_stream.sql import connect
from sales_stream.store import DAILY, HOURLY, SALES

HOURLY_TABLE = HOURLY.collection
DAILY_TABLE = DAILY.collection


class SqlLogins(Protocol):
    """The SQL endpoint's two logins (`sales_stream.infra.Endpoints` has them)."""

    @property
    def sql_uri(self) -> str | None:
        """The read-only BI login, if there is an endpoint."""

    @property
    def sql_admin_uri(self) -> SecretStr | None:
        """The admin login that declares the schema."""


_ROLLUP_MEASURES = "lat double precision, lon double precision, sales bigint, quantity bigint, "
#: Declared table → its columns (documents may hold more fields, e.g. a sale's ``src``).
TABLES: dict[str, str] = {
    SALES: sql_table_columns(),
    HOURLY_TABLE: f"hour_start timestamptz, region text, {_ROLLUP_MEASURES}amount numeric",
    DAILY_TABLE: (
        f"day_start timestamptz, region text, product text, category text, {_ROLLUP_MEASURES}"
        "amount numeric"
    ),
}


def ensure_schema(conn: psycopg.Connection, db: Database) -> tuple[str, ...]:
    """Declare the tables of `TABLES` (if missing).

    Idempotent, and safe while the consumer writes (no data is touched). The collections need
    not exist yet.

    Args:
        conn: A connection to the database holding the collections.
        db: The same database through MongoDB.

    Returns:
        The names of the tables.

    Raises:
        ValueError: If ``conn`` and ``db`` name different databases.
        psycopg.Error: If the server refuses a statement (the message says why).
    """
    if conn.info.dbname != db.name:
        raise ValueError(f"the SQL connection uses {conn.info.dbname!r}, MongoDB {db.name!r}")
    with conn.cursor() as cursor:
        for name, columns in TABLES.items():
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    if not conn.autocommit:
        conn.commit()
    db.client.admin.command("fsync")
    return tuple(TABLES)


def setup_endpoint(endpoints: SqlLogins, db: Database) -> tuple[str, ...]:
    """Declare the schema in ``db`` through the SQL admin login; () without SQL endpoint.

    The BI login (``endpoints.sql_uri``) is read-only: only the admin login of
    ``endpoints.sql_admin_uri`` may declare tables.

    Raises:
        InfraError: If the endpoint refuses a statement or cannot be reached.
    """
    if endpoints.sql_uri is None or endpoints.sql_admin_uri is None:
        return ()
    try:
        with connect(endpoints.sql_admin_uri.get_secret_value(), dbname=db.name) as conn:
            return ensure_schema(conn, db)
    except psycopg.Error as exc:
        raise InfraError(f"{endpoints.sql_uri}: {exc}".strip()) from exc


def listed_relations(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The relations of `TABLES` that ``conn``'s login sees in ``pg_catalog`` (what Tableau lists).

    Returns:
        ``(name, relkind)`` pairs sorted by name (``relkind`` ``"r"``: table, ``"v"``: view).
    """
    names = list(TABLES)
    placeholders = ", ".join(["%s"] * len(names))
    rows = conn.execute(
        "SELECT relname, relkind FROM pg_catalog.pg_class "
        f"WHERE relname IN ({placeholders}) ORDER BY relname",
        names,
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]
