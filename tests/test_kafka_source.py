"""The Kafka source: a stuck group join is detected; a rebuilt member reads on; rewinds."""

from __future__ import annotations

import time

from kafka import KafkaProducer

from sales_stream import infra
from sales_stream.stream.source import SYNC_STUCK_S, JoinWatch, KafkaSource


class _Generation:
    def __init__(self, generation_id: int) -> None:
        self.generation_id = generation_id


def _observe(watch: JoinWatch, generation: _Generation, now: float, *, rebalancing=True) -> bool:
    return watch.observe(
        rebalancing=rebalancing,
        generation=generation,
        generation_id=generation.generation_id,
        now=now,
    )


def test_a_rebalance_stuck_after_its_join_succeeded_is_hung() -> None:
    watch, old, joined = JoinWatch(), _Generation(4), _Generation(5)
    assert not _observe(watch, old, 0.0)
    assert not _observe(watch, joined, 1.0)  # JoinGroup answered: SyncGroup pending
    assert not _observe(watch, joined, 1.0 + SYNC_STUCK_S - 0.1)
    assert _observe(watch, joined, 1.0 + SYNC_STUCK_S)


def test_a_long_join_group_wait_is_never_hung() -> None:
    watch, none = JoinWatch(), _Generation(-1)
    assert not _observe(watch, none, 0.0)
    assert not _observe(watch, _Generation(-1), 10 * SYNC_STUCK_S)  # reset, still joining


def test_a_completed_rebalance_resets_the_watch() -> None:
    watch, old, joined = JoinWatch(), _Generation(1), _Generation(2)
    _observe(watch, old, 0.0)
    _observe(watch, joined, 1.0)
    assert not _observe(watch, joined, 2.0, rebalancing=False)
    assert not _observe(watch, joined, 2.0 + SYNC_STUCK_S)  # a new rebalance starts here


class _Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    def revoked(self, partitions: set[int]) -> None:
        self.events.append(("revoked", partitions))

    def assigned(self, partitions: set[int]) -> None:
        self.events.append(("assigned", partitions))


def test_a_rebuilt_member_rejoins_and_reads_every_record(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, acks="all")
    for i in range(300):
        producer.send(topic, value=str(i).encode(), partition=i % 3)
    producer.flush()
    producer.close()
    source = KafkaSource(endpoints.kafka_bootstrap, topic, group_id=group_id)
    listener = _Listener()
    source.subscribe(listener)
    seen: set[tuple[int, int]] = set()

    def _read_until(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(seen) < count:
            assert time.monotonic() < deadline, f"read {len(seen)} of {count}"
            for partition, records in source.poll(timeout_ms=200, max_records=50).items():
                seen.update((partition, r.offset) for r in records)

    try:
        _read_until(100)
        source.rebuild()  # nothing was committed: the new member starts over
        _read_until(300)
    finally:
        source.close()
    assert seen == {(i % 3, i // 3) for i in range(300)}
    assert source.rebuilds == 1
    moves = [(kind, parts) for kind, parts in listener.events if parts]
    assert moves[:3] == [("assigned", {0, 1, 2}), ("revoked", {0, 1, 2}), ("assigned", {0, 1, 2})]


def test_rewind_goes_back_to_the_groups_commit_or_the_start(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, acks="all")
    for i in range(60):
        producer.send(topic, value=str(i).encode(), partition=0)
    producer.flush()
    producer.close()
    source = KafkaSource(endpoints.kafka_bootstrap, topic, group_id=group_id)
    source.subscribe(_Listener())

    def read(count: int) -> list[int]:
        offsets: list[int] = []
        deadline = time.monotonic() + 60
        while len(offsets) < count:
            assert time.monotonic() < deadline, f"read {offsets}"
            polled = source.poll(timeout_ms=200, max_records=count - len(offsets))
            offsets += [r.offset for r in polled.get(0, [])]
        return offsets

    try:
        assert read(20) == list(range(20))
        source.rewind({0})  # nothing committed: from the start
        assert read(30) == list(range(30))
        source.commit({0: 25})
        source.rewind({0})
        assert read(10) == list(range(25, 35))
        assert source.position(0) == 35
    finally:
        source.close()
