"""The MongoDB store: the database and collection names, the indexes, transient errors.

The one place the writers (`sales_stream.sinks`) and the readers (queries, dashboard views,
the SQL schema) share; light to import (the driver is loaded when an error is classified).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymongo.database import Database

#: The default database (`sales_stream.config.Settings.db`).
DATABASE = "sales_db"
SALES = "sales"
DEAD_LETTERS = "dead_letters"
#: Field of a sale document: the ``incarnation:partition:offset`` that first stored it.
SOURCE_FIELD = "src"
DUPLICATE_KEY = 11000
#: Server codes of failures that pass (shutdown, not primary, timeouts, network).
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64, 112, 117}
)
#: Server codes of a document that is too large.
TOO_LARGE_CODES = frozenset({10334, 17419, 2_000_000})
_ASCENDING = 1
DEAD_LETTER_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("received_at", _ASCENDING),),
    (("reason", _ASCENDING),),
)


def ensure_indexes(db: Database) -> None:
    """Create the indexes of ``dead_letters`` (idempotent); ``sales`` keeps only ``_id``."""
    for keys in DEAD_LETTER_INDEXES:
        db[DEAD_LETTERS].create_index(list(keys))


def is_transient(exc: BaseException) -> bool:
    """Whether a MongoDB error may pass by itself (retry) rather than be about the data."""
    from pymongo.errors import (
        BulkWriteError,
        ConnectionFailure,
        ExecutionTimeout,
        OperationFailure,
        WriteConcernError,
        WTimeoutError,
    )

    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return True
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        errors = details.get("writeErrors", [])
        return bool(details.get("writeConcernErrors")) or any(
            e.get("code") in TRANSIENT_CODES for e in errors
        )
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES
