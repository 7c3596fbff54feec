"""What a producer reports: its state and a snapshot of its counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

State = Literal["idle", "running", "paused", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A snapshot of a producer's counters.

    Attributes:
        state: ``"idle"``, ``"running"``, ``"paused"``, ``"stopped"`` or ``"failed"``.
        sent: Messages handed to Kafka (valid and malformed).
        acked: Messages acknowledged by the broker.
        failed: Messages that could not be delivered.
        valid_sent: Sent messages carrying a valid event.
        bad_sent: Sent messages deliberately malformed.
        target_rate: Requested events per second (``inf`` for a backfill).
        current_rate: Send rate measured over the last
            `sales_stream.produce.send_meter.RATE_WINDOW_S` seconds (0 unless running); for a
            backfill, its average rate.
        last_error: The latest delivery or connection error, if any.
        started_at: UTC time of the first start, ``None`` before.
        elapsed_s: Seconds spent sending, pauses excluded.
    """

    state: State
    sent: int
    acked: int
    failed: int
    valid_sent: int
    bad_sent: int
    target_rate: float
    current_rate: float
    last_error: str | None
    started_at: datetime | None
    elapsed_s: float

    @property
    def in_flight(self) -> int:
        """Messages sent but neither acknowledged nor failed yet."""
        return self.sent - self.acked - self.failed

    @property
    def average_rate(self) -> float:
        """Messages sent per second of sending time."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0
