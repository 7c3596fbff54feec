"""The state a live producer's controls share with its worker thread, under one lock."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sales_stream.produce.delivery import DeliveryTally
from sales_stream.produce.send_meter import SendMeter
from sales_stream.produce.send_schedule import MAX_BURST
from sales_stream.produce.stats import State


class RunState:
    """A live producer's state, the requests to its worker, its target rate and counters.

    ``idle`` → ``running`` ⇄ ``paused`` → ``stopped`` or ``failed``, then running again. The
    transitions run with `lock` held (the caller takes it, as for `meter`); each one ends or
    restarts the meter's sending time and holds or runs the clock dating the sales. The worker
    reads its `orders` and sleeps on `wake`, which the controls set.

    Args:
        rate: Target events per second.
        max_events: A run ends by itself once this many messages are sent (all runs
            counted); ``None`` for no limit.
        tally: The deliveries (its own lock: the client's callbacks count them).
        hold_clock: Holds the sales' clock (``held=True``) or runs it.
    """

    def __init__(
        self,
        *,
        rate: float,
        max_events: int | None,
        tally: DeliveryTally,
        hold_clock: Callable[..., None],
    ) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.paused_ack = threading.Event()  # the worker stopped sending for a pause
        self.done = threading.Event()  # the run is over
        self.state: State = "idle"
        self.rate = rate
        self.error: str | None = None  # why the run failed, or its client was abandoned
        self.meter = SendMeter()
        self.tally = tally
        self._max_events = max_events
        self._hold_clock = hold_clock
        self._stop_requested = self._pause_requested = False

    def begin(self, now: float) -> None:
        """A run starts sending at ``now`` (monotonic)."""
        self.state = "running"
        self._stop_requested = self._pause_requested = False
        self.error = None
        self.done.clear()
        self.paused_ack.clear()
        self.meter.begin(now)
        self._hold_clock(held=False)

    def pause(self, now: float) -> bool:
        """Ask the worker to stop sending; ``False`` if the run is not running."""
        if self.state != "running":
            return False
        self.state = "paused"
        self._pause_requested = True
        self.paused_ack.clear()
        self.meter.end(now)
        self._hold_clock(held=True)
        return True

    def resume(self, now: float) -> bool:
        """Let the worker send again; ``False`` if the run is not paused."""
        if self.state != "paused":
            return False
        self.state = "running"
        self._pause_requested = False
        self.meter.resume(now)
        self._hold_clock(held=False)
        return True

    def stop(self, now: float) -> None:
        """Ask the worker to end the run (an idle or failed producer keeps its state)."""
        if self.state in ("running", "paused"):
            self.meter.end(now)
            self.state = "stopped"
        self._stop_requested = True
        self._hold_clock(held=True)

    def orders(self, now: float) -> tuple[bool, float, int] | None:
        """The worker's orders: ``None`` to end the run, else (paused, rate, most to send).

        A run that has sent ``max_events`` messages ends here, ``stopped``.
        """
        if self._stop_requested:
            return None
        most = MAX_BURST
        if self._max_events is not None:
            most = min(most, self._max_events - self.meter.sent)
            if most <= 0:
                self.meter.end(now)
                self.state = "stopped"
                return None
        return self._pause_requested, self.rate, most

    def fail(self, message: str, now: float) -> None:
        """The run failed at ``now`` (worker side): no more sending, ``message`` reported."""
        self.meter.end(now)
        self.state = "failed"
        self.error = message
        self.paused_ack.set()
        self.done.set()
