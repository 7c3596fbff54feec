"""Packaged workbooks (.twbx): layout, schema validity and what tableaudocumentapi reads."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pantab
import pytest
import tableaudocumentapi
from conftest import validate_twb

from sales_stream.export.package import (
    package_workbook,
    packaged_extracts,
    write_packaged_workbook,
    write_workbooks,
)
from sales_stream.export.workbook import (
    CITY_SHEET,
    DASHBOARD,
    MAP_SHEET,
    TIME_SHEET,
    TOP_SHEET,
    write_extract_workbook,
)
from sales_stream.extract import EXTRACT_TABLE

SHEETS = [TIME_SHEET, MAP_SHEET, CITY_SHEET, TOP_SHEET]


def make_extract(path: Path, rows: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"event_id": [f"e{i}" for i in range(rows)]})
    pantab.frame_to_hyper(frame, path, table=EXTRACT_TABLE)
    return path


@pytest.fixture
def package(tmp_path: Path) -> Path:
    extract = make_extract(tmp_path / "out" / "sales.hyper")
    return write_workbooks(extract).twbx


def test_export_writes_both_workbooks_beside_the_extract(tmp_path: Path):
    extract = make_extract(tmp_path / "sales.hyper")
    files = write_workbooks(extract)
    assert (files.twb, files.twbx) == (tmp_path / "sales.twb", tmp_path / "sales.twbx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.hyper", "sales.twb", "sales.twbx"]


def test_the_package_holds_one_workbook_and_the_extract_it_names(package: Path):
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["Data/Extracts/sales.hyper", "sales.twb"]
        stored = archive.getinfo("Data/Extracts/sales.hyper")
        assert stored.compress_type == zipfile.ZIP_STORED
        assert archive.read(stored) == (package.parent / "sales.hyper").read_bytes()
    assert packaged_extracts(package) == {"Data/Extracts/sales.hyper": "Data/Extracts/sales.hyper"}


def test_the_packaged_workbook_is_valid(package: Path, twb_validator: Path):
    result = validate_twb(twb_validator, "--lenient", package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"== {package}!sales.twb" in result.stdout


def test_tableaudocumentapi_reads_the_documented_workbook(package: Path):
    workbook = tableaudocumentapi.Workbook(str(package))
    assert workbook.worksheets == SHEETS
    assert len(workbook.datasources) == 1
    datasource = workbook.datasources[0]
    assert datasource.caption == "Ventes (extrait Hyper)"
    [connection] = datasource.connections
    assert (connection.dbclass, connection.dbname) == ("hyper", "Data/Extracts/sales.hyper")
    fields = datasource.fields
    expected = {
        "[region]": ("Région", "string", "dimension"),
        "[city]": ("Ville", "string", "dimension"),
        "[amount]": ("Montant", "real", "measure"),
        "[ts]": ("Horodatage (UTC)", "datetime", "dimension"),
    }
    for name, (caption, datatype, role) in expected.items():
        assert (fields[name].caption, fields[name].datatype, fields[name].role) == (
            caption,
            datatype,
            role,
        )
    assert set(fields["[region]"].worksheets) == set(SHEETS)


def test_region_role_and_filled_map_inside_the_package(package: Path):
    import xml.etree.ElementTree as ET

    with zipfile.ZipFile(package) as archive:
        root = ET.fromstring(archive.read("sales.twb"))
    region = root.find("datasources/datasource/column[@name='[region]']")
    assert region.get("semantic-role") == "[State].[Name]"
    marks = {
        w.get("name"): w.find("table/panes/pane/mark").get("class")
        for w in root.findall("worksheets/worksheet")
    }
    assert marks[MAP_SHEET] == "Multipolygon"
    assert [d.get("name") for d in root.findall("dashboards/dashboard")] == [DASHBOARD]


def test_packages_are_reproducible(tmp_path: Path):
    extract = make_extract(tmp_path / "sales.hyper")
    first = write_packaged_workbook(tmp_path / "a.twbx", extract_path=extract).read_bytes()
    second = write_packaged_workbook(tmp_path / "b.twbx", extract_path=extract)
    with zipfile.ZipFile(second) as archive:
        assert archive.namelist()[0] == "b.twb"
    again = write_packaged_workbook(tmp_path / "a.twbx", extract_path=extract).read_bytes()
    assert first == again


def test_an_existing_workbook_is_packaged_with_an_extract_from_a_sibling_folder(tmp_path: Path):
    extract = make_extract(tmp_path / "extracts" / "sales.hyper")
    workbook = write_extract_workbook(tmp_path / "books" / "sales.twb", extract_path=extract)
    packaged = package_workbook(workbook, tmp_path / "out.twbx")
    assert packaged_extracts(packaged) == {"Data/Extracts/sales.hyper": "Data/Extracts/sales.hyper"}
    assert "../extracts/sales.hyper" in workbook.read_text()  # the .twb itself is unchanged


def test_a_missing_extract_is_named(tmp_path: Path):
    workbook = write_extract_workbook(tmp_path / "sales.twb", extract_path=tmp_path / "s.hyper")
    with pytest.raises(FileNotFoundError, match=r"references a missing extract: s.hyper"):
        package_workbook(workbook, tmp_path / "out.twbx")
    with pytest.raises(FileNotFoundError, match=r"no extract to package at"):
        write_packaged_workbook(tmp_path / "x.twbx", extract_path=tmp_path / "s.hyper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sales.twb"]


@pytest.mark.parametrize(
    ("path", "extract", "message"),
    [("x.twb", "s.hyper", "must be a .twbx file"), ("x.twbx", "s.csv", "must be a .hyper file")],
)
def test_bad_suffixes_are_refused(tmp_path: Path, path: str, extract: str, message: str):
    with pytest.raises(ValueError, match=message):
        write_packaged_workbook(tmp_path / path, extract_path=tmp_path / extract)
