"""One live object per kind per kernel: re-running a notebook cell replaces what it started.

A notebook cell that starts a background object (producer, consumer, lake writer, Hyper
extract writer, dashboard, panel) registers it under a kind with `replace`: the object registered
before under that kind is stopped first, so a second Run All never leaves two producers (or
two consumers holding partitions) behind a single panel.

Anything with a ``stop()`` (or ``close()``) method can be registered; the registry is
per process, i.e. per kernel. A registered producer also stops when ``python -m sales_stream
down`` asks (`sales_stream.infra.embedded.stop_file`), so the consumers catch up before the stop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_live: dict[str, Any] = {}
#: The kind a stop request stops, and how often it is looked for.
PRODUCER = "producer"
STOP_POLL_S = 0.5
_watcher: threading.Thread | None = None


def _halt(kind: str, obj: Any) -> None:
    """Stop ``obj``, then release what it holds (both, when it has both methods)."""
    for name in ("stop", "close"):
        method = getattr(obj, name, None)
        if callable(method):
            try:
                method()
            except Exception:  # a broken old object must not block its replacement
                log.exception("%s of the previous %s failed", name, kind)


def replace(kind: str, obj: T) -> T:
    """Register ``obj`` as the live object of ``kind``, stopping the previous one first.

    Args:
        kind: A name such as ``"producer"``, ``"consumer"``, ``"dashboard"``.
        obj: The new object (not started yet, or already started).

    Returns:
        ``obj``, so a cell can write ``producer = live.replace("producer", ProducerThread(...))``.
    """
    with _lock:
        previous = _live.get(kind)
        _live[kind] = obj
    if previous is not None and previous is not obj:
        _halt(kind, previous)
    if kind == PRODUCER:
        _watch_stop_requests()
    return obj


def _watch_stop_requests() -> None:
    """Start (once per kernel) the thread that stops the producer when ``down`` asks."""
    global _watcher
    with _lock:
        if _watcher is not None:
            return
        _watcher = threading.Thread(target=_stop_on_request, name="stop-request", daemon=True)
    _watcher.start()


def _stop_on_request() -> None:
    from sales_stream.config import load_settings
    from sales_stream.infra.embedded import stop_file

    requested = stop_file(load_settings().state_dir.resolve())
    stopped = None  # the producer stopped last: each is stopped once
    while True:
        producer = get(PRODUCER)
        if producer is not None and producer is not stopped and requested.exists():
            log.info("python -m sales_stream down asked the producer to stop")
            _halt(PRODUCER, producer)
            stopped = producer
        time.sleep(STOP_POLL_S)


def get(kind: str) -> Any | None:
    """The live object of ``kind``, or ``None``."""
    with _lock:
        return _live.get(kind)


def stop(*kinds: str) -> None:
    """Stop and forget the live object of each kind, in order (nothing for a kind without)."""
    for kind in kinds:
        with _lock:
            previous = _live.pop(kind, None)
        if previous is not None:
            _halt(kind, previous)


def stop_all() -> None:
    """Stop every registered object (most recently registered first)."""
    with _lock:
        items = list(_live.items())[::-1]
        _live.clear()
    for kind, obj in items:
        _halt(kind, obj)


def kind_of(obj: object) -> str | None:
    """The kind ``obj`` is registered under, or ``None``."""
    with _lock:
        return next((kind for kind, live in _live.items() if live is obj), None)


def kinds() -> list[str]:
    """The kinds currently registered, in registration order."""
    with _lock:
        return list(_live)
