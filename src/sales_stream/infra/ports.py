"""The embedded services' ports: chosen once per state directory, reused at every start.

A Tableau live connection, a bookmark of the filer's page or a client's bootstrap address
keep working across ``down``/``up``. The choice is ``<state dir>/ports.json``; a port that
another program took since is reported in one line naming it and its service.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sales_stream.errors import ConfigError

PORTS_FILE = "ports.json"
#: Every port of the embedded services, and what listens there.
SERVICES = {
    "kafka": "the Kafka broker",
    "mongo": "MongoDB",
    "sql": "the PostgreSQL endpoint (Tableau)",
    "s3": "the S3 object store",
    "s3_grpc": "the S3 object store (gRPC)",
    "s3_master": "the object store's master",
    "s3_master_grpc": "the object store's master (gRPC)",
    "s3_volume": "the object store's volume server",
    "s3_volume_grpc": "the object store's volume server (gRPC)",
    "s3_filer": "the object store's filer",
    "s3_filer_grpc": "the object store's filer (gRPC)",
}


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stable_ports(state_dir: Path, *, sql_port: int | None) -> dict[str, int]:
    """The ports of ``state_dir`` (chosen and recorded on first use); ``sql_port`` overrides."""
    path = state_dir / PORTS_FILE
    try:
        ports = {k: int(v) for k, v in json.loads(path.read_text()).items() if k in SERVICES}
    except (OSError, ValueError, AttributeError):
        ports = {}
    if sql_port:
        ports["sql"] = sql_port
    for name in SERVICES:
        while name not in ports:
            port = free_port()
            if port not in ports.values():
                ports[name] = port
    tmp = path.with_name(f".{PORTS_FILE}.tmp")
    tmp.write_text(json.dumps(ports, indent=2))
    tmp.replace(path)
    return ports


def require_free(ports: dict[str, int], *, sql_host: str) -> None:
    """Raise `ConfigError` naming the first port of ``ports`` that another program holds."""
    for name, port in ports.items():
        host = sql_host if name == "sql" else "127.0.0.1"
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                setting = "SALES_STREAM_SQL_PORT: " if name == "sql" else ""
                raise ConfigError(
                    f"{setting}port {port} on {host} ({SERVICES[name]}) is taken "
                    f"({exc.strerror}): stop what uses it, or delete ports.json in the state "
                    "directory to choose new ports"
                ) from None
