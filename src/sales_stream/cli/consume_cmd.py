"""``consume``: run the Kafka → MongoDB consumer (and the rollups) in the foreground."""

from __future__ import annotations

import argparse

from sales_stream.cli.argtypes import non_negative_float, positive_int
from sales_stream.groups import MONGO_GROUP

PROGRESS_EVERY_S = 2.0
#: Longest wait, once the consumer stops, for the rollups to count what it stored.
ROLLUPS_CATCH_UP_S = 60.0


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
    from sales_stream.cli.streaming import progress_line, run_foreground
    from sales_stream.config import load_settings

    settings = load_settings()
    stack = Stack.from_settings(settings)
    stack.ensure_topic()
    runtime = stack.consumer(group_id=args.group)
    # The rollups follow the consumer in their own group (see `Stack.rollups`).
    rollups = (
        stack.rollups_worker(group_id=f"{args.group}-rollups") if settings.sql_rollups else None
    )
    kept = "sales, dead letters and rollups" if rollups else "sales and dead letters"
    print(
        f"consuming {settings.topic!r} into {settings.db} ({kept}) as group {args.group!r} "
        "(Ctrl-C to stop)",
        flush=True,
    )
    if rollups is not None:
        rollups.start(until_idle=args.until_idle)
    try:
        stats = run_foreground(
            runtime,
            until_idle=args.until_idle,
            max_events=args.max_events,
            every_s=PROGRESS_EVERY_S,
        )
        if rollups is not None:
            if args.until_idle is None or not rollups.wait(timeout=ROLLUPS_CATCH_UP_S):
                _catch_up(rollups, stats.consumed)
            print(progress_line(rollups.stop()), flush=True)
    finally:
        if rollups is not None:
            rollups.stop()
            rollups.runtime.close()
        stack.close()
    return 0


def _catch_up(rollups: object, consumed: int) -> None:
    """Give the rollups the time to count what the consumer stored before stopping them."""
    import time

    deadline = time.monotonic() + ROLLUPS_CATCH_UP_S
    while rollups.stats.consumed < consumed and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.2)
