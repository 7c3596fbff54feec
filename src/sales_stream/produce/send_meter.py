"""What a live producer sent: counters, the latest valid sales, its measured rate and time.

Not thread-safe by itself: the live producer calls it under its lock (`run_state.RunState`).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from itertools import islice

from sales_stream.events import SaleEvent

#: The window of the measured rate, and how often a point of it is taken.
RATE_WINDOW_S = 2.0
SAMPLE_EVERY_S = 0.1
RECENT_CAPACITY = 100


class SendMeter:
    """Counters of the messages sent, and the time spent sending (pauses left out)."""

    def __init__(self) -> None:
        self.sent = self.valid_sent = self.bad_sent = 0
        self.started_at: datetime | None = None
        self._active_since: float | None = None
        self._active_total = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._recent: deque[SaleEvent] = deque(maxlen=RECENT_CAPACITY)

    def begin(self, now: float) -> None:
        """A run starts sending at ``now`` (monotonic): a fresh rate window."""
        if self.started_at is None:
            self.started_at = datetime.now(UTC)
        self._active_since = now
        self._samples.clear()
        self._samples.append((now, self.sent))

    def resume(self, now: float) -> None:
        """Sending again at ``now`` after a pause."""
        self._active_since = now

    def restart(self, now: float) -> None:
        """The sending time of an active run counts from ``now`` (the client connected)."""
        if self._active_since is not None:
            self._active_since = now

    def end(self, now: float) -> None:
        """Sending stops at ``now`` (pause, stop, failure)."""
        if self._active_since is not None:
            self._active_total += now - self._active_since
            self._active_since = None

    def count(self, event: SaleEvent, *, bad: bool) -> None:
        """One message sent: ``event`` itself, or a malformed payload made from it."""
        self.sent += 1
        if bad:
            self.bad_sent += 1
        else:
            self.valid_sent += 1
            self._recent.append(event)

    def sample(self, now: float) -> None:
        """Take a point of the rate window (at most every `SAMPLE_EVERY_S`)."""
        if not self._samples or now - self._samples[-1][0] >= SAMPLE_EVERY_S:
            self._samples.append((now, self.sent))

    def rate(self, now: float) -> float:
        """Messages per second over the last `RATE_WINDOW_S`."""
        samples = self._samples
        while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW_S:
            samples.popleft()
        if not samples or now <= samples[0][0]:
            return 0.0
        base_t, base_sent = samples[0]
        # over a full window even just after a start: one sale 60 ms in is not 17 sales/s
        return (self.sent - base_sent) / max(now - base_t, RATE_WINDOW_S)

    def active(self, now: float) -> float:
        """Seconds spent sending so far."""
        if self._active_since is None:
            return self._active_total
        return self._active_total + now - self._active_since

    def recent(self, n: int) -> list[SaleEvent]:
        """Up to ``n`` latest valid events, newest first."""
        return list(islice(reversed(self._recent), n))
