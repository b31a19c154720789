"""Every page of the Streamlit app under ``AppTest``: renders without an exception, shows its key widgets; a tiny
training submitted from Trade-off finishes through the job manager and shows up on Runs.

``AppTest`` runs fragment bodies once per script run but never on their timer, so what the timers decide is tested
in ``test_viz.py``; the real browser (``test_browser.py``) checks the live updates.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = {
    "Home": "app.py",
    "Dataset": "pages/dataset.py",
    "Trade-off": "pages/tradeoff.py",
    "Runs": "pages/runs.py",
    "Embeddings": "pages/embeddings.py",
    "Budget": "pages/budget.py",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_dataset_path):
    """A copy of the tiny dataset as the default dataset, and an empty run store and cache."""
    root = tmp_path_factory.mktemp("app")
    data = root / "tiny.h5"
    shutil.copy(tiny_dataset_path, data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLIPDIV_DATASET", str(data))
        mp.setenv("MLIPDIV_HOME", str(root / "runs"))
        mp.setenv("MLIPDIV_CACHE", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def finished_run(env) -> str:
    """A finished run in the module's store, for the pages that show one (the Embeddings error colouring): the
    Trade-off test's run when it ran first, else a 1-epoch run trained here, so a test selected alone still has it."""
    from mlipdiv.jobs.manager import JobManager
    from mlipdiv.jobs.store import RunStore
    from mlipdiv.jobs.sweep import plan_point, submit_plan

    store = RunStore(env / "runs")
    done = store.list(status="done")
    if done:
        return done[0].id
    manager = JobManager(store, max_concurrent=1)
    try:
        ids, _ = submit_plan(manager, plan_point(2, 2, seeds=1, model="schnet", epochs=1,
                                                 dataset=env / "tiny.h5", options={"hidden": 16}))
        (run,) = manager.wait(ids, timeout=300)
    finally:
        manager.shutdown()
    assert run.status == "done", run.error
    return run.id


def open_page(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    if page is not None:
        at.switch_page(PAGES[page])
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def labels(elements) -> list[str]:
    return [e.label for e in elements]


def test_sidebar_order_and_names_come_from_the_registry():
    import ast

    tree = ast.parse(Path(APP).read_text())
    registry = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PAGES")
    pages = ast.literal_eval(registry.value)
    assert [p[0] for p in pages] == list(PAGES)
    assert [p[1] for p in pages] == list(PAGES.values())


def test_home(env):
    at = open_page()
    assert "molecules and conformers" in at.title[0].value
    assert {"Molecules", "Conformers", "Elements"} <= set(labels(at.metric))
    assert [b.label for b in at.button] == ["Start", "Start"]  # the two presets
    assert any("Training device" in m.value for m in at.sidebar.markdown)


def test_home_preset_on_a_too_small_dataset_says_why(env):
    at = open_page()
    at.button(key="preset_laptop-fixed-budget").click().run()
    assert not at.exception
    assert at.error and "Cannot start" in at.error[0].value  # the tiny set cannot hold 256 conformers


def test_dataset_page_browses_molecules_and_conformers(env):
    at = open_page("Dataset")
    assert at.text_input(key="dataset_search") is not None
    box = at.selectbox(key="p_dataset_molecule")
    assert len(box.options) == 10
    from mlipdiv.io.dataset import molecule_id

    box.select(molecule_id("Oc1ccccc1")).run()
    assert at.selectbox(key="p_dataset_molecule").value == molecule_id("Oc1ccccc1")
    viewer = at.get("iframe")[0].proto
    html = viewer.srcdoc if viewer.HasField("srcdoc") else str(viewer)
    assert "addModelsAsFrames" in html and "conformer 11 of 12" in html  # phenol's conformers, in the browser
    assert "Tanimoto Vendi score" in labels(at.metric)
    at.text_input(key="dataset_search").input("[OX2H]").run()  # SMARTS: alcohols and phenol
    assert not at.exception and not at.warning
    at.text_input(key="dataset_search").input("[[[").run()
    assert at.warning and "No molecule matches" in at.warning[0].value


def test_dataset_page_generates_from_smiles(env):
    at = open_page("Dataset")
    at.text_area(key="generate_smiles").input("CO methanol\nXYZ\n[Na+]").run()
    at.number_input(key="generate_conformers").set_value(4)
    at.number_input(key="generate_parents").set_value(1)
    at.button(key="generate_start").click().run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "XYZ" in warnings and "Na+" in warnings  # rejected with reasons, the rest goes ahead
    task = at.session_state["generate_task"]
    task.join(180)
    assert task.status == "done", task.error
    at.run()  # the page shows the finished task (AppTest does not run the fragment's timer)
    assert any("Done: 1 molecules" in s.value for s in at.success)
    at.button(key="use_generated").click().run()
    assert not at.exception
    assert Path(at.session_state["mlipdiv_dataset_path"]).exists()


def _nan_dataset(tiny_dataset_path: Path, folder: Path) -> bytes:
    """The tiny dataset with one NaN coordinate, written with h5py directly (the writer would refuse it)."""
    import h5py
    import numpy as np

    bad = folder / "nan.h5"
    shutil.copy(tiny_dataset_path, bad)
    with h5py.File(bad, "r+") as f:
        positions = f[sorted(f)[0]]["positions"]
        values = positions[()]
        values[0, 0, 0] = np.nan
        positions[...] = values
    return bad.read_bytes()


@pytest.mark.parametrize("kind", ["nan", "not-hdf5"])
def test_dataset_page_refuses_a_bad_upload_by_its_name(env, tiny_dataset_path, tmp_path, kind):
    data = _nan_dataset(tiny_dataset_path, tmp_path) if kind == "nan" else b"this is not an HDF5 file\n" * 20
    at = open_page("Dataset")
    at.file_uploader(key="dataset_upload").upload("mine.h5", data)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("mine.h5: "), errors
    assert ("positions hold NaN" if kind == "nan" else "not a readable HDF5 file") in errors[0]
    assert str(env) not in errors[0] and "uploads" not in errors[0]  # no server path of the cached copy
    assert "use_upload" not in [b.key for b in at.button]  # nothing to use
    assert not list((env / "cache" / "uploads").glob("*"))  # the refused file is not kept


def test_dataset_page_uses_a_good_upload_under_its_own_name(env, tiny_dataset_path):
    at = open_page("Dataset")
    at.file_uploader(key="dataset_upload").upload("my molecules.h5", tiny_dataset_path.read_bytes())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("my molecules.h5: 10 molecules") for s in at.success)
    at.button(key="use_upload").click().run()
    assert not at.exception
    assert (env / "cache" / "uploads") in Path(at.session_state["mlipdiv_dataset_path"]).parents
    assert any("`my molecules.h5`" in m.value for m in at.sidebar.markdown)
    at.switch_page("app.py").run()
    assert not at.exception
    shown = " ".join(c.value for c in at.caption)
    assert "File: `my molecules.h5`" in shown and str(env) not in shown  # Home names it, without a server path


def test_tradeoff_preview_and_impossible_choices(env):
    at = open_page("Trade-off")
    assert {"Start training", "Queue the whole experiment"} <= set(labels(at.button))
    assert at.select_slider(key="p_to_point_fixed-budget") is not None
    assert {"Training set (conformers)", "Unseen molecules (test conformers)", "Tanimoto Vendi",
            "Conformer Vendi"} <= set(labels(at.metric))
    assert "schnet" in at.selectbox(key="p_to_model").options
    assert any("CPU" in c.value or "GPU" in c.value for c in at.caption)  # which device trains
    at.radio(key="p_to_experiment").set_value("fixed-molecules").run()
    assert not at.exception and at.select_slider(key="p_to_point_fixed-molecules") is not None
    at.radio(key="p_to_experiment").set_value("fixed-budget").run()
    largest = int(at.number_input(key="p_to_budget").max)
    prime = max(p for p in range(2, largest + 1) if all(p % d for d in range(2, p)))
    at.number_input(key="p_to_budget").set_value(prime).run()  # M x C = prime: only 1 x p or p x 1, too big here
    assert not at.exception
    assert at.error and str(prime) in at.error[0].value


def test_tiny_training_from_tradeoff_finishes_and_shows_on_runs(env):
    at = open_page("Trade-off")
    at.number_input(key="p_to_epochs").set_value(3)
    at.select_slider(key="p_to_hidden").set_value(16)
    start = time.perf_counter()
    at.button(key="to_start").click().run()
    assert time.perf_counter() - start < 10  # submitting returns at once
    assert at.success and "queued" in at.success[0].value
    run_id = at.success[0].value.split(": ")[-1].strip()

    from mlipdiv.jobs.store import RunStore

    store = RunStore(env / "runs")
    deadline = time.time() + 180
    while store.get(run_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    run = store.get(run_id)
    assert run.status == "done", run.error
    assert len(run.curve) == 3

    at.button(key="to_start").click().run()  # the same settings again: reused, not trained twice
    assert "already stored" in at.success[0].value

    at = open_page("Runs")
    assert "Learning curve of" in labels(at.selectbox)
    assert at.selectbox(key="runs_finished").value == run_id
    assert any("Baseline" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 3  # learning curve, parity, error distribution
    at.radio(key="runs_parity_split").set_value("test_molecules").run()
    assert not at.exception


def test_runs_page_cancels_a_queued_run(env):
    from mlipdiv.jobs.store import RunStore

    store = RunStore(env / "runs")
    # a run only this test can see: queued in the store, no worker picks it up (cancel works from any process)
    run = store.create({"model": "schnet", "molecules": 2, "conformers_per_molecule": 2, "epochs": 5, "seed": 9})
    at = open_page("Runs")
    assert at.selectbox(key="runs_cancel_target").value == run.id
    at.button(key="runs_cancel").click().run()
    assert not at.exception
    assert store.get(run.id).status == "cancelled"


def test_embeddings_page_draws_both_maps_in_every_colouring(env, finished_run):
    at = open_page("Embeddings")
    assert {"n_neighbors", "min_dist"} <= set(labels(at.slider))
    assert {"Metric (structures)", "Metric (conformers)"} <= set(labels(at.selectbox))
    assert len(at.get("plotly_chart")) == 3  # molecules, all conformers, one molecule's conformers
    for colour in ("molecule", "energy", "error"):
        at.radio(key="p_emb_colour").set_value(colour).run()
        assert not at.exception, colour
        assert len(at.get("plotly_chart")) == 3  # the error colouring uses the finished run
    start = time.perf_counter()
    at = open_page("Embeddings")  # a new session: the maps come from the disk cache
    assert time.perf_counter() - start < 30
    for f in (env / "cache" / "umap").glob("*.npy"):  # the cache cleared while the server runs
        f.unlink()
    at = open_page("Embeddings")  # computed again (the finished builds of the deleted files are not reused)
    assert not at.exception and len(at.get("plotly_chart")) == 3


def test_budget_page_shows_known_datasets_and_handles_bad_input(env):
    at = open_page("Budget")
    assert len(at.get("plotly_chart")) >= 1  # the map of published datasets, even with no fits
    assert any("Budget" == n.label for n in at.number_input)
    at.radio(key="p_budget_unit").set_value("cpu-hours").run()
    at.number_input(key="p_budget_value").set_value(1.0).run()
    assert not at.exception
    assert len(at.radio(key="p_budget_source").options) == 4
    for source in ("project", "store", "folder", "upload"):  # no source takes a typed server path
        at.radio(key="p_budget_source").set_value(source).run()
        assert not at.exception and not at.text_input, source
    at.radio(key="p_budget_source").set_value("upload").run()
    at.file_uploader(key="budget_upload").upload("passwd.csv", b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1\n")
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("Cannot read the results: passwd.csv:")
    assert "\n" not in at.error[0].value


def test_budget_page_offers_results_folders_of_the_store_and_project_only(env):
    at = open_page("Budget")
    at.radio(key="p_budget_source").set_value("folder").run()
    assert not at.exception
    options = at.selectbox(key="p_budget_folder").options
    assert any(o.startswith("project: results") for o in options)  # the project's own study, docs/results
    assert all(o.startswith(("project:", "run store:")) for o in options)


def test_budget_page_fits_a_results_folder_and_recommends(env):
    from synthetic_sweeps import results_table

    folder = env / "runs" / "sweeps" / "synthetic"
    folder.mkdir(parents=True)
    results_table().to_csv(folder / "results.csv", index=False)
    at = open_page("Budget")
    at.radio(key="p_budget_unit").set_value("conformers")
    at.number_input(key="p_budget_value").set_value(512.0)
    at.radio(key="p_budget_source").set_value("folder").run()
    box = at.selectbox(key="p_budget_folder")
    assert "run store: runs/sweeps/synthetic" in box.options
    box.select("run store: runs/sweeps/synthetic").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"Molecules M", "Conformers per molecule C"} <= set(labels(at.metric))
    m = int(at.metric[labels(at.metric).index("Molecules M")].value.replace(",", ""))
    c = int(at.metric[labels(at.metric).index("Conformers per molecule C")].value.replace(",", ""))
    assert m * c <= 512
    assert len(at.get("plotly_chart")) >= 4  # trade-off line, two error surfaces, the map


def test_budget_page_fits_an_uploaded_results_file(env):
    from synthetic_sweeps import results_table

    at = open_page("Budget")
    at.radio(key="p_budget_unit").set_value("conformers")
    at.number_input(key="p_budget_value").set_value(512.0)
    at.radio(key="p_budget_source").set_value("upload").run()
    at.file_uploader(key="budget_upload").upload("results.csv", results_table().to_csv(index=False).encode())
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"Molecules M", "Conformers per molecule C"} <= set(labels(at.metric))


def test_upload_limit_is_one_number():
    """The upload widget (config.toml's server.maxUploadSize, MB) and the page and library limit agree."""
    import tomllib

    from mlipdiv.uploads import MAX_UPLOAD_BYTES
    from pages import common

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_BYTES // 2**20 == common.MAX_UPLOAD_MB


def test_user_data_in_messages_is_markdown_safe():
    from pages.common import md

    assert md("C[N+](C)(C)C") == "C\\[N+\\](C)(C)C"  # no link
    assert md("a_b*c*`d`") == "a\\_b\\*c\\*\\`d\\`"


@pytest.mark.timeout(600)
def test_budget_page_answers_for_the_project_study_and_extrapolates_only_when_asked(env):
    """The first answer with the project's study is an answer (the default budget lies in the fitted range); a
    budget far beyond it is a warning with the way out, and the switch gives an answer marked as extrapolated."""
    from mlipdiv.jobs.store import RunStore

    at = open_page("Budget")
    if not RunStore(env / "runs").list(status="done"):  # the project's study until the app has runs of its own
        assert at.radio(key="p_budget_source").value == "project"
    at.radio(key="p_budget_source").set_value("project").run()
    assert not at.error, [e.value for e in at.error]
    assert {"Molecules M", "Conformers per molecule C"} <= set(labels(at.metric))
    assert any("Range of these runs" in m.value for m in at.markdown)
    notes = " ".join(c.value for c in at.caption)
    assert "--form" not in notes and ("AICc" not in notes or "Akaike" in notes)
    at.number_input(key="p_budget_value").set_value(1_000_000.0).run()
    assert not at.error and any("outside what these runs can answer for" in w.value for w in at.warning)
    assert "Molecules M" not in labels(at.metric)
    at.toggle(key="p_budget_extrapolate").set_value(True).run()
    assert not at.error and not at.exception
    assert "Molecules M (extrapolated)" in labels(at.metric)
