"""`StreamWorker`: a `StreamRuntime` in a background thread (notebooks, pipeline); restartable."""

from __future__ import annotations

import threading
import time

from sales_stream.stream.runtime import StreamRuntime
from sales_stream.stream.stats import StreamState, StreamStats


class StreamWorker:
    """Runs a runtime in a daemon thread; errors end the run and show in its stats.

    Args:
        runtime: The runtime to run.
    """

    def __init__(self, runtime: StreamRuntime) -> None:
        self.runtime = runtime
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    @property
    def name(self) -> str:
        """The runtime's name."""
        return self.runtime.name

    @property
    def stats(self) -> StreamStats:
        """Live stats."""
        return self.runtime.stats

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, until_idle: float | None = None, max_events: int | None = None) -> None:
        """Start consuming in the background (again after a stop).

        Raises:
            RuntimeError: It is already running.
        """
        if self.running:
            raise RuntimeError(f"the {self.name} worker is already running")
        self._stop = threading.Event()
        self.error = None
        self._thread = threading.Thread(
            target=self._run,
            kwargs={"until_idle": until_idle, "max_events": max_events},
            name=f"stream-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> StreamStats:
        """Stop gracefully (write and commit what was polled); return the stats."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stats

    def close(self) -> None:
        """Stop, then release the runtime's sinks (e.g. the extract's Hyper process)."""
        self.stop()
        self.runtime.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a run started with ``until_idle``/``max_events`` to end; ``True`` if over."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_idle(self, *, idle_s: float = 2.0, timeout: float = 60.0) -> StreamStats:
        """Block until caught up for ``idle_s`` seconds.

        Raises:
            TimeoutError: Not idle within ``timeout`` seconds.
            RuntimeError: The worker is not running.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats
            if stats.state is StreamState.IDLE and stats.idle_s >= idle_s:
                return stats
            if not self.running:
                raise RuntimeError(f"the {self.name} worker is not running ({stats.status})")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not idle after {timeout:.0f} s "
                    f"({stats.status}, lag {stats.total_lag})"
                )
            time.sleep(0.1)

    def _run(self, *, until_idle: float | None, max_events: int | None) -> None:
        try:
            self.runtime.run(until_idle=until_idle, max_events=max_events, stop=self._stop)
        except Exception as exc:  # recorded in stats (state FAILED, cause)
            self.error = exc
