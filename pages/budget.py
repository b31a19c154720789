"""Budget: what-if analysis. Fit error models to finished runs, recommend M x C for a budget, see known datasets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from mlipdiv.analysis import figures as afig
from mlipdiv.analysis.cost import BUDGET_UNITS
from mlipdiv.analysis.known_datasets import known_datasets, on_map
from mlipdiv.errors import MlipdivError
from mlipdiv.names import SplitName
from mlipdiv.viz import figures, live
from mlipdiv.viz.tables import FORM_WORDS, plain_note
from pages import common

st.title("Budget")
ds = common.dataset()
common.sidebar(ds)
st.markdown("How should **your** QM budget be split between molecules and conformers? The errors of finished runs "
            "are fitted as power laws in M molecules and C conformers each, such as $E(M, C) = E_\\infty + "
            "a\\,M^{-\\alpha} + b\\,C^{-\\beta}$ (by default an average of several such models, weighted by "
            "how well each fits), once for unseen molecules and once for unseen conformers; the recommendation "
            "is the M × C within your budget that minimises their weighted sum. Answers are given inside the range "
            "of budgets the runs cover; beyond it only when you ask for it, and then marked as extrapolated.")

# ---------------------------------------------------------------------------------------------- the results
SOURCES = {"project": "the project's study (docs/results)", "store": "this app's finished runs",
           "folder": "a results folder of the run store or the project", "upload": "a results.csv from your computer"}


@st.cache_data(show_spinner=False, max_entries=4)
def store_rows(signature: tuple) -> pd.DataFrame | None:
    rows = live.study_rows(common.store().list(), experiment="app")
    return pd.DataFrame(rows) if rows else None


runs = common.store().list()
if "p_budget_source" not in st.session_state:  # the project's study until this app has runs of its own
    has_runs = any(r.status == "done" for r in runs)
    st.session_state["p_budget_source"] = "store" if has_runs else "project"
source = st.radio("Fit the runs of", list(SOURCES), horizontal=True, key="p_budget_source", format_func=SOURCES.get)
df = None
with common.user_errors("Cannot read the results: "):
    if source == "project":
        df = common.project_study()
        if df is None:
            st.info("This copy of the project has no docs/results/results.csv.", icon=":material/info:")
    elif source == "store":
        df = store_rows(tuple((r.id, r.status, r.finished) for r in runs))
    elif source == "folder":
        from mlipdiv.analysis.fit import results_choices
        from mlipdiv.paths import home

        # only folders found under these roots can be opened (no typed path): no other file of the server is read
        choices = results_choices({"run store": home(), "project": common.PROJECT_RESULTS})
        if not choices:
            st.info("No results.csv under the run store (MLIPDIV_HOME) or docs/results. Write a sweep there "
                    "(its output folder under runs/sweeps/NAME) or upload its results.csv.", icon=":material/info:")
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

# ---------------------------------------------------------------------------------------------- the fit
METRICS = {"forces_mae": "force MAE (meV/Å)", "energy_mae_per_atom": "energy MAE (meV/atom)"}
fits = fit_args = None
if df is None or df.empty:
    st.info("No finished runs to fit yet. Run both presets on **Home** (or a sweep), or choose the project's study; "
            "meanwhile the map below shows where published datasets sit.", icon=":material/info:")
else:
    k = st.columns(4)
    models = sorted(df["model"].astype(str).unique())
    start_model, start_strategy = common.default_fit_choice(df)
    common.default("p_budget_model", start_model)
    if st.session_state["p_budget_model"] not in models:
        st.session_state["p_budget_model"] = start_model
    model = k[0].selectbox("Model", models, key="p_budget_model")
    sub = df[df["model"].astype(str) == model]
    strategies = sorted(sub["strategy"].astype(str).unique()) if "strategy" in sub else ["random"]
    if st.session_state.get("p_budget_strategy") not in strategies:
        st.session_state["p_budget_strategy"] = common.preferred(strategies, "random")
    strategy = k[1].selectbox("Selection strategy", strategies, key="p_budget_strategy")
    common.default("p_budget_metric", "forces_mae")
    metric = k[2].selectbox("Error", list(METRICS), key="p_budget_metric", format_func=METRICS.get)
    common.default("p_budget_form", "average")
    form = k[3].selectbox("Error model", list(FORM_WORDS), key="p_budget_form",
                          format_func=lambda f: FORM_WORDS[f].split(":")[0],
                          help="  \n".join(f"**{w.split(':')[0]}**: {w.split(':', 1)[1].strip()}"
                                           for w in FORM_WORDS.values()))
    fit_args = (df, metric, model, strategy, form)
    try:
        fits = common.budget_fits(*fit_args)
    except MlipdivError as exc:
        st.warning(f"The error model cannot be fitted to these runs yet. {plain_note(str(exc))} It needs finished "
                   "runs at several (M, C) points of both experiments.", icon=":material/warning:")

# ---------------------------------------------------------------------------------------------- the question
st.subheader("Your budget")
from mlipdiv.analysis.cost import budget_in_conformers, xtb_cost_model  # noqa: E402

atoms = np.array([m.n_atoms for m in ds]) if ds is not None else np.array([20.0])
common.default("p_budget_qm", "xtb")
qm = st.radio("QM method for the cost", ["xtb", "dft", "entered"], horizontal=True, key="p_budget_qm",
              format_func={"xtb": "GFN2-xTB (cost measured on this machine)",
                           "dft": "DFT (scaled from GFN2-xTB by your factor)",
                           "entered": "your method (cost per conformer entered)"}.get)
cost = xtb_cost_model()
if qm == "dft":
    k = st.columns(2)
    common.default("p_budget_dft", 1000.0)
    common.default("p_budget_exp", 3.0)
    factor = k[0].number_input("DFT / GFN2-xTB cost at 20 atoms", min_value=1.0, key="p_budget_dft",
                               help="measure it with your DFT code and machine; no default is right for all")
    exponent = k[1].number_input("DFT scaling exponent", min_value=1.0, max_value=7.0, key="p_budget_exp")
    cost = cost.scaled(factor, exponent)
if qm == "entered":  # e.g. the level of theory of an imported dataset, priced by its owner
    from mlipdiv.analysis.cost import CostModel

    k = st.columns(3)
    name = k[0].text_input("QM method", value=ds.level_of_theory if ds is not None else "", key="p_budget_qm_name")
    common.default("p_budget_qm_seconds", 3600.0)
    seconds = k[1].number_input(f"CPU-seconds per conformer ({atoms.mean():.0f} atoms)", min_value=1e-3,
                                key="p_budget_qm_seconds", format="%g")
    exponent = k[2].number_input("Scaling exponent", min_value=1.0, max_value=7.0, value=3.0, key="p_budget_qm_exp")
    cost = CostModel.entered(seconds, float(atoms.mean()), exponent, label=name or "your QM method")

# the range the runs answer for: budgets (M x C) of the fitted points, a factor max_factor either side
covered = answered = None
if fits is not None:
    f = fits[SplitName.TEST_MOLECULES]
    mc = f.points.M * f.points.C
    covered = (int(mc.min()), int(mc.max()))
    answered = (max(1, int(np.ceil(mc.min() / f.max_factor))), int(mc.max() * f.max_factor))
    # a measured budget near the middle of the runs (log scale): between two budgets' lines the best allocation
    # may lie just outside the fitted region, and the first answer should be an answer, not an extrapolation
    middle = math.sqrt(covered[0] * covered[1])
    start = float(min(f.points.budget_points(), key=lambda b: (abs(math.log(b / middle)), b)))


@st.cache_data(show_spinner=False, max_entries=8)
def known_table() -> pd.DataFrame:
    return pd.DataFrame(known_datasets())


@st.fragment
def answer() -> None:
    """The budget, its recommendation and the map: changing an input here reruns only this part (the fits,
    the error surfaces below and the sidebar are not computed or sent again)."""
    c = st.columns([1, 1, 1, 2])
    common.default("p_budget_unit", "conformers")
    unit = c[0].radio("Unit", list(BUDGET_UNITS), key="p_budget_unit",
                      format_func={"conformers": "conformers", "cpu-hours": "CPU-hours"}.get)

    def in_unit(n_conformers: float) -> float:
        return n_conformers if unit == "conformers" else cost.cpu_hours_for(n_conformers, atoms)

    def shown(n_conformers: float) -> str:
        return (f"{n_conformers:,.0f} conformers" if unit == "conformers"
                else f"{in_unit(n_conformers):,.3g} CPU-hours")

    # until the user types a budget, it follows the fitted runs (so the first answer is an answer, not a refusal)
    if covered is not None and not st.session_state.get("budget_user_value"):
        st.session_state["p_budget_value"] = float(f"{in_unit(start):.3g}")
    common.default("p_budget_value", 1000.0)
    value = c[1].number_input("Budget", min_value=1e-6 if unit == "cpu-hours" else 1.0, step=100.0, format="%g",
                              key="p_budget_value", on_change=lambda: st.session_state.update(budget_user_value=True))
    common.default("p_budget_weight", 0.5)
    weight = c[2].slider("Weight", 0.0, 1.0, step=0.05, key="p_budget_weight",
                         help="0: only unseen conformers matter · 1: only unseen molecules matter")
    c[2].caption("0: unseen conformers · 1: unseen molecules")
    with c[3]:
        if covered is not None and answered is not None:
            st.markdown(f"**Range of these runs**: {shown(covered[0])} to {shown(covered[1])} per training set.  \n"
                        f"Answered without extrapolation: **{shown(answered[0])} to {shown(answered[1])}**.")
        common.default("p_budget_extrapolate", False)
        allow = st.toggle("Answer beyond that range (extrapolation)", key="p_budget_extrapolate",
                          help="the fitted curves are continued past the runs; such answers are marked as "
                               "extrapolated and may be far off")
    n_conf = None
    with common.user_errors("Cannot convert the budget: "):
        n_conf = budget_in_conformers(value, unit, cost, atoms)
        st.caption(f"{n_conf:,} conformers ≈ {cost.cpu_hours_for(n_conf, atoms):,.3g} CPU-hours with {cost.label}, "
                   f"for molecules the size of this dataset's (mean {atoms.mean():.1f} atoms).")

    rec = None
    if fits is not None and fit_args is not None and n_conf is not None and answered is not None:
        outside = not answered[0] <= n_conf <= answered[1]
        try:
            rec = common.budget_recommendation(*fit_args, n_conf, weight, allow)
        except MlipdivError as exc:
            if outside and not allow:
                st.warning(f"A budget of {n_conf:,} conformers lies outside what these runs can answer for "
                           f"({answered[0]:,} to {answered[1]:,} conformers). Choose a budget in that range, or "
                           "switch on **Answer beyond that range** to see an extrapolated answer, marked as such.",
                           icon=":material/warning:")
            else:
                st.error(plain_note(str(exc)), icon=":material/error:")

    if rec is not None and fits is not None and fit_args is not None:
        marked = " (extrapolated)" if rec.extrapolated else ""
        st.subheader(f"Recommendation{marked}")
        if rec.extrapolated:
            st.warning("**Extrapolated**: this allocation lies outside the (M, C) region of the runs, so the "
                       "fitted curves are continued beyond the data. Treat the numbers as a rough guess; a sweep at "
                       "this budget would tell.", icon=":material/warning:")
        lvl = int(round(100 * rec.level))
        k = st.columns(4)
        spread = rec.n_molecules_range
        k[0].metric(f"Molecules M{marked}", f"{rec.n_molecules:,}",
                    f"{spread[0]:,}–{spread[1]:,} ({lvl}%)" if spread else None, delta_color="off",
                    delta_arrow="off")
        k[1].metric(f"Conformers per molecule C{marked}", f"{rec.conformers_per_molecule:,}")
        for col, split, label in ((k[2], SplitName.TEST_CONFORMERS, "unseen conformers"),
                                  (k[3], SplitName.TEST_MOLECULES, "unseen molecules")):
            p = rec.predicted[split]
            col.metric(f"Predicted error, {label}{marked}", f"{p['mean']:.1f} {p['unit']}",
                       f"{p['low']:.1f}–{p['high']:.1f} ({lvl}% interval)", delta_color="off", delta_arrow="off")
        for note in dict.fromkeys(plain_note(n) for n in rec.notes):
            st.caption(f"Note: {note}")
        st.plotly_chart(figures.mark_extrapolated(afig.tradeoff_figure(rec, fits), rec.table), width="stretch",
                        key="budget_tradeoff")

    # ---------------------------------------------------------------------------------------------- the map
    st.subheader("Where QM datasets sit")
    path = common.budget_path(*fit_args, weight) if fits is not None and fit_args is not None else []
    ours = (len(ds), max(1, int(round(ds.n_conformers / max(len(ds), 1))))) if ds is not None else None
    default = common.dataset_path().resolve() == common.default_dataset_path().resolve()
    ours_name = "default dataset (all of it)" if default else f"your dataset: {common.dataset_name()}"
    fig = afig.budget_map_figure(on_map(), fits=fits, path=path, recommendation=rec, ours=ours,
                                 ours_name=ours_name)
    fig.update_traces(cliponaxis=False, selector={"mode": "markers+text"})  # a name near the edge shows in full
    if rec is not None and rec.extrapolated:
        fig.update_traces(selector={"name": "recommendation"}, name="recommendation (extrapolated)",
                          marker={"color": "#FFFFFF", "line": {"color": "#000", "width": 2}})
    st.plotly_chart(fig, width="stretch", key="budget_map")
    st.dataframe(known_table(), hide_index=True,
                 column_config={"source": st.column_config.TextColumn(width="large")})


answer()

# ---------------------------------------------------------------------------------------------- the fits
if fits is not None and fit_args is not None:
    cols = st.columns(2)
    surfaces = common.budget_surfaces(*fit_args)
    for col, split in zip(cols, (SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES)):
        col.plotly_chart(surfaces[split], width="stretch", key=f"budget_surface_{split}")
    with st.expander("Fit quality and parameters"):
        st.caption("R²: share of the variation between (M, C) points that the fit explains (1 is perfect). RMSE: "
                   "typical distance of a point from the fit; leave-one-out RMSE: the same for points left out of "
                   "the fit (an honest estimate of prediction error). Parameters ± their standard errors.")
        table = []
        for split, fit in fits.items():
            d = fit.as_dict()
            table.append({"split": split, "form": d["formula"], "R²": d["r2"], "RMSE": d["rmse"],
                          "leave-one-out RMSE": d["loo_rmse"], "unit": d["unit"], "points": d["n_points"],
                          "runs": d["n_runs"],
                          **{k: f"{v:.3g} ± {d['stderr'].get(k, float('nan')):.2g}" for k, v in d["params"].items()}})
        st.dataframe(pd.DataFrame(table), hide_index=True)

