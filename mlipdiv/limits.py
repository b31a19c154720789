"""Size and range limits of the whole package, in one place (standard library only: the data layer imports it too).

Each limit protects a process that may be shared (the Streamlit app trains inside the server process): input beyond
it is refused with a one-line :class:`~mlipdiv.errors.MlipdivError` before anything large is allocated. The README's
"Limits" section lists them; change them here and there.
"""

from __future__ import annotations

MAX_Z = 118
"""Largest atomic number (oganesson): sizes the per-element tables (reference energies, MACE's element index)."""

EMBEDDING_MAX_Z = 99
"""Largest atomic number SchNet and PaiNN can embed: both look up Z in a 100-row table (PyG's SchNet fixes that size;
PaiNN's matches it so that saved models and seeded initialisations stay as they were). MACE takes up to ``MAX_Z``."""

MAX_ATOMS_TRAIN = 500
"""Atoms per molecule for training. A training step keeps the activations of every edge of a batch for the double
backward of the force loss; with the cell-list neighbour list (:mod:`mlipdiv.models.graph`) edges grow with the atoms
(about 50 neighbours within 5 angstrom in organic matter), so a batch of 16 molecules of 500 atoms needs a few GB at
the default model sizes -- within a 24 GB, 2-core machine, with room for the app and other runs."""

MAX_ATOMS_CALCULATOR = 2000
"""Atoms per :class:`~mlipdiv.calculator.MLIPCalculator` call: one structure, no force-loss graph, so four times the
training limit still stays near a GB at the default model sizes."""

MAX_BUDGET_CONFORMERS = 10**10
"""Largest QM budget ``budget`` recommends for, in conformers (a CPU-hour budget is converted first): a hundred times
the largest published dataset it lists (PCQM B3LYP, 86 M conformers). Beyond it the fitted error model is a pure
extrapolation, and the optimiser's grids overflow."""
