"""Embeddings: UMAP maps of structures and conformers side by side; click a point to see that conformer in 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from mlipdiv.embeddings import METRICS
from mlipdiv.io.rundir import RunDir
from mlipdiv.style import SPLIT_COLORS, SPLIT_LABELS, SPLIT_ORDER, mev
from mlipdiv.viz import figures, live, maps, molview
from pages import common

st.title("Embeddings")
ds = common.require_dataset()
common.sidebar(ds)
st.markdown("Each point of the left map is a **molecule** (UMAP of Morgan fingerprints); each point of the right map "
            "is a **conformer** (UMAP of sorted Coulomb-matrix eigenvalues, one fixed-length 3D descriptor for all "
            "molecules). Hover to see the molecule; click a point (or draw a box) to see that conformer in 3D.")

# ---------------------------------------------------------------------------------------------- controls
with st.expander("Map settings (UMAP)", expanded=False):
    c = st.columns(4)
    common.default("p_emb_neighbors", 15)
    common.default("p_emb_min_dist", 0.1)
    common.default("p_emb_metric_structures", METRICS["structures"][0])
    common.default("p_emb_metric_conformers", METRICS["conformers"][0])
    n_neighbors = int(c[0].slider("n_neighbors", 2, 100, key="p_emb_neighbors",
                                  help="neighbourhood size: small keeps local detail, large the global layout"))
    min_dist = float(c[1].slider("min_dist", 0.0, 0.99, step=0.01, key="p_emb_min_dist",
                                 help="how tightly points may pack"))
    metric_s = c[2].selectbox("Metric (structures)", METRICS["structures"], key="p_emb_metric_structures")
    metric_c = c[3].selectbox("Metric (conformers)", METRICS["conformers"], key="p_emb_metric_conformers")
    st.caption("Each map is computed once per dataset and setting and stored on disk, so it is instant afterwards, "
               "also after a restart.")

common.default("p_emb_colour", "split")
colour = st.radio("Colour by", ["split", "molecule", "energy", "error"], horizontal=True, key="p_emb_colour",
                  format_func={"split": "split of the chosen trade-off", "molecule": "molecule",
                               "energy": "energy", "error": "a finished run's error"}.get)

# ---------------------------------------------------------------------------------------------- the maps
emb = {}
for kind, metric in (("structures", metric_s), ("conformers", metric_c)):
    with common.user_errors(f"Cannot compute the {kind} map: "):
        emb[kind] = common.embedding(kind, n_neighbors, min_dist, metric)
if len(emb) < 2:
    st.stop()

hover = {kind: maps.hover_texts(ds, kind) for kind in emb}
colouring: dict[str, dict] = {}
if colour == "split":
    spec = common.tradeoff_spec(ds)
    split = None
    with common.user_errors("Cannot build the chosen trade-off's split: "):
        split = common.split_preview(spec)
    if split is None:
        st.stop()
    st.caption(f"Split of the trade-off chosen on **Trade-off**: M={spec.molecules} × "
               f"C={spec.conformers_per_molecule}, {spec.strategy} selection, seed {spec.seed}.")
    order = ["unused", *[x for x in SPLIT_ORDER if x != "unused"]]
    common_args = {"categorical": True, "category_colors": SPLIT_COLORS, "category_labels": SPLIT_LABELS,
                   "category_order": order, "color_title": "split"}
    labels = {"structures": maps.molecule_split_labels(ds, split), "conformers": maps.conformer_split_labels(ds, split)}
    for kind in labels:  # on a thinned map, the split's points are always drawn
        colouring[kind] = {"color": labels[kind], "priority": labels[kind] != "unused", **common_args}
elif colour == "molecule":
    codes = np.arange(len(ds), dtype=float)
    args = {"categorical": False, "colorscale": "Turbo", "showscale": False, "color_title": "molecule"}
    colouring["structures"] = {"color": codes, **args}
    colouring["conformers"] = {"color": codes[emb["conformers"]["molecule_index"]], **args}
elif colour == "energy":
    rel = mev(maps.conformer_energies(ds))
    ranges = np.array([mev(m.energy.max() - m.energy.min()) for m in ds])
    colouring["structures"] = {"color": ranges, "categorical": False, "color_title": "energy range (meV)"}
    colouring["conformers"] = {"color": rel, "categorical": False, "color_title": "E − E_min (meV)"}
else:
    store = common.store()
    finished = [r for r in live.finished_with_metrics(store.list())
                if RunDir(r.run_dir).predictions_path.exists()]
    same_data = [r for r in finished if Path(str(r.config.get("dataset") or common.default_dataset_path())).resolve()
                 == common.dataset_path().resolve()]
    if not same_data:
        st.info("No finished run on this dataset yet: colouring by error needs one (see **Runs**).",
                icon=":material/info:")
        st.stop()
    by_id = {r.id: r for r in same_data}
    run_id = st.selectbox("Run", [r.id for r in reversed(same_data)], key="p_emb_run",
                          format_func=lambda i: f"{i}: {live.run_label(by_id[i])}")
    pred = RunDir(by_id[run_id].run_dir).read_predictions(("mol_id", "conf_idx", "forces_mae"))
    err = mev(maps.prediction_errors(ds, pred))
    mol_index = emb["conformers"]["molecule_index"]
    per_mol = maps.per_molecule_mean(err, mol_index, len(ds))
    colouring["structures"] = {"color": per_mol, "categorical": False, "color_title": "force MAE (meV/Å)"}
    colouring["conformers"] = {"color": err, "categorical": False, "color_title": "force MAE (meV/Å)",
                               "priority": np.isfinite(err)}
    st.caption("Grey: conformers the run was not evaluated on (training conformers, and evaluation sets are capped "
               "per molecule). Structures: mean over each molecule's evaluated conformers.")

cols = st.columns(2)
events = {}
for col, kind in zip(cols, ("structures", "conformers")):
    e = emb[kind]
    fig = figures.umap_scatter(e["coords"], e["global_ids"], hover[kind],
                               title=f"{'Structures' if kind == 'structures' else 'Conformers'}"
                                     f"{' (PCA: too few for UMAP)' if e['method'] == 'pca' else ''}",
                               method=e["method"], **colouring[kind])
    events[kind] = col.plotly_chart(fig, width="stretch", key=f"emb_map_{kind}", on_select="rerun",
                                    selection_mode=("points", "box", "lasso"))

st.caption("How to read the conformer map: a molecule's conformers are always each other's nearest neighbours, so "
           "each molecule forms an island of its own and the way islands are arranged carries little meaning. Zoom "
           "into an island (scroll, or the zoom tool) to see one molecule's conformers: relaxed conformers and their "
           "thermal samples form clumps. The structure map on the left is the one that places molecules by "
           "similarity.")

# ---------------------------------------------------------------------------------------------- the clicked one
picked = live.selected_global_ids(events["conformers"]) or live.selected_global_ids(events["structures"])
st.subheader("Selected conformer")
if not picked:
    st.caption("Click a point on either map (a molecule's point shows its first conformer).")
else:
    gid = picked[0]
    if len(picked) > 1:
        shown = picked[:500]
        gid = st.selectbox(f"{len(picked)} points selected; show", shown, key="emb_pick",
                           format_func=lambda g: f"{ds[ds.locate(g)[0]].name or ds[ds.locate(g)[0]].smiles}, "
                                                 f"conformer {ds.locate(g)[1]}")
    mol_id, j = ds.locate(gid)
    mol = ds[mol_id]
    rel = mev(mol.energy[j] - mol.energy.min())
    left, right = st.columns([3, 2])
    with left:
        rel_all = mev(mol.energy - mol.energy.min())
        captions = [f"{mol.name or mol.smiles}, conformer {k}: {rel_all[k]:.0f} meV above the lowest"
                    for k in range(mol.n_conformers)]
        st.iframe(molview.view_html(mol.atomic_numbers, mol.positions, forces=mol.forces, captions=captions,
                                    start=j, height=420), height=480)
    with right:
        st.markdown(f"**{mol.name or mol.smiles}**  \n`{mol.smiles}`  \n{mol.n_atoms} atoms, "
                    f"{mol.n_conformers} conformers")
        st.metric("Conformer", f"{j} (global id {gid})")
        st.metric("Energy above the molecule's lowest", f"{rel:.0f} meV")
        st.caption(f"family {int(mol.parent[j])}, made by {mol.method[j]}, {mol.temperature[j]:.0f} K")
