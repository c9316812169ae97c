"""A site's infection signal as facts, and the searches that bring it: the Phoenix "sepsis" check.

`phoenix-sepsis` scores organ dysfunction; it does not judge suspected infection. A site may
configure what counts as a sign of infection (the `[phoenix.infection]` settings), and this
module reads the matching resources as `InfectionEvidence`:

- `condition`: a Condition with a configured code (not refuted or entered in error), at its onset,
  else its recorded date;
- `culture`: a ServiceRequest for a configured culture code (active or completed, an order), at
  authoredOn; or an Observation with that code (not cancelled or entered in error), at its
  effective time;
- `antimicrobial`: a MedicationAdministration whose medicationCodeableConcept has a configured
  code (in progress or completed), one dose, at its effective time; or, for a site that reads
  medications from orders, a MedicationRequest (active or completed, an order) at authoredOn.
  Routes are not judged: oral antimicrobials are systemic too.

Plain dict access; malformed or unmatched resources are skipped, never raised. The searches use
the same token encoding as the panel's (`fhir_mappings.prefetch.token_search_value`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_mappings.encounters import condition_facts
from fhir_mappings.prefetch import token_search_value
from fhir_mappings.resource_fields import (
    Unusable,
    check_subject,
    coding_keys,
    effective_time,
    resource_id,
    utc,
)

Key = tuple[str, str]
CONDITIONS_KEY = "infectionConditions"
CULTURE_ORDERS_KEY = "infectionCultureOrders"
CULTURE_RESULTS_KEY = "infectionCultureResults"
ANTIMICROBIALS_KEY = "infectionAntimicrobials"
PATIENT_TOKEN = "{{context.patientId}}"
NOT_A_DIAGNOSIS = frozenset({"entered-in-error", "refuted"})
ORDER_STATUSES = frozenset({"active", "completed"})
ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
)
RESULT_NOT_COUNTED = frozenset({"cancelled", "entered-in-error"})
DOSE_STATUSES = frozenset({"in-progress", "completed"})


@dataclass(frozen=True, slots=True)
class InfectionCodes:
    """The codes that make up a site's infection signal; empty tuples switch a part off."""

    condition_codes: tuple[Key, ...] = ()
    culture_codes: tuple[Key, ...] = ()
    antimicrobial_codes: tuple[Key, ...] = ()
    medications_from: str = "administrations"  # or "requests" (sites without administrations)

    @property
    def configured(self) -> bool:
        """True when any part of the signal is configured."""
        return bool(self.condition_codes or (self.culture_codes and self.antimicrobial_codes))


@dataclass(frozen=True, slots=True)
class InfectionEvidence:
    """One sign of infection: what kind, when, by which code, from which resource."""

    kind: str  # "condition" | "culture" | "antimicrobial"
    time: datetime
    system: str
    code: str
    source: str | None = None  # "Condition/1"


def infection_evidence(
    resources: Iterable[Any], codes: InfectionCodes, *, patient_id: str | None = None
) -> tuple[InfectionEvidence, ...]:
    """Every usable sign of infection among `resources`, oldest first (none when the site
    configured no signal)."""
    if not codes.configured:
        return ()
    items = [item for item in resources if isinstance(item, Mapping)]
    found = [*_conditions(items, codes, patient_id)]
    for item in items:
        evidence = _evidence(item, codes, patient_id)
        if evidence is not None:
            found.append(evidence)
    return tuple(sorted(found, key=lambda e: (e.time, e.kind, e.source or "")))


def _conditions(
    items: list[Mapping[str, Any]], codes: InfectionCodes, patient_id: str | None
) -> list[InfectionEvidence]:
    """Conditions with a configured code, dated by onset or recorded date."""
    wanted = set(codes.condition_codes)
    found = []
    for condition in condition_facts(items, patient_id=patient_id).facts:
        matched = next((code for code in condition.codes if code in wanted), None)
        time = condition.onset or condition.recorded
        if matched is None or time is None or condition.verification_status in NOT_A_DIAGNOSIS:
            continue
        found.append(InfectionEvidence("condition", time, *matched, f"Condition/{condition.id}"))
    return found


def _evidence(
    item: Mapping[str, Any], codes: InfectionCodes, patient_id: str | None
) -> InfectionEvidence | None:
    """The evidence one non-Condition resource gives, or None."""
    kind = item.get("resourceType")
    try:
        check_subject(item, patient_id)
        if kind == "ServiceRequest":
            return _culture_order(item, codes)
        if kind == "Observation":
            return _culture_result(item, codes)
        if kind == "MedicationAdministration" and codes.medications_from == "administrations":
            return _dose(item, codes)
        if kind == "MedicationRequest" and codes.medications_from == "requests":
            return _medication_order(item, codes)
    except (Unusable, TypeError, ValueError, AttributeError, KeyError):
        return None
    return None


def _matched(concept: Any, wanted: Iterable[Key]) -> Key | None:
    """The first coding of `concept` among `wanted`."""
    allowed = set(wanted)
    return next((key for key in coding_keys(concept) if key in allowed), None)


def _culture_order(item: Mapping[str, Any], codes: InfectionCodes) -> InfectionEvidence | None:
    matched = _matched(item.get("code"), codes.culture_codes)
    if matched is None or item.get("status") not in ORDER_STATUSES:
        return None
    if item.get("intent") not in ORDER_INTENTS or item.get("doNotPerform") is True:
        return None
    return InfectionEvidence("culture", utc(item.get("authoredOn")), *matched, _source(item))


def _culture_result(item: Mapping[str, Any], codes: InfectionCodes) -> InfectionEvidence | None:
    matched = _matched(item.get("code"), codes.culture_codes)
    if matched is None or item.get("status") in RESULT_NOT_COUNTED:
        return None
    return InfectionEvidence("culture", effective_time(item), *matched, _source(item))


def _dose(item: Mapping[str, Any], codes: InfectionCodes) -> InfectionEvidence | None:
    matched = _matched(item.get("medicationCodeableConcept"), codes.antimicrobial_codes)
    if matched is None or item.get("status") not in DOSE_STATUSES:
        return None
    return InfectionEvidence("antimicrobial", effective_time(item), *matched, _source(item))


def _medication_order(item: Mapping[str, Any], codes: InfectionCodes) -> InfectionEvidence | None:
    matched = _matched(item.get("medicationCodeableConcept"), codes.antimicrobial_codes)
    if matched is None or item.get("status") not in ORDER_STATUSES:
        return None
    if item.get("intent") not in ORDER_INTENTS:
        return None
    return InfectionEvidence("antimicrobial", utc(item.get("authoredOn")), *matched, _source(item))


def _source(item: Mapping[str, Any]) -> str | None:
    identifier, kind = resource_id(item), item.get("resourceType")
    return f"{kind}/{identifier}" if identifier and isinstance(kind, str) else None


# --- searches ---------------------------------------------------------------------------------


def infection_templates(
    codes: InfectionCodes, *, page_size: int, since: datetime | None = None
) -> dict[str, str]:
    """Search templates for the configured parts of the signal; with `since`, date-bounded."""
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None
    templates: dict[str, str] = {}
    if codes.condition_codes:
        value = token_search_value(codes.condition_codes, CONDITIONS_KEY)
        templates[CONDITIONS_KEY] = f"Condition?patient={PATIENT_TOKEN}&code={value}"
    if not (codes.culture_codes and codes.antimicrobial_codes):
        return templates
    cultures = token_search_value(codes.culture_codes, CULTURE_ORDERS_KEY)
    medicines = token_search_value(codes.antimicrobial_codes, ANTIMICROBIALS_KEY)
    medication = (
        ("MedicationRequest", "authoredon")
        if codes.medications_from == "requests"
        else ("MedicationAdministration", "effective-time")
    )
    searches = {
        CULTURE_ORDERS_KEY: ("ServiceRequest", f"code={cultures}", "authored"),
        CULTURE_RESULTS_KEY: ("Observation", f"code={cultures}&_sort=-date", "date"),
        ANTIMICROBIALS_KEY: (medication[0], f"code={medicines}", medication[1]),
    }
    for key, (path, filters, date_parameter) in searches.items():
        bound = f"&{date_parameter}=ge{stamp}" if stamp else ""
        templates[key] = f"{path}?patient={PATIENT_TOKEN}&{filters}{bound}&_count={page_size}"
    return templates
