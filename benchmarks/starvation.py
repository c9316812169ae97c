"""Starvation: how other clients fare while slow clients or a stalled FHIR server hold requests.

Run from the repository root:

    uv run python benchmarks/starvation.py           # baseline and this tree, 30 s per scenario
    uv run python benchmarks/starvation.py --quick   # 10 s per scenario

For the baseline revision and for this tree (`picu-endotype serve`, 2 workers), two scenarios:

- slow clients: `--slow` connections (default 2) each send a request line and then one header
  line every 2 s, never finishing; meanwhile a prober asks `GET /healthz` on a new connection
  every 0.2 s (5 s timeout) and a client sends a hook with complete prefetch every 0.2 s;
- stalled FHIR: two hooks without prefetch wait on a FHIR stub that answers after 60 s (the
  service's FHIR limits are raised so that they keep waiting); meanwhile the same prober and the
  same prefetch-only hooks.

Printed per tree and scenario: answered / sent, p50, p99 and the slowest answer of the health
probes and of the prefetch-only hooks (a request that failed or timed out counts as not answered).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    LatencyFhir,
    build_prefetch,
    compared_trees,
    discover,
    free_port,
    hook_request,
    loopback_settings,
    served,
)

PATIENT_ID = "bench-hyperinflammatory"
BEFORE = "8a4a616"  # main before the concurrent worker model
PROBE_INTERVAL = 0.2
DRIP_INTERVAL = 2.0
STALL_SECONDS = 60.0
STUB_TOKEN = "bench-" + "x" * 24


@dataclass
class Probes:
    """Latencies (ms) of answered requests, and how many were sent."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)

    def line(self, name: str) -> str:
        ordered = sorted(self.latencies)
        if not ordered:
            return f"{name:<22}{0:>5}/{self.sent:<5} answered"

        def at(fraction: float) -> float:
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

        return (
            f"{name:<22}{len(ordered):>5}/{self.sent:<5} answered   p50 {at(0.5):7.0f} ms"
            f"   p99 {at(0.99):7.0f} ms   slowest {ordered[-1]:7.0f} ms"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s per scenario")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario")
    parser.add_argument("--slow", type=int, default=2, help="slow client connections")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 10.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ehr = DemoEhr()
    lines = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-starve-")))
        from model.synth import scenario_patient

        resources = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
        quick_fhir = stack.enter_context(LatencyFhir.spawn(resources, 0.0))
        stalled_fhir = stack.enter_context(LatencyFhir.spawn(resources, STALL_SECONDS))
        trees = compared_trees(args.baseline, workdir)
        bases = [quick_fhir.base_url, stalled_fhir.base_url]
        deadline = STALL_SECONDS + 30  # the stalled server is waited for, not given up on
        fhir = {"timeout_seconds": deadline, "deadline_seconds": deadline}
        for index, tree in enumerate(trees):
            port = free_port()
            config = workdir / f"settings-{index}.toml"
            config.write_text(
                loopback_settings(port, workdir / f"var-{index}", ehr, bases, fhir=fhir)
            )
            with served(tree, config, workdir / f"service-{index}.log") as service:
                prefetch = _prefetch(service.base_url, ehr, quick_fhir)
                for scenario in ("slow clients", "stalled FHIR"):
                    health, hooks = _scenario(
                        scenario, service.port, ehr, prefetch, stalled_fhir, args
                    )
                    lines += [
                        f"{tree.label}, {scenario}:",
                        health.line("  GET /healthz"),
                        hooks.line("  prefetch-only hooks"),
                    ]
                    print("\n".join(lines[-3:]), flush=True)
    print()
    print(
        f"{args.slow} slow clients (one header line every {DRIP_INTERVAL:g} s) or 2 hooks on a "
        f"FHIR server answering after {STALL_SECONDS:g} s; {args.seconds:g} s each"
    )
    print("\n".join(lines))
    return 0


def _prefetch(service_url: str, ehr: DemoEhr, fhir: LatencyFhir) -> dict:
    import requests

    with requests.Session() as session:
        templates = discover(session, service_url, ehr).get("prefetch", {})
    return build_prefetch(fhir.base_url, templates, {"patientId": PATIENT_ID})


def _scenario(
    scenario: str,
    port: int,
    ehr: DemoEhr,
    prefetch: dict,
    stalled: LatencyFhir,
    args: argparse.Namespace,
) -> tuple[Probes, Probes]:
    """Start the troublemakers, probe for `args.seconds`, stop everything."""
    stop = threading.Event()
    audience = f"http://{LOOPBACK}:{port}/cds-services/{SERVICE_ID}"
    if scenario == "slow clients":
        makers = [threading.Thread(target=_drip, args=(port, stop)) for _ in range(args.slow)]
    else:
        body = hook_request(PATIENT_ID, stalled.base_url, access_token=STUB_TOKEN)
        makers = [
            threading.Thread(
                target=_post, args=(port, body, ehr.token(audience), STALL_SECONDS + 60)
            )
            for _ in range(2)
        ]
    for maker in makers:
        maker.daemon = True
        maker.start()
    time.sleep(1.0)  # the troublemakers hold their requests now
    hook_body = hook_request(PATIENT_ID, "http://unused.invalid/fhir", prefetch=prefetch)
    health, hooks = Probes(), Probes()
    probers = [
        threading.Thread(target=_probe, args=(stop, health, lambda: _get(port, "/healthz"))),
        threading.Thread(
            target=_probe,
            args=(stop, hooks, lambda: _post(port, hook_body, ehr.token(audience), 5.0)),
        ),
    ]
    for prober in probers:
        prober.start()
    time.sleep(args.seconds)
    stop.set()
    for prober in probers:
        prober.join()
    return health, hooks


def _probe(stop: threading.Event, probes: Probes, call: Callable[[], bool]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        probes.sent += 1
        if call():
            probes.latencies.append((time.perf_counter() - started) * 1000)
        stop.wait(max(0.0, PROBE_INTERVAL - (time.perf_counter() - started)))


def _get(port: int, path: str) -> bool:
    return _request(port, "GET", path, None, {}, 5.0)


def _post(port: int, body: dict, token: str, timeout: float) -> bool:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    path = f"/cds-services/{SERVICE_ID}"
    return _request(port, "POST", path, json.dumps(body).encode(), headers, timeout)


def _request(
    port: int, method: str, path: str, body: bytes | None, headers: dict, timeout: float
) -> bool:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _drip(port: int, stop: threading.Event) -> None:
    """A client that sends its headers one line every DRIP_INTERVAL seconds, reconnecting."""
    while not stop.is_set():
        try:
            with socket.create_connection((LOOPBACK, port), timeout=DRIP_INTERVAL * 2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                number = 0
                while not stop.wait(DRIP_INTERVAL):
                    sock.sendall(f"X-Slow-{number}: {'x' * 20}\r\n".encode())
                    number += 1
        except OSError:
            stop.wait(0.1)


if __name__ == "__main__":
    sys.exit(main())
