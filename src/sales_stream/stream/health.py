"""A runtime's health: its state and cause, counters, Kafka's grace period and the lag."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sales_stream.stream.sink import SinkResult
from sales_stream.stream.source import Source
from sales_stream.stream.stats import SinkTotals, StreamState, StreamStats

#: Kafka must be unreachable this long before the state says so.
KAFKA_GRACE_S = 3.0
_STARTING = (StreamState.JOINING, StreamState.IDLE, StreamState.WAITING_KAFKA)
_ERROR_MAX_CHARS = 300

logger = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """``Type: message``, bounded."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_MAX_CHARS else text[: _ERROR_MAX_CHARS - 1] + "…"


@dataclass(slots=True)
class _Counters:
    state: StreamState = StreamState.CREATED
    cause: str | None = None
    waiting_on: str | None = None
    since: datetime | None = None
    consumed: int = 0
    batches: int = 0
    sinks: dict[str, SinkTotals] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)
    partitions: int = 0
    last_commit: datetime | None = None
    last_error: str | None = None
    outage_error: str | None = None  # the last error of the current wait for a sink
    idle_since: float | None = None


class Health:
    """What a runtime shows; safe from any thread. Counters cover every run of the instance.

    Args:
        name: The runtime's name (logs, stats).
        sinks: The names of the chain's sinks, in order (the first one's are ``stored`` etc.).
    """

    def __init__(self, name: str, sinks: Sequence[str]) -> None:
        self.name = name
        self._first = sinks[0]
        self._lock = threading.Lock()
        self._counters = _Counters(sinks={sink: SinkTotals() for sink in sinks})
        self._sink_names = tuple(sinks)
        self._unreachable_since: float | None = None

    def stats(self) -> StreamStats:
        """A consistent snapshot."""
        with self._lock:
            c = self._counters
            first = c.sinks[self._first]
            idle_s = 0.0
            if c.state is StreamState.IDLE and c.idle_since is not None:
                idle_s = time.monotonic() - c.idle_since
            return StreamStats(
                name=self.name,
                state=c.state,
                cause=c.cause,
                waiting_on=c.waiting_on,
                since=c.since,
                consumed=c.consumed,
                stored=first.stored,
                duplicates=first.duplicates,
                dead_lettered=first.dead_lettered,
                batches=c.batches,
                lag=dict(c.lag),
                last_commit=c.last_commit,
                last_error=c.last_error,
                idle_s=idle_s,
                sinks=dict(c.sinks),
                partitions=c.partitions,
            )

    @property
    def state(self) -> StreamState:
        """The current state."""
        with self._lock:
            return self._counters.state

    def set_state(
        self,
        state: StreamState,
        *,
        cause: str | None = None,
        waiting_on: str | None = None,
        error: str | None = None,
    ) -> None:
        """Change state; ``error`` (default: ``cause``) becomes the last error.

        ``since`` is kept while the state and its cause stay the same, so a cause must not
        carry what changes at every retry (the details go to ``error``).
        """
        with self._lock:
            c = self._counters
            if state is not c.state or cause != c.cause:
                c.since = datetime.now(UTC) if cause else None
                if state is StreamState.WAITING_SINK:
                    logger.warning("%s: %s", self.name, error or cause)
            if state is StreamState.IDLE and c.state is not StreamState.IDLE:
                c.idle_since = time.monotonic()
            c.state, c.cause, c.waiting_on = state, cause, waiting_on
            if cause and state is not StreamState.WAITING_KAFKA:
                c.last_error = error or cause
            c.outage_error = c.last_error if state is StreamState.WAITING_SINK else None

    def running(self) -> None:
        """Running, unless it already is or waits for a sink or stalls."""
        if self.state in _STARTING:
            self.set_state(StreamState.RUNNING)

    def recovered(self) -> None:
        """Writes succeed again after a wait or a stall: running, the wait's error cleared."""
        with self._lock:
            c = self._counters
            if c.state not in (StreamState.WAITING_SINK, StreamState.STALLED):
                return
            if c.since is not None:
                waited = (datetime.now(UTC) - c.since).total_seconds()
                logger.warning("%s: writing again after %.0f s (%s)", self.name, waited, c.cause)
            if c.last_error is not None and c.last_error in (c.outage_error, c.cause):
                c.last_error = None
            c.state, c.cause, c.waiting_on, c.since, c.outage_error = (
                StreamState.RUNNING,
                None,
                None,
                None,
                None,
            )

    def written(self, size: int, results: Sequence[SinkResult], *, committed: bool) -> None:
        """Count a written checkpoint of ``size`` records and each sink's result."""
        with self._lock:
            c = self._counters
            c.consumed += size
            c.batches += 1
            for name, result in zip(self._sink_names, results, strict=True):
                t = c.sinks[name]
                c.sinks[name] = SinkTotals(
                    t.stored + result.stored,
                    t.duplicates + result.duplicates,
                    t.dead_lettered + result.dead_lettered,
                )
            if committed:
                c.last_commit = datetime.now(UTC)

    def committed(self) -> None:
        """Offsets were committed now."""
        with self._lock:
            self._counters.last_commit = datetime.now(UTC)

    def error(self, text: str) -> None:
        """Show ``text`` as the last error (the state is unchanged)."""
        with self._lock:
            self._counters.last_error = text

    # Kafka and the lag (the loop thread of one run).

    def begin(self) -> None:
        """A new run: Kafka not seen unreachable yet."""
        self._unreachable_since = None

    def kafka(self, *, connected: bool, failed: bool) -> None:
        """Say ``WAITING_KAFKA`` once Kafka is unreachable for `KAFKA_GRACE_S`.

        Unless a sink is failing (which says more); leave it once Kafka is back.
        """
        now = time.monotonic()
        if connected:
            self._unreachable_since = None
            if self.state is StreamState.WAITING_KAFKA:
                self.set_state(StreamState.RUNNING)
            return
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since >= KAFKA_GRACE_S and not failed:
            self.set_state(
                StreamState.WAITING_KAFKA,
                cause="Kafka unreachable (no group coordinator)",
                waiting_on="kafka",
            )

    def reached(self) -> None:
        """Records arrived: Kafka is reachable."""
        self._unreachable_since = None

    def refresh_lag(self, source: Source, first: dict[int, int]) -> None:
        """Lag of each assigned partition: its highwater minus its first record not written.

        ``first``: partition → first record not written, else the source's position. The
        last lag is kept while Kafka is unreachable.
        """
        lag = {}
        assigned = source.assignment()
        for partition in assigned:
            highwater = source.highwater(partition)
            start = first.get(partition)
            if start is None:
                start = source.position(partition)
            if highwater is not None and start is not None:
                lag[partition] = max(0, highwater - start)
        if lag or not assigned:
            with self._lock:
                self._counters.lag = lag
                self._counters.partitions = len(assigned)

    def drop(self, partitions: set[int]) -> None:
        """Forget the lag of partitions given up in a rebalance."""
        with self._lock:
            c = self._counters
            c.lag = {p: n for p, n in c.lag.items() if p not in partitions}
