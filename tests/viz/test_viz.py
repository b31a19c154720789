"""Display helpers: figure builders, the offline 3D viewer, tables, map colouring, polling and selection logic."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from mlipdiv.io.metrics import RunMetrics, SplitErrors
from mlipdiv.style import SPLIT_COLORS
from mlipdiv.viz import figures, live, maps, molview, tables

# ------------------------------------------------------------------------------------------------ 3D viewer


def test_view_html_inlines_local_3dmol_and_never_points_at_a_cdn(tiny_dataset):
    import json
    import re

    mol = tiny_dataset[0]
    captions = [f"conformer {j}: E < {j} & ok" for j in range(mol.n_conformers)]
    html = molview.view_html(mol.atomic_numbers, mol.positions, forces=mol.forces, captions=captions, start=2)
    assert molview.THREEDMOL_JS.read_text()[:200] in html  # the library itself is in the page
    assert "cdn.jsdelivr" not in html and "https://3dmol" not in html.lower()
    assert "loadScriptAsync('" not in html  # py3Dmol's loader is short-circuited
    assert "addModelsAsFrames" in html and html.count(f'{mol.n_atoms}\\n\\n') == mol.n_conformers  # all frames
    data = json.loads(re.search(r"D = (\{.*?\});\n", html).group(1))
    assert data["n"] == mol.n_conformers and data["start"] == 2
    assert data["captions"][1] == "conformer 1: E &lt; 1 &amp; ok"  # escaped
    longest = max(np.linalg.norm(np.array(f), axis=-1).max() for f in data["forces"])
    assert longest == pytest.approx(1.2, abs=2e-3)  # arrows scaled: the largest force is 1.2 Å long
    assert "id='mv-slider'" in html and "id='mv-forces'" in html
    single = molview.view_html(mol.atomic_numbers, mol.positions[0])
    assert "id='mv-slider'" not in single and "id='mv-forces'" not in single
    with pytest.raises(ValueError):
        molview.view_html(mol.atomic_numbers, mol.positions, captions=["one"])


def test_view_script_is_the_asset_and_its_data_cannot_close_the_script_tag(tiny_dataset):
    import json
    import re

    mol = tiny_dataset[0]
    page = molview.view_html(mol.atomic_numbers, mol.positions, captions=[""] * mol.n_conformers)
    assert molview.MOLVIEW_JS.read_text() in page and "mlipdivMolview(v, D);" in page
    hostile = {"captions": ["</script><script>alert(1)</script>"], "n": 1, "start": 0}
    script = molview._script("viewer_1", hostile)
    assert script.count("</script>") == 1 and script.endswith("</script>")  # only its own end tag
    assert json.loads(re.search(r"D = (\{.*?\});\n", script).group(1)) == hostile  # the data survives intact

def test_3dmol_asset_is_the_documented_release():
    head = molview.THREEDMOL_JS.read_text()[:300]
    assert "3Dmol-min.js.LICENSE.txt" in head
    assert (molview.THREEDMOL_JS.parent / "3Dmol-LICENSE.txt").read_text().count("BSD") >= 1


def test_xyz_block_round_trip():
    import io

    from ase.io import read

    z = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    atoms = read(io.StringIO(molview.xyz_block(z, pos, "water")), format="xyz")
    assert atoms.get_chemical_symbols() == ["O", "H", "H"]
    np.testing.assert_allclose(atoms.positions, pos, atol=1e-5)


def test_depiction_is_an_svg_data_uri_and_bad_smiles_do_not_raise():
    import base64

    uri = molview.depiction_data_uri("c1ccccc1O")
    assert uri.startswith("data:image/svg+xml;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).decode().startswith("<svg")
    assert "?" in molview.depiction_svg("not a smiles")


# ------------------------------------------------------------------------------------------------ figures


def test_learning_curve_in_display_units():
    curve = [{"epoch": e, "train_loss": 1.0 / e, "val_energy_mae": 0.01 * e, "val_forces_mae": 0.1, "lr": 1e-3}
             for e in range(1, 4)]
    fig = figures.learning_curve_figure(curve)
    names = [t.name for t in fig.data]
    assert any("meV/Å" in n for n in names) and any("(meV per molecule)" in n for n in names)
    forces = next(t for t in fig.data if "force" in t.name)
    assert list(forces.y) == pytest.approx([100.0, 100.0, 100.0])  # eV/Å -> meV/Å
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.template.layout.font.size >= 16  # readable on a projector (mlipdiv's plotly template)
    assert "No point logged yet" in figures.learning_curve_figure([]).layout.annotations[0].text


def test_parity_energy_relative_to_molecule_mean_keeps_offsets():
    ref = np.array([-100.0, -100.1, -50.0, -50.2])
    pred = ref + np.array([0.01, 0.01, -0.02, -0.02])  # a constant offset per molecule
    fig = figures.parity_figure(ref, pred, "energy", "test_molecules", groups=np.array(["a", "a", "b", "b"]))
    pts = fig.data[0]
    assert np.allclose(np.asarray(pts.y) - np.asarray(pts.x), [10.0, 10.0, -20.0, -20.0])  # meV, offsets kept
    assert abs(np.mean(pts.x[:2])) < 1e-6  # each molecule centred on its mean reference energy
    assert "MAE 15.0 meV" in fig.layout.title.text
    with pytest.raises(ValueError):
        figures.parity_figure(ref, pred[:2])


def test_parity_subsamples_but_mae_uses_everything():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=50_000)
    fig = figures.parity_figure(ref, ref + 0.001, "forces", max_points=1000)
    assert len(fig.data[0].x) == 1000
    assert "MAE 1.0 meV/Å" in fig.layout.title.text


def test_umap_scatter_carries_global_ids_in_customdata_per_category():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    ids = np.array([10, 11, 12, 13, 14, 15])
    labels = np.array(["train", "unused", "train", "test_molecules", "unused", "val"], dtype=object)
    fig = figures.umap_scatter(coords, ids, [f"m{i}" for i in ids], labels, category_colors=SPLIT_COLORS,
                               category_order=["unused", "train", "val", "test_molecules"])
    got = {}
    for trace in fig.data:
        for cd in trace.customdata:
            got[int(cd[0])] = trace.marker.color
    assert got == {10: SPLIT_COLORS["train"], 11: SPLIT_COLORS["unused"], 12: SPLIT_COLORS["train"],
                   13: SPLIT_COLORS["test_molecules"], 14: SPLIT_COLORS["unused"], 15: SPLIT_COLORS["val"]}
    assert fig.data[0].name.startswith("unused")  # drawn first, underneath


def test_umap_scatter_continuous_puts_missing_values_underneath():
    coords = np.zeros((4, 2))
    fig = figures.umap_scatter(coords, np.arange(4), list("abcd"), np.array([1.0, np.nan, 3.0, np.nan]),
                               categorical=False, color_title="force MAE (meV/Å)")
    assert [len(t.x) for t in fig.data] == [2, 2]
    assert fig.data[0].name == "no value"
    assert fig.data[1].marker.colorbar.title.text == "force MAE (meV/Å)"
    with pytest.raises(ValueError):
        figures.umap_scatter(coords, np.arange(3), list("abc"))


def test_energy_histogram_and_error_boxes_in_mev():
    fig = figures.energy_histogram(np.array([0.0, 0.05, 0.1]), marker=0.05)
    assert list(fig.data[0].x) == pytest.approx([0.0, 50.0, 100.0])
    assert "meV" in fig.layout.xaxis.title.text
    fig = figures.error_distribution_figure({"test_molecules": np.array([0.2]), "test_conformers": np.array([0.1])})
    assert [t.name for t in fig.data] == ["unseen conformers", "unseen molecules"]  # split order, not dict order
    assert list(fig.data[1].y) == pytest.approx([200.0])


def test_tradeoff_grid_marks_the_chosen_point():
    fig = figures.tradeoff_grid_figure([(64, 4), (16, 16), (4, 64)], (16, 16), 256)
    assert list(fig.data[1].x) == [16] and list(fig.data[1].y) == [16]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "256" in fig.layout.title.text


# ------------------------------------------------------------------------------------------------ tables, maps


def test_molecule_rows_and_search(tiny_dataset):
    rows = tables.molecule_rows(tiny_dataset, depictions=False)
    assert len(rows) == len(tiny_dataset)
    assert rows[0]["conformers"] == tiny_dataset[0].n_conformers
    assert rows[0]["energy range (meV)"] == pytest.approx(1000 * np.ptp(tiny_dataset[0].energy))
    hits, how = tables.search_molecules(rows, "ccccc")  # text: phenol's SMILES contains it
    assert how == "text" and [r["smiles"] for r in hits] == ["Oc1ccccc1"]
    hits, how = tables.search_molecules(rows, "[OX2H]")  # not text: a SMARTS for hydroxyl groups
    assert how == "smarts"
    assert {r["smiles"] for r in hits} == {"CCO", "CC(=O)O", "Oc1ccccc1", "CC(C)O", "OCCO"}
    assert tables.search_molecules(rows, "[[[")[1] == "none"
    assert tables.search_molecules(rows, "")[1] == "all"


def test_conformer_rows(tiny_dataset):
    mol = tiny_dataset[1]
    rows = tables.conformer_rows(mol)
    assert len(rows) == mol.n_conformers
    assert min(r["energy above lowest (meV)"] for r in rows) == 0.0
    assert {r["made by"] for r in rows} == {"relaxed", "nms"}


def test_split_labels_cover_every_conformer_once(tiny_dataset):
    from mlipdiv.selection import SplitSpec, make_split

    split = make_split(tiny_dataset, SplitSpec(molecules=4, conformers_per_molecule=3, seed=0), diversity=False)
    labels = maps.conformer_split_labels(tiny_dataset, split)
    assert len(labels) == tiny_dataset.n_conformers
    for key in maps.SPLIT_KEYS:
        assert (labels == key).sum() == len(getattr(split, key))
    mol_labels = maps.molecule_split_labels(tiny_dataset, split.to_dict())  # the dict form works too
    assert (mol_labels == "train").sum() == 4
    assert (mol_labels == "test_molecules").sum() == split.counts["test_molecule_count"]
    m, j = split.train[0]
    assert labels[tiny_dataset.global_id(m, j)] == "train"


def test_prediction_errors_and_energies_by_global_id(tiny_dataset):
    m0, m1 = tiny_dataset[0], tiny_dataset[1]
    pred = {"mol_id": np.array([m1.id, m0.id]), "conf_idx": np.array([2, 0]), "forces_mae": np.array([0.5, 0.25])}
    err = maps.prediction_errors(tiny_dataset, pred)
    assert err[tiny_dataset.global_id(m1.id, 2)] == 0.5 and err[0] == 0.25
    assert np.isnan(err).sum() == tiny_dataset.n_conformers - 2
    e = maps.conformer_energies(tiny_dataset)
    assert e.shape == (tiny_dataset.n_conformers,) and e.min() == 0.0
    hover = maps.hover_texts(tiny_dataset, "conformers")
    assert len(hover) == tiny_dataset.n_conformers and m0.smiles in hover[0]
    assert len(maps.hover_texts(tiny_dataset, "structures")) == len(tiny_dataset)


# ------------------------------------------------------------------------------------------------ polling


@dataclass
class FakeRun:
    id: str
    status: str
    config: dict = field(default_factory=dict)
    metrics: dict | None = None
    curve: list = field(default_factory=list)
    epoch: int = 0
    batch: int = 0
    n_epochs: int | None = 10
    error: str | None = None
    created: float = 0.0
    cancel_requested: bool = False
    fraction: float = 0.0


def _done(run_id: str, m: int, c: int, seed: int, conf: float, mol: float, model: str = "schnet") -> FakeRun:
    splits = {"test_conformers": SplitErrors(forces_mae=conf, energy_mae=0.1, energy_mae_per_atom=0.01),
              "test_molecules": SplitErrors(forces_mae=mol, energy_mae=0.2, energy_mae_per_atom=0.02)}
    metrics = RunMetrics(model, m, c, seed, splits=splits, baselines={
        "test_conformers": SplitErrors(forces_mae=1.0), "test_molecules": SplitErrors(forces_mae=3.0)}).to_dict()
    return FakeRun(run_id, "done", {"model": model, "molecules": m, "conformers_per_molecule": c, "seed": seed},
                   metrics, fraction=1.0)


def test_polling_only_while_something_is_active():
    idle = [FakeRun("a", "done"), FakeRun("b", "cancelled")]
    assert live.poll_interval(idle) is None
    busy = idle + [FakeRun("c", "running")]
    assert live.poll_interval(busy) == live.POLL_SECONDS
    assert live.poll_interval([FakeRun("d", "queued")], every=5.0) == 5.0
    assert not live.needs_full_refresh(["c"], busy)
    assert live.needs_full_refresh(["c"], idle)  # it ended: redraw the page, which stops polling
    assert live.needs_full_refresh([], busy)  # one started elsewhere


def test_cancellable_and_curve_signature():
    run = FakeRun("a", "running", curve=[{"epoch": 1}])
    assert live.cancellable(run)
    assert not live.cancellable(FakeRun("a", "running", cancel_requested=True))
    assert not live.cancellable(FakeRun("a", "done"))
    before = live.curve_signature(run)
    run.curve.append({"epoch": 2})
    assert live.curve_signature(run) != before


def test_run_rows_are_in_display_units_newest_first():
    old, new = _done("old", 8, 2, 0, 0.1, 0.3), FakeRun("new", "running", {"model": "painn"}, epoch=3, fraction=0.3)
    new.created = 5.0
    rows = live.run_rows([old, new])
    assert [r["id"] for r in rows] == ["new", "old"]
    assert rows[1]["force MAE unseen conformers (meV/Å)"] == pytest.approx(100.0)
    assert rows[1]["force MAE unseen molecules (meV/Å)"] == pytest.approx(300.0)
    assert rows[0]["force MAE unseen molecules (meV/Å)"] is None
    assert rows[0]["progress"] == 0.3 and rows[0]["epoch"] == "3/10"
    assert "M=8 × C=2" in live.run_label(old)


def test_study_rows_groups_and_baselines():
    runs = [_done(f"r{i}", m, 16 // m, s, 0.1 * m, 0.5 / m) for i, (m, s) in
            enumerate([(1, 0), (2, 0), (4, 0), (4, 1), (2, 1)])] + [_done("other", 3, 3, 0, 0.1, 0.2)]
    runs.append(FakeRun("busy", "running"))
    rows = live.study_rows(runs)
    assert len(rows) == 2 * 6 and {r["experiment"] for r in rows} == {"fixed-budget"}
    assert live.study_groups(rows, "fixed-budget") == [16]  # the B=9 series has one point only
    assert live.study_groups(rows, "fixed-molecules") == []
    table = live.study_table(runs, "fixed-budget", 16)
    assert {r["run_id"] for r in table} == {"r0", "r1", "r2", "r3", "r4"}
    assert live.baseline_means(runs, ["r0", "r1"]) == {"test_conformers": 1.0, "test_molecules": 3.0}
    import pandas as pd

    from mlipdiv.analysis.figures import study_figure

    fig = study_figure(pd.DataFrame(table), "fixed-budget")
    assert len(fig.data) == 2 and fig.layout.xaxis.type == "log"


def test_selected_global_ids_read_customdata_not_point_indices():
    event = {"selection": {"points": [
        {"curve_number": 1, "point_index": 0, "customdata": [42]},
        {"curve_number": 0, "point_index": 0, "customdata": [7]},
        {"curve_number": 0, "point_index": 1, "customdata": 42},  # duplicates dropped, scalars accepted
        {"curve_number": 0, "point_index": 2},  # no customdata (e.g. the identity line)
        {"curve_number": 2, "point_index": 0, "customdata": {"0": 5}},  # what Chromium really sends
    ], "point_indices": [0, 0, 1, 2, 0], "box": [], "lasso": []}}
    assert live.selected_global_ids(event) == [42, 7, 5]
    assert live.selected_global_ids(None) == []
    assert live.selected_global_ids({"selection": {"points": []}}) == []

    class Attr:  # Streamlit returns attribute-style objects
        selection = type("S", (), {"points": [{"customdata": [3]}]})()

    assert live.selected_global_ids(Attr()) == [3]


def test_background_task_reports_progress_result_and_errors():
    from mlipdiv.errors import MlipdivError

    def work(report: Any) -> str:
        for i in range(3):
            report(i + 1, 3, f"step {i + 1}")
        return "ok"

    task = live.BackgroundTask(work)
    task.join(5)
    assert (task.status, task.result, task.done, task.total, task.message, task.fraction) == \
        ("done", "ok", 3, 3, "step 3", 1.0)

    def fail(report: Any) -> None:
        raise MlipdivError("no molecule could be generated")

    task = live.BackgroundTask(fail)
    task.join(5)
    assert task.status == "failed" and task.error == "no molecule could be generated"

    def boom(report: Any) -> None:
        raise KeyError("x")

    task = live.BackgroundTask(boom)
    task.join(5)
    assert task.error.startswith("KeyError")
    slow = live.BackgroundTask(lambda report: time.sleep(0.5), total=4)
    assert slow.status == "running" and slow.fraction == 0.0
    slow.join(5)


def test_display_subset_keeps_flagged_points_and_samples_the_rest():
    assert list(maps.display_subset(5, cap=10)) == [0, 1, 2, 3, 4]
    flagged = np.zeros(1000, dtype=bool)
    flagged[[3, 500, 999]] = True
    idx = maps.display_subset(1000, flagged, cap=100)
    assert len(idx) == 100 and len(set(idx)) == 100 and list(idx) == sorted(idx)
    assert {3, 500, 999} <= set(idx)
    np.testing.assert_array_equal(idx, maps.display_subset(1000, flagged, cap=100))  # fixed seed
    many = np.ones(1000, dtype=bool)
    assert len(maps.display_subset(1000, many, cap=50)) == 50


def test_umap_scatter_thins_large_maps_keeping_priority_points():
    n = 3000
    coords = np.random.default_rng(1).normal(size=(n, 2))
    labels = np.array(["unused"] * n, dtype=object)
    labels[:50] = "train"
    fig = figures.umap_scatter(coords, np.arange(n) + 7, [str(i) for i in range(n)], labels,
                               priority=labels != "unused", max_points=500)
    drawn = {int(c[0]) for t in fig.data for c in t.customdata}
    assert len(drawn) == 500 and set(range(7, 57)) <= drawn  # every training point kept
    train = next(t for t in fig.data if t.name.startswith("train"))
    assert len(train.x) == 50
    assert "500 of 3,000 shown" in figures.umap_scatter(coords, np.arange(n), [""] * n, labels, title="Conformers",
                                                        priority=labels != "unused", max_points=500).layout.title.text


def test_a_cancelled_run_with_scored_best_weights_is_shown_beside_finished_ones() -> None:
    from types import SimpleNamespace

    metrics = RunMetrics("schnet", 4, 2, 0, splits={"test_molecules": SplitErrors(0.1, 0.01, 0.1, 0.2, 0.2, 8)},
                         best_step=6).to_dict()
    done = SimpleNamespace(id="a", status="done", metrics=metrics)
    cancelled = SimpleNamespace(id="b", status="cancelled", metrics=metrics)
    cancelled_early = SimpleNamespace(id="c", status="cancelled", metrics=None)  # before its first validation
    runs = [done, cancelled, cancelled_early]
    assert [r.id for r in live.finished_with_metrics(runs)] == ["a"]  # tables of results: finished runs only
    assert [r.id for r in live.finished_with_metrics(runs, include_cancelled=True)] == ["a", "b"]


def test_apply_style_gives_a_figure_made_under_another_template_the_projector_look():
    import plotly.graph_objects as go

    from mlipdiv.style import FONT_SIZE, apply_style

    fig = apply_style(go.Figure(layout={"template": "plotly"}), height=300)
    assert fig.layout.template.layout.font.size == FONT_SIZE and fig.layout.height == 300
    assert fig.layout.template.layout.xaxis.tickfont.size == FONT_SIZE - 2
    made_after = go.Figure()  # once registered, mlipdiv's template is the default of new figures
    assert made_after.layout.template.layout.font.size == FONT_SIZE


def test_the_budget_page_has_words_for_every_error_model_form() -> None:
    """The Budget page lists FORM_WORDS: a form the fits know but the page does not name could not be chosen."""
    from mlipdiv.analysis.fit import AVERAGE, FORMS
    from mlipdiv.viz.tables import FORM_WORDS

    assert set(FORM_WORDS) == {AVERAGE, *FORMS}
