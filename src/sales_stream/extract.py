"""The Tableau extract file: its tables, how rows are written to it and read back.

One table, ``"Extract"."Extract"`` (what Tableau expects of a single-table extract), one row
per sale, its columns from `sales_stream.contract` (``ts`` in UTC, Hyper timestamps carry no
zone; ``date`` and ``hour`` derived from it), and a one-row state table,
``"sales_stream"."export_state"``, naming the extract's one `Writer` (and the MongoDB
exporter's watermark). Only that writer continues the file: another one raises
`ExtractOwnedError`. Rows reach Hyper through a temporary Parquet file loaded with ``COPY``;
files are written in place, published by the caller with `os.replace`. Shared by the MongoDB
exporter (`sales_stream.export.hyper`), the live sink (`sales_stream.sinks.hyper`) and the
committed snapshot (`sales_stream.export.snapshot`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import pantab
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tableauhyperapi import (
    NOT_NULLABLE,
    NULLABLE,
    Connection,
    CreateMode,
    HyperProcess,
    SqlType,
    TableDefinition,
    TableName,
    Telemetry,
    escape_string_literal,
)

from sales_stream.contract import extract_arrow_schema, hyper_columns
from sales_stream.errors import SalesStreamError

__all__ = [
    "ARROW_SCHEMA",
    "EXTRACT_TABLE",
    "HYPER_PARAMETERS",
    "STATE_TABLE",
    "ExtractOwnedError",
    "Writer",
    "append_to_extract",
    "documents_to_arrow",
    "extract_revenue_by_region",
    "extract_writer",
    "held_ids",
    "layout_matches",
    "naive_utc",
    "read_extract",
    "scratch_name",
    "start_hyper",
    "write_extract",
]

log = logging.getLogger(__name__)

EXTRACT_TABLE = TableName("Extract", "Extract")
STATE_TABLE = TableName("sales_stream", "export_state")

#: Arrow schema of the extract's rows, in table order.
ARROW_SCHEMA = extract_arrow_schema()
_DEFINITION = TableDefinition(
    EXTRACT_TABLE,
    [
        TableDefinition.Column(name, sql, NULLABLE if nullable else NOT_NULLABLE)
        for name, sql, nullable in hyper_columns()
    ],
)
_STATE_DEFINITION = TableDefinition(
    STATE_TABLE,
    [
        TableDefinition.Column("writer", SqlType.text(), NOT_NULLABLE),
        TableDefinition.Column("watermark", SqlType.timestamp(), NULLABLE),
        TableDefinition.Column("updated_at", SqlType.timestamp(), NOT_NULLABLE),
    ],
)
# Document fields copied as they are (all but ``event_id``, ``ts`` and the derived columns).
_COPIED = tuple((field.name, field.type) for field in ARROW_SCHEMA)[4:]
_COLUMN_LIST = ", ".join(f'"{name}"' for name in ARROW_SCHEMA.names)
#: Options of every Hyper process started here: no hyperd.log in the working directory.
HYPER_PARAMETERS = {"log_config": ""}


class Writer(StrEnum):
    """Who writes an extract; only its owner continues it."""

    MONGODB = "mongodb"  # HyperExporter: polls MongoDB, keeps an ``ingested_at`` watermark
    STREAM = "stream"  # the live extract's HyperSink: fed from Kafka, no watermark
    SNAPSHOT = "snapshot"  # a generated, finished workbook extract


class ExtractOwnedError(SalesStreamError):
    """An extract written by one writer was handed to another."""

    def __init__(self, path: Path, owner: str, writer: Writer) -> None:
        super().__init__(
            f"{path} is written by the {owner} writer, not the {writer} one: "
            "give this one another path or delete the file"
        )


def documents_to_arrow(docs: list[dict[str, Any]]) -> tuple[pa.Table, int]:
    """Convert sale documents to rows of the extract; skip (and log) the malformed ones.

    Args:
        docs: Documents as stored by the sink, ``ts`` as a naive UTC datetime (a client with
            ``tz_aware=False``) or an aware one.

    Returns:
        The table (schema `ARROW_SCHEMA`) and the number of documents skipped.
    """
    try:
        return _columns(docs), 0
    except (KeyError, TypeError, ValueError, pa.ArrowException):
        good = [doc for doc in docs if _exportable(doc)]
        bad = [str(doc.get("_id")) for doc in docs if not _exportable(doc)]
        log.warning("skipped %d malformed sale document(s): %s", len(bad), ", ".join(bad[:20]))
        return _columns(good), len(bad)


def _columns(docs: list[dict[str, Any]]) -> pa.Table:
    ts = pa.array([d["ts"] for d in docs], pa.timestamp("us", tz=None))
    arrays = [
        pa.array([d["_id"] for d in docs], pa.string()),
        ts,
        pc.cast(ts, pa.date32()),
        pc.cast(pc.hour(ts), pa.int16()),
    ]
    arrays.extend(pa.array([d[name] for d in docs], kind) for name, kind in _COPIED)
    if any(array.null_count for array in arrays):
        raise ValueError("null value in a NOT NULL column")
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def _exportable(doc: dict[str, Any]) -> bool:
    try:
        _columns([doc])
    except (KeyError, TypeError, ValueError, pa.ArrowException):
        return False
    return True


def read_extract(path: Path | str) -> pd.DataFrame:
    """Read the ``"Extract"."Extract"`` table of a Hyper file (tests, notebooks).

    Returns:
        One row per sale; ``ts`` is naive and means UTC, ``date`` holds `datetime.date`.
    """
    table = pantab.frame_from_hyper(Path(path), table=EXTRACT_TABLE, return_type="pyarrow")
    return pa.table(table).to_pandas()


def extract_revenue_by_region(path: Path | str) -> pd.DataFrame:
    """Revenue and number of sales per region in the extract (``region``, ``revenue``, ``sales``).

    The same columns as `sales_stream.read.mongo_queries.revenue_by_region`, to compare with
    MongoDB.
    """
    return (
        read_extract(path)
        .groupby("region", as_index=False)
        .agg(revenue=("amount", "sum"), sales=("amount", "size"))
    )


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as a naive datetime meaning UTC (Hyper timestamps carry no zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _timestamp_literal(moment: datetime) -> str:
    return f"TIMESTAMP {escape_string_literal(naive_utc(moment).isoformat(sep=' '))}"


def write_extract(
    hyper: HyperProcess,
    path: Path,
    table: pa.Table,
    *,
    writer: Writer,
    watermark: datetime | None = None,
) -> None:
    """Create (or replace) the extract ``path`` with the rows of ``table``, owned by ``writer``.

    The rows go through a temporary Parquet file beside ``path`` that Hyper loads with
    ``COPY``. ``path`` is written in place: publish it with `os.replace`.

    Args:
        hyper: A running Hyper process (reused across calls).
        path: The ``.hyper`` file to create.
        table: Rows with the schema `ARROW_SCHEMA`.
        writer: The extract's owner, stored in `STATE_TABLE`.
        watermark: Stored in `STATE_TABLE` (aware UTC); only the MongoDB writer has one.
    """
    with Connection(hyper.endpoint, path, CreateMode.CREATE_AND_REPLACE) as conn:
        for definition in (_DEFINITION, _STATE_DEFINITION):
            conn.catalog.create_schema_if_not_exists(definition.table_name.schema_name)
            conn.catalog.create_table(definition)
        if table.num_rows:
            with _parquet(path, table) as source:
                conn.execute_command(
                    f"COPY {EXTRACT_TABLE} FROM {source} WITH (FORMAT => 'parquet')"
                )
        _store_state(conn, writer, watermark)


#: Whether the extract holds the ``event_id`` of the row ``s`` (of a Parquet batch).
_HELD = f"EXISTS (SELECT 1 FROM {EXTRACT_TABLE} AS e WHERE e.event_id = s.event_id)"


def append_to_extract(
    hyper: HyperProcess,
    path: Path,
    table: pa.Table,
    *,
    writer: Writer,
    watermark: datetime | None = None,
    skip_known: bool = True,
) -> int:
    """Append the rows of ``table`` whose ``event_id`` the extract lacks; store the state.

    Args:
        hyper: A running Hyper process.
        path: An extract written by `write_extract` (modified in place).
        table: Rows with the schema `ARROW_SCHEMA`, one per ``event_id``.
        writer: The extract's owner.
        watermark: The new watermark (aware UTC), if ``writer`` keeps one.
        skip_known: Leave out the rows whose ``event_id`` the extract holds (an anti-join
            that scans the whole table). ``False`` appends every row: only for rows known
            to be new.

    Returns:
        The number of rows added.
    """
    anti_join = f" WHERE NOT {_HELD}" if skip_known else ""
    with Connection(hyper.endpoint, path) as conn, _parquet(path, table) as source:
        added = conn.execute_command(
            f"INSERT INTO {EXTRACT_TABLE} ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} "
            f"FROM external({source}, FORMAT => 'parquet') AS s{anti_join}"
        )
        _store_state(conn, writer, watermark)
    return added


def held_ids(hyper: HyperProcess, path: Path, table: pa.Table) -> set[str]:
    """The ``event_id`` values of ``table`` that the extract ``path`` already holds."""
    with Connection(hyper.endpoint, path) as conn, _parquet(path, table) as source:
        rows = conn.execute_list_query(
            f"SELECT s.event_id FROM external({source}, FORMAT => 'parquet') AS s WHERE {_HELD}"
        )
    return {row[0] for row in rows}


@contextlib.contextmanager
def _parquet(path: Path, table: pa.Table) -> Iterator[str]:
    """Write ``table`` to a Parquet file beside ``path``; yield its path as a SQL literal."""
    parquet = path.with_suffix(".parquet")
    try:
        pq.write_table(table, parquet, compression="none")
        yield escape_string_literal(str(parquet))
    finally:
        parquet.unlink(missing_ok=True)


def scratch_name(path: Path, tag: str) -> str:
    """Name of a temporary file published over ``path`` (``tag``: unique, or a glob)."""
    return f".{path.stem}.{tag}.tmp.hyper"


def start_hyper() -> HyperProcess:
    """A Hyper process for this module's writers (close it when done)."""
    return HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters=HYPER_PARAMETERS)


def _store_state(conn: Connection, writer: Writer, watermark: datetime | None) -> None:
    stored = "NULL" if watermark is None else _timestamp_literal(watermark)
    conn.execute_command(f"DELETE FROM {STATE_TABLE}")
    conn.execute_command(
        f"INSERT INTO {STATE_TABLE} VALUES ({escape_string_literal(writer)}, "
        f"{stored}, {_timestamp_literal(datetime.now(UTC))})"
    )


def extract_writer(conn: Connection, path: Path, writer: Writer) -> bool:
    """Whether ``writer`` may continue the attached extract ``path``.

    Returns:
        False for another layout (to be rebuilt).

    Raises:
        ExtractOwnedError: The extract belongs to another writer.
    """
    if not layout_matches(conn):
        return False
    owner = conn.execute_scalar_query(f"SELECT MAX(writer) FROM {STATE_TABLE}")
    if owner is None:
        return False
    if owner != writer:
        raise ExtractOwnedError(path, owner, writer)
    return True


def layout_matches(conn: Connection) -> bool:
    """Whether the attached extract has this module's table and state table."""
    catalog = conn.catalog
    return all(
        catalog.has_table(definition.table_name)
        and [
            (c.name.unescaped, c.type)
            for c in catalog.get_table_definition(definition.table_name).columns
        ]
        == [(c.name.unescaped, c.type) for c in definition.columns]
        for definition in (_DEFINITION, _STATE_DEFINITION)
    )
