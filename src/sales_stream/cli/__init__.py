"""Command-line interface: ``python -m sales_stream <command>``.

Each command lives in its own module exposing ``register(subparsers)``; errors that
users can fix print as one line (``error: ...``) with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sales_stream.cli import (
    consume_cmd,
    export_cmd,
    infra_cmds,
    lake_cmd,
    produce_cmd,
    run_cmd,
    sql_cmd,
)
from sales_stream.errors import SalesStreamError

COMMAND_MODULES = (run_cmd, infra_cmds, produce_cmd, consume_cmd, export_cmd, lake_cmd, sql_cmd)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="python -m sales_stream", description=__doc__.splitlines()[0]
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SalesStreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
