"""Fixtures of the budget-analysis tests."""

from __future__ import annotations

import pytest

from mlipdiv.analysis.fit import fit_results

from synthetic_sweeps import results_table  # tests/ is on sys.path (pytest.ini: pythonpath)


@pytest.fixture(scope="session")
def fits():
    """Error models fitted to a synthetic sweep (tests/synthetic_sweeps.py); shared read-only by the fit and
    recommendation tests."""
    return fit_results(results_table(), n_boot=60)
