"""Display helpers added for the classroom (issue 18): curves by training step and overlaid, clipped parity axes,
extrapolation marks, searchable formulas, plain-language fit notes, the PCA map's axis names."""

from __future__ import annotations

import numpy as np

from mlipdiv.viz import figures, tables


def _curve(steps: bool, n: int = 4) -> list[dict]:
    return [{"epoch": 1 + i // 2, **({"step": 10 * (i + 1)} if steps else {}), "train_loss": 1.0 / (i + 1),
             "val_forces_mae": 0.1 / (i + 1), "val_energy_mae": 0.05} for i in range(n)]


def test_learning_curve_uses_steps_when_every_point_has_one_and_epochs_otherwise():
    fig = figures.learning_curve_figure(_curve(steps=True))
    assert list(fig.data[0].x) == [10, 20, 30, 40]  # four points within two epochs: all drawn
    assert "step" in fig.layout.xaxis.title.text
    old = figures.learning_curve_figure(_curve(steps=False))
    assert list(old.data[0].x) == [1, 1, 2, 2] and old.layout.xaxis.title.text == "epoch"
    mixed = _curve(steps=False) + _curve(steps=True)[:1]
    assert figures.curve_x(mixed)[0] == "epoch"  # a resumed old run: epochs for all points
    assert "meV/molecule" in fig.layout.yaxis3.title.text  # the energy unit says what it is per


def test_overlay_draws_one_trace_per_run_on_a_log_axis_in_mev():
    fig = figures.curves_overlay_figure({"a": _curve(True), "b": _curve(True, 2), "empty": []})
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.layout.yaxis.type == "log"
    assert np.allclose(fig.data[0].y, [100.0, 50.0, 100 / 3, 25.0])  # eV/Å -> meV/Å
    assert "No" not in (fig.layout.title.text or "")
    # one run with steps, one without: both against epochs (a step of one run is not an epoch of another)
    assert figures.curves_overlay_figure({"a": _curve(True), "b": _curve(False)}).layout.xaxis.title.text == "epoch"


def test_parity_axes_show_the_bulk_and_say_how_many_points_are_beyond():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 0.05, 200)
    pred = ref + rng.normal(0, 0.01, 200)
    pred[:2] = [600.0, -600.0]  # two wild predictions: ±600,000 meV
    fig = figures.parity_figure(ref, pred, "energy", n_atoms=np.full(200, 10))
    lo, hi = fig.layout.xaxis.range
    assert hi - lo < 5000  # meV: the bulk (±150 meV, widened), not ±600,000
    assert "2 of 200 points beyond the axes" in fig.layout.title.text
    assert "meV/atom" in fig.layout.title.text and "meV/molecule" in fig.layout.title.text
    tame = figures.parity_figure(ref, ref + 0.001, "energy")
    assert "beyond" not in tame.layout.title.text


def test_mark_extrapolated_shades_the_stretches_beyond_the_runs():
    table = [{"n_molecules": m, "extrapolation": f} for m, f in ((1, 3.0), (2, 1.5), (4, 1.0), (8, 1.0), (16, 2.0))]
    fig = figures.mark_extrapolated(figures.empty_figure("x"), table)
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(1, 2), (16, 16 * 1.05)]
    assert any("extrapolated" in (t.name or "") for t in fig.data)
    inside = figures.mark_extrapolated(figures.empty_figure("x"), [{"n_molecules": 4, "extrapolation": 1.0}])
    assert not inside.layout.shapes


def test_pca_map_is_not_labelled_umap():
    coords, ids = np.zeros((3, 2)), np.arange(3)
    pca = figures.umap_scatter(coords, ids, ["a", "b", "c"], method="pca")
    assert pca.layout.xaxis.title.text.startswith("PC 1") and "UMAP" not in pca.layout.yaxis.title.text
    assert figures.umap_scatter(coords, ids, ["a", "b", "c"], method="umap").layout.xaxis.title.text.startswith(
        "UMAP 1")


def test_formula_names_and_search_by_formula(tiny_dataset):
    assert tables.formula([6, 1, 1, 1, 1, 8]) == "CH4O"
    assert tables.formula([8, 1, 1]) == "H2O"  # no carbon: alphabetical
    rows = tables.molecule_rows(tiny_dataset, depictions=False)
    assert all(r["structure"] == "" and r["formula"] for r in rows)
    target = rows[3]
    hits, how = tables.search_molecules(rows, target["formula"])
    assert how == "text" and target in hits and all(r["formula"] == target["formula"] for r in hits)
    assert tables.display_name(target).startswith(target["formula"] + " · ")
    drawn = tables.with_depictions(rows[:2], lambda smi: f"img:{smi}")
    assert [r["structure"] for r in drawn] == [f"img:{r['smiles']}" for r in rows[:2]] and rows[0]["structure"] == ""


def test_plain_notes_have_no_flags_and_explain_aicc():
    notes = [
        "test_conformers: AICc prefers the 'total' form over 'full' by 8.1: these points cannot tell how M and C "
        "trade off beyond their product",
        "test_molecules: the full model has 5 parameters but only 4 distinct (M, C) points were run; run more sweep "
        "points (or use --form total, 3 parameters)",
        "no allocation of 5 conformers lies within a factor 2 ... Run a sweep at this budget, or allow extrapolation "
        "explicitly.",
    ]
    plain = [tables.plain_note(n) for n in notes]
    assert all("--" not in p and "test_" not in p for p in plain)
    assert plain[0].startswith("Unseen conformers:") and "Akaike" in plain[0] and "total only" in plain[0]
    assert "choose the error model \"total only\"" in plain[1]
    assert "Answer beyond the fitted range" in plain[2]
