"""Nearest-neighbour distances through scipy's k-d tree equal the brute-force ones."""

from __future__ import annotations

import numpy as np
import pytest

from mlipdiv.analysis.domain import nn_distances
from mlipdiv.errors import MlipdivError


@pytest.mark.parametrize("dim", [1, 3, 16])
def test_nn_distances_match_brute_force(dim: int) -> None:
    rng = np.random.default_rng(dim)
    ref, query = rng.normal(size=(200, dim)), rng.normal(size=(150, dim))
    brute = np.sqrt(((query[:, None, :] - ref[None, :, :]) ** 2).sum(-1)).min(1)
    assert np.allclose(nn_distances(ref, query), brute, rtol=1e-12, atol=1e-12)
    assert np.allclose(nn_distances(ref, ref), 0.0)  # a point is its own nearest neighbour
    assert nn_distances(ref, query[:0]).shape == (0,)


def test_nn_distances_need_a_training_set() -> None:
    with pytest.raises(MlipdivError, match="training set is empty"):
        nn_distances(np.empty((0, 3)), np.zeros((2, 3)))
