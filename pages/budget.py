"""Budget: what-if analysis. Fit error models to finished runs, recommend M x C for a budget, see known datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mlipdiv.analysis import figures as afig
from mlipdiv.analysis.cost import BUDGET_UNITS
from mlipdiv.analysis.known_datasets import known_datasets, on_map
from mlipdiv.errors import MlipdivError
from mlipdiv.names import SplitName
from mlipdiv.viz import live
from pages import common

st.title("Budget")
ds = common.dataset()
common.sidebar(ds)
st.markdown("How should **your** QM budget be split between molecules and conformers? The error of finished runs is "
            "fitted as $E(M, C) = E_\\infty + a\\,M^{-\\alpha} + b\\,C^{-\\beta}$ for unseen molecules and for unseen "
            "conformers; the "
            "recommendation is the M × C within the budget that minimises their weighted sum. Predictions far "
            "outside the (M, C) region of the runs are refused rather than extrapolated silently.")

# ---------------------------------------------------------------------------------------------- the results
PROJECT = Path(__file__).resolve().parent.parent  # the project's own study lives in docs/results

common.default("p_budget_source", "store")
SOURCES = {"store": "this app's finished runs", "folder": "a results folder of the run store or the project",
           "upload": "a results.csv from your computer"}
source = st.radio("Fit the runs of", list(SOURCES), horizontal=True, key="p_budget_source", format_func=SOURCES.get)
df = None
with common.user_errors("Cannot read the results: "):
    if source == "store":
        rows = live.study_rows(common.store().list(), experiment="app")
        df = pd.DataFrame(rows) if rows else None
    elif source == "folder":
        from mlipdiv.analysis.fit import results_choices
        from mlipdiv.paths import home

        # only folders found under these roots can be opened (no typed path): no other file of the server is read
        choices = results_choices({"run store": home(), "project": PROJECT / "docs" / "results"})
        if not choices:
            st.info("No results.csv under the run store (MLIPDIV_HOME) or docs/results. Write a sweep there "
                    "(`python -m mlipdiv sweep ... --out runs/sweeps/NAME`) or upload its results.csv.",
                    icon=":material/info:")
        else:
            picked = st.selectbox("Results folder", list(choices), key="p_budget_folder")
            if picked in choices:
                from mlipdiv.analysis.fit import load_results
                from mlipdiv.uploads import redact

                try:
                    df = load_results(choices[picked])
                except MlipdivError as exc:  # show the folder by its label, not its server path
                    raise MlipdivError(redact(str(exc), {choices[picked]: picked})) from None
    else:
        upload = st.file_uploader("Sweep results table (results.csv)", type=["csv"], key="budget_upload")
        if upload is not None:
            from mlipdiv.analysis.fit import read_results_upload

            df = read_results_upload(upload.name, upload.getvalue())

# ---------------------------------------------------------------------------------------------- the question
st.subheader("Your budget")
c = st.columns(4)
common.default("p_budget_unit", "conformers")
common.default("p_budget_value", 10_000.0)
common.default("p_budget_weight", 0.5)
unit = c[0].radio("Unit", list(BUDGET_UNITS), key="p_budget_unit",
                  format_func={"conformers": "conformers", "cpu-hours": "CPU-hours"}.get)
value = c[1].number_input("Budget", min_value=1.0, step=100.0, format="%g", key="p_budget_value")
weight = c[2].slider("Weight", 0.0, 1.0, step=0.05, key="p_budget_weight",
                     help="0: only unseen conformers matter · 1: only unseen molecules matter")
c[2].caption("0: unseen conformers · 1: unseen molecules")
metric = c[3].selectbox("Error", ["forces_mae", "energy_mae_per_atom"], key="p_budget_metric",
                        format_func={"forces_mae": "force MAE (meV/Å)", "energy_mae_per_atom": "energy MAE (meV/atom)"}
                        .get)
qm = st.radio("QM method for the cost", ["xtb", "dft", "entered"], horizontal=True, key="p_budget_qm",
              format_func={"xtb": "GFN2-xTB (cost measured on this machine)",
                           "dft": "DFT (scaled from GFN2-xTB by your factor)",
                           "entered": "your method (cost per conformer entered)"}.get)
n_conf = None
with common.user_errors("Cannot convert the budget: "):
    from mlipdiv.analysis.cost import budget_in_conformers, xtb_cost_model

    cost = xtb_cost_model()
    if qm == "dft":
        k = st.columns(2)
        common.default("p_budget_dft", 1000.0)
        common.default("p_budget_exp", 3.0)
        factor = k[0].number_input("DFT / GFN2-xTB cost at 20 atoms", min_value=1.0, key="p_budget_dft",
                                   help="measure it with your DFT code and machine; no default is right for all")
        exponent = k[1].number_input("DFT scaling exponent", min_value=1.0, max_value=7.0, key="p_budget_exp")
        cost = cost.scaled(factor, exponent)
    atoms = np.array([m.n_atoms for m in ds]) if ds is not None else np.array([20.0])
    if qm == "entered":  # e.g. the level of theory of an imported dataset, priced by its owner
        from mlipdiv.analysis.cost import CostModel

        k = st.columns(3)
        name = k[0].text_input("QM method", value=ds.level_of_theory if ds is not None else "", key="p_budget_qm_name")
        common.default("p_budget_qm_seconds", 3600.0)
        seconds = k[1].number_input(f"CPU-seconds per conformer ({atoms.mean():.0f} atoms)", min_value=1e-3,
                                    key="p_budget_qm_seconds", format="%g")
        exponent = k[2].number_input("Scaling exponent", min_value=1.0, max_value=7.0, value=3.0,
                                     key="p_budget_qm_exp")
        cost = CostModel.entered(seconds, float(atoms.mean()), exponent, label=name or "your QM method")
    n_conf = budget_in_conformers(value, unit, cost, atoms)
    st.caption(f"{n_conf:,} conformers ≈ {cost.cpu_hours_for(n_conf, atoms):,.3g} CPU-hours with {cost.label}, for "
               f"molecules the size of this dataset's (mean {atoms.mean():.1f} atoms).")


@st.cache_data(show_spinner="Fitting the error models (bootstrap over seeds) …", max_entries=16)
def fit(df: pd.DataFrame, metric: str, model: str, strategy: str):
    from mlipdiv.analysis.fit import fit_results

    return fit_results(df, metric=metric, model=model, strategy=strategy)


fits = rec = None
if df is None or df.empty:
    st.info("No finished runs to fit yet. Run both presets on **Home** (or a sweep), then come back; meanwhile the "
            "map below shows where published datasets sit.", icon=":material/info:")
else:
    k = st.columns(2)
    models = sorted(df["model"].astype(str).unique())
    strategies = sorted(df["strategy"].astype(str).unique()) if "strategy" in df else ["random"]
    model = k[0].selectbox("Model", models, key="p_budget_model")
    strategy = k[1].selectbox("Selection strategy", strategies, key="p_budget_strategy")
    try:
        fits = fit(df, metric, model, strategy)
    except MlipdivError as exc:
        st.warning(f"The error model cannot be fitted to these runs yet: {exc}. It needs finished runs at several "
                   f"(M, C) points of both experiments.", icon=":material/warning:")
    if fits is not None:
        from mlipdiv.analysis.recommend import recommend

        try:
            rec = recommend(fits, n_conf, weight)
        except MlipdivError as exc:
            st.error(str(exc), icon=":material/error:")

if rec is not None:
    st.subheader("Recommendation")
    lvl = int(round(100 * rec.level))
    k = st.columns(4)
    spread = rec.n_molecules_range
    k[0].metric("Molecules M", f"{rec.n_molecules:,}", f"{spread[0]:,}–{spread[1]:,} ({lvl}%)" if spread else None,
                delta_color="off", delta_arrow="off")
    k[1].metric("Conformers per molecule C", f"{rec.conformers_per_molecule:,}")
    for col, split, label in ((k[2], SplitName.TEST_CONFORMERS, "unseen conformers"), (k[3], SplitName.TEST_MOLECULES,
                                                                              "unseen molecules")):
        p = rec.predicted[split]
        col.metric(f"Predicted error, {label}", f"{p['mean']:.1f} {p['unit']}",
                   f"{p['low']:.1f}–{p['high']:.1f} ({lvl}% interval)", delta_color="off", delta_arrow="off")
    for note in rec.notes:
        st.caption(f"Note: {note}")
    st.plotly_chart(afig.tradeoff_figure(rec, fits), width="stretch", key="budget_tradeoff")
    cols = st.columns(2)
    for col, split in zip(cols, (SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES)):
        col.plotly_chart(afig.error_surface_figure(fits[split]), width="stretch", key=f"budget_surface_{split}")
    with st.expander("Fit quality and parameters"):
        table = []
        for split, f in fits.items():
            d = f.as_dict()
            table.append({"split": split, "form": d["formula"], "R²": d["r2"], "RMSE": d["rmse"],
                          "leave-one-out RMSE": d["loo_rmse"], "unit": d["unit"], "points": d["n_points"],
                          "runs": d["n_runs"],
                          **{k: f"{v:.3g} ± {d['stderr'].get(k, float('nan')):.2g}" for k, v in d["params"].items()}})
        st.dataframe(pd.DataFrame(table), hide_index=True)

# ---------------------------------------------------------------------------------------------- the map
st.subheader("Where QM datasets sit")
path = []
if fits is not None:
    from mlipdiv.analysis.recommend import budget_grid, optimum_path

    path = optimum_path(fits, budget_grid(fits), weight)
ours = (len(ds), max(1, int(round(ds.n_conformers / max(len(ds), 1))))) if ds is not None else None
st.plotly_chart(afig.budget_map_figure(on_map(), fits=fits, path=path, recommendation=rec, ours=ours,
                                       ours_name="default dataset (all of it)"
                                       if common.dataset_path().resolve() == common.default_dataset_path().resolve()
                                       else f"your dataset: {common.dataset_name()}"),
                width="stretch", key="budget_map")
st.dataframe(pd.DataFrame(known_datasets()), hide_index=True,
             column_config={"source": st.column_config.TextColumn(width="large")})
