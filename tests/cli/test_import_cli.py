"""``import`` end to end: each format imports, then info, split and a 2-epoch train run on the result; a dataset
without forces is explored but not trained on; bad input is one line naming the file and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlipdiv.cli import main

from import_sources import ani_h5, ethanol_md_db, extxyz_file, qm9_like_db, rmd17_npz, spice_h5

SOURCES = {  # builder, file name, extra import flags, split flags (M x C that each dataset can give)
    "ase-db": (lambda p: ethanol_md_db(p, n=12), "md_ethanol.db", [], ["--molecules", "1", "--test-molecules", "0",
                                                                       "--conformers-per-molecule", "2",
                                                                       "--val-per-molecule", "1"]),
    "extxyz": (extxyz_file, "mace.xyz", [], ["--molecules", "2", "--conformers-per-molecule", "1",
                                             "--val-per-molecule", "1"]),
    "spice-h5": (spice_h5, "spice.h5", [], ["--molecules", "2", "--conformers-per-molecule", "2",
                                            "--val-per-molecule", "1"]),
    "ani-h5": (ani_h5, "ani1x.h5", ["--energy-key", "wb97x_dz.energy"], ["--molecules", "2",
                                                                         "--conformers-per-molecule", "2",
                                                                         "--val-per-molecule", "1"]),
    "npz": (rmd17_npz, "rmd17.npz", [], ["--molecules", "1", "--test-molecules", "0",
                                         "--conformers-per-molecule", "4", "--val-per-molecule", "2"]),
}


@pytest.mark.parametrize("fmt", list(SOURCES))
def test_import_then_info_split_and_train(fmt: str, tmp_path: Path, capsys) -> None:
    build, name, flags, split = SOURCES[fmt]
    build(tmp_path / name)
    out = tmp_path / "mine.h5"
    assert main(["import", str(tmp_path / name), "--out", str(out), "--quiet", *flags]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "report:" in printed
    assert ("--test-molecules 0" in printed) == (split[1] == "1")
    report = json.loads((tmp_path / "mine.h5.import.json").read_text())
    assert report["format"] == fmt and report["forces"]
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["molecules"] == report["molecules"] and info["conformers"] == report["conformers"]
    assert info["source"] == f"{fmt} import: {name}"
    assert main(["split", "--dataset", str(out), *split, "--out", str(tmp_path / "split.json")]) == 0
    assert json.loads((tmp_path / "split.json").read_text())["train"]
    assert main(["train", "--dataset", str(out), *split, "--model", "schnet", "--epochs", "2", "--hidden", "16",
                 "--batch-size", "4", "--device", "cpu", "--threads", "1", "--quiet", "--out",
                 str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["curve"]) == 2


def test_without_forces_imports_and_explores_but_does_not_train(tmp_path: Path, capsys) -> None:
    qm9_like_db(tmp_path / "qm9.db")
    out = tmp_path / "qm9.h5"
    assert main(["import", str(tmp_path / "qm9.db"), "--out", str(out), "--quiet"]) == 2
    assert "several keys could hold the energy: 'energy_U0', 'energy_U'; name one with --energy-key" in \
        capsys.readouterr().err
    assert main(["import", str(tmp_path / "qm9.db"), "--out", str(out), "--quiet", "--energy-key", "energy_U0"]) == 0
    assert "no forces: the dataset can be explored, not trained on" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert main(["split", "--dataset", str(out), "--molecules", "4", "--conformers-per-molecule", "1",
                 "--val-per-molecule", "0", "--out", str(tmp_path / "s.json")]) == 0
    capsys.readouterr()
    assert main(["train", "--dataset", str(out), "--molecules", "4", "--conformers-per-molecule", "1",
                 "--val-per-molecule", "0", "--model", "schnet", "--epochs", "2", "--quiet", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "qm9.h5 has no forces" in err and "training needs energies and forces" in err
    assert not (tmp_path / "run" / "config.json").exists()  # refused before the run folder was written


def test_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a dataset\n")
    rmd17_npz(tmp_path / "m.npz")
    cases = [
        (["import", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o.h5")], "notes.txt: unknown format"),
        (["import", str(tmp_path / "nope.db"), "--out", str(tmp_path / "o.h5")], "nope.db: no such file"),
        (["import", str(tmp_path / "m.npz"), "--out", str(tmp_path / "o.h5"), "--energy-key", "E_total"],
         "m.npz: file: no array 'E_total'"),
        (["import", str(tmp_path / "m.npz"), "--out", str(tmp_path / "o.h5"), "--format", "spice-h5"],
         "m.npz: not a readable HDF5 file"),
    ]
    for argv, expected in cases:
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "notes.txt"]
    out = tmp_path / "o.h5"
    out.write_bytes(b"mine")
    assert main(["import", str(tmp_path / "m.npz"), "--out", str(out), "--quiet"]) == 2
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"mine"
    assert main(["import", str(tmp_path / "m.npz"), "--out", str(out), "--quiet", "--overwrite"]) == 0


def test_entered_cost_model_prices_the_imported_level_of_theory(tmp_path: Path) -> None:
    import argparse

    from mlipdiv.analysis.cost import CostModel
    from mlipdiv.cli.budget import _entered_model

    rmd17_npz(tmp_path / "m.npz")
    assert main(["import", str(tmp_path / "m.npz"), "--out", str(tmp_path / "m.h5"), "--quiet",
                 "--level-of-theory", "PBE/def2-SVP"]) == 0
    args = argparse.Namespace(qm_seconds=120.0, qm_name=None, atoms=None, dataset=str(tmp_path / "m.h5"),
                              dft_exponent=3.0)
    model = _entered_model(args)
    assert model.label.startswith("PBE/def2-SVP (entered: 120 CPU-s per conformer at 9 atoms")
    assert model.conformers_for(1.0, 9) == 30  # 3600 s / 120 s
    assert model.seconds_per_conformer(18) == pytest.approx(120.0 * 8)
    with pytest.raises(Exception, match="positive cost"):
        CostModel.entered(0.0, 9)


def test_everything_downstream_works_on_an_imported_dataset(tmp_path: Path, capsys, monkeypatch) -> None:
    """An imported SPICE-style file (no SMILES trusted, families clustered at import) drives a sweep, both
    embedding maps and the per-molecule conformer map, and a study preset either plans on it or says why not."""
    from mlipdiv.embeddings import MapParams, cached_map, molecule_conformer_map
    from mlipdiv.errors import MlipdivError
    from mlipdiv.io.load import load_dataset

    monkeypatch.setenv("MLIPDIV_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLIPDIV_CONCURRENCY", "1")
    spice_h5(tmp_path / "spice.h5")
    out = tmp_path / "mine.h5"
    assert main(["import", str(tmp_path / "spice.h5"), "--out", str(out), "--quiet"]) == 0
    assert main(["sweep", "--dataset", str(out), "--experiment", "fixed-budget", "--budget", "2", "--points", "2",
                 "--seeds", "1", "--model", "schnet", "--epochs", "1", "--hidden", "16", "--device", "cpu",
                 "--out", str(tmp_path / "sweep")]) == 0
    rows = (tmp_path / "sweep" / "results.csv").read_text().splitlines()
    assert len(rows) > 1 and rows[0].startswith("experiment,")

    dataset = load_dataset(out)
    for kind in ("structures", "conformers"):
        emb = cached_map(dataset, MapParams(kind=kind), use_disk=False)
        assert emb.coords.shape == ((len(dataset) if kind == "structures" else dataset.n_conformers), 2)
    xy, _ = molecule_conformer_map(dataset[0])
    assert xy.shape == (dataset[0].n_conformers, 2)

    from mlipdiv.analysis.study import plan_preset
    from mlipdiv.presets import get_preset

    try:  # a 5-molecule file is too small for the laptop preset: a clear refusal naming what is feasible
        plan_preset(get_preset("laptop-fixed-budget"), out)
    except MlipdivError as exc:
        assert "largest budget" in str(exc) or "feasible" in str(exc)
