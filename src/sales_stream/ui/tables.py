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

from sales_stream.events import InvalidReason
from sales_stream.produce.badevents import BadEventKind
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
    "event_id": "identifiant",
    "currency": "devise",
    "schema_version": "version du schéma",
    "lat": "latitude",
    "lon": "longitude",
    "date": "date",
    "hour": "heure",
    "kind": "message injecté",
}

#: French label of each dead-letter reason (`InvalidReason`, stored as its English code).
REASON_LABELS: dict[str, str] = {
    InvalidReason.NOT_BYTES: "valeur qui n'est pas une suite d'octets",
    InvalidReason.EMPTY: "message vide",
    InvalidReason.OVERSIZE: "message trop volumineux",
    InvalidReason.NOT_UTF8: "texte qui n'est pas de l'UTF-8",
    InvalidReason.NOT_JSON: "JSON illisible",
    InvalidReason.NOT_OBJECT: "JSON qui n'est pas un objet",
    InvalidReason.DUPLICATE_JSON_KEY: "clé JSON en double",
    InvalidReason.LONE_SURROGATE: "caractère Unicode invalide",
    InvalidReason.UNSUPPORTED_SCHEMA_VERSION: "version de schéma inconnue",
    InvalidReason.MISSING_FIELD: "champ manquant",
    InvalidReason.UNKNOWN_FIELD: "champ inconnu",
    InvalidReason.WRONG_TYPE: "champ du mauvais type",
    InvalidReason.BAD_EVENT_ID: "identifiant invalide",
    InvalidReason.BAD_TIMESTAMP: "date illisible ou hors limites",
    InvalidReason.NAIVE_TIMESTAMP: "date sans fuseau UTC",
    InvalidReason.UNKNOWN_PRODUCT: "produit hors catalogue",
    InvalidReason.CATEGORY_MISMATCH: "catégorie qui ne correspond pas au produit",
    InvalidReason.UNKNOWN_REGION: "région inconnue",
    InvalidReason.CITY_NOT_IN_REGION: "ville absente de la région",
    InvalidReason.BAD_COORDINATES: "coordonnées hors de France métropolitaine",
    InvalidReason.NON_POSITIVE_QUANTITY: "quantité nulle ou négative",
    InvalidReason.QUANTITY_TOO_LARGE: "quantité trop grande",
    InvalidReason.NON_POSITIVE_PRICE: "prix nul ou négatif",
    InvalidReason.PRICE_TOO_LARGE: "prix trop élevé",
    InvalidReason.BAD_PRICE_PRECISION: "prix à plus de deux décimales",
    InvalidReason.NEGATIVE_AMOUNT: "montant négatif",
    InvalidReason.AMOUNT_MISMATCH: "montant ≠ quantité × prix unitaire",
    InvalidReason.BAD_CURRENCY: "devise autre que l'euro",
    InvalidReason.UNKNOWN_CHANNEL: "canal de vente inconnu",
}

#: French label of each deliberately malformed message of the demonstration (`BadEventKind`).
KIND_LABELS: dict[str, str] = {
    BadEventKind.NOT_JSON: "texte qui n'est pas du JSON",
    BadEventKind.TRUNCATED_JSON: "JSON tronqué",
    BadEventKind.JSON_ARRAY: "tableau JSON au lieu d'un objet",
    BadEventKind.STRING_QUANTITY: "quantité écrite en texte",
    BadEventKind.NUMERIC_PRODUCT: "produit écrit en nombre",
    BadEventKind.MISSING_FIELD: "un champ retiré",
    BadEventKind.NEGATIVE_AMOUNT: "montant négatif",
    BadEventKind.AMOUNT_MISMATCH: "montant faux",
    BadEventKind.UNKNOWN_REGION: "région imaginaire",
    BadEventKind.NAIVE_TIMESTAMP: "date sans fuseau",
    BadEventKind.HUGE_PAYLOAD: "message de plus de 16 ko",
    BadEventKind.INVALID_UTF8: "octets non UTF-8",
    BadEventKind.EMPTY: "message vide",
    BadEventKind.NONE: "valeur absente (None)",
}

#: French label of each endpoint of `sales_stream.infra.Endpoints.describe`.
SERVICE_LABELS: dict[str, str] = {
    "mode": "mode",
    "kafka": "Kafka",
    "mongodb": "MongoDB",
    "postgresql": "PostgreSQL (Tableau en direct)",
    "s3": "stockage objet S3 (lac)",
    "files": "navigateur de fichiers du stockage objet",
    "state_dir": "dossier d'état",
}

#: Columns whose values are codes shown by their French label.
VALUE_LABELS: dict[str, Mapping[str, str]] = {
    "reason": REASON_LABELS,
    "kind": KIND_LABELS,
    "service": SERVICE_LABELS,
}
#: Columns shown as euros.
EURO_COLUMNS = frozenset({"revenue", "amount", "unit_price", "revenue_sql", "revenue_mongo"})


def fr_euro(value: float) -> str:
    """``1234.5`` → ``1 234,50 €``."""
    return f"{fr_float(value, 2)} €"


def _formatter(series: pd.Series, name: str) -> Callable[[Any], str] | None:
    if name in VALUE_LABELS:
        values = VALUE_LABELS[name]
        return lambda v: values.get(v, str(v))
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


def _type_fr(series: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date et heure"
    if pd.api.types.is_bool_dtype(series):
        return "booléen"
    if pd.api.types.is_integer_dtype(series):
        return "entier"
    if pd.api.types.is_float_dtype(series):
        return "nombre décimal"
    sample = series.dropna()
    if not sample.empty and all(hasattr(v, "isoformat") for v in sample.head(20)):
        return "date"
    return "texte"


def columns_table(frame: pd.DataFrame) -> Styler | HTML:
    """The columns of ``frame``: name, French label (`LABELS`) and type in French."""
    rows = [(str(c), LABELS.get(str(c), ""), _type_fr(frame[c])) for c in frame.columns]
    return french_table(
        pd.DataFrame(rows, columns=["colonne", "libellé", "type"]),
        labels={"colonne": "colonne"},
    )
