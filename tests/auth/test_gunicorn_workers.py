"""Served by gunicorn with two workers: one token is accepted once, and the logs stay clean."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.auth.conftest import EHR
from tests.support.leak_guard import SESSION_GUARD
from tests.support.tokens import SigningKey, jwks, make_token

pytestmark = pytest.mark.slow  # a gunicorn server with two workers, once per module

STARTUP_ATTEMPTS = 150
PARALLEL_CALLS = 8
SERVE = (  # `picu-endotype serve --config FILE`, without the other subcommands' imports
    "import argparse, sys; from cds_service import serve; "
    "args = argparse.Namespace(config=sys.argv[1], host=None, port=None, workers=None); "
    "sys.exit(serve.run(args))"
)


@dataclass
class RunningService:
    """A served instance: its public base URL, its signing key and its captured output file."""

    base_url: str
    key: SigningKey
    output: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(base_url: str, process: subprocess.Popen) -> None:
    for _ in range(STARTUP_ATTEMPTS):
        if process.poll() is not None:
            raise RuntimeError("picu-endotype serve exited during start-up")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("picu-endotype serve did not come up")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """`picu-endotype serve` with two workers and DEBUG logging, trusting one ES384 client."""
    folder = tmp_path_factory.mktemp("served")
    key = SigningKey.generate("ES384")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = folder / "settings.toml"
    config.write_text(
        f'public_base_url = "{base_url}"\n'
        f'state_dir = "{folder / "state"}"\n'
        'log_level = "DEBUG"\n'
        "workers = 2\n"
        f"port = {port}\n"
        "[[clients]]\n"
        f'iss = "{EHR}"\n'
        f"jwks = '{json.dumps(jwks(key))}'\n"
    )
    output = folder / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_up(base_url, process)
            yield RunningService(base_url, key, output)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _discover(served: RunningService, token: str) -> int:
    response = requests.get(
        f"{served.base_url}/cds-services",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


def test_distinct_tokens_sent_in_parallel_are_all_accepted(served: RunningService):
    aud = f"{served.base_url}/cds-services"
    tokens = [make_token(served.key, iss=EHR, aud=aud) for _ in range(PARALLEL_CALLS)]

    with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
        statuses = list(pool.map(lambda token: _discover(served, token), tokens))

    assert statuses == [200] * PARALLEL_CALLS


def test_one_token_sent_in_parallel_to_both_workers_is_accepted_once(served: RunningService):
    token = make_token(served.key, iss=EHR, aud=f"{served.base_url}/cds-services")

    with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
        statuses = list(pool.map(lambda _: _discover(served, token), range(PARALLEL_CALLS)))

    assert sorted(statuses) == [200] + [401] * (PARALLEL_CALLS - 1)


def test_server_output_at_debug_holds_no_token_it_received(served: RunningService):
    token = make_token(served.key, iss=EHR, aud=f"{served.base_url}/cds-services/wrong")
    assert _discover(served, token) == 401

    output = served.output.read_text(errors="replace")

    assert "CDS client refused" in output
    assert SESSION_GUARD.leaks_in_text(output) == []
