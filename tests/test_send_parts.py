"""The live producer's parts, in memory: its schedule, meter, messages, client, state, worker."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from kafka.partitioner.default import murmur2

from sales_stream.errors import InfraError
from sales_stream.events import InvalidEvent, decode, encode
from sales_stream.produce.delivery import CLOSE_GRACE_S, LIVE_CONFIG, DeliveryTally, Sender
from sales_stream.produce.generator import SaleGenerator, SimulatedClock
from sales_stream.produce.messages import LiveMessages
from sales_stream.produce.run_state import RunState
from sales_stream.produce.send_loop import SendLoop
from sales_stream.produce.send_meter import RATE_WINDOW_S, SendMeter
from sales_stream.produce.send_schedule import MAX_BURST, MAX_LAG_S, SendSchedule


def test_schedule_sends_what_is_due_and_waits_for_the_next() -> None:
    schedule = SendSchedule()
    assert schedule.due(100.0, 10.0) == 1  # the first message at once
    schedule.sent(1)
    assert schedule.due(100.05, 10.0) == 0
    assert abs(schedule.wait(100.05) - 0.05) < 1e-9
    assert schedule.due(100.5, 10.0) == 5  # 0.5 s at 10/s: messages 1 to 5 are due
    schedule.sent(5)
    assert schedule.due(101.0, 20.0) == 1  # a new rate re-anchors


def test_schedule_far_behind_re_anchors_instead_of_bursting() -> None:
    schedule = SendSchedule()
    schedule.due(0.0, 1000.0)
    behind = 10.0  # seconds without sending
    assert int(behind * 1000) > 1000 * MAX_LAG_S + MAX_BURST
    assert schedule.due(behind, 1000.0) == 1


def test_schedule_reset_after_a_pause_starts_afresh() -> None:
    schedule = SendSchedule()
    schedule.due(0.0, 5.0)
    schedule.sent(1)
    schedule.reset()
    assert schedule.due(50.0, 5.0) == 1  # not 250 messages owed for the pause


def test_meter_counts_rates_and_keeps_the_latest_valid_sales() -> None:
    meter = SendMeter()
    events = SaleGenerator(1).events(30)
    meter.begin(0.0)
    for i, event in enumerate(events):
        meter.count(event, bad=i % 10 == 0)
        meter.sample(0.1 * (i + 1))
    assert (meter.sent, meter.valid_sent, meter.bad_sent) == (30, 27, 3)
    assert meter.recent(2) == [events[29], events[28]]
    assert 9.0 <= meter.rate(3.0) <= 11.0  # 10 a second over the last RATE_WINDOW_S
    meter.end(3.0)
    meter.resume(10.0)
    assert meter.active(11.0) == 4.0  # the pause from 3 s to 10 s is not sending time
    fresh = SendMeter()
    fresh.begin(5.0)
    assert fresh.rate(5.0) == 0.0
    fresh.count(events[0], bad=False)
    assert fresh.rate(5.06) == 1 / RATE_WINDOW_S  # one sale 60 ms in is not 17 sales/s


# --- what is sent, the client, the shared state and the worker, on an in-memory client ---

BOOTSTRAP = "127.0.0.1:1"
NOW = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)
EVENT_ID = "00000000-0000-4000-8000-000000000001"
CONFIG = {**LIVE_CONFIG, "bootstrap_servers": BOOTSTRAP}


class _Future:
    """A delivery settled at once: acknowledged, or failed with ``error``."""

    def __init__(self, error: KafkaError | None) -> None:
        self._error = error

    def add_callback(self, callback: Callable[[object], None]) -> None:
        if self._error is None:
            callback(object())

    def add_errback(self, errback: Callable[[KafkaError], None]) -> None:
        if self._error is not None:
            errback(self._error)


class MemoryClient:
    """Stands for a `KafkaProducer` on a 3-partition topic: keeps the records, settles them."""

    def __init__(self, *, refuse: KafkaError | None = None) -> None:
        self.config: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.refuse = refuse  # raised by send: the record is not even queued
        self.reject: KafkaError | None = None  # the broker fails the record
        self.closed = False

    def __call__(self, **config: Any) -> MemoryClient:
        """Be the client `Sender` builds from ``config``."""
        self.config = config
        return self

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(self, topic: str, **record: Any) -> _Future:
        if self.refuse is not None:
            raise self.refuse
        self.records.append({"topic": topic, **record})
        return _Future(self.reject)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.closed = True


def _unreachable(**config: Any) -> MemoryClient:
    raise KafkaConnectionError("connection refused")


def test_messages_mix_a_seeded_share_of_malformed_values_and_hold_a_simulated_clock() -> None:
    def draws(seed: int) -> list[tuple[bytes | None, bool]]:
        generator = SaleGenerator(seed, clock=lambda: NOW, ids=lambda: EVENT_ID)
        messages = LiveMessages(generator, bad_ratio=0.3, seed=seed)
        return [(value, bad) for _, value, bad in (messages.draw() for _ in range(400))]

    drawn = draws(3)
    assert drawn == draws(3)
    assert 80 <= sum(bad for _, bad in drawn) <= 160
    assert all(isinstance(decode(value), InvalidEvent) == bad for value, bad in drawn)
    clock = SimulatedClock(datetime.now(UTC) - timedelta(hours=1))
    messages = LiveMessages(SaleGenerator(1, clock=clock), bad_ratio=0.0, seed=1)
    assert messages.clock is clock
    messages.hold_clock(held=True)
    assert clock.paused
    messages.hold_clock(held=False)
    assert not clock.paused
    with pytest.raises(ValueError, match="bad_ratio"):
        messages.bad_ratio = 1.5


def test_sender_keys_by_region_on_kafka_partitions_and_the_tally_counts_deliveries() -> None:
    client = MemoryClient()
    sender = Sender(CONFIG, "sales", client=client)
    tally = DeliveryTally(BOOTSTRAP)
    events = SaleGenerator(2).events(20)
    for event in events:
        tally.track(sender.send(event, encode(event), timestamp_ms=7))
    client.reject = KafkaTimeoutError("expired")
    tally.track(sender.send(events[0], None))
    assert client.config == CONFIG
    for record, event in zip(client.records, events, strict=False):
        key = event.region.encode()
        assert (record["topic"], record["key"]) == ("sales", key)
        assert record["partition"] == (murmur2(key) & 0x7FFFFFFF) % 3
        assert record["timestamp_ms"] == 7
    expired = f"Kafka unreachable at {BOOTSTRAP}: KafkaTimeoutError: expired"
    assert tally.snapshot() == (20, 1, expired)
    assert sender.flush_timeout_s == LIVE_CONFIG["delivery_timeout_ms"] / 1000 + CLOSE_GRACE_S
    with pytest.raises(InfraError, match=f"Kafka unreachable at {re.escape(BOOTSTRAP)}"):
        Sender(CONFIG, "sales", client=_unreachable)


def test_run_state_times_the_sending_and_holds_the_clock_between_transitions() -> None:
    holds: list[bool] = []

    def hold_clock(*, held: bool) -> None:
        holds.append(held)

    run = RunState(rate=10.0, max_events=3, tally=DeliveryTally("b"), hold_clock=hold_clock)
    run.begin(0.0)
    assert (run.state, run.orders(0.0)) == ("running", (False, 10.0, 3))
    assert run.pause(4.0)
    assert not run.pause(5.0)
    assert (run.state, run.orders(5.0)) == ("paused", (True, 10.0, 3))
    assert run.resume(10.0)
    assert not run.resume(11.0)
    assert run.meter.active(12.0) == 6.0  # paused from 4 s to 10 s
    for event in SaleGenerator(1).events(3):
        run.meter.count(event, bad=False)
    assert run.orders(13.0) is None  # max_events sent: the run ends by itself
    assert (run.state, run.meter.active(20.0)) == ("stopped", 7.0)
    run.begin(30.0)
    run.stop(31.0)
    assert (run.state, run.orders(31.0)) == ("stopped", None)
    assert holds == [False, True, False, False, True]
    run.begin(40.0)
    run.fail("Kafka unreachable", 41.0)
    assert (run.state, run.error) == ("failed", "Kafka unreachable")
    assert run.done.is_set()
    assert run.paused_ack.is_set()  # a pause waiting for the worker returns


def _run(client: Callable[..., MemoryClient], *, max_events: int) -> RunState:
    """A run of ``max_events`` messages at a rate no machine reaches, to its end."""
    messages = LiveMessages(SaleGenerator(4), bad_ratio=0.2, seed=4)
    run = RunState(
        rate=1e6,
        max_events=max_events,
        tally=DeliveryTally(BOOTSTRAP),
        hold_clock=messages.hold_clock,
    )
    run.begin(time.monotonic())
    SendLoop(run, messages, config=CONFIG, topic="sales", client=client)()
    return run


def test_send_loop_sends_max_events_then_closes_the_client() -> None:
    client = MemoryClient()
    run = _run(client, max_events=MAX_BURST + 200)  # more than one burst
    assert len(client.records) == run.meter.sent == MAX_BURST + 200
    assert client.closed
    assert run.tally.snapshot() == (MAX_BURST + 200, 0, None)
    assert run.meter.bad_sent > 0
    assert run.state == "stopped"
    assert run.done.is_set()


def test_send_loop_counts_refused_records_as_failed() -> None:
    run = _run(MemoryClient(refuse=KafkaTimeoutError("no metadata")), max_events=5)
    assert run.meter.sent == 5
    assert run.tally.snapshot()[:2] == (0, 5)
    assert run.state == "stopped"


def test_send_loop_fails_the_run_when_the_broker_is_unreachable() -> None:
    run = _run(_unreachable, max_events=5)
    assert run.state == "failed"
    assert run.done.is_set()
    assert run.error is not None
    assert run.error.startswith(f"Kafka unreachable at {BOOTSTRAP}")
