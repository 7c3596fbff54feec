"""``up``, ``down`` and ``status``: the infrastructure commands."""

from __future__ import annotations

import argparse
import signal
import threading

from sales_stream import infra
from sales_stream.config import Mode, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the infrastructure commands."""
    up = subparsers.add_parser("up", help="start the infrastructure and stay up until Ctrl-C")
    up.add_argument("--mode", choices=[m.value for m in Mode], help="override SALES_STREAM_MODE")
    up.set_defaults(func=_up)
    down = subparsers.add_parser("down", help="stop the infrastructure")
    down.add_argument("--mode", choices=[m.value for m in Mode])
    down.set_defaults(func=_down)
    status = subparsers.add_parser("status", help="show the running endpoints")
    status.add_argument("--mode", choices=[m.value for m in Mode])
    status.set_defaults(func=_status)


def print_endpoints(endpoints: infra.Endpoints) -> None:
    """Print the endpoints, one per line, passwords redacted."""
    for name, value in endpoints.describe().items():
        print(f"{name:>10}: {value}")


def _up(args: argparse.Namespace) -> int:
    settings = load_settings(mode=args.mode)
    endpoints = infra.up(settings)
    print_endpoints(endpoints)
    if not endpoints.started_here:
        print("already running (reused); stop with: python -m sales_stream down")
        return 0
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("up; press Ctrl-C to stop", flush=True)
    while not stop.wait(1.0):
        if infra.status(settings) is None:
            print("the servers were stopped (python -m sales_stream down)")
            break
    stopped = infra.down(settings)
    print(f"stopped: {', '.join(stopped) or 'nothing left running'}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = infra.down(load_settings(mode=args.mode))
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    endpoints = infra.status(load_settings(mode=args.mode))
    if endpoints is None:
        print("not running; start with: python -m sales_stream up")
        return 1
    print_endpoints(endpoints)
    return 0
