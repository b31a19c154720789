"""The ``generate`` pipeline on tiny inputs: families, determinism, resume, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlipdiv.cli import main
from mlipdiv.data import conformers as conf_mod
from mlipdiv.io.hdf5 import read_hdf5
from mlipdiv.data.generate import Settings, generate
from mlipdiv.data.molecules import Entry, Rejected, build_pool, check_smiles
from mlipdiv.data.oracle import GFN2xTB, OracleFailure
from mlipdiv.errors import MlipdivError

SMALL = ["CCO", "CCN", "OCCO"]
TINY = Settings(conformers=4, parents=2)


def _arrays_equal(a, b) -> None:
    assert a.ids == b.ids
    for x, y in zip(a, b):
        assert x.smiles == y.smiles
        for key in ("atomic_numbers", "positions", "energy", "forces", "parent", "temperature", "method"):
            np.testing.assert_array_equal(getattr(x, key), getattr(y, key), err_msg=f"{x.smiles} {key}")


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries, _ = build_pool(smiles=SMALL)
    out = tmp_path_factory.mktemp("gen") / "clean.h5"
    generate(entries, TINY, out, workers=1, progress=False, command="tests")
    return out


def test_molecule_identity_and_rejections() -> None:
    a, b = check_smiles("OCC"), check_smiles("C(O)C")
    assert isinstance(a, Entry) and a.smiles == "CCO" and a.id == b.id
    assert check_smiles("C[C@H](N)O").smiles == "CC(N)O"  # stereo dropped
    assert "invalid SMILES" in check_smiles("C1CC").reason
    assert "unsupported element Si" in check_smiles("[Si]").reason
    assert "unsupported element B" in check_smiles("B").reason
    assert "net charge" in check_smiles("C[NH3+]").reason
    assert "fragments" in check_smiles("CCO.O").reason
    assert "heavy atoms" in check_smiles("CCCCCC", max_heavy_atoms=4).reason
    entries, rejected = build_pool(smiles=["CCO", "OCC", "C1CC", "c1ccccc1O"])
    assert [e.smiles for e in entries] == ["CCO", "Oc1ccccc1"]  # duplicates merged, input order kept
    assert [r.input for r in rejected] == ["C1CC"]


def test_smiles_file_with_names_and_nci_pool(tmp_path: Path) -> None:
    f = tmp_path / "mols.smi"
    f.write_text("# comment\nCCO ethanol\n\nc1ccccc1O phenol, the acid\nC1CC broken\n")
    entries, rejected = build_pool(smiles_file=f)
    assert [(e.smiles, e.name) for e in entries] == [("CCO", "ethanol"), ("Oc1ccccc1", "phenol, the acid")]
    assert rejected == [Rejected("C1CC", "invalid SMILES (RDKit cannot parse it)", "broken")]
    nci, _ = build_pool(pool="nci", max_heavy_atoms=6, max_molecules=20)
    assert 0 < len(nci) <= 20
    for e in nci:
        assert isinstance(check_smiles(e.smiles, max_heavy_atoms=6), Entry)


def test_families_parents_and_labels(clean_run: Path) -> None:
    ds = read_hdf5(clean_run)
    assert [m.smiles for m in ds] == ["CCO", "CCN", "OCCO"]  # input order
    assert ds.level_of_theory == "GFN2-xTB"
    assert ds.attrs["sampling"] == "nms" and ds.attrs["seed"] == 0 and "rdkit" in json.loads(ds.attrs["software"])
    oracle = GFN2xTB()
    for m in ds:
        assert m.n_conformers == 4
        relaxed = m.method == "relaxed"
        n_parents = int(relaxed.sum())
        assert 1 <= n_parents <= 2
        assert sorted(set(m.parent.tolist())) == list(range(n_parents))
        assert (m.temperature[relaxed] == 0).all() and (m.temperature[~relaxed] == 300).all()
        assert set(m.method[~relaxed]) == {"nms"}
        # labels are GFN2-xTB at exactly the stored geometry
        j = int(np.flatnonzero(~relaxed)[0])
        lab = oracle(m.atomic_numbers, m.positions[j].astype(np.float64))
        assert abs(lab.energy - m.energy[j]) < 1e-6
        np.testing.assert_allclose(lab.forces, m.forces[j], atol=1e-5)
        # thermal samples are distorted, but not absurdly, copies of their parent
        parent_pos = m.positions[relaxed][m.parent[j]]
        assert 0.005 < np.abs(m.positions[j] - parent_pos).max() < 1.5
    report = json.loads(clean_run.with_name("clean.h5.report.json").read_text())
    assert report["molecules"] == 3 and report["conformers"] == 12 and report["skipped"] == []
    assert not clean_run.with_name("clean.h5.partial").exists()


def test_same_seed_same_dataset_any_worker_count(clean_run: Path, tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=SMALL)
    generate(entries, TINY, tmp_path / "again.h5", workers=2, progress=False)
    _arrays_equal(read_hdf5(clean_run), read_hdf5(tmp_path / "again.h5"))
    generate(entries[:1], Settings(conformers=4, parents=2, seed=1), tmp_path / "seed1.h5", workers=1, progress=False)
    other = read_hdf5(tmp_path / "seed1.h5")[0]
    assert not np.array_equal(other.positions, read_hdf5(clean_run)[0].positions)


def test_workers_do_not_rerun_the_callers_main_script(tmp_path: Path, monkeypatch) -> None:
    """Under Streamlit ``__main__`` is ``app.py``; spawned workers must not execute it again."""
    import sys
    import types

    marker = tmp_path / "main-ran"
    script = tmp_path / "fake_app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    entries, _ = build_pool(smiles=SMALL[:2])
    report = generate(entries, TINY, tmp_path / "w.h5", workers=2, progress=False)
    assert report["molecules"] == 2 and not marker.exists()


def test_resume_after_interruption(clean_run: Path, tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=SMALL)
    out = tmp_path / "resumed.h5"
    first = generate(entries, TINY, out, workers=1, progress=False, max_new=2)  # "killed" after two molecules
    assert first["interrupted"] and not out.exists() and out.with_name("resumed.h5.partial").exists()
    computed: list[str] = []
    generate(entries, TINY, out, workers=1, progress=False, on_outcome=lambda rec: computed.append(rec["smiles"]))
    assert computed == ["OCCO"]  # only the missing molecule
    _arrays_equal(read_hdf5(clean_run), read_hdf5(out))
    assert not out.with_name("resumed.h5.partial").exists()


def test_resume_with_other_arguments_is_refused(tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=SMALL)
    out = tmp_path / "x.h5"
    generate(entries, TINY, out, workers=1, progress=False, max_new=1)
    with pytest.raises(MlipdivError, match="different arguments"):
        generate(entries, Settings(conformers=5, parents=2), out, workers=1, progress=False)


def test_cli_keeps_good_molecules_and_names_invalid_smiles(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.h5"
    rc = main(["generate", "--smiles", "CCO", "C1CC", "c1ccccc1O", "--conformers", "4", "--parents", "2",
               "--workers", "1", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0
    assert "C1CC" in captured.err and "invalid SMILES" in captured.err
    assert "2 molecules, 8 conformers" in captured.out
    ds = read_hdf5(out)
    assert [m.smiles for m in ds] == ["CCO", "Oc1ccccc1"]
    report = json.loads((tmp_path / "cli.h5.report.json").read_text())
    assert report["skipped"] == [{"input": "C1CC", "name": "", "reason": "invalid SMILES (RDKit cannot parse it)"}]
    assert "python -m mlipdiv generate" in ds.attrs["command"]
    # a finished output is not overwritten by accident
    assert main(["generate", "--smiles", "CCO", "--out", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_nothing_usable_is_an_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "none.h5"
    rc = main(["generate", "--smiles", "[Si]", "B", "C1CC", "--conformers", "4", "--workers", "1", "--no-progress",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    assert "no molecule could be generated" in err and "unsupported element Si" in err
    assert "unsupported element B" in err and "Traceback" not in err
    assert json.loads((tmp_path / "none.h5.report.json").read_text())["molecules"] == 0


def test_failed_embedding_is_skipped_with_reason(tmp_path: Path, monkeypatch) -> None:
    real_embed = conf_mod.embed

    def embed(mol, n, seed):  # RDKit "fails" for the molecule with a nitrogen
        return [] if any(a.GetSymbol() == "N" for a in mol.GetAtoms()) else real_embed(mol, n, seed)

    monkeypatch.setattr(conf_mod, "embed", embed)
    entries, _ = build_pool(smiles=["CCO", "CCN"])
    report = generate(entries, TINY, tmp_path / "e.h5", workers=1, progress=False)
    assert report["molecules"] == 1
    assert report["skipped"] == [{"input": "CCN", "id": entries[1].id,
                                  "reason": "embedding failed: RDKit ETKDGv3 could not embed a 3D structure"}]


class ChlorineFails:
    """An oracle whose SCF never converges for molecules with chlorine."""

    level_of_theory = "GFN2-xTB"

    def __init__(self):
        self.real = GFN2xTB()

    def __call__(self, atomic_numbers, positions, charge=0):
        if 17 in np.asarray(atomic_numbers):
            raise OracleFailure("GFN2-xTB failed: SCF not converged in 250 cycles")
        return self.real(atomic_numbers, positions, charge)


class FlakySamples:
    """Fails every third labelling of a stored (float32) geometry after the first, i.e. some thermal samples."""

    level_of_theory = "GFN2-xTB"

    def __init__(self, every: int = 3):
        self.real, self.every, self.stored_calls, self.failed = GFN2xTB(), every, 0, 0

    def __call__(self, atomic_numbers, positions, charge=0):
        positions = np.asarray(positions, dtype=np.float64)
        if np.array_equal(positions.astype(np.float32).astype(np.float64), positions):
            self.stored_calls += 1
            if self.stored_calls > 1 and self.stored_calls % self.every == 0:  # the parent's label succeeds
                self.failed += 1
                raise OracleFailure("GFN2-xTB failed: SCF not converged in 250 cycles")
        return self.real(atomic_numbers, positions, charge)


def test_scf_failure_skips_the_molecule(tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=["CCO", "CCCl"])
    report = generate(entries, TINY, tmp_path / "s.h5", workers=1, progress=False, oracle=ChlorineFails())
    assert report["molecules"] == 1
    (skip,) = report["skipped"]
    assert skip["input"] == "CCCl" and "SCF not converged" in skip["reason"]
    assert [m.smiles for m in read_hdf5(tmp_path / "s.h5")] == ["CCO"]


def test_failed_samples_are_replaced_never_stored(tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=["CCO"])
    oracle = FlakySamples()
    settings = Settings(conformers=6, parents=1)
    report = generate(entries, settings, tmp_path / "f.h5", workers=1, progress=False, oracle=oracle)
    assert oracle.failed >= 1 and report["failed_samples_replaced"] == oracle.failed
    (m,) = read_hdf5(tmp_path / "f.h5")
    assert m.n_conformers == 6
    real = GFN2xTB()
    for j in range(m.n_conformers):
        assert abs(real(m.atomic_numbers, m.positions[j].astype(np.float64)).energy - m.energy[j]) < 1e-6
    # when failures never stop, the molecule is skipped with a reason instead of being short of conformers
    with pytest.raises(MlipdivError, match="could not label 6 conformers: too many failed samples"):
        generate(entries, settings, tmp_path / "g.h5", workers=1, progress=False, oracle=FlakySamples(every=1))
    assert not (tmp_path / "g.h5").exists()


def test_md_sampling(tmp_path: Path) -> None:
    entries, _ = build_pool(smiles=["CO"])
    generate(entries, Settings(conformers=3, parents=1, sampling="md", temperature=500, relax="mmff"),
             tmp_path / "md.h5", workers=1, progress=False)
    (m,) = read_hdf5(tmp_path / "md.h5")
    assert list(m.method) == ["relaxed", "md", "md"] and list(m.temperature) == [0, 500, 500]
    assert not np.allclose(m.positions[1], m.positions[2])


def test_torn_partial_output_keeps_finished_molecules(clean_run: Path, tmp_path: Path) -> None:
    """Issue 13.9: a partial output cut short (killed mid-write) keeps its complete molecules on resume."""
    entries, _ = build_pool(smiles=SMALL)
    out = tmp_path / "torn.h5"
    generate(entries, TINY, out, workers=1, progress=False, max_new=2)
    partial = out.with_name("torn.h5.partial")
    # a third molecule half written when the process died: its group is in the file, its log line is not
    import h5py

    from mlipdiv.io.hdf5 import write_molecule

    with h5py.File(partial, "a") as f:
        write_molecule(f, read_hdf5(clean_run)[2])
    data = partial.read_bytes()
    partial.write_bytes(data[: len(data) - 2000])  # the tail of the file never reached the disk
    with pytest.raises(OSError):
        h5py.File(partial, "r")  # as torn as it gets: HDF5 refuses to open it
    computed: list[str] = []
    generate(entries, TINY, out, workers=1, progress=False, on_outcome=lambda rec: computed.append(rec["smiles"]))
    assert computed == ["OCCO"]  # the two finished molecules were kept, not recomputed
    _arrays_equal(read_hdf5(clean_run), read_hdf5(out))


def test_damaged_molecule_in_partial_output_is_redone(clean_run: Path, tmp_path: Path) -> None:
    """A logged molecule whose data no longer reads back is dropped and computed again; the others are kept."""
    import h5py

    entries, _ = build_pool(smiles=SMALL)
    out = tmp_path / "dmg.h5"
    generate(entries, TINY, out, workers=1, progress=False, max_new=2)
    partial = out.with_name("dmg.h5.partial")
    with h5py.File(partial, "a") as f:
        g = f[entries[0].id]
        del g["atomic_numbers"]
        g["atomic_numbers"] = np.zeros(9, dtype=np.int8)  # Z = 0: fails the dataset checks
    computed: list[str] = []
    generate(entries, TINY, out, workers=1, progress=False, on_outcome=lambda rec: computed.append(rec["smiles"]))
    assert computed == ["CCO", "OCCO"]
    _arrays_equal(read_hdf5(clean_run), read_hdf5(out))


def test_molecule_too_large_is_skipped_before_embedding(tmp_path: Path, monkeypatch) -> None:
    """Issue 13.14: a 150-carbon alkane (452 atoms) is skipped at once with the limit in the reason."""
    from mlipdiv.data.generate import process_molecule
    from mlipdiv.limits import MAX_ATOMS_GENERATE
    from mlipdiv.io.dataset import molecule_id

    alkane = "C" * 150
    item = check_smiles(alkane)
    assert isinstance(item, Rejected) and "452 atoms" in item.reason and str(MAX_ATOMS_GENERATE) in item.reason
    assert isinstance(check_smiles("C" * 30), Entry)  # 92 atoms: within the limit

    def never(*args, **kwargs):
        raise AssertionError("embedding must not start")

    monkeypatch.setattr(conf_mod, "distinct_conformers", never)
    entry = Entry(id=molecule_id(alkane), smiles=alkane)  # an Entry made by hand skips check_smiles
    outcome = process_molecule(entry, TINY, GFN2xTB())
    assert outcome.molecule is None and "limit is" in outcome.reason
    entries, rejected = build_pool(smiles=[alkane])
    with pytest.raises(MlipdivError, match="452 atoms"):
        generate(entries, TINY, tmp_path / "big.h5", rejected=rejected, workers=1, progress=False)


def test_cli_bad_output_and_input_files_are_messages(tmp_path: Path, capsys) -> None:
    """Issue 13.13: --out that is a folder, under a file, or unwritable; a Latin-1 SMILES file; --max-molecules."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    latin = tmp_path / "latin.smi"
    latin.write_bytes("CCO ethanol\nCCN \xc9thylamine\n".encode("latin-1"))
    good = tmp_path / "good.smi"
    good.write_text("CCO\n")
    cases = [
        (["--smiles", "CCO", "--out", str(tmp_path)], "is a folder"),
        (["--smiles", "CCO", "--out", str(a_file / "x.h5")], "is a file, not a folder"),
        (["--smiles", "CCO", "--out", "/proc/mlipdiv-test/x.h5"], "cannot write in /proc"),
        (["--smiles-file", str(latin), "--out", str(tmp_path / "l.h5")], "line 2 is not UTF-8; save the file as UTF-8"),
        (["--smiles", "CCO", "--max-molecules", "-1", "--out", str(tmp_path / "m.h5")], "--max-molecules must be at"),
        (["--smiles", "CCO", "--max-molecules", "0", "--out", str(tmp_path / "m.h5")], "--max-molecules must be at"),
        (["--smiles-file", str(good), "--workers", "0", "--out", str(tmp_path / "w.h5")], "--workers must be at least 1"),
        (["--from-extxyz", str(good), "--out", str(a_file / "x.h5")], "is a file, not a folder"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in cases:
        assert main(["generate", "--no-progress", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(MlipdivError, match="max_molecules"):
        build_pool(smiles=["CCO", "CCN"], max_molecules=-1)  # used to drop the last molecule silently


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    """Issue 13.16: kill -9 of a generate with 2 workers leaves no worker (nor resource tracker) running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from mlipdiv.paths import PROJECT_ROOT

    script = (
        "from mlipdiv.data.generate import Settings, generate\n"
        "from mlipdiv.data.molecules import build_pool\n"
        "entries, _ = build_pool(smiles=['CCCCCCO', 'CCCCCCN', 'OCCCCCO', 'CCCCCCCl'])\n"
        f"generate(entries, Settings(conformers=400, parents=4), {str(tmp_path / 'k.h5')!r}, workers=2,"
        " progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path)
    children: list = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for both workers (and the resource tracker) to be up
            children = parent.children(recursive=True)
            if len([c for c in children if "resource_tracker" not in " ".join(c.cmdline())]) >= 2:
                break
            time.sleep(0.2)
        assert len(children) >= 2, "the workers never started"
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        alive = children
        while alive and time.monotonic() < deadline:
            alive = [c for c in alive if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.2)
        assert not alive, [" ".join(c.cmdline())[:80] for c in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in children:  # on failure, do not leave them to run on
            try:
                child.kill()
            except psutil.Error:
                pass
