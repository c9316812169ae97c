"""The demo: the service, a sandbox FHIR server and five synthetic children.

Run it with `python3 dev.py demo` (or `picu-endotype-demo` in the development environment).

The demo plays the EHR: it registers a throw-away ES384 key as a client, calls discovery, then
calls patient-view for each synthetic child (three with prefetch filled from the discovery
templates, two with `fhirAuthorization` so the service queries the FHIR server itself) and prints
each card as text, its markdown detail with its length included. Four children are in the PICU
(persistent, quiescent, missing panel with a pending order, resolving), each with vital signs,
ventilation or infusions in the chart, so that the service finds the onset of organ dysfunction
(a Phoenix score of 2 or more) and anchors the card there; the fifth is on a general ward and gets
no card. Nothing it prints or logs contains a token.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from cds_service.cards import EXTENSION_KEY as ASSESSMENT_EXTENSION
from devtools.ehr import DEMO_USER, DemoEhr, build_prefetch, call_hook, discover, hook_request
from devtools.sandbox_fhir import LOOPBACK, SandboxFhir, free_port, load_resources
from devtools.service import running_service, write_service_config
from model.synth import scenario_patient

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
    DemoPatient("general-ward", "demo-general-ward", PREFETCH),
)

BANNER = (
    "=" * 78
    + "\n  SYNTHETIC PATIENTS: generated test data, not real people. Not for clinical use.\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the demo."""
    parser.add_argument("--once", action="store_true", help="print the cards, then exit")
    parser.add_argument("--port", type=int, default=None, help="service port (default: free)")
    parser.add_argument(
        "--fhir-port", type=int, default=None, help="sandbox FHIR server port (default: free)"
    )


# --- printing cards ---


def render_card(card: Mapping[str, Any]) -> list[str]:
    """One card as readable text lines: the decision, its context, then the markdown detail."""
    assessment = card.get("extension", {}).get(ASSESSMENT_EXTENSION, {})
    scorer = assessment.get("scorer", {})
    pathway, endotype = assessment.get("pathway", "?"), assessment.get("endotype", "?")
    synthetic = " (model trained on SYNTHETIC data)" if scorer.get("syntheticTrainingData") else ""
    context = assessment.get("context", {})
    anchor = context.get("anchor", {})
    persistence = (assessment.get("persistence") or {}).get("state", "-")
    lines = [
        f"  Summary:     {card.get('summary', '')}",
        f"  Pathway:     {pathway}   (endotype {endotype}; persistence {persistence})",
        f"  Anchor:      {anchor.get('source', '?')} {anchor.get('time', '?')}"
        f" ({context.get('hours_since_anchor', '?')} h ago)",
        f"  Phoenix:     {_phoenix_text(context.get('phoenix') or {})}",
        f"  Scorer:      {scorer.get('id', '?')} v{scorer.get('version', '?')}{synthetic}",
        "  Markers:",
    ]
    markers = assessment.get("markers", {})
    lines += [f"    - {_marker_text(name, marker)}" for name, marker in markers.items()]
    lines += [] if markers else ["    (none)"]
    lines.append(f"  Missing:     {', '.join(assessment.get('missing', [])) or 'nothing'}")
    lines.append(f"  Pending:     {', '.join(assessment.get('pending', [])) or 'nothing'}")
    for suggestion in card.get("suggestions", []):
        lines.append(f"  Suggests:    {suggestion.get('label', '')}")
    for link in card.get("links", []):
        lines.append(f"  Link:        {link.get('label', '')} <{link.get('url', '')}>")
    detail = card.get("detail", "")
    lines.append(f"  Detail ({len(detail)} characters):")
    lines += [f"    | {line}" for line in detail.splitlines()]
    return lines


def _phoenix_text(phoenix: Mapping[str, Any]) -> str:
    """The latest Phoenix score, its onset and the series' length, from the extension."""
    if not phoenix:
        return "off"
    if phoenix.get("outOfScope") or phoenix.get("notComputed"):
        return f"not scored ({phoenix.get('outOfScope') or phoenix.get('notComputed')})"
    latest, onset = phoenix.get("latest") or {}, phoenix.get("onset") or {}
    onset_text = f"onset {onset['time']}" if onset else "no onset"
    points = len(phoenix.get("series", []))
    score = f"{latest.get('total', '?')} at {latest.get('time', '?')}"
    return f"{score}; {onset_text}; {points} hourly points"


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
        print("  (no card: the service answers only for children in the PICU)")
    for card in cards:
        print("\n".join(render_card(card)))


# --- the run ---


def load_demo_patients(fhir_base: str, now: datetime) -> None:
    """PUT the five synthetic scenario children into the FHIR server."""
    for patient in DEMO_PATIENTS:
        load_resources(fhir_base, scenario_patient(patient.kind, patient.patient_id, now=now))


def show_overrides_report(config: Path, workdir: Path) -> None:
    """`picu-endotype report overrides` on the audit trail the demo service just wrote."""
    from cds_service.cli import main as picu_endotype

    today = datetime.now(UTC).date().isoformat()
    print("\nThe audit trail of these hooks (picu-endotype report overrides):", flush=True)
    arguments = ["report", "--config", str(config), "overrides", "--since", today]
    picu_endotype([*arguments, "--csv", str(workdir / "overrides.csv")])


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
    """Say how to stop, then block until Ctrl-C or SIGTERM.

    Ctrl-C is handled explicitly: a process started in the background by a shell script inherits
    SIGINT ignored, and Python then leaves it ignored.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        show_overrides_report(config, workdir)
        print(f"CDS service:  {service_url}/cds-services   (model card: {service_url}/model-card)")
        print(f"FHIR server:  {sandbox.base_url}   (console: {sandbox.console_url})")
        if not args.once:
            wait_for_interrupt()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: `python -m devtools.demo [--once] [--port N] [--fhir-port N]`."""
    parser = argparse.ArgumentParser(prog="picu-endotype-demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
