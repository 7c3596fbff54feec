"""`Checkpoint`: offsets written, held by a deferred sink, committed; when to flush."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sales_stream.stream.source import CommitRejected, Source


class Checkpoint:
    """The offsets of one run between the sinks' writes and the group's commits.

    Args:
        commit_interval_s: With a deferred sink, flush and commit at most this often.
        on_error: Told why a commit was rejected (a rebalance: re-reading is safe).
    """

    def __init__(self, *, commit_interval_s: float, on_error: Callable[[str], None]) -> None:
        self.commit_interval_s = commit_interval_s
        self._on_error = on_error
        self.committed: dict[int, int] = {}  # confirmed by the group in this run
        self.uncommitted: dict[int, int] = {}  # written, not committed yet
        self.held = False  # a deferred sink holds written records
        self._last_flush = time.monotonic()

    def confirmed(self, partitions: Iterable[int]) -> dict[int, int]:
        """The group's last confirmed commit of each of ``partitions`` that has one."""
        return {p: self.committed[p] for p in partitions if p in self.committed}

    def written(self, next_offsets: dict[int, int]) -> None:
        """A batch up to ``next_offsets`` went through the chain."""
        self.uncommitted.update(next_offsets)

    def flushed(self) -> None:
        """The deferred sinks wrote what they held: the interval starts again."""
        self._last_flush = time.monotonic()

    def due(self) -> bool:
        """Whether the commit interval is over since the last flush."""
        return time.monotonic() - self._last_flush >= self.commit_interval_s

    def commit(self, source: Source) -> bool:
        """Commit what was written (and flushed) on the partitions still assigned."""
        self.held = False
        assigned = source.assignment()
        offsets = {p: o for p, o in self.uncommitted.items() if p in assigned}
        self.uncommitted = {}
        if not offsets:
            return False
        try:
            source.commit(offsets)
        except CommitRejected as exc:  # a rebalance: the batch is written, re-reading is safe
            self._on_error(f"commit rejected: {exc}")
            return False
        self.committed.update(offsets)
        return True

    def drop(self, partitions: set[int]) -> None:
        """Forget partitions given up in a rebalance (their new owner commits them)."""
        for partition in partitions:
            self.committed.pop(partition, None)
            self.uncommitted.pop(partition, None)
