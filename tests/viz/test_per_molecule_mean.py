"""Per-molecule error averaging (the Embeddings page's structure colouring), and the budget unit conversion."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.viz.maps import per_molecule_mean


def test_per_molecule_mean_skips_unevaluated_conformers() -> None:
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, 10.0])
    mol = np.array([0, 0, 0, 1, 1, 2])
    out = per_molecule_mean(values, mol, 4)
    assert out[0] == pytest.approx(2.0) and np.isnan(out[1]) and out[2] == 10.0 and np.isnan(out[3])


def test_budget_in_conformers() -> None:
    from mlipdiv.analysis.cost import BUDGET_UNITS, CostModel, budget_in_conformers
    from mlipdiv.errors import InvalidSetting, MlipdivError

    cost = CostModel(c=3.6, p=1.0)  # 3.6 s per atom: 10 atoms = 36 s = 0.01 CPU-hours per conformer
    assert BUDGET_UNITS == ("conformers", "cpu-hours")
    assert budget_in_conformers(1234.0, "conformers", cost, 10) == 1234
    assert budget_in_conformers(1.0, "cpu-hours", cost, np.array([10.0, 10.0])) == 100
    with pytest.raises(MlipdivError, match="do not pay for one conformer"):
        budget_in_conformers(0.001, "cpu-hours", cost, 10)
    with pytest.raises(InvalidSetting, match="^unit must be one of"):
        budget_in_conformers(1.0, "gpu-days", cost, 10)
