"""The live extract's write cost as the extract grows: it must follow the new rows.

`HyperSink` writes batches of ``--batch`` new sales into extracts of growing size (the
sales of a 30-day backfill, written in large batches first). At each size, in the same
run, on the same file:

* ours: `HyperSink.write` (append in place to the working copy, id hashes instead of an
  anti-join, then the atomic publication: file copy + ``os.replace``);
* its publication alone (``shutil.copyfile`` + ``os.replace`` of the same file): the part
  that follows the file's size by design;
* the previous design, as a baseline: copy the published file, append with the anti-join
  on ``event_id`` over the whole table, publish the copy.

Target: ours, Hyper work only (ours minus its publication), at the largest size within 1.5×
of the smallest. Medians of ``--repeats`` writes. Usage::

    python bench/hyper_sink.py [--sizes 20000,300000,1200000] [--batch 1000] [--repeats 5]
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
from pathlib import Path

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


def previous_design(sink: HyperSink, events: list[SaleEvent]) -> None:
    """Copy the published extract, append with the anti-join, publish the copy."""
    docs = [event.to_document() | {"ts": naive_utc(event.ts)} for event in events]
    table, _ = documents_to_arrow(docs)
    scratch = sink.path.with_name(".baseline.tmp.hyper")
    shutil.copyfile(sink.path, scratch)
    append_to_extract(sink._hyper(), scratch, table, writer=Writer.STREAM)
    os.replace(scratch, sink.path)


def publication(path: Path) -> None:
    """What our publication does to a file of this size."""
    scratch = path.with_name(".publish.tmp.hyper")
    shutil.copyfile(path, scratch)
    os.replace(scratch, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,300000,1200000")
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
    ours_hyper: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sink = HyperSink(Path(tmp) / "sales.hyper")
        done = 0
        try:
            for size in sizes:
                while done < size:
                    step = min(size - done, 200_000)
                    sink.write(Batch.of(events[done : done + step]))
                    done += step
                ours, baseline, publish = [], [], []
                for _ in range(args.repeats):
                    batch = events[done : done + args.batch]
                    ours.append(seconds(lambda b=batch: sink.write(Batch.of(b))))
                    publish.append(seconds(lambda: publication(sink.path)))
                    done += args.batch
                for _ in range(args.repeats):
                    batch = events[done : done + args.batch]
                    baseline.append(seconds(lambda b=batch: previous_design(sink, b)))
                    done += args.batch
                sink.close()  # the baseline wrote behind the sink's back: start it afresh
                ms = {
                    k: 1000 * statistics.median(v)
                    for k, v in (("ours", ours), ("publish", publish), ("baseline", baseline))
                }
                ours_hyper[size] = ms["ours"] - ms["publish"]
                mb = sink.path.stat().st_size / 1e6
                print(
                    f"{size:>9,} rows ({mb:.0f} MB): ours {ms['ours']:.0f} ms "
                    f"(Hyper {ours_hyper[size]:.0f} ms + publication {ms['publish']:.0f} ms) | "
                    f"previous design {ms['baseline']:.0f} ms -> {ms['baseline'] / ms['ours']:.2f}x"
                )
        finally:
            sink.close()
    growth = ours_hyper[sizes[-1]] / ours_hyper[sizes[0]]
    verdict = "met" if growth <= FLAT_TARGET else "NOT MET"
    print(
        f"Hyper work per batch, {sizes[-1]:,} rows vs {sizes[0]:,}: {growth:.2f}x "
        f"(target <= {FLAT_TARGET}x): {verdict}"
    )


if __name__ == "__main__":
    main()
