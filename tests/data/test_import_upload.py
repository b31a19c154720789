"""An upload in another program's format is imported (the app's Dataset page), with the CLI's checks and messages."""

from __future__ import annotations

from pathlib import Path

from import_sources import ani_h5, extxyz_file, rmd17_npz, spice_h5
from mlipdiv.uploads import accept_upload, upload_dir


def test_foreign_uploads_are_imported_and_only_the_dataset_is_kept(tmp_path: Path) -> None:
    spice_h5(tmp_path / "spice.h5")
    rmd17_npz(tmp_path / "md.npz")
    extxyz_file(tmp_path / "mace.xyz")
    cache = tmp_path / "cache"
    for name, molecules in (("spice.h5", 3), ("md.npz", 1), ("mace.xyz", 3)):
        result = accept_upload(name, (tmp_path / name).read_bytes(), cache)
        assert result.ok, result.error
        assert len(result.dataset) == molecules and result.report["molecules"] == molecules
        assert result.path.name.endswith(".imported.h5") and result.report["source"] == name
    assert sorted(p.suffix for p in upload_dir(cache).iterdir()) == [".h5"] * 3  # no originals, no reports
    again = accept_upload("md.npz", (tmp_path / "md.npz").read_bytes(), cache)  # from the cache, same report
    assert again.ok and again.report["conformers"] == 20


def test_a_foreign_upload_that_needs_a_key_says_so_and_takes_options(tmp_path: Path) -> None:
    ani_h5(tmp_path / "ani.h5")
    data = (tmp_path / "ani.h5").read_bytes()
    cache = tmp_path / "cache"
    refused = accept_upload("ani.h5", data, cache)
    assert not refused.ok and refused.error.startswith("ani.h5: ") and "--energy-key" in refused.error
    assert str(cache) not in refused.error and "\n" not in refused.error
    assert not list(upload_dir(cache).iterdir())
    result = accept_upload("ani.h5", data, cache, import_options={"energy_key": "wb97x_dz.energy",
                                                                  "level_of_theory": "wB97x/6-31G(d)"})
    assert result.ok and result.dataset.level_of_theory == "wB97x/6-31G(d)"
