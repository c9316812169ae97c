"""`train` and `evaluate` refuse bad cohort files with the file and line, never a traceback."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cds_service.cli import main
from model.scorer import DEFAULT_MODEL_PATH

Fault = Callable[[Path], None]


def _edit_first_line(path: Path, change: Callable[[dict], None]) -> None:
    lines = path.read_text().splitlines()
    resource = json.loads(lines[0])
    change(resource)
    lines[0] = json.dumps(resource)
    path.write_text("\n".join(lines) + "\n")


def _edit_outcomes(path: Path, row: int, column: str, value: str) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[row][column] = value
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _truncate_outcome_row(path: Path) -> None:
    lines = path.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:3])
    path.write_text("\n".join(lines) + "\n")


def _append(path: Path, data: bytes) -> int:
    """Append one line; return its line number."""
    existing = path.read_bytes()
    path.write_bytes(existing + data + b"\n")
    return existing.count(b"\n") + 1


FAULTS: dict[str, tuple[Fault, str]] = {
    "subject as a string": (
        lambda d: _edit_first_line(d / "Observation.ndjson", lambda r: r.update(subject="P/1")),
        "Observation.ndjson line 1: not a valid Observation (subject: ",
    ),
    "meta as a list": (
        lambda d: _edit_first_line(d / "Patient.ndjson", lambda r: r.update(meta=["x"])),
        "Patient.ndjson line 1: not a valid Patient (meta",
    ),
    "meta.tag not a list of objects": (
        lambda d: _edit_first_line(d / "Patient.ndjson", lambda r: r.update(meta={"tag": "x"})),
        "Patient.ndjson line 1: not a valid Patient (meta.tag: ",
    ),
    "a 100k-deep line": (
        lambda d: _append(d / "Observation.ndjson", b"[" * 100_000 + b"]" * 100_000),
        "Observation.ndjson line {line}: JSON nested deeper than 64 levels",
    ),
    "a non-UTF-8 line": (
        lambda d: _append(d / "Observation.ndjson", b'{"resourceType": "Observation\xff"}'),
        "Observation.ndjson line {line}: not UTF-8 text",
    ),
    "a CSV row with missing fields": (
        lambda d: _truncate_outcome_row(d / "outcomes.csv"),
        "outcomes.csv line 2: missing fields ['age_months', 'sepsis',",
    ),
    "age_months negative": (
        lambda d: _edit_outcomes(d / "outcomes.csv", 1, "age_months", "-5"),
        "outcomes.csv line 3: age_months '-5' is not a number from 0 to 1200",
    ),
    "age_months NaN": (
        lambda d: _edit_outcomes(d / "outcomes.csv", 0, "age_months", "nan"),
        "outcomes.csv line 2: age_months 'nan' is not a number from 0 to 1200",
    ),
    "onset_time past year 9998": (
        lambda d: _edit_outcomes(d / "outcomes.csv", 0, "onset_time", "9999-12-31T23:00:00+00:00"),
        "outcomes.csv line 2: onset_time year 9999 is outside 1900-9998",
    ),
}


@pytest.fixture
def cohort_copy(small_cohort_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cohort"
    shutil.copytree(small_cohort_dir, copy)
    return copy


def _run(command: str, cohort: Path, outcomes: Path, tmp_path: Path) -> list[str]:
    if command == "train":
        return ["train", "--cohort", str(cohort), "--outcomes", str(outcomes),
                "--out", str(tmp_path / "m.skops"), "--quiet"]  # fmt: skip
    return ["evaluate", "--cohort", str(cohort), "--outcomes", str(outcomes),
            "--model", str(DEFAULT_MODEL_PATH), "--report", str(tmp_path / "r.html"),
            "--quiet"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_input_is_refused_naming_file_and_line(
    cohort_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    fault: str,
) -> None:
    damage, expected = FAULTS[fault]
    line = damage(cohort_copy)

    status = main(_run(command, cohort_copy, cohort_copy / "outcomes.csv", tmp_path))

    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith(f"error: {expected.format(line=line)}")
    assert "Traceback" not in error


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_outcomes_naming_a_directory_is_refused(
    cohort_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    status = main(_run(command, cohort_copy, cohort_copy, tmp_path))

    assert status == 2
    assert (
        capsys.readouterr().err
        == f"error: outcomes file not found (or not a file): {cohort_copy}\n"
    )
