"""The service as a developer runs it: its settings file and a `picu-endotype serve` process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from devtools.ehr import DemoEhr
from devtools.sandbox_fhir import LOOPBACK


def service_config_toml(
    *, public_base_url: str, port: int, state_dir: Path, ehr: DemoEhr, fhir_base: str
) -> str:
    """Settings for the demo service: loopback, the demo EHR as the one client, http sandbox."""
    text = json.dumps  # JSON string escapes are valid TOML basic strings
    return "\n".join(
        [
            f"public_base_url = {text(public_base_url)}",
            f"host = {text(LOOPBACK)}",
            f"port = {port}",
            "workers = 2",
            f"state_dir = {text(str(state_dir))}",
            f"insecure_http_fhir_hosts = [{text(LOOPBACK)}]",
            "",
            "[[clients]]",
            f"iss = {text(ehr.issuer)}",
            f"jwks = {text(ehr.jwks_json())}",
            f"fhir_servers = [{text(fhir_base)}]",
            "",
        ]
    )


def write_service_config(workdir: Path, *, port: int, ehr: DemoEhr, fhir_base: str) -> Path:
    """Write the demo service's settings file into `workdir`; its state goes to `workdir/var`."""
    config = workdir / "settings.toml"
    config.write_text(
        service_config_toml(
            public_base_url=f"http://{LOOPBACK}:{port}",
            port=port,
            state_dir=workdir / "var",
            ehr=ehr,
            fhir_base=fhir_base,
        )
    )
    return config


def serve_command(config: Path) -> list[str]:
    """`picu-endotype serve --config FILE`, from the same environment as this process."""
    entry_point = Path(sys.executable).with_name("picu-endotype")
    if entry_point.exists():
        return [str(entry_point), "serve", "--config", str(config)]
    found = shutil.which("picu-endotype")
    if found:
        return [found, "serve", "--config", str(config)]
    return [sys.executable, "-m", "cds_service.cli", "serve", "--config", str(config)]


@contextmanager
def running_service(config: Path, base_url: str, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run `picu-endotype serve` until the block ends; wait (bounded) for `/healthz`."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            serve_command(config), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
        try:
            wait_for_health(process, f"{base_url}/healthz", log_path)
            yield process
        finally:
            stop_process(process)


def wait_for_health(
    process: subprocess.Popen, url: str, log_path: Path, timeout: float = 60.0, poll: float = 0.1
) -> None:
    """Poll `url` until it answers 200; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited early:\n{_tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(poll)
    raise RuntimeError(f"the service did not answer {url} in {timeout:.0f} s:\n{_tail(log_path)}")


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, and kill only if it does not exit."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
