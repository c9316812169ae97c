"""Assertions on OperationOutcome error responses."""

from __future__ import annotations

from typing import Any


def _issue(response: Any) -> dict[str, Any]:
    """The single issue of an OperationOutcome response."""
    body = response.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert len(body["issue"]) == 1
    return body["issue"][0]


def assert_outcome(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is `status` with an OperationOutcome carrying `code`, and no trace."""
    assert response.status_code == status
    assert response.mimetype in {"application/json", "application/fhir+json"}
    issue = _issue(response)
    assert issue["severity"] == "error"
    assert issue["details"]["coding"][0]["code"] == code
    assert issue["diagnostics"].startswith(f"{code}: ")
    assert "Traceback" not in response.get_data(as_text=True)
    return issue
