"""Analysis of finished runs: error-model fits, QM cost, budget advice, known datasets, extrapolation diagnostics.

One module per question: ``fit`` (how error depends on molecules M and conformers per molecule C), ``cost`` (what a
conformer costs to label), ``recommend`` (the best M x C for a budget), ``known_datasets`` (where published QM
datasets sit), ``infogap`` (model-free information gap between test and training sets), ``domain`` (applicability
domain: error against distance to the training set), ``figures`` (Plotly builders) and ``study`` (the reproduced
experiments end to end).
"""
