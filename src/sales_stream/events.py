r"""The sale event contract: the `SaleEvent` schema, its JSON wire format and its validation.

Wire format: one compact UTF-8 JSON object per Kafka message, with exactly the fields of
`SaleEvent` (schema version 1). `decode` is the single validation gate of the pipeline: it
never raises and returns either a `SaleEvent` or an `InvalidEvent` whose `reason` is a
specific `InvalidReason` code and whose `detail` names the offending field and value.

The fields, their order, types and bounds come from the schema contract
(`sales_stream.contract`), which also publishes them as a JSON Schema
(``docs/sale_event.schema.json``); `SaleEvent` must declare exactly those fields.

Decisions of the contract:

* A key that appears twice in any JSON object is rejected
  (`InvalidReason.DUPLICATE_JSON_KEY`) rather than letting the last value win; a ``\u``
  escape that leaves a lone UTF-16 surrogate in a key or value (``{"\ud800": 1}``) is
  rejected as `InvalidReason.LONE_SURROGATE` (it cannot be encoded to UTF-8, hence not
  stored); a detail never carries such a character (it is shown escaped).
* Unknown extra fields are rejected (`InvalidReason.UNKNOWN_FIELD`): schema version 1 is
  closed, any new field comes with a new ``schema_version``; nothing is silently dropped.
* ``ts`` must carry a UTC offset (naive → `InvalidReason.NAIVE_TIMESTAMP`). Non-UTC offsets
  and ``Z`` are accepted and converted to UTC. The decoded ``ts`` is truncated to the
  millisecond, the precision of a BSON date, so that Mongo round trips are lossless; it must
  lie in [`TS_MIN`, `TS_MAX`) so that every downstream store (BSON, Parquet, Hyper) holds it.
* ``bool`` is not accepted where an ``int`` or a number is expected; integers are accepted for
  float fields (``unit_price``, ``amount``, ``lat``, ``lon``) and converted to ``float``.
  ``NaN`` and ``Infinity`` are not JSON and are rejected (`InvalidReason.NOT_JSON`).
* ``amount`` must equal ``quantity * unit_price`` within `AMOUNT_TOLERANCE`; a zero amount
  is a mismatch, a negative one is `InvalidReason.NEGATIVE_AMOUNT`.
* ``region``, ``city``, ``product``, ``category`` and ``channel`` must belong to the
  reference data (`sales_stream.reference`); ``lat``/``lon`` must lie in metropolitan France.

MongoDB document (`SaleEvent.to_document`): ``_id`` holds the event id and there is no
separate ``event_id`` key; ``ts`` is an aware UTC ``datetime`` stored as a BSON date.
"""

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

from sales_stream.contract import (
    AMOUNT_TOLERANCE,
    COLUMN_BY_NAME,
    CURRENCY,
    EVENT_FIELDS,
    LAT_RANGE,
    LON_RANGE,
    MAX_PAYLOAD_BYTES,
    MAX_QUANTITY,
    MAX_UNIT_PRICE,
    SCHEMA_VERSION,
    TS_MAX,
    TS_MIN,
    Kind,
)
from sales_stream.reference import CHANNELS, CITY_NAMES_BY_REGION, PRODUCT_BY_NAME

__all__ = [
    "AMOUNT_TOLERANCE",
    "CURRENCY",
    "FIELDS",
    "LAT_RANGE",
    "LON_RANGE",
    "MAX_PAYLOAD_BYTES",
    "MAX_QUANTITY",
    "MAX_UNIT_PRICE",
    "SCHEMA_VERSION",
    "TS_MAX",
    "TS_MIN",
    "InvalidEvent",
    "InvalidReason",
    "SaleEvent",
    "decode",
    "encode",
    "event_from_document",
]

DETAIL_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class SaleEvent:
    """One sale, as produced to Kafka and stored in MongoDB.

    Attributes:
        event_id: Canonical lowercase UUID4 string, the idempotency key (Mongo ``_id``).
        ts: Aware UTC datetime of the sale, millisecond precision.
        product: Product name from the catalogue.
        category: The product's category.
        region: French region name.
        city: A city of that region.
        lat: Latitude of the city.
        lon: Longitude of the city.
        quantity: Units sold, ``>= 1``.
        unit_price: Unit price in EUR, ``> 0``, 2 decimals.
        amount: ``quantity * unit_price`` rounded to 2 decimals.
        currency: Always ``"EUR"``.
        channel: Sales channel, one of `sales_stream.reference.CHANNELS`.
        schema_version: Contract version, `SCHEMA_VERSION`.
    """

    event_id: str
    ts: datetime
    product: str
    category: str
    region: str
    city: str
    lat: float
    lon: float
    quantity: int
    unit_price: float
    amount: float
    currency: str
    channel: str
    schema_version: int

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping of the event (``ts`` as ISO-8601 with offset)."""
        fields = dict(zip(FIELDS, _values(self), strict=True))
        fields["ts"] = self.ts.isoformat(timespec="milliseconds")
        return fields

    def to_document(self) -> dict[str, Any]:
        """Return the MongoDB document: ``_id`` = event id, ``ts`` as an aware datetime."""
        return dict(zip(_DOCUMENT_KEYS, _values(self), strict=True))


class InvalidReason(StrEnum):
    """Why a raw message is not a valid `SaleEvent` (stable codes, stored in dead letters)."""

    NOT_BYTES = "not_bytes"
    EMPTY = "empty"
    OVERSIZE = "oversize"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    DUPLICATE_JSON_KEY = "duplicate_json_key"
    LONE_SURROGATE = "lone_surrogate"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    BAD_EVENT_ID = "bad_event_id"
    BAD_TIMESTAMP = "bad_timestamp"
    NAIVE_TIMESTAMP = "naive_timestamp"
    UNKNOWN_PRODUCT = "unknown_product"
    CATEGORY_MISMATCH = "category_mismatch"
    UNKNOWN_REGION = "unknown_region"
    CITY_NOT_IN_REGION = "city_not_in_region"
    BAD_COORDINATES = "bad_coordinates"
    NON_POSITIVE_QUANTITY = "non_positive_quantity"
    QUANTITY_TOO_LARGE = "quantity_too_large"
    NON_POSITIVE_PRICE = "non_positive_price"
    PRICE_TOO_LARGE = "price_too_large"
    BAD_PRICE_PRECISION = "bad_price_precision"
    NEGATIVE_AMOUNT = "negative_amount"
    AMOUNT_MISMATCH = "amount_mismatch"
    BAD_CURRENCY = "bad_currency"
    UNKNOWN_CHANNEL = "unknown_channel"


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """A rejected message: a specific reason code and a human-readable detail.

    Attributes:
        reason: The first rule the message broke.
        detail: Message naming the field and the value, at most `DETAIL_MAX_CHARS` chars.
    """

    reason: InvalidReason
    detail: str


FIELDS: tuple[str, ...] = EVENT_FIELDS
if tuple(SaleEvent.__dataclass_fields__) != FIELDS:
    raise ImportError("SaleEvent's attributes differ from the contract's event fields")
_values = attrgetter(*FIELDS)
_DOCUMENT_KEYS = tuple(COLUMN_BY_NAME[name].stored_as for name in FIELDS)
_FIELD_SET = frozenset(FIELDS)
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_CHANNEL_SET = frozenset(CHANNELS)
_CATEGORY_BY_PRODUCT = {name: p.category for name, p in PRODUCT_BY_NAME.items()}
_LAT_MIN, _LAT_MAX = LAT_RANGE
_LON_MIN, _LON_MAX = LON_RANGE
_MAX_AMOUNT = COLUMN_BY_NAME["amount"].maximum


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


class _DuplicateKeyError(Exception):
    """A JSON object names the same key twice (not a ValueError: `_parse` retries those)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


def _lone_surrogate(value: object) -> str | None:
    """The first string (object key or value, at any depth) holding a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if _SURROGATE.search(item):
                return item
        elif type(item) is dict:
            stack.extend(item.values())
            stack.extend(item.keys())
        elif type(item) is list:
            stack.extend(item)
    return None


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_object)
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_WHITESPACE = " \t\n\r"
_NUMBER_TYPES = frozenset((int, float))
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def encode(event: SaleEvent) -> bytes:
    """Serialise an event to compact UTF-8 JSON (``ts`` ISO-8601 with ``+00:00`` offset).

    Args:
        event: The event to serialise.

    Returns:
        The Kafka message value.
    """
    return _ENCODER.encode(event.to_dict()).encode()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _invalid(reason: InvalidReason, detail: str) -> InvalidEvent:
    if len(detail) > DETAIL_MAX_CHARS:
        detail = detail[: DETAIL_MAX_CHARS - 1] + "…"
    return InvalidEvent(reason, detail)


def _wrong_type(field: str, expected: str, value: object) -> InvalidEvent:
    return _invalid(
        InvalidReason.WRONG_TYPE,
        f"{field}: expected {expected}, got {type(value).__name__} {_show(value)}",
    )


def _parse(text: str) -> object:
    """``json.loads`` without its two whitespace scans on the common, unpadded payload."""
    try:
        obj, end = _DECODER.raw_decode(text)
    except ValueError:
        return _DECODER.decode(text)  # leading whitespace, or raises the canonical error
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        return _DECODER.decode(text)  # raises "Extra data"
    return obj


def decode(raw: bytes | None) -> SaleEvent | InvalidEvent:
    """Parse and validate one Kafka message value; never raises.

    Checks run in a fixed order (size before parsing, then structure, then field types and
    values in field order); the first failed rule is reported.

    Args:
        raw: The message value (``bytes``, ``bytearray`` or ``memoryview``; ``None`` for a
            tombstone).

    Returns:
        The validated event, or an `InvalidEvent` describing the first rule broken.
    """
    if raw is None:
        return _invalid(InvalidReason.EMPTY, "message value is None")
    if not isinstance(raw, bytes):
        if not isinstance(raw, bytearray | memoryview):
            return _invalid(InvalidReason.NOT_BYTES, f"expected bytes, got {type(raw).__name__}")
        raw = bytes(raw)
    size = len(raw)
    if size == 0:
        return _invalid(InvalidReason.EMPTY, "message value is empty (0 bytes)")
    if size > MAX_PAYLOAD_BYTES:
        return _invalid(
            InvalidReason.OVERSIZE, f"payload is {size} bytes, limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        return _invalid(
            InvalidReason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}: {_show(raw[:40])}"
        )
    try:
        obj = _parse(text)
    except (ValueError, RecursionError) as exc:
        return _invalid(InvalidReason.NOT_JSON, f"invalid JSON: {exc}")
    except _DuplicateKeyError as exc:
        return _invalid(
            InvalidReason.DUPLICATE_JSON_KEY, f"key {exc.key!a} appears twice in an object"
        )
    if "\\u" in text:  # a lone surrogate can only come from a \u escape
        found = _lone_surrogate(obj)
        if found is not None:
            return _invalid(
                InvalidReason.LONE_SURROGATE,
                f"string {ascii(found)[:80]} holds a lone UTF-16 surrogate (not Unicode text)",
            )
    if type(obj) is not dict:
        return _invalid(
            InvalidReason.NOT_OBJECT, f"expected a JSON object, got {type(obj).__name__}"
        )
    return _validate(obj)


def _validate(obj: dict[str, Any]) -> SaleEvent | InvalidEvent:
    version = obj.get("schema_version")
    if type(version) is int and version != SCHEMA_VERSION:
        return _invalid(
            InvalidReason.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version: {version} is not supported (expected {SCHEMA_VERSION})",
        )
    if obj.keys() != _FIELD_SET:
        missing = [f for f in FIELDS if f not in obj]
        if missing:
            return _invalid(InvalidReason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
        unknown = sorted(k for k in obj if k not in _FIELD_SET)
        return _invalid(InvalidReason.UNKNOWN_FIELD, f"unknown field(s): {', '.join(unknown)}")

    event_id = obj["event_id"]
    if type(event_id) is not str:
        return _wrong_type("event_id", "str", event_id)
    if _UUID4.fullmatch(event_id) is None:
        return _invalid(
            InvalidReason.BAD_EVENT_ID,
            f"event_id: {_show(event_id)} is not a canonical lowercase UUID4",
        )

    ts_text = obj["ts"]
    if type(ts_text) is not str:
        return _wrong_type("ts", "ISO-8601 str", ts_text)
    try:
        ts = datetime.fromisoformat(ts_text)
    except (ValueError, OverflowError):
        return _invalid(InvalidReason.BAD_TIMESTAMP, f"ts: {_show(ts_text)} is not ISO-8601")
    if ts.tzinfo is None:
        return _invalid(InvalidReason.NAIVE_TIMESTAMP, f"ts: {_show(ts_text)} has no UTC offset")
    if ts.tzinfo is not UTC:
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            return _invalid(InvalidReason.BAD_TIMESTAMP, f"ts: {_show(ts_text)} is out of range")
    if not TS_MIN <= ts < TS_MAX:
        return _invalid(
            InvalidReason.BAD_TIMESTAMP,
            f"ts: {_show(ts_text)} is outside [{TS_MIN.isoformat()}, {TS_MAX.isoformat()})",
        )
    micro = ts.microsecond % 1000
    if micro:
        ts = ts.replace(microsecond=ts.microsecond - micro)

    product = obj["product"]
    if type(product) is not str:
        return _wrong_type("product", "str", product)
    category = obj["category"]
    if type(category) is not str:
        return _wrong_type("category", "str", category)
    expected_category = _CATEGORY_BY_PRODUCT.get(product)
    if expected_category is None:
        return _invalid(
            InvalidReason.UNKNOWN_PRODUCT, f"product: {_show(product)} is not in the catalogue"
        )
    if category != expected_category:
        return _invalid(
            InvalidReason.CATEGORY_MISMATCH,
            f"category: {_show(category)} but {_show(product)} is in {expected_category!r}",
        )

    region = obj["region"]
    if type(region) is not str:
        return _wrong_type("region", "str", region)
    city = obj["city"]
    if type(city) is not str:
        return _wrong_type("city", "str", city)
    cities = CITY_NAMES_BY_REGION.get(region)
    if cities is None:
        return _invalid(
            InvalidReason.UNKNOWN_REGION, f"region: {_show(region)} is not a French region"
        )
    if city not in cities:
        return _invalid(
            InvalidReason.CITY_NOT_IN_REGION,
            f"city: {_show(city)} is not a known city of {region!r}",
        )

    lat = obj["lat"]
    if type(lat) not in _NUMBER_TYPES:
        return _wrong_type("lat", "number", lat)
    lon = obj["lon"]
    if type(lon) not in _NUMBER_TYPES:
        return _wrong_type("lon", "number", lon)
    if not (_LAT_MIN <= lat <= _LAT_MAX and _LON_MIN <= lon <= _LON_MAX):
        return _invalid(
            InvalidReason.BAD_COORDINATES,
            f"lat/lon: ({_show(lat)}, {_show(lon)}) is outside metropolitan France",
        )

    quantity = obj["quantity"]
    if type(quantity) is not int:
        return _wrong_type("quantity", "int", quantity)
    if quantity < 1:
        return _invalid(InvalidReason.NON_POSITIVE_QUANTITY, f"quantity: {quantity} is < 1")
    if quantity > MAX_QUANTITY:
        return _invalid(
            InvalidReason.QUANTITY_TOO_LARGE,
            f"quantity: {_show(quantity)} is > {MAX_QUANTITY}",
        )

    unit_price = obj["unit_price"]
    if type(unit_price) not in _NUMBER_TYPES:
        return _wrong_type("unit_price", "number", unit_price)
    if unit_price <= 0:
        return _invalid(InvalidReason.NON_POSITIVE_PRICE, f"unit_price: {unit_price} is <= 0")
    if unit_price > MAX_UNIT_PRICE:
        return _invalid(
            InvalidReason.PRICE_TOO_LARGE,
            f"unit_price: {_show(unit_price)} is > {MAX_UNIT_PRICE}",
        )
    if round(unit_price, 2) != unit_price:
        return _invalid(
            InvalidReason.BAD_PRICE_PRECISION,
            f"unit_price: {unit_price!r} has more than 2 decimals",
        )

    amount = obj["amount"]
    if type(amount) not in _NUMBER_TYPES:
        return _wrong_type("amount", "number", amount)
    if amount < 0:
        return _invalid(InvalidReason.NEGATIVE_AMOUNT, f"amount: {_show(amount)} is < 0")
    expected_amount = quantity * unit_price
    if amount == 0 or amount > _MAX_AMOUNT or abs(amount - expected_amount) > AMOUNT_TOLERANCE:
        return _invalid(
            InvalidReason.AMOUNT_MISMATCH,
            f"amount: {_show(amount)} != quantity × unit_price = {expected_amount:.2f}",
        )

    currency = obj["currency"]
    if type(currency) is not str:
        return _wrong_type("currency", "str", currency)
    if currency != CURRENCY:
        return _invalid(
            InvalidReason.BAD_CURRENCY, f"currency: {_show(currency)} is not {CURRENCY!r}"
        )

    channel = obj["channel"]
    if type(channel) is not str:
        return _wrong_type("channel", "str", channel)
    if channel not in _CHANNEL_SET:
        return _invalid(
            InvalidReason.UNKNOWN_CHANNEL,
            f"channel: {_show(channel)} is not one of {', '.join(CHANNELS)}",
        )

    if type(version) is not int:
        return _wrong_type("schema_version", "int", version)

    return SaleEvent(
        event_id,
        ts,
        product,
        category,
        region,
        city,
        float(lat),
        float(lon),
        quantity,
        float(unit_price),
        float(amount),
        currency,
        channel,
        version,
    )


def event_from_document(doc: dict[str, Any]) -> SaleEvent:
    """Rebuild an event from its MongoDB document (inverse of `SaleEvent.to_document`).

    Naive ``ts`` values (what pymongo returns without ``tz_aware=True``) are read as UTC.
    Extra keys (e.g. ingestion metadata) are ignored.

    Args:
        doc: A document written by `SaleEvent.to_document`.

    Returns:
        The event.

    Raises:
        KeyError: If a contract field is missing from the document.
    """
    values = {
        name: doc[key] if convert is None else convert(doc[key])
        for name, key, convert in _DOCUMENT_READERS
    }
    ts: datetime = values["ts"]
    values["ts"] = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return SaleEvent(**values)


_CONVERTERS = {Kind.TEXT: str, Kind.FLOAT: float, Kind.INT: int, Kind.SMALLINT: int}
_DOCUMENT_READERS = tuple(
    (name, key, _CONVERTERS.get(COLUMN_BY_NAME[name].kind))
    for name, key in zip(FIELDS, _DOCUMENT_KEYS, strict=True)
)
