"""Import a dataset another program wrote: molecules by connectivity, families by RMSD, units recorded, a report.

The readers (:mod:`mlipdiv.io.sources`) hand over blocks of conformers in eV and angstrom. Here they become an
mlipdiv dataset:

* **Identity.** Conformers are grouped by their bond graph: bonds from 3D distances (covalent radii x
  :data:`BOND_FACTOR`, as RDKit's ``rdDetermineBonds`` does), one perception per distinct graph with
  ``rdDetermineBonds`` (neutral), whose canonical stereo-free SMILES names the molecule. Where perception fails the
  molecule is named by its sorted formula plus a Weisfeiler-Lehman hash of the graph (counted as a fallback). The
  same SMILES in another atom order is mapped onto the first one's order (a substructure match), so one molecule
  is one entry and a molecule split cannot leak it. A SMILES the file carries is compared with the perceived one:
  disagreements are reported, and a net formal charge skips the entry.
* **Families.** Without parents in the file, a molecule's conformers are clustered by RMSD after optimal
  superposition (fixed atom order; heavy atoms plus hydrogens on N, O, S), leader clustering at
  :data:`~mlipdiv.data.conformers.RMSD_THRESHOLD` -- the distance at which ``generate`` calls two conformers
  distinct -- so an unseen-conformer split holds out whole regions of conformer space, not neighbouring MD frames.
* **Checks.** Shapes, atom counts, NaN/inf (readers); charged and periodic entries and exact duplicate geometries
  are skipped and listed with their reason.
* **Writing.** The dataset is written to a temporary file and renamed (:func:`~mlipdiv.io.hdf5.write_hdf5`), so a
  failed or interrupted import leaves nothing at ``--out``; an existing file is replaced only with ``overwrite``.
  The report goes beside it (``<out>.import.json``) and into the file's ``import_report`` attribute.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.data.conformers import RMSD_THRESHOLD
from mlipdiv.errors import DatasetError
from mlipdiv.io.atomic import atomic_write_json
from mlipdiv.io.dataset import Dataset, Molecule, molecule_id
from mlipdiv.io.hdf5 import write_hdf5
from mlipdiv.io.sources import Block, Source, SourceOptions, check_block, open_source
from mlipdiv.io.validate import check_output, make_parent

__all__ = ["BOND_FACTOR", "FAMILY_METHOD", "ImportResult", "families", "import_dataset", "report_path"]

BOND_FACTOR = 1.3  # bonded when closer than this x the sum of covalent radii (rdDetermineBonds' default)
FAMILY_METHOD = (f"leader clustering of aligned RMSD (heavy atoms + H on N/O/S, fixed atom order) at "
                 f"{RMSD_THRESHOLD} angstrom")
MAX_LISTED = 100  # skipped entries and disagreements listed one by one in the report (all are counted)
_CHUNK = 2048  # conformers per distance-matrix chunk (memory: chunk x n_atoms^2 floats)


def report_path(dataset_path: str | Path) -> Path:
    """Where the import report of ``dataset_path`` lies: ``<name>.import.json`` beside it."""
    p = Path(dataset_path)
    return p.with_name(p.name + ".import.json")


@dataclass
class ImportResult:
    path: Path
    dataset: Dataset
    report: dict[str, Any]


# ------------------------------------------------------------------------------------------------ bond graphs


def bond_graphs(z: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n_conf, n_pairs) bool: which atom pairs (upper triangle) are bonded in each conformer."""
    from ase.data import covalent_radii

    r = covalent_radii[z]
    i, j = np.triu_indices(len(z), 1)
    limit = BOND_FACTOR * (r[i] + r[j])
    out = np.empty((len(positions), len(i)), dtype=bool)
    for lo in range(0, len(positions), _CHUNK):
        p = positions[lo : lo + _CHUNK]
        out[lo : lo + _CHUNK] = np.linalg.norm(p[:, i] - p[:, j], axis=-1) < limit
    return out


def graph_hash(z: np.ndarray, bonded: np.ndarray) -> str:
    """A Weisfeiler-Lehman hash of the element-labelled bond graph: the same for any atom order."""
    n = len(z)
    i, j = np.triu_indices(n, 1)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(i[bonded], j[bonded]):
        neighbours[a].append(int(b))
        neighbours[b].append(int(a))
    labels = [str(int(x)) for x in z]
    for _ in range(3):
        labels = [hashlib.sha1((labels[k] + "|" + ",".join(sorted(labels[m] for m in neighbours[k])))
                               .encode()).hexdigest()[:16] for k in range(n)]
    return hashlib.sha1(",".join(sorted(labels)).encode()).hexdigest()[:12]


def formula(z: np.ndarray) -> str:
    """Hill formula (C, H, then alphabetical)."""
    from ase.data import chemical_symbols

    counts: dict[str, int] = {}
    for x in z:
        s = chemical_symbols[int(x)]
        counts[s] = counts.get(s, 0) + 1
    order = [s for s in ("C", "H") if s in counts] + sorted(s for s in counts if s not in ("C", "H"))
    return "".join(s + (str(counts[s]) if counts[s] > 1 else "") for s in order)


def perceive(z: np.ndarray, positions: np.ndarray) -> tuple[str, Any]:
    """(canonical stereo-free SMILES, RDKit molecule with hydrogens) from one geometry; ``("", None)`` when RDKit
    cannot assign a neutral closed-shell bonding."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdDetermineBonds

    from ase.data import chemical_symbols

    rdBase.DisableLog("rdApp.*")
    xyz = f"{len(z)}\n\n" + "\n".join(f"{chemical_symbols[int(a)]} {x:.6f} {y:.6f} {w:.6f}"
                                      for a, (x, y, w) in zip(z, positions))
    try:
        mol = Chem.MolFromXYZBlock(xyz)
        if mol is None:
            return "", None
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        smiles = Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
    except Exception:  # noqa: BLE001 - RDKit raises plain ValueError/RuntimeError for unassignable bonding
        return "", None
    if "." in smiles:  # several fragments: not one molecule (a complex, or a broken geometry)
        return "", None
    return smiles, mol


def canonical_source_smiles(smiles: str) -> tuple[str, int] | None:
    """(canonical stereo-free SMILES without atom maps, net formal charge) of a SMILES a file carries, or ``None``
    when RDKit cannot parse it (SPICE writes mapped SMILES with explicit hydrogens)."""
    from rdkit import Chem, rdBase

    rdBase.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    charge = sum(a.GetFormalCharge() for a in mol.GetAtoms())
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False), charge


# ------------------------------------------------------------------------------------------------ families


def _aligned_rmsd(frames: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """RMSD (angstrom) of each of ``frames`` (k, m, 3) to ``ref`` (m, 3) after optimal superposition (Kabsch)."""
    a = frames - frames.mean(axis=1, keepdims=True)
    b = ref - ref.mean(axis=0)
    h = np.einsum("kmi,mj->kij", a, b)
    u, s, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    s[:, -1] *= sign
    sq = (np.einsum("kmi,kmi->k", a, a) + float((b * b).sum()) - 2.0 * s.sum(axis=1)) / len(ref)
    return np.sqrt(np.clip(sq, 0.0, None))


def family_atoms(z: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Indices compared for families: heavy atoms and hydrogens whose nearest heavy atom is N, O or S (an OH
    rotamer counts, a methyl rotation does not -- as ``generate`` judges distinct conformers)."""
    heavy = np.flatnonzero(z > 1)
    keep: list[int] = [int(i) for i in heavy]
    if len(heavy):
        for h in np.flatnonzero(z == 1):
            nearest = heavy[np.argmin(np.linalg.norm(positions[heavy] - positions[h], axis=1))]
            if z[nearest] in (7, 8, 16):
                keep.append(int(h))
    idx = np.array(sorted(keep), dtype=np.int64)
    return idx if len(idx) >= 3 else np.arange(len(z))


def families(z: np.ndarray, positions: np.ndarray, threshold: float = RMSD_THRESHOLD) -> np.ndarray:
    """Family (parent) index of each conformer: leader clustering in file order -- the first unassigned
    conformer leads a family that takes every unassigned conformer within ``threshold`` RMSD of it."""
    n = len(positions)
    parent = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return parent
    idx = family_atoms(np.asarray(z), positions[0])
    sub = np.asarray(positions, dtype=np.float64)[:, idx]
    family = 0
    while True:
        free = np.flatnonzero(parent < 0)
        if not len(free):
            return parent
        lead = free[0]
        near = free[_aligned_rmsd(sub[free], sub[lead]) < threshold]
        parent[near] = family
        parent[lead] = family
        family += 1


# ------------------------------------------------------------------------------------------------ the pipeline


@dataclass
class _Group:
    z: np.ndarray
    smiles: str
    name: str
    mol: Any  # RDKit molecule of the first perception (atom mapping of other orders), None for fallbacks
    positions: list[np.ndarray] = field(default_factory=list)
    energy: list[np.ndarray] = field(default_factory=list)
    forces: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass
class _State:
    groups: dict[str, _Group] = field(default_factory=dict)
    graphs: dict[tuple[bytes, bytes], tuple[str, np.ndarray | None]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_count: dict[str, int] = field(default_factory=dict)
    disagreements: list[dict[str, str]] = field(default_factory=list)
    n_disagree: int = 0
    n_source_smiles: int = 0
    n_perceived: int = 0
    n_fallback: int = 0
    n_reordered: int = 0
    n_conformers_read: int = 0

    def skip(self, entry: str, reason: str, conformers: int = 1) -> None:
        kind = reason.split(":")[0].split(" (")[0]
        self.skipped_count[kind] = self.skipped_count.get(kind, 0) + conformers
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"entry": entry, "conformers": conformers, "reason": reason})


def _identity(state: _State, z: np.ndarray, positions: np.ndarray, bonded: np.ndarray,
              source: tuple[str, int] | None, where: str, name: str) -> tuple[str, np.ndarray | None]:
    """(group key, atom permutation onto the group's order or None) for a new bond graph."""
    smiles, mol = perceive(z, positions)
    if smiles:
        state.n_perceived += 1
    if source is not None:
        state.n_source_smiles += 1
        if smiles and source[0] != smiles:
            state.n_disagree += 1
            if len(state.disagreements) < MAX_LISTED:
                state.disagreements.append({"entry": where, "file": source[0], "perceived": smiles})
        smiles = smiles or source[0]
    if smiles:
        key = "smiles:" + smiles
    else:
        state.n_fallback += 1
        key = f"graph:{formula(z)}:{graph_hash(z, bonded)}"
    base, k = key, 2
    while key in state.groups:
        g = state.groups[key]
        if np.array_equal(g.z, z):
            return key, None
        if g.mol is not None and mol is not None:
            match = mol.GetSubstructMatch(g.mol)
            if len(match) == len(z):
                state.n_reordered += 1
                return key, np.asarray(match, dtype=np.int64)
        key, k = f"{base}#{k}", k + 1
    state.groups[key] = _Group(z=z.copy(), smiles=smiles, name=name, mol=mol)
    return key, None


def _add_block(state: _State, path: Path, block: Block) -> None:
    for label, reason in block.skipped:
        state.skip(label, reason)
    n_conf = len(block.energy)
    state.n_conformers_read += n_conf + len(block.skipped)
    if block.skip:
        state.skip(block.where, block.skip, n_conf)
        return
    check_block(path, block)
    source = None
    if block.smiles:
        source = canonical_source_smiles(block.smiles)
        if source is not None and source[1] != 0:
            state.skip(block.where, f"charged (net formal charge {source[1]:+d} in its SMILES): mlipdiv models "
                                    "neutral molecules", n_conf)
            return
    z = np.asarray(block.atomic_numbers, dtype=np.int64)
    bonded = bond_graphs(z, block.positions)
    graphs, first, inverse = np.unique(np.packbits(bonded, axis=1), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    zkey = z.tobytes()
    for u in range(len(graphs)):
        gkey = (zkey, graphs[u].tobytes())
        if gkey not in state.graphs:
            i0 = int(first[u])
            state.graphs[gkey] = _identity(state, z, block.positions[i0], bonded[i0], source, block.label(i0),
                                           block.name)
        key, perm = state.graphs[gkey]
        rows = np.flatnonzero(inverse == u)
        pos = block.positions[rows]
        forces = block.forces[rows] if block.forces is not None else None
        if perm is not None:
            pos = pos[:, perm]
            forces = forces[:, perm] if forces is not None else None
        g = state.groups[key]
        g.positions.append(pos)
        g.energy.append(block.energy[rows])
        if forces is not None:
            g.forces.append(forces)
        g.labels.extend(block.label(int(r)) for r in rows)


def _molecule(state: _State, key: str, g: _Group, has_forces: bool) -> Molecule:
    positions = np.concatenate(g.positions)
    energy = np.concatenate(g.energy)
    forces = np.concatenate(g.forces) if has_forces else np.zeros_like(positions)
    # exact duplicates (to 1e-5 angstrom) would sit on both sides of a split: keep the first, list the others
    rounded = np.round(positions.reshape(len(positions), -1), 5)
    _, first = np.unique(rounded, axis=0, return_index=True)
    keep = np.sort(first)
    if len(keep) < len(positions):
        dropped = np.setdiff1d(np.arange(len(positions)), keep)
        origin = {rounded[i].tobytes(): g.labels[i] for i in keep}
        for i in dropped:
            state.skip(g.labels[i], f"duplicate geometry: the same as {origin[rounded[i].tobytes()]}")
        positions, energy, forces = positions[keep], energy[keep], forces[keep]
    base = key.split("#")[0]
    suffix = key[len(base):].replace("#", "_")
    mol_id = molecule_id(g.smiles if g.smiles else base) + suffix
    return Molecule(id=mol_id, smiles=g.smiles, name=g.name if g.name and len(g.name) < 80 else "",
                    atomic_numbers=g.z, positions=positions, energy=energy, forces=forces,
                    parent=families(g.z, positions), temperature=np.zeros(len(energy)),
                    method=np.full(len(energy), "import"))


def _distribution(values: list[int]) -> dict[str, Any]:
    a = np.asarray(values, dtype=float)
    edges = [1, 2, 5, 10, 20, 50, 100, 1000, 10_000, 100_000]
    hist: dict[str, int] = {}
    for lo, hi in zip(edges, edges[1:] + [None]):
        n = int(((a >= lo) & (a < hi)).sum()) if hi is not None else int((a >= lo).sum())
        if n:
            hist[f"{lo}-{hi - 1}" if hi is not None and hi - 1 != lo else (f"{lo}" if hi else f">={lo}")] = n
    return {"min": int(a.min()), "median": float(np.median(a)), "mean": round(float(a.mean()), 2),
            "max": int(a.max()), "histogram": hist}


def _stale_temporaries(out: Path, older_than: float = 600.0) -> None:
    """Remove temporary files an import killed mid-write (SIGKILL, power loss) left beside ``out``: the hidden
    ``.<name>.*.tmp`` of :func:`~mlipdiv.io.atomic.atomic_path`, untouched for ``older_than`` seconds."""
    if not out.parent.is_dir():
        return
    now = time.time()
    for tmp in out.parent.glob(f".{out.name}.*.tmp"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
        except OSError:
            pass


def import_dataset(source: str | Path, out: str | Path, *, format: str = "auto",
                   options: SourceOptions | None = None, level_of_theory: str | None = None,
                   overwrite: bool = False, progress: Callable[[Source, int], None] | None = None,
                   write_report: bool = True, display_name: str | None = None) -> ImportResult:
    """Read ``source`` (any format of :mod:`mlipdiv.io.sources`) and write it as an mlipdiv dataset at ``out``.

    Args:
        source: the user's file.
        out: the mlipdiv HDF5 file to write; refused before any work when it exists and ``overwrite`` is false.
        format: a name of :data:`mlipdiv.io.sources.FORMATS` or ``"auto"``.
        options: keys and units the user named (``None``: detected, or the format's documented default).
        level_of_theory: recorded in the file (default: what the file says, else "unknown").
        progress: called as ``progress(source, conformers)`` after each block (a progress bar).
        write_report: also write ``report_path(out)`` (the report is always in the file's attributes).
        display_name: how the report names the source (default: its file name).

    Returns:
        The written path, the dataset and the report. Raises :class:`DatasetError` (one line naming the file and
        the entry) for input it cannot import; nothing is left at ``out`` then.
    """
    started = time.perf_counter()
    out = check_output(out, "--out", overwrite=overwrite)
    path = Path(source)
    src = open_source(path, format, options)
    state = _State()
    for block in src.blocks():
        _add_block(state, path, block)
        if progress is not None:
            progress(src, len(block.energy))
    if not state.groups:
        reasons = ", ".join(f"{k} ({v})" for k, v in state.skipped_count.items()) or "none"
        raise DatasetError(f"{path}: nothing to import: every entry was skipped (reasons: {reasons})")
    has_forces = src.forces_key is not None
    molecules = [_molecule(state, key, g, has_forces) for key, g in state.groups.items()]
    name = display_name or path.name
    level = level_of_theory or src.level_of_theory or "unknown"
    report = _report(state, src, molecules, name, level, has_forces, time.perf_counter() - started)
    attrs = {"level_of_theory": level, "source": f"{src.format} import: {name}", "import_format": src.format,
             "has_forces": int(has_forces), "family_method": FAMILY_METHOD,
             "source_units": json.dumps(src.units.as_dict()), "created": report["created"],
             "import_report": json.dumps(report)}
    dataset = Dataset(molecules, attrs=attrs)
    make_parent(out)
    _stale_temporaries(out)
    write_hdf5(dataset, out)
    if write_report:
        atomic_write_json(report_path(out), report)
    dataset.path = out
    return ImportResult(path=out, dataset=dataset, report=report)


def _report(state: _State, src: Source, molecules: list[Molecule], name: str, level: str, has_forces: bool,
            seconds: float) -> dict[str, Any]:
    from ase.data import chemical_symbols

    per_molecule = [m.n_conformers for m in molecules]
    n_families = [int(len(np.unique(m.parent))) for m in molecules]
    elements = sorted({int(z) for m in molecules for z in np.unique(m.atomic_numbers)})
    return {
        "source": name,
        "format": src.format,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "level_of_theory": level,
        "molecules": len(molecules),
        "conformers": int(sum(per_molecule)),
        "conformers_read": state.n_conformers_read,
        "conformers_per_molecule": _distribution(per_molecule),
        "families": {"method": FAMILY_METHOD, "total": int(sum(n_families)),
                     "per_molecule": _distribution(n_families),
                     "single_family_molecules": int(sum(1 for n in n_families if n == 1))},
        "elements": [chemical_symbols[z] for z in elements],
        "forces": has_forces,
        "energy_key": src.energy_key,
        "forces_key": src.forces_key,
        "units": src.units.as_dict(),
        "notes": src.notes,
        "identity": {"method": "rdDetermineBonds (neutral) -> canonical SMILES without stereo; fallback: formula + "
                               "bond-graph hash",
                     "graphs_perceived": state.n_perceived, "fallback_graphs": state.n_fallback,
                     "fallback_molecules": sum(1 for m in molecules if not m.smiles),
                     "reordered_graphs": state.n_reordered, "source_smiles_checked": state.n_source_smiles,
                     "source_smiles_disagree": state.n_disagree, "disagreements": state.disagreements},
        "skipped": {"conformers": int(sum(state.skipped_count.values())), "by_reason": state.skipped_count,
                    "entries": state.skipped},
    }
