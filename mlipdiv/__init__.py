"""mlipdiv: structural vs conformational diversity in training sets for machine-learning interatomic potentials.

Data flow, one sub-package per step:
``data`` (SMILES -> conformers -> GFN2-xTB labels -> HDF5) -> ``selection`` (splits, trade-off grids, diversity)
-> ``models`` / ``training`` (MLIPs with forces, per-split metrics) -> ``jobs`` (run store, background jobs, sweeps)
-> ``analysis`` (error fits, budget advice). The Streamlit pages in ``pages/`` only call into this package.

Units everywhere inside the library are ASE's: eV, angstrom, eV/angstrom.
"""

__version__ = "0.1.0"
