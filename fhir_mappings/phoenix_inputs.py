"""FHIR resources -> Phoenix readings: each input in the unit `phoenix-sepsis` expects, or why not.

`load_phoenix_catalog` reads `phoenix_inputs.toml` (plus a site's `PhoenixCodeSettings`);
`extract_phoenix` turns Observation, Procedure, DeviceUseStatement, MedicationAdministration and
MedicationRequest dicts into `PhoenixReading`s and `PhoenixExclusion`s; `phoenix_patient` reads
the age and scope signals (the birth date through `fhir_mappings.patient`, the encounter's start
and admit source from its `EncounterFacts`, the gestational age at birth). Plain dict access,
and malformed input never raises. Resources that carry no Phoenix input are ignored.

Traps handled here (see the FHIR code map for Phoenix in the clinical reference):
- FiO2 sent as % (21-100) or as a fraction (0.21-1.00, also sent with code `%`);
- D-dimer in DDU is excluded unless the site sets the assay's DDU-to-FEU factor; units/volume
  codes are never converted; a FEU code with a DDU unit is a contradiction and excluded;
- plain blood-pressure codes count as cuff unless `Observation.method` is a site's arterial code;
  a MAP outside DBP..SBP in one panel, and SBP - DBP < 1, are excluded;
- GCS total and components (intubated verbal "1T" is read as 1);
- pupils: one reading per side, 1 = not reactive to light; "fixed" needs both sides;
- IMV only from codes that say invasive, or generic ventilation with a tube; other support
  otherwise; ventilator PEEP > 3 and mean airway pressure > 0 are IMV evidence, O2 flow > 0 is
  other support;
- vasoactives: only the six agents, only continuous (a period, or a charted rate), only systemic
  routes when a route is coded.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from importlib import resources
from typing import Any

from fhir_mappings.encounters import EncounterFacts
from fhir_mappings.measurement import COUNTED_STATUSES, ExclusionReason
from fhir_mappings.patient import full_birth_date
from fhir_mappings.phoenix_config import RXNORM_SYSTEM, SNOMED_SYSTEM, PhoenixCodeSettings
from fhir_mappings.resource_fields import (
    Unusable,
    check_subject,
    coding_keys,
    comparator,
    effective_time,
    mappings,
    numeric_value,
    quantity,
    resource_id,
    usable_observation_status,
    utc,
)
from fhir_mappings.units import UnitConversionError, convert, normalise_unit_text

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ADMIT_SOURCE_SYSTEM = "http://terminology.hl7.org/CodeSystem/admit-source"
CATALOG_RESOURCE = "phoenix_inputs.toml"
SUPPORT_KEYS = ("imv", "other_respiratory_support")
VASOACTIVE_KEY = "vasoactive"
# Unitless spellings accepted for scores and ratios (GCS, INR) and for an FiO2 fraction.
UNITLESS = frozenset(
    {"", "1", "{score}", "{INR}", "{ratio}", "{fraction}", "score", "ratio", "inr"}
)
GESTATIONAL_AGE_CODES = frozenset({(LOINC_SYSTEM, "76516-4"), (LOINC_SYSTEM, "11884-4")})
_SCORE_TEXT = re.compile(r"^\s*(\d{1,2})\s*[Tt]?\s*$")  # "7", "1T" (intubated verbal)
_BASIS = re.compile(r"\{?\b(FEU|DDU)\b\}?", re.IGNORECASE)

Key = tuple[str, str]


class PhoenixExclusionReason(StrEnum):
    """Why a recognised Phoenix input was not used, beyond the panel's reasons."""

    PRELIMINARY = "preliminary"
    OUT_OF_RANGE = "out-of-range"
    REPORTED_AS_LIMIT = "reported-as-limit"
    DDU_NOT_CONVERTED = "ddu-not-converted"
    IMPLAUSIBLE_PRESSURES = "implausible-pressures"
    NOT_SYSTEMIC = "not-systemic"
    NOT_CONTINUOUS = "not-continuous"
    NOT_AN_ORDER = "not-an-order"
    UNRECOGNISED_ANSWER = "unrecognised-answer"


# --- plain data out ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhoenixReading:
    """One Phoenix input at one time (or over one interval), in the package's unit."""

    input: str  # a catalog input key ("lactate", "fio2", ...), "imv", "other_respiratory_support"
    # or "vasoactive"
    value: float  # in the input's unit; 1.0 for support, infusions and a non-reactive pupil
    time: datetime  # when measured, or when an interval began (UTC)
    system: str  # code system of the matched coding
    code: str  # the matched code
    source: str | None = None  # "Observation/abc" (a literal reference to the resource)
    end: datetime | None = None  # an interval's end (support, infusion); None for a point
    ongoing: bool = False  # an interval still running: active until the end of the course
    agent: str | None = None  # the vasoactive agent ("epinephrine", ...)
    source_value: float | None = None  # value as sent, before conversion
    source_unit: str | None = None  # unit as sent, before conversion


@dataclass(frozen=True, slots=True)
class PhoenixExclusion:
    """A resource recognised as a Phoenix input but not used, and why."""

    input: str
    reason: ExclusionReason | PhoenixExclusionReason
    detail: str  # human-readable, shown on the card
    system: str | None = None
    code: str | None = None
    time: datetime | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PhoenixExtraction:
    """What the mapping made of a set of resources."""

    readings: tuple[PhoenixReading, ...] = ()
    exclusions: tuple[PhoenixExclusion, ...] = ()


@dataclass(frozen=True, slots=True)
class PhoenixPatient:
    """Age and scope signals: birth date, gestational age at birth, birth hospitalisation."""

    birth_date: date | None
    encounter_start: datetime | None = None
    gestational_age_weeks: float | None = None  # at birth, when an Observation says so
    birth_hospitalisation: bool = False  # the current encounter began at birth


# --- the catalog ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputCode:
    """One code that reports a measured input."""

    system: str
    code: str
    display: str
    unit: str | None = None  # the unit the code implies when none is sent
    basis: str | None = None  # D-dimer: "FEU" or "DDU"
    arbitrary_units: bool = False
    local: bool = False


@dataclass(frozen=True, slots=True)
class MeasuredInput:
    """One measured input: its codes, unit, reading rule, window and valid range."""

    key: str
    display: str
    unit: str
    read_as: str  # quantity | fio2 | score | pupil | evidence
    carry_forward: timedelta
    carry_forward_source: str
    codes: tuple[InputCode, ...]
    valid_min: float | None = None
    valid_max: float | None = None
    molar_mass: float | None = None
    evidence_of: str | None = None
    above: float | None = None
    arterial_by_method: str | None = None
    phoenix8: bool = False


@dataclass(frozen=True, slots=True)
class SupportKind:
    """IMV or other respiratory support: the Procedure and Device codes that show it."""

    key: str
    display: str
    carry_forward: timedelta
    carry_forward_source: str
    procedure_codes: frozenset[Key]
    needs_invasive_device: frozenset[Key]
    device_codes: frozenset[Key]


@dataclass(frozen=True, slots=True)
class PhoenixCatalog:
    """Every Phoenix input the service reads, indexed by code; build with load_phoenix_catalog."""

    inputs: Mapping[str, MeasuredInput]
    support: Mapping[str, SupportKind]
    agents: Mapping[str, frozenset[Key]]  # agent -> medication codes
    vasoactive_carry_forward: timedelta
    vasoactive_carry_forward_source: str
    systemic_routes: frozenset[Key]
    systemic_route_texts: frozenset[str]
    pupil_not_reactive: frozenset[Key]
    pupil_reactive: frozenset[Key]
    arterial_methods: frozenset[Key] = frozenset()
    panel_codes: tuple[Key, ...] = ()  # searched for their components (the BP panel)
    ddu_to_feu_factor: float | None = None
    vasoactives_from: str = "administrations"
    _by_code: dict[Key, tuple[MeasuredInput, InputCode]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Index every measured input's codes; a code claimed by two inputs is refused."""
        for item in self.inputs.values():
            for coding in item.codes:
                key = (coding.system, coding.code)
                if key in self._by_code and self._by_code[key][0].key != item.key:
                    raise ValueError(f"code {key[0]}|{key[1]} in {self._by_code[key][0].key}")
                self._by_code.setdefault(key, (item, coding))

    def match(self, concept: Any) -> tuple[MeasuredInput, InputCode] | None:
        """The measured input of the first coding of a CodeableConcept that matches exactly."""
        return self.match_keys(coding_keys(concept))

    def match_keys(self, keys: Iterable[Key]) -> tuple[MeasuredInput, InputCode] | None:
        """The measured input of the first (system, code) pair that matches exactly."""
        for key in keys:
            if key in self._by_code:
                return self._by_code[key]
        return None

    def carry_forward(self, key: str) -> timedelta:
        """The carry-forward window of any reading input key."""
        if key == VASOACTIVE_KEY:
            return self.vasoactive_carry_forward
        if key in self.support:
            return self.support[key].carry_forward
        return self.inputs[key].carry_forward

    def observation_codes(self, *, phoenix8: bool = False) -> tuple[Key, ...]:
        """Every Observation code to ask for, in catalog order (Phoenix-8 extras on request),
        then the panels whose components are inputs."""
        return tuple(
            (coding.system, coding.code)
            for item in self.inputs.values()
            if phoenix8 or not item.phoenix8
            for coding in item.codes
        ) + tuple(code for code in self.panel_codes if code not in self._by_code)

    def medication_codes(self) -> tuple[Key, ...]:
        """Every vasoactive medication code, agent by agent."""
        return tuple(key for codes in self.agents.values() for key in sorted(codes))


def _input_code(entry: Mapping[str, Any]) -> InputCode:
    return InputCode(
        system=entry.get("system", LOINC_SYSTEM),
        **{k: v for k, v in entry.items() if k != "system"},
    )


def _measured(key: str, table: Mapping[str, Any]) -> MeasuredInput:
    """One MeasuredInput from its `[inputs.<key>]` table."""
    return MeasuredInput(
        key=key,
        display=table["display"],
        unit=table["unit"],
        read_as=table["read_as"],
        carry_forward=timedelta(hours=table["carry_forward_hours"]),
        carry_forward_source=table["carry_forward_source"],
        codes=tuple(_input_code(entry) for entry in table["codes"]),
        valid_min=table.get("valid_min"),
        valid_max=table.get("valid_max"),
        molar_mass=table.get("molar_mass_g_per_mol"),
        evidence_of=table.get("evidence_of"),
        above=table.get("above"),
        arterial_by_method=table.get("arterial_by_method"),
        phoenix8=table.get("phoenix8", False),
    )


def _keys(entries: Iterable[Mapping[str, Any]], system: str) -> frozenset[Key]:
    return frozenset((entry.get("system", system), entry["code"]) for entry in entries)


def _support(key: str, table: Mapping[str, Any]) -> SupportKind:
    procedures = table["procedure_codes"]
    return SupportKind(
        key=key,
        display=table["display"],
        carry_forward=timedelta(hours=table["carry_forward_hours"]),
        carry_forward_source=table["carry_forward_source"],
        procedure_codes=_keys(procedures, SNOMED_SYSTEM),
        needs_invasive_device=_keys(
            (p for p in procedures if p.get("needs_invasive_device")), SNOMED_SYSTEM
        ),
        device_codes=_keys(table["device_codes"], SNOMED_SYSTEM),
    )


@functools.lru_cache(maxsize=1)
def _packaged_tables() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_phoenix_catalog(settings: PhoenixCodeSettings | None = None) -> PhoenixCatalog:
    """The packaged Phoenix inputs with a site's additions; ValueError for an unknown input."""
    site = settings or PhoenixCodeSettings()
    tables = _packaged_tables()
    inputs = {key: _measured(key, table) for key, table in tables["inputs"].items()}
    for local in site.local_codes:
        if local.input not in inputs:
            raise ValueError(f"Phoenix local code {local.code!r}: unknown input {local.input!r}")
        item = inputs[local.input]
        _check_local_unit(item, local.unit)
        coding = InputCode(
            local.system,
            local.code,
            f"{item.display} (local code {local.code})",
            unit=local.unit,
            local=True,
        )
        inputs[local.input] = replace(item, codes=(*item.codes, coding))
    support = {key: _support(key, table) for key, table in tables["support"].items()}
    for extra in site.procedure_codes:
        kind = support[extra.support]
        support[extra.support] = replace(
            kind, procedure_codes=kind.procedure_codes | {(extra.system, extra.code)}
        )
    for extra in site.device_codes:
        kind = support[extra.support]
        support[extra.support] = replace(
            kind, device_codes=kind.device_codes | {(extra.system, extra.code)}
        )
    vasoactives = tables["vasoactives"]
    agents = {
        agent: set(_keys(table["codes"], RXNORM_SYSTEM))
        for agent, table in vasoactives["agents"].items()
    }
    for extra in site.vasoactive_codes:
        agents[extra.agent].add((extra.system, extra.code))
    answers = tables["pupil_answers"]
    return PhoenixCatalog(
        inputs=inputs,
        support=support,
        agents={agent: frozenset(codes) for agent, codes in agents.items()},
        vasoactive_carry_forward=timedelta(hours=vasoactives["carry_forward_hours"]),
        vasoactive_carry_forward_source=vasoactives["carry_forward_source"],
        systemic_routes=_keys(vasoactives["systemic_routes"], SNOMED_SYSTEM)
        | {(route.system, route.code) for route in site.systemic_route_codes},
        systemic_route_texts=frozenset(vasoactives["systemic_route_texts"]),
        pupil_not_reactive=_keys(answers["not_reactive"], LOINC_SYSTEM),
        pupil_reactive=_keys(answers["reactive"], LOINC_SYSTEM),
        arterial_methods=frozenset((m.system, m.code) for m in site.arterial_method_codes),
        panel_codes=tuple(sorted(_keys(tables["panels"]["codes"], LOINC_SYSTEM))),
        ddu_to_feu_factor=site.ddu_to_feu_factor,
        vasoactives_from=site.vasoactives_from,
    )


def _check_local_unit(item: MeasuredInput, unit: str | None) -> None:
    """Refuse a local code whose unit cannot be converted to the input's unit."""
    if unit is None or item.read_as not in ("quantity", "evidence"):
        return
    try:
        convert(1.0, unit, item.unit, molar_mass=item.molar_mass)
    except UnitConversionError as error:
        raise ValueError(f"Phoenix local code unit {unit!r} for {item.key}: {error}") from None


# --- extraction -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What every resource's mapping needs: the catalog, the patient, referenced resources."""

    catalog: PhoenixCatalog
    patient_id: str | None
    referenced: Mapping[str, Mapping[str, Any]]  # "Device/1", "Medication/2" -> resource


Outcome = PhoenixReading | PhoenixExclusion


def extract_phoenix(
    resources: Iterable[Mapping[str, Any]],
    catalog: PhoenixCatalog,
    *,
    patient_id: str | None = None,
) -> PhoenixExtraction:
    """Map resource dicts to Phoenix readings and exclusions; never raises on malformed input."""
    items = [item for item in resources if isinstance(item, Mapping)]
    context = _Context(catalog, patient_id, _referenced(items))
    readings: list[PhoenixReading] = []
    exclusions: list[PhoenixExclusion] = []
    for item in items:
        for outcome in _outcomes(item, context):
            (readings if isinstance(outcome, PhoenixReading) else exclusions).append(outcome)
    return PhoenixExtraction(tuple(readings), tuple(exclusions))


def _referenced(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Devices and Medications sent alongside, by their relative reference."""
    found: dict[str, Mapping[str, Any]] = {}
    for item in items:
        kind, identifier = item.get("resourceType"), resource_id(item)
        if kind in ("Device", "Medication") and identifier:
            found[f"{kind}/{identifier}"] = item
    return found


_MAPPERS: dict[str, Any] = {}  # resourceType -> mapper, filled below


def _outcomes(item: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """The readings and exclusions of one resource; unknown types and shapes yield safely."""
    mapper = _MAPPERS.get(item.get("resourceType"))
    if mapper is None:
        return
    try:
        yield from mapper(item, context)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as error:
        kind = item.get("resourceType")
        yield PhoenixExclusion(
            input="unknown",
            reason=ExclusionReason.MALFORMED,
            detail=f"{kind} has an unexpected shape ({type(error).__name__})",
            source=_source(item),
        )


def _source(item: Mapping[str, Any]) -> str | None:
    identifier = resource_id(item)
    kind = item.get("resourceType")
    return f"{kind}/{identifier}" if identifier and isinstance(kind, str) else None


# --- Observation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """One recognised value holder of an Observation (itself or a component)."""

    holder: Mapping[str, Any]
    item: MeasuredInput
    coding: InputCode


def _observation(observation: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """Readings from an Observation and its components (a BP panel gives SBP, DBP and MAP)."""
    catalog = context.catalog
    keys = coding_keys(observation.get("code"))
    if _is_gestational_age(keys):
        return
    own = catalog.match_keys(keys)
    parts = [_Part(observation, *own)] if own is not None else []
    parts += [
        _Part(holder, *matched)
        for holder in mappings(observation.get("component"))
        if (matched := catalog.match(holder.get("code"))) is not None
    ]
    if not parts:
        return
    outcomes = [_observation_part(observation, part, context) for part in parts]
    yield from _check_pressures(outcomes)


def _is_gestational_age(keys: Iterable[Key]) -> bool:
    """Whether an Observation's (system, code) pairs say it is the gestational age at birth."""
    return not GESTATIONAL_AGE_CODES.isdisjoint(keys)


def _observation_part(
    observation: Mapping[str, Any], part: _Part, context: _Context
) -> Outcome | None:
    """A reading (None for evidence below its threshold), or the first rule that excludes it."""
    time: datetime | None = None
    item = _arterial_by_method(observation, part.item, context.catalog)
    try:
        check_subject(observation, context.patient_id)
        status = usable_observation_status(observation)
        if status not in COUNTED_STATUSES:
            raise Unusable(PhoenixExclusionReason.PRELIMINARY, f"result status is {status}")
        time = effective_time(observation)
        value, source_value, source_unit = _read_value(part.holder, item, part.coding, context)
        _check_range(item, value)
    except Unusable as unusable:
        return PhoenixExclusion(
            item.key,
            unusable.reason,
            unusable.detail,
            part.coding.system,
            part.coding.code,
            time,
            _source(observation),
        )
    if item.read_as == "evidence":
        if item.above is None or value <= item.above:
            return None
        return PhoenixReading(
            item.evidence_of or item.key,
            1.0,
            time,
            part.coding.system,
            part.coding.code,
            _source(observation),
            source_value=source_value,
            source_unit=source_unit,
        )
    return PhoenixReading(
        item.key,
        value,
        time,
        part.coding.system,
        part.coding.code,
        _source(observation),
        source_value=source_value,
        source_unit=source_unit,
    )


def _arterial_by_method(
    observation: Mapping[str, Any], item: MeasuredInput, catalog: PhoenixCatalog
) -> MeasuredInput:
    """The arterial input for a plain BP code whose Observation.method is a site arterial code."""
    if item.arterial_by_method is None or not catalog.arterial_methods:
        return item
    if any(key in catalog.arterial_methods for key in coding_keys(observation.get("method"))):
        return catalog.inputs[item.arterial_by_method]
    return item


def _read_value(
    holder: Mapping[str, Any], item: MeasuredInput, coding: InputCode, context: _Context
) -> tuple[float, float | None, str | None]:
    """(value in the input's unit, value as sent, unit as sent) by the input's reading rule."""
    if item.read_as == "pupil":
        return _pupil(holder, item, context.catalog), None, None
    if item.read_as == "score":
        return _score(holder, item)
    sent = quantity(holder, item.display)
    if comparator(sent) is not None:
        raise Unusable(
            PhoenixExclusionReason.REPORTED_AS_LIMIT,
            f"{item.display} reported as a limit ({sent['comparator']}{sent.get('value')})",
        )
    value = numeric_value(sent.get("value"), item.display)
    if coding.arbitrary_units:
        raise Unusable(
            ExclusionReason.UNIT_NOT_CONVERTIBLE,
            f"{item.display}: {coding.code} reports arbitrary units, with no fixed conversion",
        )
    unit, basis = _unit_and_basis(sent, coding, item)
    if item.read_as == "fio2":
        return _fio2(value, unit, item), value, unit
    converted = _converted(value, unit, item)
    if basis == "DDU":
        converted = _feu_from_ddu(converted, item, context.catalog)
    return converted, value, unit


def _unit_and_basis(
    sent: Mapping[str, Any], coding: InputCode, item: MeasuredInput
) -> tuple[str, str | None]:
    """The UCUM unit of a Quantity (sent, known text, else the code's) and its D-dimer basis."""
    code, text = sent.get("code"), sent.get("unit")
    written = " ".join(part for part in (code, text) if isinstance(part, str))
    bases = {match.upper() for match in _BASIS.findall(written)}
    if coding.basis is not None:
        bases.add(coding.basis)
    if len(bases) > 1:
        raise Unusable(
            ExclusionReason.UNIT_NOT_CONVERTIBLE,
            f"{item.display}: code {coding.code} and unit {written!r} disagree on FEU or DDU",
        )
    basis = next(iter(bases), None)
    if sent.get("system") == UCUM_SYSTEM and isinstance(code, str):
        return code, basis
    known = next((u for u in (_plain(text), _plain(code)) if u is not None), None)
    if known is not None:
        return known, basis
    sent_text = next((s for s in (text, code) if isinstance(s, str) and s.strip()), None)
    if coding.unit is not None and (coding.local or sent_text is None):
        return coding.unit, basis
    detail = f"unit {sent_text!r} is not recognised" if sent_text else "no unit was sent"
    raise Unusable(ExclusionReason.UNIT_NOT_CONVERTIBLE, f"{item.display}: {detail}")


def _plain(text: Any) -> str | None:
    """The UCUM unit of unit text, after removing a FEU/DDU label."""
    if not isinstance(text, str):
        return None
    stripped = _BASIS.sub("", text).strip()
    if stripped in ("%", "L/min", "mm[Hg]", "mmHg", "cm[H2O]", "cmH2O", "kPa", "U/L", "IU/L"):
        return {"mmHg": "mm[Hg]", "cmH2O": "cm[H2O]", "IU/L": "U/L"}.get(stripped, stripped)
    return normalise_unit_text(stripped)


def _converted(value: float, unit: str, item: MeasuredInput) -> float:
    try:
        return convert(value, unit, item.unit, molar_mass=item.molar_mass)
    except UnitConversionError:
        raise Unusable(
            ExclusionReason.UNIT_NOT_CONVERTIBLE,
            f"{item.display}: {unit} cannot be converted to {item.unit}",
        ) from None


def _feu_from_ddu(value: float, item: MeasuredInput, catalog: PhoenixCatalog) -> float:
    """D-dimer DDU in FEU with the site's assay factor; excluded when the site set none."""
    if catalog.ddu_to_feu_factor is None:
        raise Unusable(
            PhoenixExclusionReason.DDU_NOT_CONVERTED,
            f"{item.display}: reported in DDU; FEU is about twice DDU but the factor depends on "
            "the assay, and this site has not set it",
        )
    return value * catalog.ddu_to_feu_factor


def _fio2(value: float, unit: str, item: MeasuredInput) -> float:
    """FiO2 as a fraction: % above 1 is divided by 100; a fraction above 1 is refused."""
    if unit == "%":
        return value / 100 if value > 1 else value
    if unit in UNITLESS:
        if value > 1:
            raise Unusable(
                PhoenixExclusionReason.OUT_OF_RANGE,
                f"{item.display} {value:g} sent as a fraction is above 1",
            )
        return value
    raise Unusable(
        ExclusionReason.UNIT_NOT_CONVERTIBLE, f"{item.display}: {unit} is neither % nor a fraction"
    )


def _score(
    holder: Mapping[str, Any], item: MeasuredInput
) -> tuple[float, float | None, str | None]:
    """A unitless number from valueQuantity, valueInteger or valueString ("1T" reads as 1)."""
    if "valueInteger" in holder:
        return numeric_value(holder["valueInteger"], item.display), None, None
    if isinstance(holder.get("valueString"), str):
        match = _SCORE_TEXT.match(holder["valueString"])
        if match is None:
            raise Unusable(
                ExclusionReason.NO_NUMERIC_VALUE,
                f"{item.display} {holder['valueString']!r} is not a score",
            )
        return float(match.group(1)), None, None
    sent = quantity(holder, item.display)
    value = numeric_value(sent.get("value"), item.display)
    unit = next((u for u in (sent.get("code"), sent.get("unit")) if isinstance(u, str)), "")
    if unit.strip() not in UNITLESS and unit.strip().lower() not in UNITLESS:
        raise Unusable(
            ExclusionReason.UNIT_NOT_CONVERTIBLE, f"{item.display}: unit {unit!r} is not unitless"
        )
    return value, value, unit or None


def _pupil(holder: Mapping[str, Any], item: MeasuredInput, catalog: PhoenixCatalog) -> float:
    """1.0 for an answer meaning not reactive to light, 0.0 for reactive."""
    if "dataAbsentReason" in holder:
        quantity(holder, item.display)  # raises the data-absent exclusion
    answers = coding_keys(holder.get("valueCodeableConcept"))
    if any(key in catalog.pupil_not_reactive for key in answers):
        return 1.0
    if any(key in catalog.pupil_reactive for key in answers):
        return 0.0
    raise Unusable(
        PhoenixExclusionReason.UNRECOGNISED_ANSWER, f"{item.display}: answer not recognised"
    )


def _check_range(item: MeasuredInput, value: float) -> None:
    """Values outside the implementation notes' expected range are excluded."""
    low, high = item.valid_min, item.valid_max
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise Unusable(
            PhoenixExclusionReason.OUT_OF_RANGE,
            f"{item.display} {value:g} {item.unit} is outside the expected {span}",
        )


_PRESSURES = {
    "arterial": ("sbp_arterial", "dbp_arterial", "map_arterial"),
    "cuff": ("sbp_cuff", "dbp_cuff", "map_cuff"),
}


def _check_pressures(outcomes: list[Outcome | None]) -> Iterator[Outcome]:
    """Within one panel: SBP - DBP >= 1, and DBP <= MAP <= SBP; failing values are excluded."""
    readings = {o.input: o for o in outcomes if isinstance(o, PhoenixReading)}
    refused: dict[str, str] = {}
    for sbp_key, dbp_key, map_key in _PRESSURES.values():
        sbp, dbp, mean = readings.get(sbp_key), readings.get(dbp_key), readings.get(map_key)
        if sbp is not None and dbp is not None and sbp.value - dbp.value < 1:
            refused[sbp_key] = refused[dbp_key] = "systolic is not above diastolic"
        elif sbp and dbp and mean and not dbp.value <= mean.value <= sbp.value:
            refused[map_key] = "mean pressure is outside diastolic..systolic"
    for outcome in outcomes:
        if outcome is None:
            continue
        if isinstance(outcome, PhoenixReading) and outcome.input in refused:
            yield PhoenixExclusion(
                outcome.input,
                PhoenixExclusionReason.IMPLAUSIBLE_PRESSURES,
                f"blood pressure panel: {refused[outcome.input]}",
                outcome.system,
                outcome.code,
                outcome.time,
                outcome.source,
            )
        else:
            yield outcome


# --- respiratory support: Procedure and DeviceUseStatement ------------------------------------

PROCEDURE_COUNTED = frozenset({"in-progress", "completed", "stopped"})
DEVICE_USE_COUNTED = frozenset({"active", "completed", "stopped"})


def _procedure(procedure: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """IMV or other support from Procedure.code (a generic ventilation code needs a tube)."""
    codes = coding_keys(procedure.get("code"))
    support = _support_of(codes, context.catalog, "procedure_codes")
    if support is None:
        return
    kind, matched = support
    if matched in kind.needs_invasive_device and not _has_invasive_device(procedure, context):
        kind = context.catalog.support["other_respiratory_support"]
    yield _interval_reading(
        procedure, kind.key, matched, PROCEDURE_COUNTED, "performed", "in-progress", context
    )


def _support_of(
    codes: Iterable[Key], catalog: PhoenixCatalog, attribute: str
) -> tuple[SupportKind, Key] | None:
    """The support kind (IMV first) of the first matching code."""
    for kind_key in SUPPORT_KEYS:
        kind = catalog.support[kind_key]
        for key in codes:
            if key in getattr(kind, attribute):
                return kind, key
    return None


def _has_invasive_device(procedure: Mapping[str, Any], context: _Context) -> bool:
    """An endotracheal or tracheostomy tube in usedCode or in a referenced focal Device."""
    invasive = context.catalog.support["imv"].device_codes
    used = [key for concept in mappings(procedure.get("usedCode")) for key in coding_keys(concept)]
    for focal in mappings(procedure.get("focalDevice")):
        device = _resolve(procedure, focal.get("manipulated"), context)
        used.extend(coding_keys(device.get("type")) if device else [])
    return any(key in invasive for key in used)


def _device_use(statement: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """IMV or other support from the type of the Device a DeviceUseStatement names."""
    device = _resolve(statement, statement.get("device"), context)
    if device is None:
        return
    support = _support_of(coding_keys(device.get("type")), context.catalog, "device_codes")
    if support is None:
        return
    kind, matched = support
    yield _interval_reading(
        statement, kind.key, matched, DEVICE_USE_COUNTED, "timing", "active", context
    )


def _resolve(
    owner: Mapping[str, Any], reference: Any, context: _Context
) -> Mapping[str, Any] | None:
    """A referenced resource: contained (`#id`) or sent alongside (`Device/id`)."""
    if not isinstance(reference, Mapping) or not isinstance(reference.get("reference"), str):
        return None
    literal = reference["reference"]
    if literal.startswith("#"):
        return next(
            (c for c in mappings(owner.get("contained")) if c.get("id") == literal[1:]), None
        )
    parts = literal.split("/_history/")[0].rstrip("/").split("/")
    return context.referenced.get("/".join(parts[-2:])) if len(parts) >= 2 else None


def _interval_reading(
    resource: Mapping[str, Any],
    key: str,
    matched: Key,
    counted: frozenset[str],
    prefix: str,
    running_status: str,
    context: _Context,
    *,
    agent: str | None = None,
) -> Outcome:
    """A reading over `{prefix}Period` (open while `running_status`) or at `{prefix}DateTime`."""
    time: datetime | None = None
    try:
        check_subject(resource, context.patient_id)
        status = resource.get("status")
        if status not in counted:
            raise Unusable(ExclusionReason.UNSUPPORTED_STATUS, f"status is {status}")
        time, end, ongoing = _interval(resource, prefix, status == running_status)
    except Unusable as unusable:
        return PhoenixExclusion(
            key, unusable.reason, unusable.detail, *matched, time, _source(resource)
        )
    return PhoenixReading(
        key, 1.0, time, *matched, _source(resource), end=end, ongoing=ongoing, agent=agent
    )


def _interval(
    resource: Mapping[str, Any], prefix: str, running: bool
) -> tuple[datetime, datetime | None, bool]:
    """(start, end, ongoing) from a Period, or (time, None, False) from a dateTime."""
    period = resource.get(f"{prefix}Period")
    if isinstance(period, Mapping) and period.get("start"):
        start = utc(period["start"])
        end = utc(period["end"]) if period.get("end") else None
        if end is not None and end < start:
            raise Unusable(ExclusionReason.MALFORMED, "period ends before it starts")
        return start, end, end is None and running
    text = resource.get(f"{prefix}DateTime")
    if text is None:
        raise Unusable(ExclusionReason.NO_EFFECTIVE_TIME, "no start time")
    return utc(text), None, False


# --- vasoactives: MedicationAdministration and MedicationRequest ------------------------------

ADMINISTRATION_COUNTED = frozenset({"in-progress", "completed", "stopped"})
REQUEST_COUNTED = frozenset({"active", "completed", "stopped"})
ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
)


def _agent(resource: Mapping[str, Any], context: _Context) -> tuple[str, Key] | None:
    """The vasoactive agent of a medication concept or a referenced Medication (and ingredients)."""
    codes = coding_keys(resource.get("medicationCodeableConcept"))
    medication = _resolve(resource, resource.get("medicationReference"), context)
    if medication is not None:
        codes += coding_keys(medication.get("code"))
        for ingredient in mappings(medication.get("ingredient")):
            codes += coding_keys(ingredient.get("itemCodeableConcept"))
    for agent, agent_codes in context.catalog.agents.items():
        for key in codes:
            if key in agent_codes:
                return agent, key
    return None


def _administration(item: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """A vasoactive infusion over effectivePeriod, or at effectiveDateTime with a charted rate."""
    if context.catalog.vasoactives_from != "administrations":
        return
    found = _agent(item, context)
    if found is None:
        return
    agent, matched = found
    dosage = item.get("dosage") if isinstance(item.get("dosage"), Mapping) else {}
    has_rate = any(key in dosage for key in ("rateQuantity", "rateRatio"))
    is_period = isinstance(item.get("effectivePeriod"), Mapping)
    yield _infusion(
        item,
        agent,
        matched,
        dosage.get("route"),
        has_rate or is_period,
        ADMINISTRATION_COUNTED,
        "effective",
        "in-progress",
        context,
    )


def _request(item: Mapping[str, Any], context: _Context) -> Iterator[Outcome]:
    """A vasoactive infusion order (sites without administrations): bounds, else authoredOn."""
    if context.catalog.vasoactives_from != "requests":
        return
    found = _agent(item, context)
    if found is None:
        return
    agent, matched = found
    if item.get("intent") not in ORDER_INTENTS:
        yield PhoenixExclusion(
            VASOACTIVE_KEY,
            PhoenixExclusionReason.NOT_AN_ORDER,
            f"{agent} request intent is {item.get('intent')}",
            *matched,
            None,
            _source(item),
        )
        return
    instruction = next(iter(mappings(item.get("dosageInstruction"))), {})
    rates = [
        key
        for dose in mappings(instruction.get("doseAndRate"))
        for key in ("rateQuantity", "rateRatio", "rateRange")
        if key in dose
    ]
    timed = dict(item)
    repeat = (instruction.get("timing") or {}).get("repeat") or {}
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, Mapping) else None
    if isinstance(bounds, Mapping) and bounds.get("start"):
        timed["requestPeriod"] = bounds
    elif item.get("authoredOn"):
        timed["requestDateTime"] = item["authoredOn"]
    yield _infusion(
        timed,
        agent,
        matched,
        instruction.get("route"),
        bool(rates),
        REQUEST_COUNTED,
        "request",
        "active",
        context,
    )


def _infusion(
    item: Mapping[str, Any],
    agent: str,
    matched: Key,
    route: Any,
    continuous: bool,
    counted: frozenset[str],
    prefix: str,
    running_status: str,
    context: _Context,
) -> Outcome:
    """The infusion reading, unless its route is not systemic or it is not continuous."""
    problem = _route_problem(route, context.catalog)
    if problem is None and not continuous:
        problem = (
            PhoenixExclusionReason.NOT_CONTINUOUS,
            f"{agent}: no period and no infusion rate (a single dose is not counted)",
        )
    if problem is not None:
        return PhoenixExclusion(
            VASOACTIVE_KEY, problem[0], problem[1], *matched, None, _source(item)
        )
    return _interval_reading(
        item, VASOACTIVE_KEY, matched, counted, prefix, running_status, context, agent=agent
    )


def _route_problem(
    route: Any, catalog: PhoenixCatalog
) -> tuple[PhoenixExclusionReason, str] | None:
    """None when the route is absent or systemic; otherwise why the administration is refused."""
    if not isinstance(route, Mapping):
        return None
    codes = coding_keys(route)
    if any(key in catalog.systemic_routes for key in codes):
        return None
    text = route.get("text")
    if not codes and isinstance(text, str) and text.strip().lower() in catalog.systemic_route_texts:
        return None
    shown = text if isinstance(text, str) else ", ".join(code for _, code in codes) or "coded"
    return PhoenixExclusionReason.NOT_SYSTEMIC, f"route {shown} is not a systemic infusion route"


_MAPPERS.update(
    {
        "Observation": _observation,
        "Procedure": _procedure,
        "DeviceUseStatement": _device_use,
        "MedicationAdministration": _administration,
        "MedicationRequest": _request,
    }
)


# --- the patient ------------------------------------------------------------------------------


def phoenix_patient(
    patient: Mapping[str, Any] | None,
    encounter: EncounterFacts | None = None,
    observations: Iterable[Mapping[str, Any]] = (),
) -> PhoenixPatient:
    """Birth date, encounter start, gestational age at birth and birth hospitalisation."""
    birth_date = full_birth_date(patient)
    return PhoenixPatient(
        birth_date=birth_date,
        encounter_start=encounter.start if encounter is not None else None,
        gestational_age_weeks=_gestational_age_weeks(observations),
        birth_hospitalisation=_is_birth_hospitalisation(encounter, birth_date),
    )


def _is_birth_hospitalisation(encounter: EncounterFacts | None, birth_date: date | None) -> bool:
    """Admitted as "born in hospital", or an encounter that began on or before the birth date."""
    if encounter is None:
        return False
    if (ADMIT_SOURCE_SYSTEM, "born") in encounter.admit_source:
        return True
    start = encounter.start
    return birth_date is not None and start is not None and start.date() <= birth_date


def _gestational_age_weeks(observations: Iterable[Mapping[str, Any]]) -> float | None:
    """The latest gestational age at birth in weeks (UCUM wk or d), from a final Observation."""
    found: list[tuple[str, float]] = []
    for observation in observations:
        if not isinstance(observation, Mapping):
            continue
        if not _is_gestational_age(coding_keys(observation.get("code"))):
            continue
        if observation.get("status") not in COUNTED_STATUSES:
            continue
        sent = observation.get("valueQuantity")
        if not isinstance(sent, Mapping) or not isinstance(sent.get("value"), int | float):
            continue
        unit = sent.get("code") or sent.get("unit")
        try:
            weeks = convert(float(sent["value"]), unit, "wk") if unit else None
        except (UnitConversionError, TypeError):
            weeks = None
        if weeks is not None and 20 <= weeks <= 45:
            found.append((str(observation.get("effectiveDateTime", "")), weeks))
    return max(found)[1] if found else None
