"""What the app takes from a browser: dataset uploads (validated like ``--dataset``, named by the user's file name,
kept in a bounded cache) and sweep results (picked among discovered folders or uploaded, never a typed path)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mlipdiv.errors import MlipdivError
from mlipdiv.uploads import accept_upload, discard_upload, prune_uploads, redact, redact_uploads, upload_dir


def nan_dataset_bytes(tiny_dataset_path: Path, tmp_path: Path) -> bytes:
    """The tiny dataset with one NaN coordinate, written with h5py directly (the writer would refuse it)."""
    import h5py

    bad = tmp_path / "nan.h5"
    shutil.copy(tiny_dataset_path, bad)
    with h5py.File(bad, "r+") as f:
        group = f[sorted(f)[0]]
        pos = group["positions"][()]
        pos[0, 0, 0] = np.nan
        group["positions"][...] = pos
    return bad.read_bytes()


def test_a_good_upload_is_kept_and_loaded(tiny_dataset_path, tmp_path):
    result = accept_upload("my set.h5", tiny_dataset_path.read_bytes(), tmp_path)
    assert result.ok and result.error is None
    assert len(result.dataset) == 10
    assert result.path.parent == upload_dir(tmp_path) and result.path.name.endswith("my_set.h5")
    assert result.name == "my set.h5"


@pytest.mark.parametrize("kind", ["nan", "not-hdf5", "wrong-suffix", "too-big"])
def test_a_bad_upload_is_refused_in_one_line_by_its_own_name_and_leaves_no_file(kind, tiny_dataset_path, tmp_path):
    name, data, extra = "mine.h5", b"", {}
    if kind == "nan":
        data = nan_dataset_bytes(tiny_dataset_path, tmp_path)
    elif kind == "not-hdf5":
        data = b"this is not an HDF5 file\n" * 20
    elif kind == "wrong-suffix":
        name, data = "mine.txt", tiny_dataset_path.read_bytes()
    else:
        data, extra = tiny_dataset_path.read_bytes(), {"max_bytes": 1000}
    cache = tmp_path / "cache"
    result = accept_upload(name, data, cache, **extra)
    assert not result.ok and result.path is None and result.dataset is None
    assert "\n" not in result.error and result.error.startswith(name)
    assert str(cache) not in result.error and "uploads" not in result.error  # no server path of the copy
    if kind == "nan":
        assert "positions hold NaN" in result.error
    assert not list(upload_dir(cache).glob("*"))


def test_redact_replaces_server_paths_by_the_display_name(tmp_path):
    p = tmp_path / "uploads" / "abc123-x.h5"
    msg = f"{p}: damaged (see {p.resolve()})"
    assert redact(msg, {p: "x.h5"}) == "x.h5: damaged (see x.h5)"


def test_redact_uploads_names_any_cached_upload_by_its_file_name(tmp_path):
    cached = upload_dir(tmp_path) / "0123456789ab-their_set.h5"
    assert redact_uploads(f"{cached}: no such file", tmp_path) == "their_set.h5: no such file"
    assert redact_uploads("/elsewhere/0123456789ab-x.h5", tmp_path) == "/elsewhere/0123456789ab-x.h5"


def _touch(path: Path, size: int, age: float) -> Path:
    path.write_bytes(b"x" * size)
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_the_upload_cache_is_bounded_oldest_first_and_keeps_files_in_use(tmp_path):
    files = [_touch(tmp_path / f"{i}.h5", 100, age=100 - i) for i in range(6)]  # 0 is the oldest
    removed = prune_uploads(tmp_path, keep=[files[0]], max_files=3, max_bytes=10_000)
    assert removed == files[1:4]  # the oldest not in use
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.h5", "4.h5", "5.h5"]
    removed = prune_uploads(tmp_path, max_files=10, max_bytes=150)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["5.h5"]


def test_accepting_uploads_prunes_the_cache(tiny_dataset_path, tmp_path, monkeypatch):
    import mlipdiv.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_CACHED_UPLOADS", 2)
    upload_dir(tmp_path).mkdir()
    for i in range(4):
        _touch(upload_dir(tmp_path) / f"old{i}.h5", 10, age=100 - i)
    result = accept_upload("new.h5", tiny_dataset_path.read_bytes(), tmp_path)
    assert result.ok
    assert sorted(p.name for p in upload_dir(tmp_path).iterdir()) == sorted(["old3.h5", result.path.name])


def test_discard_upload_touches_only_the_upload_folder(tmp_path):
    inside = upload_dir(tmp_path)
    inside.mkdir()
    a = _touch(inside / "a.h5", 10, 0)
    outside = _touch(tmp_path / "precious.h5", 10, 0)
    assert discard_upload(a, tmp_path) and not a.exists()
    assert not discard_upload(outside, tmp_path) and outside.exists()


# ------------------------------------------------------------------------------------------------ sweep results


def test_results_folders_are_found_under_the_roots_only(tmp_path):
    from mlipdiv.analysis.fit import results_folders

    from synthetic_sweeps import results_table

    store = tmp_path / "runs"
    (store / "sweeps" / "a").mkdir(parents=True)
    results_table().to_csv(store / "sweeps" / "a" / "results.csv", index=False)
    (store / "deep" / "1" / "2" / "3" / "4" / "5").mkdir(parents=True)
    (store / "deep" / "1" / "2" / "3" / "4" / "5" / "results.csv").write_text("x")  # beyond the depth bound
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "results.csv").write_text("secret")
    (store / "linkdir").symlink_to(outside)  # a folder link out of the store: not followed
    (store / "sweeps" / "b").mkdir()
    (store / "sweeps" / "b" / "results.csv").symlink_to(outside / "results.csv")  # a file link out: skipped
    found = results_folders([store, tmp_path / "missing"])
    assert found == [(store / "sweeps" / "a").resolve()]

    from mlipdiv.analysis.fit import results_choices

    choices = results_choices({"run store": store, "project": tmp_path / "missing"})
    assert choices == {"run store: runs/sweeps/a": (store / "sweeps" / "a" / "results.csv").resolve()}


def test_an_uploaded_results_table_is_read_or_refused_in_one_line():
    from mlipdiv.analysis.fit import read_results_upload

    from synthetic_sweeps import results_table

    good = results_table().to_csv(index=False).encode()
    df = read_results_upload("results.csv", good)
    assert len(df) > 0 and "strategy" in df
    for data in (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1\n", b"", b"\x00\xff\x00garbage"):
        with pytest.raises(MlipdivError) as err:
            read_results_upload("mine.csv", data)
        assert str(err.value).startswith("mine.csv") and "\n" not in str(err.value)
