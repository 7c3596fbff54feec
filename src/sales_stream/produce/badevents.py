"""Deliberately malformed messages, to exercise the dead-letter path of the pipeline.

Each `BadEventKind` is built from a valid base event and is rejected by
`sales_stream.events.decode` with the reason given by `EXPECTED_REASON`.
"""

import json
import random
from enum import StrEnum

from sales_stream.events import (
    FIELDS,
    MAX_PAYLOAD_BYTES,
    InvalidEvent,
    InvalidReason,
    SaleEvent,
    decode,
    encode,
)


class BadEventKind(StrEnum):
    """The kinds of malformed message that `make_bad_payload` produces."""

    NOT_JSON = "not_json"
    TRUNCATED_JSON = "truncated_json"
    JSON_ARRAY = "json_array"
    STRING_QUANTITY = "string_quantity"
    NUMERIC_PRODUCT = "numeric_product"
    MISSING_FIELD = "missing_field"
    NEGATIVE_AMOUNT = "negative_amount"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNKNOWN_REGION = "unknown_region"
    NAIVE_TIMESTAMP = "naive_timestamp"
    HUGE_PAYLOAD = "huge_payload"
    INVALID_UTF8 = "invalid_utf8"
    EMPTY = "empty"
    NONE = "none"


EXPECTED_REASON: dict[BadEventKind, InvalidReason] = {
    BadEventKind.NOT_JSON: InvalidReason.NOT_JSON,
    BadEventKind.TRUNCATED_JSON: InvalidReason.NOT_JSON,
    BadEventKind.JSON_ARRAY: InvalidReason.NOT_OBJECT,
    BadEventKind.STRING_QUANTITY: InvalidReason.WRONG_TYPE,
    BadEventKind.NUMERIC_PRODUCT: InvalidReason.WRONG_TYPE,
    BadEventKind.MISSING_FIELD: InvalidReason.MISSING_FIELD,
    BadEventKind.NEGATIVE_AMOUNT: InvalidReason.NEGATIVE_AMOUNT,
    BadEventKind.AMOUNT_MISMATCH: InvalidReason.AMOUNT_MISMATCH,
    BadEventKind.UNKNOWN_REGION: InvalidReason.UNKNOWN_REGION,
    BadEventKind.NAIVE_TIMESTAMP: InvalidReason.NAIVE_TIMESTAMP,
    BadEventKind.HUGE_PAYLOAD: InvalidReason.OVERSIZE,
    BadEventKind.INVALID_UTF8: InvalidReason.NOT_UTF8,
    BadEventKind.EMPTY: InvalidReason.EMPTY,
    BadEventKind.NONE: InvalidReason.EMPTY,
}

_GARBAGE = ("hello", "<sale/>", "event_id=42;amount=3", "{'single': 'quotes'}", "{,}")
_FAKE_REGIONS = ("Atlantide", "Wallonie", "Bavière", "Ile de France", "")


def _dump(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def make_bad_payload(
    rng: random.Random, *, base: SaleEvent, kind: BadEventKind | None = None
) -> tuple[bytes | None, BadEventKind]:
    """Build one malformed message value from a valid event.

    Args:
        rng: Random source (choice of kind and of the corruption details).
        base: A valid event to corrupt.
        kind: The kind to produce; drawn uniformly from `BadEventKind` when ``None``.

    Returns:
        The message value (``None`` for `BadEventKind.NONE`) and its kind.
    """
    if kind is None:
        kind = rng.choice(tuple(BadEventKind))
    fields = base.to_dict()
    match kind:
        case BadEventKind.NOT_JSON:
            return rng.choice(_GARBAGE).encode(), kind
        case BadEventKind.TRUNCATED_JSON:
            text = encode(base).decode()
            return text[: rng.randrange(1, len(text) - 1)].encode(), kind
        case BadEventKind.JSON_ARRAY:
            return _dump(list(fields.values())), kind
        case BadEventKind.STRING_QUANTITY:
            fields["quantity"] = str(base.quantity)
        case BadEventKind.NUMERIC_PRODUCT:
            fields["product"] = rng.randint(1, 9999)
        case BadEventKind.MISSING_FIELD:
            del fields[rng.choice(FIELDS)]
        case BadEventKind.NEGATIVE_AMOUNT:
            fields["amount"] = -base.amount
        case BadEventKind.AMOUNT_MISMATCH:
            fields["amount"] = round(base.amount * rng.choice((0.5, 0.9, 1.1, 2.0)), 2)
        case BadEventKind.UNKNOWN_REGION:
            fields["region"] = rng.choice(_FAKE_REGIONS)
        case BadEventKind.NAIVE_TIMESTAMP:
            fields["ts"] = base.ts.replace(tzinfo=None).isoformat(timespec="milliseconds")
        case BadEventKind.HUGE_PAYLOAD:
            fields["padding"] = "x" * (MAX_PAYLOAD_BYTES + rng.randrange(1, 4096))
        case BadEventKind.INVALID_UTF8:
            raw = encode(base)
            cut = rng.randrange(1, len(raw))
            return raw[:cut] + rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80")) + raw[cut:], kind
        case BadEventKind.EMPTY:
            return b"", kind
        case BadEventKind.NONE:
            return None, kind
    return _dump(fields), kind


def verdicts(base: SaleEvent, *, seed: int) -> list[tuple[BadEventKind, InvalidEvent]]:
    """Each `BadEventKind` built from ``base`` (seeded) and what `decode` says of it.

    Raises:
        AssertionError: If `decode` accepts one of them (the contract would be broken).
    """
    rng = random.Random(seed)
    found = []
    for kind in BadEventKind:
        payload, _ = make_bad_payload(rng, base=base, kind=kind)
        verdict = decode(payload)
        if not isinstance(verdict, InvalidEvent):
            raise AssertionError(f"{kind} was accepted by decode")
        found.append((kind, verdict))
    return found
