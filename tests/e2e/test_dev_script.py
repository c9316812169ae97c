"""dev.py: the bootstrap skips what is present and refuses unknown commands."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refuse_installs(*_: object) -> None:
    raise AssertionError("nothing should be installed when it is already present")


def test_unknown_command_prints_usage_and_exits_2() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "deploy"], capture_output=True, text=True
    )
    assert completed.returncode == 2
    assert "usage: python3 dev.py {demo|test}" in completed.stderr


def test_present_sandbox_server_is_reused_without_installing(
    dev: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    sekmet = tmp_path / "bin" / "sekmet"
    sekmet.parent.mkdir()
    sekmet.write_text("#!/bin/sh\n")
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "SEKMET_VENV", tmp_path)
    monkeypatch.setattr(dev, "pip_install_into", _refuse_installs)
    assert dev.ensure_sekmet({}) == sekmet
    assert "present" in capsys.readouterr().out


def test_missing_sandbox_server_is_pip_installed_at_the_pinned_version(
    dev: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installs: list[tuple[Path, str]] = []
    monkeypatch.setattr(dev, "SEKMET_VENV", tmp_path / ".venv-sekmet")
    monkeypatch.setattr(
        dev, "pip_install_into", lambda venv, req, env: installs.append((venv, req))
    )
    dev.ensure_sekmet({})
    assert installs == [(tmp_path / ".venv-sekmet", "sekmet-fhir==0.1.1")]


def test_uv_on_path_is_used_as_is(dev: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev.shutil, "which", lambda name: f"/opt/tools/{name}")
    monkeypatch.setattr(dev, "runs", lambda executable: True)
    monkeypatch.setattr(dev, "pip_install_into", _refuse_installs)
    assert dev.ensure_uv({}) == "/opt/tools/uv"


def test_uv_on_path_that_does_not_run_is_passed_over(
    dev: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_shim = tmp_path / "uv"
    broken_shim.write_text("#!/bin/sh\nexit 127\n")
    broken_shim.chmod(0o755)
    installs: list[str] = []
    monkeypatch.setattr(dev.shutil, "which", lambda name: str(broken_shim))
    monkeypatch.setattr(dev, "TOOLS_VENV", tmp_path / ".venv-tools")
    monkeypatch.setattr(dev, "pip_install_into", lambda venv, req, env: installs.append(req))
    dev.ensure_uv({})
    assert installs == ["uv==0.13.9"]


def test_without_uv_on_path_the_pinned_uv_goes_into_venv_tools(
    dev: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installs: list[tuple[Path, str]] = []
    monkeypatch.setattr(dev.shutil, "which", lambda name: None)
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "TOOLS_VENV", tmp_path / ".venv-tools")
    monkeypatch.setattr(
        dev, "pip_install_into", lambda venv, req, env: installs.append((venv, req))
    )
    assert dev.ensure_uv({}) == str(tmp_path / ".venv-tools" / "bin" / "uv")
    assert installs == [(tmp_path / ".venv-tools", "uv==0.13.9")]


def test_fast_lane_runs_pytest_without_the_slow_tests_on_two_processes(dev: ModuleType) -> None:
    fast = ["pytest", "-m", "not slow", "-n", "2", "-q"]
    assert dev.command_for(["test", "--fast", "-q"]) == fast
    assert dev.command_for(["test", "-q"]) == ["pytest", "-q"]
    assert dev.command_for(["demo", "--once"]) == ["picu-endotype-demo", "--once"]
