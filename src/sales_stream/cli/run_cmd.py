"""``run``: the main job behind ``make run``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from sales_stream import pipeline
from sales_stream.config import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` command."""
    defaults = pipeline.RunConfig()
    run = subparsers.add_parser(
        "run", help="run the whole pipeline on a fresh embedded instance, then the notebooks"
    )
    run.add_argument("--out", type=Path, default=defaults.out_dir, help="output folder")
    run.add_argument("--backfill-days", type=int, default=defaults.backfill_days)
    run.add_argument("--events-per-day", type=int, default=defaults.events_per_day)
    run.add_argument("--live-seconds", type=float, default=defaults.live_seconds)
    run.add_argument("--rate", type=float, default=defaults.rate, help="live sales per second")
    run.add_argument("--bad-ratio", type=float, default=defaults.bad_ratio)
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--no-notebooks", action="store_true", help="skip executing the notebooks")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    base = load_settings()
    # The run wipes its instance, so it gets its own state directory beside the default one.
    settings = base.model_copy(update={"state_dir": base.state_dir / "run"})
    config = pipeline.RunConfig(
        out_dir=args.out,
        backfill_days=args.backfill_days,
        events_per_day=args.events_per_day,
        live_seconds=args.live_seconds,
        rate=args.rate,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        run_notebooks=not args.no_notebooks,
    )
    pipeline.run(settings, config, progress=_stamped)
    return 0


def _stamped(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)
