"""Streamlit glue shared by the pages: the active dataset, the job manager, the sidebar, error messages.

Everything scientific comes from :mod:`mlipdiv`; this module only caches library objects for the server process
(``st.cache_resource``) or the session (``st.session_state``) and shows them. Worker threads never call anything
here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from mlipdiv import uploads
from mlipdiv.analysis.study import plan_preset
from mlipdiv.data.generate import Settings, generate
from mlipdiv.embeddings import MapParams, cached_map, is_cached
from mlipdiv.errors import DatasetError, MlipdivError
from mlipdiv.io.load import load_dataset
from mlipdiv.jobs import sweep
from mlipdiv.jobs.manager import JobManager
from mlipdiv.jobs.store import RunStore
from mlipdiv.jobs.sweep import plan_point, plan_sweep
from mlipdiv.models import registry
from mlipdiv.names import Experiment
from mlipdiv.paths import cache_dir, default_dataset, home
from mlipdiv.presets import get_preset
from mlipdiv.selection import SplitSpec, experiment_grid, make_split
from mlipdiv.selection import default_budget as selection_default_budget
from mlipdiv.uploads import discard_upload, one_line, redact, redact_uploads
from mlipdiv.viz import sketch
from mlipdiv.viz.live import BackgroundTask

DATASET_KEY = "mlipdiv_dataset_path"
DATASET_NAME_KEY = "mlipdiv_dataset_name"  # how the user knows the session's dataset (an upload's own file name)
UPLOAD_KEY = "mlipdiv_upload"  # (file id, UploadResult) of the session's last upload
_MANAGER_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------ errors


@contextmanager
def user_errors(prefix: str = ""):
    """Show a library error (:class:`~mlipdiv.errors.MlipdivError`, incl. a setting out of range) as a red box with its
    message instead of a traceback; the server path of the session's dataset (an upload's cached copy) is shown as the
    user's name for it."""
    try:
        yield
    except MlipdivError as exc:  # a bug's ValueError or KeyError is a bug: it is not dressed up as a user message
        st.error(f"{prefix}{md(public(str(exc)))}", icon=":material/error:")


_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~$#])")


def md(text: Any) -> str:
    """``text`` (user data: a SMILES, a file name, a message quoting them) escaped for a Markdown element, so
    ``C[N+](C)(C)C`` shows as typed instead of becoming a link."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def public(message: str) -> str:
    """``message`` on one line, with the session's dataset path replaced by the name the user knows it by (and any
other cached upload by its file name)."""
    return one_line(redact_uploads(redact(message, {dataset_path(): dataset_name()}), cache_dir()), limit=1000)


# ------------------------------------------------------------------------------------------------ dataset


def default_dataset_path() -> Path:
    return default_dataset()


def dataset_path() -> Path:
    """The dataset this browser session works on (the shipped default unless the user loaded another)."""
    return Path(st.session_state.get(DATASET_KEY) or default_dataset_path())


def dataset_name() -> str:
    """The session's dataset as the user knows it: an upload's original file name, else the file's name."""
    return st.session_state.get(DATASET_NAME_KEY) or dataset_path().name


def set_dataset_path(path: str | Path | None, name: str | None = None) -> None:
    """Switch this session to another dataset file (``None``: back to the default); ``name``: how to show it."""
    st.session_state.pop(DATASET_NAME_KEY, None)
    if path is None:
        st.session_state.pop(DATASET_KEY, None)
    else:
        st.session_state[DATASET_KEY] = str(path)
        if name:
            st.session_state[DATASET_NAME_KEY] = name


# One limit for uploads: the library's (mlipdiv.uploads); .streamlit/config.toml's server.maxUploadSize, which the
# upload widget shows, is the same number (tests/app/test_app.py checks that they agree).
MAX_UPLOAD_MB = uploads.MAX_UPLOAD_BYTES // 2**20


def accept_upload(upload: Any, import_options: dict[str, Any] | None = None) -> Any:
    """Validate an ``st.file_uploader`` file once per upload (see :func:`mlipdiv.uploads.accept_upload`).

    The result is kept for the session, so reruns do not read the file again; an upload replaced by another one
    is deleted from the cache unless it is the session's dataset.
    """
    previous = st.session_state.get(UPLOAD_KEY)
    upload_key = (upload.file_id, tuple(sorted((import_options or {}).items())))
    if previous is not None and previous[0] == upload_key:
        result = previous[1]
        if not result.ok or result.path.exists():
            return result
    result = uploads.accept_upload(upload.name, upload.getvalue(), cache_dir(), keep=[dataset_path()],
                                    max_bytes=MAX_UPLOAD_MB * 2**20, import_options=import_options)
    if previous is not None and previous[1].ok and previous[1].path != result.path:
        if Path(previous[1].path).resolve() != dataset_path().resolve():
            discard_upload(previous[1].path, cache_dir())
    st.session_state[UPLOAD_KEY] = (upload_key, result)
    return result


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_dataset(path: str, mtime: float, size: int) -> Any:
    return load_dataset(path)


def load(path: str | Path) -> Any:
    """Load (once per server process, per file version) a dataset; raises :class:`DatasetError`."""
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        raise DatasetError(f"{p}: no such file") from None
    return _load_dataset(str(p.resolve()), stat.st_mtime, stat.st_size)


def dataset() -> Any | None:
    """The session's dataset, or ``None`` after showing why it cannot be loaded."""
    path = dataset_path()
    try:
        with st.spinner(f"Loading {dataset_name()} …"):
            return load(path)
    except MlipdivError as exc:
        if path.resolve() != default_dataset_path().resolve():
            st.error(f"The dataset {md(dataset_name())} cannot be read any more ({md(public(str(exc)))}); back to the "
                     "default dataset.")
            set_dataset_path(None)
            return dataset()
        st.error(
            f"No dataset to show: {exc}. Generate one with `python -m mlipdiv generate --pool nci --out "
            f"data/default.h5`, or point MLIPDIV_DATASET at an mlipdiv HDF5 file.",
            icon=":material/error:",
        )
        return None


def require_dataset() -> Any:
    """The session's dataset; stops the page (after the message) when there is none."""
    ds = dataset()
    if ds is None:
        st.stop()
    return ds


# ------------------------------------------------------------------------------------------------ jobs


@st.cache_resource(show_spinner=False)
def _job_manager(home: str) -> Any:
    with _MANAGER_LOCK:  # one manager per server process and run store, whatever the number of sessions
        return JobManager(RunStore(home))


def job_manager() -> Any:
    """The server's job manager for the run store at ``MLIPDIV_HOME`` (created on first use).

    A store that cannot be opened (a damaged or foreign ``runs.db``) stops the page after one message saying what
    to do; nothing is written to it, so ``runs repair`` still finds it as it was."""
    try:
        return _job_manager(str(home().resolve()))
    except MlipdivError as exc:
        st.error(f"The run store cannot be opened: {md(public(str(exc)))}. Runs can be listed and started again once "
                 "it is repaired.", icon=":material/error:")
        st.stop()


def store() -> Any:
    return job_manager().store


@functools.lru_cache(maxsize=1)
def device_description() -> str:
    """Which device training uses, in words (the job manager trains with ``device=auto``)."""
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"GPU ({', '.join(names)})"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"CPU ({cores} core{'s' if cores != 1 else ''}; no CUDA GPU found)"


# ------------------------------------------------------------------------------------------------ layout


def sidebar(ds: Any | None = None) -> None:
    """The dataset in use and the training device, on every page."""
    with st.sidebar:
        st.divider()
        if ds is not None:
            st.markdown(f"**Dataset** `{dataset_name()}`  \n{len(ds):,} molecules · {ds.n_conformers:,} conformers  \n"
                        f"{ds.level_of_theory}")
        else:
            st.markdown(f"**Dataset** `{dataset_name()}`")
        st.markdown(f"**Training device** {device_description()}")
        try:  # MLIPDIV_CONCURRENCY or auto (choose_concurrency); a store that cannot be opened says so elsewhere
            st.markdown(f"**Training** {_job_manager(str(home().resolve())).concurrency.describe()}")
        except MlipdivError:
            pass


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    """A number for a metric box (``—`` for missing)."""
    if value is None:
        return "—"
    try:
        text = f"{float(value):,.{digits}f}"
    except (TypeError, ValueError):
        return str(value)
    return f"{text} {unit}".strip()


# ------------------------------------------------------------------------------------------------ submitting


def submit_plan(plan: Any) -> tuple[list[str], int]:
    """Queue a sweep plan on the server's job manager (see :func:`mlipdiv.jobs.sweep.submit_plan`)."""
    return sweep.submit_plan(job_manager(), plan)


LAPTOP_PRESETS = ("laptop-fixed-budget", "laptop-fixed-molecules")


def laptop_presets() -> list[Any]:
    return [get_preset(name) for name in LAPTOP_PRESETS]


def preset_title(preset: Any) -> str:
    return {Experiment.FIXED_BUDGET: "Fixed-budget study", Experiment.FIXED_MOLECULES: "Fixed-molecular-set study"}.get(
        preset.experiment, preset.name)


def submit_point(molecules: int, conformers: int, model: str, epochs: int, seeds: int,
                 options: dict[str, Any]) -> tuple[list[str], int]:
    """Queue one (M, C) point x ``seeds`` seeds on the session's dataset."""
    return submit_plan(plan_point(molecules, conformers, seeds=seeds, model=model, epochs=epochs,
                                  dataset=dataset_path(), options=options))


def submit_experiment(experiment: str, points: int, budget: int | None, molecules: int | None, model: str,
                      epochs: int, seeds: int, options: dict[str, Any]) -> tuple[list[str], int]:
    """Queue a whole experiment (every grid point x seeds) as a sweep on the session's dataset."""
    return submit_plan(plan_sweep(experiment, points=points, seeds=seeds, model=model, epochs=epochs, budget=budget,
                                  molecules=molecules, dataset=dataset_path().resolve(), options=options))


def submit_preset(preset: Any) -> tuple[list[str], int]:
    """Plan every sweep of a preset on the session's dataset and queue it (see :func:`submit_plan`)."""
    ids, reused = [], 0
    for plan in plan_preset(preset, dataset_path()):
        got, n = submit_plan(plan)
        ids += got
        reused += n
    return ids, reused


# ------------------------------------------------------------------------------------------------ generating


def start_generation(entries: list[Any], conformers: int, parents: int) -> Any:
    """Generate a dataset from checked SMILES entries in a background task (see :class:`BackgroundTask`).

    The file goes to ``cache_dir()/generated/<hash of the request>.h5``; the same request again reuses it.
    """


    settings = Settings(conformers=conformers, parents=parents)
    request = json.dumps({"smiles": [e.smiles for e in entries], "conformers": conformers, "parents": parents})
    out = cache_dir() / "generated" / f"{hashlib.sha1(request.encode()).hexdigest()[:12]}.h5"
    report_path = out.with_name(out.name + ".report.json")

    def work(report: Any) -> dict[str, Any]:
        if out.exists() and report_path.exists():
            report(len(entries), len(entries), "already generated earlier")
            return {"path": str(out), "report": json.loads(report_path.read_text())}
        finished = []

        def on_outcome(rec: dict[str, Any]) -> None:
            finished.append(rec)
            report(len(finished), len(entries), f"last: {rec.get('smiles', '')} ({rec.get('status', '')})")

        result = generate(entries, settings, out, progress=False, workers=min(2, os.cpu_count() or 1),
                          on_outcome=on_outcome, overwrite=True, command="app: generate from SMILES",
                          source="pasted SMILES")
        return {"path": str(out), "report": result}

    return BackgroundTask(work, total=len(entries), name="mlipdiv-generate")


# ------------------------------------------------------------------------------------------------ cached science


def version(path: str | Path) -> tuple[float, int]:
    """Cache key part that changes when a file is rewritten."""
    stat = Path(path).stat()
    return (stat.st_mtime, stat.st_size)


@st.cache_data(show_spinner="Selecting the training set …", max_entries=32)
def _split(path: str, file_version: tuple, spec: dict[str, Any]) -> dict[str, Any]:
    return make_split(load(path), SplitSpec.from_dict(spec)).to_dict()


def split_preview(spec: Any) -> dict[str, Any]:
    """The split a :class:`SplitSpec` gives on the session's dataset, as a dict (cached per dataset version)."""
    path = dataset_path()
    return _split(str(path.resolve()), version(path), spec.to_dict())


@st.cache_data(show_spinner=False, max_entries=16)
def _map(path: str, file_version: tuple, kind: str, n_neighbors: int, min_dist: float, metric: str) -> dict:
    m = cached_map(load(path), MapParams(kind, n_neighbors, min_dist, metric))
    return {"coords": m.coords, "global_ids": m.global_ids, "molecule_index": m.molecule_index,
            "method": m.method, "seconds": m.seconds, "from_cache": m.from_cache}


def embedding(kind: str, n_neighbors: int = 15, min_dist: float = 0.1, metric: str | None = None) -> dict:
    """A UMAP map of the session's dataset (from disk when there; computed with a spinner otherwise)."""
    params = MapParams(kind, n_neighbors, min_dist, metric)
    path = dataset_path()
    if is_cached(load(path), params):
        return _map(str(path.resolve()), version(path), kind, n_neighbors, min_dist, params.metric)
    with st.spinner(f"Computing the {kind} map (first time only; about 30 s when UMAP starts up) …"):
        return _map(str(path.resolve()), version(path), kind, n_neighbors, min_dist, params.metric)


def embedding_ready(kind: str, n_neighbors: int = 15, min_dist: float = 0.1, metric: str | None = None) -> bool:
    return is_cached(load(dataset_path()), MapParams(kind, n_neighbors, min_dist, metric))


@st.cache_resource(show_spinner=False)
def _hover_depiction_component() -> Any:
    """Registered once per process (registering a component name twice logs a warning)."""
    return st.components.v2.component("mlipdiv_hover_depictions", js=sketch.DEPICT_JS.read_text(encoding="utf-8"))


_SKETCHES_SENT = "_hover_sketches_sent"  # digests whose sketches this session's browser holds


def _sketches_lost() -> None:
    """The browser asked for sketches it does not hold (e.g. a message lost to an interrupted rerun): send again."""
    st.session_state[_SKETCHES_SENT] = set()


def hover_depictions(ds: Any) -> None:
    """2D structures in the hovers of this page's maps (:mod:`mlipdiv.viz.sketch`): the browser draws the hovered
    molecule from sketches it keeps. They travel once per session and dataset (170 KB for 1,000 molecules, which
    on every rerun added about 0.5 s to a colouring switch); later reruns send only the dataset's digest."""
    data = sketch.sketches(ds)
    sent = st.session_state.setdefault(_SKETCHES_SENT, set())
    payload = {"digest": data["digest"]} if data["digest"] in sent else data
    sent.add(data["digest"])
    _hover_depiction_component()(data=payload, key="hover_depictions", on_missing_change=_sketches_lost)


@functools.lru_cache(maxsize=1)
def model_names() -> tuple[str, ...]:
    """Registered models (importing them loads torch and PyG: seconds, so :func:`warm_up` does it at start)."""
    return tuple(registry.model_names())


def warm_up() -> threading.Thread:
    """Import the heavy parts (torch, PyG, the models) in a daemon thread when the server starts, so the first
    visitor of Trade-off or Runs does not wait for them. Calls no Streamlit function."""
    thread = threading.Thread(target=lambda: (device_description(), model_names()), name="mlipdiv-warm-up",
                              daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------------------------ page state

PERSIST_PREFIX = "p_"  # widget keys with this prefix keep their value when the user visits another page
TRADEOFF_KEY = "tradeoff_choice"


def default(key: str, value: Any) -> None:
    """Initial value of a widget's state (so the widget takes no ``value=`` and keeps what the user chose)."""
    st.session_state.setdefault(key, value)


def keep_widget_state() -> None:
    """Streamlit forgets a widget's value when a page without it runs; re-assigning keeps ``p_*`` values alive."""
    for key in list(st.session_state.keys()):
        if str(key).startswith(PERSIST_PREFIX):
            st.session_state[key] = st.session_state[key]


def remember_tradeoff(spec: Any) -> None:
    """The trade-off point chosen on Trade-off, for the other pages (Embeddings colours its split)."""
    st.session_state[TRADEOFF_KEY] = {"dataset": str(dataset_path().resolve()), **spec.to_dict()}


def tradeoff_spec(ds: Any) -> Any:
    """The trade-off chosen on Trade-off for this dataset, or the middle of a fixed-budget grid (B = 256 or less)."""
    chosen = st.session_state.get(TRADEOFF_KEY)
    if chosen and chosen.get("dataset") == str(dataset_path().resolve()):
        return SplitSpec.from_dict(chosen)
    spec = SplitSpec(seed=0)
    grid = experiment_grid(ds, Experiment.FIXED_BUDGET, 64, budget=default_budget(ds, spec), spec=spec)
    m, c = grid[len(grid) // 2]
    return SplitSpec(molecules=m, conformers_per_molecule=c, seed=0)


def default_budget(ds: Any, spec: Any, largest: int = 256) -> int:
    """See :func:`mlipdiv.selection.default_budget` (the choice lives in the library, with its tests)."""
    return selection_default_budget(ds, spec, largest)


# ------------------------------------------------------------------------------------------------ budget answers
# The error fits (a bootstrap: seconds to tens of seconds) and the optimum path are cached by the content of the
# results table and the choices, so a budget or weight change reuses them (the first visit fits, with a spinner).

PROJECT_RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def preferred(options: list[str], *wanted: str) -> str:
    """The first of ``wanted`` among ``options``, else the first option."""
    return next((w for w in wanted if w in options), options[0])


@st.cache_data(show_spinner="Fitting the error models (a bootstrap over seeds; once per set of runs) …",
               max_entries=16)
def budget_fits(df: Any, metric: str, model: str, strategy: str, form: str) -> dict[str, Any]:
    from mlipdiv.analysis.fit import fit_results

    return fit_results(df, metric=metric, model=model, strategy=strategy, form=form)


@st.cache_data(show_spinner=False, max_entries=64)
def budget_recommendation(df: Any, metric: str, model: str, strategy: str, form: str, n_conformers: int,
                          weight: float, allow_extrapolation: bool) -> Any:
    from mlipdiv.analysis.recommend import recommend

    return recommend(budget_fits(df, metric, model, strategy, form), n_conformers, weight,
                     allow_extrapolation=allow_extrapolation)


@st.cache_data(show_spinner="Tracing the optimum over budgets …", max_entries=32)
def budget_path(df: Any, metric: str, model: str, strategy: str, form: str, weight: float) -> list[Any]:
    from mlipdiv.analysis.recommend import budget_grid, optimum_path

    fits = budget_fits(df, metric, model, strategy, form)
    return optimum_path(fits, budget_grid(fits, n=13), weight)


@st.cache_resource(show_spinner=False, max_entries=16)
def budget_surfaces(df: Any, metric: str, model: str, strategy: str, form: str) -> dict[str, Any]:
    """The error-surface figure of each split (thousands of range checks each: drawn once per fit, shared by the
    sessions as a resource rather than unpickled on every rerun; nothing mutates them)."""
    from mlipdiv.analysis.figures import error_surface_figure

    out = {}
    for split, f in budget_fits(df, metric, model, strategy, form).items():
        fig = error_surface_figure(f)
        title = fig.layout.title.text or ""
        if ";" in title:  # half a page wide, the one-line title ran past the figure: its second part below
            head, tail = title.split(";", 1)
            fig.update_layout(title={"text": f"{head}<br><sup>{tail.strip()}</sup>"}, margin={"t": 90})
        out[split] = fig
    return out


@st.cache_data(show_spinner=False, max_entries=4)
def project_results(file_version: tuple) -> Any:
    from mlipdiv.analysis.fit import load_results

    return load_results(PROJECT_RESULTS)


def project_study() -> Any | None:
    """The project's own study (``docs/results/results.csv``), or None when the checkout has none."""
    path = PROJECT_RESULTS / "results.csv"
    return project_results(version(path)) if path.exists() else None


def default_fit_choice(df: Any) -> tuple[str, str]:
    """(model, strategy) the Budget page starts with: SchNet and random selection where the runs have them."""
    model = preferred(sorted(df["model"].astype(str).unique()), "schnet")
    sub = df[df["model"].astype(str) == model]
    strategies = sorted(sub["strategy"].astype(str).unique()) if "strategy" in sub else ["random"]
    return model, preferred(strategies, "random")
