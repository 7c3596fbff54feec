"""The docker mode cannot run here (no Docker daemon): check the compose file's structure."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

COMPOSE = REPO / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "mongodb", "namenode", "datanode"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "profiles" not in services["kafka"]
    assert "profiles" not in services["mongodb"]
    assert services["namenode"]["profiles"] == ["hadoop"]
    assert services["namenode"]["environment"]["HDFS-SITE.XML_dfs.webhdfs.enabled"] == "true"


def test_every_service_has_a_healthcheck(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service["healthcheck"]["test"], name


def test_no_healthcheck_puts_a_password_on_a_command_line(compose: dict) -> None:
    for name, service in compose["services"].items():
        command = " ".join(service["healthcheck"]["test"])
        assert not re.search(r"\$\$?\{?\w*PASSWORD|\s-p\s|--password", command), name


def test_ports_bound_to_loopback_only(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_named_volumes(compose: dict) -> None:
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared


def test_no_literal_secrets(compose: dict) -> None:
    env = compose["services"]["mongodb"]["environment"]
    for key in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        assert re.fullmatch(r"\$\{SALES_STREAM_MONGO_\w+:\?[^}]+\}", env[key]), env[key]
    for service in compose["services"].values():
        for key, value in service.get("environment", {}).items():
            if re.search(r"(?i)pass|secret|token", key):
                assert str(value).startswith("${"), key


def test_env_example_lists_compose_variables() -> None:
    example = (REPO / ".env.example").read_text()
    for name in re.findall(r"\$\{(\w+)", COMPOSE.read_text()):
        assert f"{name}=" in example, name


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed here"
)
def test_docker_compose_config_accepts_it(tmp_path) -> None:
    env = {
        "SALES_STREAM_MONGO_USER": "u",
        "SALES_STREAM_MONGO_PASSWORD": "p",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], env=env, check=True)
