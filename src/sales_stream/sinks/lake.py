"""The Parquet lake sink (`sales_stream.lake`): the same contract as the MongoDB sink.

The lake accepts, rejects and deduplicates exactly what `sales_stream.sinks.mongo` does: the
runtime's decoding gives both the same dead letters (malformed, missing key), a sale whose id
is already in the lake with the same content is a counted duplicate, and with different
content a ``conflicting_duplicate`` dead letter with both versions' hashes. So lake rows =
MongoDB sales = distinct ids, and lake dead letters = MongoDB dead letters.

Every record is written once, although a checkpoint spans several files and nothing makes
several files appear at once:

* A file holds the rows of one topic incarnation and partition for one directory
  (``sales/date=…/region=…`` or ``_dead_letters``); its name gives the offsets of its first
  and last rows and the incarnation (`sales_stream.lake.layout.part_name`).
* A file is written under a temporary name, then moved into place; offsets are committed by
  the runtime only after all the files of a checkpoint are written.
* For a directory and (incarnation, partition), files are written in offset order and each
  holds all the checkpoint's rows for that directory, so the records processed for it are
  exactly those at or below the highest last offset named there (its *fence*), even when a
  crash stops a checkpoint halfway through its files. On assignment the sink lists the lake,
  and records at or below their directory's fence are skipped as already there.
* The incarnation makes the fences survive a restart of the memory-only embedded broker
  (offsets start again at 0 under a new incarnation): the lake never skips a sale it has
  not stored. Ids already in the lake are indexed (loaded from the files on assignment).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import suppress
from datetime import date
from urllib.parse import unquote

import pyarrow as pa

from sales_stream.deadletters import DeadLetter, conflict_letter
from sales_stream.events import SaleEvent
from sales_stream.identity import event_digest
from sales_stream.lake.files import read_part, write_table_atomic
from sales_stream.lake.layout import (
    DEAD_LETTERS_DIR,
    SALES_DIR,
    LakeLocation,
    open_lake,
    parse_part,
    part_name,
    partition_dir,
    temp_target,
    walk_files,
)
from sales_stream.lake.tables import dead_letters_table, events_table
from sales_stream.stream.batch import Batch
from sales_stream.stream.sink import LAKE_SERVICE, SinkResult, SinkUnavailable

_Fence = tuple[str, str, str, int]  # directory, incarnation, topic, partition


class LakeSink:
    """Writes each batch as Parquet files (`sales_stream.stream.Sink`).

    Args:
        lake_url: Lake root: a local path or a filesystem URL (see
            `sales_stream.lake.layout.open_lake`).

    Attributes:
        files: Files written by this sink.
        bytes: Bytes written by this sink.
    """

    name = "lake"

    def __init__(self, lake_url: LakeLocation) -> None:
        self.lake = open_lake(lake_url)
        self.files = 0
        self.bytes = 0
        self._fences: dict[_Fence, int] = {}
        self._ids: dict[str, bytes] = {}
        self._indexed: set[str] = set()
        self._directories: dict[tuple[date, str], str] = {}
        # Rows written by an attempt that failed half-way (the runtime retries the same batch,
        # which then finds them behind the fences): counted as stored, not as duplicates.
        self._carried = (0, 0)

    def assign(self, topic: str, incarnation: str, partitions: Iterable[int]) -> None:
        """Read the fences and the ids in the lake; remove stale temporary files."""
        assigned = set(partitions)
        try:
            fences: dict[_Fence, int] = {}
            for directory, name, size in walk_files(self.lake, ""):
                part = parse_part(directory, name, size)
                if part is not None:
                    key = (directory, part.incarnation, part.topic, part.partition)
                    fences[key] = max(fences.get(key, -1), part.last)
                    if directory.startswith(SALES_DIR) and part.relpath not in self._indexed:
                        self._index(read_part(self.lake, part), directory)
                        self._indexed.add(part.relpath)
                    continue
                target_name = temp_target(name)
                target = None if target_name is None else parse_part(directory, target_name, 0)
                if (
                    target is not None
                    and (target.incarnation, target.topic) == (incarnation, topic)
                    and target.partition in assigned
                ):
                    with suppress(FileNotFoundError):
                        self.lake.fs.delete_file(self.lake.path(directory, name))
        except OSError as exc:
            raise SinkUnavailable(LAKE_SERVICE, exc) from exc
        self._fences = fences

    def close(self) -> None:
        """Nothing to release."""

    def write(self, batch: Batch) -> SinkResult:
        """Write the batch's new sales and dead letters; see the module doc.

        Raises:
            SinkUnavailable: The filesystem refused a write (retried; nothing is lost).
        """
        topic, incarnation = batch.topic, batch.incarnation
        groups: dict[tuple[str, int], list[tuple[int, SaleEvent | DeadLetter]]] = defaultdict(list)
        batch_ids: dict[str, bytes] = {}
        duplicates = 0
        conflicts: list[DeadLetter] = []
        for event, (partition, offset) in zip(batch.events, batch.positions, strict=True):
            directory = self._directory(event)
            if offset <= self._fences.get((directory, incarnation, topic, partition), -1):
                duplicates += 1  # written before a crash or a rebalance
                continue
            digest = event_digest(event)
            stored = self._ids.get(event.event_id) or batch_ids.get(event.event_id)
            if stored is None:
                batch_ids[event.event_id] = digest
                groups[(directory, partition)].append((offset, event))
            elif stored == digest:
                duplicates += 1
            else:
                conflicts.append(
                    conflict_letter(
                        topic=topic,
                        incarnation=incarnation,
                        position=(partition, offset),
                        event=event,
                        stored_hash=stored.hex(),
                    )
                )
        for letter in [*batch.dead, *conflicts]:
            fence = (DEAD_LETTERS_DIR, incarnation, topic, letter.partition)
            if letter.offset > self._fences.get(fence, -1):
                groups[(DEAD_LETTERS_DIR, letter.partition)].append((letter.offset, letter))
            else:
                duplicates += 1
        carried_events, carried_dead = self._carried
        stored_events, dead = carried_events, carried_dead
        duplicates -= carried_events + carried_dead
        for (directory, partition), rows in sorted(groups.items(), key=lambda g: g[0]):
            rows.sort(key=lambda row: row[0])
            values = [row for _, row in rows]
            is_dead = directory == DEAD_LETTERS_DIR
            table = dead_letters_table(values) if is_dead else events_table(values)
            name = part_name(topic, partition, rows[0][0], rows[-1][0], incarnation)
            try:
                size = write_table_atomic(self.lake, directory, name, table)
            except OSError as exc:
                self._carried = (stored_events, dead)
                raise SinkUnavailable(LAKE_SERVICE, exc) from exc
            self._fences[(directory, incarnation, topic, partition)] = rows[-1][0]
            self._indexed.add(f"{directory}/{name}")
            self.files += 1
            self.bytes += size
            if is_dead:
                dead += len(values)
            else:
                stored_events += len(values)
                for value in values:
                    self._ids[value.event_id] = batch_ids[value.event_id]  # type: ignore[union-attr]
        self._carried = (0, 0)
        return SinkResult(stored=stored_events, duplicates=duplicates, dead_lettered=dead)

    def _directory(self, event: SaleEvent) -> str:
        key = (event.ts.date(), event.region)
        directory = self._directories.get(key)
        if directory is None:
            directory = self._directories[key] = partition_dir(*key)
        return directory

    def _index(self, table: pa.Table, directory: str) -> None:
        """Add the ids and content hashes of one event file to the index."""
        region = unquote(directory.rpartition("region=")[2])
        for row in table.to_pylist():
            event = SaleEvent(region=region, **row)
            self._ids[event.event_id] = event_digest(event)
