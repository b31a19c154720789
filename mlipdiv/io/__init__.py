"""The bottom layer: every file mlipdiv reads or writes, and nothing else.

- :mod:`mlipdiv.io.atomic`: temp-file-and-rename writes (a reader or a killed process never sees a torn file).
- :mod:`mlipdiv.io.dataset`: the in-memory dataset (``Molecule``, ``Dataset``), checked on construction by
  :mod:`mlipdiv.io.validate`.
- :mod:`mlipdiv.io.hdf5`, :mod:`mlipdiv.io.extxyz`: the two dataset formats; :func:`mlipdiv.io.load.load_dataset`
  picks one by suffix.
- :mod:`mlipdiv.io.runlock`: one writer per run folder.
- :mod:`mlipdiv.io.rundir`: the run folder (``RunDir``): the only code that knows its file names.
- :mod:`mlipdiv.io.metrics`: ``metrics.json`` as a versioned, strictly read ``RunMetrics``.
- :mod:`mlipdiv.io.table`: ``runs_to_table``, the one definition of a results row.

Modules here import only the standard library, numpy, h5py, ASE/RDKit (lazily) and mlipdiv's core modules
(``errors``, ``limits``, ``paths``), never a layer above (checked by the import-linter contract in ``make test``).
"""
