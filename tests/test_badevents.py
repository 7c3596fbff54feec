"""Malformed messages: every kind is rejected by decode with its expected reason."""

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from sales_stream.events import MAX_PAYLOAD_BYTES, InvalidEvent, SaleEvent, decode
from sales_stream.produce.badevents import EXPECTED_REASON, BadEventKind, make_bad_payload
from sales_stream.produce.generator import SaleGenerator

NOW = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def bases() -> list[SaleEvent]:
    return SaleGenerator(5, clock=lambda: NOW).events(40)


def test_every_kind_has_an_expected_reason() -> None:
    assert set(EXPECTED_REASON) == set(BadEventKind)


@pytest.mark.parametrize("kind", list(BadEventKind))
def test_kind_is_rejected_with_its_reason(kind: BadEventKind, bases: list[SaleEvent]) -> None:
    rng = random.Random(kind.value)
    for base in bases:
        raw, produced = make_bad_payload(rng, base=base, kind=kind)
        assert produced is kind
        result = decode(raw)
        assert isinstance(result, InvalidEvent), (kind, raw)
        assert result.reason is EXPECTED_REASON[kind], (kind, raw, result)
        assert result.detail


def test_random_kinds_cover_all_and_are_all_rejected(bases: list[SaleEvent]) -> None:
    rng = random.Random(2024)
    kinds: Counter[BadEventKind] = Counter()
    for i in range(700):
        raw, kind = make_bad_payload(rng, base=bases[i % len(bases)])
        kinds[kind] += 1
        result = decode(raw)
        assert isinstance(result, InvalidEvent)
        assert result.reason is EXPECTED_REASON[kind]
    assert set(kinds) == set(BadEventKind)


def test_payloads_are_deterministic_for_a_seed(bases: list[SaleEvent]) -> None:
    first = [make_bad_payload(random.Random(9), base=b) for b in bases]
    second = [make_bad_payload(random.Random(9), base=b) for b in bases]
    assert first == second


def test_specific_shapes(bases: list[SaleEvent]) -> None:
    rng = random.Random(1)
    base = bases[0]
    huge, _ = make_bad_payload(rng, base=base, kind=BadEventKind.HUGE_PAYLOAD)
    assert huge is not None
    assert len(huge) > MAX_PAYLOAD_BYTES
    assert make_bad_payload(rng, base=base, kind=BadEventKind.NONE) == (None, BadEventKind.NONE)
    assert make_bad_payload(rng, base=base, kind=BadEventKind.EMPTY) == (b"", BadEventKind.EMPTY)
    array, _ = make_bad_payload(rng, base=base, kind=BadEventKind.JSON_ARRAY)
    assert array is not None
    assert array.startswith(b"[")
    assert base.event_id.encode() in array
