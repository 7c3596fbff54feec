"""Widgets that also leave a static snapshot, so a notebook reads on GitHub without a kernel.

`show(widget)` wraps a widget for display: JupyterLab renders the live widget (its mimetype
ranks first), while a renderer without widget state (GitHub, nbviewer, a notebook opened
without its kernel) falls back to the ``text/html`` snapshot drawn from the same widgets: the
values of its HTML children and its images, at the moment the cell ran.

A panel registered in `sales_stream.ui.live` is displayed inside its kind's *slot*: one box per
kind and kernel whose model id is fixed (`SLOT_ID`) and which outlives the panels it holds. An
output keeps the model id it was made with; JupyterLab reloads a page, or opens a second session,
from the notebook as last saved, i.e. often with the outputs of an earlier run of the cell whose
panel has been replaced (closed) since: « Error displaying widget: model not found ». Pointing
at the slot, every such output finds the current panel of its kind, live.
"""

from __future__ import annotations

import base64
import html
import threading
from typing import Any

import ipywidgets as widgets

from sales_stream.ui import live
from sales_stream.ui.format import fr_number

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: The model id of the slot of a kind (the same in every kernel, so in every saved output).
SLOT_ID = "sales-stream-{kind}"

_slots: dict[str, widgets.VBox] = {}
_slots_lock = threading.Lock()


def slot(kind: str, widget: widgets.Widget) -> widgets.VBox:
    """The kernel's display box of ``kind`` (model id `SLOT_ID`), now holding ``widget``."""
    with _slots_lock:
        box = _slots.get(kind)
        if box is None or box.comm is None:  # first use, or closed (``Widget.close_all``)
            box = _slots[kind] = widgets.VBox(model_id=SLOT_ID.format(kind=kind))
    box.children = (widget,)
    return box


def displayed(owner: object, widget: widgets.Widget) -> widgets.Widget:
    """What to display for ``widget``: its kind's `slot` when ``owner`` is registered in `live`."""
    kind = live.kind_of(owner)
    return widget if kind is None else slot(kind, widget)


def snapshot_html(widget: widgets.Widget) -> str:
    """Static HTML of ``widget`` now: HTML values, images, labelled control values."""
    if isinstance(widget, widgets.HTML):
        return widget.value
    if isinstance(widget, widgets.Image):
        data = base64.b64encode(bytes(widget.value)).decode()
        return f"<img style='max-width:100%' src='data:image/{widget.format};base64,{data}'>"
    if isinstance(widget, widgets.Box):
        # each child on its own block: two inline HTML values never run into each other
        inner = [snapshot_html(child) for child in widget.children]
        return "<div>" + "".join(f"<div>{part}</div>" for part in inner if part) + "</div>"
    if isinstance(widget, widgets.Button):
        return ""
    label = getattr(widget, "description", "")
    if label and hasattr(widget, "value"):
        value = getattr(widget, "label", None) or widget.value
        if isinstance(value, tuple):
            value = ", ".join(map(str, value)) or "tous"
        elif isinstance(value, bool):
            value = "oui" if value else "non"
        elif isinstance(value, int | float):
            value = fr_number(value)  # « 104,2 », never « 104.16666666666667 »
        return f"<div><small>{html.escape(label)} : {html.escape(str(value))}</small></div>"
    return ""


class Shown:
    """A widget displayed with a static snapshot beside it (see `show`)."""

    def __init__(self, widget: widgets.Widget) -> None:
        self.widget = widget

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        shown = displayed(self.widget, self.widget)
        bundle = dict(shown._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/html"] = snapshot_html(self.widget)
        bundle["text/plain"] = "(panneau interactif : exécutez le notebook pour le voir en direct)"
        return bundle


def show(widget: widgets.Widget) -> Shown:
    """Return ``widget`` ready to be a cell's last value, with its static snapshot."""
    return Shown(widget)
