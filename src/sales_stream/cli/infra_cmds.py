"""``up``, ``down`` and ``status``: the infrastructure commands."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from sales_stream import infra
from sales_stream.config import Mode, Settings, load_settings

_MODES = [m.value for m in Mode]
#: Longest wait, at a stop, for the consumer groups to reach the end of the topic.
DRAIN_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the infrastructure commands."""
    up = subparsers.add_parser(
        "up", help="start the infrastructure (supervised) and stay up until Ctrl-C"
    )
    up.add_argument("--mode", choices=_MODES, help="override SALES_STREAM_MODE")
    up.set_defaults(func=_up)
    down = subparsers.add_parser(
        "down", help="let the consumer groups reach the end of the topic, then stop"
    )
    down.add_argument("--mode", choices=_MODES)
    down.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT_S,
        metavar="S",
        help="longest wait for the consumers to catch up (0: stop at once)",
    )
    down.set_defaults(func=_down)
    status = subparsers.add_parser("status", help="show the running endpoints")
    status.add_argument("--mode", choices=_MODES)
    status.set_defaults(func=_status)


def print_endpoints(endpoints: infra.Endpoints) -> None:
    """Print the endpoints, one per line, passwords redacted."""
    for name, value in endpoints.describe().items():
        print(f"{name:>10}: {value}")


def _up(args: argparse.Namespace) -> int:
    settings = load_settings(mode=args.mode)
    log = _supervisor_log(settings.state_dir) if settings.mode is Mode.EMBEDDED else None
    offset = log.stat().st_size if log is not None and log.exists() else 0
    endpoints = infra.up(settings)
    print_endpoints(endpoints)
    if not endpoints.started_here:
        print("already running (reused); stop with: python -m sales_stream down")
        return 0
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("up; press Ctrl-C to stop", flush=True)
    while not stop.wait(0.5):
        if log is not None:
            offset = _follow(log, offset)
        if infra.status(settings) is None and _stopped_for_good(settings):
            if log is not None:
                _follow(log, offset)
            print("the services are stopped")
            return 0
    stopped = _drain_then_down(settings, timeout_s=DRAIN_TIMEOUT_S)
    print(f"stopped: {', '.join(stopped) or 'nothing left running'}")
    return 0


def _supervisor_log(state_dir: Path) -> Path:
    return infra.embedded.log_files(state_dir)["supervisor"]


def _follow(log: Path, offset: int) -> int:
    """Print what the supervisor logged since ``offset``; return the new offset."""
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        return offset
    end = chunk.rfind(b"\n") + 1
    if end:
        sys.stdout.write(
            "".join(f"[supervisor] {line}\n" for line in chunk[:end].decode().splitlines())
        )
        sys.stdout.flush()
    return offset + end


def _stopped_for_good(settings: Settings) -> bool:
    """True once no supervisor runs (a restart in progress is not a stop)."""
    if settings.mode is not Mode.EMBEDDED:
        return True
    return not infra.embedded.supervisor_running(settings.state_dir)


def _drain_then_down(settings: Settings, *, timeout_s: float) -> list[str]:
    """Stop the kernels' producers, let the consumer groups catch up (embedded mode), stop."""
    from sales_stream.drain import drain

    endpoints = infra.status(settings) if settings.mode is Mode.EMBEDDED else None
    if endpoints is not None and timeout_s > 0:
        infra.embedded.stop_file(endpoints.state_dir).touch()
        drain(endpoints.kafka_bootstrap, settings.topic, timeout_s=timeout_s)
    stopped = infra.down(settings)
    if endpoints is not None:
        infra.embedded.stop_file(endpoints.state_dir).unlink(missing_ok=True)
    return stopped


def _down(args: argparse.Namespace) -> int:
    settings = load_settings(mode=args.mode)
    stopped = _drain_then_down(settings, timeout_s=args.drain_timeout)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    settings = load_settings(mode=args.mode)
    endpoints = infra.status(settings)
    if endpoints is None:
        if settings.mode is Mode.EMBEDDED and infra.embedded.supervisor_running(settings.state_dir):
            log = _supervisor_log(settings.state_dir)
            print(f"a server is restarting; see {log}")
        else:
            print("not running; start with: python -m sales_stream up")
        return 1
    print_endpoints(endpoints)
    return 0
