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


def test_kernel_sum_in_blocks_matches_the_plain_sum() -> None:
    """More rows than one block, and test points near, at the subnormal edge of, and far from the reference:
    dH equals the plain expression's, and where no reference point is near it is the clamp, -log(tiny)."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(2)
    h = 0.015
    x = rng.normal(0.0, 1.0, (50, 5))  # reference points far apart on the bandwidth's scale
    # exponents of about -0.3, -720 (a subnormal term) and -3e5 (zero terms) from the nearest reference point
    y = np.concatenate([x[rng.integers(0, 50, 4000)] + rng.normal(0, h / 3, (4000, 5)),
                        x[rng.integers(0, 50, 300)] + np.sqrt(2 * 720) * h * np.eye(5)[0],
                        x[rng.integers(0, 50, 1000)] + 5.0])
    sums = np.exp(-cdist(y, x, "sqeuclidean") / (2 * h**2)).sum(1)
    tiny = np.finfo(float).tiny
    dh = delta_entropy(y, x, h, backend="numpy")
    np.testing.assert_allclose(dh, -np.log(np.maximum(sums, tiny)), rtol=1e-12, atol=1e-9)
    subnormal = (sums > 0) & (sums < tiny)  # every term subnormal: the plain sum is clamped, so is ours
    assert subnormal.sum() > 250 and np.all(dh[subnormal] == -np.log(tiny))
    assert np.all(dh[-1000:] == -np.log(tiny)) and np.all(dh[:4000] < 5)


def test_runs_on_one_split_share_their_gaps_in_memory_and_on_disk(tiny_dataset_path, tmp_path, monkeypatch) -> None:
    """The gap depends on the structures, not the model: with a memo, the second model's run on the same split
    computes no kernel sum and gets the same reports as a fresh computation; another seed's split is computed.
    A GapCache keeps the reports across analyses, per dataset, and recomputes a damaged file."""
    from mlipdiv.analysis import infogap
    from mlipdiv.io.load import load_dataset
    from mlipdiv.training import TrainConfig, train

    for model, seed in (("schnet", 0), ("painn", 0), ("schnet", 1)):
        cfg = TrainConfig.from_flat(dataset=str(tiny_dataset_path), budget=16, molecules=8, model=model, hidden=8,
                                    interactions=1, epochs=1, batch_size=8, device="cpu", seed=seed)
        train(cfg, tmp_path / f"{model}-{seed}")
    calls: list[int] = []
    real = infogap.delta_entropy
    monkeypatch.setattr(infogap, "delta_entropy", lambda *a, **k: calls.append(1) or real(*a, **k))
    dataset = load_dataset(tiny_dataset_path)

    memo: dict = {}
    first = infogap.gap_for_run(tmp_path / "schnet-0", dataset, memo=memo, backend="numpy")
    assert len(first) == 3 and len(calls) == 3
    shared = infogap.gap_for_run(tmp_path / "painn-0", dataset, memo=memo, backend="numpy")
    assert len(calls) == 3
    fresh = infogap.gap_for_run(tmp_path / "painn-0", dataset, backend="numpy")
    assert len(calls) == 6
    assert {k: v.as_dict() for k, v in shared.items()} == {k: v.as_dict() for k, v in fresh.items()}
    infogap.gap_for_run(tmp_path / "schnet-1", dataset, memo=memo, backend="numpy")
    assert len(calls) == 9  # another split: nothing to reuse
    # kept on disk: a later analysis (another process, another memo) computes nothing it computed before
    cache = tmp_path / "cache"
    on_disk = infogap.gap_for_run(tmp_path / "schnet-0", dataset, memo=infogap.GapCache(cache, "d1"), backend="numpy")
    assert len(calls) == 12
    again = infogap.gap_for_run(tmp_path / "painn-0", dataset, memo=infogap.GapCache(cache, "d1"), backend="numpy")
    assert len(calls) == 12
    for name, report in again.items():
        assert report.as_dict() == on_disk[name].as_dict() == first[name].as_dict()
        np.testing.assert_array_equal(report.per_conformer_max, first[name].per_conformer_max)
    # another dataset's digest shares nothing; a damaged file is recomputed, not trusted
    infogap.gap_for_run(tmp_path / "schnet-0", dataset, memo=infogap.GapCache(cache, "d2"), backend="numpy")
    assert len(calls) == 15
    for f in cache.glob("*.json"):
        f.write_text(f.read_text()[:20])
    infogap.gap_for_run(tmp_path / "schnet-0", dataset, memo=infogap.GapCache(cache, "d1"), backend="numpy")
    assert len(calls) == 18
