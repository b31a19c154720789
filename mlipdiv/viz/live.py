"""The app's moving parts as plain functions: which runs to poll, table rows for runs, plot selections.

Streamlit's ``AppTest`` does not run ``st.fragment`` bodies, so the decisions a fragment makes (poll or not, redraw
or not, which conformer a click picked) live here and are unit-tested directly. Runs are duck-typed: anything with
the attributes of :class:`mlipdiv.jobs.store.Run` (``id``, ``status``, ``config``, ``metrics``, ``curve``, ``epoch``,
``n_epochs``, ``fraction``, ``error``, ``created``) works.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlipdiv.io.metrics import MetricsError, RunMetrics
from mlipdiv.io.table import RunRecord, runs_to_table
from mlipdiv.names import ACTIVE_STATUSES, TEST_SPLITS, Experiment, SplitName
from mlipdiv.style import mev

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE",
    "BackgroundTask",
    "POLL_SECONDS",
    "active_ids",
    "cancellable",
    "curve_signature",
    "finished_with_metrics",
    "needs_full_refresh",
    "poll_interval",
    "run_label",
    "run_metrics",
    "run_rows",
    "selected_global_ids",
    "baseline_means",
    "study_groups",
    "study_table",
    "study_rows",
]

ACTIVE = ACTIVE_STATUSES  # defined once, in mlipdiv.names
POLL_SECONDS = 2.0  # how often the Runs page refreshes while something trains


def active_ids(runs: Iterable[Any]) -> list[str]:
    """Ids of queued or running runs, in the given order."""
    return [r.id for r in runs if r.status in ACTIVE]


def poll_interval(runs: Iterable[Any], every: float = POLL_SECONDS) -> float | None:
    """Seconds between refreshes while any run is queued or running; ``None`` (no polling) otherwise."""
    return every if active_ids(runs) else None


def needs_full_refresh(previous_active: Iterable[str], runs: Iterable[Any]) -> bool:
    """Whether the set of queued/running runs changed since the page was drawn (a run started, ended, appeared):
    the polling fragment then reruns the whole page, which also stops polling once nothing is active."""
    return set(previous_active) != set(active_ids(runs))


def cancellable(run: Any) -> bool:
    """A queued or running run can be cancelled (unless a cancel is already on its way)."""
    return run.status in ACTIVE and not getattr(run, "cancel_requested", False)


def curve_signature(run: Any) -> tuple[Any, ...]:
    """Changes exactly when what a live view of ``run`` shows changes (status, epoch, batch, curve length)."""
    return (run.id, run.status, run.epoch, getattr(run, "batch", 0), len(run.curve or []))


def run_label(run: Any, status: bool = True) -> str:
    """Short human label: ``schnet · M=64 × C=8 · seed 0 (running)`` (``status=False``: without the status)."""
    c = run.config or {}
    m, k = c.get("molecules"), c.get("conformers_per_molecule")
    budget = c.get("budget")
    if m and not k and budget:
        k = int(budget) // int(m)
    if k and not m and budget:
        m = int(budget) // int(k)
    point = f"M={m} × C={k}" if m and k else f"B={budget}"
    label = f"{c.get('model', '?')} · {point} · seed {c.get('seed', 0)}"
    return f"{label} ({run.status})" if status else label


def run_metrics(run: Any) -> RunMetrics | None:
    """A run's metrics decoded (:class:`~mlipdiv.io.metrics.RunMetrics`), or None when it has none or they are not
    a contract this version understands (logged: one bad row must not take the page down)."""
    if not run.metrics:
        return None
    try:
        return RunMetrics.from_dict(run.metrics, f"metrics of run {run.id}")
    except MetricsError as exc:
        log.warning("%s", exc)
        return None


def _split_metric(metrics: RunMetrics | None, split: str, key: str) -> float | None:
    s = metrics.split(split) if metrics is not None else None
    value = getattr(s, key) if s is not None else None
    return None if value is None else float(value)


def run_rows(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One display row per run (newest first), errors in meV/Å and meV/atom, progress as a fraction in [0, 1]."""
    rows = []
    for r in sorted(runs, key=lambda r: (r.created or 0.0), reverse=True):
        c = r.config or {}
        m = run_metrics(r)
        rows.append({
            "id": r.id,
            "status": r.status,
            "progress": float(r.fraction),
            "epoch": f"{max(r.epoch, 0)}/{r.n_epochs or c.get('epochs', '?')}",
            "model": c.get("model", ""),
            "M": (m.n_molecules if m else None) or c.get("molecules"),
            "C": (m.conformers_per_molecule if m else None) or c.get("conformers_per_molecule"),
            "seed": c.get("seed", 0),
            "strategy": c.get("strategy", ""),
            "device": m.device if m else "",
            "force MAE unseen conformers (meV/Å)": mev(_split_metric(m, SplitName.TEST_CONFORMERS, "forces_mae")),
            "force MAE unseen molecules (meV/Å)": mev(_split_metric(m, SplitName.TEST_MOLECULES, "forces_mae")),
            "energy MAE unseen conformers (meV/atom)":
                mev(_split_metric(m, SplitName.TEST_CONFORMERS, "energy_mae_per_atom")),
            "energy MAE unseen molecules (meV/atom)":
                mev(_split_metric(m, SplitName.TEST_MOLECULES, "energy_mae_per_atom")),
            "error": r.error or "",
        })
    return rows


def finished_with_metrics(runs: Iterable[Any], include_cancelled: bool = False) -> list[Any]:
    """Runs that are ``done`` and hold per-split metrics (that this version can read); with ``include_cancelled``
    also cancelled runs that were scored with the best weights they had reached."""
    statuses = ("done", "cancelled") if include_cancelled else ("done",)
    out = []
    for r in runs:
        m = run_metrics(r) if r.status in statuses else None
        if m is not None and m.splits:
            out.append(r)
    return out


def study_rows(runs: Iterable[Any], splits: Sequence[str] = TEST_SPLITS,
               experiment: str = Experiment.FIXED_BUDGET) -> list[dict]:
    """One row per finished run and split, in the columns of a sweep's ``results.csv`` (eV, eV/angstrom), plus
    ``budget`` (M x C) and ``strategy``; ``experiment`` labels every row (runs do not record one). Rows as
    :func:`mlipdiv.io.table.runs_to_table` makes them."""
    records = []
    for r in runs:
        m = run_metrics(r) if r.status == "done" else None
        if m is not None:
            records.append(RunRecord(r.id, m, r.config or {}))
    return runs_to_table(records, experiment, splits, study=True)


def study_groups(rows: Iterable[Mapping[str, Any]], experiment: str = Experiment.FIXED_BUDGET) -> list[int]:
    """The budgets (fixed-budget: M x C) or molecule counts (fixed-molecules: M) of study rows that have at least
    two trade-off points, most points first (ties: larger first): what a study plot can be drawn for."""
    varying = "n_molecules" if experiment == Experiment.FIXED_BUDGET else "conformers_per_molecule"
    fixed = "budget" if experiment == Experiment.FIXED_BUDGET else "n_molecules"
    points: dict[int, set[int]] = {}
    for row in rows:
        points.setdefault(int(row[fixed]), set()).add(int(row[varying]))
    return sorted((g for g, xs in points.items() if len(xs) >= 2), key=lambda g: (-len(points[g]), -g))


def study_table(runs: Iterable[Any], experiment: str, group: int) -> list[dict[str, Any]]:
    """Study rows of one fixed-budget (``group`` = B) or fixed-molecules (``group`` = M) series, labelled with the
    experiment (the analysis figures select on it)."""
    fixed = "budget" if experiment == Experiment.FIXED_BUDGET else "n_molecules"
    return [r for r in study_rows(runs, experiment=experiment) if int(r[fixed]) == int(group)]


def baseline_means(runs: Iterable[Any], run_ids: Iterable[str], metric: str = "forces_mae") -> dict[str, float]:
    """Mean of the no-geometry baseline's ``metric`` per test split over the given runs (eV units)."""
    wanted = set(run_ids)
    values: dict[str, list[float]] = {}
    for r in runs:
        m = run_metrics(r) if r.status == "done" and r.id in wanted else None
        if m is None or not m.splits:
            continue
        for split, b in m.baselines.items():
            if getattr(b, metric) is not None:
                values.setdefault(split, []).append(float(getattr(b, metric)))
    return {split: sum(v) / len(v) for split, v in values.items()}


def selected_global_ids(event: Any) -> list[int]:
    """Global conformer ids of the points selected in a ``st.plotly_chart(..., on_select="rerun")`` event.

    Reads ``customdata`` (a scalar, a one-element list, or the ``{"0": value}`` object the browser sends for a
    row of a 2D array) of each selected point, never point indices, which are per trace. Returns them in
    selection order without duplicates; an empty or missing selection gives ``[]``.
    """
    if not event:
        return []
    selection = event.get("selection") if isinstance(event, Mapping) else getattr(event, "selection", None)
    if not selection:
        return []
    points = selection.get("points") if isinstance(selection, Mapping) else getattr(selection, "points", None)
    out: list[int] = []
    for p in points or []:
        value = p.get("customdata") if isinstance(p, Mapping) else None
        if isinstance(value, Mapping):  # a row of a 2D customdata array arrives as {"0": value} from the browser
            value = value.get("0", next(iter(value.values()), None))
        elif isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None:
            continue
        try:
            gid = int(value)
        except (TypeError, ValueError):
            continue
        if gid not in out:
            out.append(gid)
    return out


class BackgroundTask:
    """A function run in a daemon thread, with progress a page can poll (the thread never touches Streamlit).

    ``fn(report)`` does the work and calls ``report(done, total, message)`` as it goes; its return value becomes
    :attr:`result`. An exception ends the task with :attr:`error` set to its message (``MlipdivError`` messages
    are meant for users; other exceptions are prefixed with their type).

    Attributes:
        status: ``"running"``, ``"done"`` or ``"failed"``.
        done, total: progress counters (``total`` may be 0 when unknown).
        message: the latest progress message.
    """

    def __init__(self, fn: Any, total: int = 0, name: str = "mlipdiv-task"):
        import threading

        self._lock = threading.Lock()
        self.status = "running"
        self.done, self.total, self.message = 0, int(total), ""
        self.result: Any = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _report(self, done: int, total: int | None = None, message: str = "") -> None:
        with self._lock:
            self.done = int(done)
            if total is not None:
                self.total = int(total)
            if message:
                self.message = message

    def _run(self, fn: Any) -> None:
        from mlipdiv.errors import MlipdivError

        try:
            result = fn(self._report)
        except MlipdivError as exc:
            with self._lock:
                self.status, self.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - shown in the page, never re-raised in a thread nobody joins
            with self._lock:
                self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            with self._lock:
                self.status, self.result = "done", result

    @property
    def fraction(self) -> float:
        """Progress in [0, 1] (1 when done)."""
        with self._lock:
            if self.status == "done":
                return 1.0
            return min(1.0, self.done / self.total) if self.total else 0.0

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
