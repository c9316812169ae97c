"""Prefetch templates and FHIR queries for the Phoenix inputs: few requests, bounded in size.

One request per resource type, every code of that type in one token list, most recent first,
`_count` per page (the FHIR client follows at most `max_pages` next links under the hook's one
deadline, with the same token rules as the panel's Observation queries):

    key                      template (prefetch; {{context.patientId}} filled by the EHR)
    phoenixObservations      Observation?patient={{context.patientId}}&code=<all input codes>
                               &_sort=-date&_count=N
    phoenixProcedures        Procedure?patient={{context.patientId}}&code=<IMV + support codes>
                               &_sort=-date&_count=N
    phoenixDeviceUse         DeviceUseStatement?patient={{context.patientId}}
                               &_include=DeviceUseStatement:device&_count=N
    phoenixInfusions         MedicationAdministration?patient={{context.patientId}}
                               &code=<vasoactive codes>&_sort=-effective-time&_count=N
                             (MedicationRequest?patient=…&code=…&_sort=-authoredon&_count=N for a
                              site that reads vasoactives from requests)
    phoenixEncounter         Encounter/{{context.encounterId}}   (start, admit source)
    phoenixGestationalAge    Observation?patient={{context.patientId}}&code=76516-4,11884-4
                               &_sort=-date&_count=1

Prefetch templates cannot carry a computed date, so they are bounded by `_count` alone. The query
path (`phoenix_templates(since=…)`, filled for one patient by `phoenix_queries`) adds a date
bound for the types that have a date search parameter:
`date=ge<since>` on Observation and Procedure, `effective-time=ge<since>` on
MedicationAdministration and `authoredon=ge<since>` on MedicationRequest, where `since` is the
encounter start less the longest carry-forward window (24 h), so readings carried into the first
hours are fetched. DeviceUseStatement has no date search parameter in R4: `_count` bounds it.
A site whose administrations name their drug through a Medication resource sets
`medication_chain=True`: the infusion query then filters with `medication.code` and includes the
Medication. The Patient (birth date) is the hook's existing `patient` prefetch key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fhir_mappings.phoenix_inputs import GESTATIONAL_AGE_CODES, Key, PhoenixCatalog

OBSERVATIONS_KEY = "phoenixObservations"
PROCEDURES_KEY = "phoenixProcedures"
DEVICE_USE_KEY = "phoenixDeviceUse"
INFUSIONS_KEY = "phoenixInfusions"
ENCOUNTER_KEY = "phoenixEncounter"
GESTATIONAL_AGE_KEY = "phoenixGestationalAge"
PATIENT_TOKEN = "{{context.patientId}}"
ENCOUNTER_TOKEN = "{{context.encounterId}}"
_SEARCH_SPECIAL = frozenset(",|$\\")


def phoenix_prefetch_templates(
    catalog: PhoenixCatalog,
    *,
    page_size: int,
    phoenix8: bool = False,
    medication_chain: bool = False,
    encounter: bool = True,
) -> dict[str, str]:
    """Prefetch templates for the Phoenix inputs (no date bound: prefetch has no date tokens)."""
    templates = phoenix_templates(
        catalog, page_size=page_size, phoenix8=phoenix8, medication_chain=medication_chain
    )
    if encounter:
        templates[ENCOUNTER_KEY] = f"Encounter/{ENCOUNTER_TOKEN}"
    return templates


def phoenix_templates(
    catalog: PhoenixCatalog,
    *,
    page_size: int,
    since: datetime | None = None,
    phoenix8: bool = False,
    medication_chain: bool = False,
) -> dict[str, str]:
    """Search templates (`{{context.patientId}}`); with `since`, the query path's date bound."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None
    templates: dict[str, str] = {}
    searches = _searches(catalog, PATIENT_TOKEN, page_size, phoenix8, medication_chain)
    for key, (path, params) in searches.items():
        date_parameter = _DATE_PARAMETERS.get(path)
        if stamp and date_parameter is not None and key != GESTATIONAL_AGE_KEY:
            params = [*params, (date_parameter, f"ge{stamp}")]
        templates[key] = f"{path}?{_joined(params)}"
    return templates


def phoenix_queries(
    catalog: PhoenixCatalog,
    patient_id: str,
    *,
    since: datetime,
    page_size: int,
    phoenix8: bool = False,
    medication_chain: bool = False,
) -> dict[str, str]:
    """Search strings (relative to the FHIR base) for one patient, each bounded by `since`."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    templates = phoenix_templates(
        catalog,
        page_size=page_size,
        since=since,
        phoenix8=phoenix8,
        medication_chain=medication_chain,
    )
    patient = quote(patient_id, safe="")
    return {key: template.replace(PATIENT_TOKEN, patient) for key, template in templates.items()}


def query_since(encounter_start: datetime, catalog: PhoenixCatalog) -> datetime:
    """The date bound for the query path: the encounter start less the longest window."""
    longest = max(
        [item.carry_forward for item in catalog.inputs.values()]
        + [kind.carry_forward for kind in catalog.support.values()]
        + [catalog.vasoactive_carry_forward],
        default=timedelta(0),
    )
    return encounter_start - longest


_DATE_PARAMETERS = {
    "Observation": "date",
    "Procedure": "date",
    "MedicationAdministration": "effective-time",
    "MedicationRequest": "authoredon",
}


def _searches(
    catalog: PhoenixCatalog,
    patient: str,
    page_size: int,
    phoenix8: bool,
    medication_chain: bool,
) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """(resource type, parameters) of each Phoenix search, in request order."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    count = str(page_size)
    support_codes = sorted(
        {key for kind in catalog.support.values() for key in kind.procedure_codes}
    )
    medication = (
        "MedicationRequest"
        if catalog.vasoactives_from == "requests"
        else ("MedicationAdministration")
    )
    medication_sort = "-authoredon" if medication == "MedicationRequest" else "-effective-time"
    medication_filter = [("code", _tokens(catalog.medication_codes()))]
    if medication_chain:
        medication_filter = [
            ("medication.code", _tokens(catalog.medication_codes())),
            ("_include", f"{medication}:medication"),
        ]
    return {
        OBSERVATIONS_KEY: (
            "Observation",
            [
                ("patient", patient),
                ("code", _tokens(catalog.observation_codes(phoenix8=phoenix8))),
                ("_sort", "-date"),
                ("_count", count),
            ],
        ),
        PROCEDURES_KEY: (
            "Procedure",
            [
                ("patient", patient),
                ("code", _tokens(support_codes)),
                ("_sort", "-date"),
                ("_count", count),
            ],
        ),
        DEVICE_USE_KEY: (
            "DeviceUseStatement",
            [
                ("patient", patient),
                ("_include", "DeviceUseStatement:device"),
                ("_count", count),
            ],
        ),
        INFUSIONS_KEY: (
            medication,
            [
                ("patient", patient),
                *medication_filter,
                ("_sort", medication_sort),
                ("_count", count),
            ],
        ),
        GESTATIONAL_AGE_KEY: (
            "Observation",
            [
                ("patient", patient),
                ("code", _tokens(sorted(GESTATIONAL_AGE_CODES))),
                ("_sort", "-date"),
                ("_count", "1"),
            ],
        ),
    }


def _tokens(codes: list[Key] | tuple[Key, ...]) -> str:
    """`system|code,system|code`, URL-safe; ValueError for a code that needs FHIR escaping."""
    for system, code in codes:
        if _SEARCH_SPECIAL & set(system + code):
            raise ValueError(f"code {system}|{code} needs search escaping")
    joined = ",".join(f"{system}|{code}" for system, code in codes)
    return quote(joined, safe=":/|,-._~")


def _joined(params: list[tuple[str, str]]) -> str:
    """`name=value&…`, values already URL-safe (tokens and the patient id may stay literal)."""
    return "&".join(f"{name}={value}" for name, value in params)
