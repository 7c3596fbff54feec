"""Packaged Tableau workbooks (``.twbx``): the workbook and its extract in one zip.

Tableau Desktop's *File → Export Packaged Workbook* writes a zip holding the ``.twb`` at the
top level and each extract under ``Data/Extracts/``; the workbook's ``hyper`` connection names
the extract by that path inside the package (``dbname='Data/Extracts/sales.hyper'``), which
Tableau resolves against the unpacked package. The extract is stored uncompressed (it is
already compressed), the workbook deflated, and every entry has a fixed date so the same
inputs give the same bytes.

* `write_packaged_workbook`: render the extract workbook straight into a ``.twbx``;
* `package_workbook`: package an existing ``.twb`` and the extracts it references;
* `write_workbooks`: the ``.twb`` and the ``.twbx`` beside an extract (``export --hyper X``).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sales_stream.export.workbook import render_extract_workbook, write_extract_workbook

__all__ = [
    "EXTRACTS_FOLDER",
    "WorkbookFiles",
    "package_workbook",
    "packaged_extracts",
    "write_packaged_workbook",
    "write_workbooks",
]

EXTRACTS_FOLDER = PurePosixPath("Data/Extracts")
_ZIP_DATE = (2026, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class WorkbookFiles:
    """The workbooks written beside an extract."""

    twb: Path
    twbx: Path


def write_packaged_workbook(path: Path, *, extract_path: Path, top_n: int = 10) -> Path:
    """Write ``path`` (a ``.twbx``): the extract workbook and a copy of ``extract_path``.

    The inner workbook is named after ``path`` and reads ``Data/Extracts/<extract name>``.

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` is not a ``.twbx`` or ``extract_path`` not a ``.hyper``.
        FileNotFoundError: ``extract_path`` does not exist.
    """
    path, extract_path = Path(path), Path(extract_path)
    _check_suffixes(path, extract_path)
    if not extract_path.is_file():
        raise FileNotFoundError(f"no extract to package at {extract_path}")
    inside = EXTRACTS_FOLDER / extract_path.name
    workbook = render_extract_workbook(str(inside), top_n=top_n)
    return _zip(path, f"{path.stem}.twb", workbook, {inside: extract_path})


def package_workbook(workbook_path: Path, output: Path) -> Path:
    """Zip a ``.twb`` and the extracts it references into a packaged workbook (``.twbx``).

    Each ``hyper`` connection's ``dbname`` (resolved against the workbook's folder) is
    rewritten to ``Data/Extracts/<file name>`` and the extract stored there.

    Returns:
        ``output``.

    Raises:
        ValueError: ``output`` is not a ``.twbx``, or two extracts share a file name.
        FileNotFoundError: The workbook or a referenced extract does not exist.
    """
    workbook_path, output = Path(workbook_path), Path(output)
    if output.suffix != ".twbx":
        raise ValueError(f"output must be a .twbx file, got {output}")
    tree = ET.parse(workbook_path)
    extracts: dict[PurePosixPath, Path] = {}
    for connection in tree.getroot().iter("connection"):
        if connection.get("class") != "hyper":
            continue
        source = workbook_path.parent / connection.get("dbname", "")
        if not source.is_file():
            raise FileNotFoundError(
                f"{workbook_path} references a missing extract: {connection.get('dbname')}"
            )
        inside = EXTRACTS_FOLDER / source.name
        if extracts.get(inside, source).resolve() != source.resolve():
            raise ValueError(f"{workbook_path}: two extracts are named {source.name}")
        extracts[inside] = source
        connection.set("dbname", str(inside))
    data = ET.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True) + b"\n"
    return _zip(output, workbook_path.name, data, extracts)


def packaged_extracts(package: Path) -> dict[str, str]:
    """Map each ``hyper`` connection's ``dbname`` in a ``.twbx`` to its zip entry (or "")."""
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        books = [n for n in names if "/" not in n and n.endswith(".twb")]
        if len(books) != 1:
            raise ValueError(f"{package} holds {len(books)} top-level .twb files, expected 1")
        root = ET.fromstring(archive.read(books[0]))
    dbnames = [c.get("dbname", "") for c in root.iter("connection") if c.get("class") == "hyper"]
    return {name: name if name in names else "" for name in dbnames}


def write_workbooks(extract_path: Path, *, top_n: int = 10) -> WorkbookFiles:
    """Write ``<stem>.twb`` (reads the extract beside it) and ``<stem>.twbx`` next to it.

    Raises:
        ValueError: ``extract_path`` is not a ``.hyper``.
        FileNotFoundError: ``extract_path`` does not exist.
    """
    extract_path = Path(extract_path)
    twb = write_extract_workbook(
        extract_path.with_suffix(".twb"), extract_path=extract_path, top_n=top_n
    )
    twbx = write_packaged_workbook(
        extract_path.with_suffix(".twbx"), extract_path=extract_path, top_n=top_n
    )
    return WorkbookFiles(twb=twb, twbx=twbx)


def _check_suffixes(path: Path, extract_path: Path) -> None:
    if path.suffix != ".twbx":
        raise ValueError(f"path must be a .twbx file, got {path}")
    if extract_path.suffix != ".hyper":
        raise ValueError(f"extract_path must be a .hyper file, got {extract_path}")


def _zip(output: Path, name: str, workbook: bytes, extracts: dict[PurePosixPath, Path]) -> Path:
    """Write the package to a temporary file beside ``output``, then replace it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(_entry(name, zipfile.ZIP_DEFLATED), workbook)
        for inside, source in extracts.items():
            with archive.open(_entry(str(inside), zipfile.ZIP_STORED), "w") as sink:
                sink.write(source.read_bytes())
    os.replace(tmp, output)
    return output


def _entry(name: str, compression: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info
