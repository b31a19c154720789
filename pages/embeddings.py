"""Embeddings: a map of the molecules, a map of all conformers by their local atomic environments, and one
molecule's conformers with its parent families and the chosen trade-off's training and held-out conformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

from mlipdiv.embeddings import METRICS, MapParams, build_map, estimate_seconds, molecule_conformer_map, running_build
from mlipdiv.io.rundir import RunDir
from mlipdiv.style import SPLIT_COLORS, SPLIT_LABELS, SPLIT_ORDER, mev
from mlipdiv.viz import figures, live, maps, molview
from pages import common

st.title("Embeddings")
ds = common.require_dataset()
common.sidebar(ds)
st.markdown(
    "Three maps. **Molecules**: one point per molecule, UMAP of Morgan fingerprints; neighbours share substructures "
    "(chemistry). **All conformers**: one point per conformer, UMAP of its atoms' SOAP descriptors averaged "
    "(local environments within 5 Å, the models' cutoff); neighbours look alike *to a potential*. **One "
    "molecule's conformers** (below): its conformers placed so that a distance is their RMSD in Å, "
    "coloured by parent family (a relaxed conformer and its thermal samples), marked by what the chosen trade-off "
    "trains on and holds out. Rest the pointer on a point of the first two maps to see its molecule's structure; "
    "click a point on any map to see it in 2D and 3D; box or lasso selection is in each map's toolbar.")

# ---------------------------------------------------------------------------------------------- settings
KINDS = ("structures", "conformers")
N_POINTS = {"structures": len(ds), "conformers": ds.n_conformers}
common.default("p_emb_applied", {"n_neighbors": 15, "min_dist": 0.1, "metric_structures": METRICS["structures"][0],
                                 "metric_conformers": METRICS["conformers"][0]})
applied = dict(st.session_state["p_emb_applied"])


def params_of(kind: str, settings: dict) -> MapParams:
    return MapParams(kind, int(settings["n_neighbors"]), float(settings["min_dist"]), settings[f"metric_{kind}"])


def estimate_text() -> str:
    parts = []
    for kind in KINDS:
        p = params_of(kind, applied)
        secs = estimate_seconds(N_POINTS[kind], p, descriptors_ready=True)
        fit = min(N_POINTS[kind], p.sample) if p.sample else N_POINTS[kind]
        how = f"fitted on {fit:,}, the rest placed" if fit < N_POINTS[kind] else "all fitted"
        parts.append(f"{'molecule' if kind == 'structures' else 'conformer'} map {N_POINTS[kind]:,} points "
                     f"({how}): about {secs:.0f} s")
    return "; ".join(parts)


with st.expander("Map settings (UMAP)", expanded=False):
    with st.form("emb_settings", border=False):
        c = st.columns(4)
        n_neighbors = c[0].slider("n_neighbors", 2, 100, value=int(applied["n_neighbors"]),
                                  help="neighbourhood size: small keeps local detail, large the global layout")
        min_dist = c[1].slider("min_dist", 0.0, 0.99, value=float(applied["min_dist"]), step=0.01,
                               help="how tightly points may pack")
        metric_s = c[2].selectbox("Metric (structures)", METRICS["structures"],
                                  index=METRICS["structures"].index(applied["metric_structures"]))
        metric_c = c[3].selectbox("Metric (conformers)", METRICS["conformers"],
                                  index=METRICS["conformers"].index(applied["metric_conformers"]))
        st.caption(f"A new setting is computed once and stored, then instant (also after a restart). Time for a "
                   f"new one on this machine, from the seconds per point the last computation measured: "
                   f"{estimate_text()}.")
        if st.form_submit_button("Apply", key="emb_apply"):
            st.session_state["p_emb_applied"] = applied = {
                "n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "metric_structures": metric_s,
                "metric_conformers": metric_c}

# ------------------------------------------------------------------------------------------- maps: ready or building
wanted = {kind: params_of(kind, applied) for kind in KINDS}
ready = {kind: common.embedding_ready(kind, p.n_neighbors, p.min_dist, p.metric) for kind, p in wanted.items()}
if all(ready.values()):
    st.session_state["p_emb_shown"] = dict(applied)
else:
    started = [build_map(ds, p) for kind, p in wanted.items() if not ready[kind]]  # once per process and setting
    if started and all(b.status == "running" for b in started) and max(b.estimate for b in started) <= 40:
        # short ones (a small dataset; UMAP's start-up counts once) are simply waited for
        with st.spinner(f"Computing the maps (about {max(b.estimate for b in started):.0f} s) …"):
            for b in started:
                b.join(60)
        if all(b.status == "done" for b in started):
            st.rerun()

    @st.fragment(run_every=1.0)
    def build_progress() -> None:
        builds = {kind: running_build(ds, p) for kind, p in wanted.items() if not ready[kind]}
        if all(b is not None and b.status == "done" for b in builds.values()):
            st.rerun()
        for kind, b in builds.items():
            if b is None:
                continue
            name = "molecule" if kind == "structures" else "conformer"
            if b.status == "running":
                left = max(b.estimate - b.elapsed, 0)
                remaining = f"about {left:.0f} s left" if left else "any moment now"
                st.progress(b.done / max(b.total, 1),
                            text=f"Computing the {name} map ({b.n_points:,} points, estimated {b.estimate:.0f} s; "
                                 f"{b.elapsed:.0f} s so far, {remaining}): {b.message}")
            elif b.status in ("failed", "cancelled"):
                st.warning(f"The {name} map was {b.status}{': ' + b.error if b.error else ''}.",
                           icon=":material/warning:")
        if st.button("Cancel", key="emb_cancel", help="stop computing these maps (after the current step, a few "
                                                      "seconds) and keep the ones shown"):
            for b in builds.values():
                if b is not None:
                    b.cancel()
            st.session_state["p_emb_applied"] = st.session_state.get("p_emb_shown", applied)
            st.rerun(scope="app")

    build_progress()

shown = st.session_state.get("p_emb_shown")
if shown is None:
    st.info("The maps are being computed for the first time (see the progress above).", icon=":material/hourglass:")
    st.stop()
if shown != applied:
    st.caption("Showing the maps of the previous settings until the new ones are ready.")
emb = {}
for kind in KINDS:
    p = params_of(kind, shown)
    with common.user_errors(f"Cannot read the {kind} map: "):
        emb[kind] = common.embedding(kind, p.n_neighbors, p.min_dist, p.metric)
if len(emb) < 2:
    st.stop()

# ---------------------------------------------------------------------------------------------- what was clicked
MAP_KEYS = ("emb_map_structures", "emb_map_conformers", "emb_map_molecule")


def selection_of(key: str) -> tuple[int, ...]:
    return tuple(live.selected_global_ids(st.session_state.get(key)))


previous = st.session_state.setdefault("emb_previous_selection", {})
for key in MAP_KEYS:
    now = selection_of(key)
    if now and now != previous.get(key):  # the map clicked last decides what is shown
        st.session_state["emb_picked"] = list(now)
        mol_now = ds[ds.locate(now[0])[0]].id
        if key != "emb_map_molecule" and st.session_state.get("p_emb_molecule") != mol_now:
            st.session_state["p_emb_molecule"] = mol_now
    previous[key] = now
picked: list[int] = st.session_state.get("emb_picked", [])

# ---------------------------------------------------------------------------------------------- colouring
common.default("p_emb_colour", "split")
colour = st.radio("Colour by", ["split", "molecule", "energy", "error"], horizontal=True, key="p_emb_colour",
                  format_func={"split": "split of the chosen trade-off", "molecule": "molecule",
                               "energy": "energy", "error": "a finished run's error"}.get)
spec = common.tradeoff_spec(ds)
split = None
with common.user_errors("Cannot build the chosen trade-off's split: "):
    split = common.split_preview(spec)
if split is None:
    st.stop()
run_id: str | None = None
if colour == "split":
    st.caption(f"Split of the trade-off chosen on **Trade-off**: M={spec.molecules} × "
               f"C={spec.conformers_per_molecule}, {spec.strategy} selection, seed {spec.seed}.")
elif colour == "error":
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
    st.caption("Grey: conformers the run was not evaluated on (training conformers, and evaluation sets are capped "
               "per molecule). Molecules: mean over each molecule's evaluated conformers.")


def colouring_of(kind: str, colour: str, run_dir: str | None) -> dict:
    """The ``umap_scatter`` colour arguments of one map."""
    if colour == "split":
        labels = (maps.molecule_split_labels(ds, split) if kind == "structures"
                  else maps.conformer_split_labels(ds, split))
        order = ["unused", *[x for x in SPLIT_ORDER if x != "unused"]]
        # on a thinned map, the split's points are always drawn
        return {"color": labels, "priority": labels != "unused", "categorical": True, "category_colors": SPLIT_COLORS,
                "category_labels": SPLIT_LABELS, "category_order": order, "color_title": "split"}
    if colour == "molecule":
        codes = np.arange(len(ds), dtype=float)
        return {"color": codes if kind == "structures" else codes[emb["conformers"]["molecule_index"]],
                "categorical": False, "colorscale": "Turbo", "showscale": False, "color_title": "molecule"}
    if colour == "energy":
        if kind == "structures":
            ranges = np.array([mev(m.energy.max() - m.energy.min()) for m in ds])
            return {"color": ranges, "categorical": False, "color_title": "energy range (meV)"}
        return {"color": mev(maps.conformer_energies(ds)), "categorical": False, "color_title": "E − E_min (meV)"}
    pred = RunDir(Path(str(run_dir))).read_predictions(("mol_id", "conf_idx", "forces_mae"))
    err = mev(maps.prediction_errors(ds, pred))
    if kind == "structures":
        per_mol = maps.per_molecule_mean(err, emb["conformers"]["molecule_index"], len(ds))
        return {"color": per_mol, "categorical": False, "color_title": "force MAE (meV/Å)"}
    return {"color": err, "categorical": False, "color_title": "force MAE (meV/Å)", "priority": np.isfinite(err)}


TITLES = {"structures": "Molecules (Morgan fingerprints)", "conformers": "All conformers (averaged SOAP)"}


@st.cache_resource(show_spinner=False, max_entries=24)
def dataset_map(path: str, version: tuple, kind: str, params: tuple, colour: str, split_key: str,
                run_dir: str | None) -> object:
    """One dataset map as drawn, built once for every session: the arguments are the cache key, as nothing else
    changes what the figure shows (the split by its spec, the errors by their run). Never mutated after this."""
    e = emb[kind]
    fig = figures.umap_scatter(e["coords"], e["global_ids"], maps.hover_texts(ds, kind),
                               title=f"{TITLES[kind]}{' (PCA: too few for UMAP)' if e['method'] == 'pca' else ''}",
                               method=e["method"], **colouring_of(kind, colour, run_dir))
    return maps.clickable(fig)


# ----------------------------------------------------------------------------------------------  the two dataset maps
cols = st.columns(2)
run_dir = str(common.store().get(run_id).run_dir) if run_id else None
PATH, VERSION = str(common.dataset_path().resolve()), common.version(common.dataset_path())
SPEC_KEY = json.dumps(spec.to_dict(), sort_keys=True)  # the trade-off's split, as a cache key
for col, kind in zip(cols, KINDS):
    p = params_of(kind, shown)
    fig = dataset_map(PATH, VERSION, kind, (p.n_neighbors, p.min_dist, p.metric), colour,
                      SPEC_KEY if colour == "split" else "", run_dir)
    col.plotly_chart(fig, width="stretch", key=f"emb_map_{kind}", on_select="rerun",
                     selection_mode=("points", "box", "lasso"))
common.hover_depictions(ds)
cols[0].caption("UMAP keeps neighbours, not distances: molecules close together share substructures (Tanimoto "
                "similarity of Morgan fingerprints); the gaps between far-apart groups mean little.")
cols[1].caption("UMAP keeps neighbours, not distances: conformers close together have similar local atomic "
                "environments (mean SOAP vector within 5 Å), so a potential sees them as alike. Each molecule forms "
                "a streak of its own, spread along what changes in its geometry; where streaks lie relative to each "
                "other means little. Zoom in (drag a box) to see one molecule's conformers.")

# ---------------------------------------------------------------------------------------- one molecule's conformers
st.subheader("One molecule's conformers")
ids = list(ds.ids)
default_mol = next((m for m, _ in split.get("train", [])), ids[0])
common.default("p_emb_molecule", default_mol)
if st.session_state["p_emb_molecule"] not in ds:
    st.session_state["p_emb_molecule"] = default_mol
mol_id = st.selectbox("Molecule", ids, key="p_emb_molecule",
                      format_func=lambda m: f"{ds[m].name or ds[m].smiles} ({ds[m].smiles})" if ds[m].name
                      else ds[m].smiles, help="or click a point on a map above")
mol = ds[mol_id]


@st.cache_resource(show_spinner=False, max_entries=32)
def molecule_map(path: str, version: tuple, mol_id: str, split_key: str) -> tuple[object, float, dict[str, int]]:
    """One molecule's conformer map (classical scaling of its RMSD matrix) with the split's roles, built once per
    molecule and split for every session; returns (figure, share of the spread the axes keep, count per role)."""
    start = int(ds.conformer_offsets()[ds.index_of(mol_id)])
    coords, kept = molecule_conformer_map(mol)
    roles = maps.molecule_conformer_roles(ds, spec, split, mol_id)
    rel_all = mev(mol.energy - mol.energy.min())
    mol_hover = [f"conformer {j}: {rel_all[j]:.0f} meV above lowest" for j in range(mol.n_conformers)]
    fig = maps.molecule_conformer_figure(
        coords, mol.parent, np.arange(start, start + mol.n_conformers), mol_hover, roles,
        title=f"{mol.name or mol.smiles}: {mol.n_conformers} conformers, {len(np.unique(mol.parent))} families")
    return fig, kept, {r: int((roles == r).sum()) for r in maps.ROLE_SYMBOLS}


left, right = st.columns([3, 2])
with left:
    fig, kept, counts = molecule_map(PATH, VERSION, mol_id, SPEC_KEY)
    st.plotly_chart(fig, width="stretch", key="emb_map_molecule", on_select="rerun",
                    selection_mode=("points", "box", "lasso"))
    st.caption(f"A distance between two points is about their RMSD (all atoms, after alignment), in Å (classical "
               f"scaling; the two axes keep {kept:.0%} of the spread). Colour: parent family. Marker: ● trained on "
               f"({counts['train']}), ✕ held out as unseen conformers ({counts['test_conformers']}: whole families), "
               f"◆ validation ({counts['val']}), ○ not used ({counts['unused']})"
               f"{', ■ the whole molecule is held out' if counts['test_molecules'] else ''}.")

# ---------------------------------------------------------------------------------------------- the clicked one
gid_shown: int | None = None
with right:
    st.markdown("**Selected conformer**")
    if not picked:
        st.caption("Click a point on a map (a molecule's point shows its first conformer).")
    else:
        gid = picked[0]
        if len(picked) > 1:
            shown_ids = picked[:500]
            gid = st.selectbox(f"{len(picked)} points selected; show", shown_ids, key="emb_pick",
                               format_func=lambda g: f"{ds[ds.locate(g)[0]].name or ds[ds.locate(g)[0]].smiles}, "
                                                     f"conformer {ds.locate(g)[1]}")
        gid_shown = int(gid)
        pick_id, j = ds.locate(gid)
        pmol = ds[pick_id]
        st.image(molview.depiction_svg(pmol.smiles, 320, 200), width=320)
        st.markdown(f"**{pmol.name or pmol.smiles}**  \n`{pmol.smiles}`  \n{pmol.n_atoms} atoms, "
                    f"{pmol.n_conformers} conformers")
        rel = mev(pmol.energy[j] - pmol.energy.min())
        st.metric("Conformer", f"{j} (global id {gid})")
        st.metric("Energy above the molecule's lowest", f"{rel:.0f} meV")
        st.caption(f"family {int(pmol.parent[j])}, made by {pmol.method[j]}, {pmol.temperature[j]:.0f} K")

if gid_shown is not None:
    pick_id, j = ds.locate(gid_shown)
    pmol = ds[pick_id]
    rel_p = mev(pmol.energy - pmol.energy.min())
    captions = [f"{pmol.name or pmol.smiles}, conformer {k} (family {int(pmol.parent[k])}): {rel_p[k]:.0f} meV "
                f"above the lowest" for k in range(pmol.n_conformers)]
    st.iframe(molview.view_html(pmol.atomic_numbers, pmol.positions, forces=pmol.forces, captions=captions,
                                start=j, height=420), height=480)
