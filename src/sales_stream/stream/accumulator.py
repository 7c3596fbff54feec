"""`Accumulator`: the records polled and not sealed yet, and when they make a checkpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sales_stream.stream.decoding import Record

#: Past the minimum flush interval, a paced runtime polls this long at most: a poll that
#: brings nothing means the stream went quiet, and the open records are written at once.
QUIET_PROBE_S = 0.25


def flush_interval(minimum_s: float, *, last_write_s: float, max_write_share: float) -> float:
    """How long open records accumulate before a checkpoint (seconds).

    ``minimum_s``, or longer, so that writes of ``last_write_s`` each take at most
    ``max_write_share`` of the time.
    """
    return max(minimum_s, last_write_s * (1 - max_write_share) / max_write_share)


class Accumulator:
    """Open records, sealed by size, by age (paced by the last write), or once a poll is quiet.

    Args:
        max_batch: Most records per checkpoint.
        flush_interval_s: The shortest time records accumulate.
        max_write_share: Most of the time the writes may take (1.0: no pacing).
    """

    def __init__(self, *, max_batch: int, flush_interval_s: float, max_write_share: float) -> None:
        self.max_batch = max_batch
        self.flush_interval_s = flush_interval_s
        self.max_write_share = max_write_share
        self.records: dict[int, list[Record]] = {}
        self.count = 0
        self.sealed = 0  # records sealed into batches in this run
        self.quiet = False  # the last poll brought nothing
        self._since: float | None = None

    def add(self, records: dict[int, Sequence[Record]]) -> None:
        """Open ``records`` (partition → records in offset order)."""
        for partition, partition_records in records.items():
            self.records.setdefault(partition, []).extend(partition_records)
            self.count += len(partition_records)
        if self._since is None:
            self._since = time.monotonic()

    def interval(self, *, last_write_s: float) -> float:
        """How long records accumulate after a write of ``last_write_s``."""
        return flush_interval(
            self.flush_interval_s,
            last_write_s=last_write_s,
            max_write_share=self.max_write_share,
        )

    def poll_timeout_ms(self, default_ms: int, *, last_write_s: float) -> int:
        """How long the next poll may wait so that the open records are sealed in time."""
        if self._since is None:
            return default_ms
        age = time.monotonic() - self._since
        minimum = self.flush_interval_s
        if age < minimum:
            due = minimum - age
        else:
            due = min(self.interval(last_write_s=last_write_s) - age, QUIET_PROBE_S)
        return min(default_ms, max(0, int(due * 1000)))

    def due(self, *, force: bool, last_write_s: float) -> bool:
        """Whether the open records make a checkpoint now: full, old enough, quiet or forced."""
        if not self.count:
            return False
        age = time.monotonic() - (self._since or 0.0)
        return (
            force
            or self.count >= self.max_batch
            or age >= self.interval(last_write_s=last_write_s)
            or (self.quiet and age >= self.flush_interval_s)  # no load to pace
        )

    def take(self) -> list[tuple[int, list[Record]]]:
        """The open records by partition, then none open."""
        items = sorted(self.records.items())
        self.records, self.count, self._since = {}, 0, None
        return items

    def first_offsets(self) -> dict[int, int]:
        """Partition → offset of its first open record."""
        return {p: records[0].offset for p, records in self.records.items() if records}

    def drop(self, partitions: set[int]) -> None:
        """Forget the open records of partitions given up in a rebalance."""
        for partition in partitions:
            self.count -= len(self.records.pop(partition, ()))
