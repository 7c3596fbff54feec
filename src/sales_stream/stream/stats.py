"""Typed status of a stream runtime: a state, its cause, and numbers (the UI formats them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class StreamState(StrEnum):
    """What a runtime is doing."""

    CREATED = "created"
    JOINING = "joining"
    RUNNING = "running"
    IDLE = "idle"
    #: The Kafka broker (group coordinator) is unreachable.
    WAITING_KAFKA = "waiting_kafka"
    #: A sink's service is unreachable (transient): the batch is retried with backoff.
    WAITING_SINK = "waiting_sink"
    #: A batch fails with an unexpected error: retried with backoff, ``cause`` names it.
    STALLED = "stalled"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: States that wait for a service: their status says for how long.
_WAITS = (StreamState.WAITING_SINK, StreamState.WAITING_KAFKA)


@dataclass(frozen=True, slots=True)
class SinkTotals:
    """Counters of one sink since the runtime was created."""

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True)
class StreamStats:
    """A snapshot of a runtime (counters cover every run of the instance).

    Attributes:
        name: The runtime's name (``"mongodb"``, ``"lake"``, ``"hyper"``).
        state: What it is doing.
        cause: Why it waits, stalls or failed (English, for logs), else ``None``.
        waiting_on: The unavailable service in `StreamState.WAITING_SINK`/``WAITING_KAFKA``.
        since: When the current wait or stall began (UTC).
        consumed: Records whose checkpoint is written (valid and rejected).
        stored: Records written by the first sink.
        duplicates: Records the first sink already had.
        dead_lettered: Records the first sink stored as dead letters.
        batches: Checkpoints written.
        lag: Partition → records in Kafka not yet written and committed.
        last_commit: When offsets were last committed (UTC).
        last_error: The last error seen, if any.
        idle_s: Seconds since the runtime caught up (0 unless idle).
        sinks: Sink name → its counters.
        partitions: Partitions assigned to this member.
    """

    name: str
    state: StreamState
    cause: str | None
    waiting_on: str | None
    since: datetime | None
    consumed: int
    stored: int
    duplicates: int
    dead_lettered: int
    batches: int
    lag: dict[int, int]
    last_commit: datetime | None
    last_error: str | None
    idle_s: float = 0.0
    sinks: dict[str, SinkTotals] = field(default_factory=dict)
    partitions: int = 0

    @property
    def total_lag(self) -> int:
        """Lag summed over partitions."""
        return sum(self.lag.values())

    @property
    def healthy(self) -> bool:
        """Whether it is making progress or caught up."""
        return self.state in (StreamState.RUNNING, StreamState.IDLE, StreamState.JOINING)

    def waited_s(self, *, now: datetime | None = None) -> int | None:
        """Whole seconds since the current wait or stall began, if one did."""
        if self.since is None:
            return None
        return max(0, int(((now or datetime.now(UTC)) - self.since).total_seconds()))

    @property
    def status(self) -> str:
        """One English line: the state, its cause, and how long a service has been waited for.

        E.g. ``waiting_sink: MongoDB unreachable for 12 s``.
        """
        if not self.cause:
            return str(self.state)
        waited = self.waited_s()
        if waited is not None and self.state in (
            StreamState.WAITING_SINK,
            StreamState.WAITING_KAFKA,
        ):
            return f"{self.state}: {self.cause} for {waited} s"
        return f"{self.state}: {self.cause}"
