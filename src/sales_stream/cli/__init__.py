"""Command-line interface: ``python -m sales_stream <command>``.

Each command lives in its own module exposing ``register(subparsers)``. Only the module of
the command being run is imported (``--help`` imports none), so a command never pays for
another's dependencies; errors that users can fix print as one line (``error: ...``) with
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sales_stream.errors import SalesStreamError

#: Command → (module in this package, one-line help for the command list).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run_cmd", "run the whole pipeline on a fresh embedded instance, then the notebooks"),
    "up": ("infra_cmds", "start the infrastructure (supervised) and stay up until Ctrl-C"),
    "down": ("infra_cmds", "stop the infrastructure"),
    "status": ("infra_cmds", "show the running endpoints"),
    "produce": ("produce_cmd", "send generated sales to Kafka (optional history backfill)"),
    "consume": ("consume_cmd", "consume the sales topic into MongoDB (Ctrl-C stops gracefully)"),
    "export": ("export_cmd", "export the sales to a Tableau Hyper extract (incremental)"),
    "lake": ("lake_cmd", "store the topic as partitioned Parquet, compact it, or show it"),
    "sql": ("sql_cmd", "the PostgreSQL endpoint for Tableau (embedded)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser; only ``command``'s module registers its full arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m sales_stream", description=__doc__.splitlines()[0]
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    loaded = COMMANDS[command][0] if command in COMMANDS else None
    if loaded is not None:
        importlib.import_module(f"{__name__}.{loaded}").register(subparsers)
    for name, (module, help_text) in COMMANDS.items():
        if module != loaded:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(argv)
        return int(args.func(args) or 0)
    except SalesStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
