"""The event contract: wire format, Mongo document mapping and validation of raw messages."""

import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sales_stream.contract import EVENT_FIELDS
from sales_stream.events import (
    AMOUNT_TOLERANCE,
    DETAIL_MAX_CHARS,
    FIELDS,
    MAX_PAYLOAD_BYTES,
    InvalidEvent,
    InvalidReason,
    SaleEvent,
    decode,
    encode,
    event_from_document,
)

BASE = SaleEvent(
    event_id="3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    ts=datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC),
    product="Écouteurs sans fil",
    category="Audio",
    region="Île-de-France",
    city="Paris",
    lat=48.8566,
    lon=2.3522,
    quantity=2,
    unit_price=49.99,
    amount=99.98,
    currency="EUR",
    channel="web",
    schema_version=1,
)
DROP = object()


def payload(raw: dict[str, str] | None = None, **overrides: object) -> bytes:
    """BASE as JSON with fields replaced (``DROP`` removes one); ``raw`` injects JSON text."""
    fields = BASE.to_dict()
    for name, value in overrides.items():
        if value is DROP:
            del fields[name]
        else:
            fields[name] = value
    for name in raw or {}:
        fields[name] = f"@@{name}@@"
    text = json.dumps(fields, ensure_ascii=False)
    for name, value in (raw or {}).items():
        text = text.replace(f'"@@{name}@@"', value)
    return text.encode()


def test_encode_is_compact_utf8_json_with_utc_offset() -> None:
    raw = encode(BASE)
    assert b", " not in raw
    assert b'": ' not in raw
    assert "Île-de-France".encode() in raw
    obj = json.loads(raw)
    assert list(obj) == list(FIELDS)
    assert obj["ts"] == "2024-05-01T12:00:00.123+00:00"
    assert obj["amount"] == 99.98
    assert obj["schema_version"] == 1


def test_round_trip_encode_decode_is_identity() -> None:
    assert decode(encode(BASE)) == BASE


def test_decode_accepts_surrounding_json_whitespace() -> None:
    assert decode(b" \n" + encode(BASE) + b"\r\n\t") == BASE


def test_decode_accepts_buffer_types() -> None:
    raw = encode(BASE)
    assert decode(bytearray(raw)) == BASE
    assert decode(memoryview(raw)) == BASE


def test_decode_converts_offsets_to_utc_and_truncates_to_milliseconds() -> None:
    paris = decode(payload(ts="2024-05-01T14:00:00.123+02:00"))
    assert isinstance(paris, SaleEvent)
    assert paris.ts == BASE.ts
    assert paris.ts.tzinfo is UTC
    zulu = decode(payload(ts="2024-05-01T12:00:00.123Z"))
    assert isinstance(zulu, SaleEvent)
    assert zulu.ts == BASE.ts
    micro = decode(payload(ts="2024-05-01T12:00:00.123987+00:00"))
    assert isinstance(micro, SaleEvent)
    assert micro.ts == BASE.ts


def test_decode_accepts_integers_for_float_fields() -> None:
    event = decode(payload(unit_price=50, amount=100, quantity=2))
    assert isinstance(event, SaleEvent)
    assert (event.unit_price, event.amount) == (50.0, 100.0)
    assert type(event.unit_price) is float
    assert type(event.amount) is float


def test_amount_tolerance_is_one_cent() -> None:
    assert isinstance(decode(payload(amount=round(99.98 + AMOUNT_TOLERANCE, 2))), SaleEvent)
    rejected = decode(payload(amount=100.0))
    assert isinstance(rejected, InvalidEvent)
    assert rejected.reason is InvalidReason.AMOUNT_MISMATCH


def test_payload_size_limit_is_inclusive() -> None:
    raw = encode(BASE)
    at_limit = raw + b" " * (MAX_PAYLOAD_BYTES - len(raw))
    assert decode(at_limit) == BASE
    over = decode(at_limit + b" ")
    assert isinstance(over, InvalidEvent)
    assert over.reason is InvalidReason.OVERSIZE
    assert str(MAX_PAYLOAD_BYTES + 1) in over.detail


def test_document_mapping_uses_id_and_aware_ts() -> None:
    doc = BASE.to_document()
    assert doc["_id"] == BASE.event_id
    assert "event_id" not in doc
    assert doc["ts"] == BASE.ts
    assert doc["ts"].tzinfo is not None
    assert set(doc) == {"_id", *FIELDS} - {"event_id"}
    assert event_from_document(doc) == BASE


def test_event_from_document_reads_naive_ts_as_utc_and_ignores_extras() -> None:
    doc = {**BASE.to_document(), "ts": BASE.ts.replace(tzinfo=None), "ingested_at": 1}
    assert event_from_document(doc) == BASE
    shifted = BASE.ts.astimezone(timezone(timedelta(hours=2)))
    assert event_from_document({**BASE.to_document(), "ts": shifted}).ts.tzinfo is UTC


UUID1 = "3f1c2d4e-5a6b-1c7d-8e9f-0a1b2c3d4e5f"
CASES: list[tuple[bytes | str | None, InvalidReason, str]] = [
    ("not bytes", InvalidReason.NOT_BYTES, "str"),
    (None, InvalidReason.EMPTY, "None"),
    (b"", InvalidReason.EMPTY, "empty"),
    (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", InvalidReason.OVERSIZE, "bytes"),
    (b'{"event_id": "\xff"}', InvalidReason.NOT_UTF8, "byte 14"),
    (b"{", InvalidReason.NOT_JSON, "Expecting"),
    (b"   ", InvalidReason.NOT_JSON, "Expecting value"),
    (b"{} x", InvalidReason.NOT_JSON, "Extra data"),
    (encode(BASE) + "\u00a0".encode(), InvalidReason.NOT_JSON, "Extra data"),
    (b"\xef\xbb\xbf{}", InvalidReason.NOT_JSON, "char 0"),
    (payload(raw={"unit_price": "NaN"}), InvalidReason.NOT_JSON, "NaN"),
    (payload(raw={"lat": "-Infinity"}), InvalidReason.NOT_JSON, "Infinity"),
    (b"[" * 5000, InvalidReason.NOT_JSON, "recursion"),
    (payload(raw={"quantity": "9" * 5000}), InvalidReason.NOT_JSON, "4300 digits"),
    (payload(raw={"amount": '99.98, "amount": 1'}), InvalidReason.DUPLICATE_JSON_KEY, "amount"),
    (b'{"a": {"b": 1, "b": 1}}', InvalidReason.DUPLICATE_JSON_KEY, "'b'"),
    (encode(BASE)[:-1] + b',"\\ud800":1}', InvalidReason.LONE_SURROGATE, "\\ud800"),
    (payload(raw={"city": '"Paris\\udc00"'}), InvalidReason.LONE_SURROGATE, "\\udc00"),
    (b'[{"x": ["\\uDBFF"]}]', InvalidReason.LONE_SURROGATE, "\\udbff"),
    (b"[]", InvalidReason.NOT_OBJECT, "list"),
    (b'"sale"', InvalidReason.NOT_OBJECT, "str"),
    (b"null", InvalidReason.NOT_OBJECT, "NoneType"),
    (payload(schema_version=2), InvalidReason.UNSUPPORTED_SCHEMA_VERSION, "2"),
    (payload(schema_version=2, coupon="X"), InvalidReason.UNSUPPORTED_SCHEMA_VERSION, "2"),
    (payload(city=DROP), InvalidReason.MISSING_FIELD, "city"),
    (payload(ts=DROP, amount=DROP), InvalidReason.MISSING_FIELD, "ts, amount"),
    (payload(schema_version=DROP), InvalidReason.MISSING_FIELD, "schema_version"),
    (payload(coupon="X"), InvalidReason.UNKNOWN_FIELD, "coupon"),
    (payload(event_id=5), InvalidReason.WRONG_TYPE, "event_id"),
    (payload(ts=1714564800), InvalidReason.WRONG_TYPE, "ts"),
    (payload(product=42), InvalidReason.WRONG_TYPE, "product"),
    (payload(category=1), InvalidReason.WRONG_TYPE, "category"),
    (payload(region=None), InvalidReason.WRONG_TYPE, "region"),
    (payload(city=3), InvalidReason.WRONG_TYPE, "city"),
    (payload(lat="48.8"), InvalidReason.WRONG_TYPE, "lat"),
    (payload(lon=None), InvalidReason.WRONG_TYPE, "lon"),
    (payload(quantity="2"), InvalidReason.WRONG_TYPE, "quantity: expected int, got str '2'"),
    (payload(quantity=True), InvalidReason.WRONG_TYPE, "got bool"),
    (payload(quantity=2.0), InvalidReason.WRONG_TYPE, "got float"),
    (payload(unit_price=None), InvalidReason.WRONG_TYPE, "unit_price"),
    (payload(unit_price=False), InvalidReason.WRONG_TYPE, "unit_price"),
    (payload(amount="99.98"), InvalidReason.WRONG_TYPE, "amount"),
    (payload(currency=None), InvalidReason.WRONG_TYPE, "currency"),
    (payload(channel=["web"]), InvalidReason.WRONG_TYPE, "channel"),
    (payload(schema_version="1"), InvalidReason.WRONG_TYPE, "schema_version"),
    (payload(schema_version=True), InvalidReason.WRONG_TYPE, "schema_version"),
    (payload(event_id="not-a-uuid"), InvalidReason.BAD_EVENT_ID, "not-a-uuid"),
    (payload(event_id=BASE.event_id.upper()), InvalidReason.BAD_EVENT_ID, "event_id"),
    (payload(event_id=UUID1), InvalidReason.BAD_EVENT_ID, UUID1),
    (payload(event_id="{" + BASE.event_id + "}"), InvalidReason.BAD_EVENT_ID, "event_id"),
    (payload(ts="yesterday"), InvalidReason.BAD_TIMESTAMP, "yesterday"),
    (payload(ts="2024-13-01T00:00:00+00:00"), InvalidReason.BAD_TIMESTAMP, "2024-13-01"),
    (payload(ts="1999-12-31T23:59:59+00:00"), InvalidReason.BAD_TIMESTAMP, "outside"),
    (payload(ts="2100-01-01T00:00:00+00:00"), InvalidReason.BAD_TIMESTAMP, "outside"),
    (payload(ts="0001-01-01T00:00:00+01:00"), InvalidReason.BAD_TIMESTAMP, "out of range"),
    (payload(ts="2024-05-01T12:00:00"), InvalidReason.NAIVE_TIMESTAMP, "2024-05-01T12:00:00"),
    (payload(ts="2024-05-01"), InvalidReason.NAIVE_TIMESTAMP, "no UTC offset"),
    (payload(product="Minitel"), InvalidReason.UNKNOWN_PRODUCT, "Minitel"),
    (payload(category="Gaming"), InvalidReason.CATEGORY_MISMATCH, "'Audio'"),
    (payload(region="Atlantide"), InvalidReason.UNKNOWN_REGION, "Atlantide"),
    (payload(region="ile-de-france"), InvalidReason.UNKNOWN_REGION, "ile-de-france"),
    (payload(city="Lyon"), InvalidReason.CITY_NOT_IN_REGION, "Lyon"),
    (payload(lat=0.0), InvalidReason.BAD_COORDINATES, "lat/lon"),
    (payload(lon=200), InvalidReason.BAD_COORDINATES, "200"),
    (payload(raw={"lat": "1e999"}), InvalidReason.BAD_COORDINATES, "inf"),
    (payload(quantity=0), InvalidReason.NON_POSITIVE_QUANTITY, "quantity: 0"),
    (payload(quantity=-3), InvalidReason.NON_POSITIVE_QUANTITY, "-3"),
    (payload(quantity=10_001), InvalidReason.QUANTITY_TOO_LARGE, "10001"),
    (payload(raw={"quantity": "1" + "0" * 40}), InvalidReason.QUANTITY_TOO_LARGE, "quantity"),
    (payload(unit_price=0), InvalidReason.NON_POSITIVE_PRICE, "unit_price: 0"),
    (payload(unit_price=-5.0), InvalidReason.NON_POSITIVE_PRICE, "-5.0"),
    (payload(unit_price=2e6), InvalidReason.PRICE_TOO_LARGE, "2000000.0"),
    (payload(raw={"unit_price": "1e999"}), InvalidReason.PRICE_TOO_LARGE, "inf"),
    (payload(unit_price=49.999), InvalidReason.BAD_PRICE_PRECISION, "49.999"),
    (payload(amount=-99.98), InvalidReason.NEGATIVE_AMOUNT, "-99.98"),
    (payload(amount=100.5), InvalidReason.AMOUNT_MISMATCH, "99.98"),
    (payload(amount=0), InvalidReason.AMOUNT_MISMATCH, "amount: 0"),
    (payload(raw={"amount": "1" + "0" * 400}), InvalidReason.AMOUNT_MISMATCH, "amount"),
    (payload(currency="USD"), InvalidReason.BAD_CURRENCY, "USD"),
    (payload(channel="fax"), InvalidReason.UNKNOWN_CHANNEL, "fax"),
]


@pytest.mark.parametrize(("raw", "reason", "fragment"), CASES)
def test_invalid_message_gets_specific_reason_and_detail(
    raw: bytes | None, reason: InvalidReason, fragment: str
) -> None:
    result = decode(raw)
    assert isinstance(result, InvalidEvent)
    assert result.reason is reason
    assert fragment.lower() in result.detail.lower()
    assert 0 < len(result.detail) <= DETAIL_MAX_CHARS


def test_every_reason_is_reachable() -> None:
    assert {reason for _, reason, _ in CASES} == set(InvalidReason)


def test_unicode_escapes_and_surrogate_pairs_are_text() -> None:
    escaped = payload(raw={"product": '"\\u00c9couteurs sans fil"'})
    assert decode(escaped) == BASE
    emoji = decode(payload(raw={"city": '"\\ud83d\\ude00"'}))  # a valid pair: U+1F600
    assert isinstance(emoji, InvalidEvent)
    assert emoji.reason is InvalidReason.CITY_NOT_IN_REGION


def test_lone_surrogate_detail_is_encodable() -> None:
    result = decode(b'{"\\ud800": 1}')
    assert isinstance(result, InvalidEvent)
    assert result.reason is InvalidReason.LONE_SURROGATE
    assert result.detail.encode("utf-8")  # no surrogate left in the detail


def test_sale_event_attributes_are_the_contract_fields() -> None:
    assert tuple(SaleEvent.__dataclass_fields__) == FIELDS == EVENT_FIELDS


def test_detail_is_truncated() -> None:
    result = decode(payload(region="Région " * 100))
    assert isinstance(result, InvalidEvent)
    assert result.reason is InvalidReason.UNKNOWN_REGION
    assert len(result.detail) <= DETAIL_MAX_CHARS
    assert "…" in result.detail


JSON_VALUES: tuple[object, ...] = (
    None, True, False, 0, -1, 1, 2**63, 1.5, -0.0, 1e308, "", "x", "2024-05-01", [], {}, [1],
    {"a": 1}, "Île-de-France", "Paris", "EUR", "web", 49.99, BASE.event_id, "\ud800",
)  # fmt: skip


def assert_decodes_or_rejects(raw: bytes) -> None:
    result = decode(raw)
    if isinstance(result, InvalidEvent):
        assert result.reason in InvalidReason
        assert 0 < len(result.detail) <= DETAIL_MAX_CHARS
        result.detail.encode()  # storable as a BSON string: values are shown via repr()
    else:
        assert isinstance(result, SaleEvent)
        assert decode(encode(result)) == result


def test_decode_never_raises_on_random_bytes() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        assert_decodes_or_rejects(rng.randbytes(rng.randrange(0, 300)))


def test_decode_never_raises_on_mutated_payloads() -> None:
    rng = random.Random(99)
    raw = encode(BASE)
    for _ in range(3000):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            match rng.randrange(4):
                case 0:
                    data[pos] = rng.randrange(256)
                case 1:
                    del data[pos]
                case 2:
                    data.insert(pos, rng.choice(b'{}[]",:0123456789.-eE \\nutf'))
                case _:
                    data = data[:pos]
                    if not data:
                        break
        assert_decodes_or_rejects(bytes(data))


def test_decode_never_raises_on_fields_of_any_type() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        fields = BASE.to_dict()
        for name in rng.sample(FIELDS, rng.randint(1, 3)):
            fields[name] = rng.choice(JSON_VALUES)
        assert_decodes_or_rejects(json.dumps(fields).encode())
