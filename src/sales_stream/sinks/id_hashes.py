"""A compact in-memory set of the event ids an extract holds, to skip Hyper's anti-join.

Hyper has no index, so "is this id already in the extract?" is a scan of every row. The
live extract (`sales_stream.sinks.hyper.HyperSink`) asks it of every batch, so it
keeps the 64-bit hashes of the extract's ids here: a batch with no known hash is new for
sure (a plain append), and only a batch where some hash matches (a re-sent sale, a batch
re-read after a crash, or a hash collision) pays the exact anti-join in Hyper. Correctness
never rests on the hashes; they only decide which of two exact paths to take.

Memory: 8 bytes per id in one sorted array plus a small set of recent hashes, merged into
the array once it grows past an eighth of it, so an addition costs what is added (amortised).
Python's ``hash`` of a ``str`` is process-specific: the set is rebuilt from the extract at
each start and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["IdHashes"]

_MIN_RECENT = 65_536


class IdHashes:
    """The hashes of a set of ids; `contains_any` may say yes falsely, never no falsely.

    Args:
        ids: The ids present at the start.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._sorted = np.unique(_hashes(ids))
        self._recent: set[int] = set()

    def __len__(self) -> int:
        """Distinct hashes held (the number of ids, but for collisions)."""
        return len(self._sorted) + len(self._recent)

    def contains_any(self, ids: Iterable[str]) -> bool:
        """Whether one of ``ids`` may be in the set (false positives: hash collisions)."""
        hashes = _hashes(ids)
        if not self._recent.isdisjoint(hashes.tolist()):
            return True
        if not len(self._sorted) or not len(hashes):
            return False
        at = np.searchsorted(self._sorted, hashes).clip(max=len(self._sorted) - 1)
        return bool((self._sorted[at] == hashes).any())

    def add(self, ids: Iterable[str]) -> None:
        """Add ``ids`` (already present ones are ignored)."""
        self._recent.update(_hashes(ids).tolist())
        if len(self._recent) > max(_MIN_RECENT, len(self._sorted) // 8):
            recent = np.fromiter(self._recent, np.int64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent.clear()


def _hashes(ids: Iterable[str]) -> np.ndarray:
    return np.fromiter(map(hash, ids), np.int64)
