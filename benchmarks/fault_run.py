"""Fault run: the served service against a hostile FHIR server, one fault at a time, on loopback.

Run from the repository root:

    uv run python benchmarks/fault_run.py [--faults gzip-bomb,drip] [--settle 10]

For each fault it starts a hostile FHIR server (`tests/support/hostile_fhir.py`) and a fresh
`picu-endotype serve` with one gunicorn worker, running the code of the tree this script is in,
with default settings. It sends one hook whose prefetch holds every key but IL-6, so the service
makes exactly one FHIR query, which meets the fault (for `jwks-drip`, the client's key set URL
drips instead and the hook carries complete prefetch). It prints the answer's status and time,
the worker's resident memory before, at its peak (sampled every 10 ms from the request until
`--settle` seconds after the answer) and the growth, and, after the settle time, the worker's
thread count and open file descriptors and the connections the hostile server still serves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds_service.discovery import SERVICE_ID  # noqa: E402
from devtools import LOOPBACK, DemoEhr, free_port, stop_process, wait_for_health  # noqa: E402
from fhir_mappings.panel import load_panel  # noqa: E402
from tests.support.hostile_fhir import MIB, Fault, HostileFhir  # noqa: E402

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PANEL_KEYS = tuple(load_panel().analytes)
# fault name -> (server fault, size, whether the key-set URL is the faulty endpoint)
FAULTS: dict[str, tuple[Fault, int, bool]] = {
    "gzip-bomb": (Fault.GZIP_BOMB, 1024 * MIB, False),  # about 1 MB that unpacks to 1 GiB
    "deflate-bomb": (Fault.DEFLATE_BOMB, 1024 * MIB, False),
    "oversized": (Fault.OVERSIZED, 200 * MIB, False),  # 200 MB plain, chunked
    "empty-entries": (Fault.EMPTY_ENTRIES, 2_000_000, False),
    "ignores-count": (Fault.IGNORES_COUNT, 54 * MIB, False),  # 54 MB of real Observations
    "deep": (Fault.DEEP, 100_000, False),
    "drip": (Fault.DRIP, 0, False),  # one byte per 100 ms
    "jwks-drip": (Fault.DRIP, 0, True),
}


@dataclass
class FaultResult:
    name: str
    status: int | str
    seconds: float
    rss_before_mib: float
    rss_peak_mib: float
    threads_after: int
    fds_after: int
    server_connections_after: int

    @property
    def growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_before_mib


def resident_mib(pid: int) -> float:
    """A process's resident set size now, in MiB (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES / MIB
    except OSError:
        return 0.0


def children(pid: int) -> list[int]:
    """The direct child processes of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def count_entries(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return -1


def service_config(workdir: Path, port: int, ehr: DemoEhr, fhir: HostileFhir, jwks: bool) -> Path:
    """One worker, default limits, the hostile server as the client's FHIR server."""
    text = json.dumps
    key_source = f"jwks_url = {text(fhir.jwks_url)}" if jwks else f"jwks = {text(ehr.jwks_json())}"
    config = workdir / "settings.toml"
    config.write_text(
        "\n".join(
            [
                f"public_base_url = {text(f'http://{LOOPBACK}:{port}')}",
                f"host = {text(LOOPBACK)}",
                f"port = {port}",
                "workers = 1",
                f"state_dir = {text(str(workdir / 'var'))}",
                f"insecure_http_fhir_hosts = [{text(LOOPBACK)}]",
                "",
                "[[clients]]",
                f"iss = {text(ehr.issuer)}",
                key_source,
                f"fhir_servers = [{text(fhir.base_url)}]",
                "",
            ]
        )
    )
    return config


def hook_body(fhir_base: str, query_il6: bool) -> dict[str, Any]:
    """Prefetch with every key (the patient, no results), less IL-6 when it is to be queried."""
    prefetch: dict[str, Any] = {"patient": {"resourceType": "Patient", "id": "fault-1"}}
    prefetch.update({key: None for key in PANEL_KEYS if not (query_il6 and key == "il6")})
    return {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "fhirServer": fhir_base,
        "fhirAuthorization": {
            "access_token": "fault-run-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "fault-run",
        },
        "context": {"userId": "Practitioner/fault-run", "patientId": "fault-1"},
        "prefetch": prefetch,
    }


def run_fault(name: str, settle: float) -> FaultResult:
    fault, size, jwks = FAULTS[name]
    ehr, port = DemoEhr(), free_port()
    service_url = f"http://{LOOPBACK}:{port}"
    with tempfile.TemporaryDirectory() as temp, HostileFhir(fault, size=size) as fhir:
        fhir.fault_jwks = jwks
        fhir.jwks = json.loads(ehr.jwks_json())
        fhir.prepare()
        workdir = Path(temp)
        config = service_config(workdir, port, ehr, fhir, jwks)
        log_path = workdir / "service.log"
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--config", str(config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=ROOT)
        try:
            wait_for_health(process, f"{service_url}/healthz", log_path)
            [worker] = children(process.pid)
            return _measure(name, service_url, worker, ehr, fhir, settle, query_il6=not jwks)
        finally:
            stop_process(process)


def _measure(
    name: str,
    service_url: str,
    worker: int,
    ehr: DemoEhr,
    fhir: HostileFhir,
    settle: float,
    *,
    query_il6: bool,
) -> FaultResult:
    before = resident_mib(worker)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], resident_mib(worker))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    hook_url = f"{service_url}/cds-services/{SERVICE_ID}"
    headers = {"Authorization": f"Bearer {ehr.token(hook_url)}"}
    started = time.monotonic()
    try:
        status: int | str = requests.post(
            hook_url, json=hook_body(fhir.base_url, query_il6), headers=headers, timeout=120
        ).status_code
    except requests.RequestException as error:
        status = type(error).__name__
    seconds = time.monotonic() - started
    time.sleep(settle)
    stop.set()
    sampler.join()
    return FaultResult(
        name=name,
        status=status,
        seconds=seconds,
        rss_before_mib=before,
        rss_peak_mib=max(peak[0], resident_mib(worker)),
        threads_after=count_entries(f"/proc/{worker}/task"),
        fds_after=count_entries(f"/proc/{worker}/fd"),
        server_connections_after=fhir.open_connections,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault names")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds watched after each answer"
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = sorted(set(names) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {sorted(FAULTS)}")
    print(f"code under test: {ROOT}")
    header = (
        f"{'fault':<15}{'status':>8}{'answer s':>10}{'RSS MiB':>9}{'peak MiB':>10}"
        f"{'growth':>8}{'threads':>9}{'fds':>6}{'open conns':>12}"
    )
    print(header)
    for name in names:
        result = run_fault(name, args.settle)
        print(
            f"{result.name:<15}{result.status!s:>8}{result.seconds:>10.2f}"
            f"{result.rss_before_mib:>9.0f}{result.rss_peak_mib:>10.0f}{result.growth_mib:>8.0f}"
            f"{result.threads_after:>9}{result.fds_after:>6}{result.server_connections_after:>12}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
