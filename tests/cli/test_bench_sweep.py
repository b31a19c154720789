"""``python -m mlipdiv.bench sweep``: a small plan with concurrency off and on, runs per hour side by side."""

from __future__ import annotations

import json
from pathlib import Path

from mlipdiv.bench.__main__ import main


def test_bench_sweep_reports_both_settings(tiny_dataset_path: Path, capsys) -> None:
    argv = ["sweep", "--dataset", str(tiny_dataset_path), "--budget", "8", "--points", "2", "--seeds", "1",
            "--epochs", "1", "--concurrency", "2", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "laptop-fixed-budget" and out["runs"] == 2 and out["device"] == "cpu"
    assert out["off"]["runs_at_once"] == 1 and out["on"]["runs_at_once"] == 2
    assert out["on"]["concurrency"] == "2 runs at once × 1 thread (set)"
    for name in ("off", "on"):
        assert out[name]["done"] == 2 and out[name]["runs_per_hour"] > 0
    assert out["ratio"] == round(out["on"]["runs_per_hour"] / out["off"]["runs_per_hour"], 2)
