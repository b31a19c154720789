"""From SMILES to labelled conformers: molecule pools, RDKit conformers, thermal sampling, the GFN2-xTB oracle and
``generate``, which writes a dataset file through :mod:`mlipdiv.io`."""
