"""``consume``: run the Kafka → MongoDB consumer (and the rollups) in the foreground."""

from __future__ import annotations

import argparse

from sales_stream.cli.argtypes import non_negative_float, positive_int
from sales_stream.groups import MONGO_GROUP

PROGRESS_EVERY_S = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``consume`` command."""
    parser = subparsers.add_parser(
        "consume",
        help="consume the sales topic into MongoDB and its rollups (Ctrl-C stops gracefully)",
    )
    parser.add_argument("--group", default=MONGO_GROUP, help="consumer group id")
    parser.add_argument(
        "--until-idle",
        type=non_negative_float,
        metavar="SECONDS",
        help="stop after SECONDS without new messages",
    )
    parser.add_argument(
        "--max-events", type=positive_int, metavar="N", help="stop after N messages"
    )
    parser.set_defaults(func=_consume)


def _consume(args: argparse.Namespace) -> int:
    from sales_stream.app import Stack
    from sales_stream.cli.streaming import run_foreground
    from sales_stream.config import load_settings

    settings = load_settings()
    stack = Stack.from_settings(settings)
    stack.ensure_topic()
    runtime = stack.consumer(group_id=args.group)  # the rollups are in its chain
    kept = "sales, dead letters and rollups" if settings.sql_rollups else "sales and dead letters"
    print(
        f"consuming {settings.topic!r} into {settings.db} ({kept}) as group {args.group!r} "
        "(Ctrl-C to stop)",
        flush=True,
    )
    try:
        run_foreground(
            runtime,
            until_idle=args.until_idle,
            max_events=args.max_events,
            every_s=PROGRESS_EVERY_S,
        )
    finally:
        stack.close()
    return 0
