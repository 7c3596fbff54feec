"""``export``: MongoDB → Hyper extract, once or every few seconds, optionally published."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from pymongo.errors import PyMongoError
from tableauhyperapi import HyperException

from sales_stream import infra
from sales_stream.cli.argtypes import positive_float
from sales_stream.config import load_settings
from sales_stream.errors import SalesStreamError
from sales_stream.export.hyper import HyperExporter, RefreshResult
from sales_stream.export.publish import PublishSettings, publish

_EXPORT_ERRORS = (PyMongoError, HyperException, OSError)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export", help="export the sales to a Tableau Hyper extract (incremental)"
    )
    parser.add_argument(
        "--hyper", type=Path, required=True, metavar="PATH", help="the .hyper file to maintain"
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
        help="publish to Tableau Cloud/Server after each refresh that added rows "
        "(needs TABLEAU_SERVER_URL, TABLEAU_SITE, TABLEAU_PAT_NAME, TABLEAU_PAT_SECRET)",
    )
    parser.add_argument(
        "--workbook", type=Path, metavar="TWB", help="also publish this workbook (with --publish)"
    )
    parser.add_argument(
        "--project", default="default", help="Tableau project to publish into (default: default)"
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


def _export(args: argparse.Namespace) -> int:
    if args.workbook is not None and not args.publish:
        raise SalesStreamError("--workbook only makes sense with --publish")
    publish_settings = PublishSettings.from_env() if args.publish else None
    settings = load_settings()
    endpoints = infra.up(settings)
    stop = threading.Event()
    if args.watch is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    with HyperExporter(endpoints.mongo_uri.get_secret_value(), args.hyper, db=settings.db) as ex:
        print(f"exporting {settings.db}.sales to {ex.path}", flush=True)
        first = True
        unpublished = publish_settings is not None
        while True:
            try:
                result = ex.full_export() if first and args.full else ex.refresh()
            except _EXPORT_ERRORS as exc:
                if args.watch is None:
                    raise SalesStreamError(f"export failed: {exc}") from exc
                print(f"[export] failed, retrying in {args.watch:g} s: {exc}", flush=True)
            else:
                print(result_line(result), flush=True)
                if publish_settings is not None and (unpublished or result.rows_added):
                    unpublished = not _publish(
                        args, publish_settings, watching=args.watch is not None
                    )
            first = False
            if args.watch is None or stop.wait(args.watch):
                return 0


def _publish(args: argparse.Namespace, settings: PublishSettings, *, watching: bool) -> bool:
    """Publish; return whether it worked (a failure raises unless ``watching``)."""
    try:
        outcome = publish(
            args.hyper, workbook_path=args.workbook, project=args.project, settings=settings
        )
    except (SalesStreamError, OSError) as exc:
        if not watching:
            raise
        print(f"[publish] failed, retrying after the next refresh: {exc}", flush=True)
        return False
    workbook = f", workbook {outcome.workbook_id}" if outcome.workbook_id else ""
    print(f"[publish] data source {outcome.datasource_id}{workbook}", flush=True)
    return True
