"""Information gap (mlipdiv.analysis.infogap): the numpy implementation and the QUESTS package."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.analysis.infogap import atom_descriptors, delta_entropy, information_gap


def _structures(rng, n, scale=1.0, noise=0.03):
    base = np.array([[0, 0, 0], [1.5, 0, 0], [2.2, 1.3, 0], [3.7, 1.3, 0.2], [-0.5, 1.0, 0.1], [-0.4, -1.0, 0]])
    z = np.array([6, 6, 6, 8, 1, 1])
    return [(z, base * scale + rng.normal(0, noise, base.shape)) for _ in range(n)]


def test_infogap_larger_for_shifted_distribution() -> None:
    rng = np.random.default_rng(0)
    train = _structures(rng, 40)
    same = _structures(rng, 20)
    shifted = _structures(rng, 20, scale=1.25)
    g_same = information_gap(train, same, backend="numpy")
    g_shift = information_gap(train, shifted, backend="numpy")
    assert g_shift.dH_mean > g_same.dH_mean + 1.0
    assert g_shift.frac_extrapolative >= g_same.frac_extrapolative
    # the training set relative to itself is fully covered
    self_gap = information_gap(train, train, backend="numpy")
    assert self_gap.frac_extrapolative == 0.0


def test_numpy_descriptor_matches_quests_package() -> None:
    pytest.importorskip("quests")
    rng = np.random.default_rng(1)
    s = _structures(rng, 3) + [(np.full(40, 6), rng.normal(0, 3.0, (40, 3)))]  # also more atoms than k = 32
    x_np, owner = atom_descriptors(s, backend="numpy")
    x_q, _ = atom_descriptors(s, backend="quests")
    np.testing.assert_allclose(x_np, x_q, atol=1e-10)
    assert owner.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 40
    y, x = x_np[:10], x_np[10:]
    np.testing.assert_allclose(delta_entropy(y, x, backend="numpy"), delta_entropy(y, x, backend="quests"), atol=1e-8)
