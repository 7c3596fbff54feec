"""The live extract's write cost as the extract grows: it must follow the new rows.

`HyperSink` writes batches of ``--batch`` new sales into extracts of growing size (the
sales of a 30-day backfill, written in large batches first). At each size, in the same
run, on files of the same size:

* ours: `HyperSink.write`: the lag and the new rows appended in place to the working file
  not published, id hashes instead of an anti-join, then the file hard-linked over the
  extract (``os.link`` + ``os.replace``);
* the previous design, as a baseline: the new rows appended in place to one working copy,
  then that copy copied whole to a temporary file renamed over the extract;
* the baseline's file copy alone: the part that follows the extract's size.

Target: ours at the largest size within 1.5x of the smallest. Medians of ``--repeats``
writes. Usage::

    python bench/hyper_sink.py [--sizes 20000,300000,1200000,3600000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from tableauhyperapi import HyperProcess

from sales_stream.events import SaleEvent
from sales_stream.extract import Writer, append_to_extract, documents_to_arrow, naive_utc
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.hyper import HyperSink
from sales_stream.stream import Batch

FLAT_TARGET = 1.5


def seconds(func: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def previous_design(
    hyper: HyperProcess, working: Path, published: Path, events: list[SaleEvent]
) -> None:
    """Append to the one working copy in place, then copy it whole over ``published``."""
    docs = [event.to_document() | {"ts": naive_utc(event.ts)} for event in events]
    table, _ = documents_to_arrow(docs)
    append_to_extract(hyper, working, table, writer=Writer.STREAM, skip_known=False)
    copy_publication(working, published)


def copy_publication(working: Path, published: Path) -> None:
    """The previous design's publication: a whole-file copy renamed over the extract."""
    scratch = published.with_name(".publish.tmp.hyper")
    shutil.copyfile(working, scratch)
    os.replace(scratch, published)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,300000,1200000,3600000")
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    per_size = 2 * args.repeats * args.batch
    total = sizes[-1] + len(sizes) * per_size
    generator = SaleGenerator(3)
    end = datetime(2026, 6, 1, tzinfo=UTC)
    events = list(generator.backfill(30, end=end, events_per_day=total // 30 + 1_000))[:total]
    print(f"{len(events):,} sales generated; new-row batches of {args.batch:,}")
    ours_ms: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sink = HyperSink(Path(tmp) / "sales.hyper")
        working, published = Path(tmp) / "baseline.work.hyper", Path(tmp) / "baseline.hyper"
        done = 0
        try:
            for size in sizes:
                while done < size:
                    step = min(size - done, 200_000)
                    sink.write(Batch.of(events[done : done + step]))
                    done += step
                shutil.copyfile(sink.path, working)  # the baseline's copy, of the same size
                ours, baseline, copy = [], [], []
                hyper = sink._hyper()
                for _ in range(args.repeats):
                    batch = events[done : done + args.batch]
                    ours.append(seconds(lambda b=batch: sink.write(Batch.of(b))))
                    done += args.batch
                    batch = events[done : done + args.batch]
                    baseline.append(
                        seconds(partial(previous_design, hyper, working, published, batch))
                    )
                    copy.append(seconds(lambda: copy_publication(working, published)))
                    done += args.batch
                ms = {
                    k: 1000 * statistics.median(v)
                    for k, v in (("ours", ours), ("baseline", baseline), ("copy", copy))
                }
                ours_ms[size] = ms["ours"]
                mb = sink.path.stat().st_size / 1e6
                print(
                    f"{size:>9,} rows ({mb:.0f} MB): ours {ms['ours']:.0f} ms | previous design "
                    f"{ms['baseline']:.0f} ms (of which the file copy {ms['copy']:.0f} ms) "
                    f"-> {ms['baseline'] / ms['ours']:.2f}x"
                )
        finally:
            sink.close()
    growth = ours_ms[sizes[-1]] / ours_ms[sizes[0]]
    verdict = "met" if growth <= FLAT_TARGET else "NOT MET"
    print(
        f"ours per batch, {sizes[-1]:,} rows vs {sizes[0]:,}: {growth:.2f}x "
        f"(target <= {FLAT_TARGET}x): {verdict}"
    )


if __name__ == "__main__":
    main()
