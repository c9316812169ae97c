"""Errors the service answers with, all rendered as a FHIR OperationOutcome.

Every error carries an HTTP status and a stable code (asserted by tests, quoted in logs):

* CdsError
  ├── InvalidRequest (400)                PICU-400-BAD-REQUEST
  │   ├── MalformedJson (400)             PICU-400-MALFORMED-JSON
  │   ├── InvalidHookRequest (400)        PICU-400-INVALID-REQUEST
  │   ├── WrongHook (400)                 PICU-400-WRONG-HOOK
  │   ├── InvalidPrefetch (400)           PICU-400-INVALID-PREFETCH
  │   └── InvalidFeedback (400)           PICU-400-INVALID-FEEDBACK
  ├── NotFound (404)                      PICU-404-NOT-FOUND
  │   └── UnknownService (404)            PICU-404-UNKNOWN-SERVICE
  ├── MethodNotAllowed (405)              PICU-405-METHOD-NOT-ALLOWED
  ├── PreconditionFailed (412)            PICU-412-DATA-UNAVAILABLE
  │   └── FhirServerRefused (412)         PICU-412-FHIR-SERVER-NOT-ALLOWED
  ├── PayloadTooLarge (413)               PICU-413-BODY-TOO-LARGE
  ├── UnsupportedMediaType (415)          PICU-415-NOT-JSON
  └── InternalError (500)                 PICU-500-INTERNAL

Diagnostics never contain the request body, tokens or patient values. 401 is rendered by
`cds_service.auth` (empty body and `WWW-Authenticate: Bearer`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

ERROR_CODE_SYSTEM = "urn:picu-endotype:error-code"
FHIR_JSON = "application/fhir+json"


class CdsError(Exception):
    """Base class: an HTTP status, a stable code and a diagnostics sentence."""

    status: int = 500
    code: str = "PICU-500-INTERNAL"
    issue_type: str = "exception"  # FHIR IssueType

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics


class InvalidRequest(CdsError):
    status, code, issue_type = 400, "PICU-400-BAD-REQUEST", "invalid"


class MalformedJson(InvalidRequest):
    code, issue_type = "PICU-400-MALFORMED-JSON", "structure"


class InvalidHookRequest(InvalidRequest):
    code = "PICU-400-INVALID-REQUEST"


class WrongHook(InvalidRequest):
    code, issue_type = "PICU-400-WRONG-HOOK", "not-supported"


class InvalidPrefetch(InvalidRequest):
    code = "PICU-400-INVALID-PREFETCH"


class InvalidFeedback(InvalidRequest):
    code = "PICU-400-INVALID-FEEDBACK"


class NotFound(CdsError):
    status, code, issue_type = 404, "PICU-404-NOT-FOUND", "not-found"


class UnknownService(NotFound):
    code = "PICU-404-UNKNOWN-SERVICE"


class MethodNotAllowed(CdsError):
    status, code, issue_type = 405, "PICU-405-METHOD-NOT-ALLOWED", "not-supported"


class PreconditionFailed(CdsError):
    status, code, issue_type = 412, "PICU-412-DATA-UNAVAILABLE", "processing"


class FhirServerRefused(PreconditionFailed):
    code, issue_type = "PICU-412-FHIR-SERVER-NOT-ALLOWED", "security"


class PayloadTooLarge(CdsError):
    status, code, issue_type = 413, "PICU-413-BODY-TOO-LARGE", "too-costly"


class UnsupportedMediaType(CdsError):
    status, code, issue_type = 415, "PICU-415-NOT-JSON", "not-supported"


class InternalError(CdsError):
    status, code, issue_type = 500, "PICU-500-INTERNAL", "exception"


def validation_diagnostics(error: ValidationError) -> str:
    """Describe a pydantic error by field location and message only, never the input value."""
    parts = []
    for detail in error.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(item) for item in detail["loc"]) or "body"
        parts.append(f"{location}: {detail['msg']}")
    return "; ".join(parts[:10])


def operation_outcome(error: CdsError) -> dict[str, Any]:
    """The OperationOutcome body for `error`."""
    issue = {
        "severity": "error",
        "code": error.issue_type,
        "details": {
            "coding": [{"system": ERROR_CODE_SYSTEM, "code": error.code}],
            "text": error.diagnostics,
        },
        "diagnostics": f"{error.code}: {error.diagnostics}",
    }
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def render(error: CdsError) -> Response:
    """Render `error` as an OperationOutcome response in the media type the client prefers."""
    response = jsonify(operation_outcome(error))
    response.status_code = error.status
    preferred = request.accept_mimetypes.best_match(["application/json", FHIR_JSON])
    response.mimetype = FHIR_JSON if preferred == FHIR_JSON else "application/json"
    return response


_HTTP_ERRORS: dict[int, tuple[type[CdsError], str]] = {
    400: (InvalidRequest, "The request could not be read."),
    404: (NotFound, "No such resource on this server."),
    405: (MethodNotAllowed, "This method is not allowed here."),
    413: (PayloadTooLarge, "The request body is larger than this service accepts."),
    415: (UnsupportedMediaType, "The request body must be JSON."),
}


def from_http_exception(exc: HTTPException) -> CdsError:
    """Our error for one of werkzeug's; fixed wording, as werkzeug's text may quote the request."""
    status = exc.code or 500
    if status in _HTTP_ERRORS:
        error_class, diagnostics = _HTTP_ERRORS[status]
        return error_class(diagnostics)
    error = InternalError("The request failed.")
    if 400 <= status < 600:
        error.status, error.code = status, f"PICU-{status}-HTTP"
    return error


def _render_http_exception(exc: HTTPException) -> Response:
    """Turn werkzeug's own errors (404, 405, 413, …) into OperationOutcomes."""
    if exc.code == 401:  # same answer as cds_service.auth: empty body and a Bearer challenge
        return Response("", status=401, headers={"WWW-Authenticate": "Bearer"})
    response = render(from_http_exception(exc))
    valid_methods = getattr(exc, "valid_methods", None)
    if exc.code == 405 and valid_methods:
        response.headers["Allow"] = ", ".join(valid_methods)
    return response


def _render_unexpected(exc: Exception) -> Response:
    """Last resort: log the exception type only and answer 500 without a trace."""
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.path)
    return render(InternalError("The service could not complete the request."))


def init_app(app: Flask) -> None:
    """Register the OperationOutcome renderers on `app`."""
    app.register_error_handler(CdsError, render)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
