"""What the live producer sends: generated sales, a share of them deliberately malformed.

The sales carry the time of the generator's clock; a `SimulatedClock` (a catch-up run) is held
while nothing is sent, so the sales of a paused producer do not jump ahead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

from sales_stream.events import SaleEvent, encode
from sales_stream.produce.badevents import make_bad_payload
from sales_stream.produce.generator import SaleGenerator, SimulatedClock


def _check_ratio(ratio: float) -> float:
    """``ratio`` as a float if it is a fraction of malformed messages, in [0, 1].

    Raises:
        ValueError: If it is not.
    """
    if not (isinstance(ratio, int | float) and 0.0 <= ratio <= 1.0):
        raise ValueError(f"bad_ratio must be in [0, 1], got {ratio!r}")
    return float(ratio)


class LiveMessages:
    """The live producer's messages, one sale at a time.

    Args:
        generator: The sales, dated by its clock.
        bad_ratio: Fraction of malformed messages, in [0, 1]; settable.
        seed: Seeds the malformed-message draws; ``None`` for random ones.

    Raises:
        ValueError: If ``bad_ratio`` is out of range.
    """

    def __init__(self, generator: SaleGenerator, *, bad_ratio: float, seed: int | None) -> None:
        self._generator = generator
        self._bad_ratio = _check_ratio(bad_ratio)
        self._rng = random.Random(None if seed is None else f"bad-events:{seed}")

    @property
    def bad_ratio(self) -> float:
        """Fraction of malformed messages; setting it takes effect at the next message."""
        return self._bad_ratio

    @bad_ratio.setter
    def bad_ratio(self, value: float) -> None:
        self._bad_ratio = _check_ratio(value)

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock dating the sales: the wall clock or a `SimulatedClock`."""
        return self._generator.clock

    def hold_clock(self, *, held: bool) -> None:
        """Stop a simulated clock while nothing is sent (``held``), restart it with the sending."""
        clock = self._generator.clock
        if isinstance(clock, SimulatedClock):
            if held:
                clock.pause()
            else:
                clock.resume()

    def draw(self) -> tuple[SaleEvent, bytes | None, bool]:
        """The next sale, the message value sent for it, and whether that value is malformed."""
        event = self._generator.next_event()
        bad = self._rng.random() < self._bad_ratio
        value = make_bad_payload(self._rng, base=event)[0] if bad else encode(event)
        return event, value, bad
