"""The query path: hooks whose data the service fetches from a FHIR server with injected latency.

Run from the repository root:

    uv run python benchmarks/query_path.py            # baseline and this tree, full grid
    uv run python benchmarks/query_path.py --quick    # 100 ms, 16 clients, shorter runs
    uv run python benchmarks/query_path.py --phoenix-off  # also this tree without Phoenix

A FHIR stub (`devtools.latency_fhir`, its own process) serves one synthetic patient and answers
every request after 100 ms or 300 ms, as a hospital's FHIR server might. Each variant of the
service (the baseline revision, then this tree; optionally this tree under other gunicorn worker
classes, `--worker-classes sync,gthread,gevent`) is started with `picu-endotype serve` and the
same settings file on the same port, and driven by 1, 4 and 16 closed-loop clients that send
hooks without prefetch (the service queries the stub for everything). Every hook carries its own
pre-signed JWT. Printed per cell: hooks/s, p50 and p99 latency, errors, FHIR requests per hook,
and this tree's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    LatencyFhir,
    LoadResult,
    SourceTree,
    closed_loop,
    export_revision,
    free_port,
    hook_request,
    loopback_settings,
    served,
    working_tree,
)

PATIENT_ID = "bench-hyperinflammatory"
BEFORE = "8a4a616"  # main before the concurrent worker model
WARM_UP_HOOKS = 8
STUB_TOKEN = "bench-" + "x" * 24  # the stub accepts any bearer token


@dataclass(frozen=True)
class Variant:
    """One way of serving: a source tree, and the gunicorn worker class forced (or its own)."""

    label: str
    tree: SourceTree
    worker_class: str | None = None
    phoenix_off: bool = False  # `phoenix.enabled = false` in its settings


@dataclass(frozen=True)
class Cell:
    """One measurement: a variant at one FHIR latency and one number of clients."""

    variant: str
    latency: float
    result: LoadResult
    fhir_requests: int

    @property
    def fhir_per_hook(self) -> float:
        return self.fhir_requests / self.result.completed if self.result.completed else 0.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 ms, 16 clients, 4 s per cell")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--latencies", default="0.1,0.3", help="FHIR latencies in seconds")
    parser.add_argument("--clients", default="1,4,16", help="numbers of concurrent clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per cell")
    parser.add_argument(
        "--worker-classes", default="", help="also run this tree under these gunicorn workers"
    )
    parser.add_argument(
        "--phoenix-off", action="store_true", help="also this tree with the Phoenix layer off"
    )
    parser.add_argument(
        "--serve", nargs=2, metavar=("WORKER_CLASS", "CONFIG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.latencies, args.clients, args.duration = "0.1", "16", 4.0
    return args


def serve_with_worker_class(worker_class: str, config: str) -> int:
    """`picu-endotype serve` with gunicorn's worker class replaced (for comparisons only)."""
    from cds_service.app import create_app
    from cds_service.serve import GunicornApplication, gunicorn_options
    from cds_service.settings import load_settings

    settings = load_settings(config)
    options = gunicorn_options(settings)
    options["worker_class"] = worker_class
    if worker_class != "gthread":
        options.pop("threads", None)
    GunicornApplication(create_app(settings), options).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_with_worker_class(*args.serve)
    latencies = [float(value) for value in args.latencies.split(",")]
    clients = [int(value) for value in args.clients.split(",")]
    ehr = DemoEhr()
    port = free_port()
    base_url = f"http://{LOOPBACK}:{port}"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-query-")))
        from model.synth import scenario_patient

        resources = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
        stubs = {
            latency: stack.enter_context(LatencyFhir.spawn(resources, latency))
            for latency in latencies
        }
        variants = list(_variants(args, workdir))
        per_client = int(args.duration / min(latencies)) + WARM_UP_HOOKS + 1
        hooks_needed = len(latencies) * sum(clients) * per_client
        tokens = _tokens(ehr, f"{base_url}/cds-services/{SERVICE_ID}", hooks_needed)
        cells: list[Cell] = []
        for index, variant in enumerate(variants):
            config = workdir / f"settings-{index}.toml"
            state_dir = workdir / f"var-{index}"
            config.write_text(
                loopback_settings(
                    port,
                    state_dir,
                    ehr,
                    [stub.base_url for stub in stubs.values()],
                    # the baseline predates the Phoenix layer and its settings table
                    **({"phoenix": {"enabled": False}} if variant.phoenix_off else {}),
                )
            )
            command = None
            if variant.worker_class:
                command = [sys.executable, __file__, "--serve", variant.worker_class]
            log = workdir / f"service-{index}.log"
            with served(variant.tree, config, log, command=command) as service:
                print(f"{variant.label}: healthy {service.startup_seconds:.1f} s after start")
                pool = iter(tokens)
                stub = next(iter(stubs.values()))
                cards = _cards_of_one_hook(service.port, stub, pool)
                print(f"{variant.label}: one hook answered with {cards} card(s)")
                for stub in stubs.values():
                    for count in clients:
                        cells.append(_measure(variant, service.port, stub, count, pool, args))
                        print(_row(cells[-1]), flush=True)
    print()
    print(report(cells, variants))
    return 0


def _variants(args: argparse.Namespace, workdir: Path) -> Iterator[Variant]:
    if args.baseline:
        tree = export_revision(args.baseline, workdir / "baseline", f"baseline {args.baseline}")
        yield Variant(tree.label, tree)
    yield Variant("this tree", working_tree())
    if args.phoenix_off:
        yield Variant("this tree, Phoenix off", working_tree(), phoenix_off=True)
    for worker_class in filter(None, args.worker_classes.split(",")):
        yield Variant(f"this tree, {worker_class}", working_tree(), worker_class)


def _tokens(ehr: DemoEhr, audience: str, count: int) -> list[str]:
    """Pre-signed JWTs; each variant has its own replay store, so each may use them all."""
    return [ehr.token(audience, lifetime=3600) for _ in range(count)]


def _measure(
    variant: Variant,
    port: int,
    stub: LatencyFhir,
    clients: int,
    tokens: Iterator[str],
    args: argparse.Namespace,
) -> Cell:
    path = f"/cds-services/{SERVICE_ID}"

    def next_request():
        token = next(tokens, None)
        if token is None:
            return None
        body = hook_request(PATIENT_ID, stub.base_url, access_token=STUB_TOKEN)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        return ("POST", path, json.dumps(body).encode(), headers)

    warm_up = iter(range(WARM_UP_HOOKS))
    closed_loop(port, lambda: next_request() if next(warm_up, None) is not None else None, 1, 60)
    stub.reset_count()
    result = closed_loop(port, next_request, clients, args.duration, variant.label)
    return Cell(variant.label, stub.latency, result, stub.request_count())


def _cards_of_one_hook(port: int, stub: LatencyFhir, tokens: Iterator[str]) -> int:
    """How many cards one query-path hook gets (1: the patient is in the PICU, data complete)."""
    import requests

    body = hook_request(PATIENT_ID, stub.base_url, access_token=STUB_TOKEN)
    reply = requests.post(
        f"http://{LOOPBACK}:{port}/cds-services/{SERVICE_ID}",
        json=body,
        headers={"Authorization": f"Bearer {next(tokens)}"},
        timeout=60,
    )
    reply.raise_for_status()
    return len(reply.json()["cards"])


def _row(cell: Cell) -> str:
    r = cell.result
    return (
        f"{cell.variant:<28}{cell.latency * 1000:>6.0f} ms{r.clients:>8}{r.completed:>7}"
        f"{r.errors:>7}{r.per_second:>9.1f}{r.percentile(0.5):>9.0f}{r.percentile(0.99):>9.0f}"
        f"{cell.fhir_per_hook:>10.1f}"
    )


def report(cells: Sequence[Cell], variants: Sequence[Variant]) -> str:
    """The table of every cell, then this tree's ratios to the baseline."""
    header = (
        f"{'variant':<28}{'FHIR':>9}{'clients':>8}{'hooks':>7}{'errors':>7}{'hooks/s':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'FHIR/hook':>10}"
    )
    lines = [header, *(_row(cell) for cell in cells)]
    baseline = variants[0].label if variants[0].tree.label.startswith("baseline") else None
    if baseline:
        lines += ["", f"this tree / {baseline}:"]
        by_key = {(c.variant, c.latency, c.result.clients): c for c in cells}
        for cell in (c for c in cells if c.variant == "this tree"):
            before = by_key[(baseline, cell.latency, cell.result.clients)]
            lines.append(
                f"  {cell.latency * 1000:.0f} ms, {cell.result.clients:>2} clients: "
                f"hooks/s x{_ratio(cell.result.per_second, before.result.per_second)}, "
                f"p50 x{_ratio(cell.result.percentile(0.5), before.result.percentile(0.5))}, "
                f"p99 x{_ratio(cell.result.percentile(0.99), before.result.percentile(0.99))}, "
                f"FHIR requests per hook {before.fhir_per_hook:.1f} -> {cell.fhir_per_hook:.1f}"
            )
    return "\n".join(lines)


def _ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}" if before else "n/a"


if __name__ == "__main__":
    sys.exit(main())
