"""Plotly figure builders. Inputs are in library units (eV, eV/angstrom); axes are in meV and meV/angstrom.

Every builder returns a :class:`plotly.graph_objects.Figure` and does no I/O, so it is equally at home in a page, in
a test and in an exported report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlipdiv.style import PALETTE, SPLIT_COLORS, SPLIT_LABELS, SPLIT_ORDER, apply_style, mev, plotly_template

plotly_template()  # new figures start with mlipdiv's look (see mlipdiv.style.plotly_template)

__all__ = [
    "MAX_SCATTER_POINTS",
    "curve_x",
    "curves_overlay_figure",
    "empty_figure",
    "error_distribution_figure",
    "energy_histogram",
    "learning_curve_figure",
    "mark_extrapolated",
    "parity_figure",
    "robust_range",
    "tradeoff_grid_figure",
    "umap_scatter",
]

MAX_SCATTER_POINTS = 20_000  # parity plots subsample above this (deterministically) to stay responsive


def empty_figure(message: str, height: int = 360) -> go.Figure:
    """A blank figure that says why there is nothing to plot (instead of an empty axis)."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return apply_style(fig, height=height, legend_top=False)


# ----------------------------------------------------------------------------------------------- learning curves


def curve_x(curve: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """Which key a learning curve is drawn against: ``step`` (training batches) when every point carries one
    (curves logged several times per epoch), else ``epoch`` (older curves, one point per epoch)."""
    if curve and all(r.get("step") is not None for r in curve):
        return "step", "training step (batches)"
    return "epoch", "epoch"


def _series(curve: Sequence[Mapping[str, Any]], xkey: str, key: str) -> tuple[list[float], list[float]]:
    pairs = [(r[xkey], r[key]) for r in curve if r.get(key) is not None and r.get(xkey) is not None]
    return [p[0] for p in pairs], [float(p[1]) for p in pairs]


def learning_curve_figure(curve: Sequence[Mapping[str, Any]], title: str = "") -> go.Figure:
    """Training loss and validation errors against training step (or epoch, for curves without steps).

    Args:
        curve: points with ``epoch`` (and ``step`` when logged within epochs), ``train_loss`` and
            ``val_energy_mae`` (eV per molecule), ``val_forces_mae`` (eV/angstrom); missing keys or ``None``
            values are skipped.
        title: figure title (e.g. the run id).

    Returns:
        Two panels: the loss (log axis, dimensionless) and validation MAE (forces in meV/angstrom on the left axis,
        energy in meV per molecule on the right axis).
    """
    if not curve:
        return empty_figure("No point logged yet: the curve appears after the first few training steps.")
    fig = make_subplots(
        rows=1,
        cols=2,
        specs=[[{}, {"secondary_y": True}]],
        subplot_titles=("Training loss", "Validation error"),
        horizontal_spacing=0.14,
    )
    xkey, xtitle = curve_x(curve)
    x, y = _series(curve, xkey, "train_loss")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="training loss", line={"color": PALETTE[0]}), 1, 1)
    x, y = _series(curve, xkey, "val_forces_mae")
    fig.add_trace(
        go.Scatter(x=x, y=mev(np.asarray(y)), mode="lines+markers", name="val. force MAE (meV/Å)",
                   line={"color": PALETTE[1]}),
        1, 2, secondary_y=False,
    )
    x, y = _series(curve, xkey, "val_energy_mae")
    fig.add_trace(
        go.Scatter(x=x, y=mev(np.asarray(y)), mode="lines+markers", name="val. energy MAE (meV per molecule)",
                   line={"color": PALETTE[2], "dash": "dash"}),
        1, 2, secondary_y=True,
    )
    last = max((r.get(xkey) or 0) for r in curve)
    fig.update_xaxes(title_text=xtitle, rangemode="nonnegative")
    if xkey == "epoch":
        fig.update_xaxes(tick0=1, dtick=1 if last <= 8 else None)
    fig.update_yaxes(title_text="loss (weighted, log)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="force MAE (meV/Å)", row=1, col=2, secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="energy MAE (meV/molecule)", row=1, col=2, secondary_y=True, rangemode="tozero",
                     showgrid=False)
    if title:
        fig.update_layout(title=title)
    apply_style(fig, height=470, legend_top=False)
    # legend under the plots: above them it would cover the panel titles
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
                      margin={"b": 110})
    return fig


def curves_overlay_figure(curves: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "val_forces_mae",
                          title: str = "") -> go.Figure:
    """One validation metric of several runs on one log axis, to compare how they learn.

    Args:
        curves: run label -> its learning curve (as :func:`learning_curve_figure` takes it).
        key: ``val_forces_mae`` (meV/Å), ``val_energy_mae`` (meV per molecule) or ``train_loss``.
    """
    label = {"val_forces_mae": "validation force MAE (meV/Å)",
             "val_energy_mae": "validation energy MAE (meV/molecule)", "train_loss": "training loss"}.get(key, key)
    curves = {name: c for name, c in curves.items() if c}
    if not curves:
        return empty_figure("Choose runs with at least one logged point.")
    # one x for all: steps only when every curve has them (a step of one run is not an epoch of another)
    xkey, xtitle = ("step", "training step (batches)") if all(curve_x(c)[0] == "step" for c in curves.values()) \
        else ("epoch", "epoch")
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        x, y = _series(curve, xkey, key)
        values = np.asarray(y) if key == "train_loss" else mev(np.asarray(y))
        fig.add_trace(go.Scatter(x=x, y=values, mode="lines+markers", name=name,
                                 line={"color": PALETTE[i % len(PALETTE)]}, marker={"size": 5}))
    fig.update_xaxes(title_text=xtitle, rangemode="nonnegative")
    fig.update_yaxes(title_text=f"{label}, log", type="log")
    fig.update_layout(title=title or f"{len(curves)} runs: {label}")
    apply_style(fig, height=470, legend_top=False)
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
                      margin={"b": 110})
    return fig


# ----------------------------------------------------------------------------------------------------- parity


def robust_range(values: np.ndarray, quantile: float = 0.005, spread: float = 4.0) -> tuple[float, float]:
    """An axis range that shows the bulk of ``values`` and not a few wild ones: the central quantiles, widened by
    ``spread`` times their span on each side, never wider than the data. Returns ``(lo, hi)``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo_q, hi_q = np.quantile(v, [quantile, 1 - quantile])
    span = hi_q - lo_q
    lo, hi = max(float(v.min()), lo_q - spread * span), min(float(v.max()), hi_q + spread * span)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def parity_figure(
    reference: np.ndarray,
    predicted: np.ndarray,
    quantity: str = "forces",
    split: str | None = None,
    groups: np.ndarray | None = None,
    max_points: int = MAX_SCATTER_POINTS,
    n_atoms: np.ndarray | None = None,
) -> go.Figure:
    """Predicted against reference values with the identity line and the MAE.

    Args:
        reference, predicted: same shape; eV (energies) or eV/angstrom (forces, any shape: components are
            flattened).
        quantity: ``"energy"`` or ``"forces"`` (sets units and labels).
        split: split name for the title (``test_conformers``...).
        groups: for energies, the molecule index of each conformer. Each molecule's mean *reference* energy is
            subtracted from both arrays, so the axes show conformational energies in meV while a constant offset
            of the model for one molecule still shows as distance from the diagonal.
        max_points: points drawn at most (a fixed-seed subsample above it; the MAE uses all values).
        n_atoms: for energies, the atom count of each conformer: the title gives the MAE per atom beside the MAE
            per molecule.

    A few far-off predictions (an untrained model on unseen molecules) would stretch the axes so far that every
    other point sits on one spot: the axes show the bulk (:func:`robust_range`) and the title says how many points
    lie beyond them.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    pred = np.asarray(predicted, dtype=np.float64).ravel()
    if ref.shape != pred.shape:
        raise ValueError(f"reference has {ref.size} values, predictions {pred.size}")
    if ref.size == 0:
        return empty_figure("No predictions stored for this split.")
    energy = quantity == "energy"
    per_atom = None
    if energy and n_atoms is not None and np.size(n_atoms) == ref.size:
        per_atom = float(np.mean(mev(np.abs(pred - ref) / np.maximum(np.asarray(n_atoms, float).ravel(), 1))))
    if energy and groups is not None:
        g = np.asarray(groups).ravel()
        _, inverse = np.unique(g, return_inverse=True)
        means = np.bincount(inverse, weights=ref) / np.bincount(inverse)
        ref, pred = ref - means[inverse], pred - means[inverse]
    ref, pred = mev(ref), mev(pred)
    mae = float(np.mean(np.abs(pred - ref)))
    unit = "meV/molecule" if energy else "meV/Å"
    if ref.size > max_points:
        keep = np.sort(np.random.default_rng(0).choice(ref.size, max_points, replace=False))
        ref_shown, pred_shown = ref[keep], pred[keep]
    else:
        ref_shown, pred_shown = ref, pred
    lo, hi = robust_range(np.concatenate([ref, pred]))
    beyond = int(np.count_nonzero((ref < lo) | (ref > hi) | (pred < lo) | (pred > hi)))
    pad = 0.05 * (hi - lo or 1.0)
    color = SPLIT_COLORS.get(split or "", PALETTE[0])
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(x=ref_shown, y=pred_shown, mode="markers", name=SPLIT_LABELS.get(split or "", split or "data"),
                     marker={"size": 5 if energy else 3, "opacity": 0.6, "color": color})
    )
    fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="ideal",
                             line={"color": "#444", "dash": "dot"}, hoverinfo="skip"))
    what = "E − molecule mean" if energy and groups is not None else ("energy" if energy else "force component")
    fig.update_xaxes(title_text=f"reference {what} ({unit})", range=[lo - pad, hi + pad])
    fig.update_yaxes(title_text=f"predicted ({unit})", range=[lo - pad, hi + pad], scaleanchor="x", scaleratio=1)
    name = SPLIT_LABELS.get(split or "", split or "")
    title = f"{'Energy' if energy else 'Forces'}{': ' + name if name else ''}, MAE {mae:.1f} {unit}"
    if per_atom is not None:
        title += f" ({per_atom:.1f} meV/atom)"
    if beyond:
        far = float(np.max(np.abs(np.concatenate([ref, pred]))))
        title += f"<br><sup>{beyond:,} of {ref.size:,} points beyond the axes (up to ±{far:,.0f} {unit})</sup>"
    fig.update_layout(title=title, showlegend=False)
    return apply_style(fig, height=460, legend_top=False)


# ------------------------------------------------------------------------------------------- trade-off grid


def tradeoff_grid_figure(grid: Sequence[tuple[int, int]], chosen: tuple[int, int] | None = None,
                         budget: int | None = None) -> go.Figure:
    """The (M, C) points of an experiment on log axes, the chosen one highlighted."""
    if not grid:
        return empty_figure("No feasible (M, C) points.")
    m = [int(p[0]) for p in grid]
    c = [int(p[1]) for p in grid]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=m, y=c, mode="lines+markers", name="experiment grid",
                             marker={"size": 11, "color": PALETTE[5]}, line={"color": PALETTE[5]},
                             hovertemplate="M = %{x}, C = %{y}<extra></extra>"))
    if chosen is not None:
        fig.add_trace(go.Scatter(x=[chosen[0]], y=[chosen[1]], mode="markers+text", name="chosen",
                                 marker={"size": 20, "color": PALETTE[1], "symbol": "star"},
                                 text=[f"{chosen[0]} × {chosen[1]}"], textposition="top right",
                                 hovertemplate="M = %{x}, C = %{y}<extra>chosen</extra>"))
    # log axes, ticked at the grid's own values (no 1.5, 2.5, ... on a short range)
    fig.update_xaxes(type="log", title_text="molecules M", tickvals=sorted(set(m)))
    fig.update_yaxes(type="log", title_text="conformers per molecule C", tickvals=sorted(set(c)))
    title = f"The trade-off: M × C = {budget:,}" if budget else "The trade-off"
    fig.update_layout(title=title, showlegend=False)
    return apply_style(fig, height=360, legend_top=False)


# ------------------------------------------------------------------------------------------------- UMAP maps


def umap_scatter(
    coords: np.ndarray,
    global_ids: np.ndarray,
    hover: Sequence[str],
    color: np.ndarray | Sequence[Any] | None = None,
    categorical: bool = True,
    color_title: str = "",
    title: str = "",
    category_colors: Mapping[str, str] | None = None,
    category_labels: Mapping[str, str] | None = None,
    category_order: Sequence[str] | None = None,
    height: int = 560,
    colorscale: str = "Viridis",
    showscale: bool = True,
    priority: np.ndarray | None = None,
    max_points: int | None = None,
    method: str = "UMAP",
) -> go.Figure:
    """A 2D map; every point carries its global conformer id in ``customdata`` (for selections).

    Args:
        coords: (n, 2) map coordinates (dimensionless).
        global_ids: (n,) global conformer id of each point (for a structure map, the molecule's representative
            conformer); selections read it back with :func:`mlipdiv.viz.live.selected_global_ids`.
        hover: (n,) hover text (the molecule's name or SMILES, energy...).
        color: (n,) categories (``categorical``) or numbers (continuous; NaN points drawn grey underneath).
        categorical: one trace per category, in ``category_order``; else one trace with a colour bar.
        color_title: legend / colour-bar title with units.
        title: figure title.
        category_colors, category_labels: colour and legend text of each category.
        category_order: draw order (later categories on top).
        height: pixels.
        colorscale, showscale: continuous colouring (e.g. ``"Turbo"`` without a colour bar for molecule codes).
        priority: (n,) bool, points always drawn when the map is thinned (see ``max_points``).
        max_points: draw at most this many points (:func:`mlipdiv.viz.maps.display_subset`, default
            :data:`mlipdiv.viz.maps.MAX_MAP_POINTS`); the title then says how many are shown.
    """
    from mlipdiv.viz.maps import MAX_MAP_POINTS, display_subset

    xy = np.asarray(coords, dtype=np.float64)
    ids = np.asarray(global_ids, dtype=np.int64)
    text = np.asarray(list(hover), dtype=object)
    n = len(ids)
    if xy.shape != (n, 2) or len(text) != n:
        raise ValueError(f"coords {xy.shape}, ids {n} and hover {len(text)} disagree")
    keep = display_subset(n, priority, max_points or MAX_MAP_POINTS)
    if len(keep) < n:
        xy, ids, text = xy[keep], ids[keep], text[keep]
        color = None if color is None else np.asarray(color, dtype=object if categorical else np.float64)[keep]
        title = f"{title} ({len(keep):,} of {n:,} shown)" if title else title
        n = len(keep)
    elif title:
        title = f"{title} ({n:,} points)"
    fig = go.Figure()
    marker_size = 9 if n < 500 else (6 if n < 5000 else 4)
    hovertemplate = "%{text}<extra></extra>"
    if color is None:
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], customdata=ids[:, None], text=text, mode="markers",
                                   marker={"size": marker_size, "color": PALETTE[0]}, hovertemplate=hovertemplate,
                                   name="all"))
    elif categorical:
        cats = np.asarray([str(c) for c in color], dtype=object)
        order = list(category_order or [])
        order += sorted(set(cats) - set(order))
        for i, cat in enumerate(order):
            mask = cats == cat
            if not mask.any():
                continue
            col = (category_colors or {}).get(cat, PALETTE[i % len(PALETTE)])
            label = (category_labels or {}).get(cat, cat)
            fig.add_trace(go.Scattergl(
                x=xy[mask, 0], y=xy[mask, 1], customdata=ids[mask][:, None], text=text[mask], mode="markers",
                name=f"{label} ({int(mask.sum())})", marker={"size": marker_size, "color": col, "opacity": 0.85},
                hovertemplate=hovertemplate,
            ))
    else:
        values = np.asarray(color, dtype=np.float64)
        missing = ~np.isfinite(values)
        if missing.any():
            fig.add_trace(go.Scattergl(
                x=xy[missing, 0], y=xy[missing, 1], customdata=ids[missing][:, None], text=text[missing],
                mode="markers", name="no value", marker={"size": marker_size, "color": "#D0D0D0"},
                hovertemplate=hovertemplate,
            ))
        ok = ~missing
        fig.add_trace(go.Scattergl(
            x=xy[ok, 0], y=xy[ok, 1], customdata=ids[ok][:, None],
            text=[f"{t}<br>{color_title}: {v:.3g}" for t, v in zip(text[ok], values[ok])] if showscale else text[ok],
            mode="markers",
            name=color_title, hovertemplate=hovertemplate,
            marker={"size": marker_size, "color": values[ok], "colorscale": colorscale, "showscale": showscale,
                    "colorbar": {"title": {"text": color_title, "side": "right"}}},
        ))
    # ``method``: what made the map (a PCA fallback must not be labelled UMAP)
    axis = "PC" if method.lower().startswith("pca") else ("UMAP" if method.lower() == "umap" else method)
    fig.update_xaxes(title_text=f"{axis} 1 (no unit)", showticklabels=False, zeroline=False)
    fig.update_yaxes(title_text=f"{axis} 2 (no unit)", showticklabels=False, zeroline=False)
    # meta: the browser's hover sketches (mlipdiv.viz.sketch) attach to maps that carry it
    fig.update_layout(title=title, dragmode="select", clickmode="event+select",
                      showlegend=bool(categorical and color is not None), meta={"mlipdiv_depict": True})
    apply_style(fig, height=height, legend_top=False)
    # legend under the axis title: a top legend collides with the title when the map is half a page wide
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0},
                      margin={"t": 60, "b": 110})
    return fig


# ------------------------------------------------------------------------------------------------ histograms


def energy_histogram(
    relative_energies: np.ndarray,
    title: str = "",
    marker: float | None = None,
    per_atom: bool = False,
    nbins: int = 40,
) -> go.Figure:
    """Distribution of conformer energies relative to their molecule's lowest one.

    Args:
        relative_energies: eV (or eV/atom with ``per_atom``), already relative (E - E_min of the molecule).
        title: figure title.
        marker: an energy (same unit) to mark with a vertical line, e.g. the conformer in the 3D viewer.
        per_atom: label the axis per atom.
        nbins: number of bins.
    """
    values = mev(np.asarray(relative_energies, dtype=np.float64).ravel())
    if values.size == 0:
        return empty_figure("No conformers.")
    unit = "meV/atom" if per_atom else "meV"
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, marker={"color": PALETTE[0]}, name="conformers",
                                 hovertemplate=f"%{{x}} {unit}: %{{y}} conformers<extra></extra>"))
    if marker is not None:
        fig.add_vline(x=float(mev(marker)), line={"color": PALETTE[1], "width": 3})
        fig.add_annotation(x=float(mev(marker)), y=1.0, yref="paper", yanchor="bottom", text="shown in 3D",
                           showarrow=False, font={"color": PALETTE[1]})
    fig.update_xaxes(title_text=f"E − E<sub>min</sub> of its molecule ({unit})")
    fig.update_yaxes(title_text="conformers (count)")
    fig.update_layout(title=title, showlegend=False, bargap=0.05)
    return apply_style(fig, height=380, legend_top=False)


def error_distribution_figure(errors_by_split: Mapping[str, np.ndarray], unit: str = "meV/Å",
                              title: str = "Per-conformer force error") -> go.Figure:
    """Box plots of a per-conformer error for each split (input in eV/angstrom, shown in meV/angstrom)."""
    present = [s for s in SPLIT_ORDER if s in errors_by_split and len(errors_by_split[s])]
    present += [s for s in errors_by_split if s not in present and len(errors_by_split[s])]
    if not present:
        return empty_figure("No per-conformer errors stored.")
    fig = go.Figure()
    for split in present:
        values = mev(np.asarray(errors_by_split[split], dtype=np.float64))
        fig.add_trace(go.Box(y=values, name=SPLIT_LABELS.get(split, split), boxpoints="outliers",
                             marker={"color": SPLIT_COLORS.get(split, PALETTE[0])},
                             hovertemplate=f"%{{y:.1f}} {unit}<extra>%{{fullData.name}}</extra>"))
    fig.update_yaxes(title_text=f"force MAE per conformer ({unit})", rangemode="tozero")
    fig.update_xaxes(title_text="split")
    fig.update_layout(title=title, showlegend=False)
    return apply_style(fig, height=460, legend_top=False)


# ----------------------------------------------------------------------------------------------- budget


def mark_extrapolated(fig: go.Figure, table: Sequence[Mapping[str, float]]) -> go.Figure:
    """Shade the stretches of a budget's M × C = N line (x: molecules M) that lie beyond the fitted runs.

    ``table`` is a recommendation's candidate table (``n_molecules`` and ``extrapolation``, the factor by which a
    candidate lies outside the fitted region; 1 = inside). Returns ``fig``, changed in place.
    """
    if not table:
        return fig
    m = np.array([r["n_molecules"] for r in table], float)
    factor = np.array([r.get("extrapolation", 1.0) for r in table], float)
    order = np.argsort(m)
    m, outside = m[order], factor[order] > 1 + 1e-9
    start, shaded = None, False
    for i, out in enumerate([*outside, False]):
        if out and start is None:
            start = i
        elif not out and start is not None:
            lo, hi = m[start], m[i - 1]
            if hi <= lo:
                hi = lo * 1.05
            # shapes take data values on a log axis (annotations would not), so the band needs no conversion
            fig.add_vrect(x0=lo, x1=hi, fillcolor="#999999", opacity=0.25, line_width=0, layer="below")
            start, shaded = None, True
    if shaded:  # a legend entry says what the grey band means
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="grey: extrapolated (beyond the runs)",
                                 marker={"symbol": "square", "size": 14, "color": "rgba(153,153,153,0.5)"}))
    return fig
