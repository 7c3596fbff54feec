"""Supervised embedded servers: a dead server comes back alone, owners decide the lifetime.

Each test starts its own instance (it kills servers). Polls have deadlines; no sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from pymongo import MongoClient

from sales_stream import infra
from sales_stream.app import Stack
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.events import encode
from sales_stream.infra import embedded
from sales_stream.infra.health import kafka_ready, mongo_ready
from sales_stream.infra.process import pid_alive, wait_until
from sales_stream.produce.generator import SaleGenerator
from sales_stream.store import SALES
from sales_stream.stream import StreamWorker

BACK_WITHIN_S = 15.0


def _produce(bootstrap: str, topic: str, events: list) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for event in events:
        producer.send(topic, key=event.region.encode(), value=encode(event))
    producer.flush()
    producer.close()


def _cli_up(home: Path) -> tuple[subprocess.Popen, Settings]:
    """``python -m sales_stream up`` in ``home``, returned once it says it is up."""
    env = {**os.environ, "SALES_STREAM_STATE_DIR": str(home / "state")}
    up = subprocess.Popen(
        [sys.executable, "-m", "sales_stream", "up"],
        env=env, cwd=home, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in up.stdout:
        if line.startswith("up;"):
            break
    return up, Settings(_env_file=None, state_dir=home / "state")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Settings]]:
    up, settings = _cli_up(tmp_path)
    yield up, settings
    up.send_signal(signal.SIGINT)
    up.wait(timeout=60)


def _lines_until(up: subprocess.Popen, marker: str) -> list[str]:
    lines = []
    for line in up.stdout:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"'up' ended before {marker!r}: {''.join(lines)}")


def test_killed_database_is_back_on_its_port_and_kafka_keeps_serving(running) -> None:
    up, settings = running
    before = embedded.status(settings.state_dir)
    uri = before.database.mongo_uri.get_secret_value()
    client = mongo_client(uri)
    client.keep.items.insert_many([{"_id": i} for i in range(50)])
    os.kill(before.database.pid, signal.SIGKILL)
    assert wait_until(lambda: not mongo_ready(uri, timeout=0.3), timeout=5)
    assert kafka_ready(before.kafka.bootstrap)  # the broker did not go down with it
    assert wait_until(lambda: mongo_ready(uri, timeout=0.5), timeout=BACK_WITHIN_S)
    # the supervisor records the server as ready at its next poll after it answers
    assert wait_until(lambda: embedded.status(settings.state_dir) is not None, timeout=5)
    after = embedded.status(settings.state_dir)
    assert after.database.mongo_port == before.database.mongo_port
    assert after.database.sql_port == before.database.sql_port
    assert after.kafka == before.kafka
    assert client.keep.items.count_documents({}) == 50  # same storage
    client.close()
    shown = "".join(_lines_until(up, "database ready again"))
    assert f"database exited (pid {before.database.pid}, code -9)" in shown
    assert "were stopped" not in shown
    assert up.poll() is None  # 'up' still runs


def test_killed_broker_is_back_on_its_port_with_its_cluster_id_and_topics(running) -> None:
    _, settings = running
    before = embedded.status(settings.state_dir)
    ensure_topic(before.kafka.bootstrap, "kept", partitions=3)
    os.kill(before.kafka.pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(before.kafka.pid), timeout=5)
    assert mongo_ready(before.database.mongo_uri.get_secret_value())
    assert wait_until(lambda: embedded.status(settings.state_dir) is not None, timeout=15)
    assert wait_until(lambda: kafka_ready(before.kafka.bootstrap), timeout=BACK_WITHIN_S)
    after = embedded.status(settings.state_dir)
    assert after.kafka.port == before.kafka.port
    assert after.kafka.pid != before.kafka.pid
    assert after.kafka.incarnation == before.kafka.incarnation  # offsets keep their meaning
    assert after.database == before.database
    admin = KafkaAdminClient(bootstrap_servers=before.kafka.bootstrap)
    assert "kept" in admin.list_topics()
    admin.close()
    endpoints = infra.status(settings)
    assert endpoints.kafka_incarnation == after.kafka.incarnation


def test_consumer_through_a_database_restart_stores_every_sale_once(running) -> None:
    _, settings = running
    services = embedded.status(settings.state_dir)
    bootstrap, uri = services.kafka.bootstrap, services.database.mongo_uri.get_secret_value()
    ensure_topic(bootstrap, "sales", partitions=3)
    events = SaleGenerator(31).events(3000)
    stack = Stack.from_settings(settings, endpoints=infra.status(settings))
    thread = stack.consumer_worker(group_id="through_restart")
    thread.start()
    client = mongo_client(uri)
    try:
        _produce(bootstrap, "sales", events[:1500])
        assert wait_until(lambda: thread.stats.stored > 0, timeout=60)
        os.kill(services.database.pid, signal.SIGKILL)
        _produce(bootstrap, "sales", events[1500:])
        assert wait_until(lambda: mongo_ready(uri, timeout=0.5), timeout=BACK_WITHIN_S)

        def _all_stored() -> bool:
            try:
                return client.sales_db[SALES].count_documents({}) >= len(events)
            except Exception:  # the database may still be settling
                return False

        assert wait_until(_all_stored, timeout=120, interval=0.5)
    finally:
        ids = _stop_and_read_ids(thread, stack, client)
    assert sorted(ids) == sorted(e.event_id for e in events)


def _stop_and_read_ids(thread: StreamWorker, stack: Stack, client: MongoClient) -> list[str]:
    """Stop the consumer and the stack; the ids stored in ``sales`` (closes ``client``)."""
    thread.stop()
    stack.close()
    ids = [doc["_id"] for doc in client.sales_db[SALES].find({}, {"_id": 1})]
    client.close()
    return ids


def test_consumer_through_a_broker_restart_stores_every_sale_once(running) -> None:
    _, settings = running
    services = embedded.status(settings.state_dir)
    bootstrap, uri = services.kafka.bootstrap, services.database.mongo_uri.get_secret_value()
    ensure_topic(bootstrap, "sales", partitions=3)
    events = SaleGenerator(32).events(3000)
    before, after = events[:1500], events[1500:]
    stack = Stack.from_settings(settings, endpoints=infra.status(settings))
    thread = stack.consumer_worker(group_id="through_broker_restart")
    thread.start()
    client = mongo_client(uri)

    def _stored(ids: set[str]) -> bool:
        found = client.sales_db[SALES].count_documents({"_id": {"$in": sorted(ids)}})
        return found == len(ids)

    try:
        _produce(bootstrap, "sales", before)
        assert wait_until(lambda: _stored({e.event_id for e in before}), timeout=60, interval=0.5)
        os.kill(services.kafka.pid, signal.SIGKILL)  # its log and offsets are in the store
        assert wait_until(lambda: not pid_alive(services.kafka.pid), timeout=5)
        assert wait_until(lambda: kafka_ready(bootstrap), timeout=BACK_WITHIN_S)
        _produce(bootstrap, "sales", after)
        assert wait_until(lambda: _stored({e.event_id for e in after}), timeout=120, interval=0.5)
    finally:
        ids = _stop_and_read_ids(thread, stack, client)
    assert sorted(ids) == sorted(e.event_id for e in events)


def _client(state_dir: Path, *, owner: int | None = None, jpy_parent: int | None = None) -> str:
    """Run ``infra.up`` in a short-lived process (a notebook kernel); return what it printed."""
    code = (
        "from sales_stream import infra\n"
        "from sales_stream.config import Settings\n"
        f"e = infra.up(Settings(_env_file=None, state_dir={str(state_dir)!r}), owner_pid={owner})\n"
        "print(e.started_here, e.kafka_bootstrap)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    if jpy_parent is not None:
        env["JPY_PARENT_PID"] = str(jpy_parent)
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_services_outlive_clients_and_stop_with_their_owner(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        first = _client(state_dir, jpy_parent=owner.pid)  # a kernel of that JupyterLab
        assert first.startswith("True ")
        services = embedded.status(state_dir)
        assert services is not None
        assert services.owner_pid == owner.pid
        second = _client(state_dir)  # another kernel, after the first one exited
        assert second == f"False {services.kafka.bootstrap}"
        assert kafka_ready(services.kafka.bootstrap)
        assert mongo_ready(services.database.mongo_uri.get_secret_value())
    finally:
        owner.kill()
        owner.wait()
    pids = [services.kafka.pid, services.database.pid, services.supervisor_pid]
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=30)
    assert embedded.status(state_dir) is None
    log = embedded.log_files(state_dir)["supervisor"].read_text()
    assert f"owner process {owner.pid} exited" in log


LAB = """
import sys
from jupyter_client.manager import start_new_kernel

code = sys.argv[1]
for name in ("first", "second"):
    manager, client = start_new_kernel(kernel_name="python3")
    reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    client.stop_channels()
    manager.shutdown_kernel(now=False)
    print(name, "kernel shut down", flush=True)
sys.stdin.read()  # JupyterLab stays up until the test closes stdin
"""


def test_kernels_come_and_go_and_the_lab_server_owns_the_services(tmp_path: Path) -> None:
    """Real Jupyter kernels (jupyter_client, as JupyterLab starts them) use the services."""
    state_dir = tmp_path / "state"
    code = (
        "from sales_stream import infra\n"
        "from sales_stream.config import Settings\n"
        f"infra.up(Settings(_env_file=None, state_dir={str(state_dir)!r}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"}
    lab = subprocess.Popen(
        [sys.executable, "-c", LAB, code],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert lab.stdout.readline().strip() == "first kernel shut down"
        services = embedded.status(state_dir)
        assert services is not None  # the first kernel is gone, the services are not
        assert services.owner_pid == lab.pid
        assert lab.stdout.readline().strip() == "second kernel shut down"
        assert embedded.status(state_dir) == services  # the second kernel reused them
        assert kafka_ready(services.kafka.bootstrap)
    finally:
        lab.stdin.close()
        lab.wait(timeout=60)
    pids = [services.kafka.pid, services.database.pid, services.supervisor_pid]
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=30)
