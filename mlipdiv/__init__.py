"""mlipdiv: structural vs conformational diversity in training sets for machine-learning interatomic potentials.

Data flow, one sub-package per step:
``data`` (SMILES -> conformers -> GFN2-xTB labels -> HDF5) -> ``selection`` (splits, trade-off grids, diversity)
-> ``models`` / ``training`` (MLIPs with forces, per-split metrics) -> ``jobs`` (run store, background jobs, sweeps)
-> ``analysis`` (error fits, budget advice). The Streamlit pages in ``pages/`` only call into this package.

Units everywhere inside the library are ASE's: eV, angstrom, eV/angstrom.
"""

import os

__version__ = "0.1.0"

# numba (under umap, dscribe's sparse and quests) colours its error messages with colorama, whose init/deinit
# reassign ``sys.stderr`` for the whole process, and it builds such messages while compiling even for errors it
# handles itself. Maps and descriptors are computed in background threads, so another thread's output (the CLI's
# one-line errors, the app's log) went to whichever stream was current when colorama started. numba reads this
# once, at its first import, which may come through any of those packages: hence here. A user's own setting is kept.
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
