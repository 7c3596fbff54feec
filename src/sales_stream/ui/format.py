"""French number/time formatting and the small HTML pieces shared by the panels."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime

NARROW_NBSP = "\u202f"


def fr_int(value: int) -> str:
    """``12345`` → ``12 345`` (narrow no-break space, French style)."""
    return f"{value:,}".replace(",", NARROW_NBSP)


def fr_float(value: float, digits: int = 1) -> str:
    """``1234.5`` → ``1 234,5``."""
    return f"{value:,.{digits}f}".replace(",", NARROW_NBSP).replace(".", ",")


def fr_number(value: float) -> str:
    """A number as a French reader expects it: ``104.1666…`` → ``104,2``, ``3.0`` → ``3``.

    Integers keep every digit; others get one decimal, or as many as three significant
    digits need (``1,56``, ``0,0081``); trailing zeros are dropped.
    """
    if float(value).is_integer():
        return fr_int(int(value))
    digits = max(1, 2 - math.floor(math.log10(abs(value))))
    return fr_float(value, digits).rstrip("0").rstrip(",")


def fr_plural(count: float, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun agreed in French: ``1 lot``, ``0 lot``, ``2 lots``, ``1,5 minute``.

    French takes the singular below 2 (``0 doublon``, ``1,5 minute``).

    Args:
        count: The number (formatted with `fr_number`).
        singular: The singular form, e.g. ``"message"`` or ``"lettre morte"``.
        plural: The plural form; default ``singular`` + ``"s"`` on each word
            (``"lettres mortes"``).
    """
    if plural is None:
        plural = " ".join(word + "s" for word in singular.split(" "))
    return f"{fr_number(count)} {singular if abs(count) < 2 else plural}"


def fr_seconds(value: float) -> str:
    """``1.5`` → ``1,50 s``."""
    return f"{fr_float(value, 2)} s"


def fr_time(value: datetime | None, *, never: str = "jamais") -> str:
    """An aware UTC datetime as ``25/11/2026 à 03:48:30 UTC`` (``never`` for None)."""
    return never if value is None else f"{value:%d/%m/%Y à %H:%M:%S} UTC"


def badge(label: str, colour: str) -> str:
    """A coloured status label (HTML)."""
    return (
        f"<span style='background:{colour};color:white;padding:2px 8px;border-radius:4px'>"
        f"{html.escape(label)}</span>"
    )


def counters(cells: Sequence[tuple[str, str]]) -> str:
    """One row of labelled counters (HTML)."""
    row = "".join(
        f"<td style='padding:0 12px'><small>{html.escape(name)}</small><br><b>{value}</b></td>"
        for name, value in cells
    )
    return f"<table><tr>{row}</tr></table>"


def warning(message: str, colour: str = "#dc3545") -> str:
    """A warning line (HTML, escaped)."""
    return f"<div style='color:{colour}'>⚠ {html.escape(message)}</div>"


def parse_percent(text: str) -> float:
    """Parse a percentage typed in French or English form into a ratio in [0, 1].

    The box is labelled in percent, so a bare number is a percentage: ``"5"``, ``"5%"``,
    ``"5 %"`` → 0.05; ``"2,5"`` or ``"2.5 %"`` → 0.025; ``"0,05"`` → 0.0005.

    Raises:
        ValueError: With a French message, if ``text`` is not a number in 0–100 %.
    """
    cleaned = text.strip().replace("\u202f", "").replace("\xa0", "").replace(" ", "")
    cleaned = cleaned.removesuffix("%").replace(",", ".")
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"« {text} » n'est pas un pourcentage (exemples : 5, 2,5 %)") from None
    if not 0.0 <= value <= 100.0:
        raise ValueError(f"« {text} » : le pourcentage doit être entre 0 et 100")
    return value / 100.0


#: Abbreviated French month names (plotly and strftime would write English ones).
FR_MONTHS = (
    "janv.", "févr.", "mars", "avr.", "mai", "juin",
    "juil.", "août", "sept.", "oct.", "nov.", "déc.",
)  # fmt: skip


def fr_day(value: datetime) -> str:
    """A day in French: ``25 nov.``."""
    return f"{value.day} {FR_MONTHS[value.month - 1]}"


def fr_moment(value: datetime, unit: str = "minute") -> str:
    """A bucket's start in French.

    ``25 nov. 2026`` (day), ``25 nov. 14h`` (hour), ``25 nov. 14:05`` (minute).
    """
    if unit == "day":
        return f"{fr_day(value)} {value.year}"
    if unit == "hour":
        return f"{fr_day(value)} {value.hour}h"
    return f"{fr_day(value)} {value:%H:%M}"
