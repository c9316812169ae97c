"""What the benchmarks share: source trees to compare, a served instance, a closed-loop load.

A benchmark compares the working tree with a baseline in one run: `source_tree(ref)` exports a
git revision (`git archive`, nothing in the repository changes) and `served(...)` runs
`picu-endotype serve` from that tree, so the baseline and the change meet the same load on the
same machine minutes apart. `closed_loop(...)` keeps N clients busy, each sending its next
request as soon as the previous answer arrives, over keep-alive connections.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.ehr import DemoEhr
from devtools.sandbox_fhir import LOOPBACK
from devtools.service import stop_process, wait_for_health

ROOT = Path(__file__).resolve().parents[1]
Request = tuple[str, str, bytes | None, Mapping[str, str]]  # method, path, body, headers


@dataclass(frozen=True)
class SourceTree:
    """The code a served instance runs: the working tree, or an exported git revision."""

    label: str
    path: Path

    @property
    def is_working_tree(self) -> bool:
        return self.path == ROOT


def working_tree(label: str = "this tree") -> SourceTree:
    """The tree these tools are part of."""
    return SourceTree(label, ROOT)


def export_revision(ref: str, destination: Path, label: str | None = None) -> SourceTree:
    """The product packages of git revision `ref`, unpacked into `destination`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        capture_output=True,
        check=True,
    ).stdout
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return SourceTree(label or ref, destination)


def compared_trees(baseline: str, workdir: Path) -> list[SourceTree]:
    """The baseline revision (exported under `workdir`, none for '') and then the working tree."""
    trees = [working_tree()]
    if baseline:
        label = f"baseline {baseline}"
        trees.insert(0, export_revision(baseline, workdir / "baseline", label))
    return trees


def settings_toml(settings: Mapping[str, Any]) -> str:
    """A settings file from a flat mapping plus `clients` (a list of tables)."""
    lines = []
    tables = []
    for key, value in settings.items():
        if key == "clients":
            for client in value:
                tables.append("\n[[clients]]")
                tables.extend(f"{k} = {json.dumps(v)}" for k, v in client.items())
        elif isinstance(value, Mapping):
            tables.append(f"\n[{key}]")
            tables.extend(f"{k} = {json.dumps(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join([*lines, *tables]) + "\n"


def loopback_settings(
    port: int, state_dir: Path, ehr: DemoEhr, fhir_bases: Sequence[str], **tables: Any
) -> str:
    """The settings file of a benchmarked service on loopback: `ehr` as its one client, allowed
    `fhir_bases` over plain HTTP, warnings only; `tables` adds settings tables (`phoenix`, ...)."""
    return settings_toml(
        {
            "public_base_url": f"http://{LOOPBACK}:{port}",
            "host": LOOPBACK,
            "port": port,
            "state_dir": str(state_dir),
            "insecure_http_fhir_hosts": [LOOPBACK],
            "log_level": "WARNING",
            **tables,
            "clients": [
                {"iss": ehr.issuer, "jwks": ehr.jwks_json(), "fhir_servers": list(fhir_bases)}
            ],
        }
    )


@dataclass
class Served:
    """A running `picu-endotype serve` and how long it took to answer `/healthz`."""

    process: subprocess.Popen[bytes]
    base_url: str
    startup_seconds: float
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the serve process's children."""
        return child_pids(self.process.pid)


def child_pids(pid: int) -> list[int]:
    """The child processes of `pid` (Linux; none when it has exited)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def tree_environment(tree: SourceTree) -> dict[str, str]:
    """The environment that makes Python import the product from `tree`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree.path), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


@contextmanager
def served(
    tree: SourceTree,
    config: Path,
    log_path: Path,
    *,
    command: Sequence[str] | None = None,
    timeout: float = 120.0,
) -> Iterator[Served]:
    """`picu-endotype serve --config FILE` from `tree` (or `command`) until the block ends."""
    settings = _toml(config)
    base_url = f"http://{LOOPBACK}:{settings['port']}"
    argv = list(command or [sys.executable, "-m", "cds_service.cli", "serve", "--config"])
    argv.append(str(config))
    with log_path.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            cwd=tree.path,
            env=tree_environment(tree),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            wait_for_health(process, f"{base_url}/healthz", log_path, timeout, poll=0.02)
            yield Served(process, base_url, time.perf_counter() - started, log_path)
        finally:
            stop_process(process, grace=30.0)


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


# --- load ---


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured."""

    label: str
    clients: int
    seconds: float
    latencies_ms: tuple[float, ...]
    statuses: Mapping[int, int] = field(default_factory=dict)  # status (0: failed) -> count

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 200)

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency (ms) below which `fraction` of the requests finished."""
        return latency_percentile(self.latencies_ms, fraction)


def latency_percentile(latencies_ms: Sequence[float], fraction: float) -> float:
    """Latency (ms) below which `fraction` of the requests finished; NaN with none."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def closed_loop(
    port: int,
    next_request: Callable[[], Request | None],
    clients: int,
    duration: float,
    label: str = "",
) -> LoadResult:
    """`clients` keep-alive connections, each sending its next request on each answer.

    Stops after `duration` seconds or when `next_request` returns None.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ends = time.monotonic() + duration

    def take() -> Request | None:
        with lock:
            return next_request() if time.monotonic() < ends else None

    def client() -> None:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
        while (request := take()) is not None:
            elapsed, status = send(connection, request)
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return LoadResult(label, clients, seconds, tuple(latencies), statuses)


def send(connection: http.client.HTTPConnection, request: Request) -> tuple[float, int]:
    """One request: (latency in ms, status, 0 when it failed). Reconnects after a failure."""
    method, path, body, headers = request
    started = time.perf_counter()
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        connection.close()
        status = 0
    return (time.perf_counter() - started) * 1000, status


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served_cpu_seconds(service: Served) -> float:
    """CPU time used so far by the gunicorn master and its current workers."""
    return sum(cpu_seconds(pid) for pid in [service.process.pid, *service.worker_pids()])


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")
