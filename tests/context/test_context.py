"""The PICU gate, the time anchor and pending orders, from EHR-shaped resources."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from fhir_mappings.encounters import (
    condition_facts,
    encounter_facts,
    location_facts,
    order_facts,
)
from fhir_mappings.panel import load_panel
from model.context import (
    PEDICU,
    AnchorSource,
    CareContext,
    ContextSettings,
    GateOutcome,
    assess_context,
)

from .builders import (
    NOW,
    PATIENT,
    SERVICE_TYPE,
    SITE_LOCATIONS,
    SNOMED,
    V3_ROLE_CODE,
    ago,
    condition,
    encounter,
    location,
    picu_bed,
    service_request,
    stay,
)

WINDOW = timedelta(hours=48)
SEPSIS = f"{SNOMED}|91302008"
WITH_SEPSIS = ContextSettings(onset_condition_codes=[SEPSIS])
GATE_OFF = ContextSettings(picu_gate=False)
PANEL = load_panel()
WARD = location("ward-5", "General paediatrics, 5 West", role="PEDU")


def decide(
    resources: Sequence[dict[str, Any]],
    *,
    conditions: Sequence[dict[str, Any]] = (),
    orders: Sequence[dict[str, Any]] = (),
    encounter_id: str | None = None,
    settings: ContextSettings | None = None,
    phoenix: datetime | None = None,
    infection: bool = False,
) -> CareContext:
    """Map the resources as the hook will (one encounters Bundle), then assess the context."""
    return assess_context(
        encounters=encounter_facts(resources, patient_id=PATIENT).facts,
        locations=location_facts(resources).facts,
        conditions=condition_facts(conditions, patient_id=PATIENT).facts,
        orders=order_facts(orders, PANEL, patient_id=PATIENT).facts,
        context_encounter_id=encounter_id,
        now=NOW,
        settings=settings or ContextSettings(),
        window=WINDOW,
        phoenix_onset=phoenix,
        phoenix_infection=infection,
    )


def in_bed(*stays: dict[str, Any], start: float = 30.0, **kwargs: Any) -> list[dict[str, Any]]:
    """One in-progress encounter with the given location entries, and the PICU bed hierarchy."""
    return [encounter("enc-1", start=start, stays=stays, **kwargs), *picu_bed(), WARD]


# --- the gate --------------------------------------------------------------------------------


def test_a_bed_in_a_room_on_a_pedicu_ward_is_in_the_picu() -> None:
    resources = in_bed(
        stay("ed-bay-3", status="completed", start=30, end=26),
        stay("picu-r4-b2", start=26),
    )

    context = decide(resources)

    assert context.gate is GateOutcome.IN_PICU and context.fires and context.in_picu
    assert context.encounter == "Encounter/enc-1"
    assert context.picu_since == ago(26)
    assert context.anchor is not None
    assert (context.anchor.time, context.anchor.source) == (ago(26), AnchorSource.PICU_ADMISSION)
    assert "Location/picu-r4-b2 in PICU Location/picu" in context.anchor.detail


def test_an_absolute_reference_to_the_bed_resolves_too() -> None:
    reference = "https://ehr.example.org/fhir/R4/Location/picu-r4-b2"
    context = decide(in_bed(stay("x", start=10, reference=reference)))
    assert context.gate is GateOutcome.IN_PICU and context.picu_since == ago(10)


def test_an_epic_like_display_only_location_is_not_taken_for_the_picu() -> None:
    resources = in_bed(
        {"location": {"display": "CHOP PICU 6 NORTH"}, "status": "active"},
        {"location": {"identifier": {"system": SITE_LOCATIONS, "value": "6N"}, "display": "PICU"}},
    )

    context = decide(resources)

    assert context.gate is GateOutcome.NOT_IN_PICU and not context.fires
    assert context.anchor is None and context.in_picu is False


def test_a_bed_on_a_general_ward_is_not_in_the_picu() -> None:
    bed = location("ward-5-b1", "5W bed 1", physical="bd", part_of="ward-5")
    context = decide([*in_bed(stay("ward-5-b1", start=5)), bed])
    assert context.gate is GateOutcome.NOT_IN_PICU
    assert "Encounter/enc-1" in context.detail


def test_the_neonatal_icu_is_not_the_picu() -> None:
    resources = [
        encounter("enc-1", stays=[stay("nicu-r4-b2", start=26)]),
        *picu_bed("n", ward_role="PEDNICU"),
    ]
    assert decide(resources).gate is GateOutcome.NOT_IN_PICU


def test_a_service_type_marks_the_picu_and_its_start_is_the_admission() -> None:
    settings = ContextSettings(picu_service_types=[f"{SERVICE_TYPE}|PICU-SVC"])
    resources = in_bed(stay("ward-5", start=30), start=30, service_type=(SERVICE_TYPE, "PICU-SVC"))

    context = decide(resources, settings=settings)

    assert context.gate is GateOutcome.IN_PICU and context.picu_since == ago(30)
    assert context.anchor is not None
    assert context.anchor.source is AnchorSource.PICU_ADMISSION and context.anchor.time == ago(30)


def test_a_service_type_not_configured_does_not_open_the_gate() -> None:
    resources = in_bed(stay("ward-5", start=30), service_type=(SERVICE_TYPE, "PICU-SVC"))
    assert decide(resources).gate is GateOutcome.NOT_IN_PICU


@pytest.mark.parametrize(
    "settings",
    [
        ContextSettings(picu_location_types=[], picu_location_ids=["Location/picu"]),
        ContextSettings(picu_location_types=[], picu_location_identifiers=[f"{SITE_LOCATIONS}|6N"]),
        ContextSettings(picu_location_types=[f"{V3_ROLE_CODE}|PEDU", f"{V3_ROLE_CODE}|PEDICU"]),
    ],
    ids=["id", "identifier", "type-list"],
)
def test_a_site_may_name_its_picu_by_id_identifier_or_type(settings: ContextSettings) -> None:
    assert decide(in_bed(stay("picu-r4-b2", start=5)), settings=settings).in_picu


def test_a_configured_location_id_matches_without_the_location_resource() -> None:
    settings = ContextSettings(picu_location_ids=["picu"])
    resources = [encounter("enc-1", stays=[stay("picu", start=5)])]
    assert decide(resources, settings=settings).gate is GateOutcome.IN_PICU


def test_a_cycle_in_part_of_ends_without_a_match() -> None:
    loop = [
        location("a", "A", physical="bd", part_of="b"),
        location("b", "B", physical="ro", part_of="a"),
    ]
    resources = [encounter("enc-1", stays=[stay("a", start=5)]), *loop]
    assert decide(resources).gate is GateOutcome.NOT_IN_PICU


def test_a_finished_encounter_gives_no_card() -> None:
    resources = [
        encounter("enc-1", status="finished", start=200, end=100, stays=[stay("picu", start=200)]),
        *picu_bed(),
    ]

    by_context = decide(resources, encounter_id="enc-1")
    by_patient = decide(resources)

    assert by_context.gate is by_patient.gate is GateOutcome.NO_ACTIVE_ENCOUNTER
    assert by_context.encounter is None and not by_context.fires
    assert "Encounter/enc-1" in by_context.detail


def test_no_encounter_at_all_gives_no_card() -> None:
    context = decide(picu_bed())
    assert context.gate is GateOutcome.NO_ACTIVE_ENCOUNTER and context.anchor is None


def test_a_planned_picu_transfer_is_not_a_picu_stay() -> None:
    resources = in_bed(stay("ward-5", start=30), stay("picu-r4-b2", status="planned", start=-2))
    assert decide(resources).gate is GateOutcome.NOT_IN_PICU


@pytest.mark.parametrize(
    "picu_entry",
    [
        stay("picu-r4-b2", status="completed", start=30, end=10),
        stay("picu-r4-b2", status="active", start=30, end=10),  # status never updated
        stay("picu-r4-b2", status=None, start=30, end=10),
        stay("picu-r4-b2", status="completed", start=30),
        stay("picu-r4-b2", status="reserved", start=30),
    ],
    ids=["completed", "active-past-end", "no-status-past-end", "completed-no-end", "reserved"],
)
def test_a_picu_entry_that_is_over_or_not_taken_up_is_not_active(picu_entry: dict) -> None:
    resources = in_bed(picu_entry, stay("ward-5", start=10))
    assert decide(resources).gate is GateOutcome.NOT_IN_PICU


@pytest.mark.parametrize(
    "picu_entry",
    [
        stay("picu-r4-b2", status=None, start=10),
        stay("picu-r4-b2", status=None, start=10, end=-4),  # expected discharge in 4 h
        stay("picu-r4-b2", status="active"),  # no period at all
    ],
    ids=["no-status", "future-end", "no-period"],
)
def test_a_current_picu_entry_is_active(picu_entry: dict) -> None:
    assert decide(in_bed(picu_entry)).gate is GateOutcome.IN_PICU


def test_of_two_in_progress_encounters_the_one_in_the_picu_is_judged() -> None:
    clinic = encounter(
        "enc-clinic", start=2, stays=[stay("ward-5", start=2)], encounter_class="AMB"
    )
    picu = encounter("enc-picu", start=40, stays=[stay("picu-r4-b2", start=40)])

    for order in ([clinic, picu], [picu, clinic]):
        context = decide([*order, *picu_bed(), WARD])
        assert context.encounter == "Encounter/enc-picu" and context.gate is GateOutcome.IN_PICU


def test_the_context_encounter_is_judged_even_when_another_is_in_the_picu() -> None:
    clinic = encounter("enc-clinic", start=2, stays=[stay("ward-5", start=2)])
    picu = encounter("enc-picu", start=40, stays=[stay("picu-r4-b2", start=40)])

    context = decide([clinic, picu, *picu_bed(), WARD], encounter_id="enc-clinic")

    assert context.encounter == "Encounter/enc-clinic"
    assert context.gate is GateOutcome.NOT_IN_PICU


def test_of_two_encounters_outside_the_picu_the_latest_started_is_judged() -> None:
    older = encounter("enc-a", start=50, stays=[stay("ward-5", start=50)])
    newer = encounter("enc-b", start=5, stays=[stay("ward-5", start=5)])
    assert decide([older, newer, WARD]).encounter == "Encounter/enc-b"


def test_the_gate_off_fires_with_the_best_anchor_available() -> None:
    ward_stay = in_bed(stay("ward-5", start=30), start=30)
    sepsis = [condition("sep-1", onset=12)]
    settings = ContextSettings(picu_gate=False, onset_condition_codes=[SEPSIS])

    on_ward = decide(ward_stay, settings=GATE_OFF)
    with_condition = decide(ward_stay, conditions=sepsis, settings=settings)
    nothing = decide([], settings=GATE_OFF)

    assert on_ward.gate is GateOutcome.GATE_OFF and on_ward.fires and not on_ward.in_picu
    assert on_ward.anchor is not None and on_ward.anchor.source is AnchorSource.ENCOUNTER_START
    assert on_ward.picu_since is None
    assert with_condition.anchor is not None
    assert with_condition.anchor.source is AnchorSource.CONDITION
    assert nothing.fires and nothing.encounter is None and nothing.anchor is not None
    assert nothing.anchor.source is AnchorSource.ASSESSMENT_TIME
    assert nothing.anchor.time == NOW - WINDOW
    assert "no onset or admission time" in nothing.anchor.detail


def test_the_gate_off_still_says_when_the_child_is_in_the_picu() -> None:
    context = decide(in_bed(stay("picu-r4-b2", start=20)), settings=GATE_OFF)
    assert context.gate is GateOutcome.GATE_OFF and context.in_picu
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


# --- the anchor ------------------------------------------------------------------------------


def picu_child() -> list[dict[str, Any]]:
    """An encounter started 30 h ago, in the PICU bed for 26 h."""
    return in_bed(
        stay("ed-bay-3", status="completed", start=30, end=26), stay("picu-r4-b2", start=26)
    )


def test_anchor_precedence_condition_then_phoenix_then_admission_then_encounter_start() -> None:
    sepsis = [condition("sep-1", onset=12)]
    phoenix = ago(18)
    no_start_entry = in_bed(stay("picu-r4-b2"), start=30)

    by_condition = decide(picu_child(), conditions=sepsis, phoenix=phoenix, settings=WITH_SEPSIS)
    by_phoenix = decide(picu_child(), phoenix=phoenix, settings=WITH_SEPSIS)
    by_admission = decide(picu_child(), settings=WITH_SEPSIS)
    by_encounter = decide(no_start_entry, settings=WITH_SEPSIS)

    anchors = [c.anchor for c in (by_condition, by_phoenix, by_admission, by_encounter)]
    assert all(anchor is not None for anchor in anchors)
    assert [(a.source, a.time) for a in anchors if a is not None] == [
        (AnchorSource.CONDITION, ago(12)),
        (AnchorSource.PHOENIX, ago(18)),
        (AnchorSource.PICU_ADMISSION, ago(26)),
        (AnchorSource.ENCOUNTER_START, ago(30)),
    ]
    assert by_encounter.in_picu and by_encounter.picu_since is None


def test_a_phoenix_anchor_says_organ_dysfunction_and_sepsis_only_with_the_infection_signal() -> (
    None
):
    plain = decide(picu_child(), phoenix=ago(18))
    septic = decide(picu_child(), phoenix=ago(18), infection=True)

    assert plain.anchor is not None and septic.anchor is not None
    assert plain.anchor.detail == "organ dysfunction (Phoenix score ≥ 2)"
    assert "sepsis" not in plain.anchor.detail
    assert septic.anchor.detail == "sepsis (Phoenix score ≥ 2 with suspected infection)"


@pytest.mark.parametrize("hours_ago", [-1.0, 30 + 7 * 24 + 1.0])
def test_a_phoenix_onset_in_the_future_or_before_the_look_back_is_no_anchor(
    hours_ago: float,
) -> None:
    context = decide(picu_child(), phoenix=ago(hours_ago))
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_the_most_recent_onset_of_a_configured_condition_wins() -> None:
    conditions = [
        condition("sep-old", onset=60),
        condition("shock", "76571007", onset=6),
        condition("sep-new", onset=12),
    ]

    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)

    assert context.anchor is not None and context.anchor.time == ago(12)
    assert context.anchor.detail == f"onset of Condition/sep-new ({SEPSIS})"


@pytest.mark.parametrize("verification", ["entered-in-error", "refuted"])
def test_an_entered_in_error_or_refuted_condition_is_no_onset(verification: str) -> None:
    conditions = [condition("sep-1", onset=12, verification=verification)]
    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


@pytest.mark.parametrize("verification", ["provisional", "unconfirmed", "differential", None])
def test_a_provisional_or_unverified_condition_is_an_onset(verification: str | None) -> None:
    conditions = [condition("sep-1", onset=12, verification=verification)]
    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)
    assert context.anchor is not None and context.anchor.source is AnchorSource.CONDITION


@pytest.mark.parametrize(
    "onset_hours_ago",
    [-1, 30 + 7 * 24 + 1],  # after now; before the encounter start minus the 7-day look-back
    ids=["future", "before-look-back"],
)
def test_an_onset_outside_the_range_is_ignored(onset_hours_ago: float) -> None:
    conditions = [condition("sep-1", onset=onset_hours_ago)]
    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_an_onset_inside_the_look_back_before_admission_counts() -> None:
    conditions = [condition("sep-1", onset=30 + 6 * 24)]  # six days before the encounter
    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)
    assert context.anchor is not None and context.anchor.time == ago(30 + 6 * 24)


def test_the_look_back_setting_moves_the_range() -> None:
    conditions = [condition("sep-1", onset=30 + 2 * 24)]
    settings = ContextSettings(onset_condition_codes=[SEPSIS], look_back_days=1)
    context = decide(picu_child(), conditions=conditions, settings=settings)
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_without_an_onset_the_recorded_date_or_the_period_start_is_used() -> None:
    recorded = decide(
        picu_child(), conditions=[condition("s", onset=None, recorded=8)], settings=WITH_SEPSIS
    )
    period = decide(
        picu_child(), conditions=[condition("s", onset=9, onset_period=True)], settings=WITH_SEPSIS
    )

    assert recorded.anchor is not None and recorded.anchor.time == ago(8)
    assert recorded.anchor.detail.startswith("recorded date of Condition/s")
    assert period.anchor is not None and period.anchor.time == ago(9)


def test_a_condition_whose_code_is_not_configured_is_no_onset() -> None:
    conditions = [condition("pneumonia", "233604007", onset=12)]
    context = decide(picu_child(), conditions=conditions, settings=WITH_SEPSIS)
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_a_phoenix_onset_in_the_future_is_ignored() -> None:
    context = decide(picu_child(), phoenix=NOW + timedelta(hours=1))
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_the_picu_stay_starts_at_the_earliest_picu_entry_of_the_encounter() -> None:
    resources = in_bed(
        stay("picu", status="completed", start=26, end=25),  # ward first, then the bed
        stay("picu-r4-b2", start=25),
        stay("picu-r4-b2", status="planned", start=40),  # never counts
    )
    assert decide(resources).picu_since == ago(26)


def test_a_future_encounter_start_is_not_an_anchor() -> None:
    resources = [encounter("enc-1", start=-3), WARD]
    context = decide(resources, settings=GATE_OFF)
    assert context.anchor is not None and context.anchor.source is AnchorSource.ASSESSMENT_TIME


def test_times_must_be_timezone_aware_and_the_window_positive() -> None:
    common: dict[str, Any] = {
        "encounters": (),
        "locations": (),
        "conditions": (),
        "orders": (),
        "context_encounter_id": None,
        "settings": ContextSettings(),
    }
    with pytest.raises(ValueError, match="now"):
        assess_context(**common, now=datetime(2026, 11, 25, 12), window=WINDOW)
    with pytest.raises(ValueError, match="window"):
        assess_context(**common, now=NOW, window=timedelta(0))
    with pytest.raises(ValueError, match="phoenix_onset"):
        assess_context(
            **common,
            now=NOW,
            window=WINDOW,
            phoenix_onset=datetime(2026, 11, 25, 1),
        )


def test_now_in_another_offset_is_the_same_moment() -> None:
    shifted = NOW.astimezone(timezone(timedelta(hours=-5)))
    context = assess_context(
        encounters=(),
        locations=(),
        conditions=(),
        orders=(),
        context_encounter_id=None,
        now=shifted,
        settings=GATE_OFF,
        window=WINDOW,
    )
    assert context.anchor is not None and context.anchor.time == NOW - WINDOW
    assert context.anchor.time.tzinfo is UTC


# --- pending orders --------------------------------------------------------------------------


def test_pending_orders_are_active_orders_for_panel_analytes() -> None:
    orders = [
        service_request("sr-cxcl9", "98115-9"),
        service_request("sr-ifng", "27415-9", intent="original-order"),
        service_request("sr-il6", "26881-3", intent="instance-order"),
        service_request("sr-fer-done", "2276-4", status="completed"),
        service_request("sr-crp-plan", "1988-5", intent="plan"),
        service_request("sr-crp-proposal", "1988-5", intent="proposal"),
        service_request("sr-plt-hold", "777-3", status="on-hold"),
        service_request("sr-il10-dnp", "26848-2", doNotPerform=True),
        service_request("sr-cbc", "58410-2"),  # not a panel code
        service_request("sr-old", "76039-7", authored=30 + 8 * 24),  # before the look-back
    ]

    context = decide(picu_child(), orders=orders)

    assert [(o.analyte, o.id) for o in context.pending] == [
        ("cxcl9", "sr-cxcl9"),
        ("ifng", "sr-ifng"),
        ("il6", "sr-il6"),
    ]


def test_an_active_order_without_an_authored_time_is_pending() -> None:
    context = decide(picu_child(), orders=[service_request("sr-1", authored=None)])
    assert [o.id for o in context.pending] == ["sr-1"]


# --- settings --------------------------------------------------------------------------------


def test_the_default_settings_are_exactly_pedicu_with_a_seven_day_look_back() -> None:
    settings = ContextSettings()
    assert settings.picu_gate and settings.picu_location_types == (PEDICU,)
    assert settings.look_back == timedelta(days=7)
    assert settings.model_dump()["picu_location_types"] == (f"{V3_ROLE_CODE}|PEDICU",)


def test_system_code_strings_are_parsed_once_and_round_trip() -> None:
    settings = ContextSettings(
        onset_condition_codes=[f" {SEPSIS} "], picu_location_identifiers=[f"{SITE_LOCATIONS}|6N"]
    )
    assert settings.onset_condition_codes == ((SNOMED, "91302008"),)
    assert ContextSettings.model_validate(settings.model_dump()) == settings


@pytest.mark.parametrize(
    "codes", [["91302008"], ["a|b|c"], ["|91302008"], [f"{SNOMED}|"], ["sys tem|x"], [7]]
)
def test_malformed_system_code_strings_are_refused(codes: list[Any]) -> None:
    with pytest.raises(ValidationError, match="system\\|code"):
        ContextSettings(onset_condition_codes=codes)


@pytest.mark.parametrize(
    "overrides",
    [
        {"picu_location_ids": ["bad id!"]},
        {"look_back_days": 0},
        {"unknown_key": 1},
        {"picu_location_types": []},  # the gate on with nothing to recognise the PICU by
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ContextSettings(**overrides)


def test_the_gate_off_needs_no_picu_criteria() -> None:
    assert ContextSettings(picu_gate=False, picu_location_types=[]).picu_location_types == ()


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        ContextSettings().picu_gate = False  # type: ignore[misc]


def test_settings_read_from_the_environment_as_a_nested_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import Field
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Holder(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="PICU_ENDOTYPE_", env_nested_delimiter="__")
        context: ContextSettings = Field(default_factory=ContextSettings)

    monkeypatch.setenv("PICU_ENDOTYPE_CONTEXT__ONSET_CONDITION_CODES", f'["{SEPSIS}"]')
    monkeypatch.setenv("PICU_ENDOTYPE_CONTEXT__LOOK_BACK_DAYS", "3")

    context = Holder().context

    assert context.onset_condition_codes == ((SNOMED, "91302008"),)
    assert context.look_back_days == 3 and context.picu_location_types == (PEDICU,)
