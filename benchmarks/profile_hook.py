"""Profile hook calls in-process: the service's Flask app under its test client, no gunicorn.

Run from the repository root (the sandbox FHIR server must be installed):

    uv run python benchmarks/profile_hook.py [--calls 200] [--queries] [--top 30]

Starts the sandbox FHIR server with one synthetic patient, builds the complete prefetch from the
discovery templates, then times `--calls` hook calls (each with its own pre-signed JWT) and prints
the mean time per call and the cProfile functions with the largest cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

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

PATIENT_ID = "profile-hyperinflammatory"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="profiled hook calls")
    parser.add_argument("--queries", action="store_true", help="query the sandbox, no prefetch")
    parser.add_argument("--top", type=int, default=30, help="functions to print")
    parser.add_argument("--sort", default="cumulative", help="pstats order: cumulative, tottime")
    parser.add_argument("--no-profile", action="store_true", help="time only, without cProfile")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox, build the app, profile the calls, print the figures."""
    args = parse_args(argv)
    ehr = DemoEhr()
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    audience = f"{base_url}/cds-services/{SERVICE_ID}"
    with tempfile.TemporaryDirectory(prefix="picu-profile-") as tmp:
        workdir = Path(tmp)
        with SandboxFhir.start(workdir / "sekmet") as sandbox:
            from model.synth import scenario_patient

            patient = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
            load_resources(sandbox.base_url, patient)
            config = write_service_config(workdir, port=port, ehr=ehr, fhir_base=sandbox.base_url)
            app = create_app(load_settings(config))
            client = app.test_client()
            templates = client.get(
                "/cds-services",
                headers={"Authorization": f"Bearer {ehr.token(base_url + '/cds-services')}"},
            ).get_json()["services"][0]["prefetch"]
            prefetch = (
                None
                if args.queries
                else build_prefetch(sandbox.base_url, templates, {"patientId": PATIENT_ID})
            )
            token = "profile-" + "x" * 24 if args.queries else None
            calls = [
                (
                    json.dumps(
                        hook_request(
                            PATIENT_ID, sandbox.base_url, prefetch=prefetch, access_token=token
                        )
                    ).encode(),
                    {"Authorization": f"Bearer {ehr.token(audience)}"},
                )
                for _ in range(args.calls + 5)
            ]
            path = f"/cds-services/{SERVICE_ID}"
            for body, headers in calls[:5]:  # warm-up
                client.post(path, data=body, content_type="application/json", headers=headers)
            profiler = cProfile.Profile()
            started, cpu_started = time.perf_counter(), time.process_time()
            if not args.no_profile:
                profiler.enable()
            for body, headers in calls[5:]:
                response = client.post(
                    path, data=body, content_type="application/json", headers=headers
                )
                if response.status_code != 200:
                    print(f"status {response.status_code}: {response.data[:200]!r}")
                    return 1
            profiler.disable()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
    mode = "time only" if args.no_profile else "profiled"
    print(
        f"{args.calls} calls ({mode}): {elapsed / args.calls * 1000:.2f} ms wall, "
        f"{cpu / args.calls * 1000:.2f} ms CPU per call"
    )
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
