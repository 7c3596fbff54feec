"""The one streaming runtime: poll → decode → dead letters → batch → sinks → commit.

At-least-once from Kafka plus idempotent sinks gives effectively-once storage: a checkpoint
goes through every sink of the chain (`writer`), then its offsets are committed (`checkpoint`);
a chain with a `DeferredSink` commits once it flushed. Records accumulate (`accumulator`) while
the previous checkpoint is written; `health` says what the runtime does and waits for. On
revocation the write in flight finishes, held records are flushed and every part drops the
partitions; on assignment every sink reloads its resume state before the next write, and a
partition that comes back to this member is read again from the group's commit (its consumer
kept its position, past the records dropped at the revocation).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from dataclasses import replace
from datetime import UTC, datetime

from sales_stream.stream.accumulator import Accumulator
from sales_stream.stream.checkpoint import Checkpoint
from sales_stream.stream.decoding import Record, decode_records
from sales_stream.stream.health import Health, describe
from sales_stream.stream.sink import PreparingSink, Sink
from sales_stream.stream.source import Source
from sales_stream.stream.stats import StreamState, StreamStats
from sales_stream.stream.writer import FLUSHED, Pending, Writer

#: Batches held in memory: one being written, one polled ahead.
PIPELINE_DEPTH = 2
#: How often the loop polls (partitions paused) while it waits for a write or a retry.
MEMBERSHIP_POLL_S = 1.0
#: Time a graceful stop may spend writing what was already polled.
DRAIN_TIMEOUT_S = 8.0
#: Longest wait for the write in flight when partitions are revoked.
REVOKE_WAIT_S = 20.0
_WAIT_SLICE_S = 0.2


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
        self.poll_timeout_ms = poll_timeout_ms
        self._source_factory = source
        self._health = Health(name, [sink.name for sink in self.sinks])
        self._running = threading.Lock()

    @property
    def stats(self) -> StreamStats:
        """A consistent snapshot (safe from any thread)."""
        return self._health.stats()

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
            self._health.set_state(StreamState.JOINING)
            session = _Session(self, self._source_factory())
            try:
                session.loop(
                    until_idle=until_idle, max_events=max_events, stop=stop or threading.Event()
                )
                self._health.set_state(StreamState.STOPPING)
                session.drain(DRAIN_TIMEOUT_S)
            finally:
                session.close()
        except BaseException as exc:
            self._health.set_state(StreamState.FAILED, cause=describe(exc))
            raise
        finally:
            self._running.release()
        self._health.set_state(StreamState.STOPPED)
        return self.stats

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


class _Session:
    """One run: the source, the loop, and the parts (accumulator, writer, checkpoint)."""

    def __init__(self, owner: StreamRuntime, source: Source) -> None:
        self._owner = owner
        self._source = source
        self._health = owner._health
        self._health.begin()
        self._checkpoint = Checkpoint(
            commit_interval_s=owner.commit_interval_s, on_error=self._health.error
        )
        self._open = Accumulator(
            max_batch=owner.max_batch,
            flush_interval_s=owner.flush_interval_s,
            max_write_share=owner.max_write_share,
        )
        self._writer = Writer(
            name=owner.name,
            sinks=owner.sinks,
            checkpoint=self._checkpoint,
            health=self._health,
            highwater=source.highwater,
        )
        self._paused = False
        self._last_poll = time.monotonic()
        self._idle_since: float | None = None  # caught up since (``until_idle``)
        self._incarnation = ""
        self._rebalance_lock = threading.Lock()
        self._revoked: set[int] = set()
        self._newly_assigned: set[int] = set()
        self._given_up: set[int] = set()  # revoked at least once in this run
        self._rewinding: set[int] = set()  # given back to this member, not rewound yet
        # Revoked and not assigned yet (the eager protocol of the default assignors follows a
        # revocation with an assignment): the partitions still listed are not fetched, so
        # polls that bring nothing do not mean the member is idle.
        self._rebalancing = False
        self._reassigned = False  # an assignment (maybe empty) since the last apply
        source.subscribe(self)

    # Rebalance listener (kafka-python calls it on its IO thread: record, apply on the loop).

    def revoked(self, partitions: set[int]) -> None:
        inflight = self._writer.inflight
        if inflight is not None:  # let the write finish before the partitions move
            wait([inflight], timeout=REVOKE_WAIT_S)
        if self._checkpoint.held:  # what the deferred sinks hold is written before they move
            try:
                self._writer.flush_now(REVOKE_WAIT_S)
            except Exception as exc:  # its new owner reads it again: nothing is lost
                self._health.error(f"flush before a rebalance failed: {describe(exc)}")
        with self._rebalance_lock:
            self._revoked |= partitions
            self._newly_assigned -= partitions
            self._rebalancing = True

    def assigned(self, partitions: set[int]) -> None:
        with self._rebalance_lock:
            self._newly_assigned |= partitions
            self._rebalancing = False
            self._reassigned = True

    def _apply_rebalance(self) -> set[int]:
        """Apply the rebalances reported since the last call (after each poll).

        A partition assigned again to this member keeps its consumer position (kafka-python
        ≥ 3, like the Java client, keeps a retained partition's state): the records dropped
        at its revocation would be skipped, so it is rewound to the group's commit, as a new
        owner would read it.

        Returns:
            The partitions whose records from the poll just made are stale (revoked, or
            polled before their rewind, or still to rewind): the caller drops them.
        """
        with self._rebalance_lock:
            revoked, self._revoked = self._revoked, set()
            assigned, self._newly_assigned = self._newly_assigned, set()
            reassigned, self._reassigned = self._reassigned, False
        if reassigned:  # idle from the assignment on (a member given nothing may stop)
            self._idle_since = time.monotonic()
        if revoked:
            for part in (self._open, self._writer, self._checkpoint, self._health):
                part.drop(revoked)
            self._given_up |= revoked
        self._rewinding = (self._rewinding - revoked) | (assigned & self._given_up)
        stale = revoked | self._rewinding
        if self._rewinding:  # those the broker did not answer for are tried after the next poll
            self._rewinding = self._source.rewind(self._rewinding)
        if assigned:
            self._checkpoint.flushed()  # a first flush once the interval is over
            self._incarnation = self._source.incarnation()
            self._writer.assigned(assigned)
        return stale

    # The loop.

    def loop(
        self, *, until_idle: float | None, max_events: int | None, stop: threading.Event
    ) -> None:
        records, writer = self._open, self._writer
        while not stop.is_set():
            self._harvest()
            if max_events is not None and records.sealed >= max_events and not writer.backlog:
                return
            writer.submit()
            writer.submit_flush(due=False)
            reached = max_events is not None and records.sealed + records.count >= max_events
            if reached:
                self._seal(force=True)
                if writer.backlog:
                    writer.backlog[-1].last = True
            if reached or len(writer.backlog) >= PIPELINE_DEPTH:
                self._wait(stop)
                continue
            limit = self._owner.max_batch - records.count
            if max_events is not None:
                limit = min(limit, max_events - records.sealed - records.count)
            self._fetch(max(limit, 0))
            if (
                until_idle is not None
                and self._idle_since is not None
                and time.monotonic() - self._idle_since >= until_idle
            ):
                if records.count:  # caught up: write what waits for its flush interval
                    self._seal(force=True)
                elif not writer.backlog:
                    return

    def drain(self, timeout: float) -> None:
        """Write and commit what was already polled, unless a sink is failing."""
        self._seal(force=True)
        writer = self._writer
        deadline = time.monotonic() + timeout
        while writer.backlog or self._checkpoint.held or writer.inflight is not None:
            if writer.inflight is None:
                if writer.failed:
                    return
                if writer.backlog:
                    writer.submit_last()
                else:
                    writer.submit_flush(due=True)
                    if writer.inflight is None:  # a retry is not due yet
                        return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not wait([writer.inflight], timeout=remaining).done:
                return
            self._harvest()

    def close(self) -> None:
        self._writer.shutdown()
        self._source.close()

    def _harvest(self) -> None:
        done = self._writer.harvest()
        if done is None:
            return
        checkpoint, health = self._checkpoint, self._health
        if done is FLUSHED:
            if checkpoint.commit(self._source):
                health.committed()
            health.recovered()
            return
        assert isinstance(done, Pending)
        checkpoint.written(done.batch.next_offsets)
        self._writer.submit()  # the next write starts before this commit's round trip
        committed = False
        if done.flushed or not self._writer.deferred:
            committed = checkpoint.commit(self._source)
        else:
            checkpoint.held = True
        health.written(done.batch.size, done.results, committed=committed)
        health.recovered()
        self._refresh_lag()

    def _fetch(self, limit: int) -> None:
        source, health = self._source, self._health
        if self._paused:
            source.resume_all()
            self._paused = False
        timeout = self._open.poll_timeout_ms(
            self._owner.poll_timeout_ms, last_write_s=self._writer.last_write_s
        )
        records = source.poll(timeout_ms=timeout, max_records=limit) if limit else {}
        self._last_poll = time.monotonic()
        records = _fresh(records, self._apply_rebalance())
        self._open.quiet = not records
        if records:
            self._add(records)
        self._seal(force=False)
        if records:
            health.reached()
            return
        health.kafka(connected=source.connected(), failed=self._writer.failed)
        if self._rebalancing:
            self._idle_since = None
            return  # waiting for the rebalance's assignment
        if not source.assignment():
            return  # still joining the group
        if self._idle_since is None:
            self._idle_since = time.monotonic()
        if self._writer.backlog or self._open.count:
            health.running()
        elif (
            health.state not in (StreamState.WAITING_KAFKA, StreamState.STALLED)
            and not self._writer.failed
        ):
            health.set_state(StreamState.IDLE)
        self._refresh_lag()

    def _wait(self, stop: threading.Event) -> None:
        """Wait for the write in flight or the next retry, keeping the group membership."""
        source, writer = self._source, self._writer
        if not self._paused:
            source.pause(source.assignment())
            self._paused = True
        if writer.inflight is not None:
            wait([writer.inflight], timeout=_WAIT_SLICE_S)
        else:
            stop.wait(min(_WAIT_SLICE_S, max(0.0, writer.retry_at - time.monotonic())))
        if time.monotonic() - self._last_poll >= MEMBERSHIP_POLL_S:
            source.pause(source.assignment())  # partitions newly assigned by a rebalance
            records = source.poll(timeout_ms=0, max_records=self._owner.max_batch)
            self._last_poll = time.monotonic()
            records = _fresh(records, self._apply_rebalance())
            if records:
                self._add(records)
            self._refresh_lag()  # a stalled or waiting runtime still shows what it owes

    def _add(self, records: dict[int, Sequence[Record]]) -> None:
        self._open.add(records)
        self._idle_since = None
        self._health.running()

    def _seal(self, *, force: bool) -> None:
        """Turn the open records into a backlog batch when it is full, old enough or forced."""
        if not self._open.due(force=force, last_write_s=self._writer.last_write_s):
            return
        source = self._source
        batch = decode_records(
            source.topic,
            self._incarnation or source.incarnation(),
            self._open.take(),
            now=datetime.now(UTC),
        )
        batch = replace(batch, committed=self._checkpoint.confirmed(batch.first_offsets))
        for sink in self._owner.sinks:  # while the previous batch is being written
            if isinstance(sink, PreparingSink):
                sink.prepare(batch)
        self._writer.backlog.append(Pending(batch))
        self._open.sealed += batch.size

    def _refresh_lag(self) -> None:
        first = self._writer.first_offsets()
        for partition, offset in self._open.first_offsets().items():
            first.setdefault(partition, offset)
        self._health.refresh_lag(self._source, first)


def _fresh(records: dict[int, Sequence[Record]], stale: set[int]) -> dict[int, Sequence[Record]]:
    """``records`` without the partitions in ``stale``."""
    if not stale:
        return records
    return {p: r for p, r in records.items() if p not in stale}
