"""The live Tableau extract: each batch of the stream appended to a Hyper file, no MongoDB scan.

`HyperSink` (a `sales_stream.stream.Sink`) has its own runtime (group ``sales-hyper``,
`sales_stream.app.Stack.hyper`). One row per sale, as in MongoDB: a re-read batch, a re-sent
sale or a conflicting version of one adds nothing. Hyper's work follows the new rows, not the
extract's size: the sink appends in place to a private working copy and finds duplicates by
the hashes of its ids (`sales_stream.sinks.id_hashes.IdHashes`); each write then publishes the
copy atomically (`os.replace`), paced by `Settings.hyper_write_share`. The published extract is
the truth, owned by the stream (`Writer.STREAM`). See ``bench/hyper_sink.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq
from tableauhyperapi import Connection, HyperProcess, escape_string_literal

from sales_stream.extract import (
    ARROW_SCHEMA,
    EXTRACT_TABLE,
    Writer,
    append_to_extract,
    documents_to_arrow,
    extract_writer,
    naive_utc,
    scratch_name,
    start_hyper,
    write_extract,
)
from sales_stream.sinks.id_hashes import IdHashes
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import HYPER_SERVICE, SinkResult, SinkUnavailable

__all__ = ["HyperSink"]

log = logging.getLogger(__name__)


class HyperSink:
    """Appends each batch's new sales to the extract and publishes it; see the module doc.

    Args:
        hyper_path: The published extract (``.hyper``); its folder is created if needed.
    """

    name = "hyper"

    def __init__(self, hyper_path: Path | str) -> None:
        path = Path(hyper_path)
        if path.suffix != ".hyper":
            raise ValueError(f"hyper_path must end with .hyper, got {path}")
        self.path = path.resolve()
        self.working_path = self.path.with_name(f".{self.path.stem}.work.hyper")
        self._process: HyperProcess | None = None
        self._ids: IdHashes | None = None  # ids of the working copy; None: not opened

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: the extract's ids are the state."""

    def write(self, batch: Batch) -> SinkResult:
        """Append the batch's new sales and publish them.

        Raises:
            SinkUnavailable: The file cannot be written now (locked, disk full, not a file).
        """
        if not batch.events:
            return SinkResult()
        docs = []
        seen: set[str] = set()
        for event in batch.events:
            if event.event_id in seen:  # a re-send within the batch: the first one counts
                continue
            seen.add(event.event_id)
            doc = event.to_document()
            doc["ts"] = naive_utc(doc["ts"])
            docs.append(doc)
        table, _ = documents_to_arrow(docs)
        try:
            if self._ids is None:
                self._ids = self._open()
            ids = self._ids
            known = ids.contains_any(seen)
            added = append_to_extract(
                self._hyper(),
                self.working_path,
                table,
                writer=Writer.STREAM,
                skip_known=known,
            )
            ids.add(seen)
            self._publish()
        except OSError as exc:
            self._ids = None  # reopen from the published extract at the next attempt
            raise SinkUnavailable(HYPER_SERVICE, exc) from exc
        except BaseException:
            self._ids = None
            raise
        return SinkResult(stored=added, duplicates=len(batch.events) - added)

    def close(self) -> None:
        """Stop the Hyper process and remove the working copy."""
        if self._process is not None:
            self._process.close()
            self._process = None
        self._ids = None
        self.working_path.unlink(missing_ok=True)

    def _open(self) -> IdHashes:
        """A working copy of the published extract (or a new one) and the hashes of its ids."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.working_path.unlink(missing_ok=True)
        for stale in self.path.parent.glob(scratch_name(self.path, "*")):
            stale.unlink(missing_ok=True)  # a publication a crash interrupted
        if self.path.exists():
            shutil.copyfile(self.path, self.working_path)
            ids = self._read_ids()
            if ids is not None:
                return IdHashes(ids)
            log.warning("%s has another layout: rebuilding it from the stream", self.path)
        empty = ARROW_SCHEMA.empty_table()
        write_extract(self._hyper(), self.working_path, empty, writer=Writer.STREAM)
        return IdHashes()

    def _read_ids(self) -> list[str] | None:
        """The working copy's event ids; None if it is not an extract of this layout.

        Raises:
            ExtractOwnedError: The extract was exported from MongoDB.
        """
        dump = self.working_path.with_suffix(".ids.parquet")
        try:
            with Connection(self._hyper().endpoint, self.working_path) as conn:
                if not extract_writer(conn, self.path, Writer.STREAM):
                    return None
                conn.execute_command(
                    f"COPY (SELECT event_id FROM {EXTRACT_TABLE}) TO "
                    f"{escape_string_literal(str(dump))} WITH (FORMAT => 'parquet')"
                )
            return pq.read_table(dump)["event_id"].to_pylist()
        finally:
            dump.unlink(missing_ok=True)

    def _publish(self) -> None:
        scratch = self.path.with_name(scratch_name(self.path, uuid.uuid4().hex[:12]))
        try:
            shutil.copyfile(self.working_path, scratch)
            os.replace(scratch, self.path)
        finally:
            scratch.unlink(missing_ok=True)

    def _hyper(self) -> HyperProcess:
        if self._process is None:
            self._process = start_hyper()
        return self._process
