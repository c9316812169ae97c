"""Prefetch templates for discovery, filling them, and the prefetch decision table.

The decision table (CDS Hooks 2.0 §providing-fhir-resources-to-a-cds-service), one state per
case, checked in the order of `_RULES`:

    prefetch[key]                       state               service action
    no prefetch, or key missing         ABSENT              query the FHIR server (412 if we cannot)
    null                                NULL                no data exists: no query
    Bundle without entries or next      EMPTY_BUNDLE        searched, none found: no query
    OperationOutcome, or a Bundle
      holding an error outcome          OPERATION_OUTCOME   log issue codes, then query
    Bundle with a `next` link           PAGED               use its entries and follow `next`
    any other Bundle                    BUNDLE              use its entries
    any other resource                  RESOURCE            use it
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fhir_mappings.client import entry_resources, error_issue_codes, next_link

if TYPE_CHECKING:
    from fhir_mappings.panel import Panel

logger = logging.getLogger(__name__)

PATIENT_KEY = "patient"
PANEL_KEY = "panel"  # every panel analyte's Observations in one search
FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
DOT_SEGMENTS = frozenset({".", ".."})  # match FHIR_ID, but a URL resolves them to another path
USER_REFERENCE = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-\.]{1,64})")
TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
FILLABLE_TOKENS = ("context.patientId", "context.userId", "context.encounterId")
SEARCH_SPECIAL = re.compile(r"[,|$\\]")  # would need FHIR search escaping inside one code


class MalformedPrefetch(ValueError):
    """A prefetch value that is neither null nor a FHIR resource (the request is bad: 400)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"prefetch {key!r}: {problem}")


class PrefetchState(StrEnum):
    """What one prefetch key holds, and so what the service does with it."""

    ABSENT = "absent"  # not sent: query the FHIR server
    NULL = "null"  # the client has no data: no query
    EMPTY_BUNDLE = "empty-bundle"  # the client searched and found nothing: no query
    OPERATION_OUTCOME = "operation-outcome"  # the client tried and failed: log, then query
    PAGED = "paged"  # a Bundle with a next link: use its entries, follow next
    BUNDLE = "bundle"  # a complete Bundle: use its entries
    RESOURCE = "resource"  # one resource (a read): use it

    @property
    def needs_query(self) -> bool:
        """True when the FHIR server must be asked for this key's data."""
        return self in (PrefetchState.ABSENT, PrefetchState.OPERATION_OUTCOME)

    @property
    def has_data(self) -> bool:
        """True when the prefetched value itself holds usable resources."""
        return self in (PrefetchState.PAGED, PrefetchState.BUNDLE, PrefetchState.RESOURCE)


def prefetch_templates(panel: Panel, page_size: int) -> dict[str, str]:
    """Discovery prefetch: the patient, then ONE most-recent-first search for every panel code."""
    codes = [(c.system, c.code) for analyte in panel.analytes.values() for c in analyte.codes]
    return {
        PATIENT_KEY: "Patient/{{context.patientId}}",
        PANEL_KEY: (
            "Observation?patient={{context.patientId}}"
            f"&code={token_search_value(codes, PANEL_KEY)}&_sort=-date&_count={page_size}"
        ),
    }


def token_search_value(codes: Iterable[tuple[str, str]], owner: str) -> str:
    """`system|code,system|code`, URL-safe; ValueError naming `owner` for codes needing escapes."""
    pairs = list(codes)
    for system, code in pairs:
        if SEARCH_SPECIAL.search(system) or SEARCH_SPECIAL.search(code):
            raise ValueError(f"code {system}|{code} of {owner!r} needs search escaping")
    return quote(",".join(f"{system}|{code}" for system, code in pairs), safe=":/|,-._~")


def fill_template(template: str, context: Mapping[str, Any]) -> str:
    """The template with its context tokens replaced by URL-encoded, validated values."""
    return TOKEN.sub(lambda match: _token_value(match.group(1), context), template)


def _token_value(token: str, context: Mapping[str, Any]) -> str:
    if token not in FILLABLE_TOKENS:
        raise ValueError(f"unsupported prefetch token {{{{{token}}}}}")
    field = token.removeprefix("context.")
    value = context.get(field)
    if not isinstance(value, str):
        raise ValueError(f"context.{field} is required by a prefetch template")
    if FHIR_ID.fullmatch(value) and value not in DOT_SEGMENTS:
        return quote(value, safe="")
    reference = USER_REFERENCE.fullmatch(value) if field == "userId" else None
    if reference is None or reference["id"] in DOT_SEGMENTS:
        raise ValueError(f"context.{field} is not a valid FHIR id")
    return f"{reference['type']}/{quote(reference['id'], safe='')}"


def template_resource_type(template: str) -> str:
    """The resource type a template reads or searches (`Observation?…` → `Observation`)."""
    return re.split(r"[/?]", template, maxsplit=1)[0]


def is_search(template: str) -> bool:
    """True for a search template (`Type?…`), False for a read (`Type/{{…}}`)."""
    return "?" in template.split("/", 1)[0]


def classify(prefetch: Mapping[str, Any] | None, key: str) -> PrefetchState:
    """The decision-table state of one prefetch key; MalformedPrefetch for unusable values."""
    if prefetch is None or key not in prefetch:
        return PrefetchState.ABSENT
    value = prefetch[key]
    if value is None:
        return PrefetchState.NULL
    _check_resource(key, value)
    for applies, state in _RULES:
        if applies(value):
            return state
    return PrefetchState.RESOURCE


def _check_resource(key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise MalformedPrefetch(key, "is neither null nor a FHIR resource")
    if not isinstance(value.get("resourceType"), str):
        raise MalformedPrefetch(key, "has no resourceType")
    if value["resourceType"] == "Bundle":
        entries = value.get("entry", [])
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise MalformedPrefetch(key, "Bundle.entry is not a list of entries")


def _is_operation_outcome(value: Mapping[str, Any]) -> bool:
    return value["resourceType"] == "OperationOutcome"


def _is_failed_search(value: Mapping[str, Any]) -> bool:
    """A Bundle holding an OperationOutcome that reports an error: its data may be partial."""
    return value["resourceType"] == "Bundle" and bool(error_issue_codes(value))


def _is_paged(value: Mapping[str, Any]) -> bool:
    return value["resourceType"] == "Bundle" and next_link(value) is not None


def _is_empty_bundle(value: Mapping[str, Any]) -> bool:
    """A Bundle with no entries, or only informational OperationOutcomes."""
    resources = list(entry_resources(value))
    return value["resourceType"] == "Bundle" and all(
        r.get("resourceType") == "OperationOutcome" for r in resources
    )


def _is_bundle(value: Mapping[str, Any]) -> bool:
    return value["resourceType"] == "Bundle"


_RULES: tuple[tuple[Callable[[Mapping[str, Any]], bool], PrefetchState], ...] = (
    (_is_operation_outcome, PrefetchState.OPERATION_OUTCOME),
    (_is_failed_search, PrefetchState.OPERATION_OUTCOME),
    (_is_paged, PrefetchState.PAGED),
    (_is_empty_bundle, PrefetchState.EMPTY_BUNDLE),
    (_is_bundle, PrefetchState.BUNDLE),
)


def _issues(outcome: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    issues = outcome.get("issue")
    return [i for i in issues if isinstance(i, Mapping)] if isinstance(issues, list) else []


def log_operation_outcome(key: str, value: Mapping[str, Any]) -> None:
    """Log the issue severities and codes a client sent for a key; diagnostics only at DEBUG."""
    outcomes = [value] if _is_operation_outcome(value) else list(entry_resources(value))
    issues = [issue for outcome in outcomes for issue in _issues(outcome)]
    codes = ", ".join(f"{i.get('severity', '?')}/{i.get('code', '?')}" for i in issues) or "none"
    logger.warning("prefetch %s: the client sent an OperationOutcome (issues: %s)", key, codes)
    for issue in issues:
        if isinstance(issue.get("diagnostics"), str):
            logger.debug("prefetch %s diagnostics: %s", key, issue["diagnostics"])
