"""Widgets that also leave a static snapshot, so a notebook reads on GitHub without a kernel.

`show(widget)` wraps a widget for display: JupyterLab renders the live widget (its mimetype
ranks first), while a renderer without widget state (GitHub, nbviewer, a notebook opened
without its kernel) falls back to the ``text/html`` snapshot drawn from the same widgets: the
values of its HTML children and its images, at the moment the cell ran.
"""

from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as widgets

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def snapshot_html(widget: widgets.Widget) -> str:
    """Static HTML of ``widget`` now: HTML values, images, labelled control values."""
    if isinstance(widget, widgets.HTML):
        return widget.value
    if isinstance(widget, widgets.Image):
        data = base64.b64encode(bytes(widget.value)).decode()
        return f"<img style='max-width:100%' src='data:image/{widget.format};base64,{data}'>"
    if isinstance(widget, widgets.Box):
        inner = [snapshot_html(child) for child in widget.children]
        return "<div>" + "".join(part for part in inner if part) + "</div>"
    if isinstance(widget, widgets.Button):
        return ""
    label = getattr(widget, "description", "")
    if label and hasattr(widget, "value"):
        value = getattr(widget, "label", None) or widget.value
        if isinstance(value, tuple):
            value = ", ".join(map(str, value)) or "tous"
        return f"<div><small>{html.escape(label)} : {html.escape(str(value))}</small></div>"
    return ""


class Shown:
    """A widget displayed with a static snapshot beside it (see `show`)."""

    def __init__(self, widget: widgets.Widget) -> None:
        self.widget = widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/html"] = snapshot_html(self.widget)
        bundle["text/plain"] = "(panneau interactif : exécutez le notebook pour le voir en direct)"
        return bundle


def show(widget: widgets.Widget) -> Shown:
    """Return ``widget`` ready to be a cell's last value, with its static snapshot."""
    return Shown(widget)
