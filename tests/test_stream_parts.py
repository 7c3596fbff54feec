"""The runtime's parts alone, in memory: checkpoint, accumulator, writer, health."""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import wait

from sales_stream.produce.generator import SaleGenerator
from sales_stream.stream import Batch, MemoryLog, MemorySource, SinkResult, SinkUnavailable
from sales_stream.stream.accumulator import Accumulator
from sales_stream.stream.checkpoint import Checkpoint
from sales_stream.stream.health import KAFKA_GRACE_S, Health
from sales_stream.stream.memory import MemoryRecord
from sales_stream.stream.stats import StreamState
from sales_stream.stream.writer import FLUSHED, Pending, Writer


def records(offsets: Iterable[int]) -> list[MemoryRecord]:
    return [MemoryRecord(offset, b"k", b"v") for offset in offsets]


class Listener:
    def revoked(self, partitions: set[int]) -> None:
        pass

    def assigned(self, partitions: set[int]) -> None:
        pass


def assigned_source(partitions: int = 3) -> MemorySource:
    log = MemoryLog()
    for partition in range(partitions):
        log.append(partition, b"k", b"v")
    source = MemorySource(log)
    source.subscribe(Listener())
    source.poll(timeout_ms=0, max_records=0)
    return source


def test_checkpoint_commits_what_was_written_on_assigned_partitions_only() -> None:
    source = assigned_source(3)
    errors: list[str] = []
    checkpoint = Checkpoint(commit_interval_s=0.0, on_error=errors.append)
    checkpoint.written({0: 5, 1: 7, 9: 2})
    checkpoint.held = True
    assert checkpoint.commit(source)
    assert not checkpoint.held
    assert checkpoint.uncommitted == {}
    assert checkpoint.committed == {0: 5, 1: 7}
    assert checkpoint.confirmed([1, 2]) == {1: 7}
    assert not checkpoint.commit(source)  # nothing new
    checkpoint.written({0: 6})
    checkpoint.drop({0, 1})
    assert checkpoint.committed == {}
    assert checkpoint.uncommitted == {}
    assert errors == []


def test_checkpoint_is_due_once_its_interval_is_over_since_the_last_flush() -> None:
    checkpoint = Checkpoint(commit_interval_s=0.05, on_error=print)
    assert not checkpoint.due()
    time.sleep(0.06)
    assert checkpoint.due()
    checkpoint.flushed()
    assert not checkpoint.due()


def test_accumulator_seals_when_full_forced_or_old_enough() -> None:
    acc = Accumulator(max_batch=4, flush_interval_s=10.0, max_write_share=1.0)
    assert not acc.due(force=True, last_write_s=0.0)  # nothing open
    acc.add({1: records([3, 4]), 0: records([7])})
    assert acc.count == 3
    assert acc.first_offsets() == {1: 3, 0: 7}
    assert not acc.due(force=False, last_write_s=0.0)
    assert acc.due(force=True, last_write_s=0.0)
    acc.add({2: records([0])})
    assert acc.due(force=False, last_write_s=0.0)  # full
    assert [p for p, _ in acc.take()] == [0, 1, 2]
    assert acc.count == 0
    assert acc.records == {}
    quick = Accumulator(max_batch=100, flush_interval_s=0.0, max_write_share=0.5)
    quick.add({0: records([0])})
    assert not quick.due(force=False, last_write_s=60.0)  # paced: the last write was slow
    quick.quiet = True
    assert quick.due(force=False, last_write_s=60.0)  # no load to pace


def test_accumulator_poll_waits_no_longer_than_the_open_records_may() -> None:
    acc = Accumulator(max_batch=100, flush_interval_s=1.0, max_write_share=1.0)
    assert acc.poll_timeout_ms(200, last_write_s=0.0) == 200
    acc.add({0: records([0])})
    assert acc.poll_timeout_ms(5000, last_write_s=0.0) <= 1000


def test_accumulator_drops_the_open_records_of_revoked_partitions() -> None:
    acc = Accumulator(max_batch=100, flush_interval_s=0.0, max_write_share=1.0)
    acc.add({0: records([0, 1]), 1: records([5])})
    acc.drop({0, 2})
    assert acc.count == 1
    assert acc.first_offsets() == {1: 5}


class FlakySink:
    def __init__(self, name: str, failures: list[BaseException] | None = None) -> None:
        self.name = name
        self.failures = failures or []
        self.written: list[Batch] = []
        self.assigned: list[list[int]] = []

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        self.assigned.append(list(partitions))

    def write(self, batch: Batch) -> SinkResult:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(batch)
        return SinkResult(stored=len(batch.events))

    def close(self) -> None:
        pass


def make_writer(*sinks: FlakySink) -> tuple[Writer, Checkpoint, Health]:
    health = Health("test", [sink.name for sink in sinks])
    checkpoint = Checkpoint(commit_interval_s=0.0, on_error=health.error)
    writer = Writer(
        name="test", sinks=sinks, checkpoint=checkpoint, health=health, highwater=lambda p: 10
    )
    return writer, checkpoint, health


def finish(writer: Writer) -> Pending | str | None:
    assert writer.inflight is not None
    wait([writer.inflight], timeout=5)
    return writer.harvest()


def test_writer_resumes_a_failed_chain_at_the_sink_that_failed() -> None:
    first = FlakySink("first")
    second = FlakySink("second", [SinkUnavailable("MongoDB", OSError("down"), retry_after=0.0)])
    writer, _, health = make_writer(first, second)
    writer.assigned({0})
    events = SaleGenerator(seed=1).events(3)
    writer.backlog.append(Pending(Batch.of(events)))
    writer.submit()
    assert finish(writer) is None
    assert writer.failed
    assert health.state is StreamState.WAITING_SINK
    writer.submit()
    done = finish(writer)
    assert isinstance(done, Pending)
    assert not writer.backlog
    assert not writer.failed
    assert len(first.written) == 1
    assert len(second.written) == 1
    assert first.assigned == [[0]]
    assert done.ends == {}
    writer.shutdown()


def test_writer_drops_revoked_partitions_but_not_the_write_in_flight() -> None:
    writer, _, _ = make_writer(FlakySink("only"))
    events = SaleGenerator(seed=2).events(4)
    writer.backlog.append(Pending(Batch.of(events[:2], partition=0)))
    writer.backlog.append(Pending(Batch.of(events[2:], partition=1)))
    assert writer.first_offsets() == {0: 0, 1: 0}
    writer.drop({1})
    assert [p.batch.first_offsets for p in writer.backlog] == [{0: 0}]
    writer.shutdown()


def test_writer_flushes_only_what_a_deferred_sink_holds() -> None:
    writer, checkpoint, _ = make_writer(FlakySink("only"))
    writer.submit_flush(due=True)
    assert writer.inflight is None  # nothing held
    checkpoint.held = True
    writer.submit_flush(due=True)
    assert finish(writer) is FLUSHED
    writer.shutdown()


def test_health_waits_for_kafka_after_its_grace_and_forgets_revoked_lag() -> None:
    health = Health("test", ["only"])
    health.set_state(StreamState.RUNNING)
    health.kafka(connected=False, failed=False)
    assert health.state is StreamState.RUNNING
    health._unreachable_since = time.monotonic() - KAFKA_GRACE_S
    health.kafka(connected=False, failed=False)
    assert health.state is StreamState.WAITING_KAFKA
    health.kafka(connected=True, failed=False)
    assert health.state is StreamState.RUNNING
    source = assigned_source(2)
    health.refresh_lag(source, {0: 1})  # partition 1: from the source's position
    assert health.stats().lag == {0: 0, 1: 1}
    health.drop({0})
    assert health.stats().lag == {1: 1}
    health.written(3, [SinkResult(stored=2, duplicates=1)], committed=True)
    stats = health.stats()
    assert (stats.consumed, stats.stored, stats.duplicates) == (3, 2, 1)
    assert stats.last_commit is not None
