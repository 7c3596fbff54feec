"""One contract for every sink, on the real servers: poison never stalls, lake = MongoDB,
identity survives a restart of the memory-only broker."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest
from kafka import KafkaProducer
from pymongo.database import Database

from sales_stream import cli, infra
from sales_stream.app import Stack
from sales_stream.config import Settings
from sales_stream.deadletters import CONFLICTING_DUPLICATE, MISSING_KEY, DeadLetter, sha256_hex
from sales_stream.events import SaleEvent, encode
from sales_stream.lake.read import read_dead_letters, read_lake
from sales_stream.lake.tree import lake_stats
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import DAILY, DEAD_LETTERS, HOURLY, SALES

pytestmark = pytest.mark.slow

Message = tuple[bytes | None, bytes | None]
#: What a dead letter says of its message, the same in both stores (not when each sink saw it).
LETTER_FIELDS = tuple(f.name for f in dataclasses.fields(DeadLetter) if f.name != "received_at")


def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_request_size=40 << 20, acks=1
    )
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()


def sales(events: Sequence[SaleEvent]) -> list[Message]:
    return [(e.region.encode(), encode(e)) for e in events]


def rollup_totals(db: Database) -> list[tuple[int, int]]:
    """(sales, revenue in cents) of each rollup."""
    return [(n, round(amount * 100)) for n, amount in (totals(db, r) for r in (HOURLY, DAILY))]


def letters(records: Iterable[Mapping]) -> list[tuple]:
    """The `LETTER_FIELDS` of MongoDB documents or lake rows, in position order.

    A missing value is ``None`` (pandas gives the lake's as NaN, the one value unequal to itself).
    """
    return sorted(tuple(r[k] if r[k] == r[k] else None for k in LETTER_FIELDS) for r in records)


def cents(events: Sequence[SaleEvent]) -> int:
    return sum(round(e.amount * 100) for e in events)


@pytest.fixture
def cli_env(
    settings: Settings, topic: str, db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Path:
    """The CLI's settings point at this test's topic, database and a fresh lake."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "MODE": "embedded",
        "STATE_DIR": str(settings.state_dir),
        "TOPIC": topic,
        "DB": db.name,
    }.items():
        monkeypatch.setenv(f"SALES_STREAM_{name}", value)
    return tmp_path / "lake"


def _surrogate_key_sale() -> bytes:
    sale = json.loads(encode(SaleGenerator(1).next_event()))
    return json.dumps({**sale, "\ud800": 1}).encode()  # the key escaped: valid UTF-8 JSON


def _huge_key() -> bytes:
    return b"k" * (17 * 1024 * 1024)


@pytest.mark.parametrize(
    ("poison", "reason"),
    [
        ((b"Bretagne", _surrogate_key_sale()), "lone_surrogate"),
        ((_huge_key(), b"{bad"), "not_json"),
    ],
    ids=["lone_surrogate_key", "17MB_key_bad_value"],
)
def test_a_poison_message_never_stalls_mongodb_nor_the_lake(
    endpoints: infra.Endpoints,
    topic: str,
    db: Database,
    cli_env: Path,
    poison: Message,
    reason: str,
    capsys: pytest.CaptureFixture,
) -> None:
    events = SaleGenerator(2).events(2000)
    produce(endpoints.kafka_bootstrap, topic, [poison, *sales(events)])

    assert cli.main(["consume", "--until-idle", "2"]) == 0
    assert cli.main(["lake", "--path", str(cli_env), "--until-idle", "2"]) == 0
    out = capsys.readouterr().out
    assert "stopped: consumed 2001" in out

    assert set(db[SALES].distinct("_id")) == {e.event_id for e in events}
    [letter] = db[DEAD_LETTERS].find()
    assert (
        letter["reason"] == reason if reason else letter["reason"] in {"not_utf8", "unknown_field"}
    )
    assert len(letter["key"] or "") <= 512
    assert letter["key_size"] == len(poison[0] or b"")
    assert (letter["raw_size"], letter["raw_sha256"]) == (len(poison[1]), sha256_hex(poison[1]))
    assert letter["incarnation"]
    assert rollup_totals(db) == [(2000, cents(events))] * 2
    assert lake_stats(cli_env)["rows"] == 2000
    lake_letters = read_dead_letters(cli_env).to_dict("records")
    assert letters(lake_letters) == letters([letter])  # reason, position, sizes, sha256, …


def test_lake_and_mongodb_apply_one_contract(
    settings: Settings, endpoints: infra.Endpoints, topic: str, db: Database, tmp_path: Path
) -> None:
    events = SaleGenerator(3).events(1200)
    channels = sorted({e.channel for e in events})
    conflicting = [
        dataclasses.replace(e, channel=next(c for c in channels if c != e.channel))
        for e in events[:30]
    ]
    null_keys = [(None, encode(e)) for e in SaleGenerator(4).events(25)]
    stream = [*sales(events), *sales(events[100:160]), *null_keys, *sales(conflicting)]
    duplicate_key = encode(events[0])[:-1] + b',"amount":1}'
    stream += [(b"Bretagne", b"not json"), (b"Bretagne", duplicate_key)]
    produce(endpoints.kafka_bootstrap, topic, stream)

    stack = Stack(settings.model_copy(update={"topic": topic, "db": db.name}), endpoints)
    try:
        mongo = stack.consumer(group_id=f"m_{topic}").run(until_idle=2)
        lake = stack.lake(tmp_path / "lake", group_id=f"l_{topic}", flush_seconds=0.5).run(
            until_idle=2
        )
    finally:
        stack.close()

    assert mongo.consumed == lake.consumed == len(stream)
    assert (mongo.stored, lake.stored) == (1200, 1200)
    assert mongo.duplicates == lake.duplicates == 60
    ids = set(db[SALES].distinct("_id"))
    assert ids == {e.event_id for e in events}
    frame = read_lake(tmp_path / "lake")
    assert len(frame) == frame["event_id"].nunique() == 1200
    assert set(frame["event_id"]) == ids
    mongo_letters = letters(db[DEAD_LETTERS].find())
    assert letters(read_dead_letters(tmp_path / "lake").to_dict("records")) == mongo_letters
    reasons = [d["reason"] for d in db[DEAD_LETTERS].find()]
    assert reasons.count(MISSING_KEY) == 25
    assert reasons.count(CONFLICTING_DUPLICATE) == 30
    assert "duplicate_json_key" in reasons
    assert rollup_totals(db) == [(1200, cents(events))] * 2


def test_identity_survives_a_restart_of_the_services(tmp_path: Path) -> None:
    """up, produce, consume + lake, down, up, produce, consume + lake: nothing skipped."""
    settings = Settings(_env_file=None, mode="embedded", state_dir=tmp_path / "state")
    lake_path = tmp_path / "lake"
    first, second = SaleGenerator(5).events(1500), SaleGenerator(6).events(1500)
    for events in (first, second):
        with infra.up(settings) as endpoints:
            stack = Stack.from_settings(settings, endpoints=endpoints)
            try:
                stack.ensure_topic()
                produce(endpoints.kafka_bootstrap, settings.topic, sales(events))
                stack.consumer().run(until_idle=2)
                stack.lake(lake_path, flush_seconds=0.5).run(until_idle=2)
                db = stack.db
                ids = set(db[SALES].distinct("_id"))
                totals = rollup_totals(db)
            finally:
                stack.close()
    everything = first + second
    assert ids == {e.event_id for e in everything}
    frame = read_lake(lake_path)
    assert len(frame) == frame["event_id"].nunique() == len(everything)
    assert set(frame["event_id"]) == ids
    assert totals == [(len(everything), cents(everything))] * 2
