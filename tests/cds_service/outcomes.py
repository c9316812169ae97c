"""Assertions on OperationOutcome error responses."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome

# http://hl7.org/fhir/R4B/valueset-issue-type.html
ISSUE_TYPES = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "security",
        "login",
        "unknown",
        "expired",
        "forbidden",
        "suppressed",
        "processing",
        "not-supported",
        "duplicate",
        "multiple-matches",
        "not-found",
        "deleted",
        "too-long",
        "code-invalid",
        "extension",
        "too-costly",
        "business-rule",
        "conflict",
        "transient",
        "lock-error",
        "no-store",
        "exception",
        "timeout",
        "incomplete",
        "throttled",
        "informational",
    }
)


def _issue(response: Any) -> dict[str, Any]:
    """The single issue of an OperationOutcome response, validated as FHIR R4B."""
    body = response.get_json(force=True)
    OperationOutcome.model_validate(body)
    assert len(body["issue"]) == 1
    return body["issue"][0]


def assert_outcome(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with an OperationOutcome carrying `code`, and no trace."""
    assert response.status_code == status
    assert response.mimetype in {"application/json", "application/fhir+json"}
    issue = _issue(response)
    assert issue["severity"] == "error"
    assert issue["code"] in ISSUE_TYPES
    assert issue["details"]["coding"][0]["code"] == code
    assert issue["diagnostics"].startswith(f"{code}: ")
    assert "Traceback" not in response.get_data(as_text=True)
    return issue
