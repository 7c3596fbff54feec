"""Fault injection: consumer processes killed with SIGKILL, MongoDB stopped mid-stream."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pymongo.database import Database

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.events import SaleEvent, encode
from sales_stream.infra import embedded
from sales_stream.infra.process import wait_until
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.rollups import totals
from sales_stream.store import DAILY, HOURLY, SALES
from sales_stream.stream import StreamState
from sales_stream.ui.consumer_panel import status_fr, summary_text

pytestmark = pytest.mark.slow


class ThrottledProducer:
    """Sends events from a background thread, ``chunk`` of them every ``interval`` seconds."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        events: Sequence[SaleEvent],
        *,
        chunk: int,
        interval: float,
    ) -> None:
        self.bootstrap, self.topic, self.events = bootstrap, topic, events
        self.chunk, self.interval = chunk, interval
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-producer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            for start in range(0, len(self.events), self.chunk):
                began = time.monotonic()
                for event in self.events[start : start + self.chunk]:
                    producer.send(self.topic, key=event.region.encode(), value=encode(event))
                producer.flush()
                self.sent = min(start + self.chunk, len(self.events))
                time.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            producer.close()


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    if not wait_until(condition, timeout=timeout):
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stored_ids(db: Database) -> list[str]:
    return [doc["_id"] for doc in db[SALES].find({}, {"_id": 1})]


def test_sigkilled_consumer_processes_lose_and_duplicate_nothing(
    settings: Settings,
    endpoints: infra.Endpoints,
    topic: str,
    db: Database,
    group_id: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(20)
    events = SaleGenerator(21).events(20_000)
    env = {
        **os.environ,
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": topic,
        "SALES_STREAM_DB": db.name,
    }
    command = [sys.executable, "-m", "sales_stream", "consume", "--group", group_id]
    probe = KafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap, group_id=group_id, enable_auto_commit=False
    )  # reads the group's commits without joining it

    def committed() -> int:
        return sum(probe.committed(TopicPartition(topic, p)) or 0 for p in range(3))

    def spawn(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*command, *extra],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    # About 400 events/s: the stream is still flowing during the kills.
    producer = ThrottledProducer(endpoints.kafka_bootstrap, topic, events, chunk=200, interval=0.5)
    producer.start()
    kills = []  # (committed offsets, events sent) at each kill
    try:
        for _ in range(5):
            before = committed()
            process = spawn()
            try:
                # Once this process has committed a batch, kill it at a random point.
                progressed = wait_until(
                    lambda before=before: (
                        committed() > before or committed() == producer.sent == len(events)
                    ),
                    timeout=120,
                )
                # While events still flow, kill with work in progress: sent but not committed.
                if producer.sent < len(events):
                    wait_until(lambda: committed() < producer.sent, timeout=5)
                time.sleep(rng.uniform(0.0, 0.1))
            finally:
                process.send_signal(signal.SIGKILL)
                output, _ = process.communicate(timeout=30)
            assert progressed, (
                f"no commit within 120 s; kills so far {kills}, committed {committed()}, "
                f"sent {producer.sent}; consumer output:\n{output}"
            )
            kills.append((committed(), producer.sent))
        producer.join(timeout=120)
        final = spawn("--until-idle", "4")
        try:
            output, _ = final.communicate(timeout=180)
        finally:
            if final.poll() is None:
                final.kill()
                final.communicate()
    finally:
        probe.close()

    assert producer.error is None
    assert producer.sent == len(events)
    assert final.returncode == 0, output
    assert "stopped: consumed" in output
    assert any(done < sent for done, sent in kills), kills  # killed with work in progress
    ids = stored_ids(db)
    assert len(ids) == 20_000
    distinct = list(db[SALES].aggregate([{"$group": {"_id": "$_id"}}, {"$count": "n"}]))
    assert distinct == [{"n": 20_000}]
    assert set(ids) == {e.event_id for e in events}
    # ``consume`` keeps the rollups, exactly, through the kills.
    revenue = sum(round(e.amount * 100) for e in events)
    for rollup in (HOURLY, DAILY):
        assert totals(db, rollup) == (20_000, Decimal(revenue).scaleb(-2)), rollup.collection


def test_consumer_waits_for_mongodb_outage_and_resumes(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, mode="embedded", state_dir=tmp_path / "state")
    events = SaleGenerator(22).events(6000)
    with infra.up(settings) as endpoints:
        uri = endpoints.mongo_uri.get_secret_value()
        ensure_topic(endpoints.kafka_bootstrap, "sales", partitions=3)
        stack = Stack.from_settings(settings, endpoints=endpoints)
        thread = stack.consumer_worker(group_id="outage")
        producer = ThrottledProducer(
            endpoints.kafka_bootstrap, "sales", events, chunk=300, interval=0.5
        )
        thread.start()
        producer.start()
        statuses: list[tuple[StreamState, str | None]] = []
        try:
            wait_for(lambda: thread.stats.stored > 0, timeout=60, what="a first write")
            embedded.stop_database(settings.state_dir, kill=True)
            outage_end = time.monotonic() + 10
            while time.monotonic() < outage_end:
                statuses.append((thread.stats.state, thread.stats.waiting_on))
                time.sleep(0.1)
            during = thread.stats
            during_fr = status_fr(during)
            embedded.restart_database(settings)
            wait_for(lambda: thread.stats.consumed >= len(events), timeout=120, what="every event")
            wait_for(lambda: thread.stats.last_error is None, timeout=60, what="the error cleared")
            recovered = thread.stats
        finally:
            final = thread.stop()
            producer.join(timeout=60)
            stack.close()
        client = mongo_client(uri)
        try:
            ids = stored_ids(client["sales_db"])
        finally:
            client.close()

    assert producer.error is None
    assert (StreamState.WAITING_SINK, "MongoDB") in statuses, statuses[-5:]
    # Short and dated: the wait began once, and the status says for how long.
    assert re.fullmatch(r"waiting_sink: MongoDB unreachable for (\d+) s", during.status)
    assert during.waited_s() >= 3, during.status
    assert re.fullmatch(r"MongoDB injoignable depuis \d+ s, nouvel essai du lot", during_fr)
    assert (during.last_error or "").startswith("MongoDB unreachable: ")
    assert len(during.last_error) <= 160, during.last_error
    assert "Topology" not in during.last_error
    assert recovered.status in ("running", "idle")
    assert "injoignable" not in summary_text(recovered)
    assert during.total_lag > 0
    assert recovered.state in (StreamState.RUNNING, StreamState.IDLE)
    assert final.state is StreamState.STOPPED
    assert final.consumed == len(events)
    assert final.stored + final.duplicates == len(events)
    assert sorted(ids) == sorted(e.event_id for e in events)
