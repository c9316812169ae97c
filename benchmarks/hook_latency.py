"""Hook latency on loopback: the service against a trivial Flask endpoint, both under gunicorn.

Run from the repository root (the sandbox FHIR server must be installed; `python3 dev.py test`
does that):

    uv run python benchmarks/hook_latency.py [--requests 2000] [--threads 4]

Both servers get the worker settings `picu-endotype serve` derives from one settings file. A
keep-alive HTTP client with N threads sends a fixed number of requests (capped in time) to each
of: the trivial endpoint, the hook with complete prefetch, and the hook querying the sandbox FHIR
server directly. JWTs are signed before timing starts, one per request (each `jti` is single-use).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, jsonify

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    SandboxFhir,
    build_prefetch,
    closed_loop,
    discover,
    free_port,
    hook_request,
    latency_percentile,
    load_resources,
    running_service,
    stop_process,
    wait_for_health,
    write_service_config,
)

PATIENT_ID = "bench-hyperinflammatory"
TRIVIAL_PATH = "/trivial"
WARM_UP_REQUESTS = 20

Request = tuple[str, str, bytes | None, dict[str, str]]  # method, path, body, headers


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured."""

    name: str
    completed: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]

    @property
    def requests_per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency (ms) below which `fraction` of the requests finished."""
        return latency_percentile(self.latencies_ms, fraction)


# --- the trivial server ---


def trivial_app() -> Flask:
    """The floor: a Flask app that answers a small JSON document and nothing else."""
    app = Flask("trivial")

    @app.get(TRIVIAL_PATH)
    def trivial() -> Any:
        return jsonify({"status": "ok", "service": "trivial"})

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    return app


def serve_trivial(config: str, port: int) -> int:
    """Run the trivial app under gunicorn with the options `picu-endotype serve` would use."""
    from cds_service.serve import GunicornApplication, gunicorn_options
    from cds_service.settings import load_settings

    options = gunicorn_options(load_settings(config, port=port))
    GunicornApplication(trivial_app(), options).run()
    return 0


# --- the load client ---


def drive(
    port: int, requests_to_send: Sequence[Request], threads: int, time_cap: float
) -> LoadResult:
    """Send the requests over `threads` keep-alive connections; stop early at `time_cap` s."""
    pending = iter(requests_to_send)
    result = closed_loop(port, lambda: next(pending, None), threads, time_cap)
    return LoadResult("", result.completed, result.errors, result.seconds, result.latencies_ms)


# --- the requests ---


def hook_requests(
    count: int, ehr: DemoEhr, audience: str, make_body: Callable[[], dict[str, Any]]
) -> list[Request]:
    """`count` hook POSTs, each with its own pre-signed JWT and hookInstance."""
    path = f"/cds-services/{SERVICE_ID}"
    return [
        (
            "POST",
            path,
            json.dumps(make_body()).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {ehr.token(audience)}"},
        )
        for _ in range(count)
    ]


def measure(name: str, port: int, load: list[Request], args: argparse.Namespace) -> LoadResult:
    """Warm up, then measure one scenario."""
    drive(port, load[:WARM_UP_REQUESTS], 1, args.time_cap)
    result = drive(port, load[WARM_UP_REQUESTS:], args.threads, args.time_cap)
    return LoadResult(name, result.completed, result.errors, result.seconds, result.latencies_ms)


def report(results: Sequence[LoadResult], threads: int) -> str:
    """The figures as a plain-text table, then the ratios against the trivial endpoint."""
    lines = [
        f"loopback, {threads} client threads, gunicorn workers from the same settings; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        f"{'scenario':<32}{'requests':>9}{'errors':>8}{'req/s':>9}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<32}{r.completed:>9}{r.errors:>8}{r.requests_per_second:>9.0f}"
            f"{r.percentile(0.5):>9.1f}{r.percentile(0.95):>9.1f}{r.percentile(0.99):>9.1f}"
        )
    floor = results[0]
    lines.append("")
    for r in results[1:]:
        throughput = r.requests_per_second / floor.requests_per_second
        lines.append(
            f"{r.name} / {floor.name}: throughput x{throughput:.2f}, "
            f"p50 x{r.percentile(0.5) / floor.percentile(0.5):.1f}, "
            f"p99 x{r.percentile(0.99) / floor.percentile(0.99):.1f}"
        )
    return "\n".join(lines)


# --- the run ---


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per prefetch/trivial run")
    parser.add_argument("--query-requests", type=int, default=400, help="hook with FHIR queries")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client connections")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per run, at most")
    parser.add_argument("--serve-trivial", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox, the service and the trivial server; measure; print; clean up."""
    args = parse_args(argv)
    if args.serve_trivial:
        return serve_trivial(args.serve_trivial, args.port)
    ehr = DemoEhr()
    service_port, trivial_port = free_port(), free_port()
    service_url = f"http://{LOOPBACK}:{service_port}"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-bench-")))
        sandbox = stack.enter_context(SandboxFhir.start(workdir / "sekmet"))
        from model.synth import scenario_patient

        patient = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
        load_resources(sandbox.base_url, patient)
        config = write_service_config(
            workdir, port=service_port, ehr=ehr, fhir_base=sandbox.base_url
        )
        stack.enter_context(running_service(config, service_url, workdir / "service.log"))
        trivial_log = stack.enter_context((workdir / "trivial.log").open("wb"))
        trivial = subprocess.Popen(
            [sys.executable, __file__, "--serve-trivial", str(config), "--port", str(trivial_port)],
            stdin=subprocess.DEVNULL,
            stdout=trivial_log,
            stderr=trivial_log,
        )
        stack.callback(stop_process, trivial)
        wait_for_health(
            trivial, f"http://{LOOPBACK}:{trivial_port}/healthz", workdir / "trivial.log"
        )
        print(report(run_scenarios(args, ehr, service_url, sandbox, trivial_port), args.threads))
    return 0


def run_scenarios(
    args: argparse.Namespace,
    ehr: DemoEhr,
    service_url: str,
    sandbox: SandboxFhir,
    trivial_port: int,
) -> list[LoadResult]:
    """Measure the trivial endpoint, the hook with prefetch, the hook with direct queries."""
    import requests

    with requests.Session() as session:
        templates = discover(session, service_url, ehr).get("prefetch", {})
    prefetch = build_prefetch(sandbox.base_url, templates, {"patientId": PATIENT_ID})
    audience = f"{service_url}/cds-services/{SERVICE_ID}"
    service_port = int(service_url.rsplit(":", 1)[1])
    total = args.requests + WARM_UP_REQUESTS
    trivial = [("GET", TRIVIAL_PATH, None, {})] * total
    with_prefetch = hook_requests(
        total, ehr, audience, lambda: hook_request(PATIENT_ID, sandbox.base_url, prefetch=prefetch)
    )
    token = "bench-" + "x" * 24  # the sandbox accepts any bearer token
    with_queries = hook_requests(
        args.query_requests + WARM_UP_REQUESTS,
        ehr,
        audience,
        lambda: hook_request(PATIENT_ID, sandbox.base_url, access_token=token),
    )
    return [
        measure("trivial endpoint", trivial_port, trivial, args),
        measure("hook, complete prefetch", service_port, with_prefetch, args),
        measure("hook, direct FHIR queries", service_port, with_queries, args),
    ]


if __name__ == "__main__":
    sys.exit(main())
