"""``export``: MongoDB → Hyper extract and its workbooks, once or every few seconds.

``--hyper X`` maintains the extract ``X`` and writes its workbooks beside it (``X.twb`` reading
``X``, and ``X.twbx`` packaging both); ``--publish`` sends them to Tableau Cloud/Server
(``--share-with USER`` grants USER View access; with ``--watch``, later publications send only
the new rows). ``--snapshot Y.twbx`` writes the reproducible packaged workbook committed in the
repository, from generated sales (no server needed).

The extract is read from MongoDB (`HyperExporter`): ``sales`` carries no index but ``_id``, so
each refresh is one server-side scan, fine for an occasional export. The live extract of
``make run`` and the notebooks is fed from Kafka instead (`sales_stream.app.Stack.hyper_worker`);
each extract has one writer, so ``export`` refuses that one (`ExtractOwnedError`).

Heavy modules are imported inside the commands so that ``python -m sales_stream`` starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sales_stream.cli.argtypes import positive_float, positive_int

if TYPE_CHECKING:
    from sales_stream.export.hyper import RefreshResult
    from sales_stream.export.publish import PublishResult, WatchPublisher


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export", help="export the sales to a Tableau Hyper extract and workbooks (incremental)"
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--hyper",
        type=Path,
        metavar="PATH",
        help="the .hyper file to maintain (PATH.twb and PATH.twbx are written beside it)",
    )
    target.add_argument(
        "--snapshot",
        type=Path,
        metavar="TWBX",
        help="write a packaged workbook over generated sales (seeded, no server) and exit",
    )
    parser.add_argument(
        "--watch",
        type=positive_float,
        metavar="SECONDS",
        help="refresh every SECONDS until Ctrl-C (default: refresh once and exit)",
    )
    parser.add_argument(
        "--full", action="store_true", help="rebuild the extract from scratch first"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="publish the extract and PATH.twbx to Tableau Cloud/Server after each refresh that "
        "added rows (needs TABLEAU_SERVER_URL, TABLEAU_SITE, TABLEAU_PAT_NAME, "
        "TABLEAU_PAT_SECRET)",
    )
    parser.add_argument(
        "--share-with",
        metavar="USER",
        help="with --publish: grant the site user USER View on the project, workbook and "
        "data source",
    )
    parser.add_argument(
        "--project", default="default", help="Tableau project to publish into (default: default)"
    )
    parser.add_argument(
        "--seed", type=int, help="with --snapshot: generator seed (default: the committed one)"
    )
    parser.add_argument(
        "--days", type=positive_int, help="with --snapshot: days of history (default: 14)"
    )
    parser.set_defaults(func=_export)


def result_line(result: RefreshResult) -> str:
    """One line describing a refresh, for the terminal."""
    kind = "full export" if result.full else "refresh"
    skipped = f", {result.skipped} malformed skipped" if result.skipped else ""
    return (
        f"[export] {kind}: +{result.rows_added} rows, {result.total_rows} in total, "
        f"{result.duration_s:.2f} s, watermark {result.watermark:%Y-%m-%d %H:%M:%S} UTC{skipped}"
    )


def publish_line(result: PublishResult) -> str:
    """One line describing a publication, for the terminal."""
    if result.rows_sent is not None:
        return f"[publish] data source {result.datasource_id}: +{result.rows_sent} rows appended"
    workbook = f", workbook {result.workbook_id}" if result.workbook_id else ""
    shared = f", View granted to {result.shared_with}" if result.shared_with else ""
    return f"[publish] data source {result.datasource_id}{workbook}{shared}"


def _export(args: argparse.Namespace) -> int:
    from sales_stream.errors import SalesStreamError

    if args.snapshot is not None:
        if args.watch is not None or args.full or args.publish:
            raise SalesStreamError("--snapshot takes no --watch, --full or --publish")
        if args.snapshot.suffix != ".twbx":
            raise SalesStreamError(f"--snapshot needs a .twbx path, got {args.snapshot}")
        return _snapshot(args)
    if args.share_with is not None and not args.publish:
        raise SalesStreamError("--share-with only makes sense with --publish")
    if args.seed is not None or args.days is not None:
        raise SalesStreamError("--seed and --days only make sense with --snapshot")
    return _maintain(args)


def _snapshot(args: argparse.Namespace) -> int:
    from sales_stream.export import snapshot

    options = {"seed": args.seed, "days": args.days}
    result = snapshot.write_snapshot(
        args.snapshot, **{k: v for k, v in options.items() if v is not None}
    )
    print(
        f"[snapshot] {result.path}: {result.rows} sales from {result.first:%Y-%m-%d %H:%M} "
        f"to {result.last:%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    return 0


def _maintain(args: argparse.Namespace) -> int:
    import signal
    import threading

    from pymongo.errors import PyMongoError
    from tableauhyperapi import HyperException

    from sales_stream import infra
    from sales_stream.config import load_settings
    from sales_stream.errors import SalesStreamError
    from sales_stream.export.hyper import HyperExporter
    from sales_stream.export.package import write_workbooks
    from sales_stream.export.publish import PublishSettings, WatchPublisher

    export_errors = (PyMongoError, HyperException, OSError)
    publisher = None
    if args.publish:
        publisher = WatchPublisher(
            PublishSettings.from_env(), project=args.project, share_with=args.share_with
        )
    settings = load_settings()
    endpoints = infra.up(settings)
    stop = threading.Event()
    if args.watch is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    with HyperExporter(endpoints.mongo_uri.get_secret_value(), args.hyper, db=settings.db) as ex:
        print(f"exporting {settings.db}.sales to {ex.path}", flush=True)
        first = True
        unpublished = publisher is not None
        while True:
            try:
                result = ex.full_export() if first and args.full else ex.refresh()
                if first or result.rows_added:
                    books = write_workbooks(ex.path)
            except export_errors as exc:
                if args.watch is None:
                    raise SalesStreamError(f"export failed: {exc}") from exc
                print(f"[export] failed, retrying in {args.watch:g} s: {exc}", flush=True)
            else:
                print(result_line(result), flush=True)
                if first:
                    print(f"[export] workbooks {books.twb} and {books.twbx}", flush=True)
                if publisher is not None and (unpublished or result.rows_added):
                    unpublished = not _publish(
                        publisher, ex.path, books.twbx, watching=args.watch is not None
                    )
            first = False
            if args.watch is None or stop.wait(args.watch):
                return 0


def _publish(publisher: WatchPublisher, hyper: Path, twbx: Path, *, watching: bool) -> bool:
    """Publish; return whether it worked (a failure raises unless ``watching`` and transient).

    A missing project or user (`ConfigError`) always stops: retrying cannot fix it.
    """
    from sales_stream.errors import ConfigError, SalesStreamError

    try:
        outcome = publisher.push(hyper, workbook_path=twbx)
    except ConfigError:
        raise
    except (SalesStreamError, OSError) as exc:
        if not watching:
            raise
        print(f"[publish] failed, retrying after the next refresh: {exc}", flush=True)
        return False
    if outcome is not None:
        print(publish_line(outcome), flush=True)
    return True
