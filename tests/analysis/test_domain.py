"""Applicability domain (mlipdiv.analysis.domain) on synthetic descriptors whose far points are known."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.analysis.domain import applicability_domain, error_threshold, nn_distances


def test_domain_threshold_flags_far_points() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (400, 6))
    val = rng.normal(0, 1, (100, 6))
    near = rng.normal(0, 1, (100, 6))
    far = rng.normal(0, 1, (100, 6)) + 8.0
    err = lambda x: 1.0 + nn_distances(train, x) ** 2  # noqa: E731 - error grows with distance
    rep = applicability_domain(train, val, {"test_conformers": near, "test_molecules": far},
                               reference_errors=err(val), test_errors={"test_conformers": err(near),
                                                                        "test_molecules": err(far)})
    s = rep.summary()
    assert s["test_molecules"]["flagged_fraction"] == 1.0
    assert s["test_conformers"]["flagged_fraction"] < 0.2
    assert s["val"]["flagged_fraction"] == pytest.approx(0.05, abs=0.02)  # 95th percentile by construction
    assert rep.error_threshold is not None and rep.error_threshold < nn_distances(train, far).min()
    assert s["test_molecules"]["error_flagged"] > 2 * s["val"]["error_unflagged"]


def test_error_threshold_none_when_error_flat() -> None:
    d = np.linspace(0, 10, 200)
    assert error_threshold(d, np.ones_like(d), 1.0, k=2.0) is None
    assert error_threshold(d, 1 + (d > 5) * 5.0, 1.0, k=2.0) == pytest.approx(5.0, abs=1.0)
