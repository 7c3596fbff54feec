"""One live object per kind: re-registering stops the previous one (in-memory doubles)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sales_stream.ui import live


class Worker:
    def __init__(self, *, fail: bool = False) -> None:
        self.stopped = 0
        self.fail = fail

    def stop(self) -> None:
        self.stopped += 1
        if self.fail:
            raise RuntimeError("broken")


class Panel:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Holder(Worker):
    """Stops, then releases a resource (a runtime with a Hyper process)."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__()
        self.calls = calls

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    live.stop_all()
    yield
    live.stop_all()


def test_replace_stops_the_previous_object_of_the_kind_only() -> None:
    first, other = Worker(), Worker()
    assert live.replace("producer", first) is first
    live.replace("consumer", other)
    second = live.replace("producer", Worker())
    assert (first.stopped, other.stopped, second.stopped) == (1, 0, 0)
    assert live.get("producer") is second
    assert live.kinds() == ["producer", "consumer"]


def test_replacing_with_the_same_object_does_not_stop_it() -> None:
    worker = live.replace("dashboard", Worker())
    live.replace("dashboard", worker)
    assert worker.stopped == 0


def test_close_is_used_without_stop_and_a_failing_stop_does_not_block() -> None:
    panel = live.replace("panel", Panel())
    live.replace("panel", Panel())
    assert panel.closed
    broken = live.replace("refresher", Worker(fail=True))
    fresh = live.replace("refresher", Worker())
    assert broken.stopped == 1
    assert live.get("refresher") is fresh


def test_stop_and_stop_all() -> None:
    a, b = live.replace("a", Worker()), live.replace("b", Worker())
    live.stop("a")
    live.stop("missing")
    assert (a.stopped, b.stopped, live.kinds()) == (1, 0, ["b"])
    live.stop_all()
    assert b.stopped == 1
    assert live.kinds() == []


def test_an_object_with_stop_and_close_is_stopped_then_closed() -> None:
    calls: list[str] = []
    live.replace("hyper", Holder(calls))
    live.replace("hyper", Worker())
    assert calls == ["stop", "close"]


def test_stop_stops_several_kinds_in_order() -> None:
    calls: list[str] = []
    live.replace("panel", Holder(calls))
    live.replace("worker", Holder(calls))
    live.stop("panel", "worker")
    assert calls == ["stop", "close", "stop", "close"]
    assert live.kinds() == []


def test_a_replaced_panel_is_shown_under_the_same_model_id() -> None:
    """Outputs of every run of a cell (saved, or loaded by another session) find the live panel."""
    import ipywidgets as widgets

    from sales_stream.ui.snapshot import SLOT_ID, WIDGET_MIME, show, slot

    first = live.replace("producer_panel", widgets.HTML("premier"))
    before = show(first)._repr_mimebundle_()
    second = live.replace("producer_panel", widgets.HTML("second"))
    after = show(second)._repr_mimebundle_()
    slot_id = SLOT_ID.format(kind="producer_panel")
    assert before[WIDGET_MIME]["model_id"] == after[WIDGET_MIME]["model_id"] == slot_id
    box = slot("producer_panel", second)  # the same box, one per kind and kernel
    assert (box.model_id, box.children) == (slot_id, (second,))
    assert first.comm is None  # the first panel is closed, the slot holds the second
    assert after["text/html"] == "second"  # the static snapshot is the panel's own
    unregistered = widgets.HTML("libre")
    assert show(unregistered)._repr_mimebundle_()[WIDGET_MIME]["model_id"] == unregistered.model_id
