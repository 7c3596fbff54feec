"""``lake``: consume the topic into the Parquet data lake; ``lake compact``; ``lake tree``."""

from __future__ import annotations

import argparse
from datetime import date
from typing import TYPE_CHECKING

from sales_stream.cli.argtypes import positive_float, positive_int
from sales_stream.groups import LAKE_GROUP

if TYPE_CHECKING:
    from sales_stream.app import Stack
    from sales_stream.lake.layout import Lake, LakeLocation

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
    lake.add_argument(
        "--path",
        help="lake directory or URL (default: SALES_STREAM_LAKE; embedded: s3://lake/ on the "
        "embedded object store)",
    )
    lake.add_argument(
        "--until-idle", type=positive_float, metavar="S", help="run: stop after S idle seconds"
    )
    lake.add_argument("--max-events", type=positive_int, metavar="N", help="run: stop after N")
    lake.add_argument(
        "--flush-events", type=positive_int, metavar="N", help="run: flush size (default: settings)"
    )
    lake.add_argument(
        "--flush-seconds",
        type=positive_float,
        metavar="S",
        help="run: flush age (default: settings)",
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
    from sales_stream.app import Stack, lake_url, on_embedded_store
    from sales_stream.config import load_settings
    from sales_stream.errors import InfraError
    from sales_stream.lake.layout import open_lake

    settings = load_settings()
    url = lake_url(settings, args.path)
    if args.action != "run" and not on_embedded_store(settings, url):
        lake = open_lake(url)  # a folder or a store of its own: no service needed
        return _compact(lake, args.before) if args.action == "compact" else _tree(args, lake)
    endpoints = infra.status(settings)
    if endpoints is None:
        raise InfraError("not running; start the infrastructure with: python -m sales_stream up")
    stack = Stack(settings, endpoints)
    lake = stack.lake_location(url)
    if args.action == "compact":
        return _compact(lake, args.before)
    if args.action == "tree":
        return _tree(args, lake, browse=stack.lake_web_address(lake))
    return _run(args, stack, lake)


def _tree(args: argparse.Namespace, lake: Lake, *, browse: str | None = None) -> int:
    from sales_stream.lake.tree import partition_tree

    print(partition_tree(lake, max_lines=args.max_lines))
    print(_totals(lake))
    if browse:
        print(f"browse it at {browse}")
    return 0


def _totals(path: LakeLocation) -> str:
    from sales_stream.lake.tree import lake_stats

    stats = lake_stats(path)
    return (
        f"{stats['rows']} rows in {stats['files']} files, {stats['partitions']} partitions, "
        f"{stats['bytes']} bytes; {stats['dead_letters']} dead letters"
    )


def _compact(path: LakeLocation, before: date | None) -> int:
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


def _run(args: argparse.Namespace, stack: Stack, lake: Lake) -> int:
    from sales_stream.cli.streaming import run_foreground

    runtime = stack.lake(
        lake,
        group_id=args.group,
        flush_events=args.flush_events,
        flush_seconds=args.flush_seconds,
    )
    print(f"lake: {stack.settings.topic} -> {lake.url} (group {args.group}); Ctrl-C to stop")
    run_foreground(
        runtime, until_idle=args.until_idle, max_events=args.max_events, every_s=PROGRESS_EVERY_S
    )
    return 0
