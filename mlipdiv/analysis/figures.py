"""Plotly figures of the study and of the budget analysis (the app's Budget page and docs/RESULTS.md draw these).

Plain builders: data in, ``plotly.graph_objects.Figure`` out, no Streamlit. Errors arrive already in display units
(meV/Å, meV/atom) from :mod:`mlipdiv.analysis.fit`; the shared projector-friendly look comes from
:func:`mlipdiv.style.apply_style`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlipdiv.analysis.fit import METRICS, ErrorFit
from mlipdiv.analysis.known_datasets import KnownDataset, on_map
from mlipdiv.analysis.recommend import Recommendation
from mlipdiv.names import TEST_SPLITS, Experiment, SplitName
from mlipdiv.style import PALETTE, SPLIT_COLORS, SPLIT_LABELS, apply_style

__all__ = [
    "budget_map_figure",
    "domain_figure",
    "error_surface_figure",
    "infogap_figure",
    "study_figure",
    "tradeoff_figure",
]

_DASH = {"random": "solid", "diverse": "dash"}
_SYMBOL = {"schnet": "circle", "painn": "square", "mace": "diamond", "visnet": "diamond"}


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def _legend_below(fig: Any) -> Any:
    """Horizontal legend under the x axis (many entries would cover the title above the plot)."""
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0},
                      margin={"b": 150})
    return fig


def metric_label(metric: str) -> str:
    unit = METRICS[metric][0]
    name = {"forces_mae": "force MAE", "energy_mae_per_atom": "energy MAE", "energy_mae": "energy MAE"}[metric]
    return f"{name} ({unit})"


def summarise(df: Any, metric: str) -> Any:
    """Mean and std over seeds per (model, strategy, experiment, split, M, C), in display units."""
    scale = METRICS[metric][1]
    d = df.copy()
    if "strategy" not in d.columns:
        d["strategy"] = "random"
    d["value"] = d[metric].astype(float) * scale
    keys = ["model", "strategy", "experiment", "split", "n_molecules", "conformers_per_molecule"]
    g = d.groupby(keys)["value"].agg(["mean", "std", "count"]).reset_index()
    g["std"] = g["std"].fillna(0.0)
    return g.sort_values(keys).reset_index(drop=True)


def study_figure(
    df: Any, experiment: str, metric: str = "forces_mae", splits: Sequence[str] = TEST_SPLITS,
    baselines: dict[str, float] | None = None, title: str | None = None,
) -> Any:
    """Held-out error (mean ± std over seeds) against M (fixed budget) or C (fixed molecules), log x axis.

    One panel per model; colour = split, dash = selection strategy. ``baselines`` (split -> value in display
    units) adds dotted horizontal lines for a model that learns nothing geometric.
    """
    go = _go()
    from plotly.subplots import make_subplots

    s = summarise(df[df["experiment"] == experiment], metric)
    s = s[s["split"].isin(splits)]
    x_col = "n_molecules" if experiment == Experiment.FIXED_BUDGET else "conformers_per_molecule"
    # one line per budget (fixed budget) or molecule count (fixed molecular set): never join points of two of them
    s = s.assign(series=s["n_molecules"] * s["conformers_per_molecule"] if experiment == Experiment.FIXED_BUDGET
                 else s["n_molecules"])
    several = s["series"].nunique() > 1
    series_name = "B" if experiment == Experiment.FIXED_BUDGET else "M"
    models = sorted(s["model"].unique()) or [""]
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, subplot_titles=models,
                        horizontal_spacing=0.04)
    seen = set()
    for col, model in enumerate(models, start=1):
        for (strategy, split, series), g in s[s["model"] == model].groupby(["strategy", "split", "series"]):
            g = g.sort_values(x_col)
            name = f"{SPLIT_LABELS.get(split, split)} · {strategy}"
            name += f" · {series_name} = {series}" if several else ""
            # the largest budget (or molecule count) drawn with filled markers and thicker lines, smaller ones open
            largest = series == s["series"].max()
            hover = [f"M={m}, C={c}, {n} seeds" for m, c, n in
                     zip(g["n_molecules"], g["conformers_per_molecule"], g["count"])]
            fig.add_trace(
                go.Scatter(
                    x=g[x_col], y=g["mean"], error_y={"type": "data", "array": g["std"], "visible": True,
                                                      "thickness": 1.5},
                    mode="lines+markers", name=name, legendgroup=name, showlegend=name not in seen,
                    line={"color": SPLIT_COLORS.get(split), "dash": _DASH.get(strategy, "dot"),
                          "width": 3 if largest else 1.5},
                    marker={"symbol": _SYMBOL.get(model, "circle") + ("" if largest else "-open"), "size": 10},
                    text=hover,
                    hovertemplate="%{text}<br>%{y:.1f}<extra>" + f"{model}: {name}</extra>",
                ),
                row=1, col=col,
            )
            seen.add(name)
        for split, value in (baselines or {}).items():
            if split in splits:
                fig.add_hline(y=value, line={"color": SPLIT_COLORS.get(split), "dash": "dot", "width": 2},
                              row=1, col=col)
    if experiment == Experiment.FIXED_BUDGET:
        xt = "molecules M (C = B/M)" if several or not len(s) else f"molecules M (C = {int(s['series'].iloc[0])}/M)"
    else:
        xt = "conformers per molecule C" + ("" if several or not len(s) else f" (M = {int(s['series'].iloc[0])})")
    fig.update_xaxes(type="log", title=xt, tickvals=sorted(s[x_col].unique()))
    fig.update_yaxes(title=metric_label(metric), row=1, col=1)
    default = "Fixed budget" if experiment == Experiment.FIXED_BUDGET else "Fixed molecular set"
    fig.update_layout(title=title or f"{default}: held-out error, mean ± std over seeds")
    return _legend_below(apply_style(fig, height=560, legend_top=False))


def tradeoff_figure(rec: Recommendation, fits: dict[str, ErrorFit]) -> Any:
    """Predicted error of each split (and the weighted objective) along the budget's M x C = N line."""
    go = _go()
    t = rec.table
    M = np.array([r["n_molecules"] for r in t])
    order = np.argsort(M)
    fig = go.Figure()
    for split in (SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES):
        y = np.array([r[split] for r in t])[order]
        fig.add_trace(go.Scatter(x=M[order], y=y, mode="lines", name=f"{SPLIT_LABELS[split]} (fit)",
                                 line={"color": SPLIT_COLORS[split], "width": 3}))
        pts = fits[split].points
        on_line = np.isclose(pts.M * pts.C, rec.budget, rtol=0.02)
        if on_line.any():
            fig.add_trace(go.Scatter(
                x=pts.M[on_line], y=pts.mean[on_line],
                error_y={"type": "data", "array": pts.std[on_line], "visible": True}, mode="markers",
                name=f"{SPLIT_LABELS[split]} (runs)", marker={"color": SPLIT_COLORS[split], "size": 11},
            ))
    fig.add_trace(go.Scatter(x=M[order], y=np.array([r["objective"] for r in t])[order], mode="lines",
                             name=f"weighted (W = {rec.weight:g})", line={"color": "#000000", "dash": "dash"}))
    fig.add_trace(go.Scatter(x=[rec.n_molecules], y=[rec.objective], mode="markers",
                             name=f"optimum: M = {rec.n_molecules}, C = {rec.conformers_per_molecule}",
                             marker={"symbol": "star", "size": 18, "color": PALETTE[1],
                                     "line": {"color": "#000", "width": 1}}))
    unit = next(iter(rec.predicted.values()))["unit"]
    fig.update_xaxes(type="log", title=f"molecules M (C = ⌊{rec.budget}/M⌋)")
    fig.update_yaxes(title=f"predicted error ({unit})")
    fig.update_layout(title=f"Budget of {rec.budget:,} conformers: predicted error along M × C = N")
    return _legend_below(apply_style(fig, height=560, legend_top=False))


def _map_point(d: KnownDataset) -> tuple[int, float]:
    """``(molecules, conformers per molecule)`` of a dataset on the budget map (:func:`on_map` keeps those)."""
    if d.n_molecules is None or d.conformers_per_molecule is None:
        raise ValueError(f"{d.name} has no molecule count or no conformers-per-molecule figure to place on the map")
    return d.n_molecules, d.conformers_per_molecule


def budget_map_figure(
    known: Sequence[KnownDataset] | None = None,
    *,
    budgets: Sequence[float] = (1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8),
    fits: dict[str, ErrorFit] | None = None,
    path: Sequence[Recommendation] = (),
    recommendation: Recommendation | None = None,
    ours: tuple[int, int] | None = None,
    ours_name: str = "default dataset (all of it)",
) -> Any:
    """Molecules (x, log) against conformers per molecule (y, log): published datasets, iso-budget lines
    M x C = N, the region our runs cover, our fitted optimum path and the recommendation; ``ours`` marks the
    session's dataset (M, C), named ``ours_name`` (the user's own, imported data sits beside the published ones).
    """
    go = _go()
    known = list(on_map() if known is None else known)
    coords = [_map_point(d) for d in known]
    fig = go.Figure()
    xs: list[float] = [float(m) for m, _ in coords] + ([float(ours[0])] if ours else [])
    ys: list[float] = [float(c) for _, c in coords] + ([float(ours[1])] if ours else [])
    if fits:
        f = fits[SplitName.TEST_MOLECULES]
        xs += list(f.points.M)
        ys += list(f.points.C)
    x_lo, x_hi = 10 ** np.floor(np.log10(min(xs))), 10 ** np.ceil(np.log10(max(xs)) + 0.3)
    y_lo, y_hi = 0.5, 10 ** np.ceil(np.log10(max(ys)) + 0.5)
    for b in budgets:
        m = np.geomspace(max(x_lo, b / y_hi), min(x_hi, b / y_lo), 50)
        if len(m) and m[0] < m[-1]:
            fig.add_trace(go.Scatter(x=m, y=b / m, mode="lines", line={"color": "#BBBBBB", "width": 1, "dash": "dot"},
                                     showlegend=False, hoverinfo="skip"))
            lx = np.log10(m[0]) + 0.04 * (np.log10(m[-1]) - np.log10(m[0]))  # near the upper-left end
            fig.add_annotation(x=lx, y=np.log10(b) - lx, text=f"N = 10<sup>{np.log10(b):.0f}</sup>",
                               showarrow=False, font={"size": 13, "color": "#777777"}, xanchor="left",
                               bgcolor="rgba(255,255,255,0.8)")
    positions: list[str] = []
    for i, (dm, dc) in enumerate(coords):  # alternate labels of neighbouring points so they do not overprint
        close = any(abs(np.log10(dm / em)) < 0.6 and
                    abs(np.log10(dc / ec)) < 0.3 and
                    positions[j] == "top center" for j, (em, ec) in enumerate(coords[:i]))
        positions.append("bottom center" if close else "top center")
    fig.add_trace(go.Scatter(
        x=[m for m, _ in coords], y=[c for _, c in coords], mode="markers+text",
        text=[d.name for d in known], textposition=positions, name="published QM datasets (◆ with forces)",
        marker={"size": 13, "color": PALETTE[0], "symbol": ["diamond" if d.forces else "circle" for d in known]},
        customdata=[[f"{d.n_conformers:,}", d.level_of_theory, "yes" if d.forces else "no", d.source] for d in known],
        hovertemplate="<b>%{text}</b><br>molecules %{x:,}<br>conformers/molecule %{y:,}<br>conformers "
                      "%{customdata[0]}<br>%{customdata[1]}, forces %{customdata[2]}<br>%{customdata[3]}"
                      "<extra></extra>",
    ))
    if fits:
        f = fits[SplitName.TEST_MOLECULES]
        fig.add_trace(go.Scatter(x=f.points.M, y=f.points.C, mode="markers", name="our runs (fitted)",
                                 marker={"size": 9, "color": PALETTE[2], "symbol": "x"}))
    if path:
        fig.add_trace(go.Scatter(
            x=[r.n_molecules for r in path], y=[r.conformers_per_molecule for r in path], mode="lines+markers",
            name=f"fitted optimum (W = {path[0].weight:g})", line={"color": PALETTE[1], "width": 3},
            marker={"size": 6}, text=[f"N={r.budget:,}" for r in path],
            hovertemplate="%{text}: M=%{x}, C=%{y}<extra>fitted optimum</extra>",
        ))
    if recommendation is not None:
        fig.add_trace(go.Scatter(
            x=[recommendation.n_molecules], y=[recommendation.conformers_per_molecule], mode="markers",
            name="recommendation", marker={"size": 20, "color": PALETTE[1], "symbol": "star",
                                           "line": {"color": "#000", "width": 1}},
        ))
    if ours is not None:
        fig.add_trace(go.Scatter(x=[ours[0]], y=[ours[1]], mode="markers", name=ours_name,
                                 marker={"size": 14, "color": PALETTE[3], "symbol": "square"}))
    fig.update_xaxes(type="log", title="molecules M (log)", range=[np.log10(x_lo), np.log10(x_hi)])
    fig.update_yaxes(type="log", title="conformers per molecule C (log)", range=[np.log10(y_lo), np.log10(y_hi)])
    fig.update_layout(title="Molecules vs conformers per molecule (dotted: M × C = N conformers)")
    apply_style(fig, height=640, legend_top=False)
    fig.update_layout(legend={"x": 0.99, "y": 0.99, "xanchor": "right", "yanchor": "top",
                              "bgcolor": "rgba(255,255,255,0.85)", "bordercolor": "#CCCCCC", "borderwidth": 1})
    return fig


def error_surface_figure(fit: ErrorFit, n: int = 60) -> Any:
    """Contours of the fitted error over (log M, log C), blank where the extrapolation guard refuses."""
    go = _go()
    pts = fit.points
    lm = np.linspace(np.log(pts.M.min() / fit.max_factor), np.log(pts.M.max() * fit.max_factor), n)
    lc = np.linspace(np.log(max(pts.C.min() / fit.max_factor, 1.0)), np.log(pts.C.max() * fit.max_factor), n)
    M, C = np.exp(lm), np.exp(lc)
    Z = np.full((n, n), np.nan)
    for j, c in enumerate(C):
        for i, m in enumerate(M):
            if fit.extrapolation(m, c) <= fit.max_factor:
                Z[j, i] = fit.evaluate(m, c)[0]
    fig = go.Figure(go.Contour(x=M, y=C, z=Z, colorscale="Viridis", colorbar={"title": fit.unit},
                               contours={"showlabels": True}, connectgaps=False,
                               hovertemplate="M=%{x:.0f}, C=%{y:.1f}: %{z:.1f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=pts.M, y=pts.C, mode="markers", name="runs", marker={"color": "#FFF", "size": 10,
                             "line": {"color": "#000", "width": 1}}, text=[f"{v:.1f}" for v in pts.mean],
                             hovertemplate="M=%{x}, C=%{y}: measured %{text}<extra></extra>"))
    fig.update_xaxes(type="log", title="molecules M (log)")
    fig.update_yaxes(type="log", title="conformers per molecule C (log)")
    fig.update_layout(title=f"Fitted {fit.split.replace('_', ' ')} error ({fit.unit}); blank = refused "
                            f"(> {fit.max_factor:g}× outside the runs)")
    return apply_style(fig, height=560, legend_top=False)


def domain_figure(distances: dict[str, np.ndarray], errors: dict[str, np.ndarray], threshold: float,
                  unit: str = "meV/Å", error_threshold: float | None = None) -> Any:
    """Per-conformer error against distance to the training set, with the deployed threshold."""
    go = _go()
    fig = go.Figure()
    for split in (SplitName.VAL, SplitName.TEST_CONFORMERS, SplitName.TEST_MOLECULES):
        if split in distances and split in errors:
            fig.add_trace(go.Scatter(x=distances[split], y=errors[split], mode="markers",
                                     name=SPLIT_LABELS.get(split, split),
                                     marker={"color": SPLIT_COLORS.get(split), "size": 6, "opacity": 0.6}))
    fig.add_vline(x=threshold, line={"color": "#000", "dash": "dash", "width": 2},
                  annotation_text="domain threshold (95th pct of val)")
    if error_threshold is not None:
        fig.add_vline(x=error_threshold, line={"color": "#888", "dash": "dot", "width": 2},
                      annotation_text="error > k× in-distribution", annotation_position="bottom right")
    fig.update_xaxes(title="distance to nearest training conformer (Coulomb spectrum)")
    fig.update_yaxes(title=f"per-conformer force MAE ({unit})", type="log")
    fig.update_layout(title="Applicability domain: error against distance to the training set")
    return _legend_below(apply_style(fig, height=560, legend_top=False))


def infogap_figure(rows: Any, metric: str = "forces_mae", x: str = "dH_mean") -> Any:
    """Per run and split: the error against the information gap dH of the test set relative to the training set."""
    go = _go()
    fig = go.Figure()
    for split, g in rows.groupby("split"):
        fig.add_trace(go.Scatter(x=g[x], y=g[metric], mode="markers", name=SPLIT_LABELS.get(split, split),
                                 marker={"color": SPLIT_COLORS.get(split), "size": 10},
                                 text=[f"M={m}, C={c}, {mo}" for m, c, mo in
                                       zip(g["n_molecules"], g["conformers_per_molecule"], g["model"])],
                                 hovertemplate="%{text}<br>dH %{x:.2f}: %{y:.1f}<extra></extra>"))
    label = {"dH_mean": "mean dH of test atoms (nats)", "frac_extrapolative": "share of test atoms with dH > 0"}
    fig.update_xaxes(title=label.get(x, x))
    fig.update_yaxes(title=metric_label(metric))
    fig.update_layout(title="Does the model-free information gap predict the error?")
    return _legend_below(apply_style(fig, height=560, legend_top=False))
