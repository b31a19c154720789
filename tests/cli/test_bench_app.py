"""``python -m mlipdiv.bench app`` on the tiny dataset: it seeds a store, drives Chromium and prints its table (the
targets are the benchmark's business, not this test's: a loaded machine may miss them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_bench_app_measures_every_page_and_interaction(tiny_dataset_path, tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is not installed")
    env = {**os.environ, "MLIPDIV_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "mlipdiv.bench", "app", "--dataset", str(tiny_dataset_path), "--runs",
                          "6", "--real", "2", "--repeat", "1", "--json"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=880)
    assert out.returncode in (0, 1), out.stderr[-2000:]  # 1: a target missed
    result = json.loads(out.stdout)
    assert result["store"] == {"real": 2, "copies": 4}
    rows = {(r["page"], r["step"]): r for r in result["rows"]}
    for page in ("Home", "Dataset", "Trade-off", "Runs", "Embeddings", "Budget"):
        assert rows[(page, "first load")]["median_s"] > 0
    for step in (("Trade-off", "slider step"), ("Runs", "run selection"), ("Budget", "budget change"),
                 ("Embeddings", "colouring switch"), ("Dataset", "molecule search")):
        assert step in rows, result["errors"]
        assert rows[step]["worst_s"] > 0, (step, rows[step], result["resent"])  # a rerun was seen
    assert result["errors"] == {}
