"""Splits: exact M x C, no leakage, parent families kept whole, held-out sets independent of (M, C), byte-identical
output for a seed, refusals that name the feasible maximum, scaffold splits, experiment grids, strategies."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from mlipdiv.errors import InfeasibleRequest
from mlipdiv.io.dataset import Dataset, Molecule, molecule_id
from mlipdiv.selection import SplitSpec, experiment_grid, load_split, make_split, reserve, resolve_point
from mlipdiv.selection.strategies import greedy_max_min

SETS = ("train", "val", "test_conformers", "test_molecules")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLIPDIV_CACHE", str(tmp_path / "cache"))


def synthetic_dataset(smiles: list[str], parents: int | list[int] = 4, samples: int = 5, seed: int = 0) -> Dataset:
    """RDKit conformers + small random displacements and fake energies: splits need no QM labels."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    rng = np.random.default_rng(seed)
    molecules = []
    for k, smi in enumerate(smiles):
        n_par = parents[k] if isinstance(parents, list) else parents
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_par, randomSeed=seed + k))
        pos, parent = [], []
        for p, cid in enumerate(cids):
            base = mol.GetConformer(cid).GetPositions()
            for s in range(samples):
                pos.append(base + (rng.normal(0.0, 0.02, base.shape) if s else 0.0))
                parent.append(p)
        n = len(pos)
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(smi), isomericSmiles=False)
        molecules.append(
            Molecule(
                id=molecule_id(canonical),
                smiles=canonical,
                atomic_numbers=[a.GetAtomicNum() for a in mol.GetAtoms()],
                positions=np.array(pos),
                energy=rng.normal(-100.0, 1.0, n),
                forces=np.zeros((n, mol.GetNumAtoms(), 3)),
                parent=parent,
                temperature=np.full(n, 300.0),
                method=["nms"] * n,
            )
        )
    return Dataset(sorted(molecules, key=lambda m: m.id))


MANY = [
    "CCO", "CCCO", "CCCCO", "CCCCCO", "CC(C)O", "CCN", "CCCN", "CC(=O)O", "CCC(=O)O", "OCCO",
    "c1ccccc1O", "c1ccccc1N", "c1ccccc1C", "c1ccccc1CC", "c1ccncc1", "c1ccncc1C", "C1CCCCC1", "C1CCCCC1O",
    "C1CCOC1", "C1CCOC1C", "O=C1CCCC1", "c1ccc2ccccc2c1", "FC(F)F", "ClCCl",
]  # fmt: skip


@pytest.fixture(scope="module")
def many() -> Dataset:
    """24 molecules (several sharing scaffolds) x 4 parent families of 5."""
    return synthetic_dataset(MANY)


def pairs_by_molecule(pairs) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for m, c in pairs:
        out.setdefault(m, set()).add(c)
    return out


def assert_no_leakage(split, dataset: Dataset) -> None:
    sets = {name: getattr(split, name) for name in SETS}
    for name, pairs in sets.items():
        assert len(pairs) == len(set(pairs)), f"duplicates in {name}"
        for m, c in pairs:
            assert 0 <= c < dataset[m].n_conformers
    for a, b in combinations(SETS, 2):
        assert not set(sets[a]) & set(sets[b]), f"{a} and {b} share conformers"
    held = {m for m, _ in split.test_molecules}
    for name in ("train", "val", "test_conformers"):
        assert not held & {m for m, _ in sets[name]}, f"a test molecule appears in {name}"


# ------------------------------------------------------------------------------------------------ exact sets


@pytest.mark.parametrize(("budget", "molecules"), [(16, 8), (8, 2), (4, 1), (32, 8)])
def test_exact_m_by_c(tiny_dataset, budget: int, molecules: int) -> None:
    split = make_split(tiny_dataset, SplitSpec(budget=budget, molecules=molecules, seed=3))
    per = pairs_by_molecule(split.train)
    assert len(split.train) == budget and len(per) == molecules
    assert {len(c) for c in per.values()} == {budget // molecules}
    assert split.counts["train"] == budget and split.spec.conformers_per_molecule == budget // molecules
    assert_no_leakage(split, tiny_dataset)


def test_counts_of_every_set(tiny_dataset) -> None:
    # 10 molecules x (3 families of 4): 2 held out; per trainable molecule 1 family (4) test, 4 val, 4 left
    split = make_split(tiny_dataset, SplitSpec(molecules=5, conformers_per_molecule=3, seed=0))
    assert split.counts["test_molecule_count"] == 2 and split.counts["trainable_molecules"] == 8
    assert len(split.test_molecules) == 2 * 8  # capped at max_eval_per_molecule = 8 of 12
    assert len(split.test_conformers) == 5 * 4 and len(split.val) == 5 * 4
    assert set(pairs_by_molecule(split.val)) == set(pairs_by_molecule(split.train))
    assert set(pairs_by_molecule(split.test_conformers)) == set(pairs_by_molecule(split.train))


def test_no_leakage_with_every_option(many: Dataset) -> None:
    for strategy in ("random", "diverse"):
        for molecule_split in ("random", "scaffold"):
            for holdout in ("family", "random"):
                spec = SplitSpec(
                    budget=30, molecules=10, strategy=strategy, molecule_split=molecule_split,
                    conformer_holdout=holdout, test_molecules=0.25, seed=7,
                )  # fmt: skip
                split = make_split(many, spec, diversity=False)
                assert len(split.train) == 30
                assert_no_leakage(split, many)


def test_parent_families_kept_together(many: Dataset) -> None:
    spec = SplitSpec(budget=40, molecules=8, seed=1)
    res = reserve(many, spec)
    split = make_split(many, spec, diversity=False)
    train, test = pairs_by_molecule(split.train), pairs_by_molecule(split.test_conformers)
    for m in res.trainable:
        parent = many[m].parent
        test_families = set(parent[res.test[m]])
        assert len(test_families) == 1  # 25% of 4 families
        assert set(np.flatnonzero(np.isin(parent, list(test_families)))) == set(res.test[m])  # whole families
        rest = np.concatenate([res.val[m], res.available[m]])
        assert not test_families & set(parent[rest])
    for m in train:
        assert test[m] <= set(res.test[m]) and not set(many[m].parent[list(train[m])]) & set(
            many[m].parent[list(test[m])]
        )


def test_single_family_falls_back_to_random(tmp_path: Path) -> None:
    ds = synthetic_dataset(["CCO", "CCN", "CCCl"], parents=[1, 3, 3], samples=8)
    split = make_split(ds, SplitSpec(molecules=3, conformers_per_molecule=2, test_molecules=0, seed=0))
    assert split.counts["family_fallback_molecules"] == 1
    res = reserve(ds, split.spec)
    lone = next(m for m in ds.ids if ds[m].n_conformers == 8)
    assert len(res.test[lone]) == 2  # round(0.25 x 8)
    assert_no_leakage(split, ds)
    # the rigid molecule's hold-out is a random draw of its one family: not scored as unseen conformers
    assert lone not in {m for m, _ in split.test_conformers} and split.counts["rigid_test_conformers"] == 2
    split.save(tmp_path / "s.json")
    assert '"family_fallback_molecules": 1' in (tmp_path / "s.json").read_text()


def test_random_conformer_holdout(many: Dataset) -> None:
    res = reserve(many, SplitSpec(conformer_holdout="random", seed=0))
    assert {len(t) for t in res.test.values()} == {5}  # round(0.25 x 20)


def test_eval_sets_are_capped(many: Dataset) -> None:
    split = make_split(many, SplitSpec(budget=20, molecules=4, max_eval_per_molecule=2, seed=0), diversity=False)
    for name in ("val", "test_conformers", "test_molecules"):
        assert max(len(c) for c in pairs_by_molecule(getattr(split, name)).values()) == 2


# ------------------------------------------------------------------------------------------------ independence of M, C


def test_held_out_sets_do_not_depend_on_m_and_c(many: Dataset) -> None:
    small = make_split(many, SplitSpec(budget=12, molecules=4, seed=5), diversity=False)
    large = make_split(many, SplitSpec(budget=90, molecules=18, seed=5), diversity=False)
    other = make_split(many, SplitSpec(budget=12, molecules=4, seed=5, strategy="diverse"), diversity=False)
    assert small.test_molecules == large.test_molecules == other.test_molecules
    for name in ("test_conformers", "val"):
        a, b = pairs_by_molecule(getattr(small, name)), pairs_by_molecule(getattr(large, name))
        assert set(a) <= set(b)
        for m in a:
            assert a[m] == b[m]
    assert pairs_by_molecule(small.train).keys() <= pairs_by_molecule(large.train).keys()  # random is nested
    assert make_split(many, SplitSpec(budget=12, molecules=4, seed=6)).test_molecules != small.test_molecules


def test_random_conformers_are_nested(many: Dataset) -> None:
    two = pairs_by_molecule(make_split(many, SplitSpec(molecules=6, conformers_per_molecule=2, seed=2)).train)
    ten = pairs_by_molecule(make_split(many, SplitSpec(molecules=6, conformers_per_molecule=10, seed=2)).train)
    assert two.keys() == ten.keys() and all(two[m] <= ten[m] for m in two)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes(tiny_dataset, tmp_path: Path) -> None:
    spec = SplitSpec(budget=16, molecules=8, seed=11, strategy="diverse")
    a = make_split(tiny_dataset, spec).save(tmp_path / "a.json")
    b = make_split(tiny_dataset, spec).save(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()
    again = load_split(a)
    assert again.train == make_split(tiny_dataset, spec).train and again.spec.molecules == 8
    c = make_split(tiny_dataset, SplitSpec(budget=16, molecules=8, seed=12)).to_json()
    assert c != a.read_text()


def test_cli_writes_identical_files_and_refuses(tiny_dataset_path: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mlipdiv", "split", "--dataset", str(tiny_dataset_path), *args]
        env = {"MLIPDIV_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2])

    for name in ("a", "b"):
        done = cli("--budget", "16", "--molecules", "8", "--seed", "4", "--out", str(tmp_path / f"{name}.json"))
        assert done.returncode == 0, done.stderr
        assert "train" in done.stdout and "scaffolds" in done.stdout
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    refused = cli("--budget", "10000000", "--molecules", "4", "--seed", "0", "--out", str(tmp_path / "c.json"))
    assert refused.returncode == 2 and "largest budget for 4 molecules is 16" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "c.json").exists()
    grid = cli("--experiment", "fixed-budget", "--budget", "16", "--points", "3")
    assert grid.returncode == 0 and "16" in grid.stdout


# ------------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--test-molecules", "nan", "--budget", "16", "--molecules", "8"], "--test-molecules"),
        (["--test-molecules", "inf", "--budget", "16", "--molecules", "8"], "--test-molecules"),
        (["--test-molecules", "2.5", "--budget", "16", "--molecules", "8"], "--test-molecules"),
        (["--val-per-molecule", "-1", "--budget", "16", "--molecules", "8"], "--val-per-molecule"),
        (["--experiment", "fixed-budget", "--budget", "16", "--points", "0"], "--points"),
        (["--experiment", "fixed-budget", "--budget", "16", "--points", "-3"], "--points"),
    ],
)
def test_cli_out_of_range_options_get_one_line(tiny_dataset_path: Path, tmp_path: Path, capsys, argv, message) -> None:
    from mlipdiv.cli import main

    assert main(["split", "--dataset", str(tiny_dataset_path), *argv, "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "s.json").exists()


def test_split_spec_and_grid_refuse_out_of_range_values(tiny_dataset) -> None:
    from mlipdiv.errors import InvalidSetting

    for bad in (float("nan"), float("inf"), -0.1, 1.5, True):
        with pytest.raises(InvalidSetting, match="test_molecules"):
            SplitSpec(budget=16, molecules=8, test_molecules=bad)
    with pytest.raises(InvalidSetting, match="^budget 16.5 is out of range: budget must be a whole number"):
        SplitSpec(budget=16.5, molecules=8)
    with pytest.raises(InvalidSetting, match="^points "):
        experiment_grid(tiny_dataset, "fixed-budget", 0, budget=16)
    assert SplitSpec(test_molecules=0).test_molecules == 0 and SplitSpec(test_molecules=3).test_molecules == 3


def test_refusals_name_the_feasible_maximum(tiny_dataset) -> None:
    # 8 trainable molecules with 4 train conformers each
    with pytest.raises(InfeasibleRequest, match=r"needs 2500000 conformers per molecule; at most 4 .*"
                       r"largest budget for 4 molecules is 16.*at most 8 molecules"):  # fmt: skip
        resolve_point(tiny_dataset, SplitSpec(budget=10_000_000, molecules=4))
    with pytest.raises(InfeasibleRequest, match="9 molecules requested but at most 8 can be trained on"):
        resolve_point(tiny_dataset, SplitSpec(molecules=9, conformers_per_molecule=1))
    with pytest.raises(InfeasibleRequest, match="at most 4 are available per molecule"):
        resolve_point(tiny_dataset, SplitSpec(molecules=2, conformers_per_molecule=5))
    with pytest.raises(InfeasibleRequest, match="multiple of 3 molecules; the nearest feasible budgets are 9 and 12"):
        resolve_point(tiny_dataset, SplitSpec(budget=10, molecules=3))
    with pytest.raises(InfeasibleRequest, match="largest budget is 32"):
        resolve_point(tiny_dataset, SplitSpec(budget=64, conformers_per_molecule=2))
    with pytest.raises(InfeasibleRequest, match="give two of"):
        resolve_point(tiny_dataset, SplitSpec(budget=64))
    assert resolve_point(tiny_dataset, SplitSpec(budget=32, conformers_per_molecule=4)) == (8, 4)


def test_molecules_with_few_conformers_are_not_eligible() -> None:
    ds = synthetic_dataset(["CCO", "CCN", "CCCl", "CC=O"], parents=[4, 4, 4, 2], samples=5)
    res = reserve(ds, SplitSpec(test_molecules=0))
    assert sorted(len(a) for a in res.available.values()) == [1, 11, 11, 11]  # 10 - 5 test - 4 val; 20 - 5 - 4
    split = make_split(ds, SplitSpec(molecules=3, conformers_per_molecule=11, test_molecules=0))
    short = next(m for m in ds.ids if ds[m].n_conformers == 10)
    assert short not in split.molecules and split.counts["eligible_molecules"] == 3
    with pytest.raises(InfeasibleRequest, match="largest budget for 4 molecules is 4"):
        resolve_point(ds, SplitSpec(molecules=4, conformers_per_molecule=2, test_molecules=0))


# ------------------------------------------------------------------------------------------------ scaffolds


def test_scaffold_split_keeps_scaffolds_whole(many: Dataset) -> None:
    from mlipdiv.diversity import murcko_scaffold

    for seed in range(4):
        res = reserve(many, SplitSpec(molecule_split="scaffold", test_molecules=0.25, seed=seed))
        held = set(res.test_molecules)
        assert 0 < len(held) <= 6
        scaffold_of = {m: murcko_scaffold(many[m].smiles) for m in many.ids}
        for s in set(scaffold_of.values()):
            members = {m for m in many.ids if scaffold_of[m] == s}
            assert members <= held or not members & held, f"scaffold {s!r} split across test and train"
        assert "" not in {scaffold_of[m] for m in held}  # the big acyclic group stays trainable


def test_scaffold_split_of_one_scaffold_is_refused() -> None:
    ds = synthetic_dataset(["CCO", "CCN", "CCCl"], parents=2, samples=3)
    with pytest.raises(InfeasibleRequest, match="share one Bemis-Murcko scaffold"):
        reserve(ds, SplitSpec(molecule_split="scaffold", test_molecules=1))


# ------------------------------------------------------------------------------------------------ experiments


def test_experiment_grids(many: Dataset) -> None:
    spec = SplitSpec(seed=0)  # 19 trainable molecules x 11 train conformers (20 - 5 test - 4 val)
    grid = experiment_grid(many, "fixed-budget", points=4, budget=36, spec=spec)
    assert all(m * c == 36 for m, c in grid) and len(grid) <= 4
    assert [m for m, _ in grid] == sorted((m for m, _ in grid), reverse=True)
    assert grid[0] == (18, 2) and grid[-1] == (4, 9)  # 36 x 1 and 2 x 18 are not feasible
    for m, c in grid:
        assert len(make_split(many, SplitSpec(molecules=m, conformers_per_molecule=c), diversity=False).train) == 36
    assert experiment_grid(many, "fixed-molecules", points=10, molecules=5) == [(5, 1), (5, 2), (5, 4), (5, 8)]
    assert experiment_grid(many, "fixed-molecules", points=2, molecules=5) == [(5, 1), (5, 8)]
    with pytest.raises(InfeasibleRequest, match="largest budget is 209"):
        experiment_grid(many, "fixed-budget", budget=10_000)


# ------------------------------------------------------------------------------------------------ strategies


def test_greedy_max_min_spreads_out() -> None:
    x = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 10.0])
    picked = greedy_max_min(len(x), 3, lambda i: np.abs(x - x[i]))
    assert picked == [0, 5, 3]


def test_diverse_picks_more_diverse_molecules_than_random() -> None:
    from mlipdiv.diversity import structural_diversity

    alkanes = ["C" * n for n in range(6, 16)]  # same Morgan (radius 2) bits: structural duplicates
    distinct = ["c1ccccc1", "FC(F)(F)Cl", "N#CC#N", "O=C1NC(=O)NC1=O", "c1ccsc1"]
    ds = synthetic_dataset(alkanes + distinct, parents=2, samples=6)
    for seed in range(3):
        spec = SplitSpec(molecules=5, conformers_per_molecule=2, test_molecules=0, seed=seed)
        rnd = structural_diversity(ds, make_split(ds, spec, diversity=False).molecules)
        div = structural_diversity(ds, make_split(ds, SplitSpec(**{**spec.to_dict(), "strategy": "diverse"})).molecules)
        assert div["tanimoto_vendi"] > rnd["tanimoto_vendi"]
        assert div["mean_tanimoto_distance"] > rnd["mean_tanimoto_distance"]


def _chain(phi_deg: float) -> np.ndarray:
    """Four atoms, bonds 1.5 angstrom, angles 110 degrees, dihedral ``phi_deg`` (NeRF construction)."""
    t, phi = np.radians(110.0), np.radians(phi_deg)
    a, b = np.zeros(3), np.array([1.5, 0.0, 0.0])
    c = b + 1.5 * np.array([-np.cos(t), np.sin(t), 0.0])
    bc = (c - b) / 1.5
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    d = c + 1.5 * (-np.cos(t) * bc + np.sin(t) * np.cos(phi) * np.cross(n, bc) + np.sin(t) * np.sin(phi) * n)
    return np.array([a, b, c, d])


def test_diverse_picks_more_diverse_conformers_than_random() -> None:
    from mlipdiv.diversity import conformational_diversity

    rng = np.random.default_rng(0)
    pos = np.array([_chain(phi) + rng.normal(0, 0.01, (4, 3)) for phi in (180, 60, 0) for _ in range(10)])
    n = len(pos)
    mol = Molecule(
        id="mol_chain", smiles="CCCC", atomic_numbers=[6] * 4, positions=pos, energy=np.zeros(n),
        forces=np.zeros((n, 4, 3)), parent=np.repeat([0, 1, 2], 10), temperature=np.zeros(n), method=["md"] * n,
    )  # fmt: skip
    ds = Dataset([mol])
    families = {"random": [], "diverse": []}
    vendi = {"random": [], "diverse": []}
    for seed in range(10):
        for strategy in families:
            spec = SplitSpec(molecules=1, conformers_per_molecule=2, test_molecules=0, strategy=strategy, seed=seed)
            summary, _ = conformational_diversity(ds, make_split(ds, spec, diversity=False).train)
            families[strategy].append(summary["mean_families"])
            vendi[strategy].append(summary["mean_vendi"])
    assert families["diverse"] == [2] * 10 and min(families["random"]) == 1
    assert np.mean(vendi["diverse"]) > np.mean(vendi["random"])


def test_split_out_problems_are_one_line_messages(tiny_dataset_path: Path, tmp_path: Path, capsys) -> None:
    """--out under a file, in a folder that cannot exist, or an existing file without --overwrite: one line each,
    before any work, and the existing file is kept."""
    from mlipdiv.cli import main

    (tmp_path / "afile").write_text("mine")
    base = ["split", "--dataset", str(tiny_dataset_path), "--budget", "8", "--molecules", "4"]
    for out, fragment in ((tmp_path / "afile" / "s.json", "is a file, not a folder"),
                          (Path("/proc/mlipdiv-test/s.json"), "cannot write in"),
                          (tmp_path / "afile", "already exists")):
        assert main([*base, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert (tmp_path / "afile").read_text() == "mine"
    assert main([*base, "--out", str(tmp_path / "afile"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "afile").read_text())["train"]


# ------------------------------------------------------------------------------------------------ anchors


def test_anchors_fix_the_evaluation_sets_of_every_point(many: Dataset) -> None:
    """With anchors, every (M, C) point of one seed is scored on exactly the same conformers: the anchors' unseen
    conformers and the held-out molecules of the anchors' elements; every training set holds the anchors, which
    cover the dataset's elements first."""
    from mlipdiv.selection import anchors

    for seed in (0, 1):
        base = SplitSpec(test_molecules=6, anchor_molecules=4, seed=seed)
        res = reserve(many, base)
        anchor = anchors(many, res, 4)
        covered = set().union(*(set(many[a].atomic_numbers.tolist()) for a in anchor))
        trainable_elements = set().union(*(set(many[m].atomic_numbers.tolist()) for m in res.trainable))
        # no molecule holds both N and O: 4 anchors (one with O, N, F, Cl each) cover all when all are trainable
        assert covered == trainable_elements
        points = [(4, 3), (6, 2), (12, 1)]  # a fixed budget of 12
        splits = [make_split(many, SplitSpec(test_molecules=6, anchor_molecules=4, seed=seed, molecules=m,
                                             conformers_per_molecule=c), diversity=False) for m, c in points]
        for split in splits:
            assert set(anchor) <= set(split.molecules)
            assert_no_leakage(split, many)
        assert all(sp.test_conformers == splits[0].test_conformers for sp in splits)
        assert all(sp.test_molecules == splits[0].test_molecules for sp in splits)
        assert {m for m, _ in splits[0].test_conformers} == set(anchor)
        for m, _ in splits[0].test_molecules:
            assert set(many[m].atomic_numbers.tolist()) <= covered
        left = splits[0].counts["test_molecules_excluded"]
        assert left == sum(min(8, many[m].n_conformers) for m in res.test_molecules
                           if not set(many[m].atomic_numbers.tolist()) <= covered)
    with pytest.raises(InfeasibleRequest, match="anchor molecules"):
        make_split(many, SplitSpec(test_molecules=6, anchor_molecules=4, molecules=2, conformers_per_molecule=1))
