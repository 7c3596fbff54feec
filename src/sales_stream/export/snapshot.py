"""The committed workbook snapshot: a packaged workbook over a seeded, generated history.

`write_snapshot` needs no server: it generates ``days`` days of sales with
`sales_stream.produce.generator.SaleGenerator` (fixed seed and end date, so the same arguments give
the same rows), writes them to a Hyper extract with `sales_stream.extract.write_extract`
(the extract layout of the live exporter) and packages it with the extract workbook. Command:
``python -m sales_stream export --snapshot tableau/ventes.twbx``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sales_stream.export.package import write_packaged_workbook
from sales_stream.extract import Writer, documents_to_arrow, start_hyper, write_extract
from sales_stream.produce.generator import SaleGenerator

__all__ = ["SNAPSHOT_DAYS", "SNAPSHOT_END", "SNAPSHOT_SEED", "Snapshot", "write_snapshot"]

SNAPSHOT_SEED = 2026
SNAPSHOT_DAYS = 14
SNAPSHOT_EVENTS_PER_DAY = 300
SNAPSHOT_END = datetime(2026, 11, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Snapshot:
    """What `write_snapshot` wrote."""

    path: Path
    rows: int
    first: datetime
    last: datetime


def write_snapshot(
    path: Path,
    *,
    seed: int = SNAPSHOT_SEED,
    days: int = SNAPSHOT_DAYS,
    events_per_day: int = SNAPSHOT_EVENTS_PER_DAY,
    end: datetime = SNAPSHOT_END,
) -> Snapshot:
    """Write a ``.twbx`` whose extract holds ``days`` generated days of sales before ``end``.

    Raises:
        ValueError: ``path`` is not a ``.twbx``, or ``days``/``events_per_day`` < 1.
    """
    path = Path(path)
    if path.suffix != ".twbx":
        raise ValueError(f"path must be a .twbx file, got {path}")
    events = list(SaleGenerator(seed).backfill(days, end=end, events_per_day=events_per_day))
    table, skipped = documents_to_arrow([event.to_document() for event in events])
    if skipped:
        raise ValueError(f"the generator produced {skipped} unexportable sale(s)")
    with tempfile.TemporaryDirectory(prefix="sales-stream-snapshot-") as scratch:
        extract = Path(scratch) / "ventes.hyper"
        with start_hyper() as hyper:
            write_extract(hyper, extract, table, writer=Writer.SNAPSHOT)
        write_packaged_workbook(path, extract_path=extract)
    return Snapshot(path=path, rows=table.num_rows, first=events[0].ts, last=events[-1].ts)
