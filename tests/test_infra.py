"""The embedded servers: start, reuse, round trips, clean stop."""

import os
import signal
import stat
import subprocess
import sys
import time
from urllib.parse import quote, urlsplit

import pytest
from kafka import KafkaConsumer, KafkaProducer
from pymongo.errors import OperationFailure

from sales_stream import infra
from sales_stream.clients import consumer_config, ensure_topic, mongo_client
from sales_stream.config import Settings
from sales_stream.infra.health import kafka_ready, mongo_ready
from sales_stream.infra.process import pid_alive, wait_until


def _server_pids(state_dir) -> list[int]:
    """The pids of both servers and of their supervisor."""
    status = infra.embedded.status(state_dir)
    return [status.kafka.pid, status.database.pid, status.supervisor_pid] if status else []


def _cli_up(tmp_path) -> tuple[subprocess.Popen, dict[str, str], str]:
    """Start ``python -m sales_stream up`` and return once it says it is up."""
    env = {**os.environ, "SALES_STREAM_STATE_DIR": str(tmp_path / "state")}
    up = subprocess.Popen(
        [sys.executable, "-m", "sales_stream", "up"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in up.stdout:
        lines.append(line)
        if line.startswith("up;"):
            break
    return up, env, "".join(lines)


def test_produce_consume_round_trip(endpoints: infra.Endpoints, topic: str, group_id: str) -> None:
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    for i in range(300):
        producer.send(topic, key=str(i % 7).encode(), value=f"m{i}".encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=endpoints.kafka_bootstrap, group_id=group_id, **consumer_config()
    )
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            seen.extend(r.value for r in records)
    consumer.commit()
    consumer.close()
    assert sorted(seen) == sorted(f"m{i}".encode() for i in range(300))


def test_mongo_insert_and_read(db) -> None:
    db.items.insert_many([{"_id": i, "v": i * 2} for i in range(100)])
    assert db.items.count_documents({}) == 100
    assert db.items.find_one({"_id": 42})["v"] == 84


def test_the_mongodb_port_refuses_a_client_without_the_login(
    settings: Settings, endpoints: infra.Endpoints, unique_name: str
) -> None:
    secret = settings.state_dir.resolve() / "mongo.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.state_dir.resolve().stat().st_mode) == 0o700
    uri = endpoints.mongo_uri.get_secret_value()
    assert secret.read_text().strip() not in repr(endpoints)
    assert "sales_stream:***@" in endpoints.describe()["mongodb"]
    anonymous = mongo_client(f"mongodb://127.0.0.1:{urlsplit(uri).port}/")  # another local user
    wrong = mongo_client(uri.replace(quote(secret.read_text().strip()), "not-the-password"))
    owner = mongo_client(uri)
    db = f"d_{unique_name}"[:60]
    try:
        assert mongo_ready(uri)  # the handshake and ping need no login
        with pytest.raises(OperationFailure, match="requires authentication") as refused:
            anonymous[db].items.insert_one({"_id": 1})
        assert refused.value.code == 13  # Unauthorized
        with pytest.raises(OperationFailure, match="requires authentication"):
            anonymous[db].items.find_one()
        with pytest.raises(OperationFailure, match="requires authentication"):
            anonymous.list_database_names()
        with pytest.raises(OperationFailure, match="authentication failed"):
            wrong[db].items.insert_one({"_id": 1})
        owner[db].items.insert_one({"_id": 1})
        assert owner[db].items.count_documents({}) == 1  # only the owner's write got in
    finally:
        owner.drop_database(db)
        for client in (anonymous, wrong, owner):
            client.close()


def test_second_up_reuses_running_servers(settings: Settings, endpoints: infra.Endpoints) -> None:
    again = infra.up(settings)
    assert again.kafka_bootstrap == endpoints.kafka_bootstrap
    assert again.mongo_uri == endpoints.mongo_uri
    assert not again.started_here
    assert infra.status(settings) == endpoints


def test_cli_up_status_down_leaves_no_process(tmp_path) -> None:
    up, env, output = _cli_up(tmp_path)
    assert "kafka: 127.0.0.1:" in output
    assert "postgresql: postgresql://tableau@127.0.0.1:" in output
    pids = _server_pids(tmp_path / "state")
    assert len(pids) == 3
    assert all(pid_alive(pid) for pid in pids)
    status = subprocess.run(
        [sys.executable, "-m", "sales_stream", "status"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "mongodb: mongodb://sales_stream:***@127.0.0.1:" in status.stdout
    password = (tmp_path / "state" / "mongo.secret").read_text().strip()
    assert password not in status.stdout + output
    subprocess.run(
        [sys.executable, "-m", "sales_stream", "down"], env=env, cwd=tmp_path, check=True
    )
    assert up.wait(timeout=30) == 0
    assert not any(pid_alive(pid) for pid in pids)


def test_context_manager_stops_what_it_started(tmp_path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")
    with infra.up(settings) as endpoints:
        assert endpoints.started_here
        pids = _server_pids(settings.state_dir)
        assert kafka_ready(endpoints.kafka_bootstrap)
    assert not any(pid_alive(pid) for pid in pids)
    assert infra.status(settings) is None


def test_sigint_on_cli_up_stops_servers(tmp_path) -> None:
    up, _, _ = _cli_up(tmp_path)
    pids = _server_pids(tmp_path / "state")
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 0
    assert not any(pid_alive(pid) for pid in pids)


def test_killed_parent_leaves_no_orphans(tmp_path) -> None:
    up, _, _ = _cli_up(tmp_path)
    pids = _server_pids(tmp_path / "state")
    up.kill()
    up.wait(timeout=10)
    assert wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=20)


def test_database_restart_keeps_data(tmp_path) -> None:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state")
    with infra.up(settings) as endpoints:
        uri = endpoints.mongo_uri.get_secret_value()
        client = mongo_client(uri)
        client.keep.items.insert_many([{"_id": i} for i in range(50)])
        infra.embedded.stop_database(settings.state_dir, kill=True)
        assert not mongo_ready(uri, timeout=0.5)
        infra.embedded.restart_database(settings)
        assert client.keep.items.count_documents({}) == 50
        client.close()


def test_topic_creation_is_idempotent(endpoints: infra.Endpoints, unique_name: str) -> None:
    ensure_topic(endpoints.kafka_bootstrap, unique_name, partitions=4)
    ensure_topic(endpoints.kafka_bootstrap, unique_name, partitions=4)
    consumer = KafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap)
    assert len(consumer.partitions_for_topic(unique_name)) == 4
    consumer.close()
