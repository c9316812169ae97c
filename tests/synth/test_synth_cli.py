"""`picu-endotype synth`: options, files written, counts printed, progress bar only on a TTY."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from model import synth_cli
from model.synth import generate_cohort, write_cohort


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="picu-endotype synth")
    synth_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_synth_writes_the_cohort_and_prints_where_and_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cohort"
    assert synth_cli.run(_parse("--n", "12", "--seed", "4", "--out", str(out))) == 0
    printed = capsys.readouterr()
    names = {p.name for p in out.iterdir()}
    assert names == {
        "Patient.ndjson",
        "Encounter.ndjson",
        "Location.ndjson",
        "Observation.ndjson",
        "Procedure.ndjson",
        "Device.ndjson",
        "DeviceUseStatement.ndjson",
        "MedicationAdministration.ndjson",
        "outcomes.csv",
        "data_card.md",
    }
    assert str(out) in printed.out
    for name in names - {"outcomes.csv", "data_card.md"}:
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        assert f"  {name:<31} {len(lines)}\n" in printed.out
    assert f"  {'Patient.ndjson':<31} 12\n" in printed.out
    assert printed.err == ""  # no progress bar when stderr is not a terminal


def test_synth_unlabelled_flag_withholds_reference_endotypes(tmp_path: Path) -> None:
    synth_cli.run(_parse("--n", "5", "--out", str(tmp_path), "--unlabelled"))
    rows = (tmp_path / "outcomes.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert [row.rsplit(",", 1)[1] for row in rows] == [""] * 5


@pytest.mark.parametrize(
    "argv",
    [["--n", "0", "--out", "x"], ["--seed", "-1", "--out", "x"], ["--n", "3"]],
    ids=["zero-patients", "negative-seed", "no-out-dir"],
)
def test_synth_refuses_bad_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_long_runs_on_a_terminal() -> None:
    assert synth_cli._show_progress(5000, _Terminal())
    assert not synth_cli._show_progress(5000, io.StringIO())
    assert not synth_cli._show_progress(10, _Terminal())


@pytest.mark.parametrize("unlabelled", [False, True])
def test_streamed_cohort_matches_the_in_memory_writer(tmp_path: Path, unlabelled: bool) -> None:
    flags = ["--unlabelled"] if unlabelled else []
    synth_cli.run(_parse("--n", "20", "--seed", "8", "--out", str(tmp_path / "cli"), *flags))
    cohort = generate_cohort(20, seed=8, labelled=not unlabelled)
    write_cohort(cohort, tmp_path / "memory")
    for name in ("Patient.ndjson", "Encounter.ndjson", "Observation.ndjson", "outcomes.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "memory" / name).read_bytes()
    cli_card = (tmp_path / "cli" / "data_card.md").read_text(encoding="utf-8")
    assert cli_card == (tmp_path / "memory" / "data_card.md").read_text(encoding="utf-8")


def test_picu_endotype_synth_subcommand_runs_this_module(tmp_path: Path) -> None:
    from cds_service.cli import main

    assert main(["synth", "--n", "4", "--seed", "2", "--out", str(tmp_path)]) == 0
    assert len((tmp_path / "Patient.ndjson").read_text(encoding="utf-8").splitlines()) == 4
