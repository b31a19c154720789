"""The per-molecule conformer map: roles of a molecule's conformers in a trade-off, its figure, clickable maps; the
3D viewer's force arrows."""

from __future__ import annotations

import json
import re

import numpy as np

from mlipdiv.embeddings import molecule_conformer_map
from mlipdiv.names import SplitName
from mlipdiv.selection import SplitSpec, make_split, reserve
from mlipdiv.viz import maps, molview


def test_roles_mark_training_and_whole_held_out_families(tiny_dataset):
    spec = SplitSpec(molecules=4, conformers_per_molecule=3, seed=0)
    split = make_split(tiny_dataset, spec, diversity=False).to_dict()
    res = reserve(tiny_dataset, spec)
    trained = {m for m, _ in split["train"]}
    for mol in tiny_dataset:
        roles = maps.molecule_conformer_roles(tiny_dataset, spec, split, mol.id)
        assert len(roles) == mol.n_conformers
        if mol.id in res.test_molecules:
            assert set(roles) == {SplitName.TEST_MOLECULES}
            continue
        held = roles == SplitName.TEST_CONFORMERS
        assert held.any() and not held.all()
        # whole parent families are held out: no held-out family has a conformer in another role
        assert not (np.isin(mol.parent, np.unique(mol.parent[held])) & ~held).any()
        assert (roles == SplitName.TRAIN).sum() == (3 if mol.id in trained else 0)
        assert (roles == SplitName.VAL).sum() == len(res.val[mol.id])


def test_molecule_figure_draws_one_trace_per_family_and_is_clickable(tiny_dataset):
    mol = tiny_dataset[1]
    coords, _ = molecule_conformer_map(mol)
    roles = np.array([SplitName.TRAIN] * 4 + [SplitName.TEST_CONFORMERS] * 4 + ["unused"] * 4, dtype=object)
    fig = maps.molecule_conformer_figure(coords, mol.parent, np.arange(mol.n_conformers) + 100,
                                         [str(j) for j in range(mol.n_conformers)], roles, title="x")
    families = [t for t in fig.data if t.name.startswith("family")]
    assert len(families) == len(np.unique(mol.parent)) == 3
    assert len({t.marker.color for t in families}) == 3  # one colour per family
    ids = sorted(int(c[0]) for t in families for c in t.customdata)
    assert ids == list(range(100, 100 + mol.n_conformers))
    symbols = {s for t in families for s in t.marker.symbol}
    assert {"circle", "x", "circle-open"} <= symbols
    assert {t.name for t in fig.data if not t.name.startswith("family")} == {
        "trained on", "held out (unseen conformer)", "not used"}
    assert fig.layout.dragmode == "zoom" and fig.layout.clickmode == "event+select"
    assert fig.layout.xaxis.title.text == "MDS 1 (Å)"


def test_force_arrows_are_scaled_per_conformer_and_coloured_by_magnitude(tiny_dataset):
    mol = tiny_dataset[0]
    forces = mol.forces.astype(float).copy()
    forces[1] *= 10  # one conformer with much larger forces must not shrink the others' arrows
    html = molview.view_html(mol.atomic_numbers, mol.positions, forces=forces)
    data = json.loads(re.search(r"D = (\{.*?\});\n", html).group(1))
    longest = [np.linalg.norm(np.array(f), axis=-1).max() for f in data["forces"]]
    np.testing.assert_allclose(longest, molview.ARROW_LENGTH, atol=2e-3)  # every conformer's largest is 1.2 Å
    size = np.linalg.norm(forces, axis=-1) * 1000
    np.testing.assert_allclose(np.array(data["magnitude"]), size, atol=0.06)
    assert data["colour_max"] == round(float(size.max()), 1)
    assert "id='mv-scale'" in html and "linear-gradient" in html and f"{size.max():.0f} meV/Å" in html
