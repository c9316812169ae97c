"""`POST /cds-services/{id}`: authenticate, parse, gather, score, answer with one card.

The flow reads as the architecture describes it: check the caller and the request, obtain the
patient's data (prefetch first, the FHIR server for the rest), map it to a timeline, let the
configured scorer assess it, and return the card. Only `gather` does I/O.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError as DatabaseError

from cds_service import auth, metrics, silent_mode, turns
from cds_service.audit import HookCall, HookResult, data_source
from cds_service.auth import CdsClient, FhirServerNotAllowed
from cds_service.cards import ChartContext, build_card
from cds_service.discovery import ServiceDefinition, find_service
from cds_service.errors import (
    CdsError,
    FhirServerRefused,
    InternalError,
    InvalidHookRequest,
    InvalidPrefetch,
    MalformedJson,
    PreconditionFailed,
    UnsupportedMediaType,
    WrongHook,
    validation_diagnostics,
)
from cds_service.logs import AUDIT_LOGGER, audit
from cds_service.models import HookRequest, HookResponse, PatientViewContext
from cds_service.phoenix_step import KEY_CONTENTS as PHOENIX_KEY_CONTENTS
from cds_service.phoenix_step import PhoenixStep
from cds_service.settings import Settings
from cds_service.state import app_state
from fhir_mappings.encounters import condition_facts, encounter_facts, location_facts, order_facts
from fhir_mappings.gather import (
    INCOMPLETE,
    DataUnavailable,
    FhirAccess,
    PatientData,
    add_search,
    gather_patient_data,
)
from fhir_mappings.limits import JsonTooDeep, loads_bounded
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel
from fhir_mappings.patient import age_in_years
from fhir_mappings.prefetch import PANEL_KEY, MalformedPrefetch
from model.assessment import Anchor, Assessment, Scorer, TimeFrame, Timeline
from model.context import CareContext, assess_context
from model.phoenix_context import PhoenixContext
from model.timeline import build_timeline

logger = logging.getLogger(__name__)
audit_log = logging.getLogger(AUDIT_LOGGER)

AGE_GATED = "age-gated"
INCOMPLETE_NOTE = (
    "Data may be incomplete: the EHR holds more {what} than were read (paging limit, a page on "
    "another server, or a page larger than this service accepts); older results may be missing."
)
# what each data key holds, in the incomplete-data note
KEY_CONTENTS = {
    "panel": "marker results",
    "encounters": "encounters",
    "orders": "orders",
    **PHOENIX_KEY_CONTENTS,
}
AGE_UNKNOWN = (
    "Patient age unknown (no usable birth date); this service is for patients under "
    "{limit:g} years: confirm the age."
)
_READ_CHUNK = 64 * 1024

bp = Blueprint("hooks", __name__)


@dataclass(frozen=True)
class HookOutcome:
    """The response to one hook, with what the audit trail needs to know about it."""

    response: HookResponse
    pathway: str  # the pathway, AGE_GATED, or the PICU gate's reason for no card
    data: PatientData
    card: Mapping[str, Any] | None = None
    assessment: Assessment | None = None
    timeline: Timeline | None = None
    care: CareContext | None = None  # the PICU gate and the anchor, when the age gate passed

    @property
    def sources(self) -> Mapping[str, str]:
        return self.data.sources


# --- request parsing ---


def read_body() -> bytes:
    """The whole request body, read to its end so that a streamed body over the limit is a 413.

    Werkzeug refuses a declared Content-Length over MAX_CONTENT_LENGTH at once; a body without
    one (chunked) is cut at the limit, and reading past that point raises the 413 instead of
    handing us a silently truncated body.
    """
    chunks = []
    while chunk := request.stream.read(_READ_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def read_json_body() -> Any:
    """The current request's JSON body: 415 if not JSON, 413 if too large, 400 if unreadable."""
    if not request.is_json:
        raise UnsupportedMediaType("The request body must be sent as application/json.")
    body = read_body()
    max_depth = app_state().settings.limits.max_json_depth
    try:
        return loads_bounded(body, max_depth)
    except JsonTooDeep:
        raise MalformedJson(f"The request body nests deeper than {max_depth} levels.") from None
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise MalformedJson("The request body is not valid JSON.") from None


def parse_hook_request(service: ServiceDefinition) -> tuple[HookRequest, PatientViewContext]:
    """Validate the body as a call of `service`'s hook with a patient-view context."""
    try:
        hook_request = HookRequest.model_validate(read_json_body())
    except ValidationError as error:
        raise InvalidHookRequest(validation_diagnostics(error)) from None
    if hook_request.hook != service.hook:
        raise WrongHook(f"This service answers the {service.hook} hook only.")
    try:
        context = PatientViewContext.model_validate(hook_request.context)
    except ValidationError as error:
        raise InvalidHookRequest(f"context: {validation_diagnostics(error)}") from None
    _check_token_patient(hook_request, context)
    return hook_request, context


def _check_token_patient(hook_request: HookRequest, context: PatientViewContext) -> None:
    """Refuse an access token scoped to another patient than the one in context."""
    authorization = hook_request.fhirAuthorization
    if authorization and authorization.patient and authorization.patient != context.patientId:
        raise InvalidHookRequest("fhirAuthorization.patient differs from context.patientId.")


# --- the flow ---


@dataclass(frozen=True)
class HookEngine:
    """Everything a hook needs that is built once at start: settings, panel, scorer, templates."""

    settings: Settings
    panel: Panel
    scorer: Scorer
    templates: Mapping[str, str]

    def respond(
        self, hook_request: HookRequest, context: PatientViewContext, client: CdsClient
    ) -> HookOutcome:
        """Gather the data, apply the age and PICU gates, score from the anchor, build the card."""
        now = datetime.now(UTC)
        data = self.gather(hook_request, client, now)
        age = age_in_years(data.patient, now.date())
        if self.above_age_limit(age):
            return HookOutcome(HookResponse(cards=[]), AGE_GATED, data)
        care, phoenix = self.care_context(data, context, now)
        if not care.fires or care.anchor is None:
            return HookOutcome(HookResponse(cards=[]), care.gate.value, data, care=care)
        data = self.older_results(hook_request, client, data, care.anchor, now)
        timeline, assessment = self.assess(data, context, self.time_frame(now, care.anchor))
        card = build_card(
            assessment,
            timeline,
            panel=self.panel,
            settings=self.settings,
            patient_id=context.patientId,
            encounter_id=context.encounterId,
            chart=self.chart(care, age, incomplete_keys(data), phoenix),
        )
        response = HookResponse.model_validate({"cards": [card]})
        pathway = assessment.pathway.value
        return HookOutcome(response, pathway, data, card, assessment, timeline, care)

    @functools.cached_property
    def phoenix_step(self) -> PhoenixStep | None:
        """The Phoenix layer, or None when switched off in settings."""
        return PhoenixStep(self.settings.phoenix) if self.settings.phoenix.enabled else None

    def care_context(
        self, data: PatientData, context: PatientViewContext, now: datetime
    ) -> tuple[CareContext, PhoenixContext | None]:
        """The PICU gate, the anchor (the Phoenix onset where found) and the pending orders.

        The gate decides the encounter in question first; its Phoenix course gives the onset,
        and the context is judged again with it (the anchor's precedence is model.context's).
        """
        patient_id = context.patientId
        facts = {
            "encounters": encounter_facts(data.of_type("Encounter"), patient_id=patient_id).facts,
            "locations": location_facts(data.of_type("Location")).facts,
            "conditions": condition_facts(data.of_type("Condition"), patient_id=patient_id).facts,
            "orders": order_facts(
                data.of_type("ServiceRequest"), self.panel, patient_id=patient_id
            ).facts,
            "context_encounter_id": context.encounterId,
            "now": now,
            "settings": self.settings.context,
            "window": timedelta(hours=self.settings.window_hours),
        }
        care = assess_context(**facts)
        step = self.phoenix_step
        if step is None or not care.fires:
            return care, None
        phoenix = step.context(data, care.encounter, patient_id, now)
        if phoenix.onset_time is None:
            return care, phoenix
        infection = phoenix.infection is not None
        care = assess_context(
            **facts, phoenix_onset=phoenix.onset_time, phoenix_infection=infection
        )
        return care, phoenix

    def chart(
        self,
        care: CareContext,
        age: float | None,
        incomplete: tuple[str, ...],
        phoenix: PhoenixContext | None = None,
    ) -> ChartContext:
        """What the card shows beyond the results: PICU stay, encounter, pending orders, notes,
        the Phoenix course."""
        notes: list[str] = []
        if incomplete:
            what = ", ".join(KEY_CONTENTS.get(key, key) for key in incomplete)
            notes.append(INCOMPLETE_NOTE.format(what=what))
        if age is None and self.settings.max_age_years is not None:
            notes.append(AGE_UNKNOWN.format(limit=self.settings.max_age_years))
        pending = frozenset(order.analyte for order in care.pending)
        return ChartContext(
            care.in_picu, care.encounter, pending, tuple(notes), incomplete, phoenix
        )

    def above_age_limit(self, age: float | None) -> bool:
        """True when the patient is known to be at or over the configured age limit."""
        limit = self.settings.max_age_years
        return limit is not None and age is not None and age >= limit

    def assess(
        self, data: PatientData, context: PatientViewContext, frame: TimeFrame
    ) -> tuple[Timeline, Assessment]:
        """Map the Observations, place them on the timeline's frame, and score it."""
        extraction = extract(data.observations, self.panel, patient_id=context.patientId)
        timeline = build_timeline(extraction, frame)
        _check_deadline(data)
        return timeline, self.scorer.assess(timeline)

    def time_frame(self, now: datetime, anchor: Anchor) -> TimeFrame:
        """The frame of one assessment: the anchor, the early window and the look-back."""
        return TimeFrame(
            now=now,
            anchor=anchor,
            window=timedelta(hours=self.settings.window_hours),
            look_back=self.settings.context.look_back,
            current_max_age=timedelta(hours=self.settings.current_max_age_hours),
        )

    def request_templates(self, now: datetime) -> Mapping[str, str]:
        """The discovery templates, the Phoenix searches date-bounded for the query path."""
        step = self.phoenix_step
        return {**self.templates, **step.query_templates(now)} if step else self.templates

    def gather(self, hook_request: HookRequest, client: CdsClient, now: datetime) -> PatientData:
        """The patient's resources from prefetch and, where allowed, the FHIR server.

        Every query goes out at once, the Phoenix searches among them. Our own panel search
        reaches back `fhir.history_days` and the Phoenix searches their own look-back (prefetch
        templates cannot carry a date relative to now); `older_results` fetches panel results
        from before that reach once the time anchor shows they are needed.
        """
        access = self.fhir_access(hook_request, client)
        reach = {PANEL_KEY: f"date=ge{_search_instant(self.first_reach(now))}"}
        try:
            return gather_patient_data(
                hook_request.prefetch,
                hook_request.context,
                self.request_templates(now),
                access,
                self.settings.fhir,
                limits=self.settings.limits,
                hooks_in_flight=self.settings.threads,
                waiting=turns.released,
                query_params=reach,
            )
        except DataUnavailable as error:
            raise PreconditionFailed(f"The patient's data could not be obtained: {error}") from None
        except MalformedPrefetch as error:
            raise InvalidPrefetch(str(error)) from None

    def first_reach(self, now: datetime) -> datetime:
        """How far back the first round of our own panel search reaches."""
        return now - timedelta(days=self.settings.fhir.history_days)

    def older_results(
        self,
        hook_request: HookRequest,
        client: CdsClient,
        data: PatientData,
        anchor: Anchor,
        now: datetime,
    ) -> PatientData:
        """`data` plus the panel results from the anchor's look-back up to the first query's reach,
        when we searched the panel ourselves and the anchor lies that far back (one more search,
        within the same deadline); otherwise `data` as it is."""
        needed_from = anchor.time - self.settings.context.look_back
        reach = self.first_reach(now)
        queried = data.sources.get(PANEL_KEY, "").startswith("query")
        if not queried or needed_from >= reach:
            return data
        older = f"date=ge{_search_instant(needed_from)}&date=lt{_search_instant(reach)}"
        try:
            return add_search(
                data,
                PANEL_KEY,
                self.templates[PANEL_KEY],
                older,
                hook_request.context,
                self.fhir_access(hook_request, client),
                self.settings.fhir,
                limits=self.settings.limits,
                hooks_in_flight=self.settings.threads,
                waiting=turns.released,
            )
        except DataUnavailable as error:
            raise PreconditionFailed(f"The patient's data could not be obtained: {error}") from None

    def fhir_access(self, hook_request: HookRequest, client: CdsClient) -> FhirAccess | None:
        """A FHIR client for the request's fhirServer, once it may receive the token; else None."""
        server = hook_request.fhirServer
        token = hook_request.access_token
        if server is None or (token is None and client.authenticated):
            return None
        try:
            auth.check_fhir_server(client, server, self.settings)
        except FhirServerNotAllowed as refusal:
            raise FhirServerRefused(f"{refusal}; nothing was sent to it.") from None
        return FhirAccess(server, token)


def _search_instant(moment: datetime) -> str:
    """A FHIR search instant in UTC to the second, safe in a query string."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def incomplete_keys(data: PatientData) -> tuple[str, ...]:
    """The data keys whose results were not all read (a next page left unread)."""
    return tuple(key for key, source in data.sources.items() if source.endswith(INCOMPLETE))


def _check_deadline(data: PatientData) -> None:
    """412 when queried data was mapped only after the FHIR deadline (it covers the mapping too)."""
    if data.deadline is not None and time.monotonic() > data.deadline:
        raise PreconditionFailed(
            "The patient's data could not be obtained: the FHIR server's data could not be "
            "read and mapped within the deadline."
        )


def init_app(app: Flask) -> None:
    """Register the hook route; the engine is part of the app state."""
    app.register_blueprint(bp)


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> ResponseReturnValue:
    """Answer one hook call with one card (or none), or an OperationOutcome; audit it first."""
    started = time.perf_counter()
    settings = app_state().settings
    client = auth.authenticate(f"{settings.public_base_url}/cds-services/{service_id}")
    service = find_service(service_id)
    hook_request: HookRequest | None = None
    context: PatientViewContext | None = None
    try:
        hook_request, context = parse_hook_request(service)
        outcome = app_state().engine.respond(hook_request, context, client)
    except Exception as error:
        _record_failure(_call(service.id, client, hook_request, context), error, started)
        raise
    call = _call(service.id, client, hook_request, context)
    shown = silent_mode.shown(settings.silent, call.user_id)
    _record(call, outcome, shown, started)
    response = outcome.response if shown else HookResponse(cards=[])
    return jsonify(response.to_json())


def _call(
    service_id: str,
    client: CdsClient,
    hook_request: HookRequest | None,
    context: PatientViewContext | None,
) -> HookCall:
    """Who called about whom, as far as the request was read."""
    return HookCall(
        service_id=service_id,
        hook_instance=str(hook_request.hookInstance) if hook_request else None,
        issuer=client.iss,
        tenant=client.tenant,
        user_id=context.userId if context else None,
        patient_id=context.patientId if context else None,
        encounter_id=context.encounterId if context else None,
    )


def _record(call: HookCall, outcome: HookOutcome, shown: bool, started: float) -> None:
    """Audit, count and log one answered hook; the audit record is committed before we answer."""
    kind = "card" if shown else "silent"
    if outcome.card is None:
        kind = outcome.pathway  # age-gated, not-in-picu, no-active-encounter
    care = outcome.care
    result = HookResult(
        outcome=kind,
        http_status=200,
        returned=shown and outcome.card is not None,
        scorer=app_state().engine.scorer.info,
        card=outcome.card,
        assessment=outcome.assessment,
        timeline=outcome.timeline,
        sources=outcome.sources,
        fhir_calls=outcome.data.fhir_calls,
        fhir_seconds=outcome.data.fhir_seconds,
        duration_seconds=time.perf_counter() - started,
        persistence=_persistence(outcome.assessment),
        anchor=_anchor(care),
        gate_reason=care.gate.value if care else None,
    )
    _finish(call, result)


def _persistence(assessment: Assessment | None) -> str | None:
    """The persistence state the scorer gave, when it gave one."""
    persistence = assessment.persistence if assessment else None
    return persistence.state.value if persistence else None


def _anchor(care: CareContext | None) -> dict[str, str] | None:
    """The anchor's time and source for the audit record (never its detail, which names ids)."""
    if care is None or care.anchor is None:
        return None
    return {"time": care.anchor.time.isoformat(), "source": care.anchor.source.value}


def _record_failure(call: HookCall, error: Exception, started: float) -> None:
    """Audit, count and log a hook that ended in an error; the error itself propagates."""
    status = error.status if isinstance(error, CdsError) else InternalError.status
    result = HookResult(
        outcome=f"error:{status}",
        http_status=status,
        returned=False,
        scorer=app_state().engine.scorer.info,
        duration_seconds=time.perf_counter() - started,
        error=error.code if isinstance(error, CdsError) else InternalError.code,
    )
    try:
        _finish(call, result)
    except DatabaseError:
        logger.exception("the audit record of a failed hook could not be written")


def _finish(call: HookCall, result: HookResult) -> None:
    """Write the audit record (if the trail is on), then the metrics and the log line."""
    trail = app_state().audit_trail
    pathway = result.assessment.pathway.value if result.assessment else "none"
    source = data_source(result.sources) if result.sources else "none"
    metrics.observe_hook(result.outcome, pathway, source, result.duration_seconds)
    _log(call, result, pathway)
    if trail is not None:
        try:
            trail.record(call, result)
        except DatabaseError:
            metrics.STORAGE_ERRORS.labels(store="audit").inc()
            raise


def _log(call: HookCall, result: HookResult, pathway: str) -> None:
    """One JSON audit line per hook: identifiers, outcome, timing; no patient values or tokens."""
    info = result.scorer
    fields = {
        "event": "hook",
        "hookInstance": call.hook_instance,
        "iss": call.issuer,
        "outcome": result.error or result.outcome,
        "pathway": pathway,
        "gate": result.gate_reason,
        "anchor": result.anchor["source"] if result.anchor else None,
        "scorer": f"{info.id}/{info.version}" if info else None,
        "sources": _describe_sources(result.sources),
        "fhir_calls": result.fhir_calls,
        "duration_ms": round(result.duration_seconds * 1000),
    }
    audit(audit_log, fields)


def _describe_sources(sources: Mapping[str, str]) -> str:
    """How many prefetch keys each data source served, e.g. `prefetch:11,query:1`."""
    counts = Counter(str(source) for source in sources.values())
    return ",".join(f"{source}:{count}" for source, count in sorted(counts.items())) or "none"
