"""Trade-off: pick a point between many molecules and many conformers, preview its training set, train it."""

from __future__ import annotations

import streamlit as st

from mlipdiv.embeddings import background_status
from mlipdiv.errors import InfeasibleRequest
from mlipdiv.names import Experiment
from mlipdiv.selection import STRATEGIES, SplitSpec, experiment_grid, reserve
from mlipdiv.style import SPLIT_COLORS, SPLIT_LABELS, SPLIT_ORDER, mev
from mlipdiv.viz import figures, maps
from pages import common

MAX_GRID = 64  # slider positions at most
PREVIEW_POINTS = 5_000  # points per preview map (the split's own are always drawn): each slider step resends them

st.title("Trade-off")
ds = common.require_dataset()
common.sidebar(ds)
PATH = str(common.dataset_path().resolve())
VERSION = common.version(PATH)


# Everything below is cached per dataset file version and choice, so a slider step recomputes only what changed.
@st.cache_data(show_spinner=False, max_entries=16)
def _limits(path: str, version: tuple, strategy: str) -> tuple[int, int, int, int, int]:
    res = reserve(common.load(path), SplitSpec(strategy=strategy, seed=0))
    return (*res.max_budget(), len(res.trainable), len(res.test_molecules))


def limits(strategy: str) -> tuple[int, int, int, int, int]:
    """(largest budget, its M, its C, trainable molecules, held-out molecules) of the dataset."""
    return _limits(PATH, VERSION, strategy)


@st.cache_data(show_spinner=False, max_entries=64)
def _grid(path: str, version: tuple, experiment: str, strategy: str, budget: int | None,
          molecules: int | None) -> list[tuple[int, int]]:
    return [(int(m), int(c)) for m, c in experiment_grid(common.load(path), experiment, MAX_GRID, budget=budget,
                                                         molecules=molecules, spec=SplitSpec(strategy=strategy,
                                                                                             seed=0))]


def trade_off_grid(experiment: str, strategy: str, budget: int | None, molecules: int | None) -> list:
    return _grid(PATH, VERSION, experiment, strategy, budget, molecules)


@st.cache_data(show_spinner=False, max_entries=4)
def _hover(path: str, version: tuple, kind: str) -> list[str]:
    return list(maps.hover_texts(common.load(path), kind))


@st.cache_resource(show_spinner=False, max_entries=32)
def preview_map(path: str, version: tuple, spec: dict, kind: str) -> object:
    """The split's position on one UMAP map, drawn once per (dataset, split) for every session (a resource: no
    copy of 5,000 points is unpickled on each slider step; nothing mutates it)."""
    data = common.load(path)
    split = common.split_preview(SplitSpec.from_dict(spec))
    labels = (maps.molecule_split_labels(data, split) if kind == "structures"
              else maps.conformer_split_labels(data, split))
    emb = common.embedding(kind)
    return figures.umap_scatter(emb["coords"], emb["global_ids"], _hover(path, version, kind), labels,
                                title=f"{'UMAP' if emb['method'] == 'umap' else 'PCA'} of {kind}",
                                priority=labels != "unused", category_colors=SPLIT_COLORS,
                                category_labels=SPLIT_LABELS,
                                category_order=["unused", *[x for x in SPLIT_ORDER if x != "unused"]],
                                color_title="split", height=460, method=emb["method"],
                                max_points=PREVIEW_POINTS)
st.markdown("Choose how a training set spends its conformers: **many molecules with few conformers each** "
            "(structural diversity) or **few molecules with many conformers each** (conformational diversity). "
            "The held-out sets are the same for every point, so points are compared on the same test data.")

# ---------------------------------------------------------------------------------------------- the experiment
left, right = st.columns([3, 2])
with left:
    common.default("p_to_experiment", Experiment.FIXED_BUDGET.value)
    common.default("p_to_strategy", "random")
    experiment = st.radio("Experiment", [e.value for e in Experiment], horizontal=True, key="p_to_experiment",
                          format_func={Experiment.FIXED_BUDGET: "Fixed budget (M × C = B)",
                                       Experiment.FIXED_MOLECULES: "Fixed molecular set (M fixed, C varies)"}.get)
    strategy = st.selectbox("Selection strategy", sorted(STRATEGIES), key="p_to_strategy",
                            format_func=lambda s: f"{s}: {STRATEGIES[s].description}")
    base_spec = SplitSpec(strategy=strategy, seed=0)
    best_b, best_m, best_c, n_trainable, n_held_out = limits(strategy)
    if experiment == Experiment.FIXED_BUDGET:
        common.default("p_to_budget", common.default_budget(ds, base_spec))
        budget = int(st.number_input(
            "Budget B (training conformers)", min_value=1, max_value=max(best_b, 1),
            key="p_to_budget", help=f"this dataset allows at most {best_b} ({best_m} molecules × {best_c})"))
        molecules = None
    else:
        common.default("p_to_molecules", min(32, n_trainable))
        molecules = int(st.number_input(
            "Molecules M", min_value=1, max_value=max(n_trainable, 1),
            key="p_to_molecules", help=f"{n_trainable} molecules can be trained on; "
                                     f"{n_held_out} are held out as unseen molecules"))
        budget = None
    try:
        grid = trade_off_grid(experiment, strategy, budget, molecules)
    except InfeasibleRequest as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    if len(grid) > 1:
        fixed_budget = experiment == Experiment.FIXED_BUDGET
        ends = ("many molecules, few conformers", "few molecules, many conformers") if fixed_budget \
            else ("few conformers per molecule", "many conformers per molecule")
        st.caption(f"← {ends[0]}  ·  {ends[1]} →")
        key = f"p_to_point_{experiment}"  # an index into the grid (a tuple value would read as a range)
        if st.session_state.get(key) not in range(len(grid)):
            st.session_state[key] = len(grid) // 2
        index = st.select_slider("Trade-off", options=range(len(grid)), key=key,
                                 format_func=lambda i: f"M={grid[i][0]} × C={grid[i][1]}",
                                 label_visibility="collapsed")
        point = grid[index]
    else:
        point = grid[0]
        st.info(f"Only one feasible point here: M={point[0]} × C={point[1]}.")
    m, c = int(point[0]), int(point[1])
    k = st.columns(3)
    k[0].metric("Molecules M", m)
    k[1].metric("Conformers per molecule C", c)
    k[2].metric("Training conformers", m * c)
with right:
    st.plotly_chart(figures.tradeoff_grid_figure(grid, (m, c), budget), width="stretch", key="to_grid")

# ---------------------------------------------------------------------------------------------- training settings
st.subheader("Training")
k = st.columns(6)
models = common.model_names()
for key, value in (("p_to_model", models[0]), ("p_to_epochs", 30), ("p_to_seeds", 1), ("p_to_hidden", 64),
                   ("p_to_patience", 20), ("p_to_batch", 16)):
    common.default(key, value)
model = k[0].selectbox("Model", models, key="p_to_model")
epochs = int(k[1].number_input("Epochs", 1, 1000, key="p_to_epochs"))
seeds = int(k[2].number_input("Seeds", 1, 10, key="p_to_seeds", help="one run per seed: split, weights, batches"))
hidden = int(k[3].select_slider("Features", [16, 32, 64, 128, 256], key="p_to_hidden",
                                help="width of the network (hidden features)"))
patience = int(k[4].number_input("Patience", 1, 1000, key="p_to_patience",
                                 help="stop early after this many epochs without a better validation loss"))
batch = int(k[5].number_input("Batch size", 1, 256, key="p_to_batch",
                              help="conformers per training step: smaller batches take more steps per epoch, so a "
                                   "short demo run draws a longer curve"))
st.caption(f"Training runs on **{common.device_description()}**, one run at a time per device; runs continue when "
           "the browser is closed.")

# ---------------------------------------------------------------------------------------------- preview
st.subheader("Preview of the training set (seed 0)")
spec = SplitSpec(molecules=m, conformers_per_molecule=c, strategy=strategy, seed=0)
common.remember_tradeoff(spec)
with common.user_errors("This point cannot be selected: "):
    split = common.split_preview(spec)
    counts, div = split["counts"], split["diversity"]
    k = st.columns(4)
    k[0].metric("Training set (conformers)", f"{counts['train']:,}", f"{counts['train_molecules']} molecules",
                delta_color="off", delta_arrow="off")
    k[1].metric("Validation (conformers)", f"{counts['val']:,}")
    k[2].metric("Unseen conformers (test)", f"{counts['test_conformers']:,}")
    k[3].metric("Unseen molecules (test conformers)", f"{counts['test_molecules']:,}",
                f"{counts['test_molecule_count']} molecules", delta_color="off", delta_arrow="off")
    s, cf = div.get("structural", {}), div.get("conformational", {})
    k = st.columns(6)
    k[0].metric("Scaffolds", s.get("n_scaffolds", "—"))
    k[1].metric("Tanimoto Vendi", common.fmt(s.get("tanimoto_vendi")), help="effective number of distinct molecules")
    k[2].metric("Mean Tanimoto distance", common.fmt(s.get("mean_tanimoto_distance"), 2))
    k[3].metric("Conformer Vendi", common.fmt(cf.get("mean_vendi"), 2),
                help="effective number of distinct conformers per molecule (mean)")
    k[4].metric("RMSD spread", common.fmt(cf.get("mean_rmsd_spread"), 2, "Å"))
    k[5].metric("Energy range", common.fmt(mev(cf.get("mean_energy_range")), 0, "meV"),
                help="per molecule, mean over the training molecules")

    if common.embedding_ready("structures") and common.embedding_ready("conformers"):
        cols = st.columns(2)
        for col, kind in zip(cols, ("structures", "conformers")):
            col.plotly_chart(preview_map(PATH, VERSION, spec.to_dict(), kind), width="stretch", key=f"to_map_{kind}")
        common.hover_depictions(ds)
    else:
        building = (background_status(common.dataset_path()) or {}).get("status") == "running"
        st.info("The UMAP maps of this dataset are being computed in the background (once; minutes for a large "
                "dataset): reload this page in a while to see where the training set sits." if building else
                "The UMAP maps of this dataset are not computed yet: open **Embeddings** to compute them (once); "
                "they then appear here too.", icon=":material/hourglass_top:")

# ---------------------------------------------------------------------------------------------- start
st.subheader("Train")
cols = st.columns([1, 1, 2])
start = cols[0].button("Start training", type="primary", key="to_start",
                       help=f"{seeds} run(s) of {model} on M={m} × C={c}; returns at once")
whole = cols[1].button("Queue the whole experiment", key="to_whole",
                       help=f"every point of the slider ({len(grid)}) × {seeds} seed(s)")
options = {"strategy": strategy, "hidden": hidden, "patience": patience, "batch_size": batch}
if start:
    with common.user_errors("Cannot start training: "):
        ids, reused = common.submit_point(m, c, model, epochs, seeds, options)
        st.session_state["to_submitted"] = (ids, reused)
if whole:
    with common.user_errors("Cannot queue the experiment: "):
        ids, reused = common.submit_experiment(experiment, len(grid), budget, molecules, model, epochs, seeds,
                                               options)
        st.session_state["to_submitted"] = (ids, reused)
if "to_submitted" in st.session_state:
    ids, reused = st.session_state["to_submitted"]
    st.success(f"{len(ids) - reused} run(s) queued" + (f", {reused} already stored (same settings)" if reused else "")
               + f": {', '.join(ids[:8])}{' …' if len(ids) > 8 else ''}", icon=":material/check_circle:")
    st.page_link("pages/runs.py", label="Watch them on Runs", icon=":material/monitoring:")
