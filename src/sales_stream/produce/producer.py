"""The live Kafka producer of sale events: `ProducerThread`, controlled while it runs.

It sends generated sales at a target rate from a daemon worker thread that a notebook starts,
pauses, resumes and stops while the kernel stays free. Its parts: what it sends
(`messages`: sales, a ``bad_ratio`` share of them malformed by `badevents`), when
(`send_schedule`), the worker (`send_loop`), through which client (`delivery`: keyed by
region, deliveries tallied), and the state the controls share with the worker
(`run_state`, with the counters of `send_meter`).

Deliveries are counted by the client's callbacks, so once records settle
``acked + failed == sent``. The client timeouts are short (`delivery.LIVE_CONFIG`): a broker
that goes away shows up within seconds as failures and a ``last_error`` while the worker keeps
running; a broker unreachable at start puts the thread in state ``"failed"`` with the reason.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sales_stream.events import SaleEvent
from sales_stream.produce.delivery import LIVE_CONFIG, DeliveryTally
from sales_stream.produce.generator import SaleGenerator
from sales_stream.produce.messages import LiveMessages
from sales_stream.produce.run_state import RunState
from sales_stream.produce.send_loop import SendLoop
from sales_stream.produce.stats import ProducerStats

#: Highest accepted target rate (events/s); far above what one Python thread can send.
MAX_RATE = 1_000_000.0
PAUSE_ACK_TIMEOUT_S = 1.0


def _check_rate(rate: float) -> float:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0 < rate <= MAX_RATE):
        raise ValueError(f"rate must be a number in (0, {MAX_RATE:g}] events/s, got {rate!r}")
    return float(rate)


class ProducerThread:
    """Produces generated sales to a Kafka topic at a target rate, in the background.

    Args:
        bootstrap: Kafka bootstrap address, e.g. ``"127.0.0.1:9092"``.
        topic: Topic to produce to (must exist, see `sales_stream.clients.ensure_topic`).
        rate: Target events per second, in (0, `MAX_RATE`]; settable while running.
        bad_ratio: Fraction of deliberately malformed messages, in [0, 1]; settable.
        seed: Seeds the default generator and the malformed-message draws.
        max_events: Stop by itself after this many messages; ``None`` to run until `stop`.
        generator: Event source; defaults to ``SaleGenerator(seed)`` (``ts`` = now, UTC). A
            `SimulatedClock` of the generator stops while the producer is paused or stopped.
        producer_config: kafka-python options overriding `LIVE_CONFIG`.

    Raises:
        ValueError: If ``rate``, ``bad_ratio`` or ``max_events`` is out of range.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        rate: float = 50.0,
        bad_ratio: float = 0.0,
        seed: int | None = None,
        max_events: int | None = None,
        generator: SaleGenerator | None = None,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be >= 1 or None, got {max_events}")
        rate = _check_rate(rate)
        self._topic = topic
        self._messages = LiveMessages(
            generator if generator is not None else SaleGenerator(seed),
            bad_ratio=bad_ratio,
            seed=seed,
        )
        self._run = RunState(
            rate=rate,
            max_events=max_events,
            tally=DeliveryTally(bootstrap),
            hold_clock=self._messages.hold_clock,
        )
        self._config = {**LIVE_CONFIG, **(producer_config or {}), "bootstrap_servers": bootstrap}
        self._worker: threading.Thread | None = None

    @property
    def topic(self) -> str:
        """The topic produced to."""
        return self._topic

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock stamping the live sales: the wall clock or a `SimulatedClock`."""
        return self._messages.clock

    @property
    def rate(self) -> float:
        """Target events per second; setting it takes effect immediately."""
        return self._run.rate

    @rate.setter
    def rate(self, value: float) -> None:
        self._run.rate = _check_rate(value)
        self._run.wake.set()

    @property
    def bad_ratio(self) -> float:
        """Fraction of malformed messages; setting it takes effect immediately."""
        return self._messages.bad_ratio

    @bad_ratio.setter
    def bad_ratio(self, value: float) -> None:
        self._messages.bad_ratio = value

    def start(self) -> None:
        """Start sending (again after `stop` or a failure; counters keep adding up).

        Starting a running producer does nothing; starting a paused one resumes it.

        Raises:
            RuntimeError: If the previous run is still settling its last deliveries.
        """
        run = self._run
        with run.lock:
            state = run.state
            if state == "running":
                return
            if state != "paused":
                if self.is_alive():
                    raise RuntimeError(
                        "the previous run is still settling its last deliveries; "
                        "start again in a few seconds"
                    )
                run.begin(time.monotonic())
                loop = SendLoop(run, self._messages, config=self._config, topic=self._topic)
                self._worker = threading.Thread(
                    target=loop, name=f"producer-{self._topic}", daemon=True
                )
                self._worker.start()
        if state == "paused":
            self.resume()

    def pause(self) -> None:
        """Stop sending until `resume`; returns once the worker has stopped sending."""
        run = self._run
        with run.lock:
            if not run.pause(time.monotonic()):
                return
        run.wake.set()
        run.paused_ack.wait(PAUSE_ACK_TIMEOUT_S)

    def resume(self) -> None:
        """Resume sending after `pause`, on a fresh schedule at the current rate."""
        run = self._run
        with run.lock:
            if not run.resume(time.monotonic()):
                return
        run.wake.set()

    def stop(self, timeout: float = 2.0) -> ProducerStats:
        """Stop sending, flush and join the worker; return within ``timeout`` seconds.

        Records the broker has not settled when ``timeout`` expires (broker down) keep
        resolving in the background: they are counted as acked or failed at the latest
        after the producer's ``delivery_timeout_ms``.

        Returns:
            The stats after the stop.
        """
        deadline = time.monotonic() + timeout
        run = self._run
        with run.lock:
            run.stop(time.monotonic())
            worker = self._worker
        run.wake.set()
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
        run.done.set()
        return self.stats

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over: ``max_events`` sent and settled, `stop`, or failure.

        Returns:
            ``True`` if the run is over, ``False`` if ``timeout`` expired first.
        """
        return self._run.done.wait(timeout)

    def is_alive(self) -> bool:
        """Whether the worker thread is running (it outlives `stop` only while settling)."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    @property
    def stats(self) -> ProducerStats:
        """A consistent snapshot of the counters."""
        run = self._run
        acked, failed, delivery_error = run.tally.snapshot()  # read before ``sent``
        now = time.monotonic()
        with run.lock:
            meter = run.meter
            return ProducerStats(
                state=run.state,
                sent=meter.sent,
                acked=acked,
                failed=failed,
                valid_sent=meter.valid_sent,
                bad_sent=meter.bad_sent,
                target_rate=run.rate,
                current_rate=meter.rate(now) if run.state == "running" else 0.0,
                last_error=run.error or delivery_error,
                started_at=meter.started_at,
                elapsed_s=meter.active(now),
            )

    def recent(self, n: int = 10) -> list[SaleEvent]:
        """Up to ``n`` (at most `send_meter.RECENT_CAPACITY`) latest valid events, newest first.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._run.lock:
            return self._run.meter.recent(n)
