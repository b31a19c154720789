"""Descriptors of molecules (structure) and conformers (3D geometry), vectorised and cached.

Three descriptors, each with one job:

* :func:`morgan_fingerprints` -- Morgan (ECFP4-like, radius 2, 2048 bits) bit vectors of a molecule's SMILES.
  Structural similarity (Tanimoto), diverse molecule selection, UMAP maps of structures.
* :func:`distance_descriptor` -- all interatomic distances (or inverse distances) of a conformer, grouped by
  element pair and sorted within each group. Invariant to rotation, translation and any permutation of
  same-element atoms, and sensitive to torsions (non-bonded distances). Its length depends on the molecule's
  composition, so it compares conformers *of one molecule*; :func:`conformer_features` (heavy-atom distances) is
  what the conformational kernel and diverse conformer selection use.
* :func:`coulomb_spectrum` -- the sorted eigenvalues of the Coulomb matrix (Rupp et al., PRL 108, 058301, 2012),
  zero-padded to a fixed length (the largest atom count in the dataset). Also rotation/translation/permutation
  invariant, and of one length for every molecule, so UMAP can take all conformers of a dataset together.
* :func:`soap_average` -- SOAP power spectra (Bartok et al., PRB 87, 184115, 2013; dscribe's implementation) of
  every atom's environment within :data:`SOAP_CUTOFF` (the models' cutoff), averaged over the conformer's atoms and
  normalised to length 1. Compares *local atomic environments*, what an MLIP actually sees, across molecules and
  conformers alike; :func:`environment_descriptors` reduces it to :data:`SOAP_COMPONENTS` principal components for
  the dataset-wide map.

Dataset-wide arrays (:func:`molecule_fingerprints`, :func:`conformer_descriptors`) are cached twice: in memory for
the process and on disk as ``.npy`` under :func:`mlipdiv.paths.cache_dir` ``/descriptors``. The cache key is
:func:`dataset_digest`, a hash of the dataset's content (molecule ids, SMILES, atomic numbers, positions, energies,
parents), so a regenerated, edited or subsetted dataset never reads a stale file, and a copied file reuses it.
:func:`cached_array` offers the same cache to other per-dataset arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.dataset import Dataset
from mlipdiv.units import BOHR_PER_ANGSTROM

__all__ = [
    "FP_BITS",
    "FP_RADIUS",
    "cached_array",
    "conformer_descriptors",
    "conformer_features",
    "coulomb_spectrum",
    "dataset_digest",
    "distance_descriptor",
    "environment_descriptors",
    "molecule_fingerprints",
    "morgan_fingerprints",
    "single_threaded_blas",
    "soap_average",
    "tanimoto_similarity",
]

FP_RADIUS = 2
FP_BITS = 2048
ANGSTROM_BOHR = BOHR_PER_ANGSTROM  # Coulomb matrix in atomic units, as in Rupp et al.
_VERSION = 1  # bump when a descriptor's definition changes: old cache files are then ignored
SOAP_CUTOFF = 5.0  # angstrom: the models' default interaction cutoff (TrainConfig), so the map sees what they see
SOAP_N_MAX, SOAP_L_MAX, SOAP_SIGMA = 4, 3, 0.5  # radial and angular resolution, Gaussian width (angstrom)
SOAP_COMPONENTS = 48  # principal components kept for the dataset-wide map (UMAP on 1,624 columns is slow)
_MEMORY: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_MEMORY_SIZE = 8


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run many small matrix products / eigen-decompositions on one BLAS thread.

    For matrices of ~100 x 100, BLAS threads cost more than they save, and on a busy machine OpenBLAS's
    spinning threads made such loops up to 100x slower (measured: 1.5 s vs 0.02 s for 100 molecules).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ------------------------------------------------------------------------------------------------ structures


def morgan_fingerprints(smiles: Sequence[str], radius: int = FP_RADIUS, n_bits: int = FP_BITS) -> np.ndarray:
    """Morgan fingerprint bit vectors.

    Args:
        smiles: SMILES strings.
        radius: Morgan radius (2 ~ ECFP4).
        n_bits: folded length.

    Returns:
        (n, n_bits) uint8 array of 0/1.
    """
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise DatasetError(f"RDKit cannot parse the SMILES {smi!r}")
        out[i] = generator.GetFingerprintAsNumPy(mol)
    return out


def tanimoto_similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Tanimoto (Jaccard) similarity between the rows of two 0/1 matrices.

    Args:
        a: (n, bits) 0/1.
        b: (m, bits) 0/1; ``None`` means ``a``.

    Returns:
        (n, m) float64 in [0, 1]; two empty fingerprints count as identical (1).
    """
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    inter = (a @ b.T).astype(np.float64)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(union > 0, inter / np.where(union > 0, union, 1), 1.0)
    return sim


# ------------------------------------------------------------------------------------------------ conformers


def distance_descriptor(atomic_numbers: np.ndarray, positions: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Interatomic distances (or inverse distances) grouped by element pair and sorted within each group.

    The n(n-1)/2 distances r_ij (angstrom; 1/r_ij in 1/angstrom with ``inverse``) are grouped by element pair
    (Z_i <= Z_j, groups in increasing (Z_i, Z_j)) and sorted within each group (increasing r, or decreasing 1/r:
    bonded pairs first either way). Rotations, translations and permutations of same-element atoms leave it
    unchanged; it is therefore blind to mirror images (chirality). Its length depends on the composition only.

    Args:
        atomic_numbers: (n_atoms,) int.
        positions: (n_atoms, 3) or (n_conf, n_atoms, 3), angstrom.
        inverse: 1/r instead of r.

    Returns:
        (n_pairs,) or (n_conf, n_pairs) float32.
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    pos = np.asarray(positions, dtype=np.float64)
    single = pos.ndim == 2
    if single:
        pos = pos[None]
    i, j = np.triu_indices(len(z), 1)
    d = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
    if inverse:
        d = -1.0 / d  # sorted increasingly, then negated back: decreasing 1/r
    key = np.minimum(z[i], z[j]) * 1000 + np.maximum(z[i], z[j])
    order = np.argsort(key, kind="stable")
    d, key = d[:, order], key[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(key)]):
        d[:, lo:hi] = np.sort(d[:, lo:hi], axis=1)
    out = (-d if inverse else d).astype(np.float32)
    return out[0] if single else out


def conformer_features(atomic_numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The descriptor that compares conformers of one molecule: :func:`distance_descriptor` of the heavy atoms.

    Heavy atoms only (all atoms when fewer than three are heavy): hydrogens carry most of the thermal noise, and
    on normal-mode-sampled GFN2-xTB data this separates distinct parent conformers from thermal samples of one
    parent 2.5x better (median RMS difference 0.18 vs 0.07 angstrom) than all-atom sorted inverse distances
    (0.015 vs 0.010 1/angstrom).

    Returns:
        (n_conf, n_pairs) float32 for (n_conf, n_atoms, 3) positions.
    """
    z = np.asarray(atomic_numbers)
    heavy = z > 1
    if heavy.sum() < 3:
        heavy = np.ones_like(heavy)
    return distance_descriptor(z[heavy], np.asarray(positions)[..., heavy, :])


def coulomb_spectrum(atomic_numbers: np.ndarray, positions: np.ndarray, size: int | None = None) -> np.ndarray:
    """Eigenvalues of the Coulomb matrix, sorted in decreasing order and zero-padded to ``size``.

    M_ii = 0.5 Z_i^2.4 and M_ij = Z_i Z_j / r_ij with r in bohr (Rupp et al. 2012). Invariant to rotation,
    translation and atom permutation.

    Args:
        atomic_numbers: (n_atoms,) int.
        positions: (n_atoms, 3) or (n_conf, n_atoms, 3), angstrom.
        size: output length (>= n_atoms); default n_atoms.

    Returns:
        (size,) or (n_conf, size) float32.
    """
    z = np.asarray(atomic_numbers, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64) * ANGSTROM_BOHR
    single = pos.ndim == 2
    if single:
        pos = pos[None]
    n = len(z)
    size = n if size is None else size
    if size < n:
        raise ValueError(f"size {size} is smaller than the {n} atoms of the molecule")
    diag = np.arange(n)
    r = np.linalg.norm(pos[:, :, None, :] - pos[:, None, :, :], axis=-1)
    r[:, diag, diag] = 1.0  # placeholder, the diagonal is set below
    cm = np.outer(z, z)[None] / r
    cm[:, diag, diag] = 0.5 * z**2.4
    eig = np.linalg.eigvalsh(cm)[:, ::-1]
    out = np.zeros((len(pos), size), dtype=np.float32)
    out[:, :n] = eig
    return out[0] if single else out


def _soap(species: Sequence[int]) -> Any:
    from dscribe.descriptors import SOAP

    return SOAP(species=sorted({int(z) for z in species}), r_cut=SOAP_CUTOFF, n_max=SOAP_N_MAX, l_max=SOAP_L_MAX,
                sigma=SOAP_SIGMA, average="outer", periodic=False, sparse=False)


def soap_average(
    atomic_numbers: np.ndarray, positions: np.ndarray, species: Sequence[int] | None = None, soap: object = None
) -> np.ndarray:
    """Per conformer: the mean of its atoms' SOAP power spectra, normalised to length 1.

    The Euclidean distance between two such vectors (at most 2) says how different the two conformers' local
    atomic environments (within :data:`SOAP_CUTOFF`) are on average. Rotation, translation and permutation
    invariant; comparable between different molecules as long as ``species`` is the same.

    Args:
        atomic_numbers: (n_atoms,).
        positions: (n_atoms, 3) or (n_conf, n_atoms, 3), angstrom.
        species: the elements the vector has channels for (default: those of the molecule); use one list for a
            whole dataset so all vectors share one length.
        soap: a prebuilt dscribe ``SOAP`` for ``species`` (internal: saves rebuilding it per molecule).

    Returns:
        (n_features,) or (n_conf, n_features) float32.
    """
    from ase import Atoms

    z = np.asarray(atomic_numbers, dtype=np.int64)
    pos = np.asarray(positions, dtype=np.float64)
    single = pos.ndim == 2
    frames = [Atoms(numbers=z, positions=p) for p in (pos[None] if single else pos)]
    calc: Any = soap if soap is not None else _soap(species if species is not None else z.tolist())
    x = np.asarray(calc.create(frames, n_jobs=1), dtype=np.float64).reshape(len(frames), -1)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return (x[0] if single else x).astype(np.float32)


def environment_descriptors(
    dataset: Dataset, cache: bool = True, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """:func:`soap_average` of every conformer, as its first :data:`SOAP_COMPONENTS` principal components.

    Row ``g`` is the conformer with global id ``g``. The principal axes are fitted on up to 8 conformers per
    molecule (a first, cheap pass), then every conformer is projected as it is computed, so memory stays at
    (n_conformers, SOAP_COMPONENTS) instead of 1,624 columns. Distances are preserved up to the dropped
    components (on the shipped dataset the kept ones hold most of the variance; see the test). About 60 CPU
    seconds for 10^5 conformers of 19 atoms; cached on disk by content.

    Args:
        dataset: the dataset.
        cache: read and write the on-disk cache.
        progress: called with (molecules done, molecules) during the computation.
    """

    def compute() -> np.ndarray:
        species = sorted({int(z) for m in dataset for z in m.atomic_numbers})
        soap = _soap(species)
        rng = np.random.default_rng(0)
        sample = []
        for mol in dataset:
            pick = np.sort(rng.choice(mol.n_conformers, min(8, mol.n_conformers), replace=False))
            sample.append(soap_average(mol.atomic_numbers, mol.positions[pick], species, soap))
        x = np.concatenate(sample).astype(np.float64) if sample else np.zeros((0, 1))
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        axes = vt[:SOAP_COMPONENTS].T  # (features, k)
        k = axes.shape[1]
        out = np.zeros((dataset.n_conformers, SOAP_COMPONENTS), dtype=np.float32)
        for i, (mol, start) in enumerate(zip(dataset, dataset.conformer_offsets())):
            full = soap_average(mol.atomic_numbers, mol.positions, species, soap).astype(np.float64)
            out[start : start + mol.n_conformers, :k] = (full - mean) @ axes
            if progress is not None:
                progress(i + 1, len(dataset))
        return out

    return cached_array(f"soap{SOAP_CUTOFF:g}-{SOAP_N_MAX}-{SOAP_L_MAX}-pca{SOAP_COMPONENTS}", dataset, compute, cache)


# ------------------------------------------------------------------------------------------------ dataset-wide


def dataset_digest(dataset: Dataset) -> str:
    """Content hash (16 hex digits) of a dataset: ids, SMILES, atomic numbers, positions, energies, parents.

    About 30 ms per 10^5 conformers of 20 atoms (computed once per dataset object); the cache key of derived
    arrays, and recorded in split files.
    """
    return dataset.memo("digest", lambda: _digest(dataset))


def _digest(dataset: Dataset) -> str:
    h = hashlib.sha256()
    for mol in dataset:
        h.update(mol.id.encode())
        h.update(b"\0" + mol.smiles.encode() + b"\0")
        h.update(np.ascontiguousarray(mol.atomic_numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(mol.positions, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(mol.energy, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(mol.parent, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def molecule_fingerprints(dataset: Dataset, cache: bool = True) -> np.ndarray:
    """Morgan fingerprints of every molecule of ``dataset``, in dataset order: (n_molecules, FP_BITS) uint8."""
    return cached_array(
        f"morgan{FP_RADIUS}-{FP_BITS}", dataset, lambda: morgan_fingerprints([m.smiles for m in dataset]), cache
    )


def conformer_descriptors(dataset: Dataset, cache: bool = True) -> np.ndarray:
    """Coulomb spectra of every conformer of ``dataset``: (n_conformers, max_atoms) float32.

    Row ``g`` is the conformer with global id ``g`` (see :meth:`Dataset.conformer_offsets`). One fixed length
    for all molecules, so a UMAP map can take the whole dataset at once.
    """

    def compute() -> np.ndarray:
        size = max((m.n_atoms for m in dataset), default=0)
        out = np.zeros((dataset.n_conformers, size), dtype=np.float32)
        with single_threaded_blas():
            for mol, start in zip(dataset, dataset.conformer_offsets()):
                out[start : start + mol.n_conformers] = coulomb_spectrum(mol.atomic_numbers, mol.positions, size)
        return out

    return cached_array("coulomb", dataset, compute, cache)


def cached_array(kind: str, dataset: Dataset, compute: Callable[[], np.ndarray], use_disk: bool = True) -> np.ndarray:
    """``compute()`` once per dataset content: from memory, else from ``<cache_dir>/descriptors``, else computed
    and saved there. ``kind`` names the array and its definition (change it when the definition changes)."""
    key = (f"{kind}-v{_VERSION}", dataset_digest(dataset))
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = _cache_path(*key)
    array = None
    if use_disk and path.exists():
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            array = None  # unreadable cache file: recompute and overwrite
    if array is None:
        array = np.ascontiguousarray(compute())
        if use_disk:
            save_array(path, array)
    array.setflags(write=False)
    _MEMORY[key] = array
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return array


def _cache_path(kind: str, digest: str) -> Path:
    from mlipdiv.paths import cache_dir

    return cache_dir() / "descriptors" / f"{kind}-{digest}.npy"


def save_array(path: Path, array: np.ndarray) -> None:
    """Atomic write; a read-only or full cache directory only costs a recomputation next time."""
    from mlipdiv.io.atomic import atomic_write

    try:
        atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
    except OSError:
        pass
