"""The demo with `--once`: the whole product, as a subprocess, exactly as a developer runs it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools import ASSESSMENT_EXTENSION, DEMO_PATIENTS, SandboxFhir, render_card

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+")
EXPECTED_PATHWAYS = {
    "hyperinflammatory": "biomarker-guided",
    "quiescent": "standard",
    "missing-panel": "insufficient-data",
    "resolving": "standard",
}  # the general-ward child gets no card


def _demo_command() -> list[str]:
    """The demo's console script (what `python3 dev.py demo` runs), else its module."""
    entry_point = Path(sys.executable).with_name("picu-endotype-demo")
    if entry_point.exists():
        return [str(entry_point), "--once"]
    return [sys.executable, "-m", "devtools.demo", "--once"]


def _patient_sections(output: str) -> dict[str, str]:
    """The text printed for each patient, keyed by patient id."""
    sections = re.split(r"^--- (\S+) ", output, flags=re.MULTILINE)
    return dict(zip(sections[1::2], sections[2::2], strict=True))


@pytest.mark.slow
def test_demo_once_prints_each_synthetic_patients_card_and_exits_cleanly(
    sandbox_fhir: SandboxFhir,  # the sandbox must be installed; the demo starts its own
) -> None:
    completed = subprocess.run(
        _demo_command(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = completed.stdout
    assert "SYNTHETIC PATIENTS" in output
    sections = _patient_sections(output)
    assert set(sections) == {patient.patient_id for patient in DEMO_PATIENTS}
    for patient in DEMO_PATIENTS:
        section = sections[patient.patient_id]
        if patient.kind not in EXPECTED_PATHWAYS:
            assert "(no card: the service answers only for children in the PICU)" in section
            continue
        assert f"Pathway:     {EXPECTED_PATHWAYS[patient.kind]}" in section
        assert "Summary:" in section
        detail_length = int(re.search(r"Detail \((\d+) characters\)", section).group(1))
        assert 0 < detail_length <= 1500
        assert "  Anchor:      phoenix " in section
        assert (
            "| Day " in section
            and " since onset (organ dysfunction, Phoenix score ≥ 2, " in section
        )
        assert re.search(r"\| Phoenix \d+ at \d\d:\d\d UTC.*; onset .* ago\.", section)
    assert "persistence persistent" in sections["demo-hyperinflammatory"]
    assert "persistence resolving" in sections["demo-resolving"]
    assert "/ui/" in output
    assert not JWT_SHAPE.search(output + completed.stderr)


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((parts.hostname, parts.port)) == 0


def _kill_group(leader: int) -> None:
    """SIGKILL every process left in the demo's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)


def _stop_with_ctrl_c(demo: subprocess.Popen, stderr_path: Path) -> int:
    """SIGINT, then the exit code; on a hang, the demo's thread stacks (faulthandler) in the
    failure message. stdout is drained meanwhile, so that a full pipe cannot block the demo."""
    demo.send_signal(signal.SIGINT)
    try:
        demo.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        demo.send_signal(signal.SIGABRT)
        demo.communicate(timeout=30)
        _kill_group(demo.pid)  # the servers it started, left without it
        pytest.fail(f"the demo did not stop within 60 s:\n{stderr_path.read_text()[-5000:]}")
    return demo.returncode


@pytest.mark.slow
def test_demo_waits_for_ctrl_c_then_stops_the_service_and_the_fhir_server(
    sandbox_fhir: SandboxFhir, tmp_path: Path
) -> None:
    command = [part for part in _demo_command() if part != "--once"]
    stderr_path = tmp_path / "demo.stderr"
    # started as a shell script's background job starts it, SIGINT ignored (the child inherits
    # the disposition): Ctrl-C must stop it all the same
    default_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stderr_path.open("w") as stderr:
            demo = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"},
                start_new_session=True,  # its own process group, with the servers it starts
            )
    finally:
        signal.signal(signal.SIGINT, default_sigint)
    watchdog = threading.Timer(300, _kill_group, (demo.pid,))
    watchdog.start()
    try:
        lines = []
        while not (line := demo.stdout.readline()).startswith("Press Ctrl-C"):
            assert line, "the demo ended before waiting for Ctrl-C"
            lines.append(line)
        urls = re.findall(r"(http://127\.0\.0\.1:\d+)/", "".join(lines[-3:]))
        assert len(set(urls)) == 2 and all(_listening(url) for url in urls)
        assert _stop_with_ctrl_c(demo, stderr_path) == 0
    finally:
        watchdog.cancel()
        if demo.poll() is None:
            _kill_group(demo.pid)
    assert not any(_listening(url) for url in urls)


def test_rendered_card_shows_markers_missing_suggestions_links_and_synthetic_model() -> None:
    card = {
        "summary": "Immune pattern: insufficient data",
        "detail": "**Insufficient data**\n\nMissing: IL-6.",
        "source": {"label": "picu-endotype"},
        "suggestions": [{"label": "Consider ordering: Interleukin-6"}],
        "links": [{"label": "Model card", "url": "https://cds.test/model-card"}],
        "extension": {
            ASSESSMENT_EXTENSION: {
                "pathway": "insufficient-data",
                "endotype": "undetermined",
                "scorer": {"id": "m", "version": "2", "syntheticTrainingData": True},
                "context": {
                    "anchor": {"source": "picu-admission", "time": "2026-01-01T00:00:00Z"},
                    "hours_since_anchor": 27.0,
                },
                "persistence": {"state": "unknown"},
                "markers": {
                    "ferritin": {
                        "value": 900.0,
                        "unit": "ng/mL",
                        "time": "2026-01-02T03:04:05Z",
                        "code": "http://loinc.org|2276-4",
                    }
                },
                "missing": ["il6"],
                "pending": ["cxcl9"],
            }
        },
    }
    text = "\n".join(render_card(card))
    assert "Pathway:     insufficient-data   (endotype undetermined; persistence unknown)" in text
    assert "Anchor:      picu-admission 2026-01-01T00:00:00Z (27.0 h ago)" in text
    assert "m v2 (model trained on SYNTHETIC data)" in text
    assert "ferritin: 900 ng/mL at 2026-01-02T03:04:05Z (http://loinc.org|2276-4)" in text
    assert "Missing:     il6" in text and "Pending:     cxcl9" in text
    assert "Suggests:    Consider ordering: Interleukin-6" in text
    assert "Model card <https://cds.test/model-card>" in text
    assert (
        "Detail (37 characters):\n    | **Insufficient data**\n    | \n    | Missing: IL-6." in text
    )


def test_render_card_says_when_a_unit_was_assumed():
    marker = {"value": 12.0, "unit": "pg/mL", "time": "t1", "code": "http://loinc.org|26881-3"}
    card = {
        "summary": "s",
        "extension": {ASSESSMENT_EXTENSION: {"markers": {"il6": {**marker, "unitAssumed": True}}}},
    }
    text = "\n".join(render_card(card))
    assert "il6: 12 pg/mL (unit not sent; assumed from the code) at t1" in text
    card["extension"][ASSESSMENT_EXTENSION]["markers"]["il6"] = marker
    assert "assumed" not in "\n".join(render_card(card))
