"""Hook throughput with the SQLite default and with PostgreSQL, in one run, and their ratio.

Starts the sandbox FHIR server and a loopback PostgreSQL (`devtools.sandbox_postgres`), then runs
`picu-endotype serve` (2 workers) twice with the same settings except `database_url`, and drives
each with the same complete-prefetch hooks (each hook: one replay-store insert and one audit
record, both committed before the answer). Prints one row per engine and PostgreSQL / SQLite.

    uv run python benchmarks/storage_throughput.py [--requests 1500] [--threads 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import requests
from hook_latency import (
    PATIENT_ID,
    WARM_UP_REQUESTS,
    hook_requests,
    measure,
    report,
)

from cds_service.discovery import SERVICE_ID
from devtools.ehr import DemoEhr, build_prefetch, discover, hook_request
from devtools.sandbox_fhir import LOOPBACK, SandboxFhir, free_port, load_resources
from devtools.sandbox_postgres import PostgresServer
from devtools.service import running_service, service_config_toml


def _config(workdir: Path, port: int, ehr: DemoEhr, fhir_base: str, database_url: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    body = service_config_toml(
        public_base_url=f"http://{LOOPBACK}:{port}",
        port=port,
        state_dir=workdir / "var",
        ehr=ehr,
        fhir_base=fhir_base,
    )
    config = workdir / "settings.toml"
    config.write_text(
        f"database_url = {json.dumps(database_url)}\n"
        + body
        + '\n[audit]\npseudonym_key = "benchmark-key"\n'
    )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--time-cap", type=float, default=60.0)
    args = parser.parse_args(argv)
    ehr = DemoEhr()
    results = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-bench-")))
        sandbox = stack.enter_context(SandboxFhir.start(workdir / "sekmet"))
        from model.synth import scenario_patient

        load_resources(
            sandbox.base_url,
            scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC)),
        )
        postgres = stack.enter_context(PostgresServer())
        engines = {
            "sqlite": f"sqlite:///{workdir / 'sqlite' / 'picu-endotype.sqlite3'}",
            "postgresql": postgres.create_database("bench"),
        }
        for engine, url in engines.items():
            port = free_port()
            service_url = f"http://{LOOPBACK}:{port}"
            config = _config(workdir / engine, port, ehr, sandbox.base_url, url)
            with running_service(config, service_url, workdir / engine / "service.log"):
                with requests.Session() as session:
                    templates = discover(session, service_url, ehr).get("prefetch", {})
                prefetch = build_prefetch(sandbox.base_url, templates, {"patientId": PATIENT_ID})
                load = hook_requests(
                    args.requests + WARM_UP_REQUESTS,
                    ehr,
                    f"{service_url}/cds-services/{SERVICE_ID}",
                    lambda prefetch=prefetch: hook_request(
                        PATIENT_ID, sandbox.base_url, prefetch=prefetch
                    ),
                )
                results.append(measure(f"hook, prefetch, {engine}", port, load, args))
    print(report(results, args.threads))
    sqlite_rps, postgres_rps = (result.requests_per_second for result in results)
    print(f"PostgreSQL / SQLite throughput: x{postgres_rps / sqlite_rps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
