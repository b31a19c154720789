"""``python -m mlipdiv sweep --concurrency``: several runs at once in worker processes, and refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mlipdiv.cli import main


def _argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--experiment", "fixed-molecules", "--molecules", "2", "--points", "2", "--seeds", "1",
            "--model", "schnet", "--epochs", "1", "--hidden", "16", "--device", "cpu", "--dataset", str(dataset),
            "--out", str(out), *extra]


def test_sweep_runs_two_at_once(tmp_path: Path, tiny_dataset_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    assert main(_argv(tiny_dataset_path, tmp_path / "out", "--concurrency", "2")) == 0
    out = capsys.readouterr().out
    assert "backend local (2 runs at once × 1 thread (set))" in out
    with open(tmp_path / "out" / "results.csv") as f:
        assert len({row["run_id"] for row in csv.DictReader(f)}) == 2
    assert all((p / "worker.log").exists() for p in (tmp_path / "home").iterdir() if p.is_dir())


@pytest.mark.parametrize("bad", ["0", "lots"])
def test_sweep_refuses_a_bad_concurrency(tmp_path: Path, tiny_dataset_path: Path, monkeypatch, capsys,
                                         bad: str) -> None:
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    assert main(_argv(tiny_dataset_path, tmp_path / "out", "--concurrency", bad)) != 0
    assert "--concurrency" in capsys.readouterr().err
