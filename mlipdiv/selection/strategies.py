"""Selection strategies: which M molecules and which C conformers per molecule go into a training set.

A strategy gets candidates already in a seeded random order (see :mod:`mlipdiv.selection.splits`) and returns
the first ``k`` it wants, in the order it picked them; it needs no random numbers of its own, so every strategy is
reproducible from the split's seed and "the first candidate" is a seeded random start.

* ``random`` -- the first ``k`` candidates. Smaller sets are nested in larger ones.
* ``diverse`` -- greedy max-min (k-center, Gonzalez 1985) from the first candidate: each next pick is the candidate
  farthest from everything picked so far. Molecules: Tanimoto distance (1 - Tanimoto) on Morgan fingerprints.
  Conformers: Euclidean distance between :func:`mlipdiv.descriptors.conformer_features` (sorted heavy-atom
  distances). Also nested (greedy order).

Adding a strategy: subclass :class:`Strategy` and decorate it with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mlipdiv.descriptors import conformer_features, molecule_fingerprints, tanimoto_similarity
from mlipdiv.io.dataset import Dataset, Molecule
from mlipdiv.registry import Registry

__all__ = ["STRATEGIES", "DiverseStrategy", "RandomStrategy", "Strategy", "get_strategy", "greedy_max_min", "register"]

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make a strategy available by its ``name`` (CLI ``--strategy``, app menus)."""
    return STRATEGIES.register(cls.name, cls)


def get_strategy(name: str) -> Strategy:
    """A new instance of the strategy called ``name``; :class:`~mlipdiv.errors.UnknownName` lists the known ones."""
    return STRATEGIES.get(name)()


class Strategy:
    """Base class. ``molecules`` and ``conformers`` return the chosen candidates, at most ``k`` of them."""

    name = ""
    description = ""

    def molecules(self, dataset: Dataset, candidates: Sequence[str], k: int) -> list[str]:
        raise NotImplementedError

    def conformers(self, molecule: Molecule, candidates: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError


@register
class RandomStrategy(Strategy):
    name = "random"
    description = "the first k of a seeded random order (smaller sets nested in larger ones)"

    def molecules(self, dataset: Dataset, candidates: Sequence[str], k: int) -> list[str]:
        return list(candidates[:k])

    def conformers(self, molecule: Molecule, candidates: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(candidates[:k], dtype=np.int64)


@register
class DiverseStrategy(Strategy):
    name = "diverse"
    description = "greedy max-min: Tanimoto distance for molecules, 3D descriptor distance for conformers"

    def molecules(self, dataset: Dataset, candidates: Sequence[str], k: int) -> list[str]:
        fps = molecule_fingerprints(dataset)[[dataset.index_of(m) for m in candidates]]
        if len(candidates) <= 5000:  # one matrix product beats k row products (<= 200 MB)
            dist = 1.0 - tanimoto_similarity(fps)
            chosen = greedy_max_min(len(candidates), k, lambda i: dist[i])
        else:
            chosen = greedy_max_min(len(candidates), k, lambda i: 1.0 - tanimoto_similarity(fps[i : i + 1], fps)[0])
        return [candidates[i] for i in chosen]

    def conformers(self, molecule: Molecule, candidates: np.ndarray, k: int) -> np.ndarray:
        x = conformer_features(molecule.atomic_numbers, molecule.positions[candidates]).astype(np.float64)
        chosen = greedy_max_min(len(candidates), k, lambda i: np.linalg.norm(x - x[i], axis=1))
        return np.asarray(candidates, dtype=np.int64)[chosen]


def greedy_max_min(n: int, k: int, distances_from: Callable[[int], np.ndarray]) -> list[int]:
    """Greedy max-min (farthest-first) selection of ``k`` of ``n`` items, starting with item 0.

    Args:
        n: number of items.
        k: how many to pick (capped at n).
        distances_from: ``i -> (n,)`` distances from item ``i`` to every item; called once per pick, so memory
            stays O(n) and time O(n k).

    Returns:
        Picked indices in pick order; ties go to the lowest index.
    """
    k = min(k, n)
    if k <= 0:
        return []
    chosen = [0]
    nearest = np.asarray(distances_from(0), dtype=np.float64).copy()
    nearest[0] = -np.inf
    while len(chosen) < k:
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, distances_from(nxt))
        nearest[chosen] = -np.inf
    return chosen
