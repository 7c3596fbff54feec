"""SQL access to the sales through the PostgreSQL endpoint of the embedded database.

In embedded mode SecantusDB serves the MongoDB data over the PostgreSQL wire protocol too
(`sales_stream.infra.secantus_launcher`): a collection reads as a table of the same name in the
database of the same name. `schema` declares the tables Tableau lists and reads; `queries` runs
the dashboard's aggregations over them, with the results of `sales_stream.read.mongo_queries`.
"""

from __future__ import annotations

import psycopg

from sales_stream.config import Settings

__all__ = ["connect"]

CONNECT_TIMEOUT_S = 10


def connect(
    uri: str, *, dbname: str | None = None, settings: Settings | None = None
) -> psycopg.Connection:
    """Open an autocommit connection to the PostgreSQL endpoint.

    Args:
        uri: ``postgresql://USER@HOST:PORT/DATABASE`` (`sales_stream.infra.Endpoints.sql_uri`).
        dbname: Database to use instead of the URI's (it names the MongoDB database).
        settings: Where the password comes from (``SALES_STREAM_SQL_PASSWORD``), if one is set.

    Raises:
        psycopg.OperationalError: If the endpoint cannot be reached or refuses the login.
    """
    options: dict[str, str | int] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if dbname is not None:
        options["dbname"] = dbname
    if settings is not None and settings.sql_password is not None:
        options["password"] = settings.sql_password.get_secret_value()
    return psycopg.connect(uri, autocommit=True, **options)
