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

MAX_ABS_POSITION = 1.0e4
"""Largest coordinate magnitude in angstrom a dataset may hold: beyond it a value is a unit or parsing error, not an
isolated molecule (checked at load by :mod:`mlipdiv.io.validate`)."""

MAX_ATOMS_GENERATE = 120
"""Atoms per molecule (hydrogens included) that ``generate`` labels: checked right after the SMILES is parsed, before
embedding. The cost per molecule grows steeply with size (GFN2-xTB ~ N^3 per call, a Hessian is 3N + 1 calls): 120
atoms is about 6x the default set's mean of 18.5 and a C40 alkane (122 atoms) is already beyond it; a 150-carbon
alkane (452 atoms) ran without end."""

MAX_ATOMS_TRAIN = 200
"""Atoms per molecule for training. With the cell-list neighbour list (:mod:`mlipdiv.models.graph`) memory grows with
the atoms of a batch, not their square; a training step keeps every edge's activations for the double backward of
the force loss. Measured peak per atom of a batch (hidden 128, cutoff 5 angstrom, organic density, about 50
neighbours): SchNet 0.8 MB, PaiNN 2.7 MB, MACE 3.4 MB. A default batch of 16 molecules of 200 atoms therefore stays
below about 11 GB, inside a 24 GB machine with room for the app and another run; 200 atoms covers drug-sized molecules
with their hydrogens (500 would need about 27 GB with MACE)."""

MAX_ATOMS_CALCULATOR = 2000
"""Atoms per :class:`~mlipdiv.calculator.MLIPCalculator` call: one structure and no force-loss graph, about 1.7 MB per
atom at most (PaiNN, MACE at hidden 128; SchNet 0.3 MB), so at most about 3.5 GB. The calculator runs in the user's
own process (the app does not call it)."""

MAX_BUDGET_CONFORMERS = 10**10
"""Largest QM budget ``budget`` recommends for, in conformers (a CPU-hour budget is converted first): a hundred times
the largest published dataset it lists (PCQM B3LYP, 86 M conformers). Beyond it the fitted error model is a pure
extrapolation, and the optimiser's grids overflow."""
