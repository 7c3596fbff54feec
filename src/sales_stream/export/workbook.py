"""Generated Tableau workbooks (.twb) over the sales data: a Hyper extract or live PostgreSQL.

Both workbooks are built by one renderer from a small model (one data source with its columns
and shared filters, shelf pills, sheets) and hold the same sheets and dashboard:

* ``write_extract_workbook`` / `render_extract_workbook`: one ``hyper`` connection to the
  extract, by a path relative to the workbook's folder (or inside a ``.twbx``, see
  `sales_stream.export.package`), table ``[Extract].[Extract]``, one row per sale;
* ``write_live_workbook``: one live ``postgres`` connection to the table ``public.sales``,
  one row per sale (the relation Tableau's cursors can read, see `sales_stream.sql.schema`);
  no password is stored, Tableau asks for it when the workbook is opened.

Sheets: "CA dans le temps" (line, SUM(amount) by hour of ``ts``, continuous axis), "Ventes par
région" (filled map), "Ventes par ville" (one point per city), "Top produits" (horizontal bars,
SUM(amount) by product, the ``top_n`` best) and the dashboard "Tableau de bord ventes" with
quick filters on period (``ts`` range), region and product, each shown once. Those three
filters are data-source filters ("apply to all worksheets using this data source"): Tableau
stores them once in ``<shared-views>`` and each worksheet lists the fields in its
``<slices>``; with one data source they filter every sheet. The top N is a table calculation,
``RANK_UNIQUE(SUM([amount]))`` kept in 1..N, so it ranks the products left by the dashboard
filters (a native Top N filter on ``product`` would clash with the shared product filter).
Amounts are formatted in euros and the workbook locale is ``fr_FR``.

Dashboard layout: tiled zones in ``layout-flow`` containers as Tableau Desktop writes them (a
``layout-basic`` root holding a vertical flow: title, a horizontal flow of the three quick
filters spread evenly, the time sheet, and a horizontal flow of the other sheets).

Maps: ``region`` carries the State/Province geographic role (``[State].[Name]``) and the data
source sets the country context France (``[Country].[Name]`` = "France"), so "Ventes par
région" is a filled map the way Tableau saves one: mark ``Multipolygon``, the generated
``[Latitude (generated)]``/``[Longitude (generated)]`` on rows/columns, ``[Geometry
(generated)]`` on the geometry encoding, ``region`` on detail and SUM(amount) on colour. The
shapes come from Tableau's own geocoding of the 13 region names (the INSEE names, as in the
data). "Ventes par ville" puts one circle per city at its ``lat``/``lon`` used as they are
(not aggregated: every sale of a city carries the city's reference coordinates from
`sales_stream.reference`), size and colour = SUM(amount).

Honesty: no Tableau saved these files. The schema requires ``source-build``; it names this
generator (`SOURCE_BUILD`), not a Tableau build. The files validate against the official
Tableau workbook schema 2026.2 (``twb_2026.2.0.xsd``) and their structure is modelled on
workbooks saved by Tableau Desktop 2019.2 to 2026.2 (the ``<shared-views>`` form of
data-source filters on public descriptions of Tableau-saved files, as the reference samples
have none). They have not been opened in a real Tableau here, and the schema checks
structure, not meaning (it does not look inside ``<connection>`` at all). By default no
``<explain-data>`` element is written: the 2026.2 schema requires it, but Tableau's own saved
workbooks omit it and a third-party report says 2025.x rejects it, so strict validation passes
only with ``explain_data=True``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from sales_stream.contract import tableau_fields
from sales_stream.store import SALES

__all__ = [
    "CITY_SHEET",
    "DASHBOARD",
    "MAP_SHEET",
    "TIME_SHEET",
    "TOP_SHEET",
    "render_extract_workbook",
    "write_extract_workbook",
    "write_live_workbook",
]

USER_NS = "http://www.tableausoftware.com/xml/user"
ET.register_namespace("user", USER_NS)

TWB_VERSION = "18.1"  # what every Tableau release since 2018.1 writes in <workbook version>
#: Required by the schema; names the generator, not a Tableau build (no Tableau saved the file).
SOURCE_BUILD = "sales-stream generator (not saved by Tableau)"
DASHBOARD = "Tableau de bord ventes"
TIME_SHEET = "CA dans le temps"
MAP_SHEET = "Ventes par région"
CITY_SHEET = "Ventes par ville"
TOP_SHEET = "Top produits"

_UUID_NAMESPACE = uuid.UUID("6b0c5a52-4d8e-4e1f-9a57-3f1f0f2b7a11")
_PREFIX = {"None": "none", "Sum": "sum", "Avg": "avg", "Hour-Trunc": "thr", "User": "usr"}
_SUFFIX = {"nominal": "nk", "ordinal": "ok", "quantitative": "qk"}
_REMOTE_TYPE = {"string": 129, "integer": 20, "real": 5, "date": 133, "datetime": 135}


@dataclass(frozen=True)
class _Field:
    """A column of the sales table, or a calculated field when ``formula`` is set."""

    name: str
    caption: str
    datatype: str
    role: str = "dimension"
    kind: str = "nominal"
    aggregation: str = "Count"
    default_format: str | None = None
    semantic_role: str | None = None
    formula: str | None = None


def _measure(name: str, caption: str, datatype: str, aggregation: str, **extra: str) -> _Field:
    return _Field(name, caption, datatype, "measure", "quantitative", aggregation, **extra)


# The extract's columns and the SQL ``sales`` table's, in table order (same names but the id).
_EXTRACT_FIELDS = tuple(_Field(**asdict(field)) for field in tableau_fields())
_TABLE_FIELDS = tuple(_Field(**asdict(field)) for field in tableau_fields(sql_table=True))
_TS, _PRODUCT, _REGION, _CITY, _LAT, _LON, _AMOUNT = (
    next(f for f in _EXTRACT_FIELDS if f.name == name)
    for name in ("ts", "product", "region", "city", "lat", "lon", "amount")
)
_RANK = _measure(
    "Calculation_5717483093018746881",
    "Rang produit (CA)",
    "integer",
    "User",
    formula="RANK_UNIQUE(SUM([amount]))",
)


@dataclass(frozen=True)
class _Pill:
    """A field as used on a shelf, a filter or an encoding (a Tableau column-instance)."""

    field: _Field
    derivation: str
    kind: str
    table_calc: str | None = None  # ordering type ("Rows" = table down) of a table calculation

    @property
    def name(self) -> str:
        return f"[{_PREFIX[self.derivation]}:{self.field.name}:{_SUFFIX[self.kind]}]"


_TS_VALUE = _Pill(_TS, "None", "quantitative")
_TS_HOUR = _Pill(_TS, "Hour-Trunc", "quantitative")
_REGION_DIM = _Pill(_REGION, "None", "nominal")
_PRODUCT_DIM = _Pill(_PRODUCT, "None", "nominal")
_AMOUNT_SUM = _Pill(_AMOUNT, "Sum", "quantitative")
_CITY_DIM = _Pill(_CITY, "None", "nominal")
_LAT_VALUE = _Pill(_LAT, "None", "quantitative")
_LON_VALUE = _Pill(_LON, "None", "quantitative")
_RANK_DOWN = _Pill(_RANK, "User", "quantitative", table_calc="Rows")


@dataclass(frozen=True)
class _Generated:
    """A field Tableau generates from a geographic role (no column, no column-instance)."""

    name: str


_GEN_LAT = _Generated("[Latitude (generated)]")
_GEN_LON = _Generated("[Longitude (generated)]")
_GEN_GEOMETRY = _Generated("[Geometry (generated)]")


@dataclass(frozen=True)
class _SharedFilter:
    """A data-source filter, shown as a quick filter on the dashboard."""

    pill: _Pill
    owner: str  # worksheet the dashboard quick filter belongs to
    mode: str | None = None  # quick-filter widget; None = Tableau's default for the filter type


_FILTERS = (
    _SharedFilter(_TS_VALUE, TIME_SHEET),
    _SharedFilter(_REGION_DIM, MAP_SHEET, "checkdropdown"),
    _SharedFilter(_PRODUCT_DIM, TOP_SHEET, "checkdropdown"),
)


@dataclass(frozen=True)
class _Sheet:
    """One worksheet."""

    name: str
    mark: str
    rows: _Pill | _Generated
    cols: _Pill | _Generated
    encodings: tuple[tuple[str, _Pill | _Generated], ...] = ()
    sort_by: _Pill | None = None  # measure sorting the rows dimension, descending
    keep_up_to: tuple[_Pill, int] | None = None  # table-calculation filter kept in 1..N
    is_map: bool = False

    @property
    def local_filters(self) -> tuple[_Pill, ...]:
        return (self.keep_up_to[0],) if self.keep_up_to else ()

    @property
    def pills(self) -> tuple[_Pill, ...]:
        shelved = (self.rows, self.cols, *(pill for _, pill in self.encodings))
        used = tuple(pill for pill in shelved if isinstance(pill, _Pill))
        return (*used, *self.local_filters)


def _sheets(top_n: int) -> tuple[_Sheet, ...]:
    """The worksheets, in dashboard order: the time sheet on top, the others below it."""
    return (
        _Sheet(TIME_SHEET, "Line", _AMOUNT_SUM, _TS_HOUR),
        _Sheet(
            MAP_SHEET,
            "Multipolygon",
            _GEN_LAT,
            _GEN_LON,
            (("color", _AMOUNT_SUM), ("lod", _REGION_DIM), ("geometry", _GEN_GEOMETRY)),
            is_map=True,
        ),
        _Sheet(
            CITY_SHEET,
            "Circle",
            _LAT_VALUE,
            _LON_VALUE,
            (("color", _AMOUNT_SUM), ("size", _AMOUNT_SUM), ("lod", _CITY_DIM)),
            is_map=True,
        ),
        _Sheet(
            TOP_SHEET,
            "Bar",
            _PRODUCT_DIM,
            _AMOUNT_SUM,
            sort_by=_AMOUNT_SUM,
            keep_up_to=(_RANK_DOWN, top_n),
        ),
    )


@dataclass(frozen=True)
class _Source:
    """The data source of a workbook: its connection, columns, shared filters and sheets."""

    connection: _Connection
    columns: tuple[_Field, ...]  # table columns, in table order
    sheets: tuple[_Sheet, ...]
    filters: tuple[_SharedFilter, ...] = _FILTERS
    calculated: tuple[_Field, ...] = (_RANK,)

    @property
    def shared_pills(self) -> tuple[_Pill, ...]:
        return tuple(f.pill for f in self.filters)

    def pills(self, sheet: _Sheet) -> tuple[_Pill, ...]:
        return (*sheet.pills, *self.shared_pills)


@dataclass(frozen=True)
class _Connection:
    """The pluggable part: what the federated data source connects to."""

    kind: str  # connection class, also the prefix of the named connection's name
    caption: str
    attributes: Mapping[str, str]
    table: str
    relation: str

    @property
    def _token(self) -> str:
        """28 base-36 characters like Tableau's generated names, from ``kind`` and the table."""
        key = f"sales-stream/{self.kind}/{self.relation}"
        number = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        digits = []
        for _ in range(28):
            number, rest = divmod(number, 36)
            digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[rest])
        return "".join(digits)

    @property
    def datasource(self) -> str:
        return f"federated.{self._token}"

    @property
    def leaf(self) -> str:
        return f"{self.kind}.{self._token[::-1]}"


def write_extract_workbook(
    path: Path, *, extract_path: Path, top_n: int = 10, explain_data: bool = False
) -> Path:
    """Write the workbook over the Hyper extract, referenced relative to the workbook's folder.

    Args:
        path: the ``.twb`` file to write (its folder is created if needed).
        extract_path: the ``.hyper`` file (table ``"Extract"."Extract"``); it need not exist yet.
        top_n: how many products "Top produits" shows.
        explain_data: also write ``<explain-data>`` (strict schema validity, Tableau 2026.1+).

    Returns:
        ``path``.

    Raises:
        ValueError: bad suffix, ``top_n`` < 1, or no relative path between the two files.

    """
    path, extract_path = Path(path), Path(extract_path)
    if extract_path.suffix != ".hyper":
        raise ValueError(f"extract_path must be a .hyper file, got {extract_path}")
    try:
        relative = os.path.relpath(os.path.abspath(extract_path), os.path.abspath(path.parent))
    except ValueError as exc:  # Windows: the two files are on different drives
        raise ValueError(f"no relative path from {path.parent} to {extract_path}") from exc
    if path.suffix != ".twb":
        raise ValueError(f"path must be a .twb file, got {path}")
    data = render_extract_workbook(
        Path(relative).as_posix(), top_n=top_n, explain_data=explain_data
    )
    return _replace(path, data)


def render_extract_workbook(dbname: str, *, top_n: int = 10, explain_data: bool = False) -> bytes:
    """Return the extract workbook's XML, reading the extract at ``dbname``.

    Args:
        dbname: The ``.hyper`` path as Tableau resolves it: relative to the workbook's folder,
            or a path inside the package (``Data/Extracts/sales.hyper``) for a ``.twbx``.
        top_n: how many products "Top produits" shows.
        explain_data: also write ``<explain-data>``.

    Raises:
        ValueError: ``top_n`` < 1.
    """
    connection = _Connection(
        kind="hyper",
        caption="Ventes (extrait Hyper)",
        attributes={
            "authentication": "auth-none",
            "author-locale": "en_US",
            "class": "hyper",
            "dbname": dbname,
            "default-settings": "yes",
            "port": "",
            "sslmode": "",
            "username": "tableau_internal_user",
        },
        table="[Extract].[Extract]",
        relation="Extract",
    )
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    return _render(_Source(connection, _EXTRACT_FIELDS, _sheets(top_n)), explain_data=explain_data)


def write_live_workbook(
    path: Path,
    *,
    host: str,
    port: int,
    database: str,
    user: str,
    top_n: int = 10,
    require_ssl: bool = False,
    explain_data: bool = False,
) -> Path:
    """Write the workbook with one live PostgreSQL connection to the table ``public.sales``.

    Every sheet reads that one data source, so the period, region and product filters apply
    to all of them. No password is written: Tableau asks for it when it connects.

    Args:
        path: the ``.twb`` file to write (its folder is created if needed).
        host: PostgreSQL server name or address.
        port: PostgreSQL port.
        database: database holding the ``sales`` table.
        user: PostgreSQL user name.
        top_n: how many products "Top produits" shows.
        require_ssl: tick Tableau's "Require SSL" (``sslmode='require'``).
        explain_data: also write ``<explain-data>`` (strict schema validity, Tableau 2026.1+).

    Returns:
        ``path``.

    Raises:
        ValueError: empty host/database/user, port out of 1..65535, bad suffix, ``top_n`` < 1.

    """
    for name, value in (("host", host), ("database", database), ("user", user)):
        if not value or value.strip() != value:
            raise ValueError(f"{name} must be non-empty without outer spaces, got {value!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    attributes = {
        "authentication": "username-password",
        "class": "postgres",
        "dbname": database,
        "odbc-native-protocol": "yes",
        "one-time-sql": "",
        "port": str(port),
        "server": host,
        "sslmode": "require" if require_ssl else "",
        "username": user,
    }
    connection = _Connection(
        kind="postgres",
        caption="Ventes (PostgreSQL, direct)",
        attributes=attributes,
        table=f"[public].[{SALES}]",
        relation=SALES,
    )
    path = Path(path)
    if path.suffix != ".twb":
        raise ValueError(f"path must be a .twb file, got {path}")
    source = _Source(connection, _TABLE_FIELDS, _sheets(top_n))
    return _replace(path, _render(source, explain_data=explain_data))


def write_live_workbook_for(path: Path, *, sql_uri: str, database: str, user: str) -> Path:
    """`write_live_workbook` for the endpoint ``sql_uri``: its host and port, no typed address.

    Args:
        path: the ``.twb`` file to write.
        sql_uri: ``postgresql://USER@HOST:PORT/DB`` (`sales_stream.infra.Endpoints.sql_uri`).
        database: the database holding ``sales`` (``Settings.db``).
        user: the BI login (``Settings.sql_user``).
    """
    address = urlsplit(sql_uri)
    if address.hostname is None or address.port is None:
        raise ValueError(f"{sql_uri!r} names no host and port")
    return write_live_workbook(
        path, host=address.hostname, port=address.port, database=database, user=user
    )


def _render(source: _Source, *, explain_data: bool) -> bytes:
    root = _workbook(source, explain_data=explain_data)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _replace(path: Path, data: bytes) -> Path:
    """Replace ``path`` atomically (Tableau may be reading it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _sub(
    parent: ET.Element, tag: str, attrs: Mapping[str, str] | None = None, text: str | None = None
) -> ET.Element:
    """Append a child whose attributes are in sorted order, as Tableau writes them."""
    child = ET.SubElement(parent, tag, dict(sorted((attrs or {}).items())))
    child.text = text
    return child


def _simple_id(parent: ET.Element, key: str) -> None:
    """Append the stable ``{UUID}`` Tableau identifies sheets and windows by."""
    _sub(parent, "simple-id", {"uuid": "{" + str(uuid.uuid5(_UUID_NAMESPACE, key)).upper() + "}"})


def _workbook(source: _Source, *, explain_data: bool) -> ET.Element:
    root = ET.Element(
        "workbook", {"locale": "fr_FR", "source-build": SOURCE_BUILD, "version": TWB_VERSION}
    )
    manifest = _sub(root, "document-format-change-manifest")
    _sub(manifest, "SheetIdentifierTracking")
    _sub(manifest, "WindowsPersistSimpleIdentifiers")
    preferences = _sub(root, "preferences")
    _sub(preferences, "preference", {"name": "ui.encoding.shelf.height", "value": "24"})
    _sub(preferences, "preference", {"name": "ui.shelf.height", "value": "26"})
    _datasource(_sub(root, "datasources"), source)
    _sub(_sub(root, "mapsources"), "mapsource", {"name": "Tableau"})
    name = source.connection.datasource
    shared = _sub(_sub(root, "shared-views"), "shared-view", {"name": name})
    _view_header(shared, source, source.shared_pills)
    for shared_filter in source.filters:
        _shared_filter(shared, name, shared_filter.pill)
    worksheets = _sub(root, "worksheets")
    for sheet in source.sheets:
        _worksheet(worksheets, source, sheet)
    _dashboard(_sub(root, "dashboards"), source)
    _windows(_sub(root, "windows", {"source-height": "30"}), source)
    if explain_data:
        explain = _sub(
            root,
            "explain-data",
            {"enabled-for-viewer": "true", "extreme-values-enabled-for-all": "false"},
        )
        _sub(explain, "explanation-types")
    return root


def _datasource(parent: ET.Element, source: _Source) -> None:
    connection = source.connection
    ds = _sub(
        parent,
        "datasource",
        {
            "caption": connection.caption,
            "inline": "true",
            "name": connection.datasource,
            "version": TWB_VERSION,
        },
    )
    federated = _sub(ds, "connection", {"class": "federated"})
    named = _sub(
        _sub(federated, "named-connections"),
        "named-connection",
        {"caption": connection.caption, "name": connection.leaf},
    )
    _sub(named, "connection", connection.attributes)
    relation = {"name": connection.relation, "table": connection.table, "type": "table"}
    _sub(federated, "relation", {"connection": connection.leaf, **relation})
    records = _sub(federated, "metadata-records")
    for ordinal, column in enumerate(source.columns):
        record = _sub(records, "metadata-record", {"class": "column"})
        for tag, value in (
            ("remote-name", column.name),
            ("remote-type", str(_REMOTE_TYPE[column.datatype])),
            ("local-name", f"[{column.name}]"),
            ("parent-name", f"[{connection.relation}]"),
            ("remote-alias", column.name),
            ("ordinal", str(ordinal)),
            ("local-type", column.datatype),
            ("aggregation", column.aggregation),
            ("contains-null", "true"),
        ):
            _sub(record, tag, text=value)
    _sub(ds, "aliases", {"enabled": "yes"})
    for column in sorted((*source.columns, *source.calculated), key=lambda f: f.name):
        _column(ds, column)
    layout = {"dim-ordering": "alphabetic", "measure-ordering": "alphabetic"}
    _sub(ds, "layout", {**layout, "show-structure": "true"})
    semantic = _sub(ds, "semantic-values")
    _sub(semantic, "semantic-value", {"key": "[Country].[Name]", "value": '"France"'})


def _column(parent: ET.Element, column: _Field) -> None:
    attrs = {
        "caption": column.caption,
        "datatype": column.datatype,
        "name": f"[{column.name}]",
        "role": column.role,
        "type": column.kind,
    }
    if column.role == "measure" and column.aggregation not in ("Sum", "User"):
        attrs["aggregation"] = column.aggregation
    if column.default_format:
        attrs["default-format"] = column.default_format
    if column.semantic_role:
        attrs["semantic-role"] = column.semantic_role
    element = _sub(parent, "column", attrs)
    if column.formula:
        _sub(element, "calculation", {"class": "tableau", "formula": column.formula})


def _view_header(
    parent: ET.Element, source: _Source, pills: Iterable[_Pill], *, map_view: bool = False
) -> None:
    """Write ``<datasources>``, ``<mapsources>`` and ``<datasource-dependencies>`` of a view."""
    listed = _sub(parent, "datasources")
    ds_ref = {"caption": source.connection.caption, "name": source.connection.datasource}
    _sub(listed, "datasource", ds_ref)
    if map_view:
        _sub(_sub(parent, "mapsources"), "mapsource", {"name": "Tableau"})
    _dependencies(parent, source.connection.datasource, pills)


def _dependencies(parent: ET.Element, datasource: str, pills: Iterable[_Pill]) -> None:
    dependencies = _sub(parent, "datasource-dependencies", {"datasource": datasource})
    unique = {pill.name: pill for pill in pills}
    for column in sorted({pill.field for pill in unique.values()}, key=lambda f: f.name):
        _column(dependencies, column)
    for name, pill in sorted(unique.items()):
        instance = _sub(
            dependencies,
            "column-instance",
            {
                "column": f"[{pill.field.name}]",
                "derivation": pill.derivation,
                "name": name,
                "pivot": "key",
                "type": pill.kind,
            },
        )
        if pill.table_calc:
            _sub(instance, "table-calc", {"ordering-type": pill.table_calc})


def _shared_filter(parent: ET.Element, datasource: str, pill: _Pill) -> None:
    """Write a filter that keeps everything until the user narrows it on the dashboard."""
    column = f"[{datasource}].{pill.name}"
    if pill.kind == "quantitative":
        _sub(
            parent, "filter", {"class": "quantitative", "column": column, "included-values": "all"}
        )
        return
    categorical = _sub(parent, "filter", {"class": "categorical", "column": column})
    _sub(
        categorical,
        "groupfilter",
        {
            "function": "level-members",
            "level": pill.name,
            f"{{{USER_NS}}}ui-enumeration": "all",
            f"{{{USER_NS}}}ui-marker": "enumerate",
        },
    )


def _worksheet(parent: ET.Element, source: _Source, sheet: _Sheet) -> None:
    name = source.connection.datasource
    ref = f"[{name}]."
    worksheet = _sub(parent, "worksheet", {"name": sheet.name})
    table = _sub(worksheet, "table")
    view = _sub(table, "view")
    _view_header(view, source, source.pills(sheet), map_view=sheet.is_map)
    if sheet.keep_up_to:
        pill, top_n = sheet.keep_up_to
        kept = {"class": "quantitative", "column": ref + pill.name, "included-values": "in-range"}
        kept_filter = _sub(view, "filter", kept)
        _sub(kept_filter, "min", text="1")
        _sub(kept_filter, "max", text=str(top_n))
    if sheet.sort_by:
        _sub(
            _sub(view, "shelf-sorts"),
            "shelf-sort-v2",
            {
                "dimension-to-sort": ref + sheet.rows.name,
                "direction": "DESC",
                "is-on-innermost-dimension": "true",
                "measure-to-sort-by": ref + sheet.sort_by.name,
                "shelf": "rows",
            },
        )
    slices = _sub(view, "slices")
    for pill in (*source.shared_pills, *sheet.local_filters):
        _sub(slices, "column", text=ref + pill.name)
    _sub(view, "aggregation", {"value": "true"})
    _sub(table, "style")
    pane = _sub(
        _sub(table, "panes"),
        "pane",
        {"selection-relaxation-option": "selection-relaxation-allow"},
    )
    _sub(_sub(pane, "view"), "breakdown", {"value": "auto"})
    _sub(pane, "mark", {"class": sheet.mark})
    if sheet.encodings:
        encodings = _sub(pane, "encodings")
        for channel, pill in sheet.encodings:
            _sub(encodings, channel, {"column": ref + pill.name})
    _sub(table, "rows", text=ref + sheet.rows.name)
    _sub(table, "cols", text=ref + sheet.cols.name)
    _simple_id(worksheet, f"worksheet/{sheet.name}")


#: Dashboard rows (out of 100000): title, quick filters, time sheet, the other sheets.
_TITLE_H, _FILTERS_H, _TIME_H = 6000, 8000, 43000


def _dashboard(parent: ET.Element, source: _Source) -> None:
    """Write the dashboard: title, one quick filter per shared filter, then the sheets.

    Tiled zones in flow containers, as Tableau writes them: a ``layout-basic`` root holding a
    vertical ``layout-flow`` (title; a horizontal flow of the quick filters spread evenly;
    the time sheet; a horizontal flow of the other sheets side by side).
    """
    dashboard = _sub(parent, "dashboard", {"name": DASHBOARD})
    _sub(dashboard, "style")
    _sub(dashboard, "size", {"sizing-mode": "automatic"})
    _view_header(dashboard, source, source.shared_pills)
    ids = iter(range(1, 1000))
    full = 100000
    basic = _zone(next(ids), (0, 0, full, full), {"type-v2": "layout-basic"})
    root = _sub(_sub(dashboard, "zones"), "zone", basic)
    column = _sub(root, "zone", _zone(next(ids), (0, 0, full, full), _FLOW_VERT))
    _sub(column, "zone", _zone(next(ids), (0, 0, full, _TITLE_H), {"type-v2": "title"}))
    top = _TITLE_H
    filters = _sub(column, "zone", _zone(next(ids), (0, top, full, _FILTERS_H), _FLOW_EVEN))
    name = source.connection.datasource
    for x, w, shared_filter in _split(full, source.filters):
        attrs = {
            "name": shared_filter.owner,
            "param": f"[{name}].{shared_filter.pill.name}",
            "type-v2": "filter",
        }
        if shared_filter.mode:
            attrs["mode"] = shared_filter.mode
        _sub(filters, "zone", _zone(next(ids), (x, top, w, _FILTERS_H), attrs))
    top += _FILTERS_H
    first, *others = source.sheets
    _sub(column, "zone", _zone(next(ids), (0, top, full, _TIME_H), {"name": first.name}))
    top += _TIME_H
    height = full - top
    row = _sub(column, "zone", _zone(next(ids), (0, top, full, height), _FLOW_HORZ))
    for x, w, sheet in _split(full, others):
        _sub(row, "zone", _zone(next(ids), (x, top, w, height), {"name": sheet.name}))
    _simple_id(dashboard, f"dashboard/{DASHBOARD}")


_Item = TypeVar("_Item")
_FLOW_VERT = {"param": "vert", "type-v2": "layout-flow"}
_FLOW_HORZ = {"param": "horz", "type-v2": "layout-flow"}
_FLOW_EVEN = {**_FLOW_HORZ, "layout-strategy-id": "distribute-evenly"}


def _split(width: int, items: Iterable[_Item]) -> list[tuple[int, int, _Item]]:
    """(x, w, item) of ``items`` side by side over ``width``, the widths differing by 1 at most."""
    items = list(items)
    edges = [round(i * width / len(items)) for i in range(len(items) + 1)]
    return [(edges[i], edges[i + 1] - edges[i], item) for i, item in enumerate(items)]


def _zone(zone_id: int, box: tuple[int, int, int, int], attrs: Mapping[str, str]) -> dict[str, str]:
    """Zone attributes; dashboard coordinates run from 0 to 100000 on each axis."""
    x, y, w, h = box
    return {"id": str(zone_id), "x": str(x), "y": str(y), "w": str(w), "h": str(h), **attrs}


def _windows(parent: ET.Element, source: _Source) -> None:
    """Write the dashboard window (opened first) and one window per worksheet."""
    attrs = {"class": "dashboard", "maximized": "true", "name": DASHBOARD}
    dashboard = _sub(parent, "window", attrs)
    viewpoints = _sub(dashboard, "viewpoints")
    for sheet in source.sheets:
        _sub(viewpoints, "viewpoint", {"name": sheet.name})
    _sub(dashboard, "active", {"id": "-1"})
    _simple_id(dashboard, f"window/{DASHBOARD}")
    for sheet in source.sheets:
        _sheet_window(parent, source, sheet)


def _sheet_window(parent: ET.Element, source: _Source, sheet: _Sheet) -> None:
    datasource = source.connection.datasource
    window = _sub(parent, "window", {"class": "worksheet", "name": sheet.name})
    cards = _sub(window, "cards")
    left = _sub(_sub(cards, "edge", {"name": "left"}), "strip", {"size": "160"})
    for card in ("pages", "filters", "marks"):
        _sub(left, "card", {"type": card})
    top = _sub(cards, "edge", {"name": "top"})
    for card in ("columns", "rows", "title"):
        _sub(_sub(top, "strip", {"size": "31"}), "card", {"type": card})
    right = _sub(_sub(cards, "edge", {"name": "right"}), "strip", {"size": "160"})
    for shared_filter in source.filters:
        card = {"param": f"[{datasource}].{shared_filter.pill.name}", "type": "filter"}
        if shared_filter.mode:
            card["mode"] = shared_filter.mode
        _sub(right, "card", card)
    for channel, pill in sheet.encodings:
        if channel in ("color", "size"):
            _sub(right, "card", {"param": f"[{datasource}].{pill.name}", "type": channel})
    _simple_id(window, f"window/{sheet.name}")
