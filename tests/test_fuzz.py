"""Malformed and hostile dataset files (``tests/malformed.py``) through the library and the command line.

Every case must end in one :class:`DatasetError` / one ``error:`` line naming the file, with no traceback, without
the content of any other file (the builders point links and external storage at a secret), and with nothing
written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from malformed import CASES, SECRET_MARK, write_secret  # tests/ is on sys.path (pytest rootdir insertion)

from mlipdiv.cli import main
from mlipdiv.data.dataset import load_dataset
from mlipdiv.errors import MlipdivError
from mlipdiv.paths import PROJECT_ROOT

IDS = [name for name, _, _ in CASES]


@pytest.fixture
def bad_file(request, tmp_path: Path) -> tuple[Path, str]:
    _, build, fragment = CASES[IDS.index(request.param)]
    secret = write_secret(tmp_path)
    return build(tmp_path, secret), fragment


def _listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("bad_file", IDS, indirect=True)
def test_library_refuses(bad_file: tuple[Path, str]) -> None:
    path, fragment = bad_file
    with pytest.raises(MlipdivError) as info:
        load_dataset(path)
    message = str(info.value)
    assert fragment in message and str(path) in message
    assert "\n" not in message and SECRET_MARK not in message and "root:" not in message


@pytest.mark.parametrize("bad_file", IDS, indirect=True)
def test_info_and_convert_refuse_with_one_line(bad_file: tuple[Path, str], tmp_path: Path, capsys) -> None:
    path, fragment = bad_file
    before = _listing(tmp_path)
    for argv in (["info", str(path)], ["convert", str(path), str(tmp_path / "out.h5")],
                 ["convert", str(path), str(tmp_path / "out.xyz")]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (argv, captured.err)
        assert SECRET_MARK not in captured.err + captured.out and "Traceback" not in captured.err
    assert _listing(tmp_path) == before  # no output, no temporary file


@pytest.mark.parametrize("name", ["external storage", "xyz periodic Lattice", "xyz symlink to a secret"])
def test_real_command_line(name: str, tmp_path: Path) -> None:
    """A few cases through ``python -m mlipdiv`` itself (the rest run in-process: each start costs seconds)."""
    _, build, fragment = CASES[IDS.index(name)]
    path = build(tmp_path, write_secret(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    before = _listing(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mlipdiv", "convert", str(path), str(tmp_path / "out.h5")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert SECRET_MARK not in proc.stderr + proc.stdout
    assert _listing(tmp_path) == before


def test_generate_from_extxyz_writes_nothing(tmp_path: Path, capsys) -> None:
    _, build, fragment = CASES[IDS.index("xyz NaN forces")]
    path = build(tmp_path, write_secret(tmp_path))
    before = _listing(tmp_path)
    assert main(["generate", "--from-extxyz", str(path), "--out", str(tmp_path / "imported.h5")]) == 2
    assert fragment in capsys.readouterr().err
    assert _listing(tmp_path) == before
