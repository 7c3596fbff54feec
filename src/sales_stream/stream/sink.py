"""The one sink contract: write a batch durably, say what was stored, duplicated, rejected.

A sink's `Sink.write` is called by the runtime (`sales_stream.stream.runtime`) once per
checkpoint, possibly again with the same records after a crash or a failed attempt, so it
must be idempotent. It returns a `SinkResult`; its ``kept`` batch is what the next sink of
the chain receives (the MongoDB sink keeps the events it owns, so the rollups count each sale
once). A `DeferredSink` holds its batches and writes them when the runtime flushes it. Errors:

* `SinkUnavailable` — transient (server unreachable, timeout, not primary): the runtime
  retries the same batch with backoff, pausing the partitions and keeping its group membership.
* A record that can never be written is the sink's to turn into a dead letter (with a reason
  such as ``unencodable``, ``too_large``, ``conflicting_duplicate``) and to move past.
* Any other exception is a bug or an unknown failure: the runtime retries with backoff and
  reports the batch as stalled, naming its positions and the error.

Optional: a sink with ``check_ends(topic, incarnation, ends)`` is given, once per assignment,
each newly assigned partition's end (the highwater of a fetch) before the partition's first
write; what it finds wrong in its stored state (and after each flush) it leaves in its
``anomaly`` attribute, which the runtime puts in the status (``last_error``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from sales_stream.stream.batch import Batch

#: Services a sink may wait for (`SinkUnavailable.sink`), named once for the sinks and the UI.
MONGODB_SERVICE = "MongoDB"
LAKE_SERVICE = "lake"
HYPER_SERVICE = "Hyper extract"


class SinkUnavailable(Exception):
    """A transient failure: the batch can be written later (retry with backoff).

    Args:
        sink: Display name of the unavailable service (``"MongoDB"``, ``"lake"``...).
        cause: The underlying error.
        retry_after: Seconds before the next attempt (default: the runtime's backoff), as
            quix-streams' ``SinkBackpressureError``: for a wait known to be short.
        reason: A short reason for the status (default: ``Type: message`` of ``cause``,
            bounded to `REASON_MAX_CHARS`).
    """

    def __init__(
        self,
        sink: str,
        cause: BaseException,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.reason = bounded(reason or f"{type(cause).__name__}: {cause}")
        super().__init__(f"{sink} unreachable: {self.reason}")
        self.sink = sink
        self.cause = cause
        self.retry_after = retry_after


#: Longest reason a status carries (a driver's error can describe its whole topology).
REASON_MAX_CHARS = 160


def bounded(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters (an ellipsis marks the cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SinkResult:
    """What one `Sink.write` did.

    Attributes:
        stored: Records written by this call.
        duplicates: Records already present (re-sent, or re-read after a crash).
        dead_lettered: Rejected records written as dead letters.
        kept: The batch handed to the next sink of the chain (``None``: the same batch).
    """

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    kept: Batch | None = None


class Sink(Protocol):
    """A destination of the stream (MongoDB, rollups, the Parquet lake, the Hyper extract)."""

    #: Short name shown in stats (``"mongodb"``, ``"rollups"``, ``"lake"``, ``"hyper"``).
    name: str

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Load resume state for newly assigned partitions (called before the next write)."""

    def write(self, batch: Batch) -> SinkResult:
        """Write ``batch`` durably and idempotently; see the module doc for errors."""
        ...

    def close(self) -> None:
        """Release the sink's resources."""


@runtime_checkable
class PreparingSink(Sink, Protocol):
    """A sink that precomputes a batch's write while the previous batch is being written.

    The runtime calls `prepare` on its loop thread with each sealed batch. A sink after the
    first of the chain receives the previous sink's ``kept`` batch in `Sink.write`, so it
    must check that what it prepared is still what it is given.
    """

    def prepare(self, batch: Batch) -> None:
        """Precompute the write of ``batch`` (called before `Sink.write` gets it)."""


_V = TypeVar("_V")


class Prepared(Generic[_V]):
    """What a `PreparingSink` computed ahead, kept by the identity of the object it is for.

    Bounded (the runtime holds two batches; a rebalance may drop some before
    their write) and safe between the loop thread (`put`) and the writer thread (`take`).
    """

    #: Entries kept at most: the oldest goes first.
    LIMIT = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, tuple[object, _V]] = {}

    def put(self, key: object, value: _V) -> None:
        """Keep ``value`` for ``key`` (the object itself, not an equal one)."""
        with self._lock:
            while len(self._items) >= self.LIMIT:
                del self._items[next(iter(self._items))]
            self._items[id(key)] = (key, value)

    def take(self, key: object) -> _V | None:
        """The value kept for this very ``key`` (then forgotten), or ``None``."""
        with self._lock:
            item = self._items.pop(id(key), None)
        return item[1] if item is not None and item[0] is key else None


@runtime_checkable
class DeferredSink(Sink, Protocol):
    """A sink whose `Sink.write` only holds the batch; `flush` makes what it holds durable.

    The runtime commits only after every deferred sink of its chain has flushed (at most
    every ``commit_interval_s``, and before it stops or gives partitions up), so a crash
    re-reads what was held. The sink must skip, at flush, what an earlier flush wrote.
    """

    def flush(self) -> None:
        """Write what `Sink.write` held, durably; errors as `Sink.write`'s."""
