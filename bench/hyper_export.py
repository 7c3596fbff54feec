"""Hyper export speed on 200,000 sales, each stage against its physical limit, in one run.

Starts its own embedded MongoDB in a temporary state directory and stores the sales as the
consumer does (`MongoSink`: ``insert_many`` batches stamped with ``ingested_at``). Then:

(a) the Hyper-writing stage of the exporter (`write_extract`: Arrow → Parquet → ``COPY`` in
    the exporter's reused Hyper process, then ``os.replace``) vs a raw
    ``pantab.frame_to_hyper`` of the same Arrow table into a new file — target ≥ 0.5×;
(b) the whole export MongoDB → ``.hyper`` (`HyperExporter.full_export`) vs a raw read of the
    same documents (``list(find({}, batch_size=...))``, same client options) — target ≥ 0.7×;
(c) an incremental refresh bringing 1,000 new sales into the 200,000-row extract vs the
    full export — target < 10 %. It is measured in the steady state of ``export --watch``:
    one refresh every ``--interval`` seconds, each after 1,000 new sales were stored, so each
    one also re-reads the sales of the previous tick still inside the late window. ``sales``
    has no ``ingested_at`` index (only ``_id``), so each refresh scans it on the server.

Ratios are speeds (limit's time / ours): above 1 means faster than the limit. Usage::

    python bench/hyper_export.py [--docs 200000] [--repeats 3] [--interval 5]
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pantab
from tableauhyperapi import HyperProcess, Telemetry

from sales_stream import infra
from sales_stream.clients import mongo_client
from sales_stream.config import Settings
from sales_stream.export.hyper import DEFAULT_BATCH_SIZE, HyperExporter
from sales_stream.extract import (
    EXTRACT_TABLE,
    Writer,
    documents_to_arrow,
    read_extract,
    write_extract,
)
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sinks.mongo import MongoSink
from sales_stream.stream import Batch

DB = "bench_hyper"
INSERT_BATCH = 10_000
NEW_ROWS = 1_000


def seconds(func: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "OK" if ok else "UNDER TARGET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    generator = SaleGenerator(1)
    end = datetime(2026, 6, 1, tzinfo=UTC)
    events = list(generator.backfill(30, end=end, events_per_day=args.docs // 30 + 200))
    events = events[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = Settings(_env_file=None, mode="embedded", state_dir=work / "state")
        with infra.up(settings) as endpoints:
            uri = endpoints.mongo_uri.get_secret_value()
            client = mongo_client(uri, tz_aware=False)
            db = client[DB]
            sink = MongoSink(db)
            start = time.perf_counter()
            for i in range(0, len(events), INSERT_BATCH):
                sink.write(Batch.of(events[i : i + INSERT_BATCH]))
            insert_s = time.perf_counter() - start
            print(f"stored {len(events):,} sales in {insert_s:.1f} s (MongoSink, insert_many)")
            collection = db.sales
            path = work / "out" / "sales.hyper"
            with HyperExporter(uri, path, db=DB) as exporter:
                start = time.perf_counter()
                first = exporter.full_export()
                print(f"first full export: {time.perf_counter() - start:.2f} s")
                assert first.total_rows == len(events)

                # (b) whole export vs raw find, interleaved so both see the same load.
                raw_times, export_times = [], []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    docs = list(collection.find({}, batch_size=DEFAULT_BATCH_SIZE))
                    raw_times.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    exporter.full_export()
                    export_times.append(time.perf_counter() - start)
                raw_read, full = min(raw_times), min(export_times)

                # (a) the writing stage alone, on the same Arrow table.
                table, _ = documents_to_arrow(docs)
                del docs
                telemetry = Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU
                with HyperProcess(telemetry, parameters={"log_config": ""}) as hyper:
                    target = work / "a" / "ours.hyper"
                    target.parent.mkdir()
                    scratch = target.with_name(".ours.tmp.hyper")

                    def ours() -> None:
                        write_extract(hyper, scratch, table, writer=Writer.MONGODB, watermark=end)
                        os.replace(scratch, target)

                    write_times, pantab_times = [], []
                    for i in range(args.repeats):
                        write_times.append(seconds(ours))
                        raw_path = work / "a" / f"pantab{i}.hyper"
                        pantab_times.append(
                            seconds(
                                lambda p=raw_path: pantab.frame_to_hyper(
                                    table, p, table=EXTRACT_TABLE, atomic=False
                                )
                            )
                        )
                    write, raw_write = min(write_times), min(pantab_times)

                # (c) steady-state incremental refreshes of NEW_ROWS each.
                exporter.refresh()
                time.sleep(exporter.late_window.total_seconds())
                exporter.refresh()  # the full export's late window is behind us
                refresh_times = []
                for _ in range(args.repeats):
                    tick = time.monotonic()
                    sink.write(generator.events(NEW_ROWS), [])
                    result = exporter.refresh()
                    assert result.rows_added == NEW_ROWS, result
                    refresh_times.append(result.duration_s)
                    time.sleep(max(0.0, args.interval - (time.monotonic() - tick)))
                refresh = statistics.median(refresh_times)
                total = result.total_rows
            extract_rows = len(read_extract(path))
            client.close()

    n = len(events)
    print(f"extract: {extract_rows:,} rows (expected {total:,})")
    print(f"best of {args.repeats} runs; {n:,} documents")
    ratio_a = raw_write / write
    print(
        f"(a) Hyper writing stage: ours {write:.3f} s ({n / write:,.0f} rows/s) vs "
        f"pantab.frame_to_hyper {raw_write:.3f} s -> {ratio_a:.2f}x "
        f"(target >= 0.5x: {verdict(ratio_a >= 0.5)})"
    )
    ratio_b = raw_read / full
    print(
        f"(b) whole export Mongo -> .hyper: ours {full:.2f} s ({n / full:,.0f} docs/s) vs "
        f"raw find {raw_read:.2f} s -> {ratio_b:.2f}x (target >= 0.7x: {verdict(ratio_b >= 0.7)})"
    )
    share = refresh / full
    print(
        f"(c) refresh of {NEW_ROWS:,} new rows on {n:,}: median {refresh * 1000:.0f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in refresh_times)} ms) = {share:.1%} of a "
        f"full export (target < 10 %: {verdict(share < 0.10)})"
    )
    assert extract_rows == total


if __name__ == "__main__":
    main()
