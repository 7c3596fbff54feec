"""The live producer's absolute schedule: after an anchor, message *k* is due at anchor + k/rate.

Timer jitter never accumulates; a rate change re-anchors the schedule, and so does a sender
more than `MAX_LAG_S` behind (a target above what the machine can send), instead of bursting
to catch up.
"""

from __future__ import annotations

MAX_BURST = 500
MAX_LAG_S = 1.0


class SendSchedule:
    """How many messages are due now at a target rate."""

    def __init__(self) -> None:
        self.rate = 0.0  # the rate the schedule is anchored on; 0 forces a re-anchor
        self._anchor_t = 0.0
        self._anchor_n = self._n = 0

    def reset(self) -> None:
        """Re-anchor at the next `due` (after a pause)."""
        self.rate = 0.0

    def due(self, now: float, target: float) -> int:
        """Messages due at ``now`` for the ``target`` rate (≤ 0: none yet, see `wait`)."""
        if target != self.rate:
            self.rate, self._anchor_t, self._anchor_n = target, now, self._n
        due = int((now - self._anchor_t) * self.rate) + 1 - (self._n - self._anchor_n)
        if due > self.rate * MAX_LAG_S + MAX_BURST:
            self._anchor_t, self._anchor_n, due = now, self._n, 1
        return due

    def wait(self, now: float) -> float:
        """Seconds until the next message is due."""
        return self._anchor_t + (self._n - self._anchor_n) / self.rate - now

    def sent(self, count: int) -> None:
        """``count`` messages went out."""
        self._n += count
