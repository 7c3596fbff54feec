"""``consume``: run the Kafka → MongoDB consumer in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading

from sales_stream import infra
from sales_stream.cli.argtypes import non_negative_float, positive_int
from sales_stream.clients import ensure_topic, mongo_client
from sales_stream.config import load_settings
from sales_stream.consumer import DEFAULT_GROUP, ConsumerStats, MongoConsumer
from sales_stream.sinks.mongo import ensure_indexes

PROGRESS_EVERY_S = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``consume`` command."""
    parser = subparsers.add_parser(
        "consume", help="consume the sales topic into MongoDB (Ctrl-C stops gracefully)"
    )
    parser.add_argument("--group", default=DEFAULT_GROUP, help="consumer group id")
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


def progress_line(stats: ConsumerStats) -> str:
    """One line of progress for the terminal."""
    return (
        f"[consume] {stats.status}: consumed {stats.consumed}, stored {stats.stored}, "
        f"duplicates {stats.duplicates}, dead letters {stats.dead_lettered}, "
        f"batches {stats.batches}, lag {stats.total_lag}"
    )


def _consume(args: argparse.Namespace) -> int:
    settings = load_settings()
    endpoints = infra.up(settings)
    uri = endpoints.mongo_uri.get_secret_value()
    ensure_topic(endpoints.kafka_bootstrap, settings.topic, partitions=settings.partitions)
    client = mongo_client(uri)
    try:
        ensure_indexes(client[settings.db])
    finally:
        client.close()
    consumer = MongoConsumer(
        endpoints.kafka_bootstrap, settings.topic, uri, db=settings.db, group_id=args.group
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"consuming {settings.topic!r} into {settings.db}.sales as group {args.group!r} "
        "(Ctrl-C to stop)",
        flush=True,
    )
    done = threading.Event()
    reporter = threading.Thread(target=_report, args=(consumer, done), daemon=True)
    reporter.start()
    try:
        stats = consumer.run(until_idle=args.until_idle, max_events=args.max_events, stop=stop)
    finally:
        done.set()
        reporter.join()
    print(progress_line(stats), flush=True)
    if stats.last_error:
        print(f"last error: {stats.last_error}", flush=True)
    return 0


def _report(consumer: MongoConsumer, done: threading.Event) -> None:
    while not done.wait(PROGRESS_EVERY_S):
        print(progress_line(consumer.stats), flush=True)
