"""The Parquet data lake on the real embedded broker: exactly-once files, restarts, compaction."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from kafka import KafkaProducer

from sales_stream import infra
from sales_stream.app import EMBEDDED_LAKE, kafka_runtime, lake_url, on_embedded_store
from sales_stream.cli import main
from sales_stream.clients import ensure_topic
from sales_stream.config import Settings
from sales_stream.deadletters import MAX_KEPT_BYTES
from sales_stream.events import SaleEvent, encode
from sales_stream.lake.compaction import compact, compact_partition
from sales_stream.lake.layout import list_parts, open_lake
from sales_stream.lake.read import lake_files, read_dead_letters, read_lake, revenue_by_region_lake
from sales_stream.lake.tables import TS_TYPE
from sales_stream.lake.tree import lake_stats, partition_tree
from sales_stream.produce.badevents import EXPECTED_REASON, BadEventKind, make_bad_payload
from sales_stream.produce.generator import SaleGenerator
from sales_stream.reference import REGION_BY_NAME
from sales_stream.sinks.lake import LakeSink
from sales_stream.stream import StreamRuntime, StreamState, StreamWorker

ACCENTED = ("Provence-Alpes-Côte d'Azur", "Île-de-France")
WINDOW_END = datetime(2024, 6, 3, tzinfo=UTC)  # events over 2024-05-31 .. 2024-06-02 (closed)
IDLE_S = 2.0


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> list:
    """Send ``(key, value)`` messages; return their record metadata (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    futures = [producer.send(topic, key=key, value=value) for key, value in messages]
    producer.flush()
    metadata = [f.get(timeout=30) for f in futures]
    producer.close()
    return metadata


def as_messages(events: list[SaleEvent]) -> list[tuple[bytes | None, bytes | None]]:
    return [(e.region.encode(), encode(e)) for e in events]


def backfill(seed: int, events_per_day: int, *, end: datetime = WINDOW_END) -> list[SaleEvent]:
    return list(SaleGenerator(seed).backfill(3, end=end, events_per_day=events_per_day))


def lake_events(lake: str | Path) -> list[SaleEvent]:
    """The lake's rows rebuilt as events, in event_id order."""
    rows = read_lake(lake).to_dict("records")
    events = [SaleEvent(**{**row, "ts": row["ts"].to_pydatetime()}) for row in rows]
    return sorted(events, key=lambda e: e.event_id)


def by_id(events: list[SaleEvent]) -> list[SaleEvent]:
    return sorted(events, key=lambda e: e.event_id)


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def lake_runtime(
    bootstrap: str,
    topic: str,
    lake: str | Path,
    *,
    group_id: str,
    flush_events: int = 10_000,
    flush_seconds: float = 30.0,
) -> StreamRuntime:
    return kafka_runtime(
        bootstrap,
        topic,
        group_id,
        [LakeSink(lake)],
        name="lake",
        max_batch=flush_events,
        flush_interval_s=flush_seconds,
    )


def lake_thread(*args: object, **kwargs: object) -> StreamWorker:
    return StreamWorker(lake_runtime(*args, **kwargs))  # type: ignore[arg-type]


class Source:
    """A topic holding valid events and malformed messages, and a lake written from it."""

    def __init__(self, bootstrap: str, topic: str, lake: Path) -> None:
        self.bootstrap, self.topic, self.lake = bootstrap, topic, lake
        self.events = backfill(11, 600)
        rng = random.Random(5)
        kinds = [kind for kind in BadEventKind for _ in range(2)]
        messages: list[tuple[bytes | None, bytes | None, BadEventKind | None]]
        messages = [(e.region.encode(), encode(e), None) for e in self.events]
        for i, kind in enumerate(kinds):
            payload, _ = make_bad_payload(rng, base=self.events[i], kind=kind)
            messages.insert(rng.randrange(len(messages)), (b"Bretagne", payload, kind))
        metadata = produce(bootstrap, topic, [(key, value) for key, value, _ in messages])
        # (partition, offset) -> (payload, kind) of each malformed message
        self.bad = {
            (m.partition, m.offset): (value, kind)
            for m, (_, value, kind) in zip(metadata, messages, strict=True)
            if kind is not None
        }
        self.stats = lake_runtime(
            bootstrap, topic, lake, group_id=f"g_{topic}", flush_events=400
        ).run(until_idle=IDLE_S)


@pytest.fixture(scope="module")
def source(endpoints: infra.Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Source:
    topic = f"t_lake_{uuid.uuid4().hex[:8]}"
    ensure_topic(endpoints.kafka_bootstrap, topic, partitions=3)
    return Source(endpoints.kafka_bootstrap, topic, tmp_path_factory.mktemp("lake") / "lake")


@pytest.fixture
def memory_lake() -> Iterator[str]:
    path = f"/lake-{uuid.uuid4().hex[:8]}"
    yield f"memory://{path}"
    fs = fsspec.filesystem("memory")
    if fs.exists(path):
        fs.rm(path, recursive=True)


# --- one run: contents, layout, schema --------------------------------------------------------


def test_every_event_lands_once_with_its_values(source: Source) -> None:
    assert source.stats.stored == len(source.events)
    assert source.stats.dead_lettered == len(source.bad)
    assert source.stats.duplicates == 0
    assert lake_events(source.lake) == by_id(source.events)
    frame = read_lake(source.lake)
    assert frame["amount"].sum() == pytest.approx(sum(e.amount for e in source.events))
    assert frame["quantity"].sum() == sum(e.quantity for e in source.events)
    assert list(frame.columns) == list(SaleEvent.__dataclass_fields__)
    assert str(frame["ts"].dtype) == "datetime64[ms, UTC]"


def test_files_are_hive_partitioned_and_named_by_offsets(source: Source) -> None:
    lake = open_lake(source.lake)
    parts = list_parts(lake, "sales")
    # Plain pyarrow hive discovery gives back the exact region names, accents and apostrophes.
    plain = ds.dataset(str(source.lake / "sales"), partitioning="hive", format="parquet")
    table = plain.to_table(columns=["date", "region"]).to_pydict()
    assert Counter(zip(table["date"], table["region"], strict=True)) == Counter(
        (str(e.ts.date()), e.region) for e in source.events
    )
    assert set(ACCENTED) <= set(pd.read_parquet(source.lake / "sales")["region"].astype(str))
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for part in parts:
        assert part.topic == source.topic
        assert part.first <= part.last
        spans.setdefault((part.directory, part.partition), []).append((part.first, part.last))
    for ranges in spans.values():  # never twice the same record in a directory
        ranges.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
    assert not [p for p in source.lake.rglob("*") if p.name.startswith(".")]


def test_arrow_schema_and_compression(source: Source) -> None:
    part = list_parts(open_lake(source.lake), "sales")[0]
    parquet = pq.ParquetFile(source.lake / part.relpath)
    schema = parquet.schema_arrow
    assert schema.field("ts").type == TS_TYPE
    assert pa.types.is_dictionary(schema.field("product").type)
    assert pa.types.is_dictionary(schema.field("channel").type)
    assert schema.field("amount").type == pa.float64()
    assert "region" not in schema.names
    assert "date" not in schema.names
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"


def test_dead_letters_keep_reason_raw_and_position(source: Source) -> None:
    letters = read_dead_letters(source.lake)
    assert len(letters) == len(source.bad)
    for row in letters.to_dict("records"):
        payload, kind = source.bad[(row["partition"], row["offset"])]
        assert row["topic"] == source.topic
        assert row["reason"] == EXPECTED_REASON[kind].value
        assert row["detail"]
        assert row["raw"] == (None if payload is None else payload[:MAX_KEPT_BYTES])
        assert row["raw_size"] == (0 if payload is None else len(payload))
        assert row["key"] == "Bretagne"
    assert lake_stats(source.lake)["dead_letters"] == len(source.bad)


def test_revenue_by_region_matches_the_events(source: Source) -> None:
    frame = revenue_by_region_lake(source.lake)
    expected = (
        pd.DataFrame([e.to_dict() for e in source.events])
        .groupby("region")
        .agg(revenue=("amount", "sum"), sales=("amount", "size"), quantity=("quantity", "sum"))
    )
    assert list(frame.columns) == ["region", "revenue", "sales", "quantity", "lat", "lon"]
    assert frame["revenue"].is_monotonic_decreasing
    got = frame.set_index("region")
    assert set(got.index) == set(expected.index)
    for region, row in expected.iterrows():
        assert got.loc[region, "sales"] == row["sales"]
        assert got.loc[region, "quantity"] == row["quantity"]
        assert got.loc[region, "revenue"] == pytest.approx(row["revenue"], abs=0.005)
        assert got.loc[region, "lat"] == REGION_BY_NAME[region].lat
    only = revenue_by_region_lake(source.lake, regions=["Corse"], start=date(2024, 6, 2))
    assert only["region"].tolist() == ["Corse"]
    assert only["sales"].tolist() == [
        sum(1 for e in source.events if e.region == "Corse" and e.ts.date() == date(2024, 6, 2))
    ]


def test_partition_pruning_reads_only_matching_files(source: Source, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source.lake, lake)
    start, end, regions = date(2024, 6, 1), date(2024, 6, 2), ["Île-de-France", "Bretagne"]
    selected = lake_files(lake, start=start, end=end, regions=regions)
    assert {p.directory for p in selected} == {
        "sales/date=2024-06-01/region=%C3%8Ele-de-France",
        "sales/date=2024-06-01/region=Bretagne",
    }
    keep = {p.relpath for p in selected}
    for part in list_parts(open_lake(lake), "sales"):  # any read of another file now fails
        if part.relpath not in keep:
            (lake / part.relpath).write_bytes(b"not parquet")
    frame = read_lake(lake, start=start, end=end, regions=regions)
    expected = [
        e
        for e in source.events
        if e.region in regions
        and datetime(2024, 6, 1, tzinfo=UTC) <= e.ts < WINDOW_END - timedelta(1)
    ]
    assert sorted(frame["event_id"]) == sorted(e.event_id for e in expected)
    hour = datetime(2024, 6, 1, 12, tzinfo=UTC)
    narrow = read_lake(lake, start=hour, end=hour + timedelta(hours=1), regions=regions)
    assert sorted(narrow["event_id"]) == sorted(
        e.event_id for e in expected if hour <= e.ts < hour + timedelta(hours=1)
    )
    with pytest.raises(pa.ArrowInvalid):
        read_lake(lake)


def test_stats_and_partition_tree(source: Source) -> None:
    stats = lake_stats(source.lake)
    assert stats["rows"] == len(source.events)
    assert stats["partitions"] == len({(e.ts.date(), e.region) for e in source.events})
    assert stats["files"] == len(list_parts(open_lake(source.lake), "sales"))
    assert stats["bytes"] > 0
    tree = partition_tree(source.lake, max_lines=12)
    lines = tree.splitlines()
    assert len(lines) == 12
    assert lines[0].startswith(f"{source.lake}/")
    assert "date=2024-05-31/" in tree
    assert lines[-1].startswith("… ")
    full = partition_tree(source.lake, max_lines=10_000)
    assert "region=%C3%8Ele-de-France/  = 'Île-de-France'" in full
    assert "_dead_letters/" in full


# --- restarts ----------------------------------------------------------------------------------


def test_restart_without_commit_and_other_batch_sizes_stays_exact(
    source: Source, tmp_path: Path
) -> None:
    """Files written but offsets never committed (a fresh group): nothing is written twice."""
    lake = tmp_path / "lake"
    first = lake_runtime(
        source.bootstrap, source.topic, lake, group_id=f"a_{uuid.uuid4().hex[:6]}", flush_events=7
    )
    stats_a = first.run(max_events=500)
    assert stats_a.consumed == 500
    second = lake_runtime(
        source.bootstrap,
        source.topic,
        lake,
        group_id=f"b_{uuid.uuid4().hex[:6]}",
        flush_events=300,
    )
    stats_b = second.run(until_idle=IDLE_S)
    assert stats_b.duplicates == 500
    assert stats_a.stored + stats_b.stored == len(source.events)
    assert lake_events(lake) == by_id(source.events)
    assert len(read_dead_letters(lake)) == len(source.bad)


def test_sigkill_mid_stream_then_restart_with_other_flush_size(
    settings: Settings, endpoints: infra.Endpoints, topic: str, group_id: str, tmp_path: Path
) -> None:
    """The CLI sink killed mid-stream, restarted in the same group with another flush size.

    Where the kill lands (between two flushes, or between a flush's files and its commit)
    varies; the restart without any commit above covers the second case deterministically.
    """
    events = backfill(23, 1500)
    produce(endpoints.kafka_bootstrap, topic, as_messages(events))
    lake = tmp_path / "lake"
    env = {
        **os.environ,
        "SALES_STREAM_MODE": "embedded",
        "SALES_STREAM_STATE_DIR": str(settings.state_dir),
        "SALES_STREAM_TOPIC": topic,
    }
    command = [sys.executable, "-m", "sales_stream", "lake", "--path", str(lake)]
    command += ["--flush-events", "40", "--group", group_id, "--until-idle", "60"]
    sink = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: any((lake / "sales").rglob("part-*.parquet")), timeout=60, what="files")
    finally:
        sink.send_signal(signal.SIGKILL)
        sink.wait(timeout=10)
    assert sink.returncode == -signal.SIGKILL
    assert lake_stats(lake)["rows"] < len(events)  # killed mid-stream

    stats = lake_runtime(
        endpoints.kafka_bootstrap, topic, lake, group_id=group_id, flush_events=1000
    ).run(until_idle=IDLE_S)
    assert stats.stored + stats.duplicates <= len(events)
    assert lake_events(lake) == by_id(events)
    assert not [p for p in lake.rglob("*") if p.name.endswith(".tmp")]


def test_compaction_keeps_rows_and_a_later_restart_stays_exact(
    endpoints: infra.Endpoints, topic: str, group_id: str, tmp_path: Path
) -> None:
    bootstrap = endpoints.kafka_bootstrap
    events = backfill(31, 300)
    produce(bootstrap, topic, as_messages(events))
    lake = tmp_path / "lake"
    lake_runtime(bootstrap, topic, lake, group_id=group_id, flush_events=60).run(until_idle=IDLE_S)
    before = list_parts(open_lake(lake), "sales")
    saved = {p.relpath: (lake / p.relpath).read_bytes() for p in before}

    results = compact(lake)
    assert sum(r.files_before for r in results) == len(before)
    assert sum(r.rows for r in results) == len(events)
    after = list_parts(open_lake(lake), "sales")
    assert len(after) < len(before)
    per_partition = Counter((p.directory, p.partition) for p in after)
    assert set(per_partition.values()) == {1}
    assert lake_events(lake) == by_id(events)
    for part in after:  # the merged file still names the whole range it covers
        covered = [
            p for p in before if (p.directory, p.partition) == (part.directory, part.partition)
        ]
        assert (part.first, part.last) == (
            min(p.first for p in covered),
            max(p.last for p in covered),
        )

    # A compaction interrupted after publishing leaves an input behind: readers ignore it,
    # the next compaction deletes it.
    leftover = next(p for p in before if p.relpath not in {a.relpath for a in after})
    (lake / leftover.relpath).write_bytes(saved[leftover.relpath])
    assert lake_stats(lake)["rows"] == len(events)
    assert len(read_lake(lake)) == len(events)
    date_dir, region_dir = leftover.directory.split("/")[1:]
    redo = compact_partition(
        lake, date=date_dir.removeprefix("date="), region=unquote(region_dir.split("=", 1)[1])
    )
    in_dir = sum(1 for p in after if p.directory == leftover.directory)
    assert (redo.files_before, redo.files_after) == (in_dir + 1, in_dir)
    assert not (lake / leftover.relpath).exists()

    # A sink with no committed offsets finds everything in the compacted files' names.
    fresh = lake_runtime(bootstrap, topic, lake, group_id=f"{group_id}_fresh", flush_events=500)
    stats = fresh.run(until_idle=IDLE_S)
    assert (stats.stored, stats.duplicates) == (0, len(events))

    # Late events for the same closed dates, then more compaction: still exact.
    late = backfill(37, 60)
    produce(bootstrap, topic, as_messages(late))
    stats = lake_runtime(bootstrap, topic, lake, group_id=group_id).run(until_idle=IDLE_S)
    assert (stats.stored, stats.duplicates) == (len(late), 0)
    compact(lake)
    assert lake_events(lake) == by_id(events + late)


def test_today_is_not_compacted(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    with pytest.raises(ValueError, match=r"still open \(today UTC is"):
        compact_partition(tmp_path, date=today.isoformat(), region="Bretagne")
    with pytest.raises(ValueError, match="partitions stay open"):
        compact(tmp_path, before=today + timedelta(days=1))
    with pytest.raises(ValueError, match="no partition date=2024-01-01 region='Bretagne'"):
        compact_partition(tmp_path, date="2024-01-01", region="Bretagne")
    with pytest.raises(ValueError, match="'YYYY-MM-DD', got '2024-13-01'"):
        compact_partition(tmp_path, date="2024-13-01", region="Bretagne")


def test_two_sinks_in_one_group_share_the_partitions(
    endpoints: infra.Endpoints, topic: str, group_id: str, tmp_path: Path
) -> None:
    """A second sink joining mid-stream: the rebalance neither loses nor duplicates rows."""
    bootstrap, lake = endpoints.kafka_bootstrap, tmp_path / "lake"
    events = backfill(41, 600)
    half = len(events) // 2
    produce(bootstrap, topic, as_messages(events[:half]))
    options = {"group_id": group_id, "flush_events": 50, "flush_seconds": 0.5}
    first = lake_thread(bootstrap, topic, lake, **options)
    second = lake_thread(bootstrap, topic, lake, **options)
    first.start()
    try:
        wait_for(lambda: first.stats.stored > 0, timeout=60, what="the first sink's rows")
        second.start()
        wait_for(
            lambda: (first.stats.partitions, second.stats.partitions) in {(1, 2), (2, 1)},
            timeout=60,
            what="the partitions shared by both sinks",
        )
        produce(bootstrap, topic, as_messages(events[half:]))
        wait_for(lambda: lake_stats(lake)["rows"] >= len(events), timeout=60, what="all rows")
    finally:
        stats = [first.stop(), second.stop()]
    assert all(s.stored > 0 for s in stats)
    assert lake_events(lake) == by_id(events)


# --- filesystems and outages -------------------------------------------------------------------


def test_fsspec_filesystem_url(source: Source, memory_lake: str) -> None:
    """A non-local filesystem through fsspec (the path ``webhdfs://`` takes)."""
    sink = lake_runtime(source.bootstrap, source.topic, memory_lake, group_id=f"m_{source.topic}")
    stats = sink.run(until_idle=IDLE_S)
    assert stats.stored == len(source.events)
    assert lake_events(memory_lake) == by_id(source.events)
    assert lake_stats(memory_lake)["dead_letters"] == len(source.bad)
    assert "date=2024-06-02/" in partition_tree(memory_lake, max_lines=100)


def test_write_outage_is_retried_without_loss(source: Source, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    blocker = lake / "sales" / "date=2024-06-01"  # a file where a partition directory goes
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    thread = lake_thread(
        source.bootstrap,
        source.topic,
        lake,
        group_id=f"o_{source.topic}",
        flush_events=500,
        flush_seconds=0.5,
    )
    thread.start()
    try:
        wait_for(
            lambda: thread.stats.state is StreamState.WAITING_SINK,
            timeout=60,
            what="a failed write",
        )
        waiting = thread.stats
        assert waiting.waiting_on == "lake"
        blocker.unlink()
        total = len(source.events)
        wait_for(lambda: thread.stats.stored == total, timeout=60, what="all events")
    finally:
        stats = thread.stop()
    assert (waiting.last_error or "").startswith("lake unreachable: ")
    assert stats.last_error is None  # cleared once the lake takes writes again
    assert lake_events(lake) == by_id(source.events)


# --- command line and argument checks ----------------------------------------------------------


def test_cli_compact_and_tree(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(source.lake, lake)
    files = lake_stats(lake)["files"]
    assert main(["lake", "compact", "--path", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "closed partitions" in out
    assert lake_stats(lake)["files"] < files
    assert lake_events(lake) == by_id(source.events)
    assert main(["lake", "tree", "--path", str(lake), "--max-lines", "5"]) == 0
    out = capsys.readouterr().out
    assert f"{len(source.events)} rows in" in out
    assert main(["lake", "compact", "--path", str(lake), "--before", "2999-01-01"]) == 2
    assert "partitions stay open" in capsys.readouterr().err


def test_which_lake_needs_the_embedded_store(tmp_path: Path) -> None:
    embedded = Settings(_env_file=None, mode="embedded", state_dir=tmp_path)
    docker = Settings(_env_file=None, mode="docker", state_dir=tmp_path)
    assert lake_url(embedded) == EMBEDDED_LAKE
    assert on_embedded_store(embedded, EMBEDDED_LAKE)
    assert lake_url(docker) == "lake"
    assert lake_url(embedded, tmp_path) == str(tmp_path)
    assert not on_embedded_store(embedded, str(tmp_path))  # a folder: no service needed
    assert not on_embedded_store(docker, "s3://bucket/lake")  # a store of its own


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: lake_runtime("127.0.0.1:1", "t", p, group_id="g", flush_events=0), "max_batch"),
        (lambda p: read_lake(p, start=datetime(2024, 1, 1)), "start must be timezone-aware"),  # noqa: DTZ001
        (lambda p: read_lake(p, regions="Corse"), "regions must be a sequence of names"),
        (lambda p: read_lake(p, start=date(2024, 1, 2), end=date(2024, 1, 1)), "must be before"),
        (lambda p: partition_tree(p, max_lines=1), "max_lines must be >= 2"),
        (lambda p: open_lake("nosuchscheme://x/y"), "nosuchscheme"),
    ],
)
def test_invalid_arguments(call: Callable[[Path], object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        call(tmp_path)


def test_empty_lake_reads_empty(tmp_path: Path) -> None:
    assert read_lake(tmp_path).empty
    assert list(read_lake(tmp_path).columns) == list(SaleEvent.__dataclass_fields__)
    assert revenue_by_region_lake(tmp_path).empty
    assert lake_stats(tmp_path) == {
        "files": 0,
        "rows": 0,
        "bytes": 0,
        "partitions": 0,
        "dead_letters": 0,
    }
