"""Tables for the notebooks in French: labelled columns, ``1 234,50 €``, dates ``25/11/2026``.

`french_table` returns a pandas ``Styler`` (rendered as an HTML table in JupyterLab and on
GitHub, never truncated); for an empty frame, a French « aucune ligne » line instead of a
table of headers only.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from IPython.display import HTML
from pandas.io.formats.style import Styler

from sales_stream.ui.format import fr_float, fr_int

#: French labels of the columns the queries return.
LABELS: dict[str, str] = {
    "bucket": "période (UTC)",
    "revenue": "chiffre d'affaires",
    "sales": "ventes",
    "quantity": "quantité",
    "region": "région",
    "product": "produit",
    "category": "catégorie",
    "city": "ville",
    "amount": "montant",
    "unit_price": "prix unitaire",
    "ts": "date (UTC)",
    "ingested_at": "stocké le (UTC)",
    "channel": "canal",
    "reason": "raison",
    "count": "nombre",
    "detail": "détail",
    "received_at": "reçu le (UTC)",
    "last_received_at": "dernier reçu (UTC)",
    "partition": "partition",
    "offset": "offset",
}
#: Columns shown as euros.
EURO_COLUMNS = frozenset({"revenue", "amount", "unit_price", "revenue_sql", "revenue_mongo"})


def fr_euro(value: float) -> str:
    """``1234.5`` → ``1 234,50 €``."""
    return f"{fr_float(value, 2)} €"


def _formatter(series: pd.Series, name: str) -> Callable[[Any], str] | None:
    if pd.api.types.is_datetime64_any_dtype(series):
        return lambda v: "" if pd.isna(v) else f"{v:%d/%m/%Y %H:%M:%S}"
    if pd.api.types.is_bool_dtype(series):
        return lambda v: "oui" if v else "non"
    if pd.api.types.is_integer_dtype(series):
        return lambda v: fr_int(int(v))
    if pd.api.types.is_float_dtype(series):
        if name in EURO_COLUMNS or name.startswith("revenue"):
            return lambda v: "" if pd.isna(v) else fr_euro(float(v))
        if name in ("lat", "lon"):
            return lambda v: "" if pd.isna(v) else fr_float(float(v), 2)
        return lambda v: "" if pd.isna(v) else fr_float(float(v), 2)
    return None


def french_table(
    frame: pd.DataFrame,
    *,
    labels: Mapping[str, str] | None = None,
    index: bool = False,
    caption: str | None = None,
    empty: str = "aucune ligne pour l'instant",
) -> Styler | HTML:
    """``frame`` with French number/date formats and column labels.

    Args:
        frame: Any frame (empty is fine).
        labels: Extra or overriding column labels (defaults: `LABELS`).
        index: Whether to show the index.
        caption: An optional caption above the table.
        empty: What to show instead of an empty table.
    """
    if frame.empty:
        return HTML(
            f"<p><i>{html.escape(caption + ' : ' if caption else '')}{html.escape(empty)}</i></p>"
        )
    names = {**LABELS, **(labels or {})}
    formats = {}
    for name in frame.columns:
        formatter = _formatter(frame[name], str(name))
        if formatter is not None:
            formats[name] = formatter
    styler = frame.style.format(formats).relabel_index(
        [names.get(str(c), str(c)) for c in frame.columns], axis="columns"
    )
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler
