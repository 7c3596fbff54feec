"""The Arrow schemas of the lake and the tables of its files, all from the one declaration.

The event columns come from `sales_stream.contract` (``date`` and ``region`` live in the
directory names, not in the files); the dead-letter columns are the fields of
`sales_stream.deadletters.DeadLetter` (`sales_stream.deadletters.arrow_schema`), the same
record MongoDB stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from sales_stream.contract import lake_file_schema, lake_partition_schema
from sales_stream.deadletters import DeadLetter, arrow_schema
from sales_stream.events import SaleEvent

#: Columns of an event file (``date`` and ``region`` are in the directory names).
EVENT_SCHEMA = lake_file_schema()
TS_TYPE = EVENT_SCHEMA.field("ts").type
#: The hive partition columns, from the directory names.
PARTITION_SCHEMA = lake_partition_schema()
#: Schema of the event dataset: the file columns plus the partition columns.
DATASET_SCHEMA = pa.schema([*EVENT_SCHEMA, *PARTITION_SCHEMA])
#: Columns of a dead-letter file: the fields of `sales_stream.deadletters.DeadLetter`.
DEAD_LETTER_SCHEMA = arrow_schema()


def events_table(events: Sequence[SaleEvent]) -> pa.Table:
    """The Arrow table of ``events`` in `EVENT_SCHEMA` (``region`` left to the directory)."""
    return _table(events, EVENT_SCHEMA)


def dead_letters_table(letters: Sequence[DeadLetter]) -> pa.Table:
    """The Arrow table of ``letters`` in `DEAD_LETTER_SCHEMA`."""
    return _table(letters, DEAD_LETTER_SCHEMA)


def _table(records: Sequence[Any], schema: pa.Schema) -> pa.Table:
    """The attributes of ``records`` named by ``schema``'s fields, one column per field."""
    return pa.Table.from_arrays(
        [_column([getattr(r, f.name) for r in records], f.type) for f in schema], schema=schema
    )


def _column(values: list[Any], type_: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(type_):  # aware datetimes, rounded to the millisecond
        return pa.array([round(v.timestamp() * 1000) for v in values], pa.int64()).cast(type_)
    return pa.array(values, type_)
