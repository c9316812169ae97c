"""The service definition and `GET /cds-services`: one declaration feeds discovery and dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flask import Blueprint, Flask, jsonify, request
from flask.typing import ResponseReturnValue

from cds_service import auth
from cds_service.errors import UnknownService
from cds_service.models import Service, Services
from cds_service.phoenix_step import PhoenixStep
from cds_service.settings import Settings
from cds_service.state import app_state
from fhir_mappings.context_templates import context_templates
from fhir_mappings.panel import Panel
from fhir_mappings.prefetch import prefetch_templates

SERVICE_ID = "picu-immune-endotype"
PATIENT_VIEW = "patient-view"

bp = Blueprint("discovery", __name__)


@dataclass(frozen=True)
class ServiceDefinition:
    """One CDS Service: what discovery advertises and what dispatch checks a call against."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str] = field(default_factory=dict)
    usage_requirements: str | None = None

    def to_model(self) -> Service:
        """The discovery entry for this service."""
        return Service(
            hook=self.hook,
            title=self.title,
            description=self.description,
            id=self.id,
            prefetch=dict(self.prefetch) or None,
            usageRequirements=self.usage_requirements,
        )


def endotype_service(panel: Panel, settings: Settings) -> ServiceDefinition:
    """The patient-view immune-endotype service, with prefetch templates for the panel."""
    return ServiceDefinition(
        id=SERVICE_ID,
        hook=PATIENT_VIEW,
        title="PICU immune endotype",
        description=(
            "For children in the PICU: reads inflammatory biomarker results (IL-6, IFN-gamma, "
            "CXCL9, ferritin, CRP and others) from the onset of organ dysfunction on, judges the "
            "IL-6/IFN-gamma axis sample by sample with its persistence, and suggests whether a "
            "biomarker-guided or the standard pathway may apply, showing every input it used. "
            "The onset is the first hour of a Phoenix score of 2 or more, from the chart."
        ),
        prefetch=service_templates(panel, settings),
        usage_requirements=_usage_requirements(settings),
    )


def service_templates(panel: Panel, settings: Settings) -> dict[str, str]:
    """The patient, the panel's Observations, the care-context and the Phoenix searches."""
    codes = settings.context.onset_condition_codes
    phoenix = PhoenixStep(settings.phoenix).prefetch_templates() if settings.phoenix.enabled else {}
    return {
        **prefetch_templates(panel, settings.fhir.page_size),
        **context_templates(panel, codes),
        **phoenix,
    }


def _usage_requirements(settings: Settings) -> str:
    """What a client must provide, and for whom the service is meant."""
    text = (
        "Needs read access to Patient, Observation, Encounter, Location and ServiceRequest "
        "(and Condition when onset codes are configured) on the client's FHIR server "
        "(fhirServer with fhirAuthorization) whenever the prefetch is absent or incomplete."
    )
    if settings.phoenix.enabled:
        medication = (
            "MedicationRequest"
            if settings.phoenix.vasoactives_from == "requests"
            else "MedicationAdministration"
        )
        text += (
            f" The Phoenix score reads Procedure, DeviceUseStatement, Device and {medication}"
            " (and Condition when infection codes are configured) too."
        )
    if settings.context.picu_gate:
        text += " Answers for patients in the PICU only (by location or service type)."
    if settings.max_age_years is not None:
        text += f" Answers for patients under {settings.max_age_years:g} years only."
    return text


def init_app(app: Flask) -> None:
    """Register the discovery route; the service table is part of the app state."""
    app.register_blueprint(bp)


def find_service(service_id: str) -> ServiceDefinition:
    """The service registered under `service_id`; UnknownService otherwise."""
    service = app_state().services.get(service_id)
    if service is None:
        raise UnknownService("No CDS Service with this id is offered here.")
    return service


@bp.get("/cds-services", strict_slashes=False)
def list_services() -> ResponseReturnValue:
    """Discovery (also at `/cds-services/`): every service this server offers.

    The JWT's `aud` must be the URL called, with its trailing slash if it had one.
    """
    state = app_state()
    path = "/cds-services/" if request.path.endswith("/") else "/cds-services"
    auth.authenticate(f"{state.settings.public_base_url}{path}")
    body = Services(services=[service.to_model() for service in state.services.values()])
    return jsonify(body.to_json())
