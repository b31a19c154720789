"""Error models fitted to finished runs: held-out error as a function of molecules M, conformers per molecule C
and (when the runs record it) training steps S.

The terms (per test split, per model, per metric), each non-negative and decreasing::

    floor: E_inf     M: a (M/M0)^-alpha     C: b (C/C0)^-beta     MC: a (M C / M0 C0)^-alpha
    MorC: (1 / (a (M/M0)^-alpha) + 1 / (b (C/C0)^-beta))^-1
    MorCT: (1 / (a_inf + a (M/M0)^-alpha) + 1 / (b (C/C0)^-beta))^-1
    S, a factor on the sum of the others: f(S), one free level per training length, 1 at the longest
    SM, SC, powers of the steps on the routes: the M (MC, MorC's or MorCT's M-route) term times (S/S0)^-gamma, the
    C (their C-route) term times (S/S0)^-delta; the floor is not scaled

The full form ``E_inf + a (M/M0)^-alpha + b (C/C0)^-beta`` is the additive two-resource power law of
compute-optimal scaling (Hoffmann et al. 2022, L(N, D) = E + A/N^a + B/D^b) with the study's two diversities as the
resources: ``a`` is the excess error from too few molecules, ``b`` from too few conformers of each, ``E_inf`` what is
left with unlimited data of both. ``total`` (floor + MC) is the null hypothesis that only the number of conformers
matters. ``M0``, ``C0`` (and ``S0``) are the geometric means of the fitted points.

``either`` (floor + MorC) combines the same two power laws as resistances in parallel, a smooth minimum: the error
follows whichever resource is the more plentiful. Why: an unseen conformer of a training molecule can be learned
from that molecule's own conformers or by transfer from the other molecules, so once C is large more molecules
barely help it, and once M is large more conformers barely do. The additive form cannot bend that way; on the
study's unseen-conformer errors (SchNet, B = 128 and 512) it left residuals of the budget's sign (RMSE 26 meV/Å)
where ``either`` left 12.

``either_limited`` (floor + MorCT) lets the molecules route level off at ``a_inf``: other molecules teach a small
model only so much about one molecule's unseen conformers (or about an unseen molecule), and past that only the
molecule's own conformers help. Why: at one training length (6,000 steps: B = 512 and M = 8, 8 seeds and 3) the
unseen-conformer error falls 251 -> 106 meV/Å from 8 to 512 molecules at C = 1 (PaiNN), yet 90 at (128, 4) is
below 106 at (512, 1); ``either`` cannot bend that way (weighted chi^2 18.8 on 7 points, residuals up to 3.4
standard errors), with the limit it fits within 1.2 (chi^2 1.4, SchNet 7.0 against 12.6). Over the whole study
(PaiNN's unseen conformers, 13 points of B = 128 to 2,048 and M = 8) the Akaike weights chose it without its floor
(0.99), and the leave-one-out RMSE fell from 21.2 to 6.8 meV/Å. With ``a_inf`` at 0 it is ``either``.

Training steps. Within one budget every point gets the same optimiser steps, across budgets the steps differ (as
convergence needs), so steps are not confounded with the split between M and C, but they are with the budget. When
the points hold more than one step count, every candidate form is also fitted with the factor S: the shape in (M, C)
is shared, the level of each training length (so of each budget, and of the fixed-molecules points run at its
steps) is free. That is the per-budget fit with a common shape: it says nothing about how the level itself moves
with budget and steps, and needs nothing said: within one training length the factor is constant, so it never moves
the optimum. Between measured step counts the factor is log-interpolated, outside them held at the nearest. Why a
free level and not a term: on the study's unseen-conformer errors (B = 128, 512, 2,048; SchNet and PaiNN) an added
``d (S/S0)^-gamma`` left mean residuals of +6 and +4 meV/Å at B = 128 and leave-one-out RMSEs of 10-11 meV/Å, a
factor ``(S/S0)^-gamma`` left +8 and +1, the free level +1.4 and +1.2 with leave-one-out RMSEs of 4.6 (SchNet and
PaiNN, the ``either`` form alone; 2 to 3 seeds at B = 2,048 then). But with 8 seeds at B <= 512 and 3 at 2,048 the
free level predicted the edge point it had not seen badly (unseen conformers at M = 128, C = 1: SchNet -49 meV/Å
leave-one-out), because longer training helps the two routes unequally. A power of the steps on each route
(``+steps-power``, two exponents instead of one level per budget) lowered the leave-one-out RMSE of unseen
conformers from 16.0 to 11.1 meV/Å (SchNet) and from 13.4 to 11.7 (PaiNN), and the Akaike weights chose it. Both
ways are candidates.

Which runs. When the results hold fixed-budget runs at two budgets or more, the error model is fitted on those alone
(otherwise on every run: one budget's line cannot tell M from C). Why: the model answers the fixed-budget question,
and the fixed molecular sets reach a regime no budget's grid does: (8, 1) and (64, 1) train one conformer per
molecule for thousands of epochs. Fitted with them, the study's unseen-conformer errors left leave-one-out RMSEs of
14.6 (SchNet) and 11.7 meV/Å (PaiNN) against median seed stds of 9.0 and 11.8, the worst points those corners; fitted
on the fixed-budget points alone, 3.6 and 5.8 against 8.6 and 12.5. The fixed-molecules runs stay measured tables.

Candidates and averaging. The candidates are ``full``, ``no_floor`` (M + C), ``total``, ``either`` and
``either_limited`` (the parallel forms also without their floor: a floor that fits well above 0 is never dropped as
a bound, yet costs a parameter the points may not pay for), each without S, with the factor S (``+steps``) and with
the powers SM and SC (``+steps-power``). A fit whose parameter sits on a bound (an amplitude at 0, an exponent at
0, a step exponent at 0, the limit ``a_inf`` at 0) is replaced by the nested form without that term and refitted
(an ``either`` fit in which one route never limits the error becomes the other route's single term), so no reported
parameter is a bound with a meaningless standard error. Each
candidate is scored by AICc computed from the *weighted* chi^2 the fit minimises (Gaussian likelihood with known
relative weights and one common scale: ``n log(chi^2/n) + 2k + 2k(k+1)/(n-k-1)``), and predictions are the
Akaike-weighted average of the candidates (weights ``exp(-dAICc/2)``; Burnham & Anderson 2002). ``form`` picks one
candidate instead of the average.

Fitting: ``scipy.optimize.curve_fit`` (trust-region reflective with each form's analytic Jacobian; amplitudes >= 0,
exponents in [0, 3], E_inf in [0, max observed]) on per-point means over seeds, weighted by their standard error
over seeds (floored at the median, so a point whose seeds agree by chance does not dominate); several starts, the
lowest chi^2 kept.

Uncertainty: a bootstrap over seeds, resampled jointly (one resample of a seed set applies to every point with
that seed set, and the two test splits draw the same resamples, so their draws pair up); each draw refits every
candidate and recomputes the Akaike weights, so the intervals carry the choice of form too.

Quality: R^2 and RMSE of the averaged prediction, leave-one-point-out RMSE (refit every candidate without each
point), and the acceptance checks of :func:`acceptance` (mean residual per measured budget within one standard
error, leave-one-out RMSE below the median seed std), and :func:`loo_calibration`, which asks what leave-one-out
RMSE the seed noise alone would give if the fit were the truth.

Extrapolation guard: the fitted points span a region of the (log M, log C) plane (their convex hull; a segment when
only one experiment ran). A prediction further than ``log(max_factor)`` from it (default factor 2) raises
:class:`ExtrapolationError` unless asked for explicitly; then it is marked ``extrapolated``. Steps are never
extrapolated: a budget between measured ones gets the log-interpolated steps, one outside the nearest budget's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import MlipdivError
from mlipdiv.jobs.sweep import RESULT_COLUMNS  # the sweep table's columns (what load_results reads)
from mlipdiv.names import Experiment, SplitName
from mlipdiv.units import EV_TO_MEV

__all__ = [
    "AVERAGE",
    "FORMS",
    "METRICS",
    "SPLITS",
    "ErrorFit",
    "ExtrapolationError",
    "Form",
    "Points",
    "acceptance",
    "aggregate",
    "fit_error_model",
    "fit_results",
    "fitted_rows",
    "hull_distance",
    "load_results",
    "loo_calibration",
    "protocol_rows",
    "read_results_upload",
    "results_choices",
    "results_folders",
]

SPLITS = (SplitName.TEST_MOLECULES, SplitName.TEST_CONFORMERS)
METRICS = {  # results.csv column -> (display unit, factor from the stored eV unit)
    "forces_mae": ("meV/Å", EV_TO_MEV),
    "energy_mae_per_atom": ("meV/atom", EV_TO_MEV),
    "energy_mae": ("meV", EV_TO_MEV),
    "energy_rel_mae": ("meV", EV_TO_MEV),
}
DEFAULT_MAX_FACTOR = 2.0
AVERAGE = "average"
CONVERGENCE_SUFFIX = "-convergence"  # presets of the convergence-check runs (twice the budget's steps)


class ExtrapolationError(MlipdivError):
    """A prediction was asked for far outside the (M, C) region the error model was fitted on."""


# ------------------------------------------------------------------------------------------------------- forms

_TERMS: dict[str, tuple[str, ...]] = {
    "floor": ("E_inf",), "M": ("a", "alpha"), "C": ("b", "beta"), "MC": ("a", "alpha"), "S": (),
    "MorC": ("a", "alpha", "b", "beta"), "MorCT": ("a_inf", "a", "alpha", "b", "beta"), "SM": ("gamma",),
    "SC": ("delta",),
}
_TERM_TEXT = {"floor": "E_inf", "M": "a·(M/M0)^-alpha", "C": "b·(C/C0)^-beta", "MC": "a·(M·C/(M0·C0))^-alpha",
              "S": "f(S)", "MorC": "(1/(a·(M/M0)^-alpha) + 1/(b·(C/C0)^-beta))^-1",
              "MorCT": "(1/(a_inf + a·(M/M0)^-alpha) + 1/(b·(C/C0)^-beta))^-1",
              "SM": "(S/S0)^-gamma", "SC": "(S/S0)^-delta"}
_ORDER = ("floor", "M", "C", "MC", "MorC", "MorCT", "SM", "SC", "S")
_ALIASES = {("floor", "M", "C"): "full", ("M", "C"): "no_floor", ("floor", "MC"): "total",
            ("floor", "MorC"): "either", ("MorC",): "either_no_floor", ("floor", "MorCT"): "either_limited",
            ("MorCT",): "either_limited_no_floor"}  # the candidates
_NESTED_NAMES = {("MC",): "total_no_floor", ("floor", "M"): "molecules_only", ("floor", "C"): "conformers_only",
                 ("M",): "molecules_only_no_floor", ("C",): "conformers_only_no_floor"}
_PARALLEL = ("MorC", "MorCT")  # the two routes in parallel
_M_ROUTE, _C_ROUTE = ("M", "MC", *_PARALLEL), ("C", *_PARALLEL)  # the terms the step exponents gamma, delta act on
_STEP_TERMS = ("SM", "SC", "S")
_DECREASING = ("M", "C", "MC", *_PARALLEL)


@dataclass(frozen=True)
class Form:
    """A sum of terms, with training length S in one of two ways (names as in :data:`_TERMS`):

    - ``S``: a free factor on the sum, one level per step count in ``knots`` but the longest (``f@<steps>``; 1 at
      the last knot, the scaled step counts S/S0 in ascending order);
    - ``SM``/``SC``: a power of S on the molecules route (``gamma``: the M, MC or MorC M-route term) and on the
      conformers route (``delta``: the C term or MorC's C-route); the floor is not scaled.
    """

    terms: tuple[str, ...]
    knots: tuple[float, ...] = ()
    S0: float = field(default=math.nan, compare=False)  # names the levels; NaN would make equal forms unequal

    @property
    def name(self) -> str:
        base = tuple(t for t in self.terms if t not in _STEP_TERMS)
        name = _ALIASES.get(base) or _NESTED_NAMES.get(base) or "+".join(base)
        if "S" in self.terms:
            return f"{name}+steps"
        return f"{name}+steps-power" if {"SM", "SC"} & set(self.terms) else name

    @property
    def params(self) -> tuple[str, ...]:
        levels = tuple(f"{_LEVEL}{k * self.S0:.0f}" for k in self.knots[:-1]) if "S" in self.terms else ()
        return tuple(p for t in self.terms for p in _TERMS[t]) + levels

    @property
    def text(self) -> str:
        route = {"M": "SM", "MC": "SM", "C": "SC"}
        parts = []
        for t in self.terms:
            if t in _STEP_TERMS:
                continue
            if t in _PARALLEL and {"SM", "SC"} & set(self.terms):
                m = "·" + _TERM_TEXT["SM"] if "SM" in self.terms else ""
                c = "·" + _TERM_TEXT["SC"] if "SC" in self.terms else ""
                u = "(a_inf + a·(M/M0)^-alpha)" if t == "MorCT" else "a·(M/M0)^-alpha"
                parts.append(f"(1/({u}{m}) + 1/(b·(C/C0)^-beta{c}))^-1")
            else:
                parts.append(_TERM_TEXT[t] + ("·" + _TERM_TEXT[route[t]] if route.get(t) in self.terms else ""))
        total = " + ".join(parts)
        if "S" not in self.terms:
            return total
        return f"({total})·f(S), f = 1 at S = {self.knots[-1] * self.S0:.0f}" if self.knots else f"({total})·f(S)"

    def parts(self, theta: Any) -> dict[str, tuple[float, ...]]:
        """``theta`` split by term (the levels, last, go to ``S``)."""
        out, i = {}, 0
        for t in self.terms:
            k = len(theta) - i if t == "S" else len(_TERMS[t])
            out[t] = tuple(float(v) for v in theta[i:i + k])
            i += k
        return out

    def func(self, x: np.ndarray, *theta: float) -> np.ndarray:
        """The form at scaled ``x`` = (M/M0, C/C0, S/S0) rows."""
        m, c, s = x
        p = self.parts(theta)
        sm = s ** -p["SM"][0] if "SM" in p else 1.0
        sc = s ** -p["SC"][0] if "SC" in p else 1.0
        out = np.zeros_like(m, dtype=float)
        if "floor" in p:
            out = out + p["floor"][0]
        if "M" in p:
            out = out + p["M"][0] * m ** -p["M"][1] * sm
        if "C" in p:
            out = out + p["C"][0] * c ** -p["C"][1] * sc
        if "MC" in p:
            out = out + p["MC"][0] * (m * c) ** -p["MC"][1] * sm
        for t in _PARALLEL:
            if t in p:
                u, v = _routes(m, c, p[t])
                out = out + _parallel(u * sm, v * sc)
        if "S" in p:  # the factor on the sum
            log_f = np.log(np.maximum(np.asarray(p["S"], float), 1e-300))
            out = out * np.exp(np.interp(np.log(s), np.log(self.knots), [*log_f, 0.0]))
        return out

    def jac(self, x: np.ndarray, *theta: float) -> np.ndarray:
        """d func / d theta at scaled ``x``: (n_points, n_params), in :attr:`params` order.

        Analytic, because finite differences cost ``curve_fit`` one call of :meth:`func` per parameter per step
        and were half the time of every fit (and the bootstrap and leave-one-out refit every candidate).
        """
        m, c, s = (np.asarray(v, dtype=float) for v in x)
        p = self.parts(theta)
        log_s = np.log(s)
        sm = s ** -p["SM"][0] if "SM" in p else np.ones_like(m)
        sc = s ** -p["SC"][0] if "SC" in p else np.ones_like(m)
        cols: dict[str, list[np.ndarray]] = {}
        on_m, on_c = np.zeros_like(m), np.zeros_like(m)  # the M- and C-route error, for d/d gamma and d/d delta
        if "floor" in p:
            cols["floor"] = [np.ones_like(m)]
        for t, base in (("M", m), ("C", c), ("MC", m * c)):
            if t in p:
                amp, e = p[t]
                unit = base ** -e * (sc if t == "C" else sm)
                cols[t] = [unit, -np.log(base) * amp * unit]
                if t == "C":
                    on_c = on_c + amp * unit
                else:
                    on_m = on_m + amp * unit
        for t in _PARALLEL:
            if t in p:
                *limit, a, alpha, b, beta = p[t]
                u, v = _routes(m, c, p[t])
                u, v = u * sm, v * sc
                total = u + v
                safe = np.where(total > 0, total, 1.0)
                # dP/du, dP/dv of P = uv/(u + v)
                du, dv = np.where(total > 0, (v / safe) ** 2, 0.0), np.where(total > 0, (u / safe) ** 2, 0.0)
                d_a = du * m ** -alpha * sm
                cols[t] = [*([du * sm] if limit else []), d_a, -np.log(m) * a * d_a,
                           dv * c ** -beta * sc, -np.log(c) * dv * v]
                on_m, on_c = on_m + du * u, on_c + dv * v
        if "SM" in p:
            cols["SM"] = [-log_s * on_m]
        if "SC" in p:
            cols["SC"] = [-log_s * on_c]
        out = np.column_stack([col for t in self.terms if t != "S" for col in cols[t]])  # a form has a decreasing term
        if "S" in p:  # func = (the sum) * F(S); log F interpolates the log levels linearly in log S
            levels = np.maximum(np.asarray(p["S"], float), 1e-300)
            basis = np.eye(len(self.knots))[: len(levels)]
            weights = np.array([np.interp(log_s, np.log(self.knots), b) for b in basis]).reshape(len(levels), len(m)).T
            factor = np.exp(weights @ np.log(levels))
            out = np.column_stack([out * factor[:, None], self.func(x, *theta)[:, None] * weights / levels])
        return out

    def without(self, dropped: Iterable[str]) -> Form:
        gone = set(dropped)
        return _form(tuple(t for t in self.terms if t not in gone), self.knots, self.S0)

    def with_terms(self, terms: Iterable[str]) -> Form:
        """The form with ``terms`` (in term order), keeping the step counts."""
        return _form(terms, self.knots, self.S0)


def _routes(m: np.ndarray, c: np.ndarray, theta: Any) -> tuple[np.ndarray, np.ndarray]:
    """The two routes of a parallel term: the error through molecules and through conformers (MorCT's M route
    levels off at ``a_inf``)."""
    *limit, a, alpha, b, beta = theta
    return sum(limit, 0.0) + a * m ** -alpha, b * c ** -beta


def _parallel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(1/u + 1/v)^-1``, 0 where either is 0 (a route without error)."""
    total = u + v
    return np.divide(u * v, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def _form(terms: Iterable[str], knots: tuple[float, ...] = (), S0: float = math.nan) -> Form:
    """Terms in order; a step exponent without the route it acts on is left out."""
    have = set(terms)
    if not have & set(_M_ROUTE):
        have.discard("SM")
    if not have & set(_C_ROUTE):
        have.discard("SC")
    return Form(tuple(t for t in _ORDER if t in have), knots, S0)


def _with_step_power(form: Form) -> Form:
    """``form`` with a power of S on each of its routes."""
    return _form((*form.terms, "SM", "SC"), form.knots, form.S0)


FORMS: dict[str, Form] = {name: _form(terms) for terms, name in _ALIASES.items()}
_EXPONENT_MAX = 3.0
_EXPONENTS = ("alpha", "beta", "gamma", "delta")  # bounded to [0, _EXPONENT_MAX]
_LEVEL_MIN = 1e-3  # a training length's factor is positive
_LEVEL = "f@"  # prefix of the factor's parameters, one per step count: f@1500


def form_by_name(name: str) -> Form:
    """A form from its name (one of :data:`FORMS`, optionally with ``+steps`` or ``+steps-power``)."""
    base, plus, steps = name.partition("+")
    if base not in FORMS or (plus and steps not in ("steps", "steps-power")):
        raise MlipdivError(f"unknown error-model form {name!r}; choose from {AVERAGE}, {', '.join(FORMS)} "
                           "(optionally with +steps or +steps-power)")
    f = FORMS[base]
    if steps == "steps":
        return _form((*f.terms, "S"))
    return _with_step_power(f) if steps == "steps-power" else f


# ------------------------------------------------------------------------------------------------------ data


def load_results(paths: str | Path | Iterable[str | Path]) -> Any:
    """Read one or more sweep ``results.csv`` (a file or a sweep directory) into one pandas DataFrame.

    A directory without ``results.csv`` of its own contributes every ``results.csv`` below it. Rows repeated across
    files are kept once (:func:`_once_per_experiment`). An optional ``strategy`` column is kept (``random`` when
    absent).
    """
    import pandas as pd

    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [p / "results.csv"] if (p / "results.csv").exists() else sorted(p.rglob("results.csv"))
            if not found:
                raise MlipdivError(f"{p}: no results.csv in it or below it; run a sweep with --out {p} first")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise MlipdivError(f"{p}: no such file or directory")
    frames = [_read_table(f, str(f)) for f in files]
    df = _with_strategy(pd.concat(frames, ignore_index=True))
    df = _once_per_experiment(df)
    if df.empty:
        raise MlipdivError("the results table is empty: no finished runs to fit")
    return df


def _once_per_experiment(df: Any) -> Any:
    """One row per (experiment, run, split). Why per experiment: a run shared by the two experiments (one config:
    the fixed-budget point (8, 64) of B = 512 is the fixed-molecules point C = 64 of M = 8) is a point of each, as
    the study's table keeps it; kept once over all, it left one experiment short of those seeds."""
    return df.drop_duplicates(subset=["experiment", "run_id", "split"], keep="last").reset_index(drop=True)


def _read_table(source: Any, label: str) -> Any:
    """One sweep results table from a path or a file object; any failure is a one-line :class:`MlipdivError`."""
    import pandas as pd

    try:
        df = pd.read_csv(source)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        reason = " ".join(str(exc).split())[:200]
        raise MlipdivError(f"{label}: not a readable CSV ({reason})") from exc
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise MlipdivError(f"{label}: not a sweep results table (missing columns: {', '.join(missing)}); upload "
                           "the results.csv a sweep wrote")
    return df


MAX_RESULTS_UPLOAD_BYTES = 50 * 2**20


def read_results_upload(name: str, data: bytes) -> Any:
    """An uploaded sweep ``results.csv`` as :func:`load_results` would return it; nothing touches the disk.

    The app takes results this way (or from :func:`results_folders`) instead of a typed server path, so a browser
    user never opens a file of the server. Errors are one line and name ``name``, the user's file.
    """
    import io

    label = Path(name).name or "the upload"
    if len(data) > MAX_RESULTS_UPLOAD_BYTES:
        raise MlipdivError(f"{label} is {len(data) / 2**20:.0f} MB; a results table above "
                           f"{MAX_RESULTS_UPLOAD_BYTES // 2**20} MB is not taken here (use `python -m mlipdiv "
                           "budget`)")
    if not data.strip():
        raise MlipdivError(f"{label}: the file is empty; upload the results.csv a sweep wrote")
    df = _with_strategy(_read_table(io.BytesIO(data), label))
    df = _once_per_experiment(df)
    if df.empty:
        raise MlipdivError(f"{label}: the results table is empty: no finished runs to fit")
    return df


def results_folders(roots: Iterable[str | Path], max_depth: int = 4, limit: int = 200) -> list[Path]:
    """Folders holding a sweep ``results.csv`` under ``roots`` (the run store, the project's ``docs/results``).

    Why: the app lets a user pick among these rather than type a path, so nothing outside the roots can be read.
    The walk is bounded (``max_depth`` levels, ``limit`` folders), follows no symbolic link to a folder, and skips a
    ``results.csv`` that is a link leading outside its root. Missing roots are skipped.
    """
    import os

    found: list[Path] = []
    for root in roots:
        try:
            top = Path(root).resolve(strict=True)
        except OSError:
            continue
        if not top.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            here = Path(dirpath)
            if len(here.relative_to(top).parts) >= max_depth:
                dirnames[:] = []
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if "results.csv" in filenames:
                f = here / "results.csv"
                try:
                    inside = f.resolve(strict=True).is_relative_to(top) and f.resolve().is_file()
                except OSError:
                    inside = False
                if inside and here not in found:
                    found.append(here)
            if len(found) >= limit:
                break
    return found


def results_choices(roots: Mapping[str, str | Path]) -> dict[str, Path]:
    """``{label: results.csv}`` for every folder :func:`results_folders` finds under the named ``roots``.

    A label is the root's name and the folder relative to it (``"run store: runs/sweeps/a"``), so a list shown in a
    browser names no server path.
    """
    tops = {where: Path(root).resolve() for where, root in roots.items()}
    out: dict[str, Path] = {}
    for folder in results_folders(tops.values()):
        for where, top in tops.items():
            if folder.is_relative_to(top):
                rel = folder.relative_to(top).as_posix()
                out[f"{where}: {top.name if rel == '.' else f'{top.name}/{rel}'}"] = folder / "results.csv"
                break
    return out


def _with_strategy(df: Any) -> Any:
    """``df`` with a ``strategy`` column (sweeps of one strategy may not write it; theirs is ``random``)."""
    df = df.copy()
    df["strategy"] = df["strategy"].fillna("random") if "strategy" in df.columns else "random"
    return df


@dataclass
class Points:
    """Per-point aggregates over seeds of one metric on one split, plus the per-seed values for the bootstrap.

    A point is an (M, C) pair and, when the runs record it, their training steps ``S`` (NaN: unknown).
    ``seeds[i]`` are the seeds of ``values[i]`` (ascending); ``fixed_budget[i]`` marks a point of the fixed-budget
    experiment (the budgets the acceptance checks look at).
    """

    M: np.ndarray
    C: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    values: list[np.ndarray]
    S: np.ndarray | None = None
    seeds: list[np.ndarray] | None = None
    fixed_budget: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.M)

    @property
    def has_steps(self) -> bool:
        """Steps known at every point and not all equal: the fits can tell training length apart."""
        return self.S is not None and bool(np.all(np.isfinite(self.S))) and len(np.unique(self.S)) > 1

    def budget_points(self) -> dict[int, np.ndarray]:
        """Indices of the fixed-budget points of each budget M x C (every point when none is marked)."""
        mark = self.fixed_budget if self.fixed_budget is not None and self.fixed_budget.any() else \
            np.ones(len(self), bool)
        budgets = np.round(self.M * self.C).astype(int)
        return {int(b): np.flatnonzero(mark & (budgets == b)) for b in np.unique(budgets[mark])}


def protocol_rows(df: Any) -> Any:
    """The protocol runs of ``df``: without the convergence checks (presets ending in ``-convergence``, or, for a
    run repeated with more steps at the same experiment, model, strategy, point, seed and split, the longer one)."""
    out = df
    if "preset" in out.columns:
        out = out[~out["preset"].astype(str).str.endswith(CONVERGENCE_SUFFIX)]
    if "steps" in out.columns and out["steps"].notna().any():
        keys = [k for k in ("experiment", "model", "strategy", "n_molecules", "conformers_per_molecule", "seed",
                            "split") if k in out.columns]
        least = out.groupby(keys, dropna=False)["steps"].transform("min")
        out = out[out["steps"].isna() | least.isna() | (out["steps"] == least)]
    return out


def fitted_rows(df: Any) -> Any:
    """The rows the error model fits: the fixed-budget runs when they cover two budgets or more, else all (one
    budget's line, where C = B / M, cannot tell the two resources apart; see "Which runs")."""
    if "experiment" not in df.columns:
        return df
    fixed = df[df["experiment"] == Experiment.FIXED_BUDGET]
    budgets = fixed["n_molecules"].astype(int) * fixed["conformers_per_molecule"].astype(int)
    return fixed if budgets.nunique() >= 2 else df


def aggregate(df: Any, split: str, metric: str = "forces_mae", scale: float = 1.0) -> Points:
    """Group ``df`` (one model, one strategy, protocol runs) by (M, C, steps) for ``split``; values x ``scale``."""
    if metric not in df.columns:
        raise MlipdivError(f"the results have no {metric} column (older runs); choose another metric")
    sub = df[(df["split"] == split) & np.isfinite(df[metric].astype(float))]
    has = set(sub.columns)
    fixed = sub["experiment"] == Experiment.FIXED_BUDGET if "experiment" in has else np.zeros(len(sub), bool)
    if "run_id" in has:  # a run shared by two experiments (same config) counts once, as a fixed-budget point
        fb_runs = set(sub.loc[fixed, "run_id"])
        sub = sub.drop_duplicates(subset=["run_id"])
        fixed = sub["run_id"].isin(fb_runs)
    sub = sub.assign(_fb=np.asarray(fixed, bool))
    if sub.empty:
        raise MlipdivError(f"no finished runs with a finite {metric} on {split}")
    steps = sub["steps"].astype(float) if "steps" in sub.columns else np.nan
    sub = sub.assign(_steps=steps).assign(_steps=lambda d: d["_steps"].fillna(-1.0))
    if "seed" not in sub.columns:
        sub = sub.assign(seed=np.arange(len(sub)))
    groups = sorted(sub.groupby(["n_molecules", "conformers_per_molecule", "_steps"]), key=lambda kv: kv[0])
    groups = [(k, g.sort_values("seed")) for k, g in groups]
    values = [g[metric].to_numpy(float) * scale for _, g in groups]
    S = np.array([k[2] for k, _ in groups], float)
    return Points(
        M=np.array([k[0] for k, _ in groups], float),
        C=np.array([k[1] for k, _ in groups], float),
        mean=np.array([v.mean() for v in values]),
        std=np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]),
        n=np.array([len(v) for v in values]),
        values=values,
        S=np.where(S < 0, np.nan, S),
        seeds=[g["seed"].to_numpy(int) for _, g in groups],
        fixed_budget=np.array([bool(g["_fb"].any()) for _, g in groups]),
    )


# ---------------------------------------------------------------------------------------------- the guard


def _segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip((q - a) @ ab / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(q - (a + t * ab)))


class _Hull:
    """The convex hull of 2-D points (a segment when they are collinear, a point when there is one), built once so
    that many distances can be asked of it."""

    def __init__(self, points: np.ndarray) -> None:
        pts = np.unique(np.asarray(points, float), axis=0)
        self.single = pts[0] if len(pts) == 1 else None
        self.equations: np.ndarray | None = None
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []
        if self.single is not None:
            return
        centred = pts - pts.mean(0)
        if len(pts) >= 3 and np.linalg.matrix_rank(centred, tol=1e-9) == 2:
            from scipy.spatial import ConvexHull

            hull = ConvexHull(pts)
            self.equations = hull.equations
            verts = pts[hull.vertices]
            self.edges = list(zip(verts, np.roll(verts, -1, axis=0)))
        else:  # collinear: the hull is the segment between the two extreme points
            direction = centred[np.argmax(np.linalg.norm(centred, axis=1))]
            proj = centred @ direction
            self.edges = [(pts[np.argmin(proj)], pts[np.argmax(proj)])]

    def distance(self, q: np.ndarray) -> float:
        q = np.asarray(q, float)
        if self.single is not None:
            return float(np.linalg.norm(q - self.single))
        # inside when on the inner side of every facet (equations: normal . x + offset <= 0)
        if self.equations is not None and np.all(self.equations[:, :2] @ q + self.equations[:, 2] <= 1e-12):
            return 0.0
        return min(_segment_distance(q, a, b) for a, b in self.edges)


def hull_distance(points: np.ndarray, q: np.ndarray) -> float:
    """Euclidean distance from ``q`` to the convex hull of ``points`` (2-D; 0 inside; works for collinear points)."""
    return _Hull(points).distance(q)


# ------------------------------------------------------------------------------------------------------ fits


@dataclass
class Component:
    """One candidate form fitted to the points (after dropping terms that sat on a bound), with its Akaike weight."""

    form: Form
    theta: np.ndarray
    stderr: np.ndarray
    chi2: float  # the weighted residual sum of squares the fit minimised
    aicc: float
    weight: float = 1.0
    requested: str = ""  # the candidate it came from (before nested reduction)

    @property
    def params(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.form.params, self.theta)}

    def as_dict(self) -> dict[str, Any]:
        return {"form": self.form.name, "formula": self.form.text, "from": self.requested, "weight": self.weight,
                "aicc": self.aicc, "chi2": self.chi2, "params": self.params,
                "stderr": {k: float(v) for k, v in zip(self.form.params, self.stderr)}}


@dataclass
class ErrorFit:
    """A fitted error model for one split (one model, one metric): one form or the Akaike-weighted average.

    ``params``/``stderr`` are those of the highest-weight component (amplitudes in ``unit``); ``M0``/``C0``/``S0``
    the reference scales; ``components`` every candidate with its weight.
    """

    split: str
    metric: str
    unit: str
    form: str
    params: dict[str, float]
    stderr: dict[str, float]
    M0: float
    C0: float
    points: Points
    r2: float
    rmse: float
    loo_rmse: float
    aicc: float
    aicc_by_form: dict[str, float] = field(default_factory=dict)
    bootstrap: np.ndarray | None = None
    max_factor: float = DEFAULT_MAX_FACTOR
    warnings: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    S0: float = math.nan
    steps_by_budget: dict[int, float] = field(default_factory=dict)
    loo_errors: np.ndarray | None = None  # per point: prediction without it minus its measured mean

    # -- evaluation --------------------------------------------------------------------------------------------
    def steps_for(self, budget: Any) -> np.ndarray:
        """The protocol's training steps at ``budget`` conformers: log-interpolated between the measured budgets,
        the nearest measured budget's outside them (NaN when the runs record no steps)."""
        budget = np.atleast_1d(np.asarray(budget, float))
        if not self.steps_by_budget:
            return np.full(budget.shape, math.nan)
        b = np.array(sorted(self.steps_by_budget), float)
        s = np.array([self.steps_by_budget[int(k)] for k in b], float)
        return np.exp(np.interp(np.log(budget), np.log(b), np.log(s)))

    def _x(self, M: np.ndarray, C: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
        M, C = np.broadcast_arrays(np.asarray(M, float), np.asarray(C, float))
        if S is None:
            S = self.steps_for(M * C)
        s = np.asarray(S, float) / self.S0 if math.isfinite(self.S0) else np.ones_like(M)
        s = np.where(np.isfinite(s), s, 1.0)
        return np.vstack([M / self.M0, C / self.C0, np.broadcast_to(s, M.shape)])

    def evaluate(self, M: Any, C: Any, theta: np.ndarray | None = None, steps: Any = None) -> np.ndarray:
        """The model at (M, C) (arrays broadcast; steps from :meth:`steps_for` unless given) with the best-fit
        parameters or the given ``theta`` (a row of :meth:`parameter_samples`)."""
        x = self._x(np.atleast_1d(M), np.atleast_1d(C), None if steps is None else np.atleast_1d(steps))
        return _average(self.components, self.theta if theta is None else theta, x)

    @property
    def theta(self) -> np.ndarray:
        """Every component's weight and parameters, concatenated (the layout of a bootstrap draw)."""
        return np.concatenate([[c.weight, *c.theta] for c in self.components])

    @property
    def formula(self) -> str:
        if len(self.components) == 1:
            return self.components[0].form.text
        parts = ", ".join(f"{c.form.name} {c.weight:.2f}" for c in sorted(self.components, key=lambda c: -c.weight))
        return f"Akaike-weighted average ({parts})"

    def extrapolation(self, M: float, C: float) -> float:
        """How far (M, C) lies outside the fitted region, as a multiplicative factor (1.0 = inside)."""
        hull = self.__dict__.get("_hull")
        if hull is None:  # built once per fit: recommendations ask this for hundreds of candidates
            hull = self.__dict__["_hull"] = _Hull(np.log(np.column_stack([self.points.M, self.points.C])))
        return math.exp(hull.distance(np.log([M, C])))

    def check(self, M: float, C: float) -> None:
        """Raise :class:`ExtrapolationError` when (M, C) is beyond ``max_factor`` outside the fitted region."""
        f = self.extrapolation(M, C)
        if f > self.max_factor * (1 + 1e-9):
            raise ExtrapolationError(
                f"(M={M:g}, C={C:g}) lies a factor {f:.1f} outside the (M, C) region the {self.split} error model "
                f"was fitted on (M {self.points.M.min():g}..{self.points.M.max():g}, "
                f"C {self.points.C.min():g}..{self.points.C.max():g}); predictions further than a factor "
                f"{self.max_factor:g} are refused. Run a sweep that covers it, or allow extrapolation explicitly."
            )

    def predict(
        self, M: Any, C: Any, *, allow_extrapolation: bool = False, level: float = 0.9
    ) -> dict[str, np.ndarray]:
        """Predicted error at (M, C) with a ``level`` interval from the bootstrap (or the covariance).

        Returns ``mean`` (best fit), ``low``, ``high`` and ``extrapolated`` (factor > 1), arrays like ``M``.
        """
        M, C = np.broadcast_arrays(np.atleast_1d(np.asarray(M, float)), np.atleast_1d(np.asarray(C, float)))
        factors = np.array([self.extrapolation(m, c) for m, c in zip(M, C)])
        if not allow_extrapolation and (factors > self.max_factor * (1 + 1e-9)).any():
            i = int(np.argmax(factors))
            self.check(M[i], C[i])
        best = self.evaluate(M, C)
        samples = self.parameter_samples()
        if samples is not None and len(samples) > 1:
            preds = np.array([self.evaluate(M, C, t) for t in samples])
            q = (1 - level) / 2
            low, high = np.quantile(preds, q, axis=0), np.quantile(preds, 1 - q, axis=0)
            low, high = np.minimum(low, best), np.maximum(high, best)
        else:
            low = high = best
        return {"mean": best, "low": low, "high": high, "extrapolation": factors, "extrapolated": factors > 1.0 + 1e-9}

    def parameter_samples(self, n: int = 400, seed: int = 0) -> np.ndarray | None:
        """Bootstrap draws when available, else draws from each component's covariance (clipped to the bounds,
        weights fixed)."""
        if self.bootstrap is not None and len(self.bootstrap) > 1:
            return self.bootstrap
        rng = np.random.default_rng(seed)
        cols = []
        for c in self.components:
            if not np.all(np.isfinite(c.stderr)):
                return None
            lo, hi = _bounds(c.form, self.points.mean)
            draws = np.clip(c.theta + rng.normal(size=(n, len(c.theta))) * c.stderr, lo, hi)
            cols += [np.full((n, 1), c.weight), draws]
        return np.hstack(cols) if cols else None

    def residuals(self) -> np.ndarray:
        """Measured mean minus fitted value at every point (at the point's own steps)."""
        S = self.points.S if self.points.S is not None and np.all(np.isfinite(self.points.S)) else None
        x = self._x(self.points.M, self.points.C, S)
        return self.points.mean - _average(self.components, self.theta, x)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (parameters, uncertainties, quality, the fitted range)."""
        return {
            "split": self.split,
            "metric": self.metric,
            "unit": self.unit,
            "form": self.form,
            "formula": self.formula,
            "M0": self.M0,
            "C0": self.C0,
            "S0": self.S0,
            "params": self.params,
            "stderr": self.stderr,
            "components": [c.as_dict() for c in self.components],
            "r2": self.r2,
            "rmse": self.rmse,
            "loo_rmse": self.loo_rmse,
            "aicc": self.aicc,
            "aicc_by_form": self.aicc_by_form,
            "n_points": len(self.points),
            "n_runs": int(self.points.n.sum()),
            "M_range": [float(self.points.M.min()), float(self.points.M.max())],
            "C_range": [float(self.points.C.min()), float(self.points.C.max())],
            "steps_by_budget": {str(k): v for k, v in self.steps_by_budget.items()},
            "max_factor": self.max_factor,
            "acceptance": acceptance(self),
            "warnings": self.warnings,
        }


def _average(components: list[Component], theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.shape[1])
    i = 0
    for c in components:
        k = len(c.theta)
        w = float(theta[i])
        if w > 0:
            out = out + w * c.form.func(x, *theta[i + 1:i + 1 + k])
        i += 1 + k
    return out


def _bounds(form: Form, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = form.params
    top = float(np.max(y)) if len(y) else 1.0
    lo = np.array([_LEVEL_MIN if k.startswith(_LEVEL) else 0.0 for k in names])
    hi = np.array([_EXPONENT_MAX if k in _EXPONENTS else (top if k == "E_inf" else np.inf) for k in names])
    return lo, hi


def _starts(form: Form, y: np.ndarray) -> list[np.ndarray]:
    span = max(float(np.ptp(y)), 1e-3 * max(float(np.max(y)), 1e-12))
    floor = 0.5 * float(np.min(y))
    out = []
    for e in (0.25, 0.5, 1.0):
        guess = {"E_inf": floor, "a": span, "b": span, "alpha": e, "beta": e, "gamma": e, "delta": e,
                 "a_inf": floor}
        if "floor" not in form.terms:
            guess["a"] = guess["b"] = 0.5 * float(np.mean(y))
        if set(_PARALLEL) & set(form.terms):  # two routes in parallel give about half of either
            guess["a"], guess["b"] = 2 * guess["a"], 2 * guess["b"]
        out.append(np.array([1.0 if k.startswith(_LEVEL) else guess[k] for k in form.params]))  # levels: 1
    return out


def _sigma(points: Points) -> np.ndarray | None:
    sem = points.std / np.sqrt(np.maximum(points.n, 1))
    if not np.any(sem > 0):
        return None
    return np.maximum(sem, np.median(sem[sem > 0]))


def _chi2(form: Form, theta: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None) -> float:
    r = (form.func(x, *theta) - y) / (sigma if sigma is not None else 1.0)
    return float(r @ r)


# A start that has not converged after this many steps walks along a flat direction (an amplitude growing while its
# exponent goes to 0) and is dropped anyway; the study's fits converge in under 200.
_MAX_EVALUATIONS = 5000


def _curve_fit(
    form: Form, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None, starts: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best parameters, covariance and weighted chi^2 over ``starts``."""
    from scipy.optimize import curve_fit

    lo, hi = _bounds(form, y)
    best = None
    for p0 in starts:
        p0 = np.clip(p0, lo, np.where(np.isfinite(hi), hi, p0))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theta, cov = curve_fit(
                    form.func, x, y, p0=p0, sigma=sigma, absolute_sigma=False, bounds=(lo, hi), method="trf",
                    jac=form.jac, maxfev=_MAX_EVALUATIONS, x_scale="jac",
                )
        except (RuntimeError, ValueError):
            continue
        chi2 = _chi2(form, theta, x, y, sigma)
        if best is None or chi2 < best[2]:
            best = (theta, cov, chi2)
    if best is None:
        raise MlipdivError(f"the {form.name} error model did not converge on these points")
    return best


def _aicc(chi2: float, n: int, k: int) -> float:
    """AICc from the weighted chi^2 (Gaussian errors with known relative weights and one fitted scale)."""
    chi2 = max(chi2, 1e-300)
    aic = n * math.log(chi2 / n) + 2 * k
    return aic + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)


def _akaike_weights(aiccs: list[float]) -> np.ndarray:
    a = np.array(aiccs, float)
    if not np.isfinite(a).any():
        w = np.zeros(len(a))
        w[0] = 1.0
        return w
    d = np.where(np.isfinite(a), a - np.nanmin(np.where(np.isfinite(a), a, np.nan)), np.inf)
    w = np.exp(-0.5 * d)
    return w / w.sum()


@dataclass(frozen=True)
class _Scaled:
    """The points as every fit sees them: (M/M0, C/C0, S/S0) against the means, with their weights."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    M0: float
    C0: float
    S0: float


def _scale(points: Points) -> _Scaled:
    M0 = float(np.exp(np.mean(np.log(points.M))))
    C0 = float(np.exp(np.mean(np.log(points.C))))
    if points.S is not None and np.all(np.isfinite(points.S)) and np.all(points.S > 0):
        S0 = float(np.exp(np.mean(np.log(points.S))))
        s = points.S / S0
    else:
        S0, s = math.nan, np.ones(len(points))
    return _Scaled(x=np.vstack([points.M / M0, points.C / C0, s]), y=points.mean, sigma=_sigma(points), M0=M0,
                   C0=C0, S0=S0)


_AMPLITUDE_TOL = 1e-4  # relative to the largest mean: an amplitude below it sits on its bound 0
_EXPONENT_TOL = 1e-3  # an exponent below it makes its term a constant (the floor's job)


def _amplitude_tol(y: np.ndarray) -> float:
    """The amplitude below which a term (or MorCT's limit a_inf) sits on its bound 0 for means ``y``."""
    return _AMPLITUDE_TOL * max(float(np.max(np.abs(y))), 1e-12)


def _at_bounds(form: Form, theta: np.ndarray, y: np.ndarray) -> list[str]:
    """Terms whose parameters sit on a lower bound: a zero amplitude, or a zero exponent (a constant term)."""
    tol = _amplitude_tol(y)
    p = dict(zip(form.params, theta))
    out = []
    for t in form.terms:
        if t == "S":  # free levels: none sits on a bound that makes the factor meaningless
            continue
        if t in ("SM", "SC"):  # a step exponent at 0: steps do not change that route
            if p[_TERMS[t][0]] <= _EXPONENT_TOL:
                out.append(t)
            continue
        if t in _PARALLEL:  # (MorCT's limit a_inf at 0 is _fit_nested's to handle: that is MorC)
            if _amplitude(t, p) <= tol or max(p["alpha"], p["beta"]) <= _EXPONENT_TOL:
                out.append(t)
            continue
        names = _TERMS[t]
        amp = p[names[0]]
        if amp <= tol or (len(names) > 1 and p[names[1]] <= _EXPONENT_TOL):
            out.append(t)
    return out


def _amplitude(term: str, p: Mapping[str, float]) -> float:
    """The smallest amplitude of a decreasing (or steps) term: 0 means the term is 0."""
    return min(p[k] for k in _TERMS[term] if k in ("a", "b", "d"))


_ROUTE_SHARE = 1e-3  # MorC is one power law where the other route's error is 1,000 times larger at every point


def _single_route(form: Form, theta: np.ndarray, x: np.ndarray) -> tuple[str | None, str]:
    """``("M", why)`` or ``("C", why)`` when the parallel term of ``form`` is in effect that one route: the other
    route's error is so large that it never limits at any fitted point, or its exponent sits on 0 (a constant cap
    whose exponent carries no information); ``(None, "")`` otherwise."""
    parallel = [t for t in form.terms if t in _PARALLEL]
    if not parallel:
        return None, ""
    p = dict(zip(form.params, theta))
    u, v = _routes(x[0], x[1], [p[k] for k in _TERMS[parallel[0]]])
    with np.errstate(divide="ignore", invalid="ignore"):
        share_m, share_c = u / (u + v), v / (u + v)  # the term is u * share_c = v * share_m
    term = _TERM_TEXT[parallel[0]]
    if np.all(share_m < _ROUTE_SHARE):  # u << v everywhere: the term is u, the M route
        return "M", f"one route of {term} never limited the error"
    if np.all(share_c < _ROUTE_SHARE):
        return "C", f"one route of {term} never limited the error"
    if p["alpha"] <= _EXPONENT_TOL < p["beta"]:
        return "C", f"the M route of {term} had exponent alpha = 0 (a constant cap)"
    if p["beta"] <= _EXPONENT_TOL < p["alpha"]:
        return "M", f"the C route of {term} had exponent beta = 0 (a constant cap)"
    return None, ""


def _fit_nested(form: Form, data: _Scaled, x: np.ndarray | None = None, y: np.ndarray | None = None,
                sigma: np.ndarray | None = None) -> tuple[Form, np.ndarray, np.ndarray, float, list[str]]:
    """Fit ``form``; while a term sits on its bound, drop it and refit the nested form. Returns the final form,
    parameters, covariance, weighted chi^2 and the notes on what was dropped."""
    x = data.x if x is None else x
    y = data.y if y is None else y
    sigma = data.sigma if sigma is None else sigma
    notes: list[str] = []
    while True:
        theta, cov, chi2 = _curve_fit(form, x, y, sigma, _starts(form, y))
        route, why = _single_route(form, theta, x)
        if route is not None:
            notes.append(f"{form.name}: {why}; the nested form with {_TERM_TEXT[route]} alone was used")
            limited = route == "M" and "MorCT" in form.terms  # its M route is a_inf + a M^-alpha: a floor and M
            form = form.with_terms((*(t for t in form.terms if t not in _PARALLEL), route,
                                    *(("floor",) if limited else ())))  # keeps its step exponent
            continue
        p = dict(zip(form.params, theta))
        if "MorCT" in form.terms and p["a_inf"] <= _amplitude_tol(y):
            notes.append(f"{form.name}: the M route's limit a_inf sat on 0; the nested form {_TERM_TEXT['MorC']} "
                         "was used")
            form = form.with_terms(tuple("MorC" if t == "MorCT" else t for t in form.terms))
            continue
        dropped = _at_bounds(form, theta, y)
        decreasing = [t for t in form.terms if t in _DECREASING]
        if set(decreasing) <= set(dropped):  # keep one decreasing term: the model must say something about M, C
            dropped = [t for t in dropped if t not in decreasing]
        if not dropped:
            return form, theta, cov, chi2, notes
        for t in dropped:
            if t in ("SM", "SC"):
                notes.append(f"{form.name}: the step exponent {_TERMS[t][0]} sat on 0 (steps do not change that "
                             "route); the nested form without it was used")
                continue
            what = f"E_inf = {p['E_inf']:.3g}" if t == "floor" else f"term {_TERM_TEXT[t]} " + (
                "with amplitude 0" if _amplitude(t, p) <= _amplitude_tol(y) else
                "with exponent 0 (a constant)")
            notes.append(f"{form.name}: {what} sat on its bound; the nested form without it was used")
        nested = form.without(dropped)
        if "floor" not in nested.terms and any(_amplitude(t, p) > 0 for t in dropped if t in _DECREASING):
            nested = nested.with_terms((*nested.terms, "floor"))  # a constant term is the floor
        if nested == form:
            return form, theta, cov, chi2, notes
        form = nested


def _stderr(cov: np.ndarray, k: int) -> np.ndarray:
    """Parameter standard errors from the covariance; infinite when the points do not identify the parameters."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(k, np.inf)


def _candidates(points: Points, data: _Scaled, form: str) -> list[Form]:
    knots = tuple(float(k) for k in np.unique(data.x[2])) if points.has_steps else ()
    if form == AVERAGE:
        bases = list(FORMS.values())
        if points.has_steps:
            bases += [_form((*f.terms, "S"), knots, data.S0) for f in bases] + [_with_step_power(f) for f in bases]
        return bases
    f = form_by_name(form)
    if set(_STEP_TERMS) & set(f.terms) and not points.has_steps:
        raise MlipdivError(f"the {form} form needs runs with recorded training steps at more than one step count")
    return [_form(f.terms, knots, data.S0) if "S" in f.terms else f]


_MIN_WEIGHT = 1e-3  # candidates with a smaller Akaike weight leave the average (and the bootstrap's refits)


def _fit_components(points: Points, data: _Scaled, candidates: list[Form], split: str, single: bool
                    ) -> tuple[list[Component], list[str], list[Component]]:
    """The averaged components (weight >= _MIN_WEIGHT, renormalised), notes, and every candidate fitted."""
    n = len(points)
    comps: dict[tuple[str, ...], Component] = {}
    notes: list[str] = []
    for cand in candidates:
        k = len(cand.params)
        if k > n:
            if single:
                raise MlipdivError(
                    f"{split or 'this split'}: the {cand.name} model has {k} parameters but only {n} distinct "
                    f"points were run; run more sweep points (or use --form total, 3 parameters)")
            continue
        try:
            form, theta, cov, chi2, dropped = _fit_nested(cand, data)
        except MlipdivError:
            if single:
                raise
            continue
        notes += dropped
        comp = Component(form, theta, _stderr(cov, len(theta)), chi2, _aicc(chi2, n, len(theta)), 1.0, cand.name)
        if form.terms not in comps or chi2 < comps[form.terms].chi2:
            comps[form.terms] = comp
    if not comps or (not single and not any(math.isfinite(c.aicc) for c in comps.values())):
        raise MlipdivError(f"{split or 'this split'}: only {n} distinct points were run, too few for any error "
                           "model with a finite AICc; run more sweep points")
    out = list(comps.values())
    weights = _akaike_weights([c.aicc for c in out])
    kept = [(c, w) for c, w in zip(out, weights) if w >= _MIN_WEIGHT] or [(out[int(np.argmax(weights))], 1.0)]
    total = sum(w for _, w in kept)
    for c, w in kept:
        c.weight = float(w / total)
    return [c for c, _ in kept], sorted(set(notes)), out


def _refit(components: list[Component], x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None
           ) -> np.ndarray | None:
    """Every component refitted (from its best parameters) to other data, with new Akaike weights: one draw."""
    parts, aiccs = [], []
    for c in components:
        try:
            theta, _, chi2 = _curve_fit(c.form, x, y, sigma, [c.theta])
        except MlipdivError:
            return None
        parts.append(theta)
        aiccs.append(_aicc(chi2, len(y), len(theta)))
    w = _akaike_weights(aiccs) if len(components) > 1 else np.ones(1)
    return np.concatenate([[wi, *t] for wi, t in zip(w, parts)])


def _leave_one_out(components: list[Component], data: _Scaled) -> np.ndarray:
    """Refit without each point and predict it (predicted minus measured; all nan when the fit interpolates)."""
    x, y, sigma = data.x, data.y, data.sigma
    n, k = len(y), max(len(c.theta) for c in components)
    if n <= k:
        return np.full(n, np.nan)
    loo = []
    for i in range(n):
        keep = np.arange(n) != i
        draw = _refit(components, x[:, keep], y[keep], None if sigma is None else sigma[keep])
        loo.append(math.nan if draw is None else float(_average(components, draw, x[:, [i]])[0] - y[i]))
    return np.array(loo)


def _seed_sets(points: Points) -> list[tuple[int, ...]]:
    """Each point's seeds as a hashable key: points with the same key are resampled together."""
    seeds = points.seeds if points.seeds is not None else [np.arange(len(v)) for v in points.values]
    return [tuple(int(s) for s in ss) for ss in seeds]


def _joint_resample(keys: list[tuple[int, ...]], rng: np.random.Generator) -> dict[tuple[int, ...], np.ndarray]:
    """One resample (indices into the seeds) per distinct seed set, in a fixed order so that two fits drawing
    from equal streams draw the same resamples."""
    return {key: rng.integers(0, len(key), len(key)) for key in sorted(set(keys))}


def _rmse(errors: np.ndarray) -> float:
    """RMSE over the finite entries (NaN when there are none)."""
    return float(np.sqrt(np.nanmean(np.square(errors)))) if np.isfinite(errors).any() else math.nan


def _bootstrap(points: Points, components: list[Component], data: _Scaled, n_boot: int, seed: int
               ) -> np.ndarray | None:
    """Refit on seeds resampled jointly: one resample per distinct seed set, shared by every point with that set
    (and, through the same stream, by the other split's fit)."""
    if not (n_boot > 0 and np.any(points.n > 1)):
        return None
    keys = _seed_sets(points)
    sigma = data.sigma
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        pick = _joint_resample(keys, rng)
        vals = [v[pick[key]] for v, key in zip(points.values, keys)]
        yb = np.array([v.mean() for v in vals])
        sb = None
        if sigma is not None:
            sem = np.array([v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for v in vals])
            sb = np.maximum(sem, sigma.min())
        draw = _refit(components, data.x, yb, sb)
        if draw is not None:
            draws.append(draw)
    return np.array(draws) if len(draws) > 1 else None


def _steps_by_budget(points: Points) -> dict[int, float]:
    if points.S is None or not np.all(np.isfinite(points.S)):
        return {}
    return {b: float(np.median(points.S[idx])) for b, idx in points.budget_points().items() if len(idx)}


def fit_error_model(
    points: Points,
    *,
    split: str = "",
    metric: str = "forces_mae",
    unit: str = "",
    form: str = AVERAGE,
    n_boot: int = 200,
    seed: int = 0,
    max_factor: float = DEFAULT_MAX_FACTOR,
    compare: bool = True,
) -> ErrorFit:
    """Fit ``form`` (or the Akaike-weighted average of the candidates) to ``points``; see the module docstring."""
    if form != AVERAGE:
        form_by_name(form)  # refuse an unknown name before anything else
    data = _scale(points)
    single = form != AVERAGE
    components, notes, fitted = _fit_components(points, data, _candidates(points, data, form), split, single)
    aicc_by_form = {c.requested: c.aicc for c in fitted}
    if single and compare:
        others = [f for name, f in FORMS.items() if name != form and len(f.params) <= len(points)]
        try:
            _, _, extra = _fit_components(points, data, others, split, False)
            aicc_by_form.update({c.requested: c.aicc for c in extra})
        except MlipdivError:
            pass
    top = max(components, key=lambda c: c.weight)
    loo = _leave_one_out(components, data)
    x = data.x
    resid = _average(components, np.concatenate([[c.weight, *c.theta] for c in components]), x) - data.y
    rss = float(resid @ resid)
    k = len(top.theta)
    if len(points) <= k:
        notes.append(f"{len(points)} points for {k} parameters: the fit interpolates, quality cannot be judged")
    if not np.all(np.isfinite(top.stderr)):
        notes.append("some parameters are not identified by these points (infinite covariance); intervals come "
                     "from the bootstrap only")
    at_top = [n for n, v in top.params.items() if n in ("alpha", "beta") and v >= _EXPONENT_MAX - 1e-3]
    if at_top:
        notes.append(f"{', '.join(at_top)} at the upper bound {_EXPONENT_MAX:g}: the data only say the term falls "
                     "off fast")
    ss_tot = float(((data.y - data.y.mean()) ** 2).sum())
    fit = ErrorFit(
        split=split, metric=metric, unit=unit, form=form if single else AVERAGE,
        params=top.params, stderr={n: float(v) for n, v in zip(top.form.params, top.stderr)},
        M0=data.M0, C0=data.C0, points=points,
        r2=1.0 - rss / ss_tot if ss_tot > 0 else float("nan"),
        rmse=math.sqrt(rss / len(data.y)),
        loo_rmse=_rmse(loo),
        loo_errors=loo,
        aicc=top.aicc, aicc_by_form=aicc_by_form,
        bootstrap=_bootstrap(points, components, data, n_boot, seed),
        max_factor=max_factor, warnings=notes, components=components, S0=data.S0,
        steps_by_budget=_steps_by_budget(points),
    )
    if single and compare:
        best = min(aicc_by_form, key=aicc_by_form.__getitem__)
        gap = aicc_by_form[form] - aicc_by_form[best]
        if best != form and gap > 2:
            fit.warnings.append(
                f"AICc prefers the '{best}' form over '{form}' by {gap:.1f}"
                + (": these points cannot tell how M and C trade off beyond their product" if best == "total"
                   else ""))
    return fit


# ------------------------------------------------------------------------------------------------ acceptance


def acceptance(fit: ErrorFit) -> dict[str, Any]:
    """The checks a fit must pass before its advice is trusted, computed, never assumed.

    - at every measured budget the mean residual (measured minus fitted, over that budget's fixed-budget points)
      lies within one standard error of 0; the standard error comes from the per-seed means of the residuals (the
      seeds every point of the budget has: seed effects shared by the points are kept), else from the points'
      standard errors as if independent;
    - the leave-one-out RMSE is below the median seed std of the points.
    """
    pts = fit.points
    resid = fit.residuals()
    fitted = pts.mean - resid
    budgets = []
    for b, idx in pts.budget_points().items():
        if len(idx) < 2:
            continue
        mean_r = float(resid[idx].mean())
        se = math.nan
        if pts.seeds is not None:
            common = set.intersection(*(set(int(s) for s in pts.seeds[i]) for i in idx))
            if len(common) >= 2:
                per_seed = []
                for s in sorted(common):
                    per_seed.append(np.mean([pts.values[i][list(pts.seeds[i]).index(s)] - fitted[i] for i in idx]))
                se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed)))
        if not math.isfinite(se):
            sem = pts.std[idx] / np.sqrt(np.maximum(pts.n[idx], 1))
            se = float(np.sqrt(np.sum(sem**2)) / len(idx))
        ok = bool(abs(mean_r) <= se) if se > 0 else bool(abs(mean_r) < 1e-12)
        budgets.append({"budget": b, "n_points": len(idx), "mean_residual": mean_r, "standard_error": se,
                        "ok": ok})
    stds = pts.std[pts.std > 0]
    median_std = float(np.median(stds)) if len(stds) else math.nan
    worst = None
    if fit.loo_errors is not None and np.isfinite(fit.loo_errors).any():
        i = int(np.nanargmax(np.abs(fit.loo_errors)))
        worst = {"M": float(pts.M[i]), "C": float(pts.C[i]), "error": float(fit.loo_errors[i])}
    loo_ok = bool(math.isfinite(fit.loo_rmse) and math.isfinite(median_std) and fit.loo_rmse < median_std)
    return {
        "budgets": budgets,
        "residuals_ok": bool(budgets) and all(x["ok"] for x in budgets),
        "loo_rmse": fit.loo_rmse,
        "loo_worst": worst,
        "median_seed_std": median_std,
        "loo_ok": loo_ok,
        "ok": bool(budgets) and all(x["ok"] for x in budgets) and loo_ok,
    }


def loo_calibration(fit: ErrorFit, n_sim: int = 100, seed: int = 0) -> dict[str, Any]:
    """How large a leave-one-out RMSE the seed noise alone produces when the fit is the truth.

    Why: the LOO error of a point holds that point's own seed noise (its standard error) and, at the edge of the
    grid, an extrapolation from noisy neighbours. With errors whose seed std differs tenfold between points, the
    noisiest points set the RMSE while the median std is set by the quiet ones, so a correct model can fail "LOO
    RMSE below the median seed std" by noise alone. This asks the question the check stands for: synthetic studies
    are drawn from the fitted values plus the measured seed deviations (centred, scaled to unbiased variance,
    resampled jointly by seed set like the bootstrap), refitted with the same candidate forms, and their LOO RMSEs
    give the distribution a correct model would show. ``p_value``: the fraction at least as large as the measured
    one; ``consistent``: p >= 0.05.
    """
    pts = fit.points
    fitted = pts.mean - fit.residuals()
    keys = _seed_sets(pts)
    devs = [(v - v.mean()) * math.sqrt(len(v) / (len(v) - 1)) if len(v) > 1 else np.zeros(len(v))
            for v in pts.values]
    rng = np.random.default_rng(seed)
    sims = []
    for _ in range(n_sim):
        pick = _joint_resample(keys, rng)
        values = [f + d[pick[key]] for f, d, key in zip(fitted, devs, keys)]
        fake = replace(pts, values=values, mean=np.array([v.mean() for v in values]),
                       std=np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]))
        rmse = _rmse(_leave_one_out(fit.components, _scale(fake)))
        if math.isfinite(rmse):
            sims.append(rmse)
    if not sims or not math.isfinite(fit.loo_rmse):
        return {"n_sim": len(sims), "expected": math.nan, "high": math.nan, "p_value": math.nan,
                "consistent": False}
    s = np.array(sims)
    p = float(np.mean(s >= fit.loo_rmse))
    return {"n_sim": len(s), "expected": float(np.median(s)), "high": float(np.quantile(s, 0.95)), "p_value": p,
            "consistent": p >= 0.05}


def select(df: Any, model: str | None = None, strategy: str | None = None) -> tuple[Any, str, str]:
    """Rows of one model and one strategy; ambiguity is an error that names the choices."""
    out, chosen = _with_strategy(df), {}
    for col, want in (("model", model), ("strategy", strategy)):
        have = sorted(out[col].astype(str).unique())
        if want is None:
            if len(have) > 1:
                raise MlipdivError(f"the results hold {col}s {', '.join(have)}; choose one with --{col}")
            want = have[0]
        elif want not in have:
            raise MlipdivError(f"no runs with {col} {want!r} in the results (have: {', '.join(have)})")
        out = out[out[col].astype(str) == want]
        chosen[col] = want
    return out, chosen["model"], chosen["strategy"]


def fit_results(
    df: Any,
    *,
    metric: str = "forces_mae",
    model: str | None = None,
    strategy: str | None = None,
    form: str = AVERAGE,
    splits: Iterable[str] = SPLITS,
    n_boot: int = 200,
    max_factor: float = DEFAULT_MAX_FACTOR,
) -> dict[str, ErrorFit]:
    """Fit the error model for each split of one model's protocol runs; metric values converted to meV units."""
    if metric not in METRICS:
        raise MlipdivError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    unit, scale = METRICS[metric]
    sub, _, _ = select(fitted_rows(protocol_rows(df)), model, strategy)
    return {
        s: fit_error_model(
            aggregate(sub, s, metric, scale), split=s, metric=metric, unit=unit, form=form, n_boot=n_boot,
            max_factor=max_factor,
        )
        for s in splits
    }
