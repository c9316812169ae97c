"""The prefetch path under wrk: hooks with complete prefetch against a trivial endpoint.

Run from the repository root (wrk is a Debian package: `apt-get install -y wrk`):

    uv run python benchmarks/prefetch_path.py           # baseline and this tree, 10 s each
    uv run python benchmarks/prefetch_path.py --quick   # 4 s each
    uv run python benchmarks/prefetch_path.py --phoenix-off  # also this tree without Phoenix

For the baseline revision and for this tree it starts `picu-endotype serve` and, beside it, a
trivial Flask app (one small JSON answer) under gunicorn with the options that tree's `serve`
derives from the same settings file. wrk (one thread, 8 keep-alive connections by default)
drives each in turn, round after round (the four targets interleaved, so that other load on the
machine falls on all of them alike): the trivial endpoint with GETs, the hook with POSTs whose
prefetch holds every key (built from the discovery templates against a FHIR stub), each carrying
its own pre-signed JWT (a Lua script hands every request the next unused token). Printed per
target (medians over the rounds): requests/s, p50 and p99 latency, errors, and the CPU time the
server's processes spent per request; then, per tree, the hook's throughput as a share of the
trivial endpoint's and the hook's CPU per request as a multiple of the trivial endpoint's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cds_service.discovery import SERVICE_ID
from devtools import (
    DemoEhr,
    LatencyFhir,
    Served,
    SourceTree,
    build_prefetch,
    compared_trees,
    discover,
    free_port,
    hook_request,
    loopback_settings,
    served,
    served_cpu_seconds,
    working_tree,
)

PATIENT_ID = "bench-hyperinflammatory"
BEFORE = "8a4a616"  # main before the concurrent worker model
TRIVIAL_PATH = "/trivial"
PHOENIX_OFF = "tree, Phoenix off"  # this tree with `phoenix.enabled = false` (--phoenix-off)
WARM_UP_SECONDS = 2
WRK_INSTALL = "wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu), then rerun."

# wrk runs this in each of its threads: thread k of n sends tokens k, k+n, k+2n, ... (each once);
# `done` prints the figures as one JSON line.
WRK_SCRIPT = """
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("first", counter)
end
function init(args)
  method, path, step = args[1], args[2], tonumber(args[5])
  tokens, index = {}, first
  if args[3] ~= "-" then
    for line in io.lines(args[3]) do tokens[#tokens + 1] = line end
    local file = io.open(args[4], "rb"); body = file:read("*a"); file:close()
  end
end
function request()
  if #tokens == 0 then return wrk.format(method, path) end
  local token = tokens[index] or "exhausted"
  index = index + step
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
  return wrk.format(method, path, headers, body)
end
function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  local line = '{"requests": %d, "seconds": %f, "errors": %d, "p50_us": %d, "p99_us": %d}\\n'
  io.write(string.format(line, summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured, with the server's CPU time over the run."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_seconds * 1000 / self.requests if self.requests else 0.0


@dataclass
class Target:
    """One served endpoint wrk drives, and what its runs measured."""

    tree: SourceTree
    scenario: str
    service: Served
    path: str
    tokens: list[str] = field(default_factory=list)  # unused JWTs, for the hook
    body: Path | None = None
    runs: list[WrkResult] = field(default_factory=list)

    def median(self, figure: Callable[[WrkResult], float]) -> float:
        return statistics.median(figure(run) for run in self.runs)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 4 s runs")
    parser.add_argument("--baseline", default=BEFORE, help="git revision to compare ('' for none)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target, interleaved")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--max-rate", type=int, default=1500, help="hooks/s the tokens must last")
    parser.add_argument(
        "--phoenix-off", action="store_true", help="also this tree with the Phoenix layer off"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 4, 1
    return args


# The trivial app under gunicorn with the options `picu-endotype serve` derives from a settings
# file; run with `-c` from the tree being measured, so that the tree's own `gunicorn_options` apply.
TRIVIAL_SERVER = f"""
import sys
from flask import Flask, jsonify
from cds_service.serve import GunicornApplication, gunicorn_options
from cds_service.settings import load_settings

app = Flask("trivial")
app.add_url_rule("{TRIVIAL_PATH}", "trivial", lambda: jsonify(status="ok", service="trivial"))
app.add_url_rule("/healthz", "healthz", lambda: jsonify(status="ok"))
GunicornApplication(app, gunicorn_options(load_settings(sys.argv[1]))).run()
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(WRK_INSTALL, file=sys.stderr)
        return 2
    ehr = DemoEhr()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="picu-prefetch-")))
        from model.synth import scenario_patient

        resources = scenario_patient("hyperinflammatory", PATIENT_ID, now=datetime.now(UTC))
        stub = stack.enter_context(LatencyFhir.spawn(resources, 0.0))
        trees = compared_trees(args.baseline, workdir)
        if args.phoenix_off:
            trees.append(working_tree(PHOENIX_OFF))
        lua = workdir / "hooks.lua"
        lua.write_text(WRK_SCRIPT)
        targets: list[Target] = []
        for index, tree in enumerate(trees):
            targets += _start(stack, tree, workdir / f"tree-{index}", ehr, stub, args)
        for target in targets:  # warm-up
            _wrk(target, lua, args, WARM_UP_SECONDS)
        for _ in range(args.rounds):
            for target in targets:
                target.runs.append(_wrk(target, lua, args, args.duration))
                print(_row(target, target.runs[-1]), flush=True)
    print()
    print(report(targets, args))
    return 0


def _start(
    stack: ExitStack,
    tree: SourceTree,
    folder: Path,
    ehr: DemoEhr,
    stub: LatencyFhir,
    args: argparse.Namespace,
) -> list[Target]:
    """The tree's trivial server and service, running until the stack closes."""
    folder.mkdir(parents=True)
    targets = []
    for scenario in ("trivial endpoint", "hook, complete prefetch"):
        port = free_port()
        config = folder / f"settings-{port}.toml"
        phoenix_off = tree.label == PHOENIX_OFF
        # the baseline predates the Phoenix layer and its settings table
        tables = {"phoenix": {"enabled": False}} if phoenix_off else {}
        config.write_text(
            loopback_settings(port, folder / f"var-{port}", ehr, [stub.base_url], **tables)
        )
        command = [sys.executable, "-c", TRIVIAL_SERVER] if scenario.startswith("trivial") else None
        log = folder / f"server-{port}.log"
        service = stack.enter_context(served(tree, config, log, command=command))
        if command is not None:
            targets.append(Target(tree, scenario, service, TRIVIAL_PATH))
            continue
        path = f"/cds-services/{SERVICE_ID}"
        templates = _templates(service.base_url, ehr)
        prefetch = build_prefetch(stub.base_url, templates, {"patientId": PATIENT_ID})
        body = folder / "body.json"
        body.write_text(json.dumps(hook_request(PATIENT_ID, stub.base_url, prefetch=prefetch)))
        count = (args.rounds * args.duration + WARM_UP_SECONDS + 1) * args.max_rate
        audience = service.base_url + path
        tokens = [ehr.token(audience, lifetime=3600) for _ in range(count)]
        targets.append(Target(tree, scenario, service, path, tokens, body))
    return targets


def _templates(service_url: str, ehr: DemoEhr) -> dict[str, str]:
    import requests

    with requests.Session() as session:
        return discover(session, service_url, ehr).get("prefetch", {})


def _wrk(target: Target, lua: Path, args: argparse.Namespace, seconds: int) -> WrkResult:
    """One wrk run against `target`; a hook run uses (and uses up) the next unused tokens."""
    token_file, method = "-", "GET"
    if target.body is not None:
        method = "POST"
        token_file = str(lua.with_name(f"tokens-{target.service.port}.txt"))
        Path(token_file).write_text("\n".join(target.tokens))
    command = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "-s",
        str(lua),
        target.service.base_url + target.path,
        "--",
        method,
        target.path,
        token_file,
        str(target.body or "-"),
        "1",
    ]
    cpu_before = served_cpu_seconds(target.service)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = served_cpu_seconds(target.service) - cpu_before
    figures = json.loads(output.strip().splitlines()[-1])
    if target.body is not None:  # tokens in flight when wrk stopped may have been sent too
        del target.tokens[: figures["requests"] + args.connections]
    return WrkResult(
        figures["requests"],
        figures["seconds"],
        figures["errors"],
        figures["p50_us"] / 1000,
        figures["p99_us"] / 1000,
        cpu,
    )


def _row(target: Target, run: WrkResult) -> str:
    return (
        f"{target.tree.label:<20}{target.scenario:<25}{run.requests:>9}{run.errors:>7}"
        f"{run.per_second:>8.0f}{run.p50_ms:>8.1f}{run.p99_ms:>8.1f}{run.cpu_ms_per_request:>9.2f}"
    )


def report(targets: Sequence[Target], args: argparse.Namespace) -> str:
    """Medians per target, then each tree's hook relative to its trivial endpoint."""
    lines = [
        f"wrk -t1 -c{args.connections}, {args.rounds} interleaved run(s) of {args.duration} s "
        "per target, one JWT per hook; medians",
        f"{'tree':<20}{'scenario':<25}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/req':>11}"
        f"{'errors':>8}",
    ]
    for t in targets:
        lines.append(
            f"{t.tree.label:<20}{t.scenario:<25}{t.median(lambda r: r.per_second):>8.0f}"
            f"{t.median(lambda r: r.p50_ms):>8.1f}{t.median(lambda r: r.p99_ms):>8.1f}"
            f"{t.median(lambda r: r.cpu_ms_per_request):>11.2f}"
            f"{sum(r.errors for r in t.runs):>8}"
        )
    lines.append("")
    for trivial, hook in zip(targets[::2], targets[1::2], strict=True):
        throughput = hook.median(lambda r: r.per_second) / trivial.median(lambda r: r.per_second)
        cpu = hook.median(lambda r: r.cpu_ms_per_request) / trivial.median(
            lambda r: r.cpu_ms_per_request
        )
        lines.append(
            f"{hook.tree.label}: hook / trivial throughput x{throughput:.2f}, "
            f"CPU per request x{cpu:.1f}, hook p99 {hook.median(lambda r: r.p99_ms):.1f} ms"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
