"""mlipdiv in the browser: ``streamlit run app.py`` (or ``make run``).

This script is the Home page and the router. The page list is one registry (:data:`PAGES`): adding a page is a
file in ``pages/`` and a line here. Pages hold layout only; the science is in the :mod:`mlipdiv` library. The script
runs before every page: it sets the page config, starts the background build of the default dataset's UMAP maps
(once per server process) and hands over to the chosen page.
"""

from __future__ import annotations

from pathlib import Path

# Imported here, before the background threads start: plotly looks modules up in sys.modules, and would find a
# half-imported pandas or pyarrow while a thread is importing torch or umap.
import numpy as np
import pandas  # noqa: F401
import pyarrow  # noqa: F401
import streamlit as st
from ase.data import chemical_symbols

from mlipdiv.embeddings import start_background_build
from pages import common

# (title, file, icon, url path): the sidebar shows them in this order. Home is this file (:func:`home`).
PAGES = [
    ("Home", "app.py", ":material/home:", "home"),
    ("Dataset", "pages/dataset.py", ":material/science:", "dataset"),
    ("Trade-off", "pages/tradeoff.py", ":material/tune:", "trade-off"),
    ("Runs", "pages/runs.py", ":material/monitoring:", "runs"),
    ("Embeddings", "pages/embeddings.py", ":material/scatter_plot:", "embeddings"),
    ("Budget", "pages/budget.py", ":material/payments:", "budget"),
]


def home() -> None:
    """Home: the question, the dataset at a glance, one-click studies."""
    st.title("How should a QM budget be split between molecules and conformers?")
    st.markdown(
        "A machine-learning interatomic potential learns from quantum-chemistry calculations, and every calculation "
        "costs. With a fixed number of them, you can label **many different molecules** with a few geometries each "
        "(structural diversity) or **few molecules** in many geometries each (conformational diversity). "
        "mlipdiv trains real models on real GFN2-xTB data to show how that choice changes the error on "
        "**unseen conformers** and on **unseen molecules**, following Shenoy et al., *Role of Structural and "
        "Conformational Diversity for Machine Learning Potentials* (2023); the definitions used here are ours."
    )

    ds = common.dataset()
    common.sidebar(ds)

    if ds is not None:
        st.subheader("The dataset at a glance")
        n_conf = np.array([m.n_conformers for m in ds])
        n_atoms = np.array([m.n_atoms for m in ds])
        cols = st.columns(5)
        # short labels and values: a metric cuts what does not fit its column (1400 px wide, five columns)
        cols[0].metric("Molecules", f"{len(ds):,}")
        cols[1].metric("Conformers", f"{ds.n_conformers:,}")
        cols[2].metric("Per molecule", f"{np.median(n_conf):.0f}", help="conformers per molecule (median)")
        cols[3].metric("Atoms", f"{n_atoms.min()}–{n_atoms.max()}", help="atoms per molecule, with hydrogens")
        symbols = " ".join(chemical_symbols[z] for z in ds.elements)
        cols[4].metric("Elements", f"{len(ds.elements)}", help=symbols)
        st.caption(f"Elements: {symbols}.")
        st.caption(f"Labels: {ds.level_of_theory}, energies and forces. File: `{common.dataset_name()}`. "
                   "Browse it on the **Dataset** page.")

    st.subheader("Run a study with one click")
    st.markdown(
        "Each button queues a whole experiment (every point of the trade-off × several seeds) as background runs and "
        "returns at once; follow them on **Runs**. They are sized for a laptop CPU."
    )
    presets = common.laptop_presets()
    cols = st.columns(len(presets))
    for col, preset in zip(cols, presets):
        with col.container(border=True):
            st.markdown(f"**{common.preset_title(preset)}**")
            st.caption(preset.description)
            st.caption(f"{preset.n_runs} runs · {'/'.join(preset.models)} · {preset.epochs} epochs · "
                       f"{preset.expected}")
            if st.button("Start", key=f"preset_{preset.name}", type="primary", disabled=ds is None):
                with common.user_errors(f"Cannot start {common.preset_title(preset).lower()}: "):
                    ids, reused = common.submit_preset(preset)
                    kept = f"; {reused} already stored" if reused else ""
                    st.success(f"Queued {len(ids) - reused} run(s){kept}. Open **Runs** to watch them.",
                               icon=":material/check_circle:")
    st.page_link("pages/runs.py", label="Runs: progress and results", icon=":material/monitoring:")
    st.page_link("pages/tradeoff.py", label="Trade-off: choose one point and train it", icon=":material/tune:")


def _serve() -> None:
    """``python app.py [streamlit options]`` (what ``make run`` does): ``streamlit run app.py`` without Streamlit's
    guess that a ``pages/`` folder means its old folder-based navigation. With that guess, the first request of a
    fresh server is resolved against the folder's file names before :func:`st.navigation` has run, so a first
    visitor who opens a page by its URL (``/trade-off``) saw "Page not found" over the right page
    (streamlit/streamlit#9992). The router below owns the pages; the flag only skips the guess."""
    import sys

    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", __file__, *sys.argv[1:]]
    cli.main()


if __name__ == "__main__" and not st.runtime.exists():  # started as a program, not by a Streamlit server
    _serve()
    raise SystemExit(0)

# A local favicon: with none, the browser would fetch the page's material icon from Google's font server.
st.set_page_config(page_title="mlipdiv", page_icon=str(Path(__file__).with_name("pages") / "icon.png"),
                   layout="wide")


@st.cache_resource(show_spinner=False)
def _start_background_work() -> str:
    """Once per server process: build the default dataset's UMAP maps and import torch and the models, each in a
    daemon thread, so pages opened later do not wait for them. (The Budget page's fits are not made here: a
    bootstrap in a thread holds the interpreter for seconds at a time and left every open page unresponsive.)"""
    common.warm_up()
    return start_background_build()


_start_background_work()
common.keep_widget_state()
pages = [st.Page(home if path == "app.py" else path, title=title, icon=icon, url_path=url, default=(i == 0))
         for i, (title, path, icon, url) in enumerate(PAGES)]
st.navigation(pages).run()
