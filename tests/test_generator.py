"""Reference data and the sales generator: determinism, realism and backfill seasonality."""

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sales_stream.events import SaleEvent, decode, encode
from sales_stream.produce.generator import (
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_EVENTS_PER_DAY,
    PARIS,
    STORE_HOURS,
    SaleGenerator,
    SimulatedClock,
    catch_up_clock,
    catch_up_run,
    live_rate,
    price_points,
    seasonality_factor,
)
from sales_stream.reference import (
    CATALOGUE,
    CATEGORIES,
    CHANNELS,
    PRODUCT_BY_NAME,
    REGION_BY_NAME,
    REGIONS,
)

NOW = datetime(2024, 5, 15, 10, 30, 0, 123456, tzinfo=UTC)
END = datetime(2024, 6, 1, tzinfo=UTC)
REGION_NAMES = {
    "Auvergne-Rhône-Alpes", "Bourgogne-Franche-Comté", "Bretagne", "Centre-Val de Loire",
    "Corse", "Grand Est", "Hauts-de-France", "Île-de-France", "Normandie",
    "Nouvelle-Aquitaine", "Occitanie", "Pays de la Loire", "Provence-Alpes-Côte d'Azur",
}  # fmt: skip


def fixed_clock() -> datetime:
    return NOW


@pytest.fixture(scope="module")
def history() -> list[SaleEvent]:
    """Four weeks of history, 2 000 events a day (≈ 56k events)."""
    return list(SaleGenerator(11).backfill(28, end=END, events_per_day=2_000))


def test_reference_regions_are_the_13_metropolitan_regions() -> None:
    assert {r.name for r in REGIONS} == REGION_NAMES
    assert set(REGION_BY_NAME) == REGION_NAMES
    for region in REGIONS:
        assert 2 <= len(region.cities) <= 4
        assert (region.lat, region.lon) == (region.capital.lat, region.capital.lon)
        assert region.weight > 0
        for city in region.cities:
            assert 41.3 < city.lat < 51.1
            assert -4.8 < city.lon < 9.6
    assert REGION_BY_NAME["Île-de-France"].capital.name == "Paris"
    assert REGION_BY_NAME["Corse"].capital.name == "Ajaccio"


def test_reference_catalogue_has_priced_products_in_categories() -> None:
    assert len(CATALOGUE) >= 30
    assert len(CATEGORIES) >= 5
    assert len(PRODUCT_BY_NAME) == len(CATALOGUE)
    for product in CATALOGUE:
        assert product.category in CATEGORIES
        assert 0 < product.price_min < product.price_max
        assert product.popularity > 0


def test_price_points_are_psychological_and_inside_the_band() -> None:
    for product in CATALOGUE:
        points = price_points(product)
        assert points
        assert list(points) == sorted(points)
        for price in points:
            assert product.price_min <= price <= product.price_max
            assert f"{price:.2f}".endswith(("9.99", "4.99", ".49", ".99"))


def _content(event: SaleEvent) -> dict[str, object]:
    return {k: v for k, v in event.to_dict().items() if k != "event_id"}


def test_same_seed_and_clock_give_the_same_content_under_new_ids() -> None:
    first = SaleGenerator(7, clock=fixed_clock).events(500)
    second = SaleGenerator(7, clock=fixed_clock).events(500)
    other = SaleGenerator(8, clock=fixed_clock).events(500)
    assert [_content(e) for e in first] == [_content(e) for e in second]
    assert [_content(e) for e in first] != [_content(e) for e in other]
    ids = {e.event_id for e in first + second + other}
    assert len(ids) == 1500  # a seed never makes a new sale's identity


def test_same_seed_gives_the_same_backfill_content() -> None:
    first = list(SaleGenerator(3).backfill(2, end=END, events_per_day=500))
    second = list(SaleGenerator(3).backfill(2, end=END, events_per_day=500))
    assert [_content(e) for e in first] == [_content(e) for e in second]
    assert {e.event_id for e in first}.isdisjoint(e.event_id for e in second)


def test_ids_are_injectable_for_tests() -> None:
    counter = iter(range(10))
    events = SaleGenerator(1, clock=fixed_clock, ids=lambda: f"id-{next(counter)}").events(3)
    assert [e.event_id for e in events] == ["id-0", "id-1", "id-2"]


def test_simulated_clock_runs_faster_than_real_time() -> None:
    now = [100.0]
    clock = SimulatedClock(NOW, speedup=60, monotonic=lambda: now[0])
    assert clock() == NOW
    now[0] += 2.5
    assert clock() == NOW + timedelta(minutes=2.5)
    with pytest.raises(ValueError, match="speedup"):
        SimulatedClock(NOW, speedup=0.5)


def test_a_simulated_clock_never_runs_past_the_wall_clock() -> None:
    real = [0.0]
    clock = SimulatedClock(
        datetime.now(UTC) - timedelta(minutes=1), speedup=60, monotonic=lambda: real[0]
    )
    real[0] = 600.0  # ten simulated hours later: far in the future, were it not held at now
    before = datetime.now(UTC)
    stamped = clock()
    assert before <= stamped <= datetime.now(UTC)


def test_a_paused_clock_stops_and_resumes_where_it_stopped() -> None:
    real = [0.0]
    clock = SimulatedClock(NOW, speedup=60, monotonic=lambda: real[0])
    real[0] = 1.0
    clock.pause()
    real[0] = 100.0
    assert clock.paused
    assert clock() == NOW + timedelta(minutes=1)
    clock.resume()
    real[0] = 101.0
    assert not clock.paused
    assert clock() == NOW + timedelta(minutes=2)


def test_live_rate_matches_the_history_per_simulated_hour() -> None:
    at = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)
    rate = live_rate(events_per_day=1440, speedup=60, at=at)
    # one real second = one simulated minute: 1440/day is 1 a minute, times the hour's factor
    assert rate == pytest.approx(seasonality_factor(at))
    assert live_rate(events_per_day=1440) == pytest.approx(1440 / 86_400)  # the wall clock
    with pytest.raises(ValueError, match="events_per_day"):
        live_rate(events_per_day=0)


def test_next_event_uses_the_clock_in_utc_milliseconds() -> None:
    generator = SaleGenerator(1, clock=fixed_clock)
    assert generator.next_event().ts == NOW.replace(microsecond=123000)
    paris_time = datetime(2024, 5, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    event = generator.next_event(ts=paris_time)
    assert event.ts == datetime(2024, 5, 15, 10, 30, tzinfo=UTC)
    assert event.ts.tzinfo is UTC


def test_default_clock_is_now() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    event = SaleGenerator().next_event()
    assert before <= event.ts <= datetime.now(UTC)


def test_invalid_arguments_raise_specific_errors() -> None:
    generator = SaleGenerator(1)
    with pytest.raises(ValueError, match="naive"):
        generator.next_event(ts=datetime(2024, 5, 1, 12))  # noqa: DTZ001
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        generator.events(-1)
    with pytest.raises(ValueError, match="days must be >= 1, got 0"):
        generator.backfill(0)
    with pytest.raises(ValueError, match="events_per_day must be >= 1, got 0"):
        generator.backfill(1, events_per_day=0)
    with pytest.raises(ValueError, match="naive"):
        seasonality_factor(datetime(2024, 5, 1, 12))  # noqa: DTZ001


def test_distribution_is_realistic_and_every_event_is_valid() -> None:
    events = SaleGenerator(2024, clock=fixed_clock).events(20_000)
    regions = Counter(e.region for e in events)
    assert set(regions) == REGION_NAMES
    assert regions.most_common(1)[0][0] == "Île-de-France"
    assert regions["Corse"] < regions["Bretagne"] < regions["Auvergne-Rhône-Alpes"]
    assert sum(e.quantity <= 3 for e in events) >= 0.8 * len(events)
    assert max(e.quantity for e in events) <= 10
    products = Counter(e.product for e in events)
    best_sellers = sorted(CATALOGUE, key=lambda p: p.popularity, reverse=True)[:3]
    assert {p.name for p in best_sellers} <= {name for name, _ in products.most_common(6)}
    assert {e.category for e in events} == set(CATEGORIES)
    assert {e.channel for e in events} == set(CHANNELS)
    for event in events:
        assert decode(encode(event)) == event
        assert event.amount == round(event.quantity * event.unit_price, 2)
        city = next(c for c in REGION_BY_NAME[event.region].cities if c.name == event.city)
        assert (event.lat, event.lon) == (city.lat, city.lon)


def test_store_sales_happen_only_during_opening_hours(history: list[SaleEvent]) -> None:
    store = [e.ts.astimezone(PARIS) for e in history if e.channel == "magasin"]
    assert len(store) > 0.1 * len(history)
    assert all(t.weekday() < 6 and t.hour in STORE_HOURS for t in store)


def test_promotions_discount_some_sales_on_some_days(history: list[SaleEvent]) -> None:
    generator = SaleGenerator(11)
    days = sorted({e.ts.astimezone(PARIS).date() for e in history})
    promotions = {d: p for d in days if (p := generator.promotion_on(d)) is not None}
    assert 0 < len(promotions) < len(days)
    for promotion in promotions.values():
        assert 0.1 <= promotion.discount <= 0.3
        assert promotion.products <= set(PRODUCT_BY_NAME)
        assert promotion.name
    discounted = 0
    for event in history:
        promotion = promotions.get(event.ts.astimezone(PARIS).date())
        regular = price_points(PRODUCT_BY_NAME[event.product])
        if promotion is not None and event.product in promotion.products:
            discounted += 1
            factor = 1 - promotion.discount
            assert any(round(p * factor, 2) == event.unit_price for p in regular)
        else:
            assert event.unit_price in regular
    assert 0.005 * len(history) < discounted < 0.15 * len(history)


def test_promotions_can_be_disabled() -> None:
    generator = SaleGenerator(11, promotions=False)
    events = list(generator.backfill(28, end=END, events_per_day=200))
    assert all(e.unit_price in price_points(PRODUCT_BY_NAME[e.product]) for e in events)
    assert all(generator.promotion_on(e.ts.date()) is None for e in events)


def test_backfill_is_ascending_inside_the_window(history: list[SaleEvent]) -> None:
    start = END - timedelta(days=28)
    timestamps = [e.ts for e in history]
    assert timestamps == sorted(timestamps)
    assert start <= timestamps[0] < start + timedelta(hours=2)
    assert END - timedelta(hours=2) < timestamps[-1] < END
    assert 0.9 * 28 * 2_000 < len(history) < 1.1 * 28 * 2_000
    assert len({e.event_id for e in history}) == len(history)


def test_backfill_window_need_not_be_hour_aligned() -> None:
    end = datetime(2024, 6, 1, 18, 45, 30, 250000, tzinfo=UTC)
    events = list(SaleGenerator(5).backfill(1, end=end, events_per_day=5_000))
    assert events
    assert all(end - timedelta(days=1) <= e.ts < end for e in events)


def test_backfill_shows_hour_of_day_and_weekend_seasonality(history: list[SaleEvent]) -> None:
    local = [e.ts.astimezone(PARIS) for e in history]
    by_hour = Counter(t.hour for t in local)
    assert by_hour[20] > 3 * by_hour[4]
    assert by_hour[12] > by_hour[15]
    assert max(by_hour, key=by_hour.__getitem__) in {12, 13, 18, 19, 20, 21}
    by_weekday = Counter(t.weekday() for t in local)
    assert by_weekday[5] > 1.2 * by_weekday[1]


def test_seasonality_factor_averages_one_over_a_week() -> None:
    monday = datetime(2024, 5, 6, tzinfo=PARIS)
    factors = [seasonality_factor(monday + timedelta(hours=h)) for h in range(7 * 24)]
    assert sum(factors) / len(factors) == pytest.approx(1.0, abs=1e-9)
    assert seasonality_factor(datetime(2024, 5, 11, 20, tzinfo=PARIS)) > 5 * seasonality_factor(
        datetime(2024, 5, 7, 4, tzinfo=PARIS)
    )


@pytest.mark.parametrize("hour", [3, 12, 19])
def test_the_live_stream_on_the_wall_clock_has_the_history_intensity(hour: int) -> None:
    """7 days of history up to now, then an hour of live sales on the wall clock (no spike)."""
    end = datetime(2026, 11, 25, hour, tzinfo=PARIS).astimezone(UTC)
    history = list(SaleGenerator(1).backfill(DEFAULT_BACKFILL_DAYS, end=end))
    real = [0.0]
    generator = SaleGenerator(2, clock=lambda: end + timedelta(seconds=real[0]))
    rate = live_rate(at=end)
    live = []
    for k in range(round(3600 * rate)):
        real[0] = k / rate  # the producer's schedule: event k is due at k / rate
        live.append(generator.next_event())
    assert live[-1].ts < end + timedelta(hours=1)  # no sale after the (simulated) wall clock
    expected = DEFAULT_EVENTS_PER_DAY / 24 * seasonality_factor(end)
    assert len(live) == pytest.approx(expected, rel=0.02)
    # the same hour of day in the history: the live hour is one of them, not a spike
    same_hour = [n for h, n in _hourly_counts(history).items() if h.hour == end.hour]
    assert 0.6 * min(same_hour) <= len(live) <= 1.4 * max(same_hour)


def _hourly_counts(events: list[SaleEvent]) -> Counter[datetime]:
    return Counter(e.ts.replace(minute=0, second=0, microsecond=0) for e in events)


def test_a_catch_up_run_of_known_size_ends_now_at_the_history_average() -> None:
    clock, rate = catch_up_run(300, events_per_day=1500, speedup=6000, now=NOW)
    assert rate == live_rate(events_per_day=1500, speedup=6000)  # the history's average
    span = timedelta(seconds=300 / rate * 6000)  # the 300 sales, sent at that rate
    assert clock.start + span == NOW  # the last one is dated now
    assert clock.until == NOW  # and none after, even if sending runs late
    with pytest.raises(ValueError, match="events"):
        catch_up_run(0)


def test_catch_up_clock_ends_the_live_phase_now() -> None:
    clock = catch_up_clock(live_seconds=20, speedup=720, now=NOW)
    assert clock.start == NOW - timedelta(hours=4)
    assert clock.speedup == 720
    assert clock.until == NOW
    with pytest.raises(ValueError, match="live_seconds"):
        catch_up_clock(live_seconds=-1)


def test_a_clock_with_an_end_stops_there() -> None:
    real = [0.0]
    clock = SimulatedClock(
        NOW, speedup=60, until=NOW + timedelta(minutes=2), monotonic=lambda: real[0]
    )
    real[0] = 1.0
    assert clock() == NOW + timedelta(minutes=1)
    real[0] = 30.0  # sending ran late: the sales are dated at the end, not after it
    assert clock() == NOW + timedelta(minutes=2)
    with pytest.raises(ValueError, match="until"):
        SimulatedClock(NOW, until=NOW.replace(tzinfo=None))
