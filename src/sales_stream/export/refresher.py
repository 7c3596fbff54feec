"""Keep a Hyper extract fresh: `HyperRefresher` calls `HyperExporter.refresh` on an interval.

A failed refresh (MongoDB unreachable, file locked, ...) does not stop the thread: the error
shows in `RefresherStats.last_error` until a refresh succeeds again, and the next tick
retries. Tableau sees the new rows on *Data → Refresh* (or its auto-update of extracts).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sales_stream.export.hyper import HyperExporter, RefreshResult

log = logging.getLogger(__name__)

State = Literal["idle", "running", "stopped"]


@dataclass(frozen=True, slots=True)
class RefresherStats:
    """A snapshot of a refresher.

    Attributes:
        state: ``"idle"`` (never started), ``"running"`` or ``"stopped"``.
        path: The published extract.
        interval_s: Seconds between two refreshes.
        rows: Rows in the extract after the last successful refresh.
        last_added: Rows added by the last successful refresh.
        last_refresh: Aware UTC end time of the last successful refresh.
        last_duration_s: Duration of the last successful refresh.
        refreshes: Successful refreshes so far.
        errors: Failed refreshes so far.
        last_error: Error of the latest attempt, ``None`` once a refresh succeeds again.
        watermark: The exporter's watermark (aware UTC).
    """

    state: State
    path: str
    interval_s: float
    rows: int
    last_added: int
    last_refresh: datetime | None
    last_duration_s: float | None
    refreshes: int
    errors: int
    last_error: str | None
    watermark: datetime | None


class HyperRefresher:
    """Refreshes an extract in a background thread every ``interval_s`` seconds.

    The first refresh runs as soon as the thread starts. The refresher does not own the
    exporter: close the exporter after `stop`.

    Args:
        exporter: The exporter to drive.
        interval_s: Seconds between the starts of two refreshes (> 0).

    Raises:
        ValueError: If ``interval_s`` is not positive.
    """

    def __init__(self, exporter: HyperExporter, *, interval_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.exporter = exporter
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: State = "idle"
        self._last: RefreshResult | None = None
        self._last_refresh: datetime | None = None
        self._refreshes = 0
        self._errors = 0
        self._last_error: str | None = None

    def start(self) -> None:
        """Start refreshing (again after `stop`); does nothing while running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._wake.clear()
            self._state = "running"
            self._thread = threading.Thread(target=self._run, name="hyper-refresher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> RefresherStats:
        """Stop after the refresh in progress, if any; return the final stats.

        Raises:
            TimeoutError: If the thread is still refreshing after ``timeout`` seconds.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the refresh in progress did not end within {timeout:.0f} s")
        with self._lock:
            if self._state == "running":
                self._state = "stopped"
        return self.stats

    def refresh_now(self) -> None:
        """Ask the running thread for a refresh without waiting for the interval."""
        self._wake.set()

    def wait_for(self, refreshes: int, timeout: float) -> bool:
        """Wait until ``refreshes`` refreshes succeeded in total; return whether they did."""
        with self._changed:
            return self._changed.wait_for(lambda: self._refreshes >= refreshes, timeout)

    @property
    def stats(self) -> RefresherStats:
        """The current counters (thread-safe snapshot)."""
        with self._lock:
            last = self._last
            return RefresherStats(
                state=self._state,
                path=str(self.exporter.path),
                interval_s=self.interval_s,
                rows=last.total_rows if last else 0,
                last_added=last.rows_added if last else 0,
                last_refresh=self._last_refresh,
                last_duration_s=last.duration_s if last else None,
                refreshes=self._refreshes,
                errors=self._errors,
                last_error=self._last_error,
                watermark=self.exporter.watermark,
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._refresh_once()
            remaining = self.interval_s - (time.monotonic() - started)
            if remaining > 0:
                self._wake.wait(remaining)
            self._wake.clear()

    def _refresh_once(self) -> None:
        try:
            result = self.exporter.refresh()
        except Exception as exc:  # any failure is retried at the next tick
            log.warning("Hyper refresh of %s failed: %s", self.exporter.path, exc)
            with self._changed:
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._changed.notify_all()
            return
        with self._changed:
            self._last = result
            self._last_refresh = datetime.now(UTC)
            self._refreshes += 1
            self._last_error = None
            self._changed.notify_all()
