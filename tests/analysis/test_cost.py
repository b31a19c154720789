"""The GFN2-xTB and pipeline cost models (mlipdiv.analysis.cost)."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.analysis.cost import fit_power_law, xtb_cost_model


def test_cost_model_monotone_and_units_consistent() -> None:
    model = xtb_cost_model()
    assert model.p > 0 and model.c > 0 and model.meta["machine"]["cpu"]
    sizes = np.array([5, 10, 20, 40, 80])
    t = model.seconds_per_conformer(sizes)
    assert np.all(np.diff(t) > 0)
    hours = model.cpu_hours_for(10_000, 20)
    assert model.conformers_for(hours, 20) == 10_000
    assert model.cpu_hours_for(model.conformers_for(3.0, 20), 20) == pytest.approx(3.0, rel=1e-3)
    # several molecule sizes: the mean per-conformer cost
    assert model.mean_seconds([10, 30]) == pytest.approx((model.seconds_per_conformer(10) +
                                                          model.seconds_per_conformer(30)) / 2)
    dft = model.scaled(factor=1000.0, exponent=3.0, n_ref=20)
    assert dft.seconds_per_conformer(20) == pytest.approx(1000 * model.seconds_per_conformer(20))
    assert dft.seconds_per_conformer(40) == pytest.approx(8 * dft.seconds_per_conformer(20))
    assert dft.conformers_for(1.0, 20) < model.conformers_for(1.0, 20)


def test_power_law_fit_recovers_exponent() -> None:
    n = np.array([5, 10, 20, 40, 80.0])
    c, p, r2 = fit_power_law(n, 2e-5 * n**2.5)
    assert p == pytest.approx(2.5) and c == pytest.approx(2e-5) and r2 == pytest.approx(1.0)


def test_pipeline_cost_reproduces_the_measured_generation_cost() -> None:
    from mlipdiv.analysis.cost import pipeline_cost_model

    model, xtb = pipeline_cost_model(), xtb_cost_model()
    gen = xtb.meta["dataset_generation"]
    assert model.seconds_per_conformer(gen["mean_atoms"]) == pytest.approx(gen["cpu_seconds_per_stored_conformer"])
    assert model.p == pytest.approx(xtb.p) and model.seconds_per_conformer(20) > xtb.seconds_per_conformer(20)
