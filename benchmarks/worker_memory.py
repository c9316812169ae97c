"""Resident memory of each gunicorn worker while it answers 10,000 hooks.

Run from the repository root:

    uv run python benchmarks/worker_memory.py           # baseline and this tree, 10,000 hooks
    uv run python benchmarks/worker_memory.py --quick   # 3,000 hooks

For the baseline revision and for this tree it starts `picu-endotype serve` (2 workers) and
sends hooks from 8 closed-loop clients in batches of 1,000: nine in ten carry complete prefetch,
one in ten makes the service query a FHIR stub (no latency) for everything. After each batch it
reads every worker's resident set size (VmRSS). Printed per tree: each worker's RSS after 1,000
hooks and at the end, the change between them, and the largest change of any worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    LatencyFhir,
    build_prefetch,
    closed_loop,
    compared_trees,
    discover,
    free_port,
    hook_request,
    loopback_settings,
    rss_kib,
    served,
)

PATIENT_ID = "bench-hyperinflammatory"
BEFORE = "8a4a616"  # main before the concurrent worker model
BATCH = 1000
STUB_TOKEN = "bench-" + "x" * 24


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 hooks")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--hooks", type=int, default=10_000, help="hooks per tree")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    args = parser.parse_args(argv)
    if args.quick:
        args.hooks = 3000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ehr = DemoEhr()
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    path = f"/cds-services/{SERVICE_ID}"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-memory-")))
        from model.synth import scenario_patient

        resources = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
        stub = stack.enter_context(LatencyFhir.spawn(resources, 0.0))
        trees = compared_trees(args.baseline, workdir)
        tokens = [ehr.token(base_url + path, lifetime=3600) for _ in range(args.hooks)]
        report = []
        for index, tree in enumerate(trees):
            config = workdir / f"settings-{index}.toml"
            config.write_text(
                loopback_settings(port, workdir / f"var-{index}", ehr, [stub.base_url])
            )
            with served(tree, config, workdir / f"service-{index}.log") as service:
                prefetch = _prefetch(service.base_url, ehr, stub)
                requests = _requests(path, tokens, prefetch, stub.base_url)
                samples = _drive(service, requests, args)
            report.append((tree.label, samples))
            print(_rows(tree.label, samples), flush=True)
    print()
    for label, samples in report:
        print(_summary(label, samples))
    return 0


def _prefetch(service_url: str, ehr: DemoEhr, stub: LatencyFhir) -> dict:
    import requests

    with requests.Session() as session:
        templates = discover(session, service_url, ehr).get("prefetch", {})
    return build_prefetch(stub.base_url, templates, {"patientId": PATIENT_ID})


def _requests(path: str, tokens: list[str], prefetch: dict, fhir_base: str) -> Iterator:
    """Nine hooks in ten with complete prefetch, one in ten querying the stub."""
    with_prefetch = json.dumps(hook_request(PATIENT_ID, fhir_base, prefetch=prefetch)).encode()
    queried = json.dumps(hook_request(PATIENT_ID, fhir_base, access_token=STUB_TOKEN)).encode()
    for number, token in enumerate(tokens):
        body = queried if number % 10 == 9 else with_prefetch
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        yield ("POST", path, body, headers)


def _drive(service, requests: Iterator, args: argparse.Namespace) -> list[tuple[int, dict]]:
    """Batches of BATCH hooks; (hooks so far, {worker pid: RSS KiB}) after each."""
    samples, sent, errors = [], 0, 0
    while sent < args.hooks:
        batch = iter([next(requests) for _ in range(min(BATCH, args.hooks - sent))])
        result = closed_loop(
            service.port, lambda batch=batch: next(batch, None), args.clients, 3600
        )
        sent += result.completed
        errors += result.errors
        samples.append((sent, {pid: rss_kib(pid) for pid in service.worker_pids()}))
    if errors:
        print(f"  {errors} hooks were not answered 200")
    return samples


def _rows(label: str, samples: list[tuple[int, dict]]) -> str:
    lines = [f"{label}: RSS per worker (MiB) after each {BATCH} hooks"]
    for sent, by_pid in samples:
        shown = "  ".join(f"{pid}: {kib / 1024:6.1f}" for pid, kib in sorted(by_pid.items()))
        lines.append(f"  {sent:>6}  {shown}")
    return "\n".join(lines)


def _summary(label: str, samples: list[tuple[int, dict]]) -> str:
    (first_count, first), (last_count, last) = samples[0], samples[-1]
    changes = {pid: (last[pid] - first[pid]) / first[pid] * 100 for pid in first if pid in last}
    shown = ", ".join(
        f"{first[pid] / 1024:.1f} -> {last[pid] / 1024:.1f} MiB ({change:+.1f} %)"
        for pid, change in sorted(changes.items())
    )
    largest = max(changes.values(), key=abs) if changes else float("nan")
    return (
        f"{label}: workers after {first_count} and {last_count} hooks: {shown}; "
        f"largest change {largest:+.1f} %"
    )


if __name__ == "__main__":
    sys.exit(main())
