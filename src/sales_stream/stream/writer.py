"""`Writer`: the backlog of sealed batches, the writer thread, the sink chain and its retries."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from sales_stream.stream.batch import Batch
from sales_stream.stream.checkpoint import Checkpoint
from sales_stream.stream.health import Health, describe
from sales_stream.stream.sink import DeferredSink, Sink, SinkResult, SinkUnavailable
from sales_stream.stream.stats import StreamState

#: A flush alone went through (`Writer.harvest`).
FLUSHED = "flushed"


class Backoff:
    """Bounded exponential backoff with jitter: ``initial × 2ⁿ``, capped, times U(0.5, 1)."""

    def __init__(
        self, *, initial: float = 0.2, cap: float = 5.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"need 0 < initial <= cap, got initial={initial}, cap={cap}")
        self._initial, self._cap = initial, cap
        self._rng = rng or random.Random()
        self._attempts = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt and advance the exponent."""
        delay = min(self._cap, self._initial * 2**self._attempts)
        self._attempts = min(self._attempts + 1, 32)
        return delay * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._attempts = 0


class _SinkFailed(Exception):
    def __init__(self, sink: str, cause: BaseException) -> None:
        super().__init__(describe(cause))
        self.sink, self.cause = sink, cause


@dataclass(slots=True)
class Pending:
    """A batch on its way through the sink chain (``results``: the sinks done, to resume)."""

    batch: Batch
    assign: set[int] = field(default_factory=set)
    ends: dict[int, int] = field(default_factory=dict)  # newly assigned partition → highwater
    results: list[SinkResult] = field(default_factory=list)
    kept: list[Batch] = field(default_factory=list)
    flush: bool = True  # flush the deferred sinks after the chain (then commit)
    flushed: bool = False
    last: bool = False  # the run stops after it: flush whatever the interval


class Writer:
    """Writes sealed batches through the chain on one thread, one at a time.

    A failed write is retried with backoff; a chain that failed half-way resumes at the sink
    that failed.

    Args:
        name: The runtime's name (thread name, stalled causes).
        sinks: The chain.
        checkpoint: Told when the deferred sinks flushed.
        health: Told what fails and what a sink found wrong.
        highwater: A partition's end as last fetched, if known.
    """

    def __init__(
        self,
        *,
        name: str,
        sinks: Sequence[Sink],
        checkpoint: Checkpoint,
        health: Health,
        highwater: Callable[[int], int | None],
    ) -> None:
        self.name = name
        self.sinks = tuple(sinks)
        self.deferred = tuple(sink for sink in self.sinks if isinstance(sink, DeferredSink))
        self._checkpoint = checkpoint
        self._health = health
        self._highwater = highwater
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-writer")
        self.backlog: deque[Pending] = deque()
        self.inflight: Future[None] | None = None
        self.failed = False
        self.retry_at = 0.0
        self._backoff = Backoff()
        self._flushing = False  # the write in flight is a flush alone
        self._to_assign: set[int] = set()
        self._unchecked: set[int] = set()  # assigned partitions whose end no sink checked yet
        self.last_write_s = 0.0

    def assigned(self, partitions: set[int]) -> None:
        """Sinks load these partitions' resume state (and check their ends) before a write."""
        self._to_assign |= partitions
        self._unchecked |= partitions

    def submit(self) -> None:
        """Start writing the oldest batch, if nothing is in flight and no retry is pending."""
        if self.inflight is None and self.backlog and time.monotonic() >= self.retry_at:
            pending = self._take()
            pending.flush = pending.last or self._checkpoint.due()
            self.inflight = self._executor.submit(self._persist, pending)

    def submit_flush(self, *, due: bool) -> None:
        """Flush what the deferred sinks hold once nothing else is to be written."""
        if (
            self._checkpoint.held
            and self.inflight is None
            and not self.backlog
            and time.monotonic() >= self.retry_at
            and (due or self._checkpoint.due())
        ):
            self._flushing = True
            self.inflight = self._executor.submit(self._flush_sinks)

    def submit_last(self) -> None:
        """Start writing the oldest batch now, flushed (a graceful stop)."""
        pending = self._take()
        pending.flush = True
        self.inflight = self._executor.submit(self._persist, pending)

    def harvest(self) -> Pending | str | None:
        """The batch written (or `FLUSHED`) once the write in flight is over without error."""
        future = self.inflight
        if future is None or not future.done():
            return None
        self.inflight = None
        flushing, self._flushing = self._flushing, False
        exc = future.exception()
        if exc is not None:
            self.failed = True
            cause = exc.cause if isinstance(exc, _SinkFailed) else exc
            after = cause.retry_after if isinstance(cause, SinkUnavailable) else None
            delay = self._backoff.next_delay() if after is None else after
            self.retry_at = time.monotonic() + delay
            self._report_failure(exc, flushing=flushing)
            return None
        self.failed = False
        self._backoff.reset()
        return FLUSHED if flushing else self.backlog.popleft()

    def flush_now(self, timeout: float) -> None:
        """Flush the deferred sinks and wait (before partitions move)."""
        self._executor.submit(self._flush_sinks).result(timeout=timeout)

    def first_offsets(self) -> dict[int, int]:
        """Partition → offset of its first record in the backlog."""
        first: dict[int, int] = {}
        for pending in self.backlog:
            for partition, offset in pending.batch.first_offsets.items():
                first.setdefault(partition, offset)
        return first

    def drop(self, partitions: set[int]) -> None:
        """Forget the records of partitions given up in a rebalance (but the write in flight)."""
        kept: deque[Pending] = deque()
        for index, pending in enumerate(self.backlog):
            if index == 0 and self.inflight is not None:
                kept.append(pending)
                continue
            batch = pending.batch.without_partitions(partitions)
            if batch is not None:
                kept.append(Pending(batch, pending.assign))
        self.backlog = kept
        self._to_assign -= partitions
        self._unchecked -= partitions

    def shutdown(self) -> None:
        """Stop the thread (a write in flight is abandoned)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # The writer thread.

    def _persist(self, pending: Pending) -> None:
        started = time.monotonic()
        batch = pending.batch
        if pending.assign:
            for sink in self.sinks:
                try:
                    sink.assign(batch.topic, batch.incarnation, sorted(pending.assign))
                except Exception as exc:
                    raise _SinkFailed(sink.name, exc) from exc
            pending.assign = set()
        if pending.ends:
            for sink in self.sinks:
                if (check := getattr(sink, "check_ends", None)) is None:
                    continue
                try:
                    check(batch.topic, batch.incarnation, pending.ends)
                except Exception as exc:
                    raise _SinkFailed(sink.name, exc) from exc
                self._report_anomaly(sink)
            pending.ends = {}
        current = pending.kept[-1] if pending.kept else batch
        for sink in self.sinks[len(pending.results) :]:
            try:
                result = sink.write(current)
            except Exception as exc:
                raise _SinkFailed(sink.name, exc) from exc
            current = result.kept if result.kept is not None else current
            pending.results.append(result)
            pending.kept.append(current)
        if self.deferred and pending.flush and not pending.flushed:
            self._flush_sinks()
            pending.flushed = True
        self.last_write_s = time.monotonic() - started

    def _flush_sinks(self) -> None:
        for sink in self.deferred:
            try:
                sink.flush()
            except Exception as exc:
                raise _SinkFailed(sink.name, exc) from exc
            self._report_anomaly(sink)
        self._checkpoint.flushed()

    def _report_anomaly(self, sink: Sink) -> None:
        """Put what a sink found wrong in its stored state (e.g. a rollup fence) in the status."""
        if anomaly := getattr(sink, "anomaly", None):
            self._health.error(f"{sink.name}: {anomaly}")

    def _take(self) -> Pending:
        """The next batch to write, with the partitions assigned since and their known ends.

        A partition's end is the highwater of a fetch (`Source.highwater`; ListOffsets can be
        stale on the embedded broker): sinks with ``check_ends`` compare their stored positions
        with it once per assignment, before the partition's first write.
        """
        pending = self.backlog[0]
        pending.assign |= self._to_assign
        self._to_assign = set()
        for partition in list(self._unchecked):
            if (end := self._highwater(partition)) is not None:
                pending.ends[partition] = end
                self._unchecked.discard(partition)
        return pending

    def _report_failure(self, exc: BaseException, *, flushing: bool) -> None:
        sink = exc.sink if isinstance(exc, _SinkFailed) else self.name
        cause = exc.cause if isinstance(exc, _SinkFailed) else exc
        if isinstance(cause, SinkUnavailable):
            self._health.set_state(
                StreamState.WAITING_SINK,
                cause=f"{cause.sink} unreachable",
                waiting_on=cause.sink,
                error=str(cause),
            )
            return
        if flushing or not self.backlog:
            self._health.set_state(
                StreamState.STALLED,
                cause=f"the {sink} sink cannot flush: {describe(cause)}",
                waiting_on=sink,
            )
            return
        batch = self.backlog[0].batch
        spans = ", ".join(
            f"{batch.topic}:{p}:{first}-{batch.next_offsets[p] - 1}"
            for p, first in sorted(batch.first_offsets.items())
        )
        self._health.set_state(
            StreamState.STALLED,
            cause=f"batch at {spans} cannot be written by the {sink} sink: {describe(cause)}",
            waiting_on=sink,
        )
