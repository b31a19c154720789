"""Leak-free, seeded splits: held-out molecules, held-out conformers, validation, and an exact M x C training set.

Order of operations (every random draw comes from ``(seed, purpose, molecule id)``, so it does not depend on any
other molecule, on M, on C or on the strategy):

1. **test_molecules** -- molecules held out entirely (structural generalization). ``test_molecules`` < 1 is a
   fraction of the dataset's molecules (rounded, at least 1), >= 1 a count; at least one molecule always stays
   trainable. ``molecule_split="random"`` takes the first ones of a seeded permutation; ``"scaffold"`` holds out
   whole Bemis-Murcko scaffolds: scaffolds larger than half the target (typically the empty scaffold shared by all
   acyclic molecules) stay trainable, the others are taken in seeded random order while they fit in the target, so
   the count may fall a little short of it (never above, unless no scaffold fits: then the smallest is taken).
2. **Reserved test conformers** of every remaining (trainable) molecule (conformational generalization).
   ``conformer_holdout="family"`` (default) reserves whole parent families -- all samples of one relaxed
   conformer -- ``round(test_conformer_fraction x families)`` of them, at least 1 and never all; a molecule with a
   single family falls back to a random ``round(test_conformer_fraction x conformers)`` (at least 1 when it has
   two conformers or more); ``counts["family_fallback_molecules"]`` says how many trainable molecules did, and
   ``counts["family_fallback_train_molecules"]`` how many of the training molecules.
   ``conformer_holdout="random"`` reserves a random fraction of conformers (for comparison).
3. **Reserved val conformers**: ``val_per_molecule`` random conformers of what remains, leaving at least one.
4. **train**: exactly M molecules x C conformers from what remains. A trainable molecule is *eligible* for C when
   at least C conformers remain for it; M must not exceed the eligible molecules. The strategy picks M of the
   eligible molecules, taken in a seeded random order, and C of each one's remaining conformers, also in a seeded
   random order (``random``: the first ones, so smaller M and C are nested in larger; ``diverse``: greedy
   max-min from the first one).

Steps 1-3 do not depend on M, C or the strategy: ``test_molecules`` is the same for every point of an experiment,
and so is each molecule's reserved test set. A :class:`Split` lists, each capped at ``max_eval_per_molecule``
conformers per molecule (a seeded, fixed subset) to bound evaluation cost:

* ``test_conformers``: the reserved test conformers of the *training* molecules (unseen conformers of trained
  molecules), without those of rigid molecules (a single parent family: their hold-out is a random draw of that
  family, thermal neighbours of training geometries, so it would not measure conformational generalization;
  ``counts["rigid_test_conformers"]`` says how many were left out);
* ``val``: the val reservation of the training molecules;
* ``test_molecules``: conformers of the held-out molecules.

**Anchors** (``anchor_molecules`` = K > 0), for experiments whose points must be scored on the same conformers:
the seed's K anchor molecules are picked once (independent of M and C) among the non-rigid trainable molecules
that have enough conformers for any C feasible with K molecules, greedily covering the most elements of the
dataset first, then in the seeded order. Every point with M >= K trains on all anchors (the strategy picks the
other M - K), so that

* ``test_conformers`` are the anchors' reserved test conformers only -- the same conformers at every point;
* ``test_molecules`` are the held-out molecules made only of the anchors' elements -- every point can predict
  them, so none is dropped at some points and kept at others (``counts["test_molecules_excluded"]`` counts the
  conformers of the others).

The split file (:meth:`Split.to_json`) has sorted keys and sorted pairs, with floats rounded to 6 significant
digits, so the same dataset, spec and seed give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.descriptors import dataset_digest, single_threaded_blas
from mlipdiv.errors import InfeasibleRequest, InvalidSetting, UnknownName
from mlipdiv.io.atomic import atomic_write_text
from mlipdiv.io.dataset import Dataset
from mlipdiv.names import SPLITS, SplitName
from mlipdiv.selection.strategies import STRATEGIES, get_strategy

__all__ = ["Reservation", "Split", "SplitSpec", "anchors", "load_split", "make_split", "reserve", "resolve_point"]

Pair = tuple[str, int]
MOLECULE_SPLITS = ("random", "scaffold")


def _whole(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)

CONFORMER_HOLDOUTS = ("family", "random")


@dataclass(frozen=True)
class SplitSpec:
    """Everything that defines a split; two of ``budget``, ``molecules``, ``conformers_per_molecule`` are needed.

    Attributes:
        budget: training conformers B = M x C.
        molecules: M, number of training molecules.
        conformers_per_molecule: C, training conformers of each training molecule.
        strategy: ``"random"`` or ``"diverse"`` (see :mod:`mlipdiv.selection.strategies`).
        molecule_split: ``"random"`` or ``"scaffold"`` (how ``test_molecules`` are chosen).
        conformer_holdout: ``"family"`` (whole parent families) or ``"random"``.
        test_molecules: fraction (< 1) or count (>= 1) of molecules held out entirely.
        test_conformer_fraction: share of each trainable molecule's families (or conformers) reserved for test.
        val_per_molecule: conformers reserved for validation per trainable molecule.
        max_eval_per_molecule: cap on conformers per molecule listed in val / test sets (None: no cap).
        seed: non-negative integer; fixes every random choice.
    """

    # metadata: the help of the command-line flag each field becomes (mlipdiv.cli.options), and its choices
    budget: int | None = field(default=None, metadata={"help": "training conformers B = M x C"})
    molecules: int | None = field(default=None, metadata={"help": "training molecules M"})
    conformers_per_molecule: int | None = field(default=None, metadata={"help": "training conformers per molecule C"})
    strategy: str = field(default="random", metadata={
        "help": "how molecules and conformers are picked", "choices": lambda: tuple(sorted(STRATEGIES))})
    molecule_split: str = field(default="random", metadata={
        "help": "how test molecules are held out: random, or whole Bemis-Murcko scaffolds", "choices": MOLECULE_SPLITS})
    conformer_holdout: str = field(default="family", metadata={
        "help": "test conformers of trainable molecules: whole parent families or random",
        "choices": CONFORMER_HOLDOUTS})
    test_molecules: float = field(default=0.2, metadata={
        "help": "molecules held out entirely: a fraction below 1 or a count"})
    test_conformer_fraction: float = field(default=0.25, metadata={
        "help": "share of each trainable molecule's parent families (or conformers) reserved for test"})
    val_per_molecule: int = field(default=4, metadata={
        "help": "validation conformers reserved per trainable molecule"})
    max_eval_per_molecule: int | None = field(default=8, metadata={
        "help": "at most this many conformers per molecule in val and test sets"})
    anchor_molecules: int = field(default=0, metadata={
        "help": "K > 0: every training set includes the seed's K anchor molecules, and the test sets are the "
                "anchors' unseen conformers and the held-out molecules of the anchors' elements, the same at every "
                "(M, C) point with M >= K (0: off)"})
    seed: int = field(default=0, metadata={
        "help": "fixes every random choice: the split and, when training, the initial weights and the batch order"})

    def __post_init__(self) -> None:
        """Every option within its documented range, or :class:`InvalidSetting` naming its field."""
        if self.molecule_split not in MOLECULE_SPLITS:
            raise InvalidSetting(f"molecule_split must be one of {MOLECULE_SPLITS}, not {self.molecule_split!r}",
                                 "molecule_split")
        if self.conformer_holdout not in CONFORMER_HOLDOUTS:
            raise InvalidSetting(
                f"conformer_holdout must be one of {CONFORMER_HOLDOUTS}, not {self.conformer_holdout!r}",
                "conformer_holdout",
            )
        try:
            get_strategy(self.strategy)
        except UnknownName as exc:
            raise UnknownName(exc.kind, exc.name, exc.known, field="strategy") from None
        if not (_whole(self.seed) and self.seed >= 0):
            raise InvalidSetting.out_of_range("seed", self.seed, "a whole number of at least 0")
        for name in ("budget", "molecules", "conformers_per_molecule"):
            value = getattr(self, name)
            if value is not None and not _whole(value):
                raise InvalidSetting.out_of_range(name, value, "a whole number")
        t = self.test_molecules
        if not (
            isinstance(t, numbers.Real)
            and not isinstance(t, bool)
            and math.isfinite(t)
            and (0 <= t < 1 or (t >= 1 and t == int(t)))
        ):
            raise InvalidSetting.out_of_range("test_molecules", t, "a fraction in [0, 1) or a whole count of molecules")
        if not (isinstance(self.test_conformer_fraction, numbers.Real) and 0 < self.test_conformer_fraction < 1):
            raise InvalidSetting.out_of_range("test_conformer_fraction", self.test_conformer_fraction, "in (0, 1)")
        if not (_whole(self.anchor_molecules) and self.anchor_molecules >= 0):
            raise InvalidSetting.out_of_range("anchor_molecules", self.anchor_molecules, "a whole number of at least 0")
        if not (_whole(self.val_per_molecule) and self.val_per_molecule >= 0):
            raise InvalidSetting.out_of_range("val_per_molecule", self.val_per_molecule, "a whole number of at least 0")
        if self.max_eval_per_molecule is not None and not (
            _whole(self.max_eval_per_molecule) and self.max_eval_per_molecule >= 1
        ):
            raise InvalidSetting.out_of_range(
                "max_eval_per_molecule", self.max_eval_per_molecule, "a whole number of at least 1 (None: no cap)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitSpec:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _rng(seed: int, *tags: str) -> np.random.Generator:
    """A generator that depends only on the seed and the tags (purpose, molecule id)."""
    words = [int(seed)] + [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in tags]
    return np.random.default_rng(np.random.SeedSequence(words))


# ------------------------------------------------------------------------------------------------ held-out sets


@dataclass
class Reservation:
    """Held-out sets of a dataset for a seed; independent of M, C and the strategy.

    Attributes:
        test_molecules: ids of molecules held out entirely (sorted).
        trainable: ids of the other molecules (sorted).
        order: ``trainable`` in the seeded order strategies receive them.
        test: per trainable molecule, its reserved test conformers (sorted).
        val: per trainable molecule, its reserved val conformers (sorted).
        available: per trainable molecule, its remaining conformers in a seeded order (train candidates).
        family_fallback: trainable molecules with a single parent family (random hold-out used instead), sorted.
    """

    test_molecules: list[str]
    trainable: list[str]
    order: list[str]
    test: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    available: dict[str, np.ndarray]
    family_fallback: list[str] = field(default_factory=list)

    @cached_property
    def available_counts(self) -> np.ndarray:
        """Remaining (train-candidate) conformers per trainable molecule, in decreasing order."""
        return np.sort([len(self.available[m]) for m in self.trainable])[::-1]

    def max_conformers(self, molecules: int) -> int:
        """Largest C for which at least ``molecules`` molecules are eligible (0 if none)."""
        counts = self.available_counts
        return int(counts[molecules - 1]) if 0 < molecules <= len(counts) else 0

    def eligible(self, conformers: int) -> list[str]:
        """Trainable molecules with at least ``conformers`` remaining, in the seeded order."""
        return [m for m in self.order if len(self.available[m]) >= conformers]

    def max_budget(self) -> tuple[int, int, int]:
        """Largest M x C the data allows: ``(budget, M, C)`` (most molecules among ties)."""
        counts = self.available_counts
        if len(counts) == 0:
            return 0, 0, 0
        budgets = counts * np.arange(1, len(counts) + 1)
        m = int(len(budgets) - np.argmax(budgets[::-1]))
        return int(budgets[m - 1]), m, int(counts[m - 1])


def _n_test_molecules(spec: SplitSpec, n: int) -> int:
    value = spec.test_molecules
    if value == 0:
        return 0
    k = max(1, int(round(value * n))) if value < 1 else int(value)
    if k >= n:
        raise InfeasibleRequest(
            f"cannot hold out {k} of the {n} molecules as test_molecules: at least one must stay trainable, "
            f"so at most {n - 1} can be held out"
        )
    return k


def _scaffold_holdout(dataset: Dataset, ids: list[str], k: int, seed: int) -> list[str]:
    from mlipdiv.diversity import murcko_scaffold

    groups: dict[str, list[str]] = {}
    for m in ids:
        groups.setdefault(murcko_scaffold(dataset[m].smiles), []).append(m)
    scaffolds = sorted(groups)
    small = [s for s in scaffolds if len(groups[s]) <= k / 2]
    order = [small[i] for i in _rng(seed, "scaffold_split").permutation(len(small))]
    test: list[str] = []
    for s in order:
        if len(test) + len(groups[s]) <= k:
            test += groups[s]
    if not test and k > 0:  # no scaffold fits: take the smallest one
        if len(groups) < 2:
            raise InfeasibleRequest(
                "all molecules share one Bemis-Murcko scaffold, so a scaffold split cannot hold any out; "
                "use --molecule-split random or --test-molecules 0"
            )
        test = list(groups[min(scaffolds, key=lambda s: (len(groups[s]), s))])
    return test


def _holdout_conformers(parent: np.ndarray, fraction: float, family: bool, rng: np.random.Generator) -> tuple:
    """Reserved test conformer indices of one molecule and whether the family rule fell back to random."""
    n = len(parent)
    families = np.unique(parent)
    if family and len(families) >= 2:
        k = min(max(1, int(round(fraction * len(families)))), len(families) - 1)
        chosen = rng.choice(families, size=k, replace=False)
        return np.flatnonzero(np.isin(parent, chosen)), False
    k = min(max(1, int(round(fraction * n))), n - 1) if n >= 2 else 0
    return np.sort(rng.choice(n, size=k, replace=False)), family


def reserve(dataset: Dataset, spec: SplitSpec) -> Reservation:
    """Steps 1-3 of the module doc: held-out molecules and each trainable molecule's test and val conformers.

    Computed once per dataset object and the settings it reads (about 1 s for 1,000 molecules: every point of a
    trade-off shares it, so a slider step in the app does not pay it again). Callers must not mutate the result.
    """
    key = ("reserve", spec.seed, spec.test_molecules, spec.molecule_split, spec.test_conformer_fraction,
           spec.conformer_holdout, spec.val_per_molecule)
    return dataset.memo(key, lambda: _reserve(dataset, spec))


def _reserve(dataset: Dataset, spec: SplitSpec) -> Reservation:
    seed = spec.seed
    ids = sorted(dataset.ids)
    k = _n_test_molecules(spec, len(ids))
    if spec.molecule_split == "scaffold":
        held = set(_scaffold_holdout(dataset, ids, k, seed))
    else:
        held = {ids[i] for i in _rng(seed, SplitName.TEST_MOLECULES).permutation(len(ids))[:k]}
    trainable = [m for m in ids if m not in held]
    order = [trainable[i] for i in _rng(seed, "train_molecules").permutation(len(trainable))]
    test, val, available, fallback = {}, {}, {}, []
    for m in trainable:
        mol = dataset[m]
        t, fell_back = _holdout_conformers(
            mol.parent, spec.test_conformer_fraction, spec.conformer_holdout == "family", _rng(seed, "test", m)
        )
        if fell_back:
            fallback.append(m)
        rest = np.setdiff1d(np.arange(mol.n_conformers), t)
        n_val = min(spec.val_per_molecule, max(0, len(rest) - 1))
        v = np.sort(_rng(seed, SplitName.VAL, m).choice(rest, size=n_val, replace=False))
        rest = np.setdiff1d(rest, v)
        test[m], val[m] = t, v
        available[m] = rest[_rng(seed, "train_conformers", m).permutation(len(rest))]
    return Reservation(sorted(held), trainable, order, test, val, available, fallback)


def anchors(dataset: Dataset, res: Reservation, k: int) -> list[str]:
    """The seed's ``k`` anchor molecules (see the module doc), in the order picked.

    Raises:
        InfeasibleRequest: fewer than ``k`` non-rigid trainable molecules have enough conformers.
    """
    if k <= 0:
        return []
    floor = res.max_conformers(k)
    rigid = set(res.family_fallback)
    pool = [m for m in res.order if m not in rigid and len(res.available[m]) >= floor]
    if len(pool) < k:
        raise InfeasibleRequest(
            f"anchor_molecules {k}: only {len(pool)} trainable molecules have two or more parent families and "
            f"{floor} conformers left; use fewer anchors"
        )
    elements = {m: set(np.unique(dataset[m].atomic_numbers).tolist()) for m in pool}
    wanted = set().union(*(set(np.unique(mol.atomic_numbers).tolist()) for mol in dataset))
    picked: list[str] = []
    while len(picked) < k:
        covered = set().union(*(elements[m] for m in picked)) if picked else set()
        gain = {m: len((elements[m] & wanted) - covered) for m in pool if m not in picked}
        best = max(gain.values())
        if best == 0:  # every element the anchors can cover is covered: the rest in the seeded order
            picked += [m for m in pool if m not in picked][: k - len(picked)]
            break
        picked.append(next(m for m in pool if m not in picked and gain[m] == best))
    return picked


# ------------------------------------------------------------------------------------------------ (M, C)


def resolve_point(dataset: Dataset, spec: SplitSpec, reservation: Reservation | None = None) -> tuple[int, int]:
    """``(M, C)`` of ``spec`` after checking it against the data; raises :class:`InfeasibleRequest` otherwise.

    Two of budget / molecules / conformers_per_molecule are needed (all three must agree). The message of a
    refusal names the largest feasible values.
    """
    res = reservation if reservation is not None else reserve(dataset, spec)
    b, m, c = spec.budget, spec.molecules, spec.conformers_per_molecule
    for name, value in (("budget", b), ("molecules", m), ("conformers per molecule", c)):
        if value is not None and value < 1:
            raise InfeasibleRequest(f"{name} must be at least 1, not {value}")
    n_train = len(res.trainable)
    best_b, best_m, best_c = res.max_budget()
    overall = (
        f"at most {n_train} molecules can be trained on "
        f"({len(dataset)} in the dataset, {len(res.test_molecules)} held out as test molecules); "
        f"the largest budget is {best_b} ({best_m} molecules x {best_c})"
    )
    if sum(v is not None for v in (b, m, c)) < 2:
        raise InfeasibleRequest(
            "give two of budget, molecules and conformers per molecule (e.g. --budget with --molecules)"
        )
    if b is not None and m is not None and c is not None and m * c != b:
        raise InfeasibleRequest(f"{m} molecules x {c} conformers is {m * c}, not the budget {b}")

    def too_many(m: int, prefix: str) -> InfeasibleRequest:
        all_c = res.max_conformers(n_train)
        return InfeasibleRequest(
            f"{prefix}{m} molecules requested but at most {n_train} can be trained on ({len(dataset)} in the "
            f"dataset, {len(res.test_molecules)} held out as test molecules); with all {n_train} at most {all_c} "
            f"conformers each (budget {n_train * all_c}); the largest budget is {best_b} "
            f"({best_m} molecules x {best_c})"
        )

    if m is not None and m > n_train:
        raise too_many(m, "")
    if c is None:
        assert b is not None and m is not None  # two of the three are given (checked above)
        if b % m:
            nearest = _nearest(b, m, res.max_conformers(m))
            raise InfeasibleRequest(f"budget {b} is not a multiple of {m} molecules; {nearest}")
        c = b // m
    elif m is None:
        assert b is not None  # two of the three are given (checked above)
        if b % c:
            most = sum(res.available_counts >= c)
            raise InfeasibleRequest(
                f"budget {b} is not a multiple of {c} conformers per molecule; "
                + (_nearest(b, c, most, "molecules") if most else f"no molecule has {c} conformers left; {overall}")
            )
        m = b // c
        if m > n_train:
            raise too_many(m, f"budget {b} with {c} conformers per molecule needs {m} molecules: ")
    max_c = res.max_conformers(m)
    if c > max_c:
        prefix = (
            f"budget {b} with {m} molecules needs {c} conformers per molecule"
            if b is not None
            else f"{m} molecules x {c} conformers per molecule requested"
        )
        raise InfeasibleRequest(
            f"{prefix}; at most {max_c} are available per molecule (after reserving test and val conformers), "
            f"so the largest budget for {m} molecules is {m * max_c}; {overall}"
        )
    return m, c


def _nearest(budget: int, step: int, most: int, what: str = "conformers each") -> str:
    """Nearest feasible budgets: multiples of ``step`` up to ``step x most``."""
    lo, hi = (budget // step) * step, (budget // step + 1) * step
    feasible = [x for x in (lo, hi) if 0 < x <= step * most]
    if not feasible:
        return f"the largest budget is {step * most} ({step} x {most} {what})"
    return f"the nearest feasible budgets are {' and '.join(map(str, feasible))} (at most {step * most})"


# ------------------------------------------------------------------------------------------------ the split


@dataclass
class Split:
    """One training set with its evaluation sets. Pairs are ``(molecule_id, conformer_index)``, sorted."""

    spec: SplitSpec
    train: list[Pair]
    val: list[Pair]
    test_conformers: list[Pair]
    test_molecules: list[Pair]
    counts: dict[str, int] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, str] = field(default_factory=dict)

    @property
    def molecules(self) -> list[str]:
        """Training molecule ids (sorted)."""
        return sorted({m for m, _ in self.train})

    def to_dict(self) -> dict[str, Any]:
        return {
            SplitName.TRAIN: [list(p) for p in self.train],
            SplitName.VAL: [list(p) for p in self.val],
            SplitName.TEST_CONFORMERS: [list(p) for p in self.test_conformers],
            SplitName.TEST_MOLECULES: [list(p) for p in self.test_molecules],
            "spec": {**self.spec.to_dict(), "dataset": self.dataset},
            "counts": dict(self.counts),
            "diversity": _rounded(self.diversity),
        }

    def to_json(self) -> str:
        """Deterministic JSON: sorted keys, one pair per line, floats to 6 significant digits."""
        parts = []
        for key, value in sorted(self.to_dict().items()):
            if key in SPLITS:
                body = ",\n".join(f"  {json.dumps(p)}" for p in value)
                text = f"[\n{body}\n ]" if value else "[]"
            else:
                text = json.dumps(value, sort_keys=True)
            parts.append(f" {json.dumps(key)}: {text}")
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        spec = dict(data["spec"])
        dataset = spec.pop("dataset", {})
        return cls(
            spec=SplitSpec.from_dict(spec),
            train=[(str(m), int(c)) for m, c in data[SplitName.TRAIN]],
            val=[(str(m), int(c)) for m, c in data[SplitName.VAL]],
            test_conformers=[(str(m), int(c)) for m, c in data[SplitName.TEST_CONFORMERS]],
            test_molecules=[(str(m), int(c)) for m, c in data[SplitName.TEST_MOLECULES]],
            counts=dict(data.get("counts", {})),
            diversity=dict(data.get("diversity", {})),
            dataset=dict(dataset),
        )


def load_split(path: str | Path) -> Split:
    """Read a split file written by :meth:`Split.save`."""
    return Split.from_dict(json.loads(Path(path).read_text()))


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    return value


def _capped(rows: np.ndarray, cap: int | None, seed: int, purpose: str, mol_id: str) -> np.ndarray:
    if cap is None or len(rows) <= cap:
        return rows
    return np.sort(_rng(seed, purpose, mol_id).permutation(rows)[:cap])


def make_split(dataset: Dataset, spec: SplitSpec, diversity: bool = True) -> Split:
    """Build the split ``spec`` describes (see the module doc); ``diversity=False`` skips the train measures."""
    res = reserve(dataset, spec)
    m, c = resolve_point(dataset, spec, res)
    strategy = get_strategy(spec.strategy)
    anchor = anchors(dataset, res, spec.anchor_molecules)
    if anchor:
        if m < len(anchor):
            raise InfeasibleRequest(f"{m} training molecules but {len(anchor)} anchor molecules: every training set "
                                    "must hold the anchors; use at least as many molecules as anchors")
        short = [a for a in anchor if len(res.available[a]) < c]
        if short:
            raise InfeasibleRequest(f"{c} conformers per molecule but anchor molecule {short[0]} has only "
                                    f"{len(res.available[short[0]])} left; use fewer conformers per molecule")
        rest = [i for i in res.eligible(c) if i not in set(anchor)]
        molecules = list(anchor) + list(strategy.molecules(dataset, rest, m - len(anchor)))
    else:
        molecules = strategy.molecules(dataset, res.eligible(c), m)
    cap, seed = spec.max_eval_per_molecule, spec.seed
    rigid = set(res.family_fallback)
    scored = set(anchor) if anchor else set(molecules)
    anchor_elements = set().union(*(set(np.unique(dataset[a].atomic_numbers).tolist()) for a in anchor))
    train, val, test_conf, test_mol = [], [], [], []
    rigid_left_out, heldout_left_out = 0, 0
    with single_threaded_blas():
        picked = {i: strategy.conformers(dataset[i], res.available[i], c) for i in sorted(molecules)}
    for mol_id in sorted(molecules):
        train += [(mol_id, int(j)) for j in sorted(picked[mol_id])]
        val += [(mol_id, int(j)) for j in _capped(res.val[mol_id], cap, seed, "eval_val", mol_id)]
        held = [(mol_id, int(j)) for j in _capped(res.test[mol_id], cap, seed, "eval_test", mol_id)]
        if mol_id in rigid:
            rigid_left_out += len(held)
        elif mol_id in scored:
            test_conf += held
    for mol_id in res.test_molecules:
        rows = np.arange(dataset[mol_id].n_conformers)
        pairs = [(mol_id, int(j)) for j in _capped(rows, cap, seed, "eval_heldout", mol_id)]
        if anchor and not set(np.unique(dataset[mol_id].atomic_numbers).tolist()) <= anchor_elements:
            heldout_left_out += len(pairs)
        else:
            test_mol += pairs
    if len(train) != m * c:  # a strategy bug, never a user error
        raise RuntimeError(f"strategy {spec.strategy!r} returned {len(train)} conformers, expected {m} x {c}")

    counts = {
        SplitName.TRAIN: len(train),
        "train_molecules": m,
        "conformers_per_molecule": c,
        SplitName.VAL: len(val),
        SplitName.TEST_CONFORMERS: len(test_conf),
        SplitName.TEST_MOLECULES: len(test_mol),
        "test_molecule_count": len(res.test_molecules),
        "trainable_molecules": len(res.trainable),
        "eligible_molecules": len(res.eligible(c)),
        "reserved_test_conformers": int(sum(len(res.test[i]) for i in molecules)),
        "family_fallback_molecules": len(res.family_fallback),
        "family_fallback_train_molecules": len(set(res.family_fallback) & set(molecules)),
        "rigid_test_conformers": rigid_left_out,
        "anchor_molecules": len(anchor),
        "test_molecules_excluded": heldout_left_out,
        "dataset_molecules": len(dataset),
        "dataset_conformers": dataset.n_conformers,
    }
    measures = {}
    if diversity:
        from mlipdiv.diversity import training_set_diversity

        measures = training_set_diversity(dataset, train)
    info = {"path": str(dataset.path) if dataset.path is not None else "", "digest": dataset_digest(dataset)}
    return Split(
        spec=replace(spec, budget=m * c, molecules=m, conformers_per_molecule=c),
        train=train,
        val=val,
        test_conformers=test_conf,
        test_molecules=test_mol,
        counts=counts,
        diversity=measures,
        dataset=info,
    )
