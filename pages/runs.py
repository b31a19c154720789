"""Runs: the run table with live progress and learning curves, cancel, parity plots, the study plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from mlipdiv.analysis.figures import study_figure
from mlipdiv.io.metrics import SplitErrors
from mlipdiv.io.rundir import RunDir
from mlipdiv.names import SPLITS, Experiment, SplitName
from mlipdiv.style import SPLIT_LABELS, mev
from mlipdiv.viz import figures, live
from pages import common

st.title("Runs")
ds = common.dataset()
common.sidebar(ds)
store = common.store()
runs = store.list()
st.caption(f"Runs are stored in `{store.root}` and keep going when the browser is closed. Training device: "
           f"**{common.device_description()}**.")
st.session_state["runs_active"] = live.active_ids(runs)


def cancel_all_or_delete(ids: list[str], active: list[str]) -> None:
    """Two bulk actions on the runs ``ids`` (oldest first): cancel every queued and running one (``active``); delete
    one stopped run (its row and folder), behind a confirmation. The library refuses to delete an active run."""
    if len(active) > 1 and st.button("Cancel all", key="runs_cancel_all", icon=":material/cancel:",
                                     help="cancel every queued run now and every running one at its next batch"):
        n = len(common.job_manager().cancel_all())
        st.toast(f"Cancelling {n} run{'s' if n != 1 else ''}.", icon=":material/cancel:")
    stopped = [i for i in reversed(ids) if i not in active]
    if stopped:
        with st.popover("Delete a run", icon=":material/delete:"):
            target = st.selectbox("Stopped or finished run", stopped, key="runs_delete_target")
            st.caption("Removes the run and its folder (model, predictions); this cannot be undone.")
            if st.button("Delete for good", key="runs_delete", type="primary"):
                with common.user_errors("Cannot delete: "):
                    store.delete(target)
                    st.rerun(scope="app")


def overlay(current: list, by_id: dict) -> None:
    """Validation curves of several runs on one axis (the runs chosen here, the newest ones at first)."""
    with st.expander("Compare the learning curves of several runs"):
        ids = [r.id for r in sorted(current, key=lambda r: r.created or 0.0, reverse=True) if r.curve]
        chosen = [i for i in st.session_state.get("runs_overlay", ids[:4]) if i in ids]
        st.session_state["runs_overlay"] = chosen
        picked = st.multiselect("Runs", ids, key="runs_overlay", max_selections=10,
                                format_func=lambda i: f"{i}: {live.run_label(by_id[i])}")
        what = st.radio("Show", ["val_forces_mae", "val_energy_mae", "train_loss"], horizontal=True,
                        key="runs_overlay_metric",
                        format_func={"val_forces_mae": "validation force MAE", "val_energy_mae":
                                     "validation energy MAE", "train_loss": "training loss"}.get)
        curves = {f"{i[-6:]}: {live.run_label(by_id[i], status=False)}": by_id[i].curve for i in picked}
        st.plotly_chart(figures.curves_overlay_figure(curves, what), width="stretch", key="runs_overlay_plot")


@st.fragment(run_every=live.poll_interval(runs))
def live_runs() -> None:
    """The part of the page that refreshes every few seconds while something trains."""
    current = store.list()
    if live.needs_full_refresh(st.session_state.get("runs_active", []), current):
        st.rerun(scope="app")  # a run started or ended: refresh the whole page (and stop polling when idle)
    if not current:
        st.info("No runs yet. Start one on **Trade-off** or a preset on **Home**.", icon=":material/info:")
        return
    rows = live.run_rows(current)
    st.dataframe(
        pd.DataFrame(rows), hide_index=True, height=min(400, 38 + 35 * len(rows)), key="runs_table",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            **{k: st.column_config.NumberColumn(k, format="%.1f") for k in rows[0] if "MAE" in k},
        },
    )
    by_id = {r.id: r for r in current}
    active = live.active_ids(current)
    left, right = st.columns([3, 1])
    with left:
        choices = [r["id"] for r in rows]
        default = active[0] if active else choices[0]
        shown = st.session_state.get("runs_curve")
        # follow the training run until the user picks one: when a run ends, the next one's curve appears
        if shown not in choices or (not st.session_state.get("runs_curve_user") and active and shown not in active):
            st.session_state["runs_curve"] = default
        run_id = st.selectbox("Learning curve of", choices, key="runs_curve",
                              format_func=lambda i: f"{i}: {live.run_label(by_id[i], status=False)}",
                              on_change=lambda: st.session_state.update(runs_curve_user=True))
        run = by_id[run_id]
        st.plotly_chart(figures.learning_curve_figure(run.curve, title=live.run_label(run)), width="stretch",
                        key="runs_curve_plot")
        if run.status == "failed" and run.error:
            st.error(f"{run_id} failed: {common.md(common.public(run.error))}")
        overlay(current, by_id)
    with right:
        st.markdown("**Stop or continue a run**")
        stoppable = [i for i in active if live.cancellable(by_id[i])]
        if stoppable:
            target = st.selectbox("Running or queued", stoppable, key="runs_cancel_target",
                                  format_func=lambda i: f"{i} ({by_id[i].status})")
            if st.button("Cancel", key="runs_cancel", type="primary"):
                common.job_manager().cancel(target)
                st.toast(f"Cancelling {target}: it stops at its next batch.", icon=":material/cancel:")
        else:
            st.caption("Nothing is running.")
        resumable = [r.id for r in current if r.status in ("cancelled", "interrupted", "failed")]
        if resumable:
            target = st.selectbox("Stopped", resumable, key="runs_resume_target",
                                  format_func=lambda i: f"{i} ({by_id[i].status})")
            if st.button("Resume", key="runs_resume", help="continue from the last checkpoint"):
                with common.user_errors("Cannot resume: "):
                    common.job_manager().resume(target)
                    st.rerun(scope="app")
        cancel_all_or_delete([r.id for r in current], active)


live_runs()

# -------------------------------------------------------------------------------------------------- one run
finished = live.finished_with_metrics(runs, include_cancelled=True)
st.subheader("A finished run")


@st.fragment
def one_run() -> None:
    """Choosing another run reruns only this part of the page."""
    by_id = {r.id: r for r in finished}
    run_id = st.selectbox("Run", [r.id for r in reversed(finished)], key="runs_finished",
                          format_func=lambda i: f"{i}: {live.run_label(by_id[i])}")
    run = by_id[run_id]
    metrics = live.run_metrics(run)  # finished_with_metrics: decodable, with splits
    assert metrics is not None
    table = []
    for split in SPLITS:
        s, b = metrics.split(split) or SplitErrors(), metrics.baselines.get(split) or SplitErrors()
        table.append({
            "split": SPLIT_LABELS.get(split, split), "conformers": s.n,
            "force MAE (meV/Å)": mev(s.forces_mae), "baseline force MAE (meV/Å)": mev(b.forces_mae),
            "energy MAE (meV/atom)": mev(s.energy_mae_per_atom),
            "baseline energy MAE (meV/atom)": mev(b.energy_mae_per_atom),
        })
    st.dataframe(pd.DataFrame(table), hide_index=True,
                 column_config={k: st.column_config.NumberColumn(format="%.1f") for k in table[0] if "MAE" in k})
    st.caption(f"Baseline: a per-element linear energy fit and zero forces, i.e. a model that learns nothing "
               f"geometric. Trained on {metrics.device or '?'} in {metrics.seconds:.0f} s. Energies per atom here; "
               "the parity plot shows them per molecule too (a molecule's error is its per-atom error times its "
               "atoms).")
    folder = RunDir(run.run_dir)
    pred_path = folder.predictions_path
    if pred_path.exists():
        pred = predictions(str(pred_path), common.version(pred_path))
        splits = [s.value for s in (SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES, SplitName.VAL)
                  if np.any(pred["split"] == s)]
        cols = st.columns(2)
        with cols[0]:
            split = st.radio("Parity plot of", splits, horizontal=True, key="runs_parity_split",
                             format_func=lambda s: SPLIT_LABELS.get(s, s))
            sel = pred["split"] == split
            st.plotly_chart(figures.parity_figure(pred["E_true"][sel], pred["E_pred"][sel], "energy", split,
                                                  groups=pred["mol_id"][sel],
                                                  n_atoms=pred["n_atoms"][sel] if "n_atoms" in pred else None),
                            width="stretch", key="runs_parity")
        with cols[1]:
            st.plotly_chart(figures.error_distribution_figure({s: pred["forces_mae"][pred["split"] == s]
                                                               for s in splits}), width="stretch", key="runs_errors")
    elif run.status == "cancelled":
        st.info(f"{run_id} was cancelled: the errors above are those of the best weights it had reached (step "
                f"{metrics.best_step}); a cancelled run writes no predictions file.", icon=":material/info:")
    else:
        st.warning(f"{run_id} has no predictions file ({pred_path.name}).")


@st.cache_data(show_spinner=False, max_entries=32)
def predictions(path: str, file_version: tuple) -> dict:
    return RunDir(Path(path).parent).read_predictions()


if not finished:
    st.info("Parity plots appear here once a run has finished.", icon=":material/info:")
else:
    one_run()

# -------------------------------------------------------------------------------------------------- the study
st.subheader("The study: held-out error across the trade-off")


@st.fragment
def study() -> None:
    """The study plots; switching the experiment or the group reruns only this part."""
    experiment = st.radio("Experiment", [e.value for e in Experiment], horizontal=True, key="runs_experiment",
                          format_func={Experiment.FIXED_BUDGET: "Fixed budget: error against M",
                                       Experiment.FIXED_MOLECULES: "Fixed molecular set: error against C"}.get)
    rows = live.study_rows(finished, experiment=experiment)
    groups = live.study_groups(rows, experiment)
    if not groups:
        st.info("The study plot needs finished runs at two or more points of one experiment (same budget, or same "
                "number of molecules). The presets on **Home** queue exactly that.", icon=":material/info:")
        return
    what = "Budget B" if experiment == Experiment.FIXED_BUDGET else "Molecules M"
    group = st.selectbox(what, groups, key=f"runs_group_{experiment}")
    series = pd.DataFrame(live.study_table(finished, experiment, group))
    cols = st.columns(2)
    for col, metric in zip(cols, ("forces_mae", "energy_mae_per_atom")):
        base = {k: mev(v) for k, v in live.baseline_means(finished, series["run_id"], metric).items()}
        fig = study_figure(series, experiment, metric=metric, baselines=base,
                           title=f"{'Forces' if metric == 'forces_mae' else 'Energy'}, {what.split()[1]} = {group}")
        fig.update_yaxes(type="log")  # errors of a barely trained run can be 1000x those of a good one
        col.plotly_chart(fig, width="stretch", key=f"runs_study_{metric}")
    st.caption("Mean ± standard deviation over seeds (log axis: one badly trained run does not flatten the rest); "
               f"dotted lines: the no-geometry baseline. {series['run_id'].nunique()} finished runs.")


study()
