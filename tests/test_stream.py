"""The streaming runtime's logic against an in-memory log and in-memory sinks (milliseconds)."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable, Sequence

import bson
import pytest

from sales_stream.deadletters import MISSING_KEY, dead_letter
from sales_stream.events import encode
from sales_stream.infra.process import wait_until
from sales_stream.produce.generator import SaleGenerator
from sales_stream.stream import (
    Batch,
    MemoryLog,
    MemorySink,
    MemorySource,
    SinkResult,
    SinkUnavailable,
    StreamRuntime,
    StreamState,
    StreamStats,
    StreamWorker,
)
from sales_stream.stream.accumulator import flush_interval
from sales_stream.stream.decoding import Record
from sales_stream.stream.sink import Prepared


def fill(log: MemoryLog, n: int, *, partitions: int = 3, seed: int = 1) -> list[str]:
    events = SaleGenerator(seed=seed).events(n)
    for i, event in enumerate(events):
        log.append(i % partitions, event.region.encode(), encode(event))
    return [e.event_id for e in events]


def runtime(log: MemoryLog, *sinks: MemorySink, **kw) -> StreamRuntime:
    return StreamRuntime(lambda: MemorySource(log), sinks, name="test", poll_timeout_ms=0, **kw)


def test_every_record_reaches_the_sinks_and_is_committed() -> None:
    log = MemoryLog()
    ids = fill(log, 500)
    log.append(0, None, encode(SaleGenerator(seed=9).next_event()))
    log.append(1, b"k", b"{not json")
    sink = MemorySink()
    stats = runtime(log, sink, max_batch=64).run(until_idle=0)
    assert sorted(sink.ids) == sorted(ids)
    assert sorted(sink.dead) == sorted([MISSING_KEY, "not_json"])
    assert (stats.consumed, stats.stored, stats.dead_lettered) == (502, 500, 2)
    assert log.committed == {p: len(log.partitions[p]) for p in log.partitions}
    assert stats.state is StreamState.STOPPED
    assert stats.total_lag == 0
    assert sink.assigned == [("mem0", [0, 1, 2])]


def test_a_transient_failure_is_retried_and_named() -> None:
    log = MemoryLog()
    ids = fill(log, 100)
    sink = MemorySink()
    sink.failures = [SinkUnavailable("MongoDB", ConnectionError("refused"))] * 2
    rt = runtime(log, sink)
    seen: list[StreamStats] = []
    original = sink.write

    def spy(batch: Batch) -> SinkResult:
        seen.append(rt.stats)
        return original(batch)

    sink.write = spy  # type: ignore[method-assign]
    stats = rt.run(until_idle=0)
    assert sorted(sink.ids) == sorted(ids)
    waiting = [s for s in seen if s.state is StreamState.WAITING_SINK]
    assert waiting
    assert waiting[-1].status == "waiting_sink: MongoDB unreachable for 0 s"
    assert waiting[-1].last_error == "MongoDB unreachable: ConnectionError: refused"
    assert waiting[0].since == waiting[-1].since  # the wait began once, not at every retry
    assert stats.last_error is None  # cleared once the writes succeed again


def test_an_unexpected_error_stalls_with_the_positions_and_keeps_the_lag() -> None:
    log = MemoryLog()
    fill(log, 30, partitions=1)
    sink = MemorySink()
    sink.failures = [ValueError("boom")] * 3
    rt = runtime(log, sink)
    states = []
    original = sink.write

    def spy(batch: Batch) -> SinkResult:
        states.append(rt.stats)
        return original(batch)

    sink.write = spy  # type: ignore[method-assign]
    rt.run(until_idle=0)
    stalled = states[-1]  # the attempt after three failures
    assert stalled.state is StreamState.STALLED
    assert "sales:0:0-29" in (stalled.cause or "")
    assert "ValueError: boom" in (stalled.cause or "")
    assert stalled.total_lag == 30


def test_a_chain_resumes_at_the_sink_that_failed_with_the_kept_batch() -> None:
    log = MemoryLog()
    fill(log, 10, partitions=1)
    first, second = MemorySink("first", keep_first=4), MemorySink("second")
    second.failures = [SinkUnavailable("rollups", TimeoutError())]
    stats = runtime(log, first, second).run(until_idle=0)
    assert len(first.batches) == 1  # not written again
    assert len(second.ids) == 4
    assert (stats.sinks["second"].stored, stats.stored) == (4, 10)


def test_flush_interval_accumulates_polls_into_one_checkpoint() -> None:
    log = MemoryLog()
    fill(log, 90, partitions=3)
    sink = MemorySink()
    runtime(log, sink, max_batch=1000, flush_interval_s=0.05).run(until_idle=0.1)
    assert len(sink.ids) == 90
    assert len(sink.batches) == 1


def test_max_events_stops_after_exactly_that_many_records() -> None:
    log = MemoryLog()
    fill(log, 100, partitions=1)
    sink = MemorySink()
    stats = runtime(log, sink, max_batch=30).run(max_events=50)
    assert stats.consumed == 50
    assert log.committed == {0: 50}


def test_a_restarted_run_starts_at_the_commit() -> None:
    log = MemoryLog()
    fill(log, 40, partitions=2)
    sink = MemorySink()
    rt = runtime(log, sink)
    rt.run(max_events=20)
    fill(log, 10, partitions=2, seed=5)
    rt.run(until_idle=0)
    assert len(sink.ids) == 50 == len(set(sink.ids))


def test_batches_carry_the_incarnation() -> None:
    log = MemoryLog(incarnation="abc")
    fill(log, 5)
    sink = MemorySink()
    runtime(log, sink).run(until_idle=0)
    assert {b.incarnation for b in sink.batches} == {"abc"}
    assert all(d.incarnation == "abc" for b in sink.batches for d in b.dead)


def test_a_dead_letter_is_always_storable() -> None:
    key = b"\xff" * (17 * 1024 * 1024)
    letter = dead_letter(
        topic="sales",
        partition=2,
        offset=1234,
        key=key,
        value=b"{bad" * 10_000,
        reason="not_json",
        detail="field '\ud800' " * 1000,
        incarnation="abc",
    )
    document = letter.to_document()
    assert len(bson.encode(document)) < 16 * 1024
    assert document["_id"] == "abc:sales:2:1234"
    assert document["key_size"] == len(key)
    assert document["raw_sha256"] == hashlib.sha256(b"{bad" * 10_000).hexdigest()
    minimal = letter.minimal("refused").to_document()
    assert (minimal["key"], minimal["raw"], minimal["raw_size"]) == (None, None, 40_000)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one sink"):
        StreamRuntime(lambda: MemorySource(MemoryLog()), [], name="x")
    with pytest.raises(ValueError, match="max_batch"):
        runtime(MemoryLog(), MemorySink(), max_batch=0)
    assert dataclasses.is_dataclass(Batch)


def test_batches_carry_the_commits_confirmed_before_they_were_sealed() -> None:
    log = MemoryLog()
    fill(log, 60, partitions=1)
    sink = MemorySink()
    runtime(log, sink, max_batch=10).run(until_idle=0)
    assert [b.first_offsets[0] for b in sink.batches] == [0, 10, 20, 30, 40, 50]
    commits = [b.committed.get(0) for b in sink.batches]
    assert commits[0] is None  # nothing committed yet in this run
    firsts = [b.first_offsets[0] for b in sink.batches]
    assert all(c is None or c <= first for c, first in zip(commits, firsts, strict=True))
    assert (commits[-1] or 0) >= 30  # two batches in flight at most


class KeptThroughRebalances(MemorySource):
    """A member whose partitions come back to it (positions kept) at some of its polls."""

    def __init__(self, log: MemoryLog, *, at: set[int], unanswered: int = 0) -> None:
        super().__init__(log)
        self.at, self.polls = at, 0
        self.unanswered = unanswered  # rewinds the broker does not answer, at first

    def poll(self, *, timeout_ms: int, max_records: int) -> dict[int, Sequence[Record]]:
        self.polls += 1
        if self.polls in self.at:
            self.rebalance()
        return super().poll(timeout_ms=timeout_ms, max_records=max_records)

    def rewind(self, partitions: Iterable[int]) -> set[int]:
        if self.unanswered:
            self.unanswered -= 1
            return set(partitions)
        return super().rewind(partitions)


@pytest.mark.parametrize(
    ("max_batch", "flush_interval_s", "at", "unanswered"),
    [(1000, 60.0, {2}, 0), (40, 0.05, set(range(2, 60, 3)), 0), (20, 0.0, {3}, 4)],
    ids=["open-records", "many-rebalances", "rewind-retried"],
)
def test_partitions_kept_through_a_rebalance_are_read_again_from_the_commit(
    max_batch: int, flush_interval_s: float, at: set[int], unanswered: int
) -> None:
    """What a revocation dropped is not skipped when the partition comes back to its member."""
    log = MemoryLog()
    ids = fill(log, 300)
    sink = MemorySink()
    source = KeptThroughRebalances(log, at=at, unanswered=unanswered)
    StreamRuntime(
        lambda: source, [sink], name="test", poll_timeout_ms=0,
        max_batch=max_batch, flush_interval_s=flush_interval_s,
    ).run(until_idle=0.1)  # fmt: skip
    assert set(sink.ids) == set(ids)
    assert log.committed == {p: len(log.partitions[p]) for p in log.partitions}


class SlowRebalance(MemorySource):
    """A member whose partitions are revoked at its ``at``-th poll and given back ``after`` s on.

    Meanwhile they are still listed but not fetched, as kafka-python does during a rebalance.
    """

    def __init__(self, log: MemoryLog, *, at: int, after: float) -> None:
        super().__init__(log)
        self.at, self.after, self.polls = at, after, 0
        self.back_at: float | None = None

    def poll(self, *, timeout_ms: int, max_records: int) -> dict[int, Sequence[Record]]:
        self.polls += 1
        if self.polls == self.at and self._listener is not None:
            self._listener.revoked(self.assignment())
            self.back_at = time.monotonic() + self.after
        if self.back_at is not None:
            if time.monotonic() < self.back_at:
                return {}
            self.back_at = None
            if self._listener is not None:
                self._listener.assigned(self.assignment())
        return super().poll(timeout_ms=timeout_ms, max_records=max_records)


def test_a_member_waiting_for_a_rebalance_is_not_idle() -> None:
    """``until_idle`` does not stop a member whose partitions are being reassigned."""
    log = MemoryLog()
    ids = fill(log, 300)
    sink = MemorySink()
    source = SlowRebalance(log, at=3, after=0.5)
    StreamRuntime(
        lambda: source, [sink], name="test", poll_timeout_ms=0, max_batch=40
    ).run(until_idle=0.1)  # fmt: skip
    assert set(sink.ids) == set(ids)
    assert log.committed == {p: len(log.partitions[p]) for p in log.partitions}


def test_a_paced_runtime_leaves_the_writes_their_share_of_the_time() -> None:
    assert flush_interval(2.0, last_write_s=0.1, max_write_share=0.25) == 2.0  # light load
    assert flush_interval(2.0, last_write_s=1.0, max_write_share=0.25) == 3.0  # heavy load
    assert flush_interval(0.0, last_write_s=5.0, max_write_share=1.0) == 0.0  # no pacing
    with pytest.raises(ValueError, match="max_write_share"):
        runtime(MemoryLog(), MemorySink(), max_write_share=0)


class SlowSink(MemorySink):
    """A sink whose every write takes ``write_s`` seconds, like a loaded database."""

    def __init__(self, write_s: float) -> None:
        super().__init__()
        self.write_s = write_s

    def write(self, batch: Batch) -> SinkResult:
        time.sleep(self.write_s)
        return super().write(batch)


def test_a_paced_runtime_writes_at_once_when_the_stream_goes_quiet() -> None:
    log = MemoryLog()
    fill(log, 10, partitions=1)
    sink = SlowSink(0.2)  # with a share of 1 %, the next checkpoint would wait ~20 s
    worker = StreamWorker(runtime(log, sink, max_write_share=0.01))
    worker.start()
    try:
        assert wait_until(lambda: len(sink.batches) == 1, timeout=10)
        fill(log, 5, partitions=1, seed=2)  # a last burst, then nothing
        assert wait_until(lambda: len(sink.batches) == 2, timeout=10)
    finally:
        worker.stop()
    assert [len(b.events) for b in sink.batches] == [10, 5]


def test_pacing_never_holds_back_a_full_batch() -> None:
    log = MemoryLog()
    fill(log, 60, partitions=1)
    sink = MemorySink()
    runtime(log, sink, max_batch=10, max_write_share=0.01).run(until_idle=0)
    assert [len(b.events) for b in sink.batches] == [10] * 6


class HoldingSink(MemorySink):
    """A deferred sink: holds what it is given until flushed; checks nothing is committed
    beyond what it flushed."""

    def __init__(self, log: MemoryLog) -> None:
        super().__init__("holding")
        self.log = log
        self.held: list[Batch] = []
        self.flushed: list[Batch] = []
        self.flushes = 0
        self.flush_failures: list[BaseException] = []

    def _flushed_next(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for batch in self.flushed:
            for partition, end in batch.next_offsets.items():
                ends[partition] = max(ends.get(partition, 0), end)
        return ends

    def _check_commits(self) -> None:
        flushed = self._flushed_next()
        for partition, offset in self.log.committed.items():
            assert offset <= flushed.get(partition, 0), (partition, offset, flushed)

    def write(self, batch: Batch) -> SinkResult:
        self._check_commits()
        result = super().write(batch)
        self.held.append(batch)
        return result

    def flush(self) -> None:
        self._check_commits()
        if self.flush_failures:
            raise self.flush_failures.pop(0)
        self.flushes += 1
        self.flushed += self.held
        self.held = []


def test_a_deferred_sink_is_flushed_before_every_commit() -> None:
    log = MemoryLog()
    ids = fill(log, 300)
    sink = HoldingSink(log)
    stats = runtime(log, MemorySink(), sink, max_batch=20, commit_interval_s=60).run(until_idle=0)
    assert sorted(e.event_id for b in sink.flushed for e in b.events) == sorted(ids)
    assert stats.batches >= 15
    assert sink.flushes == 1  # the interval never elapsed: once, when the run stopped
    assert log.committed == {p: len(log.partitions[p]) for p in log.partitions}


def test_a_deferred_sink_is_flushed_every_commit_interval() -> None:
    log = MemoryLog()
    fill(log, 200)
    sink = HoldingSink(log)
    runtime(log, sink, max_batch=10, commit_interval_s=0).run(until_idle=0)
    assert sink.flushes >= 20  # every checkpoint
    assert not sink.held


def test_what_a_deferred_sink_holds_is_flushed_once_the_stream_goes_quiet() -> None:
    log = MemoryLog()
    ids = fill(log, 120)
    sink = HoldingSink(log)
    worker = StreamWorker(runtime(log, sink, max_batch=50, commit_interval_s=0.2))

    def flushed() -> int:
        return sum(len(b.events) for b in sink.flushed)

    worker.start()
    try:
        assert wait_until(lambda: flushed() == 120, timeout=10)
        assert wait_until(lambda: sum(log.committed.values()) == 120, timeout=10)
        assert worker.stats.last_commit is not None
        more = fill(log, 30, seed=3)  # a later burst: flushed too, without stopping
        assert wait_until(lambda: flushed() == 150, timeout=10)
    finally:
        worker.stop()
    assert sorted(e.event_id for b in sink.flushed for e in b.events) == sorted(ids + more)


def test_a_failed_flush_is_retried_and_commits_nothing_before_it_succeeds() -> None:
    log = MemoryLog()
    ids = fill(log, 90)
    sink = HoldingSink(log)
    sink.flush_failures = [SinkUnavailable("MongoDB", ConnectionError("refused"))] * 2
    rt = runtime(log, sink, max_batch=30, commit_interval_s=0)
    seen: list[StreamStats] = []
    original = sink.flush

    def spy() -> None:
        seen.append(rt.stats)
        original()

    sink.flush = spy  # type: ignore[method-assign]
    stats = rt.run(until_idle=0.5)
    assert sorted(e.event_id for b in sink.flushed for e in b.events) == sorted(ids)
    assert log.committed == {p: len(log.partitions[p]) for p in log.partitions}
    waiting = [s for s in seen if s.state is StreamState.WAITING_SINK]
    assert waiting
    assert waiting[-1].last_error == "MongoDB unreachable: ConnectionError: refused"
    assert stats.last_error is None


def test_prepared_work_is_found_only_for_that_very_object_and_stays_bounded() -> None:
    prepared: Prepared[str] = Prepared()
    events, equal = [1, 2], [1, 2]
    prepared.put(events, "sums")
    assert prepared.take(equal) is None  # an equal list is not the batch's own
    assert prepared.take(events) == "sums"
    assert prepared.take(events) is None  # taken once
    keys = [object() for _ in range(Prepared.LIMIT + 2)]
    for key in keys:
        prepared.put(key, "x")
    assert prepared.take(keys[0]) is None  # the oldest went first
    assert prepared.take(keys[-1]) == "x"
