"""A served instance for tests: `picu-endotype serve` in its own process group, and its clients.

`serve(...)` writes a settings file (one trusted ES384 client, any extra settings), starts the
service, waits for `/healthz` and stops it at the end. `hook_body(...)` builds patient-view
requests with or without prefetch; `post_hook(...)` sends one with a fresh JWT.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from cds_service.discovery import SERVICE_ID
from devtools.bench import child_pids
from devtools.service import stop_process
from tests.cds_service.fhir_data import full_prefetch, patient
from tests.support.leak_guard import register_secret
from tests.support.tokens import SigningKey, jwks, make_token

EHR = "https://ehr.serving-tests.example.org"
LOOPBACK = "127.0.0.1"
FHIR_TOKEN = register_secret("serving-tests-fhir-token-5c1d")
START_TIMEOUT_SECONDS = 120.0  # generous: other test suites share the machine's two cores
SERVE = (  # `picu-endotype serve --config FILE`, without the other sub-commands' imports
    "import argparse, sys; from cds_service import serve; "
    "args = argparse.Namespace(config=sys.argv[1], host=None, port=None, workers=None); "
    "sys.exit(serve.run(args))"
)


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running instance: its process (the gunicorn master), URL, key and output file."""

    process: subprocess.Popen[bytes]
    port: int
    key: SigningKey
    output: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def hook_url(self) -> str:
        return f"{self.base_url}/cds-services/{SERVICE_ID}"

    def token(self) -> str:
        """A fresh client JWT for the hook endpoint."""
        return make_token(self.key, iss=EHR, aud=self.hook_url)

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (the master's children)."""
        return child_pids(self.process.pid)

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> list[int]:
        """The worker pids once `count` are running (AssertionError after `timeout` seconds)."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            pids = self.worker_pids()
            if len(pids) >= count:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"{count} workers did not start")

    def log_text(self) -> str:
        return self.output.read_text(errors="replace")


def settings_text(port: int, state_dir: Path, key: SigningKey, settings: Mapping[str, Any]) -> str:
    """The settings file: loopback, one trusted client, and `settings` (flat or one table deep)."""
    flat = {
        "public_base_url": f"http://{LOOPBACK}:{port}",
        "host": LOOPBACK,
        "port": port,
        "state_dir": str(state_dir),
        "insecure_http_fhir_hosts": [LOOPBACK],
        **{k: v for k, v in settings.items() if not isinstance(v, Mapping) and k != "fhir_servers"},
    }
    lines = [f"{name} = {json.dumps(value)}" for name, value in flat.items()]
    for table, values in settings.items():
        if isinstance(values, Mapping):
            lines.append(f"[{table}]")
            lines += [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    lines += [
        "[[clients]]",
        f"iss = {json.dumps(EHR)}",
        f"jwks = {json.dumps(json.dumps(jwks(key)))}",
        f"fhir_servers = {json.dumps(list(settings.get('fhir_servers', [])))}",
    ]
    return "\n".join(lines) + "\n"


@contextmanager
def serve(folder: Path, port: int | None = None, **settings: Any) -> Iterator[Served]:
    """Run `picu-endotype serve` with `settings` until the block ends (SIGTERM, then SIGKILL)."""
    port = port or free_port()
    key = SigningKey.generate("ES384")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"settings-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(settings_text(port, folder / "state", key, settings))
    output = folder / f"server-{port}.log"
    with output.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    served = Served(process, port, key, output)
    try:
        wait_until_healthy(served)
        yield served
    finally:
        stop(process)


def wait_until_healthy(served: Served, timeout: float = START_TIMEOUT_SECONDS) -> None:
    """Poll `/healthz` until it answers 200; AssertionError if the process exits or time is up."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if served.process.poll() is not None:
            raise AssertionError(
                f"the service exited during start-up:\n{served.log_text()[-3000:]}"
            )
        try:
            if requests.get(f"{served.base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"the service did not become healthy:\n{served.log_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the service's process group: SIGTERM, then SIGKILL if it lingers."""
    stop_process(process, grace=30.0)
    # workers left behind by a master that was killed belong to the same process group
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def hook_body(
    fhir_base: str,
    *,
    patient_id: str = "pat-serving-1",
    prefetch: Mapping[str, Any] | None = None,
    with_access: bool = True,
) -> dict[str, Any]:
    """A patient-view request: with prefetch it needs no FHIR call; without, it queries."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "fhirServer": fhir_base,
        "context": {"userId": "Practitioner/serving-1", "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    if with_access:
        body["fhirAuthorization"] = {
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "serving-tests",
        }
    return body


def post_hook(
    served: Served, body: Mapping[str, Any], token: str | None = None, timeout: float = 120.0
) -> requests.Response:
    """POST one hook request with a fresh (or the given) JWT."""
    return requests.post(
        served.hook_url,
        json=dict(body),
        headers={"Authorization": f"Bearer {token or served.token()}"},
        timeout=timeout,
    )


def process_exists(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def complete_prefetch(served: Served, patient_id: str = "pat-serving-1") -> dict[str, Any]:
    """Prefetch for every key the service's discovery names: a child in the PICU, no results.

    A hook carrying it needs no FHIR call at all, and gets a card (insufficient data).
    """
    url = f"{served.base_url}/cds-services"
    token = make_token(served.key, iss=EHR, aud=url)
    reply = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    reply.raise_for_status()
    [service] = [s for s in reply.json()["services"] if s["id"] == SERVICE_ID]
    child = patient(patient_id, date.today() - timedelta(days=5 * 365))
    return full_prefetch(service["prefetch"], child, [])
