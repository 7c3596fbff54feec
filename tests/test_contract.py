"""The schema contract: every store's columns come from its table; the published JSON Schema."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from tableauhyperapi import Connection, HyperProcess, Telemetry

from sales_stream import contract, extract
from sales_stream.contract import COLUMNS, INGESTED_AT, Lake, Origin
from sales_stream.deadletters import DeadLetter, dead_letter
from sales_stream.events import InvalidReason, SaleEvent, decode, encode
from sales_stream.export import hyper, workbook
from sales_stream.lake.tables import (
    DATASET_SCHEMA,
    DEAD_LETTER_SCHEMA,
    EVENT_SCHEMA,
    PARTITION_SCHEMA,
    dead_letters_table,
)
from sales_stream.produce.generator import SaleGenerator
from sales_stream.sql.schema import TABLES
from sales_stream.store import SALES
from tests.test_events import CASES

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "docs" / "sale_event.schema.json"
NAMES = [c.name for c in COLUMNS]
TABLEAU = [c.name for c in COLUMNS if c.tableau]

# Rules on the bytes or on parsing: they hold before there is a JSON value to validate.
BEFORE_JSON_VALUE = {
    InvalidReason.NOT_BYTES,
    InvalidReason.EMPTY,
    InvalidReason.OVERSIZE,  # a size in bytes of the encoded message
    InvalidReason.NOT_UTF8,
    InvalidReason.NOT_JSON,
    InvalidReason.DUPLICATE_JSON_KEY,  # a parser keeps one of the two values
    InvalidReason.LONE_SURROGATE,  # a property of the escapes in the text
}
# Semantic rules JSON Schema cannot express: arithmetic between fields, and 2 decimals on a
# binary float (``multipleOf: 0.01`` rejects 19.99 because 19.99 / 0.01 is not an integer).
# Also semantic only, inside otherwise expressible reasons: a calendar-invalid day
# (2024-02-30) or an offset crossing the 2000/2100 bounds (BAD_TIMESTAMP), and an integral
# float such as 2.0 for an int field (WRONG_TYPE: draft 2020-12 calls 2.0 an integer).
SEMANTIC_ONLY = {InvalidReason.AMOUNT_MISMATCH, InvalidReason.BAD_PRICE_PRECISION}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = contract.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_json_schema_is_the_generated_one() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "sales_stream.contract", "--json-schema"],
        capture_output=True,
        check=True,
        text=True,
        encoding="utf-8",
    ).stdout
    assert printed == contract.json_schema_text()
    assert SCHEMA_FILE.read_text(encoding="utf-8") == printed, (
        "regenerate: python -m sales_stream.contract --json-schema > docs/sale_event.schema.json"
    )


def test_generated_events_validate(validator: jsonschema.Draft202012Validator) -> None:
    events = SaleGenerator(7).events(2000)
    for event in events:
        validator.validate(json.loads(encode(event)))
    assert {e.product for e in events} == set(contract.PRODUCT_BY_NAME)


def test_every_reason_is_covered_or_documented() -> None:
    expressible = set(InvalidReason) - BEFORE_JSON_VALUE - SEMANTIC_ONLY
    assert not BEFORE_JSON_VALUE & SEMANTIC_ONLY
    assert expressible
    assert {reason for _, reason, _ in CASES} == set(InvalidReason)


def _value(raw: bytes | str | None) -> object:
    def reject(name: str) -> None:
        raise ValueError(name)

    assert isinstance(raw, bytes)
    return json.loads(raw, parse_constant=reject)


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [c for c in CASES if c[1] not in BEFORE_JSON_VALUE | SEMANTIC_ONLY and "got float" not in c[2]],
)
def test_json_schema_rejects_each_expressible_reason(
    validator: jsonschema.Draft202012Validator, raw: bytes, reason: InvalidReason, fragment: str
) -> None:
    assert decode(raw).reason is reason  # type: ignore[union-attr]
    assert not validator.is_valid(_value(raw))


def test_semantic_only_reasons_pass_the_json_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    base = json.loads(encode(SaleGenerator(3).events(1)[0]))
    wrong_amount = {**base, "amount": round(base["amount"] + 1, 2)}
    three_decimals = {**base, "unit_price": 19.999, "amount": round(19.999 * base["quantity"], 2)}
    feb_30 = {**base, "ts": "2024-02-30T10:00:00+00:00"}
    float_quantity = {**base, "quantity": float(base["quantity"])}
    for value, reason in (
        (wrong_amount, InvalidReason.AMOUNT_MISMATCH),
        (three_decimals, InvalidReason.BAD_PRICE_PRECISION),
        (feb_30, InvalidReason.BAD_TIMESTAMP),
        (float_quantity, InvalidReason.WRONG_TYPE),
    ):
        assert decode(json.dumps(value).encode()).reason is reason  # type: ignore[union-attr]
        assert validator.is_valid(value)


def test_lake_schemas_are_the_contract_columns() -> None:
    files = [c.name for c in COLUMNS if c.lake is Lake.FILE]
    partitions = [c.name for c in COLUMNS if c.lake is Lake.PARTITION]
    assert EVENT_SCHEMA.names == files
    assert PARTITION_SCHEMA.names == partitions == ["date", "region"]
    assert set(DATASET_SCHEMA.names) == {c.name for c in COLUMNS if c.lake is not Lake.ABSENT}


def test_lake_and_mongodb_dead_letters_have_the_same_fields() -> None:
    letter = dead_letter(
        topic="sales",
        partition=2,
        offset=7,
        key=b"k",
        value=b"{bad",
        reason="not_json",
        detail="not JSON",
        incarnation="0a1b",
        now=datetime(2026, 1, 2, 3, 4, 5, 678000, UTC),
    )
    names = [f.name for f in dataclasses.fields(DeadLetter)]
    assert DEAD_LETTER_SCHEMA.names == names
    assert set(letter.to_document()) == {"_id", *names, "raw_text"}
    [row] = dead_letters_table([letter]).to_pylist()
    assert row == dataclasses.asdict(letter)  # the lake keeps every field MongoDB keeps


def test_hyper_table_is_the_tableau_columns(tmp_path: Path) -> None:
    path = tmp_path / "sales.hyper"
    with HyperProcess(
        Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters={"log_config": ""}
    ) as p:
        extract.write_extract(
            p,
            path,
            extract.ARROW_SCHEMA.empty_table(),
            writer=extract.Writer.MONGODB,
            watermark=datetime.now(UTC),
        )
        with Connection(p.endpoint, path) as conn:
            written = conn.catalog.get_table_definition(extract.EXTRACT_TABLE).columns
    expected = [(name, sql) for name, sql, _ in contract.hyper_columns()]
    assert [(c.name.unescaped, c.type) for c in written] == expected
    assert [name for name, _ in expected] == extract.ARROW_SCHEMA.names == TABLEAU
    assert hyper.WATERMARK_FIELD == INGESTED_AT


def test_sql_table_is_the_contract_columns() -> None:
    declared = [part.split()[0] for part in TABLES[SALES].split(", ")]
    stored = [c.stored_as for c in COLUMNS if c.origin is not Origin.DERIVED]
    assert declared == stored == ["_id", *NAMES[1:2], *NAMES[4:]]
    assert [f.name for f in contract.tableau_fields(sql_table=True)] == declared


def test_workbook_fields_are_the_tableau_columns(tmp_path: Path) -> None:
    path = workbook.write_extract_workbook(
        tmp_path / "sales.twb", extract_path=tmp_path / "sales.hyper", top_n=5
    )
    datasource = ET.parse(path).getroot().find("./datasources/datasource")
    assert datasource is not None
    records = [r.findtext("remote-name") for r in datasource.iter("metadata-record")]
    assert records == TABLEAU
    columns = {c.get("name"): c for c in datasource.findall("column")}
    assert {f"[{name}]" for name in TABLEAU} <= set(columns)
    assert columns["[region]"].get("semantic-role") == "[State].[Name]"
    assert columns["[lat]"].get("semantic-role") == "[Geographical].[Latitude]"
    assert columns["[amount]"].get("role") == "measure"
    assert columns["[region]"].get("caption") == "Région"


def test_event_fields_follow_the_contract() -> None:
    event = SaleGenerator(1).events(1)[0]
    assert list(event.to_dict()) == [c.name for c in COLUMNS if c.origin is Origin.EVENT]
    assert isinstance(decode(encode(event)), SaleEvent)
