"""Prefetch/query templates for the care context: the encounters, the pending orders, the onset.

Each builder returns a template in the CDS Hooks prefetch form (`{{context.patientId}}` tokens,
filled by `fhir_mappings.prefetch.fill_template`); code lists are URL-encoded by the same helper
as the Observation templates.
"""

from __future__ import annotations

from collections.abc import Iterable

from fhir_mappings.panel import Panel
from fhir_mappings.prefetch import token_search_value

ENCOUNTERS_KEY = "encounters"
ORDERS_KEY = "orders"
CONDITIONS_KEY = "conditions"
ENCOUNTERS_TEMPLATE = (
    "Encounter?patient={{context.patientId}}&status=in-progress"
    "&_include=Encounter:location&_include:iterate=Location:partof"
)


def encounters_template() -> str:
    """The patient's in-progress Encounters with their Locations and every parent Location."""
    return ENCOUNTERS_TEMPLATE


def orders_template(panel: Panel) -> str:
    """The patient's active ServiceRequests for any code of any panel analyte."""
    codes = [(c.system, c.code) for analyte in panel.analytes.values() for c in analyte.codes]
    return (
        "ServiceRequest?patient={{context.patientId}}&status=active"
        f"&code={token_search_value(codes, ORDERS_KEY)}"
    )


def conditions_template(onset_condition_codes: Iterable[tuple[str, str]]) -> str | None:
    """The patient's Conditions with an onset code, or None when no onset code is configured."""
    codes = list(onset_condition_codes)
    if not codes:
        return None
    return (
        "Condition?patient={{context.patientId}}"
        f"&code={token_search_value(codes, CONDITIONS_KEY)}"
    )


def context_templates(
    panel: Panel, onset_condition_codes: Iterable[tuple[str, str]]
) -> dict[str, str]:
    """The care-context templates by prefetch key; `conditions` only when codes are configured."""
    templates = {ENCOUNTERS_KEY: encounters_template(), ORDERS_KEY: orders_template(panel)}
    conditions = conditions_template(onset_condition_codes)
    if conditions is not None:
        templates[CONDITIONS_KEY] = conditions
    return templates
