"""The application's state: everything built once at start, in one frozen object.

`create_app` builds an `AppState` and installs it under one extension key; views and helpers
reach it through `app_state()` only. The component types are imported for annotations alone, so
this module depends on nothing at run time and every component module may use the accessor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from cds_service.audit import AuditTrail
    from cds_service.auth import Authenticator
    from cds_service.discovery import ServiceDefinition
    from cds_service.feedback import FeedbackStore
    from cds_service.hooks import HookEngine
    from cds_service.settings import Settings
    from cds_service.storage import Database
    from fhir_mappings.panel import Panel
    from model.assessment import Scorer

STATE_KEY = "picu_endotype"


@dataclass(frozen=True)
class AppState:
    """What one configured service holds for its whole life."""

    settings: Settings
    panel: Panel
    scorer: Scorer
    services: Mapping[str, ServiceDefinition]  # service id -> definition
    engine: HookEngine
    authenticator: Authenticator
    feedback_store: FeedbackStore
    database: Database  # the shared database: replay store, feedback, audit trail
    audit_trail: AuditTrail | None  # None when the audit trail is switched off
    model_card: Mapping[str, Any]  # the running scorer's model card, built at start


def install_state(app: Flask, state: AppState) -> None:
    """Make `state` the state of `app`; done once, by the factory."""
    if STATE_KEY in app.extensions:
        raise RuntimeError("this app already has its state")
    app.extensions[STATE_KEY] = state


def app_state(app: Flask | None = None) -> AppState:
    """The state of `app`, or of the app handling the current request."""
    return (app if app is not None else current_app).extensions[STATE_KEY]
