"""Shared fixtures: embedded services started once per session, unique names per test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from sales_stream import infra
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import Settings

REPO = Path(__file__).resolve().parents[1]
#: The longest files (``pytest --durations``), run first: ``make test`` spreads whole files
#: over two workers (``-n 2 --dist loadfile``), so they must not be the last ones handed out.
LONGEST_FIRST = (
    "test_durable.py",
    "test_pipeline.py",
    "test_browser.py",
    "test_consumer_faults.py",
    "test_scale_out.py",
    "test_sink_contract.py",
    "test_lake.py",
    "test_supervision.py",
    "test_sql.py",
    "test_consumer.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put `LONGEST_FIRST`'s files first, in that order; the others keep theirs."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Embedded-mode settings isolated from any developer ``.env``."""
    return Settings(_env_file=None, mode="embedded", state_dir=tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def endpoints(settings: Settings) -> Iterator[infra.Endpoints]:
    """The real embedded Kafka broker and MongoDB server, shared by the session."""
    endpoints = infra.up(settings)
    yield endpoints
    infra.down(settings)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short name unique to this test, usable as topic, database and group id."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:30]
    return f"{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(endpoints: infra.Endpoints, unique_name: str) -> str:
    """A fresh 3-partition topic."""
    name = f"t_{unique_name}"
    ensure_topic(endpoints.kafka_bootstrap, name, partitions=3)
    return name


@pytest.fixture
def group_id(unique_name: str) -> str:
    """A fresh consumer group id."""
    return f"g_{unique_name}"


@pytest.fixture(scope="session")
def mongo(endpoints: infra.Endpoints) -> Iterator[MongoClient]:
    """A client of the embedded MongoDB server."""
    client = mongo_client(endpoints.mongo_uri.get_secret_value())
    yield client
    client.close()


@pytest.fixture
def db(mongo: MongoClient, unique_name: str) -> Iterator[Database]:
    """A fresh database, dropped after the test."""
    name = f"d_{unique_name}"[:60]
    yield mongo[name]
    mongo.drop_database(name)


@pytest.fixture(scope="session")
def twb_validator() -> Path:
    """The official workbook validator from the shared folder (skips where it is absent)."""
    env = os.environ.get("SALES_STREAM_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared", Path("/work/shared")]
    shared = next((c for c in candidates if c.is_dir()), None)
    if shared is None:
        pytest.skip(f"no shared folder with the Tableau schema: tried {candidates}")
    script = shared / "tableau" / "validate_twb.py"
    if not script.is_file():
        pytest.skip(f"{script} not found: the TWB schema validator is not available")
    return script


def validate_twb(validator: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the workbook validator on ``args`` (files and options)."""
    return subprocess.run(
        [sys.executable, str(validator), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
