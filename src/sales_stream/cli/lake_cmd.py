"""``lake``: consume the topic into the Parquet data lake; ``lake compact``; ``lake tree``."""

from __future__ import annotations

import argparse
from datetime import date

from sales_stream.cli.argtypes import positive_float, positive_int
from sales_stream.groups import LAKE_GROUP

#: Seconds between two progress lines while the sink runs.
PROGRESS_EVERY_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``lake`` command."""
    lake = subparsers.add_parser(
        "lake",
        help="store the topic as partitioned Parquet (run), merge small files (compact), "
        "or show the lake (tree)",
    )
    lake.add_argument(
        "action",
        nargs="?",
        choices=("run", "compact", "tree"),
        default="run",
        help="run (default): consume into the lake; compact: merge the files of closed "
        "partitions; tree: show the lake",
    )
    lake.add_argument("--path", help="lake directory or URL (default: SALES_STREAM_LAKE, 'lake')")
    lake.add_argument(
        "--until-idle", type=positive_float, metavar="S", help="run: stop after S idle seconds"
    )
    lake.add_argument("--max-events", type=positive_int, metavar="N", help="run: stop after N")
    lake.add_argument(
        "--flush-events", type=positive_int, default=10_000, metavar="N", help="run: flush size"
    )
    lake.add_argument(
        "--flush-seconds", type=positive_float, default=30.0, metavar="S", help="run: flush age"
    )
    lake.add_argument("--group", default=LAKE_GROUP, help="run: consumer group")
    lake.add_argument(
        "--before",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="compact: partitions dated before this day (default: today UTC)",
    )
    lake.add_argument("--max-lines", type=positive_int, default=40, help="tree: longest output")
    lake.set_defaults(func=_lake)


def _lake(args: argparse.Namespace) -> int:
    from sales_stream import infra
    from sales_stream.config import load_settings
    from sales_stream.errors import InfraError
    from sales_stream.lake.tree import partition_tree

    settings = load_settings()
    path = args.path or settings.lake
    if args.action == "compact":
        return _compact(path, args.before)
    if args.action == "tree":
        print(partition_tree(path, max_lines=args.max_lines))
        print(_totals(path))
        return 0
    endpoints = infra.status(settings)
    if endpoints is None:
        raise InfraError("not running; start the infrastructure with: python -m sales_stream up")
    return _run(args, settings, endpoints, path)


def _totals(path: str) -> str:
    from sales_stream.lake.tree import lake_stats

    stats = lake_stats(path)
    return (
        f"{stats['rows']} rows in {stats['files']} files, {stats['partitions']} partitions, "
        f"{stats['bytes']} bytes; {stats['dead_letters']} dead letters"
    )


def _compact(path: str, before: date | None) -> int:
    from sales_stream.errors import SalesStreamError
    from sales_stream.lake.compaction import compact

    try:
        results = compact(path, before=before)
    except ValueError as exc:
        raise SalesStreamError(str(exc)) from None
    changed = [r for r in results if r.files_after < r.files_before]
    for r in changed:
        print(f"{r.date} {r.region}: {r.files_before} -> {r.files_after} files, {r.rows} rows")
    merged = sum(r.files_before - r.files_after for r in changed)
    print(f"compacted {len(changed)} of {len(results)} closed partitions ({merged} files fewer)")
    return 0


def _run(args: argparse.Namespace, settings: object, endpoints: object, path: str) -> int:
    from sales_stream.app import Stack
    from sales_stream.cli.streaming import run_foreground

    stack = Stack(settings, endpoints)  # type: ignore[arg-type]
    runtime = stack.lake(
        path,
        group_id=args.group,
        flush_events=args.flush_events,
        flush_seconds=args.flush_seconds,
    )
    print(f"lake: {stack.settings.topic} -> {path} (group {args.group}); Ctrl-C to stop")
    run_foreground(
        runtime, until_idle=args.until_idle, max_events=args.max_events, every_s=PROGRESS_EVERY_S
    )
    return 0
