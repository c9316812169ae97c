"""`picu-endotype demo`: the service, a sandbox FHIR server and four synthetic patients.

The demo plays the EHR: it registers a throw-away ES384 key as a client, calls discovery, then
calls patient-view for each synthetic patient (two with prefetch filled from the discovery
templates, two with `fhirAuthorization` so the service queries the FHIR server itself) and prints
each card as text. Nothing it prints or logs contains a token.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service.sandbox_fhir import LOOPBACK, SandboxFhir, free_port, load_resources

SERVICE_ID = "picu-immune-endotype"
ASSESSMENT_EXTENSION = "io.picu-endotype.assessment"
DEMO_ISSUER = "https://demo-ehr.picu-endotype.invalid"
DEMO_USER = "Practitioner/demo-clinician"
PREFETCH, QUERY = "prefetch", "direct FHIR queries"


@dataclass(frozen=True)
class DemoPatient:
    """One synthetic scenario patient and how the demo EHR sends its data."""

    kind: str
    patient_id: str
    data_path: str


DEMO_PATIENTS = (
    DemoPatient("hyperinflammatory", "demo-hyperinflammatory", PREFETCH),
    DemoPatient("quiescent", "demo-quiescent", QUERY),
    DemoPatient("missing-panel", "demo-missing-panel", PREFETCH),
    DemoPatient("resolving", "demo-resolving", QUERY),
)

BANNER = (
    "=" * 78
    + "\n  SYNTHETIC PATIENTS: generated test data, not real people. Not for clinical use.\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `picu-endotype demo`."""
    parser.add_argument("--once", action="store_true", help="print the cards, then exit")
    parser.add_argument("--port", type=int, default=None, help="service port (default: free)")
    parser.add_argument(
        "--fhir-port", type=int, default=None, help="sandbox FHIR server port (default: free)"
    )


# --- the demo EHR: its signing key and the calls it makes ---


@dataclass
class DemoEhr:
    """A CDS client with an ephemeral ES384 key; signs one fresh JWT per call."""

    issuer: str = DEMO_ISSUER
    kid: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:8]}")
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1()), repr=False
    )

    def jwks_json(self) -> str:
        """The public key as a JWK Set, JSON text (what the service's settings hold inline)."""
        jwk = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "ES384", "use": "sig"})
        return json.dumps({"keys": [jwk]})

    def token(self, audience: str, lifetime: int = 300) -> str:
        """A signed client JWT for exactly `audience`, with a fresh `jti`."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.private_key, algorithm="ES384", headers=headers)


def build_prefetch(
    fhir_base: str, templates: Mapping[str, str], context: Mapping[str, Any], timeout: float = 30
) -> dict[str, Any]:
    """Run the discovery prefetch templates against the FHIR server, as an EHR would."""
    from fhir_mappings.prefetch import fill_template

    prefetch: dict[str, Any] = {}
    with requests.Session() as session:
        for key, template in templates.items():
            response = session.get(
                f"{fhir_base.rstrip('/')}/{fill_template(template, context)}",
                headers={"Accept": "application/fhir+json"},
                timeout=timeout,
            )
            prefetch[key] = response.json() if response.status_code == 200 else None
    return prefetch


def hook_request(
    patient_id: str,
    fhir_base: str,
    *,
    prefetch: Mapping[str, Any] | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """A patient-view request: with prefetch, or with `fhirAuthorization` for direct queries."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "fhirServer": fhir_base,
        "context": {"userId": DEMO_USER, "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    if access_token is not None:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "picu-endotype-demo",
        }
    return body


def service_config_toml(
    *, public_base_url: str, port: int, state_dir: Path, ehr: DemoEhr, fhir_base: str
) -> str:
    """Settings for the demo service: loopback, the demo EHR as the one client, http sandbox."""
    text = json.dumps  # JSON string escapes are valid TOML basic strings
    return "\n".join(
        [
            f"public_base_url = {text(public_base_url)}",
            f"host = {text(LOOPBACK)}",
            f"port = {port}",
            "workers = 2",
            f"state_dir = {text(str(state_dir))}",
            f"insecure_http_fhir_hosts = [{text(LOOPBACK)}]",
            "",
            "[[clients]]",
            f"iss = {text(ehr.issuer)}",
            f"jwks = {text(ehr.jwks_json())}",
            f"fhir_servers = [{text(fhir_base)}]",
            "",
        ]
    )


def write_service_config(workdir: Path, *, port: int, ehr: DemoEhr, fhir_base: str) -> Path:
    """Write the demo service's settings file into `workdir`; its state goes to `workdir/var`."""
    config = workdir / "settings.toml"
    config.write_text(
        service_config_toml(
            public_base_url=f"http://{LOOPBACK}:{port}",
            port=port,
            state_dir=workdir / "var",
            ehr=ehr,
            fhir_base=fhir_base,
        )
    )
    return config


# --- the service process ---


def serve_command(config: Path) -> list[str]:
    """`picu-endotype serve --config FILE`, from the same environment as this process."""
    entry_point = Path(sys.executable).with_name("picu-endotype")
    if entry_point.exists():
        return [str(entry_point), "serve", "--config", str(config)]
    found = shutil.which("picu-endotype")
    if found:
        return [found, "serve", "--config", str(config)]
    return [sys.executable, "-m", "cds_service.cli", "serve", "--config", str(config)]


@contextmanager
def running_service(config: Path, base_url: str, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run `picu-endotype serve` until the block ends; wait (bounded) for `/healthz`."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            serve_command(config), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
        try:
            wait_for_health(process, f"{base_url}/healthz", log_path)
            yield process
        finally:
            stop_process(process)


def wait_for_health(process: subprocess.Popen, url: str, log_path: Path, timeout=60.0) -> None:
    """Poll `url` until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited early:\n{_tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the service did not answer {url} in {timeout:.0f} s:\n{_tail(log_path)}")


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, wait, and kill only if it does not exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- calling the service and printing cards ---


def discover(session: requests.Session, service_url: str, ehr: DemoEhr) -> dict[str, Any]:
    """GET /cds-services and return the endotype service's entry."""
    url = f"{service_url}/cds-services"
    response = session.get(url, headers={"Authorization": f"Bearer {ehr.token(url)}"}, timeout=30)
    response.raise_for_status()
    services = {service["id"]: service for service in response.json()["services"]}
    return services[SERVICE_ID]


def call_hook(
    session: requests.Session, service_url: str, ehr: DemoEhr, body: Mapping[str, Any]
) -> dict[str, Any]:
    """POST one hook request with a fresh JWT; RuntimeError with the status on failure."""
    url = f"{service_url}/cds-services/{SERVICE_ID}"
    response = session.post(
        url, json=body, headers={"Authorization": f"Bearer {ehr.token(url)}"}, timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"patient-view answered {response.status_code}: {response.text[:500]}")
    return response.json()


def render_card(card: Mapping[str, Any]) -> list[str]:
    """One card as readable text lines."""
    assessment = card.get("extension", {}).get(ASSESSMENT_EXTENSION, {})
    scorer = assessment.get("scorer", {})
    source = card.get("source", {}).get("label", "")
    pathway, endotype = assessment.get("pathway", "?"), assessment.get("endotype", "?")
    synthetic = " (model trained on SYNTHETIC data)" if scorer.get("syntheticTrainingData") else ""
    lines = [
        f"  Summary:   {card.get('summary', '')}",
        f"  Pathway:   {pathway}   (endotype {endotype})",
        f"  Scorer:    {scorer.get('id', '?')} v{scorer.get('version', '?')}{synthetic}",
        f"  Source:    {source}",
        "  Markers:",
    ]
    markers = assessment.get("markers", {})
    lines += [f"    - {_marker_text(name, marker)}" for name, marker in markers.items()]
    lines += [] if markers else ["    (none)"]
    trends = _trend_lines(card.get("detail", ""))
    if trends:
        lines += ["  Trends:", *(f"    - {line}" for line in trends)]
    missing = ", ".join(assessment.get("missing", []))
    lines.append(f"  Missing:   {missing or 'nothing'}")
    for suggestion in card.get("suggestions", []):
        flag = " (recommended)" if suggestion.get("isRecommended") else ""
        lines.append(f"  Suggests:  {suggestion.get('label', '')}{flag}")
    for link in card.get("links", []):
        lines.append(f"  Link:      {link.get('label', '')} <{link.get('url', '')}>")
    return lines


def _trend_lines(detail: str) -> list[str]:
    """`Marker: baseline … → latest …` for each marker whose detail shows a trend."""
    trends, marker = [], ""
    for line in detail.splitlines():
        header = re.match(r"- \*\*(.+?)\*\*", line)
        if header:
            marker = header.group(1)
        elif "→ latest" in line:
            trends.append(f"{marker}: {line.strip().lstrip('- ').replace('`', '')}")
    return trends


def _marker_text(analyte: str, marker: Mapping[str, Any]) -> str:
    """`analyte: value unit at time (system|code)` from one extension marker."""
    value = marker.get("value")
    value_text = f"{value:g}" if isinstance(value, int | float) else "?"
    assumed = " (unit not sent; assumed from the code)" if marker.get("unitAssumed") else ""
    return (
        f"{analyte}: {marker.get('comparator') or ''}{value_text} {marker.get('unit', '')}"
        f"{assumed} at {marker.get('time', '?')} ({marker.get('code', '?')})"
    )


def print_patient(patient: DemoPatient, cards: Sequence[Mapping[str, Any]]) -> None:
    """The header for one patient, then each of its cards."""
    print(f"\n--- {patient.patient_id} (scenario: {patient.kind}; data by {patient.data_path}) ---")
    if not cards:
        print("  (no card)")
    for card in cards:
        print("\n".join(render_card(card)))


# --- the run ---


def load_demo_patients(fhir_base: str, now: datetime) -> None:
    """PUT the four synthetic scenario patients into the FHIR server."""
    from model.synth import scenario_patient

    for patient in DEMO_PATIENTS:
        load_resources(fhir_base, scenario_patient(patient.kind, patient.patient_id, now=now))


def show_cards(service_url: str, fhir_base: str, ehr: DemoEhr) -> None:
    """Discovery, then patient-view for each demo patient, printed as text."""
    with requests.Session() as session:
        templates = discover(session, service_url, ehr).get("prefetch", {})
        print(BANNER + "=" * 78)
        for patient in DEMO_PATIENTS:
            context = {"userId": DEMO_USER, "patientId": patient.patient_id}
            if patient.data_path == PREFETCH:
                prefetch = build_prefetch(fhir_base, templates, context)
                body = hook_request(patient.patient_id, fhir_base, prefetch=prefetch)
            else:
                access_token = secrets.token_urlsafe(32)  # the sandbox does not check it
                body = hook_request(patient.patient_id, fhir_base, access_token=access_token)
            print_patient(patient, call_hook(session, service_url, ehr, body).get("cards", []))
        print("\n" + BANNER + "=" * 78)


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C, so both processes are cleaned up."""
    raise KeyboardInterrupt


def wait_for_interrupt() -> None:
    """Say how to stop, then block until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)


def run(args: argparse.Namespace) -> int:
    """Start everything, print the cards, then wait for Ctrl-C unless `--once`; clean up."""
    try:
        return _run_demo(args)
    except (RuntimeError, requests.RequestException) as problem:
        print(f"demo failed: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; both servers stopped", file=sys.stderr)
        return 130


def _run_demo(args: argparse.Namespace) -> int:
    """The demo proper; processes and the temporary directory are cleaned up on any exit."""
    ehr = DemoEhr()
    port = args.port or free_port()
    service_url = f"http://{LOOPBACK}:{port}"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-demo-")))
        print(f"starting the sandbox FHIR server (sekmet) in {workdir} ...", flush=True)
        sandbox = stack.enter_context(SandboxFhir.start(workdir / "sekmet", port=args.fhir_port))
        load_demo_patients(sandbox.base_url, datetime.now(UTC))
        config = write_service_config(workdir, port=port, ehr=ehr, fhir_base=sandbox.base_url)
        print(f"starting picu-endotype serve on {service_url} ...", flush=True)
        stack.enter_context(running_service(config, service_url, workdir / "service.log"))
        show_cards(service_url, sandbox.base_url, ehr)
        print(f"CDS service:  {service_url}/cds-services   (model card: {service_url}/model-card)")
        print(f"FHIR server:  {sandbox.base_url}   (console: {sandbox.console_url})")
        if not args.once:
            wait_for_interrupt()
    return 0
