"""The schema contract: the one table of the sale columns, and everything generated from it.

`COLUMNS` is the only place a sale column is declared: its name, logical type, where it comes
from (a field of the Kafka event, derived from ``ts``, or the sink's ingestion stamp), its
bounds, and how each store and Tableau see it. From it come:

* the wire fields and bounds of `sales_stream.events` (`EVENT_FIELDS`, `MAX_QUANTITY`, …);
* the Arrow schemas of the Parquet lake (`lake_file_schema`, `lake_partition_schema`);
* the Hyper extract's table (`hyper_columns`, `extract_arrow_schema`);
* the SQL DDL of the ``sales`` table (`sql_table_columns`);
* the fields of the Tableau workbooks, over the extract or the ``sales`` table (`tableau_fields`);
* the published JSON Schema of a Kafka message (`json_schema`;
  ``python -m sales_stream.contract --json-schema > docs/sale_event.schema.json``).

Heavy libraries (pyarrow, tableauhyperapi) are imported only by the functions that need them,
so `sales_stream.events` stays cheap to import.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sales_stream.reference import CATEGORIES, CHANNELS, CITY_NAMES_BY_REGION, PRODUCT_BY_NAME

if TYPE_CHECKING:
    import pyarrow as pa
    from tableauhyperapi import SqlType

__all__ = [
    "COLUMNS",
    "EVENT_FIELDS",
    "INGESTED_AT",
    "Column",
    "Kind",
    "Origin",
    "TableauField",
    "extract_arrow_schema",
    "hyper_columns",
    "json_schema",
    "lake_file_schema",
    "lake_partition_schema",
    "sql_table_columns",
    "tableau_fields",
]

SCHEMA_VERSION = 1
CURRENCY = "EUR"
MAX_PAYLOAD_BYTES = 16 * 1024
AMOUNT_TOLERANCE = 0.01
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE = 1_000_000.0
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)
LAT_RANGE = (41.0, 51.5)
LON_RANGE = (-5.5, 10.0)
#: The sink's UTC clock when it wrote the batch: the document field and SQL column name.
INGESTED_AT = "ingested_at"
#: Tableau number format of the euro amounts.
EUR_FORMAT = 'c#,##0.00" €";-#,##0.00" €"'
JSON_SCHEMA_ID = f"urn:sales-stream:sale-event:v{SCHEMA_VERSION}"


class Kind(StrEnum):
    """Logical type of a column; each store's type follows from it (see the tables below)."""

    TEXT = "text"
    TIMESTAMP = "timestamp"
    DATE = "date"
    SMALLINT = "smallint"
    INT = "int"
    FLOAT = "float"


class Origin(StrEnum):
    """Where a column's value comes from."""

    EVENT = "event"  # a field of the Kafka message
    DERIVED = "derived"  # computed from ``ts`` (UTC)
    INGESTION = "ingestion"  # stamped by the MongoDB sink


class Lake(StrEnum):
    """Where a column lives in the Parquet lake."""

    FILE = "file"
    PARTITION = "partition"  # in the hive directory names
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the sale table.

    Attributes:
        name: Column name (event field, extract column, view column, workbook field).
        kind: Logical type.
        origin: Event field, derived from ``ts``, or ingestion stamp.
        description: English description (JSON Schema, docs).
        caption: French caption shown by Tableau.
        lake: Whether the lake stores it in the files, in the partition directories, or not.
        dictionary: Whether the lake dictionary-encodes it (low-cardinality text).
        tableau: Whether the extract and the extract workbook carry it.
        document_key: Its key in the MongoDB document and column of the SQL ``sales`` table
            when it differs from ``name`` (derived columns are not stored in MongoDB).
        nullable: Whether a value may be null (no column may today).
        minimum: Inclusive lower bound (numbers).
        maximum: Inclusive upper bound (numbers).
        exclusive_minimum: Whether ``minimum`` itself is excluded.
        measure: Tableau role: measure (quantitative) rather than dimension.
        ordinal: Tableau type of a dimension: ordinal rather than nominal.
        aggregation: Tableau default aggregation.
        semantic_role: Tableau geographic role.
        default_format: Tableau number format.
    """

    name: str
    kind: Kind
    origin: Origin
    description: str
    caption: str
    lake: Lake = Lake.FILE
    dictionary: bool = False
    tableau: bool = True
    document_key: str | None = None
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    measure: bool = False
    ordinal: bool = False
    aggregation: str = "Count"
    semantic_role: str | None = None
    default_format: str | None = None

    @property
    def stored_as(self) -> str | None:
        """The MongoDB key / SQL ``sales`` column, ``None`` if not stored in MongoDB."""
        if self.origin is Origin.DERIVED:
            return None
        return self.document_key or self.name


_EVENT = Origin.EVENT
_DERIVED = Origin.DERIVED

COLUMNS: tuple[Column, ...] = (
    Column(
        "event_id", Kind.TEXT, _EVENT, "Canonical lowercase UUID4, the idempotency key.",
        "Identifiant", document_key="_id",
    ),
    Column(
        "ts", Kind.TIMESTAMP, _EVENT,
        "Time of the sale: ISO-8601 with a UTC offset, stored in UTC to the millisecond.",
        "Horodatage (UTC)", ordinal=True, aggregation="Year",
    ),
    Column(
        "date", Kind.DATE, _DERIVED, "UTC date of ts.", "Date", lake=Lake.PARTITION,
        ordinal=True, aggregation="Year",
    ),
    Column(
        "hour", Kind.SMALLINT, _DERIVED, "UTC hour of ts (0-23).", "Heure", lake=Lake.ABSENT,
        minimum=0, maximum=23, ordinal=True, aggregation="Sum",
    ),
    Column(
        "product", Kind.TEXT, _EVENT, "Product name from the catalogue.", "Produit",
        dictionary=True,
    ),
    Column(
        "category", Kind.TEXT, _EVENT, "The product's category.", "Catégorie", dictionary=True
    ),
    Column(
        "region", Kind.TEXT, _EVENT, "French region (one of the 13 metropolitan regions).",
        "Région", lake=Lake.PARTITION, semantic_role="[State].[Name]",
    ),
    Column("city", Kind.TEXT, _EVENT, "A city of that region.", "Ville", dictionary=True),
    Column(
        "lat", Kind.FLOAT, _EVENT, "Latitude of the city (metropolitan France).", "Latitude",
        minimum=LAT_RANGE[0], maximum=LAT_RANGE[1], measure=True, aggregation="Avg",
        semantic_role="[Geographical].[Latitude]",
    ),
    Column(
        "lon", Kind.FLOAT, _EVENT, "Longitude of the city (metropolitan France).", "Longitude",
        minimum=LON_RANGE[0], maximum=LON_RANGE[1], measure=True, aggregation="Avg",
        semantic_role="[Geographical].[Longitude]",
    ),
    Column(
        "quantity", Kind.INT, _EVENT, "Units sold.", "Quantité", minimum=1,
        maximum=MAX_QUANTITY, measure=True, aggregation="Sum",
    ),
    Column(
        "unit_price", Kind.FLOAT, _EVENT, "Unit price in EUR, 2 decimals.", "Prix unitaire",
        minimum=0, maximum=MAX_UNIT_PRICE, exclusive_minimum=True, measure=True,
        aggregation="Avg", default_format=EUR_FORMAT,
    ),
    Column(
        "amount", Kind.FLOAT, _EVENT, "quantity × unit_price in EUR, 2 decimals.", "Montant",
        minimum=0, maximum=MAX_QUANTITY * MAX_UNIT_PRICE, exclusive_minimum=True,
        measure=True, aggregation="Sum", default_format=EUR_FORMAT,
    ),
    Column(
        "currency", Kind.TEXT, _EVENT, f"Always {CURRENCY!r}.", "Devise", dictionary=True
    ),
    Column("channel", Kind.TEXT, _EVENT, "Sales channel.", "Canal", dictionary=True),
    Column(
        "schema_version", Kind.SMALLINT, _EVENT, "Version of this contract.",
        "Version du schéma", tableau=False,
    ),
    Column(
        INGESTED_AT, Kind.TIMESTAMP, Origin.INGESTION,
        "When the MongoDB sink wrote the sale (UTC): the freshness and export watermark.",
        "Ingéré le (UTC)", lake=Lake.ABSENT, tableau=False,
    ),
)  # fmt: skip
COLUMN_BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
#: The fields of a Kafka message, in `sales_stream.events.SaleEvent` order.
EVENT_FIELDS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.origin is _EVENT)
#: The columns of the extract and of its workbook, in this order.
TABLEAU_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.tableau)
#: The columns of a MongoDB sale document (and of the SQL ``sales`` table).
DOCUMENT_COLUMNS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.stored_as is not None)

# --- per-store types --------------------------------------------------------------------------

_HYPER_TYPE = {
    Kind.TEXT: "text",
    Kind.TIMESTAMP: "timestamp",
    Kind.DATE: "date",
    Kind.SMALLINT: "small_int",
    Kind.INT: "int",
    Kind.FLOAT: "double",
}
_SQL_TYPE = {
    Kind.TEXT: "text",
    Kind.TIMESTAMP: "timestamptz",
    Kind.DATE: "date",
    Kind.SMALLINT: "integer",  # the endpoint reads a BSON int32 as integer
    Kind.INT: "integer",
    Kind.FLOAT: "double precision",
}
_TABLEAU_TYPE = {
    Kind.TEXT: "string",
    Kind.TIMESTAMP: "datetime",
    Kind.DATE: "date",
    Kind.SMALLINT: "integer",
    Kind.INT: "integer",
    Kind.FLOAT: "real",
}


def _arrow_type(column: Column, *, lake: bool) -> pa.DataType:
    import pyarrow as pa

    kind = column.kind
    if kind is Kind.TEXT:
        if lake and column.dictionary:
            return pa.dictionary(pa.int32(), pa.string())
        return pa.string()
    if kind is Kind.TIMESTAMP:
        # The lake keeps the BSON precision and the zone; Hyper takes naive UTC microseconds.
        return pa.timestamp("ms", tz="UTC") if lake else pa.timestamp("us")
    return {
        Kind.DATE: pa.date32(),
        Kind.SMALLINT: pa.int16(),
        Kind.INT: pa.int32(),
        Kind.FLOAT: pa.float64(),
    }[kind]


def lake_file_schema() -> pa.Schema:
    """Columns of a lake event file (``date`` and ``region`` are in the directory names).

    The fields are nullable in Arrow terms, as every file written so far declares them; the
    sinks write only validated events, which have no null.
    """
    import pyarrow as pa

    return pa.schema([(c.name, _arrow_type(c, lake=True)) for c in COLUMNS if c.lake is Lake.FILE])


def lake_partition_schema() -> pa.Schema:
    """The hive partition columns of the lake, outermost directory first."""
    import pyarrow as pa

    return pa.schema(
        [(c.name, _arrow_type(c, lake=True)) for c in COLUMNS if c.lake is Lake.PARTITION]
    )


def extract_arrow_schema() -> pa.Schema:
    """Arrow schema of the Hyper extract's rows, in table order (no column is nullable)."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(c.name, _arrow_type(c, lake=False), nullable=c.nullable) for c in TABLEAU_COLUMNS]
    )


def hyper_columns() -> list[tuple[str, SqlType, bool]]:
    """The extract table's columns: name, Hyper type, nullable; in table order."""
    from tableauhyperapi import SqlType

    return [(c.name, getattr(SqlType, _HYPER_TYPE[c.kind])(), c.nullable) for c in TABLEAU_COLUMNS]


def sql_table_columns() -> str:
    """The column list of ``CREATE TABLE sales (…)`` over the MongoDB sale documents."""
    return ", ".join(
        f"{c.stored_as} {_SQL_TYPE[c.kind]}" + (" PRIMARY KEY" if c.stored_as == "_id" else "")
        for c in DOCUMENT_COLUMNS
    )


# --- Tableau ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableauField:
    """A column as a Tableau workbook declares it (``<column>`` and its metadata record)."""

    name: str
    caption: str
    datatype: str
    role: str
    kind: str
    aggregation: str
    default_format: str | None
    semantic_role: str | None


def tableau_fields(*, sql_table: bool = False) -> tuple[TableauField, ...]:
    """The workbook fields of a sales table, in table order.

    Args:
        sql_table: The SQL ``sales`` table's columns (`DOCUMENT_COLUMNS`, named as stored:
            ``_id`` for the event id) instead of the extract's (`TABLEAU_COLUMNS`).
    """
    columns = DOCUMENT_COLUMNS if sql_table else TABLEAU_COLUMNS
    return tuple(
        TableauField(
            name=(c.stored_as or c.name) if sql_table else c.name,
            caption=c.caption,
            datatype=_TABLEAU_TYPE[c.kind],
            role="measure" if c.measure else "dimension",
            kind="quantitative" if c.measure else "ordinal" if c.ordinal else "nominal",
            aggregation=c.aggregation,
            default_format=c.default_format,
            semantic_role=c.semantic_role,
        )
        for c in columns
    )


# --- JSON Schema --------------------------------------------------------------------------------

_UUID4_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


def _year_pattern() -> str:
    """The years of [`TS_MIN`, `TS_MAX`) as a regex, for century bounds (what they are)."""
    first, last = TS_MIN.year // 100, TS_MAX.year // 100
    if (TS_MIN.replace(year=first * 100), TS_MAX.replace(year=last * 100)) != (TS_MIN, TS_MAX):
        raise ValueError("the ts pattern needs TS_MIN and TS_MAX on January 1st of a century")
    return "(" + "|".join(f"{century}[0-9]{{2}}" for century in range(first, last)) + ")"


# RFC 3339 (ISO-8601 extended form) with an offset, in the years of [TS_MIN, TS_MAX). The
# consumer also reads the other ISO-8601 forms of `datetime.fromisoformat` (basic form, week
# dates, comma fractions): the schema states what a producer must write.
_TS_PATTERN = (
    f"^{_year_pattern()}"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]"
    r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_JSON_TYPE = {Kind.TEXT: "string", Kind.SMALLINT: "integer", Kind.INT: "integer"}
_ENUMS: dict[str, list[str]] = {
    "product": list(PRODUCT_BY_NAME),
    "category": list(CATEGORIES),
    "region": list(CITY_NAMES_BY_REGION),
    "city": sorted({city for cities in CITY_NAMES_BY_REGION.values() for city in cities}),
    "channel": list(CHANNELS),
}


def _property(column: Column) -> dict[str, Any]:
    prop: dict[str, Any] = {"description": column.description}
    prop["type"] = _JSON_TYPE.get(column.kind, "number")
    if column.name == "event_id":
        prop["pattern"] = _UUID4_PATTERN
    elif column.name == "ts":
        prop |= {"type": "string", "format": "date-time", "pattern": _TS_PATTERN}
    elif column.name == "currency":
        prop["const"] = CURRENCY
    elif column.name == "schema_version":
        prop["const"] = SCHEMA_VERSION
    elif column.name in _ENUMS:
        prop["enum"] = _ENUMS[column.name]
    if column.minimum is not None:
        prop["exclusiveMinimum" if column.exclusive_minimum else "minimum"] = column.minimum
    if column.maximum is not None:
        prop["maximum"] = column.maximum
    return prop


def _pairs_rule(name: str, value: str, other: str, allowed: list[str]) -> dict[str, Any]:
    constraint = {"const": allowed[0]} if len(allowed) == 1 else {"enum": allowed}
    return {
        "if": {"properties": {name: {"const": value}}, "required": [name]},
        "then": {"properties": {other: constraint}},
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one Kafka message value, schema version 1.

    It states everything of the contract a JSON Schema can: types, closed field set, bounds,
    reference data, the product → category and region → city pairs. What it cannot state
    (``amount = quantity × unit_price``, 2-decimal prices, the UTC bounds of ``ts`` after its
    offset, byte-level rules) is checked by `sales_stream.events.decode` only.
    """
    columns = [c for c in COLUMNS if c.origin is _EVENT]
    rules = [
        _pairs_rule("product", name, "category", [product.category])
        for name, product in PRODUCT_BY_NAME.items()
    ]
    rules += [
        _pairs_rule("region", region, "city", sorted(cities))
        for region, cities in CITY_NAMES_BY_REGION.items()
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": JSON_SCHEMA_ID,
        "title": "SaleEvent",
        "description": (
            "One sale, as produced to Kafka: a compact UTF-8 JSON object with exactly these "
            f"fields (schema version {SCHEMA_VERSION}). Also checked by the consumer and not "
            f"expressible here: amount = quantity × unit_price (±{AMOUNT_TOLERANCE}), "
            "unit_price has at most 2 decimals, ts is a calendar date and lies in "
            f"[{TS_MIN.date()}, {TS_MAX.date()}) once converted to UTC, no key appears twice, "
            f"no lone surrogate (\\ud800-\\udfff), at most {MAX_PAYLOAD_BYTES} bytes. The "
            "ts pattern is the RFC 3339 form producers write; the consumer also reads the "
            "other ISO-8601 forms of Python's datetime.fromisoformat."
        ),
        "type": "object",
        "properties": {c.name: _property(c) for c in columns},
        "required": [c.name for c in columns],
        "additionalProperties": False,
        "allOf": rules,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m sales_stream.contract --json-schema``: print the generated JSON Schema."""
    parser = argparse.ArgumentParser(prog="python -m sales_stream.contract")
    parser.add_argument("--json-schema", action="store_true", help="print the JSON Schema")
    args = parser.parse_args(argv)
    if not args.json_schema:
        parser.print_help()
        return 2
    sys.stdout.write(json_schema_text())
    return 0


def json_schema_text() -> str:
    """The JSON Schema as committed in ``docs/sale_event.schema.json``."""
    return json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
