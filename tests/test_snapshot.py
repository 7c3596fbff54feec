"""The committed packaged workbook: its extract matches what its README states."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pantab
import tableaudocumentapi

from sales_stream.export.package import packaged_extracts
from sales_stream.export.snapshot import SNAPSHOT_DAYS, write_snapshot
from sales_stream.extract import EXTRACT_TABLE

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "tableau" / "ventes.twbx"


def stated_rows() -> int:
    text = (REPO / "tableau" / "README.md").read_text(encoding="utf-8")
    [count] = re.findall(r"\*\*Extract\*\*: (\d+) ventes", text)
    return int(count)


def rows_in(package: Path, tmp_path: Path) -> int:
    [inside] = packaged_extracts(package).values()
    assert inside, f"{package} does not hold the extract its workbook names"
    with zipfile.ZipFile(package) as archive:
        extract = Path(archive.extract(inside, tmp_path))
    return len(pantab.frame_from_hyper(extract, table=EXTRACT_TABLE))


def test_the_committed_snapshot_holds_the_stated_row_count(tmp_path: Path):
    assert SNAPSHOT.stat().st_size < 5_000_000
    assert rows_in(SNAPSHOT, tmp_path) == stated_rows()


def test_the_snapshot_command_reproduces_the_rows(tmp_path: Path):
    snapshot = write_snapshot(tmp_path / "ventes.twbx")
    assert snapshot.rows == rows_in(snapshot.path, tmp_path / "x") == stated_rows()
    assert (snapshot.last - snapshot.first).days == SNAPSHOT_DAYS - 1


GEO_ROLES = {
    "[State].[Name]": "State/Province",
    "[City].[Name]": "City",
    "[Geographical].[Latitude]": "Latitude",
    "[Geographical].[Longitude]": "Longitude",
}


def documented_fields() -> dict[str, tuple[str, ...]]:
    text = (REPO / "tableau" / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", text, flags=re.MULTILINE)
    return {f"[{name}]": tuple(cell.strip() for cell in rest.split("|")) for name, rest in rows}


def test_the_snapshot_has_the_documented_sheets_and_fields():
    workbook = tableaudocumentapi.Workbook(str(SNAPSHOT))
    readme = (REPO / "tableau" / "README.md").read_text(encoding="utf-8")
    for sheet in workbook.worksheets:
        assert f"« {sheet} »" in readme, sheet
    [datasource] = workbook.datasources
    with zipfile.ZipFile(SNAPSHOT) as archive:
        root = ET.fromstring(archive.read("ventes.twb"))
    roles = {
        column.get("name"): GEO_ROLES.get(column.get("semantic-role", ""), "")
        for column in root.findall("datasources/datasource/column")
    }
    actual = {
        name: (field.caption, field.datatype, field.role, roles[name])
        for name, field in datasource.fields.items()
    }
    assert actual == documented_fields()
    assert f"« {datasource.caption} »" in readme
