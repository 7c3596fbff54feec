"""The live Tableau extract: each batch of the stream appended to a Hyper file, no MongoDB scan.

`HyperSink` is fed by its own runtime (group ``sales-hyper``). One row per sale, as in
MongoDB: a re-read batch, a re-sent sale or a conflicting version adds nothing. What a write
costs follows the new rows, never the extract's size: two working files take turns (each
publication appends to the one not published, then hard-links it over the extract with
`os.replace`), and duplicates are found through `IdHashes`, not a scan. See
``bench/hyper_sink.py`` and `HyperSink.write`.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tableauhyperapi import Connection, HyperException, HyperProcess, escape_string_literal

from sales_stream.extract import (
    ARROW_SCHEMA,
    EXTRACT_TABLE,
    Writer,
    append_to_extract,
    documents_to_arrow,
    extract_writer,
    held_ids,
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

#: What Hyper says when another Hyper process (a reader: Tableau, pantab) holds a file.
_LOCKED = "locked by another process"


class HyperSink:
    """Appends each batch's new sales to the extract and publishes it.

    The published extract is always a complete file that is never written again while it
    is published: a reader opens the previous or the next version. The sink keeps two
    working files, ``.<name>.a.hyper`` and ``.<name>.b.hyper``; the published extract is a
    hard link to the last one written. The other one lags by exactly the rows of the last
    publication, which it receives together with the next batch's new rows before it is
    linked over the extract in turn. If a reader still holds that older file, it is left to
    the reader and replaced by a copy of the published one: the only copy of the whole
    file, besides one at the first write.

    State: the published extract is the truth. At the first write (and after any failed
    one) the sink starts again from it and reads its ids once; the runtime commits offsets
    only after a publication. The extract is owned by the stream (`Writer.STREAM`): the sink
    refuses to continue one exported from MongoDB (`ExtractOwnedError`).

    Args:
        hyper_path: The published extract (``.hyper``); its folder is created if needed.
    """

    name = "hyper"

    def __init__(self, hyper_path: Path | str) -> None:
        path = Path(hyper_path)
        if path.suffix != ".hyper":
            raise ValueError(f"hyper_path must end with .hyper, got {path}")
        self.path = path.resolve()
        self.working_paths = tuple(
            self.path.with_name(f".{self.path.stem}.{turn}.hyper") for turn in "ab"
        )
        self._process: HyperProcess | None = None
        self._ids: IdHashes | None = None  # ids of the published extract; None: not opened
        self._next = 0  # index in working_paths of the file the next write goes to
        self._lag = ARROW_SCHEMA.empty_table()  # the published rows that file lacks

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Nothing to load: the extract's ids are the state."""

    def write(self, batch: Batch) -> SinkResult:
        """Append the batch's new sales to the file not published, then publish it.

        Raises:
            SinkUnavailable: The file cannot be written now (disk full, not a file).
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
            added = self._append(table, known=self._ids.contains_any(seen))
            self._ids.add(seen)
        except OSError as exc:
            self._ids = None  # start again from the published extract at the next attempt
            raise SinkUnavailable(HYPER_SERVICE, exc) from exc
        except BaseException:
            self._ids = None
            raise
        return SinkResult(stored=added, duplicates=len(batch.events) - added)

    def close(self) -> None:
        """Stop the Hyper process and remove the working files (the extract stays)."""
        if self._process is not None:
            self._process.close()
            self._process = None
        self._ids = None
        for working in self.working_paths:
            working.unlink(missing_ok=True)

    def _append(self, table: pa.Table, *, known: bool) -> int:
        """Write the lag and the new rows of ``table`` to the next file, publish it; count them."""
        target = self.working_paths[self._next]
        try:
            new = self._new_rows(target, table, known=known)
            append_to_extract(
                self._hyper(),
                target,
                pa.concat_tables([self._lag, new]),
                writer=Writer.STREAM,
                skip_known=False,
            )
        except HyperException as exc:
            if _LOCKED not in str(exc):
                raise
            log.info("a reader holds %s: continuing from a copy of %s", target.name, self.path)
            self._copy_published(target)
            self._lag = ARROW_SCHEMA.empty_table()
            new = self._new_rows(target, table, known=known)
            append_to_extract(self._hyper(), target, new, writer=Writer.STREAM, skip_known=False)
        self._publish(target)
        self._lag, self._next = new, 1 - self._next
        return new.num_rows

    def _new_rows(self, target: Path, table: pa.Table, *, known: bool) -> pa.Table:
        """The rows of ``table`` the published extract lacks (``target`` + the lag hold it)."""
        held = set(self._lag["event_id"].to_pylist())
        if known:  # some hash matches: ask the file for the exact answer
            held |= held_ids(self._hyper(), target, table)
        if not held:
            return table
        return table.filter(pc.invert(pc.is_in(table["event_id"], pa.array(list(held)))))

    def _open(self) -> IdHashes:
        """Both working files as copies of the published extract; the hashes of its ids."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        first, second = self.working_paths
        for stale in (*self.working_paths, *self.path.parent.glob(scratch_name(self.path, "*"))):
            stale.unlink(missing_ok=True)  # left by a crash
        self._next, self._lag = 0, ARROW_SCHEMA.empty_table()
        ids = None
        if self.path.exists():
            shutil.copyfile(self.path, first)
            ids = self._read_ids(first)
            if ids is None:
                log.warning("%s has another layout: rebuilding it from the stream", self.path)
        if ids is None:
            write_extract(self._hyper(), first, ARROW_SCHEMA.empty_table(), writer=Writer.STREAM)
            shutil.copyfile(first, second)
            return IdHashes()
        _link_or_copy(self.path, second)  # the published version: written only after the next
        return IdHashes(ids)

    def _read_ids(self, working: Path) -> list[str] | None:
        """The event ids of ``working``; None if it is not an extract of this layout.

        Raises:
            ExtractOwnedError: The extract was exported from MongoDB.
        """
        dump = working.with_suffix(".ids.parquet")
        try:
            with Connection(self._hyper().endpoint, working) as conn:
                if not extract_writer(conn, self.path, Writer.STREAM):
                    return None
                conn.execute_command(
                    f"COPY (SELECT event_id FROM {EXTRACT_TABLE}) TO "
                    f"{escape_string_literal(str(dump))} WITH (FORMAT => 'parquet')"
                )
            return pq.read_table(dump)["event_id"].to_pylist()
        finally:
            dump.unlink(missing_ok=True)

    def _copy_published(self, target: Path) -> None:
        """Replace ``target`` by a new file copied from the extract (a reader keeps the old)."""
        scratch = self._scratch()
        try:
            shutil.copyfile(self.path, scratch)
            os.replace(scratch, target)
        finally:
            scratch.unlink(missing_ok=True)

    def _publish(self, target: Path) -> None:
        """Make ``target`` the extract, atomically: a hard link renamed over it."""
        scratch = self._scratch()
        try:
            _link_or_copy(target, scratch)
            os.replace(scratch, self.path)
        finally:
            scratch.unlink(missing_ok=True)

    def _scratch(self) -> Path:
        return self.path.with_name(scratch_name(self.path, uuid.uuid4().hex[:12]))

    def _hyper(self) -> HyperProcess:
        if self._process is None:
            self._process = start_hyper()
        return self._process


def _link_or_copy(source: Path, link: Path) -> None:
    """A hard link ``link`` to ``source``; a copy where the file system has no hard links."""
    try:
        os.link(source, link)
    except OSError:
        shutil.copyfile(source, link)
