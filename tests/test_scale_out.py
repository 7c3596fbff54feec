"""Scale-out that stays exact: three ``consume`` processes in one group, one SIGKILLed.

A 6-partition topic gets a few thousand sales, exact re-sends and poison messages, sent in
two halves; three ``python -m sales_stream consume`` processes share one group (MongoDB, dead
letters, rollups) and two ``lake run`` processes another (Parquet on the embedded object
store). Once the first half is flowing and the victims have stored sales, one consumer and one
lake writer are SIGKILLed and restarted; the second half follows. When both groups have
committed every offset, each sale is stored once in MongoDB and in the lake, every rollup cell
equals the sums over ``sales``, and every poison message is a dead letter with its reason.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from pymongo.database import Database

import sales_stream
from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic
from sales_stream.config import Settings
from sales_stream.drain import highwaters
from sales_stream.events import SaleEvent, encode
from sales_stream.identity import kafka_key
from sales_stream.infra.process import wait_until
from sales_stream.lake.read import read_dead_letters, read_lake
from sales_stream.produce.badevents import EXPECTED_REASON, BadEventKind, make_bad_payload
from sales_stream.produce.generator import SaleGenerator
from sales_stream.store import DAILY, DEAD_LETTERS, FENCES, HOURLY, SALES, Rollup

pytestmark = pytest.mark.slow

PARTITIONS = 6
CONSUMERS = 3
LAKE_WRITERS = 2
SALES_SENT = 4000
RESENT = 60  # exact re-sends of sales already sent: duplicates, never stored twice
POISON_PER_KIND = 2
#: Messages per second while sending: each half lasts a few seconds.
SEND_RATE = 500
#: Generous: the machine has 2 cores, shared with other sessions.
DEADLINE_S = 150
SRC = str(Path(sales_stream.__file__).resolve().parents[1])

Message = tuple[bytes | None, bytes | None]


@dataclass
class Proc:
    """A CLI process whose output is read by a thread (kept for the assertions' messages)."""

    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def stored(self) -> int:
        """``stored N`` of the last progress line (0 before the first)."""
        found = [int(m.group(1)) for line in self.lines if (m := re.search(r"stored (\d+)", line))]
        return found[-1] if found else 0

    def joined(self) -> bool:
        """Whether a progress line shows the member past its first join."""
        return any(re.match(r"\[\w+\] (idle|running)", line) for line in self.lines)

    def output(self) -> str:
        return f"--- {self.name} (pid {self.popen.pid}, rc {self.popen.returncode}):\n" + "\n".join(
            self.lines[-40:]
        )


class HalvesProducer:
    """Sends the first half of ``messages`` paced at `SEND_RATE`, then the rest once released."""

    def __init__(self, bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
        self.bootstrap, self.topic, self.messages = bootstrap, topic, messages
        self.half = len(messages) // 2
        self.release = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="halves-producer", daemon=True)

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            self._send(producer, self.messages[: self.half])
            if not self.release.wait(DEADLINE_S):
                raise TimeoutError("the second half was never released")
            self._send(producer, self.messages[self.half :])
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            producer.close()

    def _send(self, producer: KafkaProducer, messages: Sequence[Message]) -> None:
        chunk = SEND_RATE // 10
        for start in range(0, len(messages), chunk):
            began = time.monotonic()
            futures = [
                producer.send(self.topic, key=key, value=value)
                for key, value in messages[start : start + chunk]
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
            self.sent += len(futures)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))


def messages_to_send(
    seed: int,
) -> tuple[list[Message], list[SaleEvent], Counter[str]]:
    """Sales, exact re-sends and poison, shuffled: the messages, the sales, the poison reasons."""
    rng = random.Random(seed)
    sales = SaleGenerator(seed).events(SALES_SENT)
    messages: list[Message] = [(kafka_key(e), encode(e)) for e in sales]
    messages += [(kafka_key(e), encode(e)) for e in rng.sample(sales, RESENT)]
    reasons: Counter[str] = Counter()
    for kind in BadEventKind:
        for _ in range(POISON_PER_KIND):
            base = rng.choice(sales)
            value, _ = make_bad_payload(rng, base=base, kind=kind)
            messages.append((kafka_key(base), value))
            reasons[str(EXPECTED_REASON[kind])] += 1
    rng.shuffle(messages)
    return messages, sales, reasons


def wait_for(condition: Callable[[], bool], *, what: str, procs: Sequence[Proc]) -> None:
    """Poll ``condition`` (twice a second) until `DEADLINE_S`; fail with the processes' output."""
    if not wait_until(condition, timeout=DEADLINE_S, interval=0.5):
        outputs = "\n".join(p.output() for p in procs)
        raise AssertionError(f"timed out after {DEADLINE_S} s waiting for {what}\n{outputs}")


def cell_sums(rows: list[dict[str, Any]], rollup: Rollup) -> dict[tuple, tuple[int, int, Decimal]]:
    """Rollup rows summed per cell: (bucket, *dimensions) → (sales, quantity, amount)."""
    cells: dict[tuple, list] = {}
    for row in rows:
        key = (row[rollup.time_field], *(row[d] for d in rollup.dimensions))
        cell = cells.setdefault(key, [0, 0, Decimal(0)])
        cell[0] += int(row["sales"])
        cell[1] += int(row["quantity"])
        cell[2] += row["amount"].to_decimal()
    return {key: (s, q, a) for key, (s, q, a) in cells.items()}


def expected_cells(sales: list[dict[str, Any]], rollup: Rollup) -> dict[tuple, tuple]:
    """The same cells computed from the ``sales`` documents (amounts rounded to the cent)."""
    cells: dict[tuple, list[int]] = {}
    for sale in sales:
        key = (rollup.bucket(sale["ts"]), *(sale[d] for d in rollup.dimensions))
        cell = cells.setdefault(key, [0, 0, 0])
        cell[0] += 1
        cell[1] += sale["quantity"]
        cell[2] += round(sale["amount"] * 100)
    return {key: (s, q, Decimal(c).scaleb(-2)) for key, (s, q, c) in cells.items()}


def test_three_consumers_one_killed_store_every_sale_once(
    settings: Settings,
    endpoints: infra.Endpoints,
    unique_name: str,
    db: Database,
    tmp_path: Path,
) -> None:
    topic, group, lake_group = f"t_{unique_name}", f"g_{unique_name}", f"l_{unique_name}"
    lake_url = f"s3://lake/{unique_name}/"
    bootstrap = endpoints.kafka_bootstrap
    ensure_topic(bootstrap, topic, partitions=PARTITIONS)
    messages, sales, poison = messages_to_send(41)
    env = {
        **os.environ,
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": topic,
        "SALES_STREAM_DB": db.name,
        "SALES_STREAM_PARTITIONS": str(PARTITIONS),
        "SALES_STREAM_SQL_ROLLUPS": "true",
        # The processes run the code under test (from a git worktree too, not the installed one).
        "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])),
    }
    consume = [sys.executable, "-m", "sales_stream", "consume", "--group", group]
    lake = [sys.executable, "-m", "sales_stream", "lake", "run", "--path", lake_url]
    lake += ["--group", lake_group, "--flush-seconds", "1"]
    procs: list[Proc] = []

    def spawn(name: str, command: list[str]) -> Proc:
        popen = subprocess.Popen(
            command, cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(Proc(name, popen))
        return procs[-1]

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def committed(group_id: str) -> dict[int, int]:
        offsets = admin.list_group_offsets(group_id).get(group_id, {})
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    producer = HalvesProducer(bootstrap, topic, messages)
    try:
        consumers = [spawn(f"consume-{i}", consume) for i in range(CONSUMERS)]
        writers = [spawn(f"lake-{i}", lake) for i in range(LAKE_WRITERS)]
        wait_for(lambda: all(p.joined() for p in procs), what="every member to join", procs=procs)
        producer.thread.start()
        victim, lake_victim = consumers[0], writers[0]
        for proc in (victim, lake_victim):  # once it has stored sales, while they flow
            wait_for(lambda p=proc: p.stored() > 0, what=f"{proc.name} to store", procs=procs)
            proc.popen.send_signal(signal.SIGKILL)
            assert proc.popen.wait(timeout=30) == -signal.SIGKILL
        sent_at_kill, stored_at_kill = producer.sent, db[SALES].count_documents({})
        producer.release.set()  # the stream goes on while the victims are gone
        spawn("consume-restarted", consume)
        spawn("lake-restarted", lake)
        producer.thread.join(DEADLINE_S)
        assert producer.error is None, producer.error
        assert producer.sent == len(messages)
        ends = highwaters(bootstrap, topic)
        assert sum(ends.values()) == len(messages), ends
        for group_id in (group, lake_group):
            wait_for(
                lambda g=group_id: committed(g) == ends,
                what=f"{group_id} to commit all",
                procs=procs,
            )
        live = [p for p in procs if p.popen.returncode is None]
        assert len(live) == CONSUMERS + LAKE_WRITERS, "\n".join(p.output() for p in procs)
        for proc in live:
            proc.popen.send_signal(signal.SIGTERM)
        for proc in live:
            assert proc.popen.wait(timeout=60) == 0, proc.output()
    finally:
        producer.release.set()
        for proc in procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(timeout=30)
        admin.close()

    outputs = "\n".join(p.output() for p in procs)
    assert 0 < stored_at_kill < len(sales), outputs  # killed mid-stream
    assert sent_at_kill <= len(messages) // 2 < len(messages)
    assert "Traceback" not in outputs
    for anomaly in ("moved outside a flush", "beyond the partition's end"):
        assert anomaly not in outputs  # what a rollup flush or an assignment finds wrong

    # MongoDB: every sale once, nothing else.
    docs = list(db[SALES].find({}, {"ts": 1, "region": 1, "product": 1, "category": 1,
                                   "quantity": 1, "amount": 1}))  # fmt: skip
    ids = [d["_id"] for d in docs]
    assert len(ids) == len(set(ids)) == len(sales), outputs
    assert set(ids) == {e.event_id for e in sales}
    letters = list(db[DEAD_LETTERS].find({}, {"reason": 1, "topic": 1}))
    assert Counter(d["reason"] for d in letters) == poison, outputs

    # The rollups: every cell equals the sums over ``sales``; each fence at its partition's end.
    for rollup in (HOURLY, DAILY):
        rows = list(db[rollup.collection].find())
        assert cell_sums(rows, rollup) == expected_cells(docs, rollup), rollup.collection
    fences = {
        doc["_id"].rsplit(":", 1)[1]: int(doc["next"])
        for doc in db[FENCES].find({"_id": {"$regex": f"(^|:){re.escape(topic)}:\\d+$"}})
    }
    assert fences == {str(p): end for p, end in ends.items()}

    # The lake: each sale once, the same content; the same dead letters.
    lake_root = Stack(settings, endpoints).lake_location(lake_url)
    frame = read_lake(lake_root)
    assert len(frame) == frame["event_id"].nunique() == len(sales), outputs
    by_id = {e.event_id: e for e in sales}
    for row in frame.itertuples():
        sale = by_id[row.event_id]
        assert (row.region, row.product, row.quantity, row.amount) == (
            sale.region, sale.product, sale.quantity, sale.amount,
        )  # fmt: skip
    dead = read_dead_letters(lake_root)
    assert Counter(dead["reason"]) == poison
