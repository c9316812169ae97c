"""`loads_bounded`: the fast parser for well-formed documents, the standard one's verdict on the
rest, and the nesting bound on both."""

from __future__ import annotations

import json

import pytest

from fhir_mappings.limits import JsonTooDeep, loads_bounded

# documents orjson refuses and the standard parser accepts
LENIENT = {
    "byte order mark": b'\xef\xbb\xbf{"resourceType": "Bundle"}',
    "UTF-16": '{"resourceType": "Bundle"}'.encode("utf-16"),
    "NaN": b'{"valueQuantity": {"value": NaN}}',
    "Infinity": b"[Infinity, -Infinity]",
    "number beyond a double": b"[1e400]",
    "lone surrogate": b'{"text": "\\ud800"}',
}


@pytest.mark.parametrize("document", LENIENT.values(), ids=LENIENT.keys())
def test_what_orjson_refuses_is_parsed_as_the_standard_parser_parses_it(document: bytes) -> None:
    parsed = loads_bounded(document, 64)
    assert json.dumps(parsed) == json.dumps(json.loads(document))


@pytest.mark.parametrize(
    "document",
    [b"", b"{", b'{"a": 1,}', b"[1] [2]", b"\xff", b'{"a": 01}', b"'single'"],
)
def test_text_that_is_not_json_is_a_value_error(document: bytes) -> None:
    with pytest.raises(ValueError):
        loads_bounded(document, 64)


def test_a_fhir_document_parses_to_the_standard_parsers_values() -> None:
    document = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"id": f"o{i}", "valueQuantity": {"value": i * 0.1, "unit": "pg/mL"}}}
            for i in range(200)
        ],
        "text": "IFN-γ ≥ 100 pg/mL",
        "total": 2**63,
        "duplicate": 1,
    }
    text = json.dumps(document, ensure_ascii=False).replace(
        '"duplicate": 1', '"duplicate": 1, "duplicate": 2'
    )
    assert loads_bounded(text.encode(), 64) == json.loads(text)
    assert loads_bounded(text, 64)["duplicate"] == 2  # the last of repeated keys, as json does


@pytest.mark.parametrize("depth", [65, 1100, 20_000])
def test_nesting_past_the_limit_is_refused_by_either_parser(depth: int) -> None:
    with pytest.raises(JsonTooDeep):
        loads_bounded(b"[" * depth + b"]" * depth, 64)


def test_nesting_at_the_limit_is_accepted() -> None:
    assert loads_bounded(b"[" * 64 + b"]" * 64, 64) is not None
