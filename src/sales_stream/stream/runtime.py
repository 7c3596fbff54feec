"""The one streaming runtime: poll → decode → dead letters → batch → sinks → commit.

Delivery: at-least-once from Kafka plus idempotent sinks gives effectively-once storage.
A checkpoint writes its batch to every sink of the chain, in order (each sink receives the
``kept`` batch of the previous one), and only then commits the offsets. A crash anywhere
re-reads at most the uncommitted batches, which the sinks absorb as duplicates; a chain that
failed half-way resumes at the sink that failed (earlier sinks are not written again).

While a writer thread writes checkpoint *n*, the loop thread polls and decodes *n + 1*
(never more than `PIPELINE_DEPTH` batches in memory), and the next write starts before the
commit of the last one. Only the loop thread touches the source.

A chain with a `DeferredSink` (the rollups, which only hold each batch) commits less often: at
most every ``commit_interval_s``, once every deferred sink has flushed what it holds, and when
the stream goes quiet, stops or gives partitions up (then the held sales are flushed first).

Faults:

* A sink raises `SinkUnavailable` (transient): the same batch is retried with bounded
  exponential backoff; state `StreamState.WAITING_SINK` names the service. Partitions are
  paused and the loop keeps polling, so the member stays in its group.
* Any other exception: retried the same way, state `StreamState.STALLED` with the batch's
  positions and the error (never « waiting for MongoDB » when MongoDB is fine). Records that
  can never be written are the sinks' to dead-letter (`sales_stream.stream.sink`).
* Kafka unreachable: state `StreamState.WAITING_KAFKA`; kafka-python reconnects by itself.
* Rebalance: on revocation the write in flight is finished first (its commit is skipped: the
  new owner re-reads it, idempotently), and the records of revoked partitions not yet written
  are dropped (their new owner reads them again); on
  assignment every sink reloads its resume state (`Sink.assign`) before the next write.
* Graceful stop: writes and commits what was already polled (unless a sink is failing).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sales_stream.stream.batch import Batch
from sales_stream.stream.decoding import Record, decode_records
from sales_stream.stream.sink import (
    DeferredSink,
    PreparingSink,
    Sink,
    SinkResult,
    SinkUnavailable,
)
from sales_stream.stream.source import CommitRejected, Source
from sales_stream.stream.stats import SinkTotals, StreamState, StreamStats

#: Batches held in memory: one being written, one polled ahead.
PIPELINE_DEPTH = 2
#: How often the loop polls (partitions paused) while it waits for a write or a retry.
MEMBERSHIP_POLL_S = 1.0
#: Time a graceful stop may spend writing what was already polled.
DRAIN_TIMEOUT_S = 8.0
#: Longest wait for the write in flight when partitions are revoked.
REVOKE_WAIT_S = 20.0
#: Kafka must be unreachable this long before the state says so.
KAFKA_GRACE_S = 3.0
_WAIT_SLICE_S = 0.2
#: Past the minimum flush interval, a paced runtime polls this long at most: a poll that
#: brings nothing means the stream went quiet, and the open records are written at once.
QUIET_PROBE_S = 0.25
_STARTING = (StreamState.JOINING, StreamState.IDLE, StreamState.WAITING_KAFKA)
_ERROR_MAX_CHARS = 300

logger = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """``Type: message``, bounded."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 1] + "…"


def flush_interval(minimum_s: float, *, last_write_s: float, max_write_share: float) -> float:
    """How long open records accumulate before a checkpoint (seconds).

    ``minimum_s``, or longer, so that writes of ``last_write_s`` each take at most
    ``max_write_share`` of the time.
    """
    return max(minimum_s, last_write_s * (1 - max_write_share) / max_write_share)


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
class _Pending:
    """A batch on its way through the sink chain."""

    batch: Batch
    assign: set[int] = field(default_factory=set)
    ends: dict[int, int] = field(default_factory=dict)  # newly assigned partition → highwater
    results: list[SinkResult] = field(default_factory=list)
    kept: list[Batch] = field(default_factory=list)
    flush: bool = True  # flush the deferred sinks after the chain (then commit)
    flushed: bool = False
    last: bool = False  # the run stops after it: flush whatever the interval


@dataclass(slots=True)
class _Counters:
    state: StreamState = StreamState.CREATED
    cause: str | None = None
    waiting_on: str | None = None
    since: datetime | None = None
    consumed: int = 0
    batches: int = 0
    sinks: dict[str, SinkTotals] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    partitions: int = 0
    last_commit: datetime | None = None
    last_error: str | None = None
    outage_error: str | None = None  # the last error of the current wait for a sink
    idle_since: float | None = None


class StreamRuntime:
    """Consumes one topic through a chain of sinks.

    Args:
        source: Builds the source of one run (a new Kafka consumer per run).
        sinks: The chain; the first one's counters are the runtime's ``stored`` etc.
        name: Shown in stats and thread names.
        max_batch: Most records per checkpoint.
        flush_interval_s: Accumulate polls for up to this long before a checkpoint
            (0: one checkpoint per poll; the lake and the extract want larger files).
        max_write_share: Most of the time the sinks' writes may take: after a checkpoint
            written in *w* seconds, the next one accumulates for at least
            *w* × (1 − share) / share. A sink whose cost follows the checkpoints, not the
            records (the extract: each publication copies the file), then leaves the rest of
            a shared server to the others under load; once a poll brings nothing (the load is over)
            the open records are written after ``flush_interval_s`` only. 1.0: no pacing.
        commit_interval_s: With a `DeferredSink` in the chain, flush and commit at most this
            often (0: after every checkpoint).
        poll_timeout_ms: How long a poll waits for records.
    """

    def __init__(
        self,
        source: Callable[[], Source],
        sinks: Sequence[Sink],
        *,
        name: str,
        max_batch: int = 5000,
        flush_interval_s: float = 0.0,
        max_write_share: float = 1.0,
        commit_interval_s: float = 0.0,
        poll_timeout_ms: int = 200,
    ) -> None:
        if not sinks:
            raise ValueError("a runtime needs at least one sink")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if flush_interval_s < 0 or poll_timeout_ms < 0 or commit_interval_s < 0:
            raise ValueError("flush_interval_s, commit_interval_s and poll_timeout_ms must be >= 0")
        if not 0 < max_write_share <= 1:
            raise ValueError(f"max_write_share must be in (0, 1], got {max_write_share}")
        self.name = name
        self.sinks = tuple(sinks)
        self.max_batch = max_batch
        self.flush_interval_s = flush_interval_s
        self.max_write_share = max_write_share
        self.commit_interval_s = commit_interval_s
        self.deferred = tuple(sink for sink in self.sinks if isinstance(sink, DeferredSink))
        self.poll_timeout_ms = poll_timeout_ms
        self._source_factory = source
        self._lock = threading.Lock()
        self._counters = _Counters(sinks={sink.name: SinkTotals() for sink in self.sinks})
        self._running = threading.Lock()

    @property
    def stats(self) -> StreamStats:
        """A consistent snapshot (safe from any thread)."""
        with self._lock:
            c = self._counters
            first = c.sinks[self.sinks[0].name]
            idle_s = 0.0
            if c.state is StreamState.IDLE and c.idle_since is not None:
                idle_s = time.monotonic() - c.idle_since
            return StreamStats(
                name=self.name,
                state=c.state,
                cause=c.cause,
                waiting_on=c.waiting_on,
                since=c.since,
                consumed=c.consumed,
                stored=first.stored,
                duplicates=first.duplicates,
                dead_lettered=first.dead_lettered,
                batches=c.batches,
                lag=dict(c.lag),
                last_commit=c.last_commit,
                last_error=c.last_error,
                idle_s=idle_s,
                sinks=dict(c.sinks),
                partitions=c.partitions,
            )

    def run(
        self,
        *,
        until_idle: float | None = None,
        max_events: int | None = None,
        stop: threading.Event | None = None,
    ) -> StreamStats:
        """Consume in the calling thread until stopped, idle or ``max_events`` are written.

        Args:
            until_idle: Return once caught up with no new record for this many seconds
                (counted from the first partition assignment).
            max_events: Return once this many records are written and committed.
            stop: Set it (from another thread or a signal handler) for a graceful stop.

        Raises:
            ValueError: An argument is out of range.
            RuntimeError: This instance is already running.
        """
        if until_idle is not None and until_idle < 0:
            raise ValueError(f"until_idle must be >= 0, got {until_idle}")
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events}")
        if not self._running.acquire(blocking=False):
            raise RuntimeError(f"the {self.name} runtime is already running")
        try:
            self._set_state(StreamState.JOINING)
            session = _Session(self, self._source_factory())
            try:
                session.loop(
                    until_idle=until_idle, max_events=max_events, stop=stop or threading.Event()
                )
                self._set_state(StreamState.STOPPING)
                session.drain(DRAIN_TIMEOUT_S)
            finally:
                session.close()
        except BaseException as exc:
            self._set_state(StreamState.FAILED, cause=describe(exc))
            raise
        finally:
            self._running.release()
        self._set_state(StreamState.STOPPED)
        return self.stats

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()

    # Updates from the runtime's threads.

    def _set_state(
        self,
        state: StreamState,
        *,
        cause: str | None = None,
        waiting_on: str | None = None,
        error: str | None = None,
    ) -> None:
        """Change state; ``error`` (default: ``cause``) becomes the last error.

        ``since`` is kept while the state and its cause stay the same, so a cause must not
        carry what changes at every retry (the details go to ``error``).
        """
        with self._lock:
            c = self._counters
            if state is not c.state or cause != c.cause:
                c.since = datetime.now(UTC) if cause else None
                if state is StreamState.WAITING_SINK:
                    logger.warning("%s: %s", self.name, error or cause)
            if state is StreamState.IDLE and c.state is not StreamState.IDLE:
                c.idle_since = time.monotonic()
            c.state, c.cause, c.waiting_on = state, cause, waiting_on
            if cause and state is not StreamState.WAITING_KAFKA:
                c.last_error = error or cause
            c.outage_error = c.last_error if state is StreamState.WAITING_SINK else None

    def _recovered(self) -> None:
        """Writes succeed again after a wait or a stall: running, the wait's error cleared."""
        with self._lock:
            c = self._counters
            if c.state not in (StreamState.WAITING_SINK, StreamState.STALLED):
                return
            if c.since is not None:
                waited = (datetime.now(UTC) - c.since).total_seconds()
                logger.warning("%s: writing again after %.0f s (%s)", self.name, waited, c.cause)
            if c.last_error is not None and c.last_error in (c.outage_error, c.cause):
                c.last_error = None
            c.state, c.cause, c.waiting_on, c.since, c.outage_error = (
                StreamState.RUNNING,
                None,
                None,
                None,
                None,
            )

    def _state(self) -> StreamState:
        with self._lock:
            return self._counters.state

    def _record_written(self, pending: _Pending, *, committed: bool) -> None:
        with self._lock:
            c = self._counters
            c.consumed += pending.batch.size
            c.batches += 1
            for sink, result in zip(self.sinks, pending.results, strict=True):
                t = c.sinks[sink.name]
                c.sinks[sink.name] = SinkTotals(
                    t.stored + result.stored,
                    t.duplicates + result.duplicates,
                    t.dead_lettered + result.dead_lettered,
                )
            if committed:
                c.last_commit = datetime.now(UTC)

    def _record_commit(self) -> None:
        with self._lock:
            self._counters.last_commit = datetime.now(UTC)

    def _record_error(self, text: str) -> None:
        with self._lock:
            self._counters.last_error = text

    def _set_lag(self, lag: dict[int, int], partitions: int) -> None:
        with self._lock:
            self._counters.lag = lag
            self._counters.partitions = partitions


class _Session:
    """One run: the source, the writer thread, the open batch and the backlog."""

    def __init__(self, owner: StreamRuntime, source: Source) -> None:
        self._owner = owner
        self._source = source
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{owner.name}-writer")
        self._backlog: deque[_Pending] = deque()
        self._inflight: Future[None] | None = None
        self._failed = False
        self._retry_at = 0.0
        self._backoff = Backoff()
        self._fetched = 0
        self._open: dict[int, list[Record]] = {}
        self._open_count = 0
        self._open_since: float | None = None
        self._to_assign: set[int] = set()
        self._unchecked: set[int] = set()  # assigned partitions whose end no sink checked yet
        self._paused = False
        self._last_poll = time.monotonic()
        self._idle_since: float | None = None
        self._unreachable_since: float | None = None
        self._incarnation = ""
        self._rebalance_lock = threading.Lock()
        self._revoked: set[int] = set()
        self._newly_assigned: set[int] = set()
        self._committed: dict[int, int] = {}
        self._uncommitted: dict[int, int] = {}  # written, not committed yet
        self._held = False  # a deferred sink holds written records
        self._flushing = False  # the write in flight is a flush alone
        self._last_flush = time.monotonic()
        self._last_write_s = 0.0
        self._quiet = False  # the last poll brought nothing
        source.subscribe(self)

    # Rebalance listener (kafka-python calls it on its IO thread: record, apply on the loop).

    def revoked(self, partitions: set[int]) -> None:
        inflight = self._inflight
        if inflight is not None:  # let the write finish before the partitions move
            wait([inflight], timeout=REVOKE_WAIT_S)
        if self._held:  # what the deferred sinks hold is written before the partitions move
            try:
                self._writer.submit(self._flush_sinks).result(timeout=REVOKE_WAIT_S)
            except Exception as exc:  # its new owner reads it again: nothing is lost
                self._owner._record_error(f"flush before a rebalance failed: {describe(exc)}")
        with self._rebalance_lock:
            self._revoked |= partitions
            self._newly_assigned -= partitions

    def assigned(self, partitions: set[int]) -> None:
        with self._rebalance_lock:
            self._newly_assigned |= partitions

    def _apply_rebalance(self) -> None:
        with self._rebalance_lock:
            revoked, self._revoked = self._revoked, set()
            assigned, self._newly_assigned = self._newly_assigned, set()
        if revoked:
            for partition in revoked:
                self._open_count -= len(self._open.pop(partition, ()))
            kept: deque[_Pending] = deque()
            for index, pending in enumerate(self._backlog):
                if index == 0 and self._inflight is not None:
                    kept.append(pending)
                    continue
                batch = pending.batch.without_partitions(revoked)
                if batch is not None:
                    kept.append(_Pending(batch, pending.assign))
            self._backlog = kept
            self._to_assign -= revoked
            self._unchecked -= revoked
            for partition in revoked:
                self._committed.pop(partition, None)
                self._uncommitted.pop(partition, None)
        if assigned:
            self._last_flush = time.monotonic()  # a first flush once the interval is over
            self._incarnation = self._source.incarnation()
            self._to_assign |= assigned
            self._unchecked |= assigned
            self._idle_since = time.monotonic()

    # The loop.

    def loop(
        self, *, until_idle: float | None, max_events: int | None, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            self._harvest()
            if max_events is not None and self._fetched >= max_events and not self._backlog:
                return
            self._submit()
            self._submit_flush(due=False)
            reached = max_events is not None and self._fetched + self._open_count >= max_events
            if reached:
                self._seal(force=True)
                if self._backlog:
                    self._backlog[-1].last = True
            if reached or len(self._backlog) >= PIPELINE_DEPTH:
                self._wait(stop)
                continue
            limit = self._owner.max_batch - self._open_count
            if max_events is not None:
                limit = min(limit, max_events - self._fetched - self._open_count)
            self._fetch(max(limit, 0))
            if (
                until_idle is not None
                and self._idle_since is not None
                and time.monotonic() - self._idle_since >= until_idle
            ):
                if self._open_count:  # caught up: write what waits for its flush interval
                    self._seal(force=True)
                elif not self._backlog:
                    return

    def drain(self, timeout: float) -> None:
        """Write and commit what was already polled, unless a sink is failing."""
        self._seal(force=True)
        deadline = time.monotonic() + timeout
        while self._backlog or self._held or self._inflight is not None:
            if self._inflight is None:
                if self._failed:
                    return
                if self._backlog:
                    pending = self._take_assign()
                    pending.flush = True
                    self._inflight = self._writer.submit(self._persist, pending)
                else:
                    self._submit_flush(due=True)
                    if self._inflight is None:  # a retry is not due yet
                        return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wait([self._inflight], timeout=remaining).done:
                return
            self._harvest()

    def close(self) -> None:
        self._writer.shutdown(wait=False, cancel_futures=True)
        self._source.close()

    # The writer thread.

    def _persist(self, pending: _Pending) -> None:
        started = time.monotonic()
        owner = self._owner
        batch = pending.batch
        if pending.assign:
            for sink in owner.sinks:
                try:
                    sink.assign(batch.topic, batch.incarnation, sorted(pending.assign))
                except Exception as exc:
                    raise _SinkFailed(sink.name, exc) from exc
            pending.assign = set()
        if pending.ends:
            for sink in owner.sinks:
                if (check := getattr(sink, "check_ends", None)) is None:
                    continue
                try:
                    check(batch.topic, batch.incarnation, pending.ends)
                except Exception as exc:
                    raise _SinkFailed(sink.name, exc) from exc
                self._report_anomaly(sink)
            pending.ends = {}
        current = pending.kept[-1] if pending.kept else batch
        for sink in owner.sinks[len(pending.results) :]:
            try:
                result = sink.write(current)
            except Exception as exc:
                raise _SinkFailed(sink.name, exc) from exc
            current = result.kept if result.kept is not None else current
            pending.results.append(result)
            pending.kept.append(current)
        if owner.deferred and pending.flush and not pending.flushed:
            self._flush_sinks()
            pending.flushed = True
        self._last_write_s = time.monotonic() - started

    def _flush_sinks(self) -> None:
        for sink in self._owner.deferred:
            try:
                sink.flush()
            except Exception as exc:
                raise _SinkFailed(sink.name, exc) from exc
            self._report_anomaly(sink)
        self._last_flush = time.monotonic()

    def _report_anomaly(self, sink: Sink) -> None:
        """Put what a sink found wrong in its stored state (e.g. a rollup fence) in the status."""
        if anomaly := getattr(sink, "anomaly", None):
            self._owner._record_error(f"{sink.name}: {anomaly}")

    def _take_assign(self) -> _Pending:
        """The next batch to write, with the partitions assigned since and their known ends.

        A partition's end is the highwater of a fetch (`Source.highwater`; ListOffsets can be
        stale on the embedded broker): sinks with ``check_ends`` compare their stored positions
        with it once per assignment, before the partition's first write.
        """
        pending = self._backlog[0]
        pending.assign |= self._to_assign
        self._to_assign = set()
        for partition in list(self._unchecked):
            if (end := self._source.highwater(partition)) is not None:
                pending.ends[partition] = end
                self._unchecked.discard(partition)
        return pending

    def _submit(self) -> None:
        if self._inflight is None and self._backlog and time.monotonic() >= self._retry_at:
            pending = self._take_assign()
            pending.flush = pending.last or self._flush_due()
            self._inflight = self._writer.submit(self._persist, pending)

    def _flush_due(self) -> bool:
        return time.monotonic() - self._last_flush >= self._owner.commit_interval_s

    def _submit_flush(self, *, due: bool) -> None:
        """Flush what the deferred sinks hold once nothing else is to be written."""
        if (
            self._held
            and self._inflight is None
            and not self._backlog
            and time.monotonic() >= self._retry_at
            and (due or self._flush_due())
        ):
            self._flushing = True
            self._inflight = self._writer.submit(self._flush_sinks)

    def _harvest(self) -> None:
        future = self._inflight
        if future is None or not future.done():
            return
        self._inflight = None
        flushing, self._flushing = self._flushing, False
        exc = future.exception()
        if exc is not None:
            self._failed = True
            cause = exc.cause if isinstance(exc, _SinkFailed) else exc
            after = cause.retry_after if isinstance(cause, SinkUnavailable) else None
            delay = self._backoff.next_delay() if after is None else after
            self._retry_at = time.monotonic() + delay
            self._report_failure(exc, flushing=flushing)
            return
        self._failed = False
        self._backoff.reset()
        if flushing:
            self._held = False
            if self._commit():
                self._owner._record_commit()
            self._owner._recovered()
            return
        pending = self._backlog.popleft()
        self._uncommitted.update(pending.batch.next_offsets)
        self._submit()  # the next write starts before this commit's round trip
        committed = False
        if pending.flushed or not self._owner.deferred:
            self._held = False
            committed = self._commit()
        else:
            self._held = True
        self._owner._record_written(pending, committed=committed)
        self._owner._recovered()
        self._refresh_lag()

    def _report_failure(self, exc: BaseException, *, flushing: bool = False) -> None:
        sink = exc.sink if isinstance(exc, _SinkFailed) else self._owner.name
        cause = exc.cause if isinstance(exc, _SinkFailed) else exc
        if isinstance(cause, SinkUnavailable):
            self._owner._set_state(
                StreamState.WAITING_SINK,
                cause=f"{cause.sink} unreachable",
                waiting_on=cause.sink,
                error=str(cause),
            )
            return
        if flushing or not self._backlog:
            self._owner._set_state(
                StreamState.STALLED,
                cause=f"the {sink} sink cannot flush: {describe(cause)}",
                waiting_on=sink,
            )
            return
        batch = self._backlog[0].batch
        spans = ", ".join(
            f"{batch.topic}:{p}:{first}-{batch.next_offsets[p] - 1}"
            for p, first in sorted(batch.first_offsets.items())
        )
        self._owner._set_state(
            StreamState.STALLED,
            cause=f"batch at {spans} cannot be written by the {sink} sink: {describe(cause)}",
            waiting_on=sink,
        )

    def _commit(self) -> bool:
        """Commit what was written (and flushed) on the partitions still assigned."""
        assigned = self._source.assignment()
        offsets = {p: o for p, o in self._uncommitted.items() if p in assigned}
        self._uncommitted = {}
        if not offsets:
            return False
        try:
            self._source.commit(offsets)
        except CommitRejected as exc:  # a rebalance: the batch is written, re-reading is safe
            self._owner._record_error(f"commit rejected: {exc}")
            return False
        self._committed.update(offsets)
        return True

    def _fetch(self, limit: int) -> None:
        source = self._source
        if self._paused:
            source.resume_all()
            self._paused = False
        timeout = self._owner.poll_timeout_ms
        if self._open_since is not None:
            age = time.monotonic() - self._open_since
            minimum = self._owner.flush_interval_s
            due = (
                minimum - age if age < minimum else min(self._flush_interval() - age, QUIET_PROBE_S)
            )
            timeout = min(timeout, max(0, int(due * 1000)))
        records = source.poll(timeout_ms=timeout, max_records=limit) if limit else {}
        self._last_poll = time.monotonic()
        self._quiet = not records
        self._apply_rebalance()
        if records:
            self._add(records)
        self._seal(force=False)
        if records:
            self._unreachable_since = None
            return
        self._check_kafka()
        if not source.assignment():
            return  # still joining the group
        if self._idle_since is None:
            self._idle_since = time.monotonic()
        if self._backlog or self._open_count:
            self._set_running()
        else:
            quiet = self._owner._state() not in (StreamState.WAITING_KAFKA, StreamState.STALLED)
            if quiet and not self._failed:
                self._owner._set_state(StreamState.IDLE)
        self._refresh_lag()

    def _check_kafka(self) -> None:
        now = time.monotonic()
        if self._source.connected():
            self._unreachable_since = None
            if self._owner._state() is StreamState.WAITING_KAFKA:
                self._owner._set_state(StreamState.RUNNING)
            return
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since >= KAFKA_GRACE_S and not self._failed:
            self._owner._set_state(
                StreamState.WAITING_KAFKA,
                cause="Kafka unreachable (no group coordinator)",
                waiting_on="kafka",
            )

    def _set_running(self) -> None:
        if self._owner._state() in _STARTING:
            self._owner._set_state(StreamState.RUNNING)

    def _wait(self, stop: threading.Event) -> None:
        """Wait for the write in flight or the next retry, keeping the group membership."""
        source = self._source
        if not self._paused:
            source.pause(source.assignment())
            self._paused = True
        if self._inflight is not None:
            wait([self._inflight], timeout=_WAIT_SLICE_S)
        else:
            stop.wait(min(_WAIT_SLICE_S, max(0.0, self._retry_at - time.monotonic())))
        if time.monotonic() - self._last_poll >= MEMBERSHIP_POLL_S:
            source.pause(source.assignment())  # partitions newly assigned by a rebalance
            records = source.poll(timeout_ms=0, max_records=self._owner.max_batch)
            self._last_poll = time.monotonic()
            self._apply_rebalance()
            if records:
                self._add(records)
            self._refresh_lag()  # a stalled or waiting runtime still shows what it owes

    def _add(self, records: dict[int, Sequence[Record]]) -> None:
        for partition, partition_records in records.items():
            self._open.setdefault(partition, []).extend(partition_records)
            self._open_count += len(partition_records)
        if self._open_since is None:
            self._open_since = time.monotonic()
        self._idle_since = None
        self._set_running()

    def _seal(self, *, force: bool) -> None:
        """Turn the open records into a backlog batch when it is full, old enough or forced."""
        if not self._open_count:
            return
        age = time.monotonic() - (self._open_since or 0.0)
        due = (
            force
            or self._open_count >= self._owner.max_batch
            or age >= self._flush_interval()
            or (self._quiet and age >= self._owner.flush_interval_s)  # no load to pace
        )
        if not due:
            return
        batch = decode_records(
            self._source.topic,
            self._incarnation or self._source.incarnation(),
            sorted(self._open.items()),
            now=datetime.now(UTC),
        )
        committed = {p: self._committed[p] for p in batch.first_offsets if p in self._committed}
        batch = replace(batch, committed=committed)
        for sink in self._owner.sinks:  # while the previous batch is being written
            if isinstance(sink, PreparingSink):
                sink.prepare(batch)
        self._backlog.append(_Pending(batch))
        self._fetched += batch.size
        self._open, self._open_count, self._open_since = {}, 0, None

    def _flush_interval(self) -> float:
        owner = self._owner
        return flush_interval(
            owner.flush_interval_s,
            last_write_s=self._last_write_s,
            max_write_share=owner.max_write_share,
        )

    def _refresh_lag(self) -> None:
        source = self._source
        first: dict[int, int] = {}
        for pending in self._backlog:
            for partition, offset in pending.batch.first_offsets.items():
                first.setdefault(partition, offset)
        for partition, records in self._open.items():
            if records:
                first.setdefault(partition, records[0].offset)
        lag = {}
        assigned = source.assignment()
        for partition in assigned:
            highwater = source.highwater(partition)
            start = first.get(partition)
            if start is None:
                start = source.position(partition)
            if highwater is not None and start is not None:
                lag[partition] = max(0, highwater - start)
        if lag or not assigned:  # keep the last lag while Kafka is unreachable
            self._owner._set_lag(lag, len(assigned))
