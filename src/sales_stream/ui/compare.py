"""Compare two stores fed by the same stream without false alarms while it still runs.

`compare_by_region` reads the reference store (MongoDB) before and after the other one: if
the reference changed in between, the stream is still being written and a difference says
nothing, so the verdict says so plainly instead of reporting a gap. It retries until the
stores agree or a deadline passes (a sink a batch behind catches up within seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from IPython.display import HTML
from pandas.io.formats.style import Styler
from pymongo.database import Database

from sales_stream import sql
from sales_stream.collation import fr_series_key
from sales_stream.config import Settings
from sales_stream.read import mongo_queries, sql_queries
from sales_stream.sql.schema import listed_relations
from sales_stream.ui.format import fr_int
from sales_stream.ui.tables import LABELS, french_table

KEY = "region"
COLUMNS = ("region", "revenue", "sales")


@dataclass(frozen=True)
class Comparison:
    """The outcome of `compare_by_region`.

    Attributes:
        frame: Per region: ``revenue_<a>``, ``revenue_<b>``, ``sales_<a>``, ``sales_<b>``.
        matches: Same sales and revenue (to the cent) in every region.
        settled: The reference store did not change during the last comparison.
        message: A French verdict for the notebook.
        names: The labels of the two stores (``frame``'s column suffixes).
    """

    frame: pd.DataFrame
    matches: bool
    settled: bool
    message: str
    names: tuple[str, str] = ("a", "b")

    def table(self) -> Styler | HTML:
        """`frame` as a French table: « chiffre d'affaires (SQL) », « ventes (MongoDB) »."""
        labels = {
            f"{column}_{name}": f"{LABELS[column]} ({name})"
            for column in ("revenue", "sales")
            for name in self.names
        }
        return french_table(self.frame, labels={**labels, "écart": "écart (€)"})


def _merge(left: pd.DataFrame, right: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    merged = left[list(COLUMNS)].merge(
        right[list(COLUMNS)], on=KEY, how="outer", suffixes=tuple(f"_{n}" for n in names)
    )
    a, b = names
    for column in ("sales", "revenue"):
        merged[[f"{column}_{a}", f"{column}_{b}"]] = merged[
            [f"{column}_{a}", f"{column}_{b}"]
        ].fillna(0)
    for name in names:
        merged[f"sales_{name}"] = merged[f"sales_{name}"].astype("int64")
    merged["écart"] = (merged[f"revenue_{a}"] - merged[f"revenue_{b}"]).round(2)
    return merged.sort_values(KEY, ignore_index=True, key=fr_series_key)


def _agree(frame: pd.DataFrame, names: tuple[str, str]) -> bool:
    a, b = names
    return bool(
        (frame[f"sales_{a}"] == frame[f"sales_{b}"]).all() and (frame["écart"].abs() < 0.01).all()
    )


def compare_by_region(
    read: Callable[[], pd.DataFrame],
    reference: Callable[[], pd.DataFrame],
    *,
    names: tuple[str, str],
    timeout_s: float = 15.0,
    poll_s: float = 1.0,
) -> Comparison:
    """Compare per-region revenue and sales of two stores at a consistent point.

    Args:
        read: Per-region frame (``region``, ``revenue``, ``sales``) of the store checked.
        reference: The same from the reference store (e.g. MongoDB).
        names: Labels of the two stores, e.g. ``("sql", "mongo")``.
        timeout_s: How long to retry while they differ.
        poll_s: Pause between attempts.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        before = reference()
        frame = _merge(read(), before, names)
        after = reference()
        settled = before[list(COLUMNS)].equals(after[list(COLUMNS)])
        matches = _agree(frame, names)
        if (matches and settled) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    a, b = names
    if matches:
        message = f"{a} et {b} concordent"
        if not settled:
            message += " (le flux tournait pendant la lecture)"
    elif not settled:
        total_before, total_after = int(before["sales"].sum()), int(after["sales"].sum())
        message = (
            f"le flux tourne encore ({fr_int(total_before)} → {fr_int(total_after)} ventes pendant "
            "la lecture) : "
            f"{a} et {b} ne peuvent pas être comparés à un instant commun ; "
            "relancez la cellule une fois le flux arrêté"
        )
    else:
        message = f"ÉCART entre {a} et {b} alors que le flux est à l'arrêt"
    return Comparison(frame=frame, matches=matches, settled=settled, message=message, names=names)


def compare_sql_with_mongo(
    sql_uri: str, *, settings: Settings, db: Database
) -> tuple[list[tuple[str, str]], Comparison]:
    """Read the SQL endpoint as Tableau does and compare it with MongoDB (`compare_by_region`).

    Returns:
        The relations the BI login sees (`sales_stream.sql.schema.listed_relations`) and the
        comparison of per-region revenue and sales, at a common instant or « le flux tourne
        encore » (never a false alarm).
    """
    with sql.connect(sql_uri, settings=settings) as conn:
        relations = listed_relations(conn)
        check = compare_by_region(
            lambda: sql_queries.revenue_by_region(conn),
            lambda: mongo_queries.revenue_by_region(db),
            names=("SQL", "MongoDB"),
        )
    return relations, check
