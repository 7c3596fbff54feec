"""The live producer's parts, in memory: its schedule and its meter."""

from __future__ import annotations

from sales_stream.produce.generator import SaleGenerator
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
