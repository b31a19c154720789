"""``info``: describes a dataset; damaged, truncated or foreign files give a clear error, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from mlipdiv.cli import main
from mlipdiv.paths import PROJECT_ROOT


def test_info_text_and_json(tiny_dataset_path: Path, capsys) -> None:
    assert main(["info", str(tiny_dataset_path)]) == 0
    text = capsys.readouterr().out
    assert "molecules        10" in text and "conformers       120" in text and "GFN2-xTB" in text
    assert main(["info", str(tiny_dataset_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["molecules"] == 10 and d["conformers"] == 120 and d["level_of_theory"] == "GFN2-xTB"
    assert set(d["elements"]) == {"H", "C", "N", "O", "F", "Cl"}
    assert d["atoms_per_molecule"]["min"] <= d["atoms_per_molecule"]["mean"] <= d["atoms_per_molecule"]["max"]
    assert d["energy_eV"]["min"] < d["energy_eV"]["max"] < 0
    assert d["path"] == str(tiny_dataset_path)


def test_info_without_argument_uses_the_default_dataset(tiny_dataset_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MLIPDIV_DATASET", str(tiny_dataset_path))
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(tiny_dataset_path)


def _bad_files(src: Path, d: Path) -> dict[str, tuple[Path, str]]:
    garbage = d / "garbage.h5"
    garbage.write_bytes(b"this is not HDF5\n" * 100)
    truncated = d / "truncated.h5"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    foreign = d / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = [1, 2, 3]
    future = d / "future.h5"
    shutil.copy(src, future)
    with h5py.File(future, "a") as f:
        f.attrs["version"] = 99
    gutted = d / "gutted.h5"
    shutil.copy(src, gutted)
    with h5py.File(gutted, "a") as f:
        del f[next(iter(f))]["forces"]
    return {
        "garbage": (garbage, "not a readable HDF5 file"),
        "truncated": (truncated, "truncated"),
        "foreign": (foreign, "not an mlipdiv dataset"),
        "future": (future, "version 99"),
        "gutted": (gutted, "lacks forces"),
        "missing": (d / "nope.h5", "no such file"),
    }


def test_bad_files_give_a_clear_error(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    for kind, (path, message) in _bad_files(tiny_dataset_path, tmp_path).items():
        assert main(["info", str(path)]) == 2, kind
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(path) in err and message in err, (kind, err)


def test_bad_file_through_the_real_command_line(tiny_dataset_path: Path, tmp_path: Path) -> None:
    path, _ = _bad_files(tiny_dataset_path, tmp_path)["truncated"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "mlipdiv", "info", str(path)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "truncated" in proc.stderr and str(path) in proc.stderr


def test_shipped_default_dataset() -> None:
    """The dataset in data/ meets the issue's bar: >= 1000 molecules x >= 32 conformers, < 50 MB, GFN2-xTB."""
    from mlipdiv.io.hdf5 import read_hdf5

    path = PROJECT_ROOT / "data" / "default.h5"
    if not path.exists():
        pytest.fail(f"{path} is missing: it is made by the command in data/README.md")
    assert path.stat().st_size < 50e6
    ds = read_hdf5(path)
    assert len(ds) >= 1000
    assert min(m.n_conformers for m in ds) >= 32
    assert ds.level_of_theory == "GFN2-xTB"
    assert "python -m mlipdiv generate" in ds.attrs["command"]


def test_atomic_number_outside_the_table_is_a_message_not_indexerror(tmp_path: Path, capsys) -> None:
    """Issue 13.10: Z = 200 used to end ``info`` in an IndexError (ASE's table stops at 118)."""
    from malformed import CASES, write_secret

    for name in ("Z = 200", "Z = 119", "Z = 0"):
        build = next(b for n, b, _ in CASES if n == name)
        path = build(tmp_path, write_secret(tmp_path))
        assert main(["info", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not an element" in err and str(path) in err
