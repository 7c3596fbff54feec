"""French alphabetical order for everything a reader sees sorted (products, regions, cities).

Python's default order compares code points: « Écran » after « Zone », « Câble » after
« Coque ». `fr_key` compares letters without their accents and case first (« Câble » <
« Coque », « Écouteurs » and « Écran » among the E's), then the exact text, so the order is
total and stable.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import pandas as pd


def fr_key(text: str) -> str:
    """Sort key: the text without accents, case-folded, then (after a NUL) the text itself."""
    decomposed = unicodedata.normalize("NFKD", text)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return f"{base.casefold()}\0{text}"


def fr_sorted(texts: Iterable[str]) -> list[str]:
    """``texts`` in French alphabetical order."""
    return sorted(texts, key=fr_key)


def fr_series_key(column: pd.Series) -> pd.Series:
    """`fr_key` for a text column of ``DataFrame.sort_values(key=...)``; others unchanged."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return column
    return column.map(lambda value: fr_key(value) if isinstance(value, str) else value)
