import os
import socket
import subprocess
import sys

import pytest

from sales_stream.clients import local_mongo_uri, redact_uri
from sales_stream.config import Mode, Settings, load_settings
from sales_stream.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODE", "TOPIC", "DB"):
        monkeypatch.delenv(f"SALES_STREAM_{name}", raising=False)
    settings = Settings(_env_file=None)
    assert settings.mode is Mode.EMBEDDED
    assert settings.topic == "sales"
    assert settings.db == "sales_db"


def test_env_and_dotenv(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SALES_STREAM_TOPIC=from_dotenv\nSALES_STREAM_DB=db1\n")
    monkeypatch.setenv("SALES_STREAM_DB", "from_env")
    settings = load_settings()
    assert settings.topic == "from_dotenv"
    assert settings.db == "from_env"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "MODE",
            "kubernetes",
            "SALES_STREAM_MODE: Input should be 'embedded', 'docker' or 'external'",
        ),
        ("PARTITIONS", "zero", "SALES_STREAM_PARTITIONS: Input should be a valid integer"),
        ("SQL_PORT", "70000", "SALES_STREAM_SQL_PORT: Input should be less than or equal to 65535"),
        ("TOPIC", "bad topic!", "SALES_STREAM_TOPIC: String should match pattern"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"SALES_STREAM_{name}", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_sql_beyond_loopback_requires_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_STREAM_SQL_HOST", "0.0.0.0")
    monkeypatch.delenv("SALES_STREAM_SQL_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="SALES_STREAM_SQL_PASSWORD"):
        load_settings()
    monkeypatch.setenv("SALES_STREAM_SQL_PASSWORD", "s3cret")
    assert load_settings().sql_password.get_secret_value() == "s3cret"


def test_mongo_uri_is_secret_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_STREAM_MONGO_URI", "mongodb://user:hunter2@db.example:27017/")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert (
        redact_uri(settings.mongo_uri.get_secret_value()) == "mongodb://user:***@db.example:27017/"
    )


def test_local_uri_gets_direct_connection_only_when_local() -> None:
    local = local_mongo_uri("mongodb://127.0.0.1:1234")
    assert "directConnection=true" in local
    assert "retryWrites=false" in local
    remote = "mongodb+srv://u:p@cluster0.example.net/"
    assert local_mongo_uri(remote) == remote


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SALES_STREAM_MODE": "cloud"}, "error: SALES_STREAM_MODE:"),
        ({"SALES_STREAM_MODE": "external"}, "error: SALES_STREAM_KAFKA_BOOTSTRAP: required"),
        (
            {
                "SALES_STREAM_MODE": "external",
                "SALES_STREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                "SALES_STREAM_MONGO_URI": "mongodb://127.0.0.1:1/",
            },
            "error: Kafka at 127.0.0.1:1 did not answer within 10 s: "
            "check SALES_STREAM_KAFKA_BOOTSTRAP",
        ),
    ],
)
def test_cli_config_errors_are_one_line(tmp_path, env: dict[str, str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sales_stream", "status"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_secrets_in_uri_query_strings_are_masked() -> None:
    uri = "mongodb://u:pw@db.example/?tls=true&tlsCertificateKeyFilePassword=s3cret&w=1"
    assert redact_uri(uri) == (
        "mongodb://u:***@db.example/?tls=true&tlsCertificateKeyFilePassword=***&w=1"
    )


def _bad_config_cases(tmp_path) -> list[tuple[str, dict[str, str], str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    tmp_path.joinpath("taken").write_text(str(port))  # keeps the number for the message
    _BUSY.append(taken)
    leaky = "http://u:hunter2@h/?tlsCertificateKeyFilePassword=s3cret"
    return [
        ("up", {"SALES_STREAM_STATE_DIR": "/proc/sales"}, "SALES_STREAM_STATE_DIR: /proc/sales"),
        ("up", {"SALES_STREAM_STATE_DIR": "/dev/null/x"}, "SALES_STREAM_STATE_DIR: /dev/null/x"),
        ("status", {"SALES_STREAM_STATE_DIR": str(a_file)}, f"SALES_STREAM_STATE_DIR: {a_file}"),
        ("down", {"SALES_STREAM_STATE_DIR": str(a_file)}, f"SALES_STREAM_STATE_DIR: {a_file}"),
        ("status", {"SALES_STREAM_MONGO_URI": leaky}, "SALES_STREAM_MONGO_URI: 'http://u:***@h/"),
        ("up", {"SALES_STREAM_MONGO_URI": "mongodb://h:99999/"}, "SALES_STREAM_MONGO_URI:"),
        ("up", {"SALES_STREAM_SQL_PORT": str(port)}, f"SALES_STREAM_SQL_PORT: port {port} on"),
        ("up", {"SALES_STREAM_SQL_PASSWORD": "change-me"}, "SALES_STREAM_SQL_PASSWORD is 'change"),
        (
            "up",
            {
                "SALES_STREAM_MODE": "docker",
                "SALES_STREAM_MONGO_USER": "sales",
                "SALES_STREAM_MONGO_PASSWORD": "change-me",
            },
            "SALES_STREAM_MONGO_PASSWORD is 'change-me', the placeholder of .env.example: "
            "set a real password as SALES_STREAM_MONGO_PASSWORD=... in .env",
        ),
        ("status", {"SALES_STREAM_PARTITIONS": "0"}, "SALES_STREAM_PARTITIONS:"),
    ]


_BUSY: list[socket.socket] = []
PYTHONPATH = os.environ.get("PYTHONPATH", "")


def test_bad_config_table_one_line_exit_2_no_traceback(tmp_path) -> None:
    failures = []
    try:
        for command, env, expected in _bad_config_cases(tmp_path):
            result = subprocess.run(
                [sys.executable, "-m", "sales_stream", command],
                env={"PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH, **env},
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            err = result.stderr
            if not (
                result.returncode == 2
                and err.startswith(f"error: {expected}")
                and len(err.strip().splitlines()) == 1
                and "Traceback" not in err
                and "hunter2" not in err
                and "s3cret" not in err
            ):
                failures.append((command, env, result.returncode, err))
    finally:
        for sock in _BUSY:
            sock.close()
    assert failures == []
