"""The hook's Phoenix step: its prefetch and query templates, and the context from what was read.

Discovery advertises the Phoenix searches bounded by `_count` (prefetch has no date tokens); the
hook's own queries carry a date bound, `course_days` before now less the longest carry-forward
window, under the same deadline and token rules as every other key (one `gather`). From the
gathered resources `phoenix_context` computes the course over the encounter the PICU gate
judged; its onset goes to `assess_context` as the Phoenix anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fhir_mappings.encounters import EncounterFacts, encounter_facts
from fhir_mappings.gather import INCOMPLETE, PatientData
from fhir_mappings.infection import (
    ANTIMICROBIALS_KEY,
    CONDITIONS_KEY,
    CULTURE_ORDERS_KEY,
    CULTURE_RESULTS_KEY,
    infection_templates,
)
from fhir_mappings.phoenix_inputs import PhoenixCatalog, load_phoenix_catalog
from fhir_mappings.phoenix_queries import (
    DEVICE_USE_KEY,
    GESTATIONAL_AGE_KEY,
    INFUSIONS_KEY,
    OBSERVATIONS_KEY,
    PROCEDURES_KEY,
    phoenix_prefetch_templates,
    phoenix_templates,
    query_since,
)
from model.phoenix_context import EVIDENCE_LEAD, PhoenixContext, PhoenixSettings, assess_phoenix

# What each Phoenix key holds, in the card's incomplete-data note.
KEY_CONTENTS = {
    OBSERVATIONS_KEY: "Phoenix vital signs and laboratory results",
    PROCEDURES_KEY: "respiratory support procedures",
    DEVICE_USE_KEY: "respiratory device records",
    INFUSIONS_KEY: "infusion records",
    GESTATIONAL_AGE_KEY: "gestational age records",
    CONDITIONS_KEY: "infection diagnoses",
    CULTURE_ORDERS_KEY: "culture orders",
    CULTURE_RESULTS_KEY: "culture results",
    ANTIMICROBIALS_KEY: "antimicrobial records",
}
# The keys whose unread pages may hide an earlier onset.
PHOENIX_INPUT_KEYS = (OBSERVATIONS_KEY, PROCEDURES_KEY, DEVICE_USE_KEY, INFUSIONS_KEY)
# Resource types the Phoenix step reads besides Observations (Device and Medication come in
# through `_include`).
RESOURCE_TYPES = (
    "Procedure",
    "DeviceUseStatement",
    "Device",
    "MedicationAdministration",
    "MedicationRequest",
    "Medication",
    "Condition",
    "ServiceRequest",
)


@dataclass(frozen=True)
class PhoenixStep:
    """The Phoenix layer of one configured service: its settings and code catalog."""

    settings: PhoenixSettings
    catalog: PhoenixCatalog = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Load the catalog with the site's code additions once."""
        object.__setattr__(self, "catalog", load_phoenix_catalog(self.settings))

    def prefetch_templates(self) -> dict[str, str]:
        """The Phoenix and infection searches as discovery advertises them (no date bound)."""
        settings = self.settings
        templates = phoenix_prefetch_templates(
            self.catalog,
            page_size=self.settings.page_size,
            phoenix8=settings.phoenix8,
            medication_chain=settings.medication_chain,
            encounter=False,
        )
        return templates | infection_templates(
            settings.infection_codes(), page_size=self.settings.page_size
        )

    def query_templates(self, now: datetime) -> dict[str, str]:
        """The same searches for the hook's own queries, each bounded by a date where it can be."""
        settings = self.settings
        course_start = now - settings.course_span
        templates = phoenix_templates(
            self.catalog,
            page_size=self.settings.page_size,
            since=query_since(course_start, self.catalog),
            phoenix8=settings.phoenix8,
            medication_chain=settings.medication_chain,
        )
        infection = infection_templates(
            settings.infection_codes(),
            page_size=self.settings.page_size,
            since=course_start - EVIDENCE_LEAD,
        )
        return templates | infection

    def context(
        self, data: PatientData, encounter: str | None, patient_id: str, now: datetime
    ) -> PhoenixContext:
        """The Phoenix course of the encounter in question ("Encounter/<id>"), from the data,
        up to the current minute (so that a card does not change from one second to the next)."""
        resources = [
            *data.observations,
            *(item for kind in RESOURCE_TYPES for item in data.of_type(kind)),
        ]
        incomplete = any(
            data.sources.get(key, "").endswith(INCOMPLETE) for key in PHOENIX_INPUT_KEYS
        )
        return assess_phoenix(
            patient=data.patient,
            encounter=_encounter(data, encounter, patient_id),
            resources=resources,
            now=now.replace(second=0, microsecond=0),  # the card's latest point, to the minute
            settings=self.settings,
            catalog=self.catalog,
            patient_id=patient_id,
            incomplete=incomplete,
        )


def _encounter(data: PatientData, reference: str | None, patient_id: str) -> EncounterFacts | None:
    """The facts of the encounter the PICU gate judged, or None."""
    if reference is None:
        return None
    wanted = reference.removeprefix("Encounter/")
    facts = encounter_facts(data.of_type("Encounter"), patient_id=patient_id).facts
    return next((item for item in facts if item.id == wanted), None)
