"""What the Phoenix layer adds to a whole hook: CPU time and FHIR calls, on and off, one run.

Used by `phoenix_cost.py` (part 2); see its docstring. The service runs in-process under the
Flask test client against the sandbox FHIR server; the two configurations differ only in
`phoenix.enabled` and their calls are interleaved in batches, so machine load hits both alike.
"""

from __future__ import annotations

import copy
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.discovery import SERVICE_ID
from cds_service.settings import load_settings
from devtools import (
    LOOPBACK,
    DemoEhr,
    SandboxFhir,
    build_prefetch,
    free_port,
    hook_request,
    load_resources,
    write_service_config,
)
from fhir_mappings.client import CALL_OBSERVERS
from model.phoenix_context import PhoenixSettings
from model.synth import scenario_patient

BATCHES = 5
HISTORY_DAYS = 5
Stay = Callable[[int, Any], list[dict[str, Any]]]


def hook_comparison(calls: int, stay: Stay) -> None:
    """Print CPU ms and FHIR calls per hook with the Phoenix layer on and off, and the ratios."""
    ehr, port = DemoEhr(), free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="picu-phoenix-cost-") as tmp:
        workdir = Path(tmp)
        with SandboxFhir.start(workdir / "sekmet") as sandbox:
            children = _load_children(sandbox.base_url, now, stay)
            config = write_service_config(workdir, port=port, ehr=ehr, fhir_base=sandbox.base_url)
            settings = load_settings(config)
            apps = {
                "off": create_app(
                    settings.model_copy(update={"phoenix": PhoenixSettings(enabled=False)})
                ),
                "on": create_app(load_settings(config)),
            }
            print("The Phoenix layer in the whole hook (in-process, same run, interleaved)")
            print(
                f"{'child':<26}{'form':<10}{'CPU ms off':>11}{'CPU ms on':>11}{'ratio':>7}"
                f"{'FHIR off':>10}{'FHIR on':>9}{'prefetch kB off/on':>20}"
            )
            for label, patient_id in children.items():
                for form in ("prefetch", "query"):
                    row = _compare(apps, ehr, base_url, sandbox.base_url, patient_id, form, calls)
                    print(f"{label:<26}{form:<10}{row}")


def _load_children(fhir_base: str, now: datetime, stay: Stay) -> dict[str, str]:
    """The demo's hyperinflammatory child, and the same child after 5 days of charting."""
    short = scenario_patient("hyperinflammatory", "cost-demo-child", now=now)
    long = _with_history(
        scenario_patient("hyperinflammatory", "cost-long-stay", now=now), "cost-long-stay", stay
    )
    load_resources(fhir_base, short)
    load_resources(fhir_base, long)
    return {
        "demo child, 44 h": "cost-demo-child",
        f"+ {HISTORY_DAYS} days before": "cost-long-stay",
    }


def _with_history(
    resources: list[dict[str, Any]], patient_id: str, stay: Stay
) -> list[dict[str, Any]]:
    """The child's resources after `HISTORY_DAYS` of hourly charting before its encounter."""
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    start = datetime.fromisoformat(encounter["period"]["start"])
    history = stay(HISTORY_DAYS, random.Random(3))
    end = max(_time_of(r) for r in history)
    shift = start - timedelta(minutes=1) - end
    moved = [_moved(r, shift, patient_id) for r in history]
    first = min(_time_of(r) for r in moved)
    encounter["period"]["start"] = (first - timedelta(hours=1)).isoformat()
    return [*resources, *moved]


def _time_of(resource: Mapping[str, Any]) -> datetime:
    period = resource.get("performedPeriod") or {}
    return datetime.fromisoformat(resource.get("effectiveDateTime") or period["start"])


def _moved(resource: dict[str, Any], shift: timedelta, patient_id: str) -> dict[str, Any]:
    """A copy of a history resource, for `patient_id`, `shift` later, with a unique id."""
    moved = copy.deepcopy(resource)
    moved["id"] = f"{patient_id}-h-{resource['id']}"
    moved["subject"] = {"reference": f"Patient/{patient_id}"}
    if "effectiveDateTime" in moved:
        moved["effectiveDateTime"] = (_time_of(resource) + shift).isoformat()
    if "performedPeriod" in moved:
        start = _time_of(resource) + shift
        end = start + timedelta(days=2)
        moved["performedPeriod"] = {"start": start.isoformat(), "end": end.isoformat()}
        moved["status"] = "completed"
    return moved


@contextmanager
def _counted_calls() -> Iterator[list[int]]:
    """Count FHIR calls made while the block runs."""
    count = [0]

    def observe(_seconds: float, _error: object) -> None:
        count[0] += 1

    CALL_OBSERVERS.append(observe)
    try:
        yield count
    finally:
        CALL_OBSERVERS.remove(observe)


def _compare(
    apps: Mapping[str, Any],
    ehr: DemoEhr,
    base_url: str,
    fhir_base: str,
    patient_id: str,
    form: str,
    calls: int,
) -> str:
    """One table row: CPU ms per hook off and on, their ratio, FHIR calls, prefetch size."""
    clients = {name: app.test_client() for name, app in apps.items()}
    bodies = {
        name: _bodies(client, ehr, base_url, fhir_base, patient_id, form, calls)
        for name, client in clients.items()
    }
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    fhir_calls: dict[str, int] = dict.fromkeys(apps, 0)
    per_batch = max(1, calls // BATCHES)
    for batch in range(BATCHES):
        for name, client in clients.items():
            chunk = bodies[name][batch * per_batch : (batch + 1) * per_batch]
            with _counted_calls() as counted:
                cpu[name] += _timed(client, ehr, base_url, chunk)
            fhir_calls[name] += counted[0]
    done = per_batch * BATCHES
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    sizes = "/".join(f"{len(bodies[name][0]) / 1024:.0f}" for name in ("off", "on"))
    size_text = sizes if form == "prefetch" else "-"
    return (
        f"{off:>11.1f}{on:>11.1f}{on / off:>7.2f}"
        f"{fhir_calls['off'] / done:>10.1f}{fhir_calls['on'] / done:>9.1f}{size_text:>20}"
    )


def _bodies(
    client: FlaskClient,
    ehr: DemoEhr,
    base_url: str,
    fhir_base: str,
    patient_id: str,
    form: str,
    calls: int,
) -> list[bytes]:
    """The request bodies, prefetch filled from this configuration's own discovery templates;
    an access token with both forms (a prefetched Bundle with a next page is followed)."""
    prefetch = None
    token = "phoenix-cost-" + "x" * 24
    if form == "prefetch":
        token_header = {"Authorization": f"Bearer {ehr.token(base_url + '/cds-services')}"}
        templates = client.get("/cds-services", headers=token_header).get_json()["services"][0]
        prefetch = build_prefetch(fhir_base, templates["prefetch"], {"patientId": patient_id})
    request = hook_request(patient_id, fhir_base, prefetch=prefetch, access_token=token)
    warm_up = json.dumps(request).encode()
    _timed(client, ehr, base_url, [warm_up, warm_up])
    return [json.dumps(request).encode() for _ in range(calls)]


def _timed(client: FlaskClient, ehr: DemoEhr, base_url: str, bodies: list[bytes]) -> list[float]:
    """CPU milliseconds of each hook call (fresh JWTs signed before timing)."""
    path = f"/cds-services/{SERVICE_ID}"
    headers = [{"Authorization": f"Bearer {ehr.token(base_url + path)}"} for _ in bodies]
    samples = []
    for body, header in zip(bodies, headers, strict=True):
        started = time.process_time()
        response = client.post(path, data=body, content_type="application/json", headers=header)
        samples.append((time.process_time() - started) * 1000)
        if response.status_code != 200 or len(response.get_json()["cards"]) != 1:
            raise RuntimeError(f"hook answered {response.status_code}: {response.data[:300]!r}")
    return samples
