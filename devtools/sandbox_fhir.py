"""A local sandbox FHIR R4 server (sekmet-fhir) for the demo, the end-to-end tests and benchmarks.

sekmet lives in its own virtual environment (`.venv-sekmet`, made by `dev.py`); its executable
comes from `PICU_SEKMET_BIN`. It listens on loopback only, keeps its SQLite store in a temporary
directory, does not log traffic and has its workflow simulator switched off. Everything here
talks standard FHIR REST, so another server could take its place.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

SEKMET_BIN_ENV = "PICU_SEKMET_BIN"
DEFAULT_SEKMET_BIN = Path(__file__).resolve().parents[1] / ".venv-sekmet" / "bin" / "sekmet"
LOOPBACK = "127.0.0.1"
FHIR_JSON = "application/fhir+json"


class SandboxUnavailable(RuntimeError):
    """The sandbox FHIR server is not installed or did not become ready."""


def sekmet_binary() -> Path | None:
    """The sekmet executable named by `PICU_SEKMET_BIN` (or the default venv), if it exists."""
    configured = os.environ.get(SEKMET_BIN_ENV)
    candidate = Path(configured) if configured else DEFAULT_SEKMET_BIN
    return candidate if candidate.is_file() else None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def sekmet_settings_yaml(base_url: str, port: int, data_dir: Path) -> str:
    """sekmet settings: set base_url (paging links), loopback, no traffic log, no simulator."""
    values = {
        "base_url": base_url,
        "host": LOOPBACK,
        "port": port,
        "data_dir": str(data_dir),
        "log_inbound": False,
    }
    lines = [f"{key}: {json.dumps(value)}" for key, value in values.items()]
    lines += ["simulator:", "  enabled: false"]
    return "\n".join(lines) + "\n"


@dataclass
class SandboxFhir:
    """A running sekmet process and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    _log_file: Any = field(repr=False, default=None)

    @property
    def root_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """The FHIR base (what a CDS request carries as `fhirServer`)."""
        return f"{self.root_url}/fhir"

    @property
    def console_url(self) -> str:
        return f"{self.root_url}/ui/"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> SandboxFhir:
        """Start sekmet in `workdir` and wait (bounded) until `/fhir/metadata` answers."""
        executable = binary or sekmet_binary()
        if executable is None:
            raise SandboxUnavailable(
                f"sekmet not found: set {SEKMET_BIN_ENV} or run `python3 dev.py test`, "
                "which installs sekmet-fhir into .venv-sekmet"
            )
        port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "settings.yaml"
        base_url = f"http://{LOOPBACK}:{port}/fhir"
        config.write_text(sekmet_settings_yaml(base_url, port, workdir / "data"))
        log_path = workdir / "sekmet.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [str(executable), "serve", "-c", str(config)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_sekmet_environment(),
        )
        sandbox = cls(process, port, workdir, log_path, log_file)
        try:
            sandbox.wait_until_ready(ready_timeout)
        except BaseException:
            sandbox.stop()
            raise
        return sandbox

    def wait_until_ready(self, timeout: float) -> None:
        """Poll the CapabilityStatement until it answers, the process dies, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SandboxUnavailable(f"sekmet exited early:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SandboxUnavailable(f"sekmet not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines sekmet wrote, for error messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then wait (sekmet takes a few seconds); kill only if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> SandboxFhir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _sekmet_environment() -> dict[str, str]:
    """The environment for sekmet, without variables that would override its settings file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}


def transaction_bundle(base_url: str, resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs each resource at its own id, so ids stay stable."""
    entries = []
    for resource in resources:
        reference = f"{resource['resourceType']}/{resource['id']}"
        entries.append(
            {
                "fullUrl": f"{base_url.rstrip('/')}/{reference}",
                "resource": dict(resource),
                "request": {"method": "PUT", "url": reference},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_resources(
    base_url: str, resources: Iterable[Mapping[str, Any]], *, timeout: float = 60.0
) -> dict[str, Any]:
    """POST `resources` to the server as one transaction; return the transaction-response Bundle."""
    response = requests.post(
        base_url,
        json=transaction_bundle(base_url, resources),
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise SandboxUnavailable(
            f"transaction refused ({response.status_code}): {response.text[:2000]}"
        )
    return response.json()
