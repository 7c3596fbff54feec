"""The Kafka → MongoDB consumer on the real embedded services."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from bson import Int64
from kafka import KafkaProducer
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.config import Settings
from sales_stream.deadletters import CONFLICTING_DUPLICATE, MISSING_KEY
from sales_stream.events import SaleEvent, encode, event_from_document
from sales_stream.produce.badevents import EXPECTED_REASON, BadEventKind, make_bad_payload
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import DAILY, DEAD_LETTERS, FENCES, HOURLY, SALES
from sales_stream.stream import Backoff, StreamRuntime, StreamState, StreamStats, StreamWorker
from sales_stream.stream.sink import HYPER_SERVICE, LAKE_SERVICE
from sales_stream.ui.consumer_panel import consumer_panel, status_fr, summary_text

Message = tuple[bytes | None, bytes | None]  # (key, value)


def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
    """Send messages and return the (partition, offset) of each."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 << 20)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def valid_messages(events: Sequence[SaleEvent]) -> list[Message]:
    return [(e.region.encode(), encode(e)) for e in events]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def stack_for(settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database) -> Stack:
    return Stack(settings.model_copy(update={"topic": topic, "db": db.name}), endpoints)


def make_consumer(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group: str, **kw
) -> StreamRuntime:
    return stack_for(settings, endpoints, topic, db).consumer(group_id=group, **kw)


def make_thread(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group: str, **kw
) -> StreamWorker:
    return StreamWorker(make_consumer(settings, endpoints, topic, db, group, **kw))


def rollup_totals(db: Database) -> list[tuple[int, int]]:
    """(sales, revenue in cents) of each rollup."""
    return [(n, round(amount * 100)) for n, amount in (totals(db, r) for r in (HOURLY, DAILY))]


def test_round_trip_stores_every_event_and_commits(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    events = SaleGenerator(11).events(3000)
    produce(endpoints.kafka_bootstrap, topic, valid_messages(events))

    stats = make_consumer(settings, endpoints, topic, db, group_id, max_batch=1000).run(
        max_events=3000
    )

    assert (stats.consumed, stats.stored, stats.duplicates) == (3000, 3000, 0)
    assert stats.dead_lettered == 0
    assert stats.batches >= 3
    assert stats.state is StreamState.STOPPED
    assert stats.last_commit is not None
    assert stats.last_commit.tzinfo is not None
    assert stats.total_lag == 0
    docs = {doc["_id"]: doc for doc in db[SALES].find()}
    assert {doc_id: event_from_document(doc) for doc_id, doc in docs.items()} == {
        e.event_id: e for e in events
    }
    assert all(doc["ingested_at"].tzinfo is not None for doc in docs.values())
    assert rollup_totals(db) == [(3000, sum(round(e.amount * 100) for e in events))] * 2
    assert list(db[SALES].index_information()) == ["_id_"]  # the hot collection: _id only
    # Offsets were committed: the same group finds nothing left to read.
    again = make_consumer(settings, endpoints, topic, db, group_id).run(until_idle=0.5)
    assert again.consumed == 0


def test_a_rollup_fence_beyond_the_partition_end_is_in_the_status(
    settings: Settings,
    endpoints: infra.Endpoints,
    topic: str,
    db: Database,
    group_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = SaleGenerator(23).events(600)
    first = produce(endpoints.kafka_bootstrap, topic, valid_messages(events[:300]))
    stats = make_consumer(settings, endpoints, topic, db, group_id).run(until_idle=0.5)
    assert (stats.stored, stats.last_error) == (300, None)
    fence = db[FENCES].find_one({"_id": {"$regex": ":0$"}})
    assert fence is not None
    # Another writer forged the fence and the value a flush would have left: only the
    # partition's end can tell.
    forged = {"next": Int64(1_000_000_000), "moved_to": Int64(1_000_000_000)}
    db[FENCES].update_one({"_id": fence["_id"]}, {"$set": forged})
    second = produce(endpoints.kafka_bootstrap, topic, valid_messages(events[300:]))
    end = 1 + max(offset for partition, offset in first + second if partition == 0)
    stats = make_consumer(settings, endpoints, topic, db, group_id).run(until_idle=0.5)
    report = (
        f"rollups: rollup fence {fence['_id']} is beyond the partition's end: next=1000000000, "
        f"the partition ends at {end}; sales below it are not counted"
    )
    assert stats.stored == 300
    assert stats.last_error == report
    assert report.removeprefix("rollups: ") in caplog.text
    skipped = sum(1 for partition, _ in second if partition == 0)
    assert skipped > 0
    assert rollup_totals(db)[0][0] == 600 - skipped  # what the forged fence hid, now reported


def test_a_live_consumer_keeps_its_rollups_up_to_date(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    stack = stack_for(settings, endpoints, topic, db)
    consumer = StreamWorker(stack.consumer(group_id=group_id, max_batch=50, rollup_flush_s=0.5))
    events = SaleGenerator(17).events(600)
    consumer.start()
    try:
        for sent in range(150, 601, 150):
            produce(endpoints.kafka_bootstrap, topic, valid_messages(events[sent - 150 : sent]))
            wait_for(  # the stream goes quiet: what the rollups hold is flushed
                lambda sent=sent: rollup_totals(db)[0][0] == sent,
                timeout=60,
                what=f"{sent} sales in the rollups",
            )
            assert consumer.stats.total_lag == 0
    finally:
        consumer.stop()
    assert rollup_totals(db) == [(600, sum(round(e.amount * 100) for e in events))] * 2
    assert consumer.stats.last_commit is not None


def test_resent_events_are_counted_as_duplicates(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    events = SaleGenerator(12).events(1500)
    messages = valid_messages(events)
    channels = {e.channel for e in events}
    changed = [
        dataclasses.replace(e, channel=next(c for c in sorted(channels) if c != e.channel))
        for e in events[500:600]
    ]
    produce(endpoints.kafka_bootstrap, topic, messages + messages[:500] + valid_messages(changed))

    stats = make_consumer(settings, endpoints, topic, db, group_id).run(max_events=2100)

    assert (stats.consumed, stats.stored, stats.duplicates) == (2100, 1500, 500)
    assert stats.dead_lettered == 100
    assert db[SALES].count_documents({}) == 1500
    letters = list(db[DEAD_LETTERS].find())
    assert {d["reason"] for d in letters} == {CONFLICTING_DUPLICATE}
    assert {d["detail"].split()[1] for d in letters} == {e.event_id for e in changed}
    assert all(d["detail"].count("sha256") == 1 and "this one" in d["detail"] for d in letters)
    # The rollups count each sale once: no re-send, no conflicting version.
    assert rollup_totals(db) == [(1500, sum(round(e.amount * 100) for e in events))] * 2


def test_malformed_messages_become_dead_letters_with_their_reason(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    rng = random.Random(5)
    generator = SaleGenerator(13)
    valid = generator.events(5000)
    bases = generator.events(1000)
    variants: list[BadEventKind | None] = [*BadEventKind, None]  # None: valid value, no key
    bad: list[tuple[Message, str]] = []
    for i, base in enumerate(bases):
        kind = variants[i % len(variants)]
        if kind is None:
            bad.append(((None, encode(base)), MISSING_KEY))
            continue
        value, _ = make_bad_payload(rng, base=base, kind=kind)
        # Some bad values come without a key too (Kafka refuses a null key and value).
        key = None if i % 7 == 0 and value is not None else base.region.encode()
        bad.append(((key, value), str(EXPECTED_REASON[kind])))
    tagged: list[tuple[Message, str | None]] = [(m, None) for m in valid_messages(valid)] + bad
    rng.shuffle(tagged)
    positions = produce(endpoints.kafka_bootstrap, topic, [m for m, _ in tagged])
    expected_reason = {
        pos: reason for pos, (_, reason) in zip(positions, tagged, strict=True) if reason
    }

    thread = make_thread(settings, endpoints, topic, db, group_id)
    thread.start()
    try:
        wait_for(lambda: thread.stats.consumed >= 6000, timeout=60, what="6,000 messages")
        stats = thread.stats
        assert (stats.stored, stats.dead_lettered, stats.duplicates) == (5000, 1000, 0)
        assert set(db[SALES].distinct("_id")) == {e.event_id for e in valid}
        letters = list(db[DEAD_LETTERS].find())
        assert len(letters) == 1000
        got_reason = {(d["partition"], d["offset"]): d["reason"] for d in letters}
        assert got_reason == expected_reason
        assert {d["reason"] for d in letters} == {str(r) for r in EXPECTED_REASON.values()} | {
            MISSING_KEY
        }
        assert all(
            d["detail"] and d["_id"].endswith(f"{topic}:{d['partition']}:{d['offset']}")
            for d in letters
        )
        huge = [d for d in letters if d["reason"] == "oversize"]
        assert huge
        assert all(d["raw_size"] > len(d["raw"]) for d in huge)
        # The loop is still alive: new valid events keep flowing.
        more = generator.events(20)
        produce(endpoints.kafka_bootstrap, topic, valid_messages(more))
        wait_for(lambda: thread.stats.consumed >= 6020, timeout=30, what="20 more messages")
        assert thread.running
    finally:
        final = thread.stop()
    assert final.state is StreamState.STOPPED
    assert final.stored == 5020
    assert db[SALES].count_documents({}) == 5020


def test_thread_and_panel_start_stop_commit_and_wait_idle(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    events = SaleGenerator(14).events(800)
    produce(endpoints.kafka_bootstrap, topic, valid_messages(events))
    thread = make_thread(settings, endpoints, topic, db, group_id)
    panel = consumer_panel(thread, refresh_s=0.1)
    try:
        assert "pas démarré" in panel.status.value
        panel.start_button.click()
        assert thread.running
        with pytest.raises(RuntimeError, match="already running"):
            thread.start()
        idle = thread.wait_idle(idle_s=0.3, timeout=60)
        assert idle.state is StreamState.IDLE
        assert idle.consumed == 800
        assert idle.lag
        assert idle.total_lag == 0
        panel.refresh()
        assert "à jour" in panel.status.value
        assert "<b>800</b>" in panel.counters.value
        assert panel.start_button.disabled
        panel.stop_button.click()  # graceful stop, in the background
        wait_for(lambda: not thread.running, timeout=30, what="the stop")
        assert thread.stats.state is StreamState.STOPPED
        with pytest.raises(RuntimeError, match="not running"):
            thread.wait_idle(idle_s=0.1, timeout=1)
        # Restartable; the stop committed everything, so nothing is read again.
        produce(endpoints.kafka_bootstrap, topic, valid_messages(events[:10]))
        thread.start()
        again = thread.wait_idle(idle_s=0.3, timeout=60)
    finally:
        thread.stop()
        panel.close()
    assert (again.consumed, again.stored, again.duplicates) == (810, 800, 10)


#: 8 s after `_waiting_for_mongodb`'s wait began.
_NOW = datetime(2024, 6, 1, 12, 30, 8, tzinfo=UTC)


def _waiting_for_mongodb() -> StreamStats:
    return StreamStats(
        name="mongodb",
        state=StreamState.WAITING_SINK,
        cause="MongoDB unavailable: AutoReconnect: connection refused",
        waiting_on="MongoDB",
        since=datetime(2024, 6, 1, 12, 30, 0, tzinfo=UTC),
        consumed=6020,
        stored=5020,
        duplicates=0,
        dead_lettered=1000,
        batches=4,
        lag={0: 3, 1: 0, 2: 4},
        last_commit=datetime(2024, 6, 1, 12, 30, 5, tzinfo=UTC),
        last_error="MongoDB unavailable: AutoReconnect: connection refused",
    )


def test_summary_text_in_french() -> None:
    stats, now = _waiting_for_mongodb(), _NOW
    assert summary_text(stats, now=now) == (
        "Consommateur : MongoDB injoignable depuis 8 s, nouvel essai du lot.\n"
        "6\u202f020 messages traités en 4 lots : 5\u202f020 ventes enregistrées, "
        "0 doublon ignoré, 1\u202f000 lettres mortes.\n"
        "Retard : 7 messages ; dernier commit : 01/06/2024 à 12:30:05 UTC.\n"
        "Dernière erreur : MongoDB unavailable: AutoReconnect: connection refused"
    )
    stalled = dataclasses.replace(
        stats, state=StreamState.STALLED, cause="batch at sales:2:1234-1300 cannot be written"
    )
    assert status_fr(stalled, now=now) == (
        "bloqué depuis 8 s : batch at sales:2:1234-1300 cannot be written"
    )
    kafka = dataclasses.replace(stats, state=StreamState.WAITING_KAFKA)
    assert status_fr(kafka, now=now) == "Kafka injoignable depuis 8 s"


def test_two_members_share_the_topic_without_loss(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, group_id: str
) -> None:
    events = SaleGenerator(16).events(4000)
    messages = valid_messages(events)
    threads = [
        make_thread(settings, endpoints, topic, db, group_id, max_batch=500) for _ in range(2)
    ]
    threads[0].start()
    try:
        produce(endpoints.kafka_bootstrap, topic, messages[:2000])
        wait_for(lambda: threads[0].stats.consumed > 0, timeout=60, what="the first member")
        threads[1].start()  # rebalance while data flows
        produce(endpoints.kafka_bootstrap, topic, messages[2000:])
        wait_for(
            lambda: sum(t.stats.stored for t in threads) >= 4000, timeout=90, what="4,000 stored"
        )
    finally:
        final = [t.stop() for t in threads]
    assert sum(s.stored for s in final) == 4000
    assert sum(s.consumed for s in final) == 4000 + sum(s.duplicates for s in final)
    assert set(db[SALES].distinct("_id")) == {e.event_id for e in events}
    assert rollup_totals(db)[0] == (4000, sum(round(e.amount * 100) for e in events))


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    backoff = Backoff(initial=0.2, cap=5.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [min(5.0, 0.2 * 2**i) for i in range(10)]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bases, strict=True))
    assert len(set(delays)) == 10
    backoff.reset()
    assert 0.1 <= backoff.next_delay() <= 0.2
    with pytest.raises(ValueError, match="need 0 < initial <= cap"):
        Backoff(initial=1.0, cap=0.5)


def test_status_names_the_service_waited_for_in_french() -> None:
    def waiting(service: str) -> str:
        return status_fr(dataclasses.replace(_waiting_for_mongodb(), waiting_on=service), now=_NOW)

    assert waiting(HYPER_SERVICE).startswith("extrait Hyper injoignable depuis 8 s")
    assert waiting(LAKE_SERVICE).startswith("lac injoignable depuis 8 s")
