"""Realistic, reproducible sale events for the fictitious retailer.

All randomness on the hot path comes from one ``random.Random(seed)`` with precomputed
cumulative weights, so a seed fully determines the events (given the timestamps) and
generation is fast enough for large backfills. Faker (``fr_FR``) only names the daily
promotion campaigns, once per promotion day.

Realism rules: regions sell in proportion to their population and cities within a region
likewise; a few best-sellers dominate; quantities are mostly 1–3 (cheap accessories sell
in larger quantities than laptops); prices are psychological price points (``x9.99``,
``x.49``/``x.99``) inside each product's band; stores (``magasin``) sell only during opening
hours (Monday–Saturday, 09:00–20:00 Paris time); on some days a few products are on
promotion (10–30 % off, and they sell twice as much). Seasonality (`seasonality_factor`)
follows Paris local time: quiet nights, lunch and evening peaks, busier Saturdays.

A seed makes the *content* reproducible, never the identity: every emitted sale gets a fresh
random ``event_id`` (UUID v4 from the OS), so a re-run with the same seed sends new sales,
not duplicates that the idempotent sinks would drop.

History and live stream are one business, and no sale is ever dated after the wall clock.
The live stream runs on the wall clock (``SaleGenerator``'s default clock) at `live_rate`,
which puts as many sales in each hour as the history has at that hour, so the live view
follows real time and a restart simply continues at now. A run of known size (``make run``)
may instead fill the span just before now on a `SimulatedClock`, a catch-up clock that runs
faster than real time but never past the wall clock (`catch_up_run`): history up to the
span's start, live sales in it, both at the same intensity per hour.
"""

import random
import threading
import time
import uuid
from bisect import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from math import ceil, floor
from zoneinfo import ZoneInfo

from faker import Faker

from sales_stream.events import CURRENCY, SCHEMA_VERSION, SaleEvent
from sales_stream.reference import CATALOGUE, CHANNELS, REGIONS, City, Product, Region

PARIS = ZoneInfo("Europe/Paris")
#: The shop's average sales per day: 10 a minute, so the live stream on the wall clock shows a
#: sale every few seconds by day (one every 2 to 3 s at the evening peak, one every 2 minutes at
#: night), and 7 days of history hold about 100,000 sales, the size `bench/dashboard.py` measures.
DEFAULT_EVENTS_PER_DAY = 14_400
#: Simulated seconds per real second of a catch-up run (`catch_up_run`): one real second fills
#: one minute of sales before now.
CATCH_UP_SPEEDUP = 60.0
#: Days of history ``make run`` and notebook 02 backfill before the live stream.
DEFAULT_BACKFILL_DAYS = 7
PROMOTION_DAY_PROBABILITY = 0.25
PROMOTION_DISCOUNTS = (0.10, 0.15, 0.20, 0.25, 0.30)
PROMOTION_POPULARITY_BOOST = 2.0
STORE_HOURS = range(9, 20)

_HOUR_PROFILE = (
    0.25, 0.12, 0.07, 0.05, 0.05, 0.08, 0.20, 0.45, 0.70, 0.95, 1.10, 1.30,
    1.60, 1.50, 1.10, 1.00, 1.05, 1.25, 1.50, 1.70, 1.80, 1.60, 1.10, 0.60,
)  # fmt: skip
_WEEKDAY_PROFILE = (0.90, 0.90, 0.95, 0.95, 1.05, 1.30, 0.95)  # Monday … Sunday
_HOUR_FACTORS = tuple(h * 24 / sum(_HOUR_PROFILE) for h in _HOUR_PROFILE)
_WEEKDAY_FACTORS = tuple(w * 7 / sum(_WEEKDAY_PROFILE) for w in _WEEKDAY_PROFILE)

_CHANNEL_WEIGHTS_OPEN = (0.45, 0.30, 0.18, 0.07)
_CHANNEL_WEIGHTS_CLOSED = (0.60, 0.0, 0.30, 0.10)
_QUANTITY_WEIGHTS_CHEAP = (50, 25, 12, 5, 3, 2, 1, 1, 0.5, 0.5)
_QUANTITY_WEIGHTS_MID = (70, 18, 7, 2.5, 1, 0.5, 0.4, 0.3, 0.2, 0.1)
_QUANTITY_WEIGHTS_EXPENSIVE = (90, 8, 1.5, 0.5)
_CHEAP_MAX_PRICE = 60.0
_EXPENSIVE_MIN_PRICE = 400.0
_HOUR = timedelta(hours=1)
_HOUR_MS = 3_600_000


def seasonality_factor(ts: datetime) -> float:
    """Relative sales rate at ``ts`` (1.0 = weekly average), from Paris local time.

    Args:
        ts: An aware datetime.

    Returns:
        Hour-of-day factor times day-of-week factor; averages ≈ 1 over a week.

    Raises:
        ValueError: If ``ts`` is naive.
    """
    if ts.tzinfo is None:
        raise ValueError(f"ts must be timezone-aware, got naive {ts.isoformat()}")
    local = ts.astimezone(PARIS)
    return _HOUR_FACTORS[local.hour] * _WEEKDAY_FACTORS[local.weekday()]


def live_rate(
    *,
    events_per_day: float = DEFAULT_EVENTS_PER_DAY,
    speedup: float = 1.0,
    at: datetime | None = None,
) -> float:
    """The real-time send rate (events/s) matching the history's intensity.

    A backfill of ``events_per_day`` puts ``events_per_day / 24 * seasonality_factor(hour)``
    sales in an hour; on the wall clock (``speedup`` 1) the live stream puts as many in each
    real hour; on a catch-up clock running ``speedup`` times faster, the same number of sales
    per simulated hour takes ``speedup`` times fewer real seconds.

    Args:
        events_per_day: The history's average sales per day (``> 0``).
        speedup: Simulated seconds per real second (``>= 1``; 1 for the wall clock).
        at: Aware time whose hour-of-day and weekday factor applies; ``None`` for the weekly
            average (factor 1).

    Raises:
        ValueError: If an argument is out of range or ``at`` is naive.
    """
    if not events_per_day > 0:
        raise ValueError(f"events_per_day must be > 0, got {events_per_day}")
    if not speedup >= 1:
        raise ValueError(f"speedup must be >= 1, got {speedup}")
    factor = 1.0 if at is None else seasonality_factor(at)
    return events_per_day / 86_400 * factor * speedup


class SimulatedClock:
    """A catch-up clock: from ``start``, ``speedup`` times faster than real time, never past now.

    The sale times of a run of known size (`catch_up_clock`) advance one simulated minute per
    real second (with the default `CATCH_UP_SPEEDUP`) until they reach ``until`` or the wall
    clock, where they stay: no sale is ever dated after the moment it is made. `pause` stops
    the clock (a paused producer's clock does not run on) and `resume` restarts it.

    Args:
        start: Aware simulated time at creation, not after now.
        speedup: Simulated seconds per real second (``>= 1``).
        until: Aware time the clock stops at (``None``: the wall clock only), e.g. a run that
            must not date a sale after the moment it was planned for.
        monotonic: Real-time source in seconds (for tests); defaults to ``time.monotonic``.

    Raises:
        ValueError: If ``speedup`` is < 1, or ``start`` or ``until`` is naive.
    """

    def __init__(
        self,
        start: datetime,
        *,
        speedup: float = CATCH_UP_SPEEDUP,
        until: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not speedup >= 1:
            raise ValueError(f"speedup must be >= 1, got {speedup}")
        for name, moment in (("start", start), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
        self.start = start.astimezone(UTC)
        self.speedup = float(speedup)
        self.until = None if until is None else until.astimezone(UTC)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._origin = monotonic()
        self._paused_at: float | None = None

    def __call__(self) -> datetime:
        """The current simulated time (aware UTC), never after ``until`` nor the wall clock."""
        with self._lock:
            now = self._monotonic() if self._paused_at is None else self._paused_at
            elapsed = now - self._origin
        moment = self.start + timedelta(seconds=elapsed * self.speedup)
        limit = _system_clock() if self.until is None else min(self.until, _system_clock())
        return min(moment, limit)

    @property
    def paused(self) -> bool:
        """Whether the clock is stopped (`pause`)."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Stop the clock where it is (nothing if already paused)."""
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._monotonic()

    def resume(self) -> None:
        """Restart a paused clock from where it stopped (nothing if it runs)."""
        with self._lock:
            if self._paused_at is not None:
                self._origin += self._monotonic() - self._paused_at
                self._paused_at = None


def catch_up_clock(
    *, live_seconds: float, speedup: float = CATCH_UP_SPEEDUP, now: datetime | None = None
) -> SimulatedClock:
    """A simulated clock that reaches ``now`` after ``live_seconds`` real seconds.

    For a run of known length (``make run``): backfill the history up to ``clock.start``, then
    stream on this clock at `live_rate`; the live phase fills the last
    ``live_seconds * speedup`` seconds before ``now`` at the history's intensity. The clock
    stops at ``now``, so no sale is dated after it, even when sending runs late.

    Raises:
        ValueError: If ``live_seconds`` is negative, ``speedup`` < 1 or ``now`` naive.
    """
    if live_seconds < 0:
        raise ValueError(f"live_seconds must be >= 0, got {live_seconds}")
    if now is not None and now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    end = (now or datetime.now(UTC)).astimezone(UTC)
    span = timedelta(seconds=live_seconds * speedup)
    return SimulatedClock(end - span, speedup=speedup, until=end)


def catch_up_run(
    events: int,
    *,
    events_per_day: float = DEFAULT_EVENTS_PER_DAY,
    speedup: float = CATCH_UP_SPEEDUP,
    now: datetime | None = None,
) -> tuple[SimulatedClock, float]:
    """A clock and a send rate such that ``events`` live sales end at ``now``, not after it.

    For a live run of known size (notebook 02 under ``make run``): the sales fill the span
    just before ``now`` at the history's average intensity (`live_rate` without ``at``), as
    ``make run``'s own live phase does.

    Returns:
        The clock (`catch_up_clock`) and the rate (events per real second) to send at.

    Raises:
        ValueError: If ``events`` < 1, or as `live_rate` and `catch_up_clock`.
    """
    if events < 1:
        raise ValueError(f"events must be >= 1, got {events}")
    rate = live_rate(events_per_day=events_per_day, speedup=speedup)
    return catch_up_clock(live_seconds=events / rate, speedup=speedup, now=now), rate


def live_clock(
    real_time: bool,
    events: int,
    *,
    events_per_day: float = DEFAULT_EVENTS_PER_DAY,
    speedup: float = CATCH_UP_SPEEDUP,
    now: datetime | None = None,
) -> tuple[SimulatedClock | None, float]:
    """The clock and send rate of notebook 02's live sales.

    Real time (``real_time``, interactive): no simulated clock, at the history's intensity at
    this hour (`live_rate` at ``now``). Otherwise ``events`` sales that end at ``now``
    (`catch_up_run`).

    Returns:
        The clock (``None``: the sales carry the real time) and the rate in events per second.
    """
    if real_time:
        return None, live_rate(events_per_day=events_per_day, at=now or datetime.now(UTC))
    return catch_up_run(events, events_per_day=events_per_day, speedup=speedup, now=now)


def new_event_id() -> str:
    """A fresh random event id (UUID v4 from the OS's random source, never seeded)."""
    return str(uuid.uuid4())


def price_points(product: Product) -> tuple[float, ...]:
    """Psychological price points inside the product's band, cheapest first.

    Steps are 0.50 below 100 EUR (``x.49``/``x.99``), 5 below 500 EUR and 10 above
    (``x4.99``/``x9.99``).

    Args:
        product: A catalogue product.

    Returns:
        The non-empty tuple of allowed regular unit prices.
    """
    step = 0.5 if product.price_max < 100 else 5.0 if product.price_max < 500 else 10.0
    first = ceil((product.price_min + 0.01) / step)
    last = floor((product.price_max + 0.01) / step)
    points = tuple(round(k * step - 0.01, 2) for k in range(first, last + 1))
    if not points:
        raise ValueError(f"price band of {product.name!r} holds no price point")
    return points


@dataclass(frozen=True, slots=True)
class Promotion:
    """A one-day promotion campaign.

    Attributes:
        day: Paris local date of the promotion.
        name: Campaign name (Faker catch phrase, for display).
        discount: Fraction taken off the unit price, e.g. ``0.2``.
        products: Names of the discounted products.
    """

    day: date
    name: str
    discount: float
    products: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Day:
    """Per-day draw tables: the promotion (if any) and the product cumulative weights."""

    promotion: Promotion | None
    product_cum: tuple[float, ...]


def _cum(weights: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    return tuple(accumulate(weights))


def _quantity_cum(product: Product) -> tuple[float, ...]:
    if product.price_max <= _CHEAP_MAX_PRICE:
        return _cum(_QUANTITY_WEIGHTS_CHEAP)
    if product.price_min >= _EXPENSIVE_MIN_PRICE:
        return _cum(_QUANTITY_WEIGHTS_EXPENSIVE)
    return _cum(_QUANTITY_WEIGHTS_MID)


_PLACES: tuple[tuple[Region, City], ...] = tuple((r, c) for r in REGIONS for c in r.cities)
_PLACE_CUM = _cum([r.weight * c.weight / sum(x.weight for x in r.cities) for r, c in _PLACES])
_PRODUCT_CUM = _cum([p.popularity for p in CATALOGUE])
_PRICE_POINTS = tuple(price_points(p) for p in CATALOGUE)
_QUANTITY_CUMS = tuple(_quantity_cum(p) for p in CATALOGUE)
_CHANNEL_CUM_OPEN = _cum(_CHANNEL_WEIGHTS_OPEN)
_CHANNEL_CUM_CLOSED = _cum(_CHANNEL_WEIGHTS_CLOSED)


def _system_clock() -> datetime:
    return datetime.now(UTC)


def _to_utc_ms(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError(f"ts must be timezone-aware, got naive {ts.isoformat()}")
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)


class SaleGenerator:
    """Deterministic generator of realistic `SaleEvent` objects.

    Args:
        seed: Seed of the random source; ``None`` for a random one. The same seed and the
            same timestamps give the same events, except their ``event_id``.
        promotions: Whether promotion days happen.
        clock: Returns the current aware datetime; used when no ``ts`` is given.
        ids: Returns each new event's id; defaults to `new_event_id` (unique per emission).
    """

    def __init__(
        self,
        seed: int | None = None,
        *,
        promotions: bool = True,
        clock: Callable[[], datetime] | None = None,
        ids: Callable[[], str] = new_event_id,
    ) -> None:
        self._rng = random.Random(seed)
        self._ids = ids
        self._promotions = promotions
        self._clock = clock or _system_clock
        self._promotion_seed = self._rng.getrandbits(64)
        self._faker = Faker("fr_FR")
        self._days: dict[date, _Day] = {}

    @property
    def clock(self) -> Callable[[], datetime]:
        """The clock stamping events generated without an explicit ``ts``."""
        return self._clock

    def promotion_on(self, day: date) -> Promotion | None:
        """Return the promotion running on a Paris local date, if any (deterministic)."""
        return self._day(day).promotion

    def next_event(self, *, ts: datetime | None = None) -> SaleEvent:
        """Generate one sale.

        Args:
            ts: Aware sale time; defaults to ``clock()``. Converted to UTC and truncated to
                the millisecond.

        Returns:
            A valid event.

        Raises:
            ValueError: If ``ts`` (or the clock's value) is naive.
        """
        ts = _to_utc_ms(self._clock() if ts is None else ts)
        local = ts.astimezone(PARIS)
        store_open = local.weekday() < 6 and local.hour in STORE_HOURS
        return self._make(ts, self._day(local.date()), store_open)

    def events(self, n: int, *, ts: datetime | None = None) -> list[SaleEvent]:
        """Generate ``n`` sales, each stamped with ``ts`` or, by default, ``clock()``.

        Raises:
            ValueError: If ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return [self.next_event(ts=ts) for _ in range(n)]

    def backfill(
        self,
        days: int,
        *,
        end: datetime | None = None,
        events_per_day: int = DEFAULT_EVENTS_PER_DAY,
    ) -> Iterator[SaleEvent]:
        """Generate history over ``[end - days, end)`` in ascending ``ts`` order.

        Each hour receives about ``events_per_day / 24 * seasonality_factor(hour)`` events
        (±10 % noise), spread uniformly within the hour.

        Args:
            days: Length of the window in days, ``>= 1``.
            end: Aware end of the window (exclusive); defaults to ``clock()``.
            events_per_day: Average number of events per day, ``>= 1``.

        Returns:
            A lazy iterator of events with non-decreasing ``ts`` inside the window.

        Raises:
            ValueError: If ``days`` or ``events_per_day`` is < 1 or ``end`` is naive.
        """
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        if events_per_day < 1:
            raise ValueError(f"events_per_day must be >= 1, got {events_per_day}")
        end = _to_utc_ms(self._clock() if end is None else end)
        return self._backfill(end - timedelta(days=days), end, events_per_day / 24)

    def _backfill(self, start: datetime, end: datetime, per_hour: float) -> Iterator[SaleEvent]:
        rng = self._rng
        hour = start.replace(minute=0, second=0, microsecond=0)
        while hour < end:
            lo = max(hour, start)
            hi = min(hour + _HOUR, end)
            local = hour.astimezone(PARIS)
            weekday = local.weekday()
            factor = _HOUR_FACTORS[local.hour] * _WEEKDAY_FACTORS[weekday]
            span_ms = (hi - lo) // timedelta(milliseconds=1)
            expected = per_hour * factor * span_ms / _HOUR_MS
            count = int(expected * rng.uniform(0.9, 1.1) + rng.random())
            day = self._day(local.date())
            store_open = weekday < 6 and local.hour in STORE_HOURS
            for offset in sorted(int(rng.random() * span_ms) for _ in range(count)):
                yield self._make(lo + timedelta(milliseconds=offset), day, store_open)
            hour += _HOUR

    def _day(self, day: date) -> _Day:
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._plan_day(day)
        return cached

    def _plan_day(self, day: date) -> _Day:
        if not self._promotions:
            return _Day(None, _PRODUCT_CUM)
        rng = random.Random(f"{self._promotion_seed}:{day.isoformat()}")
        if rng.random() >= PROMOTION_DAY_PROBABILITY:
            return _Day(None, _PRODUCT_CUM)
        chosen = frozenset(p.name for p in rng.sample(CATALOGUE, rng.randint(2, 5)))
        self._faker.seed_instance(rng.getrandbits(64))
        promotion = Promotion(
            day=day,
            name=self._faker.catch_phrase(),
            discount=rng.choice(PROMOTION_DISCOUNTS),
            products=chosen,
        )
        weights = [
            p.popularity * (PROMOTION_POPULARITY_BOOST if p.name in chosen else 1.0)
            for p in CATALOGUE
        ]
        return _Day(promotion, _cum(weights))

    def _make(self, ts: datetime, day: _Day, store_open: bool) -> SaleEvent:
        random_ = self._rng.random
        region, city = _PLACES[bisect(_PLACE_CUM, random_() * _PLACE_CUM[-1], 0, len(_PLACES) - 1)]
        product_cum = day.product_cum
        index = bisect(product_cum, random_() * product_cum[-1], 0, len(CATALOGUE) - 1)
        product = CATALOGUE[index]
        quantity_cum = _QUANTITY_CUMS[index]
        quantity = 1 + bisect(quantity_cum, random_() * quantity_cum[-1], 0, len(quantity_cum) - 1)
        points = _PRICE_POINTS[index]
        unit_price = points[int(len(points) * random_() ** 1.5)]
        promotion = day.promotion
        if promotion is not None and product.name in promotion.products:
            unit_price = round(unit_price * (1 - promotion.discount), 2)
        channel_cum = _CHANNEL_CUM_OPEN if store_open else _CHANNEL_CUM_CLOSED
        channel = CHANNELS[bisect(channel_cum, random_() * channel_cum[-1], 0, len(CHANNELS) - 1)]
        return SaleEvent(
            event_id=self._ids(),
            ts=ts,
            product=product.name,
            category=product.category,
            region=region.name,
            city=city.name,
            lat=city.lat,
            lon=city.lon,
            quantity=quantity,
            unit_price=unit_price,
            amount=round(quantity * unit_price, 2),
            currency=CURRENCY,
            channel=channel,
            schema_version=SCHEMA_VERSION,
        )
