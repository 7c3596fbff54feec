"""Nothing forgotten across stops and restarts: the broker keeps its log in the object store.

Driven like a user, through the CLI (``up``/``down``, ``produce``, ``consume``, ``lake``) on
an instance of its own; MongoDB and the lake are read back at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import mongo_client
from sales_stream.config import Settings
from sales_stream.infra import embedded, ports
from sales_stream.infra.process import pid_alive, wait_until
from sales_stream.lake.read import read_lake
from sales_stream.produce.backfill import backfill, topic_has_records
from sales_stream.produce.generator import SaleGenerator
from sales_stream.produce.producer import ProducerThread
from sales_stream.read.dashboard_views import Selection, load_snapshot
from sales_stream.sinks.rollups import totals
from sales_stream.store import HOURLY, SALES


class Cli:
    """``python -m sales_stream`` on one state directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "SALES_STREAM_STATE_DIR": str(home / "state")}
        self.settings = Settings(_env_file=None, state_dir=home / "state")

    def __call__(self, *args: str, timeout: float = 180) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "sales_stream", *args],
            env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert run.returncode == 0, f"{args}: {run.stdout}{run.stderr}"
        return run.stdout

    def up(self) -> infra.Endpoints:
        return infra.up(self.settings, owner_pid=1)  # owned by init: lives until `down`

    def consumed(self) -> int:
        """``consume --until-idle``: how many records it read."""
        last = self("consume", "--until-idle", "3").strip().splitlines()[-1]
        return int(last.split("consumed ", 1)[1].split(",", 1)[0])

    def mongo_ids(self, endpoints: infra.Endpoints) -> list[str]:
        client = mongo_client(endpoints.mongo_uri.get_secret_value())
        try:
            return [d["_id"] for d in client[self.settings.db][SALES].find({}, {"_id": 1})]
        finally:
            client.close()

    def lake_ids(self) -> list[str]:
        """``lake run`` into the default lake (``s3://lake/`` on the embedded object store)."""
        assert "-> s3://lake/" in self("lake", "run", "--until-idle", "3")
        stack = Stack(self.settings, infra.status(self.settings))
        return list(read_lake(stack.lake_location())["event_id"])


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    cli = Cli(tmp_path)
    yield cli
    infra.down(cli.settings)


def test_topic_offsets_and_ports_survive_down_and_up(cli: Cli) -> None:
    first = cli.up()
    cli("produce", "--count", "2000", "--rate", "100000", "--seed", "1")
    assert cli.consumed() == 2000
    infra.down(cli.settings)
    assert embedded.status(cli.settings.state_dir) is None

    again = cli.up()
    assert again.kafka_bootstrap == first.kafka_bootstrap
    assert again.sql_uri == first.sql_uri
    assert again.kafka_incarnation == first.kafka_incarnation
    assert cli.consumed() == 0  # the group's offsets were kept
    assert sorted(cli.lake_ids()) == sorted(cli.mongo_ids(again))  # the 2,000 are still there
    cli("produce", "--count", "1000", "--rate", "100000", "--seed", "2")
    assert cli.consumed() == 1000
    mongo, lake = cli.mongo_ids(again), cli.lake_ids()
    assert len(set(mongo)) == len(mongo) == 3000
    assert sorted(lake) == sorted(mongo)
    tree = cli("lake", "tree")
    assert "sales/" in tree
    assert "3000 rows" in tree
    filer = infra.status(cli.settings).filer_url
    assert f"browse it at {filer}lake/" in tree


@pytest.mark.parametrize("server", ["kafka", "objectstore"])
def test_a_killed_server_loses_no_acknowledged_sale(cli: Cli, server: str) -> None:
    endpoints = cli.up()
    cli("produce", "--count", "1500", "--rate", "100000", "--seed", "3")
    assert cli.consumed() == 1500
    pid = getattr(embedded.status(cli.settings.state_dir), server).pid
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pid), timeout=5)
    assert wait_until(lambda: embedded.status(cli.settings.state_dir) is not None, timeout=60)
    cli("produce", "--count", "1000", "--rate", "100000", "--seed", "4")
    assert cli.consumed() == 1000
    mongo, lake = cli.mongo_ids(endpoints), cli.lake_ids()
    assert len(set(mongo)) == len(mongo) == 2500
    assert sorted(lake) == sorted(mongo)
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    try:  # the rollups count every sale once
        assert totals(client[cli.settings.db], HOURLY)[0] == 2500
    finally:
        client.close()


def test_a_port_taken_by_another_program_is_named(cli: Cli) -> None:
    cli.up()
    infra.down(cli.settings)
    taken = ports.stable_ports(cli.settings.state_dir.resolve(), sql_port=None)["kafka"]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        run = subprocess.run(
            [sys.executable, "-m", "sales_stream", "up"], env=cli.env, cwd=cli.home,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert f"port {taken} on 127.0.0.1 (the Kafka broker) is taken" in run.stderr


def test_down_names_a_group_left_behind_and_it_reads_the_rest_after_up(cli: Cli) -> None:
    cli.up()
    cli("produce", "--count", "500", "--rate", "100000", "--seed", "5")
    cli("consume", "--max-events", "200")
    said = cli("down", "--drain-timeout", "30")
    assert "sales-mongo is 300 records behind on sales: it reads them at the next start" in said
    assert embedded.status(cli.settings.state_dir) is None
    cli.up()
    assert cli.consumed() == 300


def _session(stack: Stack, *, seed: int) -> int:
    """What notebooks 02 and 03 do: the history once, 60 live sales, consumed; return sent."""
    bootstrap, topic = stack.endpoints.kafka_bootstrap, stack.settings.topic
    if not topic_has_records(bootstrap, topic):
        backfill(bootstrap, topic, days=1, events_per_day=1000, seed=seed)
    producer = ProducerThread(
        bootstrap, topic, rate=200, seed=seed + 1, max_events=60,
        generator=SaleGenerator(seed + 1),  # the wall clock, as in an interactive lab
    )  # fmt: skip
    producer.start()
    assert producer.wait(timeout=60)
    sent = producer.stop().acked
    worker = stack.consumer_worker()
    worker.start(until_idle=2.0)
    assert worker.wait(timeout=120)
    return sent


def test_a_second_session_adds_only_live_sales_none_dated_after_now(cli: Cli) -> None:
    stack = Stack(cli.settings, cli.up())
    stack.ensure_topic()
    first = _session(stack, seed=7)
    history = stack.db[SALES].count_documents({}) - first
    stack.close()
    infra.down(cli.settings)

    stack = Stack(cli.settings, cli.up())  # another day: the same notebooks again
    second = _session(stack, seed=7)
    sales = list(stack.db[SALES].find({}, {"ts": 1, "product": 1, "amount": 1, "city": 1}))
    now = datetime.now(UTC)
    stack.close()
    assert len(sales) == history + first + second  # no second history
    keys = Counter((s["ts"], s["product"], s["amount"], s["city"]) for s in sales)
    assert keys.most_common(1)[0][1] == 1
    assert max(s["ts"] for s in sales).replace(tzinfo=UTC) <= now
    view = load_snapshot(Stack(cli.settings, infra.status(cli.settings)).db).view(
        Selection(period="1h")
    )
    assert view.sales >= first + second  # « Dernière heure » shows both sessions' live sales


def test_the_object_store_takes_writes_only_from_its_own_clients(cli: Cli) -> None:
    import urllib.error
    import urllib.request

    import pyarrow.fs as pafs

    endpoints = cli.up()
    browse = f"{endpoints.filer_url}lake/"
    with urllib.request.urlopen(browse, timeout=10) as page:
        assert page.status == 200
    for method, url in (("POST", f"{browse}evil.txt"), ("DELETE", f"{endpoints.filer_url}tansu/")):
        request = urllib.request.Request(url, data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    stranger = pafs.S3FileSystem(
        access_key="someone", secret_key="else", region="us-east-1", scheme="http",
        endpoint_override=endpoints.s3_endpoint.removeprefix("http://"),
    )  # fmt: skip
    with pytest.raises(OSError, match="INVALID_ACCESS_KEY_ID"):
        stranger.get_file_info(pafs.FileSelector("lake"))


def test_down_stops_the_kernels_producer_and_lets_the_consumer_catch_up(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sales_stream.ui import live

    monkeypatch.setenv("SALES_STREAM_STATE_DIR", str(cli.settings.state_dir))
    stack = Stack(cli.settings, cli.up())
    stack.ensure_topic()
    producer = live.replace(  # as notebook 02 registers it
        live.PRODUCER, ProducerThread(stack.endpoints.kafka_bootstrap, "sales", rate=200, seed=9)
    )
    producer.start()
    consumer = stack.consumer_worker()
    consumer.start()
    try:
        assert wait_until(lambda: consumer.stats.stored > 100, timeout=60)
        said = cli("down", "--drain-timeout", "60")
        assert producer.stats.state == "stopped"  # before the services stopped
        assert "behind" not in said  # the running consumer caught up
    finally:
        live.stop(live.PRODUCER)
        consumer.stop()
        stack.close()
    again = cli.up()
    assert not (cli.settings.state_dir / "stopping").exists()
    assert sorted(cli.mongo_ids(again)) == sorted(set(cli.mongo_ids(again)))
    assert len(cli.mongo_ids(again)) == producer.stats.acked
