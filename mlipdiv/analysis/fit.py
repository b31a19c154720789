"""Error models fitted to finished runs: held-out error as a function of molecules M and conformers per molecule C.

The form (per test split, per model, per metric)::

    E(M, C) = E_inf + a * (M / M0) ** -alpha + b * (C / C0) ** -beta

Why this form. It is the additive two-resource power law used for compute-optimal scaling (Hoffmann et al. 2022,
"Training Compute-Optimal Large Language Models", their L(N, D) = E + A/N^a + B/D^b), with the two resources being
the two diversities of the study: ``a (M/M0)^-alpha`` is the excess error from incomplete coverage of chemical space
(which molecules), ``b (C/C0)^-beta`` the excess error from incomplete coverage of each molecule's conformational
space, and ``E_inf`` the error left with unlimited data of both kinds (model capacity, training length, label noise).
Each term is non-negative and decreasing, so more of either resource never hurts, and the fit itself says which
resource a split is sensitive to: on ``test_molecules`` we expect ``a`` to dominate, on ``test_conformers`` ``b``.
``M0`` and ``C0`` are the geometric means of the fitted points, so ``a`` and ``b`` read as "error due to too few
molecules / conformers at the centre of the data", in the metric's unit.

Two nested alternatives are fitted beside it and compared by AICc (small-sample corrected AIC):
``no_floor`` (E_inf = 0) and ``total`` (E_inf + a (M C / N0)^-alpha: only the number of conformers matters, the null
hypothesis that the split between diversities is irrelevant). The default for advice is ``full``; the comparison is
reported so a user sees when the data cannot tell the forms apart.

Fitting: ``scipy.optimize.curve_fit`` (trust-region reflective, bounds: amplitudes >= 0, exponents in [0, 3],
E_inf in [0, max observed]) on per-(M, C) means over seeds, each weighted by its standard error over seeds
(std / sqrt(n_seeds), floored at the median standard error so a point whose three seeds agree by chance does not
dominate); ``absolute_sigma=False``, so the covariance is scaled by the residuals. Several starting exponents are
tried and the lowest chi^2 kept.

Fit quality: R^2 and RMSE of the means, leave-one-point-out RMSE (refit without each (M, C) point and predict it),
AICc. Uncertainty: parameter standard errors from the covariance, and a bootstrap over seeds (resample the seeds of
every point with replacement, refit) from which prediction intervals are taken.

Extrapolation guard: the fitted points span a region of the (log M, log C) plane (their convex hull; a segment when
only one experiment was run). A prediction further than ``log(max_factor)`` from that region (default factor 2:
twice beyond the largest M, half the smallest C, ...) raises :class:`ExtrapolationError` unless asked for
explicitly; then it is marked ``extrapolated``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import MlipdivError
from mlipdiv.jobs.sweep import RESULT_COLUMNS  # the sweep table's columns (what load_results reads)
from mlipdiv.names import SplitName
from mlipdiv.units import EV_TO_MEV

__all__ = [
    "FORMS",
    "METRICS",
    "SPLITS",
    "ErrorFit",
    "ExtrapolationError",
    "Points",
    "aggregate",
    "fit_error_model",
    "fit_results",
    "hull_distance",
    "load_results",
    "read_results_upload",
    "results_choices",
    "results_folders",
]

SPLITS = (SplitName.TEST_MOLECULES, SplitName.TEST_CONFORMERS)
METRICS = {  # results.csv column -> (display unit, factor from the stored eV unit)
    "forces_mae": ("meV/Å", EV_TO_MEV),
    "energy_mae_per_atom": ("meV/atom", EV_TO_MEV),
    "energy_mae": ("meV", EV_TO_MEV),
}
DEFAULT_MAX_FACTOR = 2.0


class ExtrapolationError(MlipdivError):
    """A prediction was asked for far outside the (M, C) region the error model was fitted on."""


# ------------------------------------------------------------------------------------------------------- forms


def _full(x: np.ndarray, e_inf: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
    m, c = x
    return e_inf + a * m**-alpha + b * c**-beta


def _no_floor(x: np.ndarray, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
    m, c = x
    return a * m**-alpha + b * c**-beta


def _total(x: np.ndarray, e_inf: float, a: float, alpha: float) -> np.ndarray:
    m, c = x
    return e_inf + a * (m * c) ** -alpha


@dataclass(frozen=True)
class Form:
    name: str
    func: Callable[..., np.ndarray]
    params: tuple[str, ...]
    text: str


FORMS: dict[str, Form] = {
    "full": Form("full", _full, ("E_inf", "a", "alpha", "b", "beta"), "E_inf + a·(M/M0)^-alpha + b·(C/C0)^-beta"),
    "no_floor": Form("no_floor", _no_floor, ("a", "alpha", "b", "beta"), "a·(M/M0)^-alpha + b·(C/C0)^-beta"),
    "total": Form("total", _total, ("E_inf", "a", "alpha"), "E_inf + a·(M·C/(M0·C0))^-alpha"),
}
_EXPONENT_MAX = 3.0


# ------------------------------------------------------------------------------------------------------ data


def load_results(paths: str | Path | Iterable[str | Path]) -> Any:
    """Read one or more sweep ``results.csv`` (a file or a sweep directory) into one pandas DataFrame.

    A directory without ``results.csv`` of its own contributes every ``results.csv`` below it. Rows repeated across
    files (same ``run_id`` and ``split``) are kept once. An optional ``strategy`` column is kept (``random`` when
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
    df = df.drop_duplicates(subset=["run_id", "split"], keep="last").reset_index(drop=True)
    if df.empty:
        raise MlipdivError("the results table is empty: no finished runs to fit")
    return df


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
    df = df.drop_duplicates(subset=["run_id", "split"], keep="last").reset_index(drop=True)
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
    """Per-(M, C) aggregates over seeds of one metric on one split, plus the per-seed values for the bootstrap."""

    M: np.ndarray
    C: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray
    values: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.M)


def aggregate(df: Any, split: str, metric: str = "forces_mae", scale: float = 1.0) -> Points:
    """Group ``df`` (one model, one strategy) by (M, C) for ``split``; values multiplied by ``scale``."""
    sub = df[(df["split"] == split) & np.isfinite(df[metric].astype(float))]
    if "run_id" in sub.columns:  # a run shared by two experiments (same config) counts once
        sub = sub.drop_duplicates(subset=["run_id"])
    if sub.empty:
        raise MlipdivError(f"no finished runs with a finite {metric} on {split}")
    groups = sorted(sub.groupby(["n_molecules", "conformers_per_molecule"]), key=lambda kv: kv[0])
    values = [g[metric].to_numpy(float) * scale for _, g in groups]
    return Points(
        M=np.array([k[0] for k, _ in groups], float),
        C=np.array([k[1] for k, _ in groups], float),
        mean=np.array([v.mean() for v in values]),
        std=np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]),
        n=np.array([len(v) for v in values]),
        values=values,
    )


# ---------------------------------------------------------------------------------------------- the guard


def _segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip((q - a) @ ab / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(q - (a + t * ab)))


def hull_distance(points: np.ndarray, q: np.ndarray) -> float:
    """Euclidean distance from ``q`` to the convex hull of ``points`` (2-D; 0 inside; works for collinear points)."""
    pts = np.unique(np.asarray(points, float), axis=0)
    q = np.asarray(q, float)
    if len(pts) == 1:
        return float(np.linalg.norm(q - pts[0]))
    centred = pts - pts.mean(0)
    if len(pts) >= 3 and np.linalg.matrix_rank(centred, tol=1e-9) == 2:
        from scipy.spatial import ConvexHull

        hull = ConvexHull(pts)
        # inside when on the inner side of every facet (equations: normal . x + offset <= 0)
        if np.all(hull.equations[:, :2] @ q + hull.equations[:, 2] <= 1e-12):
            return 0.0
        verts = pts[hull.vertices]
        edges: Iterable[tuple[np.ndarray, np.ndarray]] = zip(verts, np.roll(verts, -1, axis=0))
    else:  # collinear: the hull is the segment between the two extreme points
        direction = centred[np.argmax(np.linalg.norm(centred, axis=1))]
        proj = centred @ direction
        edges = [(pts[np.argmin(proj)], pts[np.argmax(proj)])]
    return min(_segment_distance(q, a, b) for a, b in edges)


# ------------------------------------------------------------------------------------------------------ fits


@dataclass
class ErrorFit:
    """A fitted error model for one split (one model, one metric).

    ``params`` are in the display unit (``unit``) for amplitudes; ``M0``/``C0`` are the reference scales.
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
    bootstrap: np.ndarray | None = None  # (n_boot, n_params)
    max_factor: float = DEFAULT_MAX_FACTOR
    warnings: list[str] = field(default_factory=list)

    # -- evaluation --------------------------------------------------------------------------------------------
    def _x(self, M: np.ndarray, C: np.ndarray) -> np.ndarray:
        return np.vstack([np.asarray(M, float) / self.M0, np.asarray(C, float) / self.C0])

    def evaluate(self, M: Any, C: Any, theta: np.ndarray | None = None) -> np.ndarray:
        """The model at (M, C) (arrays broadcast) with the best-fit parameters or the given ``theta``."""
        theta = self.theta if theta is None else theta
        return FORMS[self.form].func(self._x(np.atleast_1d(M), np.atleast_1d(C)), *theta)

    @property
    def theta(self) -> np.ndarray:
        return np.array([self.params[k] for k in FORMS[self.form].params])

    def extrapolation(self, M: float, C: float) -> float:
        """How far (M, C) lies outside the fitted region, as a multiplicative factor (1.0 = inside)."""
        pts = np.log(np.column_stack([self.points.M, self.points.C]))
        return math.exp(hull_distance(pts, np.log([M, C])))

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
        """Bootstrap parameter sets when available, else draws from the covariance (clipped to the bounds)."""
        if self.bootstrap is not None and len(self.bootstrap) > 1:
            return self.bootstrap
        names = FORMS[self.form].params
        sd = np.array([self.stderr.get(k, np.nan) for k in names])
        if not np.all(np.isfinite(sd)):
            return None
        rng = np.random.default_rng(seed)
        draws = self.theta + rng.normal(size=(n, len(names))) * sd
        lo, hi = _bounds(self.form, self.points.mean)
        return np.clip(draws, lo, hi)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (parameters, uncertainties, quality, the fitted range)."""
        return {
            "split": self.split,
            "metric": self.metric,
            "unit": self.unit,
            "form": self.form,
            "formula": FORMS[self.form].text,
            "M0": self.M0,
            "C0": self.C0,
            "params": self.params,
            "stderr": self.stderr,
            "r2": self.r2,
            "rmse": self.rmse,
            "loo_rmse": self.loo_rmse,
            "aicc": self.aicc,
            "aicc_by_form": self.aicc_by_form,
            "n_points": len(self.points),
            "n_runs": int(self.points.n.sum()),
            "M_range": [float(self.points.M.min()), float(self.points.M.max())],
            "C_range": [float(self.points.C.min()), float(self.points.C.max())],
            "max_factor": self.max_factor,
            "warnings": self.warnings,
        }


def _bounds(form: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = FORMS[form].params
    top = float(np.max(y)) if len(y) else 1.0
    lo = np.zeros(len(names))
    hi = np.array([_EXPONENT_MAX if k in ("alpha", "beta") else (top if k == "E_inf" else np.inf) for k in names])
    return lo, hi


def _starts(form: str, y: np.ndarray) -> list[np.ndarray]:
    span = max(float(np.ptp(y)), 1e-3 * max(float(np.max(y)), 1e-12))
    floor = 0.5 * float(np.min(y))
    out = []
    for e in (0.25, 0.5, 1.0):
        guess = {"E_inf": floor, "a": span, "b": span, "alpha": e, "beta": e}
        if form == "no_floor":
            guess["a"] = guess["b"] = 0.5 * float(np.mean(y))
        out.append(np.array([guess[k] for k in FORMS[form].params]))
    return out


def _sigma(points: Points) -> np.ndarray | None:
    sem = points.std / np.sqrt(np.maximum(points.n, 1))
    if not np.any(sem > 0):
        return None
    return np.maximum(sem, np.median(sem[sem > 0]))


def _curve_fit(
    form: str, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None, starts: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, float]:
    from scipy.optimize import curve_fit

    lo, hi = _bounds(form, y)
    best = None
    for p0 in starts:
        p0 = np.clip(p0, lo, np.where(np.isfinite(hi), hi, p0))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theta, cov = curve_fit(
                    FORMS[form].func, x, y, p0=p0, sigma=sigma, absolute_sigma=False, bounds=(lo, hi),
                    method="trf", maxfev=20000,
                )
        except (RuntimeError, ValueError):
            continue
        r = (FORMS[form].func(x, *theta) - y) / (sigma if sigma is not None else 1.0)
        chi2 = float(r @ r)
        if best is None or chi2 < best[2]:
            best = (theta, cov, chi2)
    if best is None:
        raise MlipdivError(f"the {form} error model did not converge on these points")
    return best


def _aicc(rss: float, n: int, k: int) -> float:
    rss = max(rss, 1e-300)
    aic = n * math.log(rss / n) + 2 * k
    return aic + (2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf)


@dataclass(frozen=True)
class _Scaled:
    """The points as every fit sees them: (M/M0, C/C0) against the means, with their weights."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    M0: float
    C0: float


def _prepare(points: Points, form: str, split: str) -> _Scaled:
    """Refuse an unknown form or too few points, then scale M and C by their geometric means (the fit's units)."""
    if form not in FORMS:
        raise MlipdivError(f"unknown error-model form {form!r}; choose from {', '.join(FORMS)}")
    k = len(FORMS[form].params)
    if len(points) < k:
        raise MlipdivError(
            f"{split or 'this split'}: the {form} model has {k} parameters but only {len(points)} distinct (M, C) "
            f"points were run; run more sweep points (or use --form total, 3 parameters)"
        )
    M0 = float(np.exp(np.mean(np.log(points.M))))
    C0 = float(np.exp(np.mean(np.log(points.C))))
    return _Scaled(x=np.vstack([points.M / M0, points.C / C0]), y=points.mean, sigma=_sigma(points), M0=M0, C0=C0)


def _fit_form(form: str, data: _Scaled) -> tuple[np.ndarray, np.ndarray, float]:
    """Best-fit parameters, their covariance and the unweighted residual sum of squares of one form (AICc's input)."""
    theta, cov, _ = _curve_fit(form, data.x, data.y, data.sigma, _starts(form, data.y))
    resid = FORMS[form].func(data.x, *theta) - data.y
    return theta, cov, float(resid @ resid)


def _r2(rss: float, y: np.ndarray) -> float:
    """Coefficient of determination of the means (nan when they are all equal, so there is nothing to explain)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - rss / ss_tot if ss_tot > 0 else float("nan")


def _leave_one_out_rmse(form: str, data: _Scaled, theta: np.ndarray) -> float:
    """Refit without each (M, C) point and predict it: quality on unseen points (nan when the fit interpolates)."""
    x, y, sigma = data.x, data.y, data.sigma
    n, k = len(y), len(FORMS[form].params)
    loo = []
    if n > k:
        for i in range(n):
            keep = np.arange(n) != i
            try:
                t_i, _, _ = _curve_fit(form, x[:, keep], y[keep], None if sigma is None else sigma[keep], [theta])
                loo.append(float(FORMS[form].func(x[:, [i]], *t_i)[0] - y[i]))
            except MlipdivError:
                loo.append(float("nan"))
    return float(np.sqrt(np.nanmean(np.square(loo)))) if loo else float("nan")


def _stderr(cov: np.ndarray, k: int) -> np.ndarray:
    """Parameter standard errors from the covariance; infinite when the points do not identify the parameters."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(k, np.inf)


def _fit_notes(n_points: int, k: int, sd: np.ndarray) -> list[str]:
    """Warnings a reader needs before trusting the fit: too few points to judge it, unidentified parameters."""
    notes: list[str] = []
    if n_points <= k:
        notes.append(f"{n_points} points for {k} parameters: the fit interpolates, quality cannot be judged")
    if not np.all(np.isfinite(sd)):
        notes.append("some parameters are not identified by these points (infinite covariance); intervals come "
                     "from the bootstrap only")
    return notes


def _bootstrap(
    points: Points, form: str, data: _Scaled, theta: np.ndarray, n_boot: int, seed: int
) -> np.ndarray | None:
    """Refit on seeds resampled within each point: the parameter draws behind the prediction intervals."""
    if not (n_boot > 0 and np.any(points.n > 1)):
        return None
    sigma = data.sigma
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        vals = [v[rng.integers(0, len(v), len(v))] for v in points.values]
        yb = np.array([v.mean() for v in vals])
        sb = None
        if sigma is not None:
            sem = np.array([v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for v in vals])
            sb = np.maximum(sem, sigma.min())
        try:
            draws.append(_curve_fit(form, data.x, yb, sb, [theta])[0])
        except MlipdivError:
            continue
    return np.array(draws) if len(draws) > 1 else None


def _compare_forms(fit: ErrorFit, data: _Scaled) -> None:
    """Add the other forms' AICc to ``fit``, and a warning when one of them is clearly preferred (by more than 2)."""
    form = fit.form
    for other in FORMS:
        if other == form or len(fit.points) < len(FORMS[other].params):
            continue
        try:
            _, _, rss = _fit_form(other, data)
        except MlipdivError:
            continue
        fit.aicc_by_form[other] = _aicc(rss, len(data.y), len(FORMS[other].params))
    preferred = min(fit.aicc_by_form, key=fit.aicc_by_form.__getitem__)
    if preferred != form and fit.aicc_by_form[form] - fit.aicc_by_form[preferred] > 2:
        fit.warnings.append(
            f"AICc prefers the '{preferred}' form over '{form}' by "
            f"{fit.aicc_by_form[form] - fit.aicc_by_form[preferred]:.1f}"
            + (": these points cannot tell how M and C trade off beyond their product" if preferred == "total"
               else "")
        )


def fit_error_model(
    points: Points,
    *,
    split: str = "",
    metric: str = "forces_mae",
    unit: str = "",
    form: str = "full",
    n_boot: int = 200,
    seed: int = 0,
    max_factor: float = DEFAULT_MAX_FACTOR,
    compare: bool = True,
) -> ErrorFit:
    """Fit ``form`` to ``points``; see the module docstring for weighting, quality and uncertainty."""
    data = _prepare(points, form, split)
    names = FORMS[form].params
    theta, cov, rss = _fit_form(form, data)
    sd = _stderr(cov, len(names))
    fit = ErrorFit(
        split=split,
        metric=metric,
        unit=unit,
        form=form,
        params={n: float(v) for n, v in zip(names, theta)},
        stderr={n: float(v) for n, v in zip(names, sd)},
        M0=data.M0,
        C0=data.C0,
        points=points,
        r2=_r2(rss, data.y),
        rmse=math.sqrt(rss / len(data.y)),
        loo_rmse=_leave_one_out_rmse(form, data, theta),
        aicc=_aicc(rss, len(data.y), len(names)),
        bootstrap=_bootstrap(points, form, data, theta, n_boot, seed),
        max_factor=max_factor,
        warnings=_fit_notes(len(points), len(names), sd),
    )
    fit.aicc_by_form[form] = fit.aicc
    if compare:
        _compare_forms(fit, data)
    return fit


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
    form: str = "full",
    splits: Iterable[str] = SPLITS,
    n_boot: int = 200,
    max_factor: float = DEFAULT_MAX_FACTOR,
) -> dict[str, ErrorFit]:
    """Fit the error model for each split of one model's runs; metric values converted to meV units."""
    if metric not in METRICS:
        raise MlipdivError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    unit, scale = METRICS[metric]
    sub, _, _ = select(df, model, strategy)
    return {
        s: fit_error_model(
            aggregate(sub, s, metric, scale), split=s, metric=metric, unit=unit, form=form, n_boot=n_boot,
            max_factor=max_factor,
        )
        for s in splits
    }
