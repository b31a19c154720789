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

from mlipdiv.cli import main
from mlipdiv.errors import MlipdivError
from mlipdiv.io.load import load_dataset
from mlipdiv.paths import PROJECT_ROOT

from malformed import CASES, SECRET_MARK, write_secret  # tests/ is on sys.path (pytest.ini: pythonpath)

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


# ------------------------------------------------------------------------------------------ the app's upload path


@pytest.mark.parametrize("bad_file", IDS, indirect=True)
def test_app_upload_refuses(bad_file: tuple[Path, str], tmp_path: Path) -> None:
    """What the Dataset page calls with an upload's name and bytes: one line naming the user's file, nothing kept."""
    from mlipdiv.uploads import accept_upload, upload_dir

    path, fragment = bad_file
    cache = tmp_path / "cache"
    result = accept_upload(path.name, path.read_bytes(), cache)
    assert not result.ok and result.dataset is None and result.path is None
    message = result.error
    assert message.startswith(f"{path.name}: ") and fragment in message, message
    assert "\n" not in message and SECRET_MARK not in message and str(tmp_path) not in message
    assert not list(upload_dir(cache).glob("*"))  # the refused copy is gone, no temporary file either


@pytest.fixture
def app_env(tmp_path: Path, tiny_dataset_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny dataset as the default, a run store and a cache of their own (one per test: stores get damaged)."""
    import shutil

    shutil.copy(tiny_dataset_path, tmp_path / "tiny.h5")
    monkeypatch.setenv("MLIPDIV_DATASET", str(tmp_path / "tiny.h5"))
    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "runs"))
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _page(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page(f"pages/{name}.py")
    at.run()
    return at


@pytest.mark.slow
@pytest.mark.parametrize("name", ["external storage", "external link", "virtual dataset", "Z = 200",
                                  "xyz periodic Lattice", "xyz id '..'"])
def test_dataset_page_upload_refuses(name: str, app_env: Path) -> None:
    """The same files through the Dataset page's uploader, as a user would: one error, no "Use this dataset"."""
    _, build, fragment = CASES[IDS.index(name)]
    folder = app_env / "user"
    folder.mkdir()
    path = build(folder, write_secret(folder))
    at = _page("dataset")
    at.file_uploader(key="dataset_upload").upload(path.name, path.read_bytes())
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value.replace("\\", "") for e in at.error]  # as shown: the page Markdown-escapes user text
    assert len(errors) == 1 and errors[0].startswith(f"{path.name}: ") and fragment in errors[0], errors
    assert "\n" not in errors[0] and SECRET_MARK not in errors[0] and str(app_env) not in errors[0]
    assert "use_upload" not in [b.key for b in at.button]
    assert not list((app_env / "cache" / "uploads").glob("*"))


# ---------------------------------------------------------------------------------------- a damaged run store


def _damaged_store(home: Path, damage: str) -> bytes:
    from mlipdiv.jobs.store import RunStore

    store = RunStore(home)
    for i in range(40):  # a table of several pages, so that half of it is a torn file
        store.create({"model": "schnet", "seed": i}, key=f"k{i}")
    db = home / "runs.db"
    data = db.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "foreign": b"my notes, not a database\n" * 40,
               "zeroed header": b"\0" * 100 + data[100:]}[damage]
    db.write_bytes(damaged)
    return damaged


@pytest.mark.parametrize("damage", ["truncated", "foreign", "zeroed header"])
def test_damaged_store_library_and_cli(damage: str, tmp_path: Path, monkeypatch, capsys) -> None:
    from mlipdiv.jobs.store import RunStore, StoreError

    home = tmp_path / "runs"
    before = _damaged_store(home, damage)
    monkeypatch.setenv("MLIPDIV_HOME", str(home))
    with pytest.raises(StoreError) as info:
        RunStore(home).list()
    assert "\n" not in str(info.value) and "runs repair" in str(info.value)
    capsys.readouterr()
    for argv in (["runs", "list"], ["runs", "show", "20260101-000000-abcdef"],
                 ["runs", "cancel", "20260101-000000-abcdef"], ["runs", "resume", "20260101-000000-abcdef"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert (home / "runs.db").read_bytes() == before  # unchanged
    assert sorted(p.name for p in home.iterdir() if p.is_file()) == ["runs.db"]


@pytest.mark.slow
def test_damaged_store_in_the_app(app_env: Path) -> None:
    """Pages that read the store, with a torn one: one message saying what to do, no traceback, store unchanged."""
    home = app_env / "runs"
    before = _damaged_store(home, "truncated")
    at = _page("runs")
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value.replace("\\", "") for e in at.error]  # as shown: the page Markdown-escapes user text
    assert len(errors) == 1 and "\n" not in errors[0] and "runs repair" in errors[0], errors
    at = _page("tradeoff")  # does not need the store until a run is started
    assert not at.exception and not at.error
    at.button(key="to_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value.replace("\\", "") for e in at.error]  # as shown: the page Markdown-escapes user text
    assert len(errors) == 1 and "runs repair" in errors[0], errors
    assert (home / "runs.db").read_bytes() == before
