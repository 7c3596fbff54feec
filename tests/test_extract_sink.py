"""The live extract's sink on real Hyper files, and its in-memory set of id hashes."""

from __future__ import annotations

import dataclasses
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pantab
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from tableauhyperapi import Connection, HyperProcess, Telemetry

from sales_stream import infra
from sales_stream.events import encode
from sales_stream.extract import EXTRACT_TABLE, read_extract
from sales_stream.infra.process import wait_until
from sales_stream.produce.generator import SaleGenerator, new_event_id
from sales_stream.sinks import id_hashes as ids_module
from sales_stream.sinks.hyper import HyperSink
from sales_stream.sinks.id_hashes import IdHashes
from sales_stream.stream import Batch, SinkUnavailable


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HyperSink]:
    sink = HyperSink(tmp_path / "out" / "sales.hyper")
    yield sink
    sink.close()


def test_id_hashes_know_every_id_added_and_not_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids_module, "_MIN_RECENT", 10)  # merge into the sorted array often
    start = [new_event_id() for _ in range(50)]
    hashes = IdHashes(start)
    added: list[str] = []
    for _ in range(30):
        chunk = [new_event_id() for _ in range(7)]
        assert not hashes.contains_any(chunk)
        hashes.add(chunk)
        added += chunk
    assert len(hashes) == 50 + 30 * 7
    for known in [*start, *added]:
        assert hashes.contains_any([new_event_id(), known])
    assert not hashes.contains_any([])
    assert not IdHashes().contains_any(["a"])
    hashes.add(start)  # already there: nothing changes
    assert len(hashes) == 50 + 30 * 7


def test_leftovers_of_a_crash_are_removed_at_the_next_start(sink: HyperSink) -> None:
    sink.path.parent.mkdir(parents=True)
    stale = [*sink.working_paths, sink.path.with_name(".sales.0123456789ab.tmp.hyper")]
    for path in stale:
        path.write_bytes(b"left by a killed writer")
    events = SaleGenerator(80).events(5)
    assert sink.write(Batch.of(events)).stored == 5
    assert not stale[2].exists()
    sink.close()
    assert [p.name for p in sink.path.parent.iterdir()] == ["sales.hyper"]


def test_batches_are_appended_once_each_and_published_whole(sink: HyperSink) -> None:
    events = SaleGenerator(81).events(400)
    first = sink.write(Batch.of(events[:200]))
    assert (first.stored, first.duplicates) == (200, 0)
    inodes = [path.stat().st_ino for path in sink.working_paths]
    # A replayed batch, a re-send inside a batch and a conflicting version add nothing.
    changed = dataclasses.replace(events[10], quantity=events[10].quantity + 1)
    second = sink.write(Batch.of([*events[150:300], events[250], changed]))
    assert (second.stored, second.duplicates) == (100, 52)
    third = sink.write(Batch.of([*events[290:400], events[160]]))  # the second file lags
    assert (third.stored, third.duplicates) == (100, 11)
    frame = read_extract(sink.path)
    assert sorted(frame["event_id"]) == sorted(e.event_id for e in events)
    quantity = frame.set_index("event_id").loc[events[10].event_id, "quantity"]
    assert quantity == events[10].quantity  # the first version stays, as in MongoDB
    # the two working files take turns, appended in place: the extract is never copied
    assert [path.stat().st_ino for path in sink.working_paths] == inodes
    assert sink.path.stat().st_ino == inodes[0]
    assert sink.path.stat().st_nlink == 2
    sink.close()
    assert not any(path.exists() for path in sink.working_paths)
    assert [p.name for p in sink.path.parent.iterdir()] == ["sales.hyper"]
    assert len(read_extract(sink.path)) == 400


def test_a_reader_holding_an_older_version_keeps_it_whole(sink: HyperSink) -> None:
    events = SaleGenerator(88).events(300)
    sink.write(Batch.of(events[:100]))
    with (
        HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU) as hyper,
        Connection(hyper.endpoint, sink.path) as reader,  # e.g. Tableau with the extract open
    ):
        count = f"SELECT count(*) FROM {EXTRACT_TABLE}"
        sink.write(Batch.of(events[100:200]))
        sink.write(Batch.of(events[200:300]))  # due on the reader's file: it gets a new one
        assert reader.execute_scalar_query(count) == 100
    assert sorted(read_extract(sink.path)["event_id"]) == sorted(e.event_id for e in events)


def test_a_new_sink_on_an_existing_extract_adds_only_what_it_lacks(tmp_path: Path) -> None:
    path = tmp_path / "sales.hyper"
    events = SaleGenerator(82).events(120)
    first = HyperSink(path)
    first.write(Batch.of(events[:80]))
    first.close()
    again = HyperSink(path)  # a restart, or another group reading from the start
    try:
        result = again.write(Batch.of(events))
    finally:
        again.close()
    assert (result.stored, result.duplicates) == (40, 80)
    assert len(read_extract(path)) == 120


def test_a_failed_publication_is_retried_without_losing_or_doubling_rows(
    sink: HyperSink,
) -> None:
    events = SaleGenerator(83).events(60)
    sink.write(Batch.of(events[:20]))
    sink.path.unlink()
    sink.path.mkdir()  # the extract cannot be replaced now
    with pytest.raises(SinkUnavailable, match="Hyper extract unreachable"):
        sink.write(Batch.of(events[20:]))
    sink.path.rmdir()  # the published extract is gone: the retry starts a new one
    retried = sink.write(Batch.of(events[20:]))
    assert (retried.stored, retried.duplicates) == (40, 0)
    assert sorted(read_extract(sink.path)["event_id"]) == sorted(e.event_id for e in events[20:])


def test_an_extract_of_another_layout_is_rebuilt_from_the_stream(sink: HyperSink) -> None:
    sink.path.parent.mkdir(parents=True)
    pantab.frame_to_hyper(pd.DataFrame({"x": [1, 2]}), sink.path, table=EXTRACT_TABLE)
    events = SaleGenerator(84).events(15)
    assert sink.write(Batch.of(events)).stored == 15
    assert list(read_extract(sink.path)["event_id"]) == [e.event_id for e in events]


def test_a_reader_always_opens_a_complete_extract(sink: HyperSink) -> None:
    events = SaleGenerator(85).events(2_000)
    sink.write(Batch.of(events[:100]))
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(len(read_extract(sink.path)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for start in range(100, 2_000, 100):
            sink.write(Batch.of(events[start : start + 100]))
    finally:
        stop.set()
        reader.join()
    assert seen, "the reader never read"
    assert all(count % 100 == 0 for count in seen)  # whole batches only
    assert seen == sorted(seen)  # never fewer rows than before


#: The live extract's runtime in a process of its own, in small batches (many publications).
WRITER = """
import sys
from sales_stream.app import kafka_runtime
from sales_stream.sinks.hyper import HyperSink
bootstrap, topic, group, path, idle = sys.argv[1:]
runtime = kafka_runtime(bootstrap, topic, group, [HyperSink(path)], name="hyper", max_batch=150)
runtime.run(until_idle=float(idle))
runtime.close()
"""


@pytest.mark.slow
def test_sigkilled_extract_writers_lose_and_duplicate_nothing(
    endpoints: infra.Endpoints, topic: str, group_id: str, tmp_path: Path
) -> None:
    events = SaleGenerator(86).events(3_000)
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    for event in [*events, *events[:200]]:  # 200 re-sends at later offsets
        producer.send(topic, key=event.region.encode(), value=encode(event))
    producer.flush()
    producer.close()
    path = tmp_path / "sales.hyper"
    probe = KafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )  # reads the group's commits without joining it

    def committed() -> int:
        return sum(probe.committed(TopicPartition(topic, p)) or 0 for p in range(3))

    def writer(idle_s: float) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", WRITER, endpoints.kafka_bootstrap, topic, group_id]
        return subprocess.Popen([*argv, str(path), str(idle_s)], cwd=tmp_path)

    rng = random.Random(87)
    kills = []
    try:
        for _ in range(2):  # each writer killed once it has published and committed a batch
            before = committed()
            process = writer(60)
            try:
                progressed = wait_until(lambda before=before: committed() > before, timeout=90)
                time.sleep(rng.uniform(0.0, 0.15))  # somewhere in the next batch
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
            assert progressed, f"no commit within 90 s (kills so far at {kills})"
            kills.append(committed())
        assert kills[-1] < len(events) + 200, "the kills came after the end of the stream"
        final = writer(2)  # joins once the killed member's session expires (~10 s)
        assert final.wait(timeout=120) == 0
        assert committed() == len(events) + 200
    finally:
        probe.close()
    frame = read_extract(path)
    assert len(frame) == len(events)  # every sale once: no loss, no duplicate
    assert set(frame["event_id"]) == {e.event_id for e in events}
    assert [p.name for p in tmp_path.iterdir()] == ["sales.hyper"]  # nothing left behind
