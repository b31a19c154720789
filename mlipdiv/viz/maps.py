"""What colours and labels the points of the maps: split membership, molecule, energy, a run's error; and the
per-molecule conformer map (its figure and which conformers the chosen trade-off trains on or holds out).

Arrays are indexed like the map's points: per molecule (dataset order) for the structure map, per global conformer
id (:meth:`mlipdiv.io.dataset.Dataset.conformer_offsets`) for the conformer map, per conformer index for one
molecule's map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlipdiv.names import SPLITS, SplitName
from mlipdiv.units import mev

__all__ = [
    "MAX_MAP_POINTS",
    "ROLE_SYMBOLS",
    "clickable",
    "molecule_conformer_figure",
    "molecule_conformer_roles",
    "SPLIT_KEYS",
    "conformer_energies",
    "conformer_split_labels",
    "display_subset",
    "hover_texts",
    "molecule_split_labels",
    "per_molecule_mean",
    "prediction_errors",
]

SPLIT_KEYS = SPLITS


def _pairs(split: Any, key: str) -> list[tuple[str, int]]:
    value = split.get(key, []) if isinstance(split, Mapping) else getattr(split, key, [])
    return [(str(m), int(c)) for m, c in value]


def conformer_split_labels(dataset: Any, split: Any) -> np.ndarray:
    """Per global conformer id: ``train``, ``val``, ``test_conformers``, ``test_molecules`` or ``unused``.

    Args:
        dataset: the dataset the split was made on.
        split: a :class:`mlipdiv.selection.Split` or its dict (pairs of ``(molecule_id, conformer_index)``).
    """
    offsets = dataset.conformer_offsets()
    labels = np.full(int(offsets[-1]), "unused", dtype=object)
    for key in SPLIT_KEYS:
        for mol_id, conf in _pairs(split, key):
            if mol_id in dataset:
                labels[offsets[dataset.index_of(mol_id)] + conf] = key
    return labels


def molecule_split_labels(dataset: Any, split: Any) -> np.ndarray:
    """Per molecule: ``train`` (some conformers trained on), ``test_molecules`` (held out) or ``unused``."""
    labels = np.full(len(dataset), "unused", dtype=object)
    for key in (SplitName.TEST_MOLECULES, SplitName.TRAIN):
        for mol_id, _ in _pairs(split, key):
            if mol_id in dataset:
                labels[dataset.index_of(mol_id)] = key
    return labels


def hover_texts(dataset: Any, kind: str) -> tuple[str, ...]:
    """Hover text per point: the molecule's name and SMILES (structures) or its name, else SMILES, with the
    conformer index and its energy above the molecule's lowest in meV (conformers). Built once per dataset object
    (100,000 strings take a tenth of a second, and every map redraw needs them)."""
    return dataset.memo(("hover", kind), lambda: tuple(_hover_texts(dataset, kind)))


def _hover_texts(dataset: Any, kind: str) -> list[str]:
    out: list[str] = []
    for m in dataset:
        if kind == "structures":
            title = f"<b>{m.name}</b> {m.smiles}" if m.name else f"<b>{m.smiles}</b>"
            out.append(f"{title}<br>{m.n_atoms} atoms, {m.n_conformers} conformers")
        else:  # many points: keep the text short (it travels to the browser with every redraw)
            rel = mev(m.energy - m.energy.min())
            title = f"<b>{m.name or m.smiles}</b>"
            out += [f"{title}<br>conformer {j}: {rel[j]:.0f} meV above lowest" for j in range(m.n_conformers)]
    return out


def conformer_energies(dataset: Any, per_atom: bool = False) -> np.ndarray:
    """Per global conformer id: energy above its molecule's lowest conformer (eV, or eV/atom)."""
    parts = []
    for m in dataset:
        rel = m.energy - m.energy.min() if m.n_conformers else m.energy
        parts.append(rel / m.n_atoms if per_atom else rel)
    return np.concatenate(parts) if parts else np.zeros(0)


def prediction_errors(dataset: Any, predictions: Mapping[str, np.ndarray], key: str = "forces_mae") -> np.ndarray:
    """Per global conformer id: a run's per-conformer error from its ``predictions.npz`` (NaN where the run has no
    prediction, e.g. training conformers).

    Args:
        dataset: the dataset the run was trained on.
        predictions: arrays ``mol_id``, ``conf_idx`` and ``key`` (``forces_mae`` in eV/angstrom, or
            ``energy_abs_error`` computed by the caller).
        key: which per-conformer value to place.
    """
    offsets = dataset.conformer_offsets()
    out = np.full(int(offsets[-1]), np.nan)
    values = np.asarray(predictions[key], dtype=np.float64)
    for mol_id, conf, value in zip(predictions["mol_id"], predictions["conf_idx"], values):
        mol_id = str(mol_id)
        if mol_id in dataset:
            out[offsets[dataset.index_of(mol_id)] + int(conf)] = value
    return out


def per_molecule_mean(values: np.ndarray, molecule_index: np.ndarray, n_molecules: int) -> np.ndarray:
    """Per molecule: the mean of ``values`` (one per conformer, NaN = not evaluated) over its evaluated conformers;
    NaN for a molecule with none, so the structure map greys it out instead of calling it perfect.

    Args:
        values: per conformer, e.g. :func:`prediction_errors`.
        molecule_index: per conformer, the index of its molecule (0 .. n_molecules - 1).
        n_molecules: number of molecules (length of the result).
    """
    values = np.asarray(values, dtype=np.float64)
    molecule_index = np.asarray(molecule_index)
    out = np.full(n_molecules, np.nan)
    for i in np.unique(molecule_index[np.isfinite(values)]):
        out[i] = np.nanmean(values[molecule_index == i])
    return out


MAX_MAP_POINTS = 20_000  # points drawn per map at most: beyond this the browser and the websocket slow down


def display_subset(n: int, priority: np.ndarray | None = None, cap: int = MAX_MAP_POINTS, seed: int = 0) -> np.ndarray:
    """Indices of the points to draw when a map has more than ``cap`` points (the map itself is computed on all).

    Points flagged in ``priority`` (e.g. the conformers of the chosen split, or those a run was evaluated on) are
    kept first; the remaining places go to a fixed-seed random sample of the others, so every region of the map
    stays represented in proportion. Sorted; all indices when ``n <= cap``.
    """
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    flagged = np.flatnonzero(priority) if priority is not None else np.zeros(0, dtype=np.int64)
    if len(flagged) >= cap:
        return np.sort(rng.choice(flagged, cap, replace=False))
    others = np.setdiff1d(np.arange(n), flagged)
    fill = rng.choice(others, cap - len(flagged), replace=False)
    return np.sort(np.concatenate([flagged, fill]))


# ------------------------------------------------------------------------------------------------ one molecule

# marker per role of a conformer in the chosen trade-off (colour is the parent family)
ROLE_SYMBOLS = {
    SplitName.TRAIN: "circle",
    SplitName.VAL: "diamond",
    SplitName.TEST_CONFORMERS: "x",
    SplitName.TEST_MOLECULES: "square",
    "unused": "circle-open",
}
_ROLE_TEXT = {
    SplitName.TRAIN: "trained on",
    SplitName.VAL: "validation",
    SplitName.TEST_CONFORMERS: "held out (unseen conformer)",
    SplitName.TEST_MOLECULES: "held out (whole molecule unseen)",
    "unused": "not used",
}


def molecule_conformer_roles(dataset: Any, spec: Any, split: Any, mol_id: str) -> np.ndarray:
    """Per conformer of one molecule, its role in a trade-off point: ``train``, ``val``, ``test_conformers`` (held
    out: whole parent families unless the molecule has one family), ``test_molecules`` (the molecule is held out)
    or ``unused``.

    Held-out conformers come from :func:`mlipdiv.selection.reserve` (all of them; the split file lists at most 8 per
    molecule), training conformers from the split itself.

    Args:
        dataset: the dataset.
        spec: the trade-off's :class:`mlipdiv.selection.SplitSpec`.
        split: the split it gives (a :class:`mlipdiv.selection.Split` or its dict).
        mol_id: the molecule.
    """
    from mlipdiv.selection import reserve

    n = dataset[mol_id].n_conformers
    roles = np.full(n, "unused", dtype=object)
    res = reserve(dataset, spec)
    if mol_id in set(res.test_molecules):
        roles[:] = SplitName.TEST_MOLECULES
        return roles
    roles[res.test.get(mol_id, [])] = SplitName.TEST_CONFORMERS
    roles[res.val.get(mol_id, [])] = SplitName.VAL
    for m, c in _pairs(split, SplitName.TRAIN):
        if m == mol_id:
            roles[c] = SplitName.TRAIN
    return roles


def clickable(fig: Any) -> Any:
    """Let a single click select a point: Streamlit turns clicks into events only (no selection) while the drag
    mode is box or lasso select, so the map drags to zoom and box/lasso selection sit in the chart's toolbar."""
    fig.update_layout(dragmode="zoom", clickmode="event+select")
    return fig


def molecule_conformer_figure(
    coords: np.ndarray,
    parent: np.ndarray,
    global_ids: np.ndarray,
    hover: list[str],
    roles: np.ndarray | None = None,
    title: str = "",
    height: int = 560,
) -> Any:
    """One molecule's conformer map: one trace (colour) per parent family, the marker says the conformer's role.

    Args:
        coords: (n, 2) angstrom (:func:`mlipdiv.embeddings.molecule_conformer_map`).
        parent: (n,) parent family of each conformer.
        global_ids: (n,) global conformer ids (``customdata``, for selections).
        hover: (n,) hover text.
        roles: (n,) role per conformer (:func:`molecule_conformer_roles`); ``None`` draws plain circles.
        title: figure title.
        height: pixels.
    """
    import plotly.graph_objects as go

    from mlipdiv.style import PALETTE, apply_style

    xy = np.asarray(coords, dtype=np.float64)
    parent = np.asarray(parent)
    ids = np.asarray(global_ids, dtype=np.int64)
    text = np.asarray(hover, dtype=object)
    role = np.asarray(roles if roles is not None else np.full(len(ids), SplitName.TRAIN), dtype=object)
    fig = go.Figure()
    for k, fam in enumerate(np.unique(parent)):
        mask = parent == fam
        colour = PALETTE[k % len(PALETTE)]
        hover_text = [f"{t}<br>family {int(fam)}, {_ROLE_TEXT.get(str(r), str(r))}"
                      for t, r in zip(text[mask], role[mask])]
        symbols = [ROLE_SYMBOLS.get(str(r), "circle") for r in role[mask]]
        fig.add_trace(go.Scatter(
            x=xy[mask, 0], y=xy[mask, 1], customdata=ids[mask][:, None], mode="markers", text=hover_text,
            hovertemplate="%{text}<extra></extra>", name=f"family {int(fam)} ({int(mask.sum())})",
            marker={"color": colour, "size": 11, "symbol": symbols, "line": {"width": 2, "color": colour}},
        ))
    if roles is not None:  # legend entries for the markers (no points)
        for r in [r for r in ROLE_SYMBOLS if r in set(map(str, role))]:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_ROLE_TEXT[r], hoverinfo="skip",
                                     marker={"color": "#444", "size": 11, "symbol": ROLE_SYMBOLS[r],
                                             "line": {"width": 2, "color": "#444"}}))
    fig.update_xaxes(title_text="MDS 1 (Å)", zeroline=False)
    fig.update_yaxes(title_text="MDS 2 (Å)", zeroline=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(title=title, showlegend=True)
    apply_style(fig, height=height, legend_top=False)
    # legend under the plot: beside it, it would take half of a half-page-wide figure
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0},
                      margin={"t": 60, "b": 130})
    return clickable(fig)
