"""The worker of a live producer's run: connect, send what the schedule says is due, close.

It never has more than `MAX_IN_FLIGHT` unsettled records. A broker unreachable at the start
fails the run with the reason; one that goes away later shows as delivery failures while the
loop keeps running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from sales_stream.errors import InfraError
from sales_stream.events import SaleEvent
from sales_stream.produce.delivery import Sender
from sales_stream.produce.messages import LiveMessages
from sales_stream.produce.run_state import RunState
from sales_stream.produce.send_schedule import SendSchedule

log = logging.getLogger(__name__)

#: Records sent but not settled above which the worker waits (back-pressure).
MAX_IN_FLIGHT = 5_000
MIN_SLEEP_S = 0.001
PAUSED_POLL_S = 0.25


class SendLoop:
    """One run of a live producer, called on its worker thread.

    Args:
        run: The state shared with the producer's controls.
        messages: What to send.
        config: The client's kafka-python options.
        topic: The topic.
        client: Builds the Kafka client (unit tests pass an in-memory one).
    """

    def __init__(
        self,
        run: RunState,
        messages: LiveMessages,
        *,
        config: dict[str, Any],
        topic: str,
        client: Callable[..., KafkaProducer] = KafkaProducer,
    ) -> None:
        self._run = run
        self._messages = messages
        self._config = config
        self._topic = topic
        self._client = client

    def __call__(self) -> None:
        """Connect, send until the run ends, close; a failure ends the run ``failed``."""
        try:
            sender = Sender(self._config, self._topic, client=self._client)
        except InfraError as exc:
            self._fail(str(exc))
            return
        except Exception as exc:
            self._fail(f"cannot create the Kafka producer: {type(exc).__name__}: {exc}")
            return
        try:
            self._loop(sender)
        except Exception as exc:
            log.exception("producer of topic %r crashed", self._topic)
            self._fail(f"producer crashed: {type(exc).__name__}: {exc}")
        finally:
            self._close(sender)

    def _fail(self, message: str) -> None:
        log.error("producer of topic %r failed: %s", self._topic, message)
        with self._run.lock:
            self._run.fail(message, time.monotonic())

    def _close(self, sender: Sender) -> None:
        run = self._run
        try:
            sender.flush()
            sender.close()
        except KafkaTimeoutError:
            acked, failed, _ = run.tally.snapshot()
            message = (
                f"{run.meter.sent - acked - failed} record(s) still unsettled "
                f"{sender.flush_timeout_s:.0f} s after the last send; the Kafka client was "
                "abandoned"
            )
            log.error("producer of topic %r: %s", self._topic, message)
            with run.lock:
                run.error = message
        except Exception:
            log.exception("closing the producer of topic %r failed", self._topic)
        run.done.set()

    def _loop(self, sender: Sender) -> None:
        run, schedule = self._run, SendSchedule()
        with run.lock:  # sending time starts now, not before the connection
            run.meter.restart(time.monotonic())
        while True:
            run.wake.clear()
            with run.lock:
                orders = run.orders(time.monotonic())
            if orders is None:
                return
            paused, target, most = orders
            now = time.monotonic()
            if paused:
                run.paused_ack.set()
                self._sample(now)
                run.wake.wait(PAUSED_POLL_S)
                schedule.reset()
                continue
            due = schedule.due(now, target)
            if due <= 0:
                run.wake.wait(max(schedule.wait(now), MIN_SLEEP_S))
                continue
            if run.meter.sent - run.tally.settled() >= MAX_IN_FLIGHT:
                run.wake.wait(MIN_SLEEP_S)  # the client lags behind: let it catch up
                continue
            burst = min(due, most)
            self._send_burst(sender, burst)
            schedule.sent(burst)
            self._sample(time.monotonic())

    def _send_burst(self, sender: Sender, count: int) -> None:
        tally = self._run.tally
        for _ in range(count):
            event, value, bad = self._messages.draw()
            try:
                future = sender.send(event, value)
            except KafkaError as exc:
                self._count_sent(event, bad=bad)
                tally.fail(exc)
                continue
            self._count_sent(event, bad=bad)  # before the callbacks: acked + failed <= sent
            tally.track(future)

    def _count_sent(self, event: SaleEvent, *, bad: bool) -> None:
        with self._run.lock:
            self._run.meter.count(event, bad=bad)

    def _sample(self, now: float) -> None:
        with self._run.lock:
            self._run.meter.sample(now)
