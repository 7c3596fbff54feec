"""Generated Tableau workbooks: schema validity (official 2026.2 XSD), structure, what
tableaudocumentapi reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
import tableaudocumentapi
from conftest import validate_twb

from sales_stream.events import FIELDS
from sales_stream.export.workbook import (
    CITY_SHEET,
    DASHBOARD,
    MAP_SHEET,
    SOURCE_BUILD,
    TIME_SHEET,
    TOP_SHEET,
    write_extract_workbook,
    write_live_workbook,
)
from sales_stream.sql.schema import TABLES
from sales_stream.store import SALES

REPO = Path(__file__).resolve().parents[1]
SHEETS = [TIME_SHEET, MAP_SHEET, CITY_SHEET, TOP_SHEET]
SHARED_FIELDS = {"[none:ts:qk]", "[none:region:nk]", "[none:product:nk]"}


def verdicts(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("VALID", "INVALID"))]


def write_both(folder: Path, **options: bool) -> tuple[Path, Path]:
    extract = write_extract_workbook(
        folder / "sales.twb", extract_path=folder / "data" / "sales.hyper", top_n=7, **options
    )
    live = write_live_workbook(
        folder / "sales_live.twb",
        host="db.example.org",
        port=6543,
        database="ventes_db",
        user="tableau",
        top_n=7,
        **options,
    )
    return extract, live


@pytest.fixture
def books(tmp_path: Path) -> tuple[Path, Path]:
    return write_both(tmp_path)


def root_of(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def datasource_name(root: ET.Element) -> str:
    return root.find("datasources/datasource").get("name")


def inner_connection(root: ET.Element) -> ET.Element:
    return inner_connections(root)[0]


def inner_connections(root: ET.Element) -> list[ET.Element]:
    return root.findall(
        "datasources/datasource/connection/named-connections/named-connection/connection"
    )


def test_both_workbooks_are_valid_in_lenient_mode(twb_validator: Path, books: tuple[Path, Path]):
    result = validate_twb(twb_validator, "--lenient", *books)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == ["VALID (after ignoring 1 known-gap error(s))"] * 2


def test_strict_mode_only_misses_explain_data(twb_validator: Path, books: tuple[Path, Path]):
    result = validate_twb(twb_validator, *books)
    assert result.returncode == 1
    assert verdicts(result.stdout) == ["INVALID: 1 schema error(s)"] * 2
    errors = [line for line in result.stdout.splitlines() if line.startswith("  line ")]
    assert len(errors) == 2
    assert all("explain-data" in line for line in errors)


def test_explain_data_option_passes_strict_mode(twb_validator: Path, tmp_path: Path):
    result = validate_twb(twb_validator, *write_both(tmp_path, explain_data=True))
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == ["VALID"] * 2


def shared_filters(root: ET.Element) -> set[str]:
    """The shared (data-source) filter columns of the workbook's one data source."""
    [ds] = root.findall("datasources/datasource")
    return {f"[{ds.get('name')}].{f}" for f in SHARED_FIELDS}


def test_no_attribute_claims_a_save_by_tableau(twb_validator: Path, books: tuple[Path, Path]):
    result = validate_twb(twb_validator, "--lenient", *books)
    assert "source-build says" not in result.stdout, result.stdout  # names no Tableau release
    for book in books:
        root = root_of(book)
        assert root.get("source-build") == SOURCE_BUILD  # required by the schema
        assert SOURCE_BUILD.startswith("sales-stream")
        assert root.get("version") == "18.1"
        assert not {"source-platform", "original-version"} & set(root.attrib)
        assert not any(name.startswith("_.fcp") for e in root.iter() for name in e.attrib)


def test_worksheets_and_dashboard(books: tuple[Path, Path]):
    for book in books:
        root = root_of(book)
        assert [w.get("name") for w in root.findall("worksheets/worksheet")] == SHEETS
        dashboards = root.findall("dashboards/dashboard")
        assert [d.get("name") for d in dashboards] == [DASHBOARD]
        zones = list(dashboards[0].iter("zone"))
        assert sorted(z.get("name") for z in zones if z.get("name") and not z.get("type-v2")) == (
            sorted(SHEETS)
        )
        filter_zones = [z for z in zones if z.get("type-v2") == "filter"]
        assert sorted(z.get("param") for z in filter_zones) == sorted(shared_filters(root))
        assert {z.get("name") for z in filter_zones} <= set(SHEETS)
        windows = root.findall("windows/window")
        assert windows[0].get("class") == "dashboard"
        assert windows[0].get("maximized") == "true"
        assert [w.get("name") for w in windows[1:]] == SHEETS


def box(zone: ET.Element) -> tuple[int, int, int, int]:
    return tuple(int(zone.get(k)) for k in ("x", "y", "w", "h"))


def test_dashboard_zones_are_tiled_in_flow_containers(books: tuple[Path, Path]):
    for book in books:
        [root_zone] = root_of(book).findall("dashboards/dashboard/zones/zone")
        assert root_zone.get("type-v2") == "layout-basic"
        assert box(root_zone) == (0, 0, 100000, 100000)
        [column] = list(root_zone)
        assert (column.get("type-v2"), column.get("param")) == ("layout-flow", "vert")
        kinds = [z.get("type-v2") or z.get("name") for z in column]
        assert kinds == ["title", "layout-flow", TIME_SHEET, "layout-flow"]
        filters, bottom = column[1], column[3]
        assert filters.get("layout-strategy-id") == "distribute-evenly"
        assert [z.get("type-v2") for z in filters] == ["filter"] * 3
        assert [z.get("name") for z in bottom] == [MAP_SHEET, CITY_SHEET, TOP_SHEET]
        flows = [z for z in root_zone.iter("zone") if z.get("type-v2") == "layout-flow"]
        for flow in flows:  # the children tile their container exactly, in order
            x, y, w, h = box(flow)
            horizontal = flow.get("param") == "horz"
            position = x if horizontal else y
            for child in flow:
                cx, cy, cw, ch = box(child)
                start, size, across = (cx, cw, (cy, ch)) if horizontal else (cy, ch, (cx, cw))
                assert start == position
                assert across == ((y, h) if horizontal else (x, w))
                position += size
            assert position == (x + w if horizontal else y + h)
        ids = [z.get("id") for z in root_zone.iter("zone")]
        assert len(ids) == len(set(ids))


def test_period_region_product_filters_apply_to_every_worksheet(books: tuple[Path, Path]):
    for book in books:
        root = root_of(book)
        shared = shared_filters(root)
        [view] = root.findall("shared-views/shared-view")
        assert {f.get("column") for f in view.findall("filter")} == shared
        for worksheet in root.findall("worksheets/worksheet"):
            slices = {c.text for c in worksheet.findall("table/view/slices/column")}
            assert shared <= slices, worksheet.get("name")


def test_tableaudocumentapi_reads_one_data_source_used_by_every_sheet(books: tuple[Path, Path]):
    for book, dbclass in zip(books, ("hyper", "postgres"), strict=True):
        workbook = tableaudocumentapi.Workbook(str(book))
        assert workbook.worksheets == SHEETS
        [datasource] = workbook.datasources
        [connection] = datasource.connections
        assert connection.dbclass == dbclass
        for field in ("[ts]", "[region]", "[product]"):  # the three dashboard filters
            assert set(datasource.fields[field].worksheets) == set(SHEETS), field


def test_sheet_contents(books: tuple[Path, Path]):
    root = root_of(books[0])
    ds = datasource_name(root)
    sheets = {w.get("name"): w.find("table") for w in root.findall("worksheets/worksheet")}
    shelves = {name: (t.findtext("rows"), t.findtext("cols")) for name, t in sheets.items()}
    marks = {name: t.find("panes/pane/mark").get("class") for name, t in sheets.items()}
    assert shelves[TIME_SHEET] == (f"[{ds}].[sum:amount:qk]", f"[{ds}].[thr:ts:qk]")
    assert shelves[MAP_SHEET] == (
        f"[{ds}].[Latitude (generated)]",
        f"[{ds}].[Longitude (generated)]",
    )
    assert shelves[CITY_SHEET] == (f"[{ds}].[none:lat:qk]", f"[{ds}].[none:lon:qk]")
    assert shelves[TOP_SHEET] == (f"[{ds}].[none:product:nk]", f"[{ds}].[sum:amount:qk]")
    assert marks == {
        TIME_SHEET: "Line",
        MAP_SHEET: "Multipolygon",
        CITY_SHEET: "Circle",
        TOP_SHEET: "Bar",
    }
    roles = {c.get("name"): c.get("semantic-role") for c in root.iter("column")}
    assert roles["[lat]"] == "[Geographical].[Latitude]"
    assert roles["[lon]"] == "[Geographical].[Longitude]"
    assert roles["[region]"] == "[State].[Name]"
    top_filter = sheets[TOP_SHEET].find("view/filter")
    assert top_filter.get("column").startswith(f"[{ds}].[usr:Calculation_")
    assert (top_filter.findtext("min"), top_filter.findtext("max")) == ("1", "7")
    amount = root.find("datasources/datasource/column[@name='[amount]']")
    assert amount.get("caption") == "Montant"
    assert "€" in amount.get("default-format")


def test_the_region_sheet_is_a_filled_map_of_france(books: tuple[Path, Path]):
    root = root_of(books[0])
    ds = datasource_name(root)
    country = root.find("datasources/datasource/semantic-values/semantic-value")
    assert (country.get("key"), country.get("value")) == ("[Country].[Name]", '"France"')
    sheets = {w.get("name"): w for w in root.findall("worksheets/worksheet")}
    pane = sheets[MAP_SHEET].find("table/panes/pane")
    encodings = {e.tag: e.get("column") for e in pane.find("encodings")}
    assert encodings == {
        "color": f"[{ds}].[sum:amount:qk]",
        "lod": f"[{ds}].[none:region:nk]",
        "geometry": f"[{ds}].[Geometry (generated)]",
    }
    assert sheets[MAP_SHEET].find("table/view/mapsources/mapsource").get("name") == "Tableau"
    city = {e.tag: e.get("column") for e in sheets[CITY_SHEET].find("table/panes/pane/encodings")}
    assert city["lod"] == f"[{ds}].[none:city:nk]"


def test_columns_follow_the_event_contract(books: tuple[Path, Path]):
    root = root_of(books[0])
    columns = [r.findtext("remote-name") for r in root.iter("metadata-record")]
    assert len(columns) == len(set(columns))
    # the sales table = the event fields without schema_version, plus date and hour of ts
    assert set(columns) == (set(FIELDS) - {"schema_version"}) | {"date", "hour"}


def test_live_columns_are_the_sales_table_columns(books: tuple[Path, Path]):
    [ds] = root_of(books[1]).findall("datasources/datasource")
    assert ds.find("connection/relation").get("name") == SALES
    declared = [c.split()[0] for c in TABLES[SALES].split(", ")]
    assert [r.findtext("remote-name") for r in ds.iter("metadata-record")] == declared


def test_extract_connection_uses_a_relative_path(books: tuple[Path, Path]):
    root = root_of(books[0])
    connection = inner_connection(root)
    assert connection.get("class") == "hyper"
    assert connection.get("dbname") == "data/sales.hyper"
    relation = root.find("datasources/datasource/connection/relation")
    assert relation.get("table") == "[Extract].[Extract]"


def test_extract_in_a_sibling_folder(tmp_path: Path):
    book = write_extract_workbook(
        tmp_path / "books" / "sales.twb", extract_path=tmp_path / "extracts" / "sales.hyper"
    )
    dbname = inner_connection(root_of(book)).get("dbname")
    assert dbname == "../extracts/sales.hyper"
    assert not PurePosixPath(dbname).is_absolute()
    assert not PureWindowsPath(dbname).drive
    assert [p.name for p in book.parent.iterdir()] == ["sales.twb"]  # no temporary file left


def test_live_connection_has_no_password(books: tuple[Path, Path]):
    root = root_of(books[1])
    for connection in inner_connections(root):
        assert connection.get("class") == "postgres"
        assert connection.get("server") == "db.example.org"
        assert connection.get("port") == "6543"
        assert connection.get("dbname") == "ventes_db"
        assert connection.get("username") == "tableau"
        assert connection.get("sslmode") == ""
    assert all("password" not in element.attrib for element in root.iter())
    relations = root.findall("datasources/datasource/connection/relation")
    assert [r.get("table") for r in relations] == [f"[public].[{SALES}]"]


def test_live_connection_can_require_ssl(tmp_path: Path):
    book = write_live_workbook(
        tmp_path / "sales_live.twb",
        host="db.example.org",
        port=5432,
        database="ventes_db",
        user="tableau",
        require_ssl=True,
    )
    assert [c.get("sslmode") for c in inner_connections(root_of(book))] == ["require"]


def test_output_is_deterministic(tmp_path: Path):
    first = write_both(tmp_path / "a")
    second = write_both(tmp_path / "b")
    for one, two in zip(first, second, strict=True):
        assert one.read_bytes() == two.read_bytes()
    again = write_both(tmp_path / "a")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in second]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_n": 0}, "top_n must be at least 1"),
        ({"extract_path": Path("sales.csv")}, "must be a .hyper file"),
        ({"path": Path("sales.xml")}, "must be a .twb file"),
    ],
)
def test_extract_workbook_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str):
    arguments = {"path": tmp_path / "sales.twb", "extract_path": tmp_path / "sales.hyper"}
    arguments.update(kwargs)
    path = arguments.pop("path")
    with pytest.raises(ValueError, match=message):
        write_extract_workbook(path, **arguments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port must be in 1..65535"),
        ({"port": 70000}, "port must be in 1..65535"),
        ({"host": ""}, "host must be non-empty"),
        ({"user": " tableau"}, "user must be non-empty"),
        ({"database": ""}, "database must be non-empty"),
    ],
)
def test_live_workbook_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str):
    arguments = {"host": "localhost", "port": 5432, "database": "ventes_db", "user": "tableau"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        write_live_workbook(tmp_path / "sales_live.twb", **arguments)
    assert list(tmp_path.iterdir()) == []
