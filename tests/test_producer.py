"""ProducerThread, backfill, the producer panel and ``produce`` on the real embedded broker."""

import dataclasses
import math
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.partitioner.default import murmur2

from sales_stream import infra
from sales_stream.clients import consumer_config, ensure_topic
from sales_stream.config import Settings
from sales_stream.errors import InfraError
from sales_stream.events import InvalidEvent, SaleEvent, decode
from sales_stream.infra.ports import free_port
from sales_stream.infra.process import wait_until
from sales_stream.produce.backfill import backfill, backfill_seed
from sales_stream.produce.generator import SaleGenerator, SimulatedClock
from sales_stream.produce.producer import ProducerThread
from sales_stream.produce.stats import ProducerStats
from sales_stream.ui.format import parse_percent
from sales_stream.ui.producer_panel import producer_panel, sparkline, summary_text

NOW = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)
#: Short client timeouts so that a dead broker shows up as failures within a few seconds.
FAST_FAIL = {"request_timeout_ms": 1000, "delivery_timeout_ms": 2000, "bootstrap_timeout_ms": 1000}


def counting_ids() -> Callable[[], str]:
    """Deterministic UUID4-shaped ids, so a test can predict a seeded run exactly."""
    numbers = iter(range(1, 1 << 60))
    return lambda: str(uuid.UUID(int=next(numbers), version=4))


def fixed_clock() -> datetime:
    return NOW


def read_back(
    bootstrap: str, topics: list[str], group_id: str, expected: int, *, timeout: float = 30.0
) -> list[ConsumerRecord]:
    """Consume ``topics`` from the start until ``expected`` records, then check for extras."""
    consumer = KafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=group_id, **consumer_config()
    )
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def by_partition(records: list[ConsumerRecord]) -> dict[tuple[str, int], list[bytes | None]]:
    values: dict[tuple[str, int], list[bytes | None]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        values[record.topic, record.partition].append(record.value)
    return values


def test_events_read_back_valid_keyed_by_region_in_order(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    thread = ProducerThread(
        endpoints.kafka_bootstrap,
        topic,
        rate=2000,
        max_events=1000,
        generator=SaleGenerator(5, clock=fixed_clock, ids=counting_ids()),
    )
    thread.start()
    assert thread.wait(timeout=30)
    stats = thread.stop()
    assert (stats.state, stats.sent, stats.acked, stats.failed) == ("stopped", 1000, 1000, 0)
    assert (stats.valid_sent, stats.bad_sent, stats.last_error) == (1000, 0, None)

    records = read_back(endpoints.kafka_bootstrap, [topic], group_id, 1000)
    decoded = [decode(r.value) for r in records]
    assert len(records) == 1000
    assert all(isinstance(e, SaleEvent) for e in decoded)
    assert all(r.key == e.region.encode() for r, e in zip(records, decoded, strict=True))
    # the partition any Kafka client's default partitioner gives the key
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3 for r in records)
    expected = SaleGenerator(5, clock=fixed_clock, ids=counting_ids()).events(1000)
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(expected, key=lambda e: e.event_id)
    # one region -> one partition, in production order
    position = {e.event_id: i for i, e in enumerate(expected)}
    partitions_of_region: dict[str, set[int]] = defaultdict(set)
    for partition, values in by_partition(records).items():
        order = [position[decode(v).event_id] for v in values]
        assert order == sorted(order)
        events = [decode(v) for v in values]
        for e in events:
            partitions_of_region[e.region].add(partition[1])
    assert all(len(p) == 1 for p in partitions_of_region.values())
    assert [e.event_id for e in thread.recent(3)] == [e.event_id for e in expected[:-4:-1]]


def test_same_seed_same_messages(endpoints: infra.Endpoints, topic: str, group_id: str) -> None:
    topics = [topic, f"{topic}_b", f"{topic}_c"]
    for name in topics[1:]:
        ensure_topic(endpoints.kafka_bootstrap, name, partitions=3)
    threads = [
        ProducerThread(
            endpoints.kafka_bootstrap,
            name,
            rate=5000,
            bad_ratio=0.3,
            seed=seed,
            max_events=300,
            generator=SaleGenerator(seed, clock=fixed_clock, ids=counting_ids()),
        )
        for name, seed in zip(topics, (11, 11, 12), strict=True)
    ]
    for thread in threads:
        thread.start()
    assert all(thread.wait(timeout=30) for thread in threads)
    assert all(thread.stop().acked == 300 for thread in threads)

    values = by_partition(read_back(endpoints.kafka_bootstrap, topics, group_id, 900))
    first, second, other = ({p: values[name, p] for p in range(3)} for name in topics)
    assert sum(len(v) for v in first.values()) == 300
    assert first == second
    assert first != other
    assert threads[0].stats.bad_sent == threads[1].stats.bad_sent


def test_pause_stops_sending_and_resume_restarts(endpoints: infra.Endpoints, topic: str) -> None:
    thread = ProducerThread(endpoints.kafka_bootstrap, topic, rate=500, seed=1)
    wall_start = time.monotonic()
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= 50, timeout=15)
    thread.pause()
    paused = thread.stats
    assert paused.state == "paused"
    assert paused.current_rate == 0.0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # the counter must stay flat for a whole second
        assert thread.stats.sent == paused.sent
        time.sleep(0.05)
    assert wait_until(lambda: thread.stats.acked == paused.sent, timeout=10)

    thread.resume()
    assert thread.stats.state == "running"
    assert wait_until(lambda: thread.stats.sent > paused.sent + 20, timeout=15)
    stopped = thread.stop()
    assert stopped.state == "stopped"
    assert stopped.acked == stopped.sent
    assert stopped.elapsed_s <= time.monotonic() - wall_start - 1.0  # the pause is not counted


def test_restart_after_stop_keeps_counting(endpoints: infra.Endpoints, topic: str) -> None:
    thread = ProducerThread(endpoints.kafka_bootstrap, topic, rate=1000, seed=2)
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= 20, timeout=15)
    first = thread.stop()
    assert not thread.is_alive()
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= first.sent + 20, timeout=15)
    second = thread.stop()
    assert second.started_at == first.started_at
    assert second.acked == second.sent > first.sent


def _sent_events(bootstrap: str, topic: str, count: int) -> list[tuple[datetime, SaleEvent]]:
    """Each valid sale of ``topic`` with its Kafka timestamp: when the producer sent it."""
    records = read_back(bootstrap, [topic], f"read-{uuid.uuid4()}", count)
    assert len(records) == count
    pairs = []
    for record in records:
        event = decode(record.value)
        assert isinstance(event, SaleEvent)
        pairs.append((datetime.fromtimestamp(record.timestamp / 1000, UTC), event))
    return pairs


@pytest.mark.parametrize("clock", ["wall", "catch-up"])
def test_no_live_sale_is_dated_after_it_is_sent(
    endpoints: infra.Endpoints, topic: str, clock: str
) -> None:
    # the catch-up clock starts 1 s ago at x600: without its hold at now, it would date the
    # sales up to minutes ahead within the second the run lasts
    generator = SaleGenerator(
        3, clock=SimulatedClock(datetime.now(UTC) - timedelta(seconds=1), speedup=600)
    )
    thread = ProducerThread(
        endpoints.kafka_bootstrap,
        topic,
        rate=500,
        max_events=500,
        generator=generator if clock == "catch-up" else None,
    )
    thread.start()
    assert thread.wait(timeout=30)
    assert thread.stop().acked == 500
    for sent_at, event in _sent_events(endpoints.kafka_bootstrap, topic, 500):
        assert event.ts <= sent_at, f"sale dated {event.ts}, sent at {sent_at}"


def test_a_restarted_producer_continues_at_now(endpoints: infra.Endpoints, topic: str) -> None:
    thread = ProducerThread(endpoints.kafka_bootstrap, topic, rate=200, seed=6)
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= 20, timeout=15)
    first = thread.stop()  # its last sale was sent (and dated) before it returned
    restarted_at = datetime.now(UTC)
    restarted_at -= timedelta(microseconds=restarted_at.microsecond % 1000)  # sales are in ms
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= first.sent + 20, timeout=15)
    second = thread.stop()
    pairs = _sent_events(endpoints.kafka_bootstrap, topic, second.sent)
    later = [(sent_at, event) for sent_at, event in pairs if event.ts >= restarted_at]
    assert len(later) == second.sent - first.sent  # the second run is dated from its restart
    assert all(event.ts <= sent_at for sent_at, event in pairs)


def test_a_paused_producer_stops_its_simulated_clock(
    endpoints: infra.Endpoints, topic: str
) -> None:
    clock = SimulatedClock(datetime.now(UTC) - timedelta(hours=1), speedup=60)
    thread = ProducerThread(
        endpoints.kafka_bootstrap, topic, rate=100, generator=SaleGenerator(4, clock=clock)
    )
    thread.start()
    assert wait_until(lambda: thread.stats.sent >= 10, timeout=15)
    thread.pause()
    assert clock.paused
    held = clock()
    time.sleep(0.5)  # real time passes (nothing to wait for): the paused clock must not follow
    assert clock() == held
    thread.resume()
    assert wait_until(lambda: clock() > held, timeout=5)
    thread.stop()
    assert clock.paused  # a stopped producer's clock does not run on either


@pytest.mark.parametrize("rate", [1.0, 5000.0])
def test_stop_joins_within_two_seconds(endpoints: infra.Endpoints, topic: str, rate: float) -> None:
    thread = ProducerThread(endpoints.kafka_bootstrap, topic, rate=rate, bad_ratio=0.1)
    thread.start()
    assert wait_until(lambda: thread.stats.acked >= 1, timeout=15)
    start = time.monotonic()
    stats = thread.stop()
    assert time.monotonic() - start < 2.5
    assert not thread.is_alive()
    assert thread.wait(timeout=0)
    assert stats.state == "stopped"
    assert stats.acked == stats.sent


def test_bad_ratio_yields_about_that_share_of_rejected_messages(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    n, ratio = 2000, 0.2
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    thread = ProducerThread(
        endpoints.kafka_bootstrap, topic, rate=5000, bad_ratio=ratio, seed=21, max_events=n
    )
    thread.start()
    assert thread.wait(timeout=60)
    stats = thread.stop()
    after = datetime.now(UTC)
    assert (stats.sent, stats.acked, stats.failed) == (n, n, 0)

    decoded = [decode(r.value) for r in read_back(endpoints.kafka_bootstrap, [topic], group_id, n)]
    assert len(decoded) == n
    invalid = [d for d in decoded if isinstance(d, InvalidEvent)]
    valid = [d for d in decoded if isinstance(d, SaleEvent)]
    sigma = math.sqrt(n * ratio * (1 - ratio))
    assert abs(len(invalid) - n * ratio) < 5 * sigma
    assert (len(invalid), len(valid)) == (stats.bad_sent, stats.valid_sent)
    assert len(Counter(d.reason for d in invalid)) >= 8
    assert all(before <= e.ts <= after for e in valid)  # live events are stamped now, in UTC


def test_unreachable_broker_fails_with_a_clear_message() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    thread = ProducerThread(bootstrap, "sales", rate=100, producer_config=FAST_FAIL)
    thread.start()
    assert thread.wait(timeout=15)
    stats = thread.stats
    assert stats.state == "failed"
    assert stats.last_error is not None
    assert stats.last_error.startswith(f"Kafka unreachable at {bootstrap}: ")
    assert thread.stop().state == "failed"
    assert not thread.is_alive()


@pytest.mark.slow
def test_broker_crash_mid_run_counts_failures(tmp_path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")
    bootstrap = infra.up(settings).kafka_bootstrap
    thread = ProducerThread(bootstrap, "sales", rate=200, producer_config=FAST_FAIL)
    try:
        ensure_topic(bootstrap, "sales", partitions=3)
        thread.start()
        assert wait_until(lambda: thread.stats.acked >= 20, timeout=15)
        infra.embedded.hold_server(settings.state_dir, "kafka", kill=True)  # and keep it down
        assert wait_until(lambda: thread.stats.failed > 0, timeout=15)
        stats = thread.stats
        assert stats.state == "running"
        assert stats.last_error is not None
        assert stats.last_error.startswith(f"Kafka unreachable at {bootstrap}: ")
        start = time.monotonic()
        assert thread.stop().state == "stopped"
        assert time.monotonic() - start < 2.5
    finally:
        thread.stop()
        infra.down(settings)
    assert wait_until(lambda: thread.stats.in_flight == 0, timeout=15)
    assert wait_until(lambda: not thread.is_alive(), timeout=5)
    final = thread.stats
    assert final.acked >= 20
    assert final.acked + final.failed == final.sent


def test_backfill_sends_the_seeded_history(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    stats = backfill(endpoints.kafka_bootstrap, topic, days=2, events_per_day=400, seed=4, end=NOW)
    expected = list(SaleGenerator(backfill_seed(4)).backfill(2, end=NOW, events_per_day=400))
    n = len(expected)
    without_id = ("event_id",)
    assert (stats.state, stats.sent, stats.acked, stats.failed) == ("stopped", n, n, 0)
    assert stats.target_rate == math.inf
    records = read_back(endpoints.kafka_bootstrap, [topic], group_id, len(expected))
    assert len(records) == len(expected)
    decoded = {decode(r.value): r.timestamp for r in records}

    def content(e: SaleEvent) -> tuple[object, ...]:
        return tuple(v for k, v in sorted(e.to_dict().items()) if k not in without_id)

    assert sorted(map(content, decoded)) == sorted(map(content, expected))
    assert all(ts == round(e.ts.timestamp() * 1000) for e, ts in decoded.items())
    assert all(NOW - timedelta(days=2) <= e.ts < NOW for e in decoded)
    # a seed reproduces the content, never the identity: no id is ever sent twice
    assert {e.event_id for e in decoded}.isdisjoint(e.event_id for e in expected)


def test_two_runs_with_one_seed_send_new_sales(
    endpoints: infra.Endpoints, topic: str, group_id: str
) -> None:
    threads = [
        ProducerThread(endpoints.kafka_bootstrap, topic, rate=5000, seed=9, max_events=200)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
        assert thread.wait(timeout=30)
        assert thread.stop().acked == 200
    ids = [
        decode(r.value).event_id
        for r in read_back(endpoints.kafka_bootstrap, [topic], group_id, 400)
    ]
    assert len(ids) == len(set(ids)) == 400


def test_backfill_unreachable_broker_raises() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    with pytest.raises(InfraError, match=f"^Kafka unreachable at {bootstrap}: "):
        backfill(bootstrap, "sales", days=1, producer_config=FAST_FAIL)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("rate", 0, "rate must be"),
        ("rate", -5.0, "rate must be"),
        ("rate", math.inf, "rate must be"),
        ("rate", math.nan, "rate must be"),
        ("bad_ratio", 1.5, "bad_ratio must be"),
        ("bad_ratio", -0.1, "bad_ratio must be"),
        ("max_events", 0, "max_events must be"),
    ],
)
def test_invalid_options_are_rejected(option: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProducerThread("127.0.0.1:1", "sales", **{option: value})


def test_rate_and_bad_ratio_setters_validate() -> None:
    thread = ProducerThread("127.0.0.1:1", "sales")
    thread.rate = 250
    thread.bad_ratio = 0.5
    assert (thread.rate, thread.bad_ratio) == (250.0, 0.5)
    with pytest.raises(ValueError, match="rate must be"):
        thread.rate = 0
    with pytest.raises(ValueError, match="bad_ratio must be"):
        thread.bad_ratio = 2
    with pytest.raises(ValueError, match="n must be"):
        thread.recent(-1)
    assert thread.stats.state == "idle"
    assert thread.recent() == []


def test_panel_controls_the_thread(endpoints: infra.Endpoints, topic: str) -> None:
    thread = ProducerThread(endpoints.kafka_bootstrap, topic, rate=200, seed=8)
    panel = producer_panel(thread, refresh_s=0.1)
    try:
        assert panel.refreshing
        assert "prêt" in panel.counters.value
        assert panel.pause_button.disabled
        assert panel.stop_button.disabled

        panel.start_button.click()
        assert thread.stats.state == "running"
        assert panel.start_button.disabled
        # the background refresher updates the counters and the events table by itself
        assert wait_until(lambda: "<td" in panel.events.value, timeout=15)
        nothing_sent = "Envoyés</small><br><b>0<"
        assert wait_until(lambda: nothing_sent not in panel.counters.value, timeout=15)

        panel.rate_slider.value = 1000.0
        panel.bad_box.value = "25 %"
        assert (thread.rate, thread.bad_ratio) == (1000.0, 0.25)
        thread.rate = 1.6  # set in code: the slider follows, and reads 1.6, not 2
        assert wait_until(lambda: panel.rate_slider.value == 1.6, timeout=5)
        assert panel.rate_slider.readout_format == ".3r"
        thread.rate = 1000.0
        panel.bad_box.value = "150"
        assert thread.bad_ratio == 0.25  # rejected with a message, the ratio is kept
        assert "entre 0 et 100" in panel.counters.value
        panel.bad_box.value = "25"
        assert "entre 0 et 100" not in panel.counters.value
        assert "Horloge réelle" in panel.clock.value

        panel.pause_button.click()
        assert thread.stats.state == "paused"
        assert panel.pause_button.description == "Reprendre"
        assert "en pause" in panel.counters.value
        panel.pause_button.click()
        assert thread.stats.state == "running"
        assert panel.pause_button.description == "Pause"
        assert wait_until(lambda: thread.stats.bad_sent > 0, timeout=15)

        panel.stop_button.click()
        stats = thread.stats
        assert stats.state == "stopped"
        assert "arrêté" in panel.counters.value
        assert stats.acked == stats.sent > 0
    finally:
        thread.stop()
        panel.close()
    assert not panel.refreshing


@pytest.mark.parametrize(
    ("text", "ratio"),
    [("5", 0.05), ("5%", 0.05), ("5 %", 0.05), ("50", 0.5), ("2,5", 0.025), ("0,05", 0.0005)],
)
def test_malformed_box_reads_french_percentages(text: str, ratio: float) -> None:
    assert parse_percent(text) == pytest.approx(ratio)


@pytest.mark.parametrize("text", ["abc", "-1", "101 %", ""])
def test_malformed_box_rejects_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="pourcentage"):
        parse_percent(text)


def test_summary_text_in_french() -> None:
    stats = ProducerStats(
        state="stopped",
        sent=12_345,
        acked=12_000,
        failed=345,
        valid_sent=11_000,
        bad_sent=1_345,
        target_rate=1000.0,
        current_rate=0.0,
        last_error="Kafka unreachable at 127.0.0.1:9092: KafkaTimeoutError: Expiring 5 record(s)",
        started_at=datetime(2024, 5, 15, 10, 30, 5, tzinfo=UTC),
        elapsed_s=12.5,
    )
    text = summary_text(stats)
    assert text.splitlines() == [
        "Producteur arrêté (démarré le 15/05/2024 à 10:30:05 UTC).",
        "Envoyés : 12\u202f345 (valides : 11\u202f000, malformés : 1\u202f345) · "
        "acquittés : 12\u202f000 · en échec : 345 · en attente : 0.",
        "Débit moyen : 987,6 év./s sur 12,5 s (cible : 1\u202f000 év./s).",
        "Dernière erreur : Kafka unreachable at 127.0.0.1:9092: KafkaTimeoutError: "
        "Expiring 5 record(s)",
    ]
    short = summary_text(dataclasses.replace(stats, elapsed_s=0.04))
    assert "sur 0,0 s" not in short
    assert "pas encore mesurable" in short
    idle = ProducerThread("127.0.0.1:1", "sales").stats
    assert summary_text(idle).startswith("Producteur prêt (pas encore démarré).")
    assert sparkline([0.0, 50.0, 100.0]) == "▁▅█"
    assert sparkline([0.0, 0.0]) == "▁▁"


def test_cli_produce_end_to_end(
    settings: Settings, endpoints: infra.Endpoints, unique_name: str, group_id: str, tmp_path
) -> None:
    topic = f"cli_{unique_name}"
    env = {
        **os.environ,
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": topic,
    }
    argv = [sys.executable, "-m", "sales_stream", "produce", "--count", "300", "--rate", "300"]
    argv += ["--seed", "3", "--bad-ratio", "0.1", "--backfill-days", "1", "--events-per-day", "200"]
    result = subprocess.run(
        argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"producing to topic {topic!r} at {endpoints.kafka_bootstrap}" in lines
    assert not any(line.startswith("note:") for line in lines)  # reused the running servers
    live = next(line for line in lines if line.startswith("live: sent"))
    assert live.startswith("live: sent 300 (valid ")
    assert "acked 300, failed 0, achieved " in live
    summary = next(line for line in lines if line.startswith("backfill: sent"))
    sent_backfill = int(summary.split()[2])
    assert sent_backfill > 0
    assert f"acked {sent_backfill}, failed 0" in summary

    records = read_back(endpoints.kafka_bootstrap, [topic], group_id, sent_backfill + 300)
    assert len(records) == sent_backfill + 300


def test_cli_produce_rejects_bad_arguments(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sales_stream", "produce", "--bad-ratio", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "argument --bad-ratio: must be in [0, 1], got 2" in result.stderr
