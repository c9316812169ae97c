"""`picu-endotype serve`: argument handling, the dev-mode guard, and gunicorn options."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cds_service import serve


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="picu-endotype serve")
    serve.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record gunicorn starts instead of serving."""
    starts: list[dict[str, Any]] = []

    def fake_run(self: serve.GunicornApplication) -> None:
        starts.append({**self.options, "frozen_objects": gc.get_freeze_count()})

    monkeypatch.setattr(serve.GunicornApplication, "run", fake_run)
    gc.unfreeze()
    yield starts
    gc.unfreeze()  # `serve` froze the heap for its workers; this test process goes on


@pytest.fixture
def state_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PICU_ENDOTYPE_STATE_DIR", str(tmp_path))
    return tmp_path


def test_command_line_overrides_host_port_and_workers(state_env: Path) -> None:
    settings = serve.settings_from_args(
        _args("--host", "127.0.0.2", "--port", "9001", "--workers", "3")
    )
    assert (settings.host, settings.port, settings.workers) == ("127.0.0.2", 9001, 3)


def test_config_file_is_read(state_env: Path, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("port = 9123\nwindow_hours = 24\n")
    settings = serve.settings_from_args(_args("--config", str(config)))
    assert (settings.port, settings.window_hours) == (9123, 24)


def test_missing_config_file_exits_2_without_serving(
    started: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve.run(_args("--config", str(tmp_path / "absent.toml"))) == 2
    assert started == []
    assert "not found" in capsys.readouterr().err


def test_dev_mode_on_a_public_address_exits_2_without_serving(
    state_env: Path, started: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PICU_ENDOTYPE_DEV_ALLOW_UNAUTHENTICATED", "true")
    assert serve.run(_args("--host", "0.0.0.0")) == 2
    assert started == []


def test_dev_mode_on_loopback_serves_with_a_warning(
    state_env: Path,
    started: list,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PICU_ENDOTYPE_DEV_ALLOW_UNAUTHENTICATED", "true")
    with caplog.at_level(logging.WARNING):
        assert serve.run(_args("--port", "9002")) == 0
    assert [options["bind"] for options in started] == ["127.0.0.1:9002"]
    assert any("DEVELOPMENT MODE" in record.getMessage() for record in caplog.records)


def test_serve_starts_gunicorn_with_settings(state_env: Path, started: list) -> None:
    assert serve.run(_args("--host", "127.0.0.1", "--port", "9003", "--workers", "4")) == 0
    [options] = started
    assert options["bind"] == "127.0.0.1:9003"
    assert options["workers"] == 4


def test_serve_freezes_the_start_up_heap_before_gunicorn_forks_its_workers(
    state_env: Path, started: list
) -> None:
    assert gc.get_freeze_count() == 0
    assert serve.run(_args("--port", "9004")) == 0
    [options] = started
    assert options["frozen_objects"] > 10_000  # the app, its settings, model and libraries


def test_access_log_format_has_no_query_string_or_headers() -> None:
    log_format = serve.ACCESS_LOG_FORMAT
    assert "%(U)s" in log_format
    for leaky in ("%(r)s", "%(q)s", "%({authorization}i)s", "%(a)s"):
        assert leaky not in log_format


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen) -> requests.Response:
    """Poll until the server answers or the process dies (bounded number of attempts)."""
    for _ in range(300):
        if process.poll() is not None:
            break
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("the service did not start")


@pytest.mark.slow
def test_serve_runs_gunicorn_and_logs_paths_without_query_strings(tmp_path: Path) -> None:
    port = _free_port()
    script = (
        "import argparse, sys\n"
        "from cds_service import serve\n"
        "parser = argparse.ArgumentParser()\n"
        "serve.add_arguments(parser)\n"
        "sys.exit(serve.run(parser.parse_args(sys.argv[1:])))\n"
    )
    env = {**os.environ, "PICU_ENDOTYPE_STATE_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", script, "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        response = _wait_for_health(f"http://127.0.0.1:{port}/healthz?patient=q-secret-42", process)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert '"GET /healthz HTTP/1.1" 200' in output
    assert "q-secret-42" not in output
