"""``run``: the main job behind ``make run``."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

_OPTIONS = (
    "out_dir",
    "backfill_days",
    "events_per_day",
    "live_seconds",
    "speedup",
    "bad_ratio",
    "seed",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` command."""
    # Defaults live in `sales_stream.pipeline.RunConfig` (imported only when the job runs).
    run = subparsers.add_parser(
        "run", help="run the whole pipeline on a fresh embedded instance, then the notebooks"
    )
    run.add_argument("--out", dest="out_dir", type=Path, help="output folder (default: out)")
    run.add_argument("--backfill-days", type=int)
    run.add_argument("--events-per-day", type=int)
    run.add_argument("--live-seconds", type=float)
    run.add_argument(
        "--speedup", type=float, help="simulated seconds per real second of the live phase"
    )
    run.add_argument("--bad-ratio", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--no-notebooks", action="store_true", help="skip executing the notebooks")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sales_stream import pipeline
    from sales_stream.config import load_settings

    base = load_settings()
    # The run wipes its instance, so it gets its own state directory beside the default one;
    # the notebooks' kernels (children of this process) find it through the environment.
    settings = base.model_copy(update={"state_dir": base.state_dir / "run"})
    os.environ["SALES_STREAM_STATE_DIR"] = str(settings.state_dir.resolve())
    given = {name: getattr(args, name) for name in _OPTIONS}
    config = pipeline.RunConfig(
        **{name: value for name, value in given.items() if value is not None},
        run_notebooks=not args.no_notebooks,
    )
    pipeline.run(settings, config, progress=_stamped)
    return 0


def _stamped(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)
