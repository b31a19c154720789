"""Display helpers for the app: Plotly figure builders, the 3D molecule viewer, polling and selection logic.

Plain functions with no Streamlit import, so each is unit-tested on its own (``tests/viz/test_viz.py``) and the pages
only lay them out. Units: the library works in eV and angstrom; these helpers convert to meV and meV/angstrom for
display with :func:`mlipdiv.style.mev`.

* :mod:`mlipdiv.style` (one layer down, shared with the study figures of :mod:`mlipdiv.analysis.figures`) -- one
  projector-friendly Plotly look (large fonts, colour-blind-safe palette).
* :mod:`mlipdiv.viz.figures` -- learning curves, parity plots, the study plot, UMAP scatters, energy histograms.
* :mod:`mlipdiv.viz.molview` -- 3Dmol.js views built with py3Dmol but with a local, inlined copy of 3Dmol.js;
  2D depictions as data URIs for table image columns.
* :mod:`mlipdiv.viz.live` -- what the pages poll and how a plot selection maps back to conformers.
"""
