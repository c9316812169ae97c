"""Bounds on what we read from others: reply sizes, JSON nesting, and key-set fetches.

`LimitSettings` is the `[limits]` table of the settings file. `loads_bounded` parses JSON text and
refuses documents nested deeper than a limit, so a hostile document can neither exhaust the stack
(RecursionError) nor make later recursive code fail on it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024


class LimitSettings(BaseModel):
    """Caps on replies from FHIR servers and JWKS endpoints, and on JSON nesting everywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_reply_bytes: int = Field(4 * MIB, ge=1024)  # decoded body of one FHIR reply
    max_json_depth: int = Field(64, ge=8, le=512)  # nesting of any JSON document we parse
    jwks_timeout_seconds: float = Field(2.0, gt=0, le=30)  # total time of one key-set fetch
    jwks_max_bytes: int = Field(256 * 1024, ge=1024)  # decoded body of one key-set reply


class JsonTooDeep(ValueError):
    """A JSON document nests arrays and objects deeper than allowed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def nests_deeper_than(value: Any, limit: int) -> bool:
    """True when the arrays and objects of a parsed JSON value nest deeper than `limit`.

    Walks level by level without recursion, so it is safe on any input, and stops at `limit`.
    """
    level, depth = [value], 0
    while level:
        depth += 1
        containers = [node for node in level if type(node) is dict or type(node) is list]
        if not containers:
            return False
        if depth > limit:
            return True
        level = [
            child
            for node in containers
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return False


def loads_bounded(data: bytes | str, max_depth: int) -> Any:
    """Parse JSON text; JsonTooDeep past `max_depth`, ValueError when it is not JSON.

    orjson parses well-formed UTF-8 JSON (about three times as fast as the standard library);
    whatever it refuses (a byte order mark, UTF-16, NaN, lone surrogates, nesting past 1,024) goes
    to the standard parser, so every document is accepted or refused as `json.loads` would, with
    the same values (save integers beyond 64 bits, which orjson reads as floats). That parser
    refuses nesting near the interpreter's recursion limit with RecursionError, reported as
    JsonTooDeep; anything accepted is then measured without recursion.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = _standard_loads(data, max_depth)
    if nests_deeper_than(value, max_depth):
        raise JsonTooDeep(max_depth)
    return value


def _standard_loads(data: bytes | str, max_depth: int) -> Any:
    """`json.loads`, with RecursionError reported as JsonTooDeep."""
    try:
        return json.loads(data)
    except RecursionError:
        raise JsonTooDeep(max_depth) from None
