"""``produce``: send generated sales to the Kafka topic, optionally after a history backfill."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from sales_stream.cli.argtypes import positive_int

if TYPE_CHECKING:  # the heavy modules load only when the command runs
    from sales_stream.produce.stats import ProducerStats

PROGRESS_EVERY_S = 1.0


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1_000_000:
        raise argparse.ArgumentTypeError(f"must be in (0, 1000000] events/s, got {text}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``produce`` command."""
    parser = subparsers.add_parser(
        "produce",
        help="send generated sales to Kafka (live, after an optional history backfill)",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
    )
    parser.add_argument(
        "--count", type=_int_at_least(0), default=1000, help="live events to send (0: none)"
    )
    parser.add_argument("--rate", type=_rate, default=50.0, help="live events per second")
    parser.add_argument("--seed", type=int, help="seed of the generator (default: random)")
    parser.add_argument(
        "--bad-ratio", type=_ratio, default=0.0, help="fraction of malformed live messages"
    )
    parser.add_argument(
        "--backfill-days",
        type=_int_at_least(0),
        default=0,
        help="first send this many days of history, as fast as possible",
    )
    parser.add_argument(
        "--events-per-day",
        type=positive_int,
        default=None,
        help="average events per day of the backfilled history "
        "(default: the generator's DEFAULT_EVENTS_PER_DAY)",
    )
    parser.set_defaults(func=_produce)


def _produce(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from sales_stream import infra
    from sales_stream.clients import ensure_topic
    from sales_stream.config import Mode, load_settings
    from sales_stream.errors import InfraError
    from sales_stream.produce.backfill import backfill
    from sales_stream.produce.delivery import describe_error
    from sales_stream.produce.generator import DEFAULT_EVENTS_PER_DAY

    settings = load_settings()
    endpoints = infra.up(settings)
    if endpoints.started_here and settings.mode is Mode.EMBEDDED:
        print(
            "note: the embedded servers were started for this command and stop when it ends "
            "(Kafka keeps messages in memory); keep them up with: python -m sales_stream up"
        )
    bootstrap, topic = endpoints.kafka_bootstrap, settings.topic
    try:
        ensure_topic(bootstrap, topic, partitions=settings.partitions)
    except KafkaError as exc:
        raise InfraError(describe_error(bootstrap, exc)) from exc
    except (TimeoutError, ValueError) as exc:
        raise InfraError(str(exc)) from exc
    print(f"producing to topic {topic!r} at {bootstrap}", flush=True)
    failed = 0
    events_per_day = args.events_per_day or DEFAULT_EVENTS_PER_DAY
    if args.backfill_days:
        print(
            f"backfill: {args.backfill_days} day(s) of history, ~{events_per_day} events/day ...",
            flush=True,
        )
        stats = backfill(
            bootstrap,
            topic,
            days=args.backfill_days,
            events_per_day=events_per_day,
            seed=args.seed,
        )
        _print_summary("backfill", stats)
        failed += stats.failed
    if args.count:
        stats = _produce_live(args, bootstrap, topic)
        failed += stats.failed
    return 1 if failed else 0


def _produce_live(args: argparse.Namespace, bootstrap: str, topic: str) -> ProducerStats:
    from sales_stream.errors import InfraError
    from sales_stream.produce.producer import ProducerThread

    thread = ProducerThread(
        bootstrap,
        topic,
        rate=args.rate,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        max_events=args.count,
    )
    print(f"live: {args.count} events at {args.rate:g}/s, bad ratio {args.bad_ratio:g}", flush=True)
    thread.start()
    try:
        while not thread.wait(PROGRESS_EVERY_S):
            stats = thread.stats
            print(
                f"  sent {stats.sent}/{args.count}  acked {stats.acked}  failed {stats.failed}"
                f"  rate {stats.current_rate:.1f}/s",
                flush=True,
            )
    except KeyboardInterrupt:
        _print_summary("live (interrupted)", thread.stop())
        raise
    stats = thread.stop()
    if stats.state == "failed":
        raise InfraError(stats.last_error or "the producer failed")
    _print_summary("live", stats)
    return stats


def _print_summary(name: str, stats: ProducerStats) -> None:
    print(
        f"{name}: sent {stats.sent} (valid {stats.valid_sent}, malformed {stats.bad_sent}), "
        f"acked {stats.acked}, failed {stats.failed}, "
        f"achieved {stats.average_rate:.1f} events/s over {stats.elapsed_s:.1f} s",
        flush=True,
    )
    if stats.last_error:
        print(f"{name}: last error: {stats.last_error}", flush=True)
