"""Reading and writing one lake file: atomic publication, synced to disk, zstd-compressed."""

from __future__ import annotations

import os
import uuid
from contextlib import suppress

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sales_stream.lake.layout import Lake, PartFile

COMPRESSION = "zstd"


def _sync_local(path: str) -> None:
    """Flush a local file or directory to disk (directories only where the OS can open them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):  # a directory on Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table_atomic(lake: Lake, directory: str, name: str, table: pa.Table) -> int:
    """Write ``table`` to ``directory/name`` via a temporary file moved in place.

    On a local disk the file and then its directory are synced, so a file that has its
    final name survives a power loss; on HDFS, closing a file waits for the datanodes. On S3
    the object is written in place: an upload appears whole when it completes, or not at all.

    Returns:
        The size of the file in bytes.

    Raises:
        OSError: The filesystem refused a step; no partial file is left under ``name``.
    """
    folder = lake.path(directory)
    if isinstance(lake.fs, pafs.S3FileSystem):
        with lake.fs.open_output_stream(f"{folder}/{name}") as out:
            pq.write_table(table, out, compression=COMPRESSION)
            return out.tell()
    local = isinstance(lake.fs, pafs.LocalFileSystem)
    lake.fs.create_dir(folder, recursive=True)
    temp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with lake.fs.open_output_stream(temp) as out:
            pq.write_table(table, out, compression=COMPRESSION)
            size = out.tell()
        if local:
            _sync_local(temp)
        lake.fs.move(temp, f"{folder}/{name}")
    except BaseException:
        with suppress(OSError):
            lake.fs.delete_file(temp)
        raise
    if local:
        _sync_local(folder)
    return size


def read_part(lake: Lake, part: PartFile) -> pa.Table:
    """The rows of one data file, with its stored schema (no partition columns)."""
    with lake.fs.open_input_file(lake.path(part.relpath)) as source:
        return pq.ParquetFile(source).read()


def num_rows(lake: Lake, part: PartFile) -> int:
    """The row count of one data file, from its footer."""
    with lake.fs.open_input_file(lake.path(part.relpath)) as source:
        return pq.read_metadata(source).num_rows
