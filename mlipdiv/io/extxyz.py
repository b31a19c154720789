"""Extended XYZ export and import through ASE, with the keys MACE and NequIP users expect.

Per frame (one conformer): ``REF_energy`` (eV) in ``info`` and ``REF_forces`` (eV/angstrom) in ``arrays`` (ASE
3.23+ hands plain ``energy``/``forces`` to a calculator, so training codes are pointed at the ``REF_`` keys), plus
``mol_id``, ``smiles``, ``conf_id`` (index within its molecule), ``parent``, ``temperature``, ``method``,
``name`` and ``level_of_theory`` in ``info``. Positions and forces are written with 8 decimals. A dataset without
forces (an energy-only import) is written without ``REF_forces`` -- never with zeros a training code would take for
labels -- and reads back as a dataset without forces (explore, not train).

Import accepts our own files and outside data: energies from ``REF_energy``, else ``energy`` (or an attached
calculator); forces from ``REF_forces``, else ``forces``. Frames are grouped into molecules by ``mol_id``; frames
without one are grouped by the canonical SMILES RDKit perceives from the geometry (``rdDetermineBonds``, neutral)
and, where that fails, by chemical formula (id ``molecule_id("formula:" + formula)``, empty SMILES). Frames of one
molecule must list the same elements in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import DatasetError
from mlipdiv.io.atomic import atomic_path
from mlipdiv.io.dataset import Dataset, Molecule, molecule_id
from mlipdiv.io.validate import check_atomic_numbers, check_geometry, check_molecule_id


def write_extxyz(dataset: Dataset, path: str | Path, pairs: list[tuple[str, int]] | None = None) -> Path:
    """Write all conformers (or only the ``(molecule_id, conformer_index)`` ``pairs``) as extended XYZ."""
    from ase import Atoms
    from ase.io import write

    path = Path(path)
    if pairs is None:
        pairs = [(m.id, j) for m in dataset for j in range(m.n_conformers)]
    frames = []
    for mol_id, j in pairs:
        m = dataset[str(mol_id)]
        j = int(j)
        atoms = Atoms(numbers=m.atomic_numbers, positions=m.positions[j].astype(np.float64))
        atoms.info.update({
            "REF_energy": float(m.energy[j]),
            "mol_id": m.id,
            "smiles": m.smiles,
            "conf_id": j,
            "parent": int(m.parent[j]),
            "temperature": float(m.temperature[j]),
            "method": str(m.method[j]),
            "level_of_theory": dataset.level_of_theory,
        })
        if m.name:
            atoms.info["name"] = m.name
        if dataset.has_forces:
            atoms.arrays["REF_forces"] = m.forces[j].astype(np.float64)
        frames.append(atoms)
    with atomic_path(path) as tmp:  # a failed write leaves nothing behind
        write(tmp, frames, format="extxyz")
    return path


def _perceived_smiles(atoms) -> str:
    """Canonical stereo-free SMILES from the geometry, or "" if RDKit cannot assign a neutral bonding."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdDetermineBonds

    rdBase.DisableLog("rdApp.*")
    xyz = f"{len(atoms)}\n\n" + "\n".join(
        f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions)
    )
    try:
        mol = Chem.MolFromXYZBlock(xyz)
        if mol is None:
            return ""
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)
    except Exception:  # noqa: BLE001 - RDKit raises plain ValueError/RuntimeError for unassignable bonding
        return ""


def _label(path: Path, i: int, atoms) -> tuple[float, np.ndarray | None]:
    """The frame's energy (eV) and forces (eV/angstrom; None when the frame has none)."""
    info, arrays = atoms.info, atoms.arrays
    energy = info.get("REF_energy", info.get("energy"))
    forces = arrays.get("REF_forces", arrays.get("forces"))
    if (energy is None or forces is None) and atoms.calc is not None:
        results = getattr(atoms.calc, "results", {})
        energy = results.get("energy") if energy is None else energy
        forces = results.get("forces") if forces is None else forces
    if energy is None:
        raise DatasetError(f"{path}: frame {i} has no energy (expected REF_energy or energy in the comment line)")
    if forces is None:
        try:
            return float(energy), None
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: frame {i}: energy is not a number") from exc
    try:
        energy = float(energy)
        forces = np.asarray(forces, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: frame {i}: energy or forces are not numbers") from exc
    if forces.shape != (len(atoms), 3):
        raise DatasetError(f"{path}: frame {i} has forces of shape {forces.shape}, expected ({len(atoms)}, 3)")
    return energy, forces


def _check_frame(path: Path, i: int, atoms, energy: float, forces: np.ndarray) -> None:
    """The boundary checks, per frame so the message can name the frame (see ``mlipdiv.io.validate``)."""
    if np.any(atoms.pbc) or np.any(np.asarray(atoms.cell) != 0):
        raise DatasetError(f"{path}: frame {i} is periodic (Lattice/pbc): periodic structures are not supported: "
                           f"mlipdiv trains on isolated molecules; remove Lattice and pbc to import it as one")
    why = check_atomic_numbers(atoms.numbers) or check_geometry(atoms.positions, energy, forces)
    if why is None and "mol_id" in atoms.info:
        why = check_molecule_id(str(atoms.info["mol_id"]))
    if why:
        raise DatasetError(f"{path}: frame {i}: {why}")


def _frames(path: Path) -> list:
    """All frames, or a :class:`DatasetError` naming the first frame that cannot be parsed (never its text: the
    path may point at any file the server can read)."""
    from ase.io import iread

    frames: list = []
    try:
        for atoms in iread(path, index=":", format="extxyz"):
            frames.append(atoms)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (frame {len(frames)}); save it as UTF-8 extended XYZ") from exc
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for malformed files
        raise DatasetError(f"{path}: not a readable extended XYZ file: frame {len(frames)} cannot be parsed "
                           f"({type(exc).__name__})") from exc
    return frames


def read_extxyz(path: str | Path) -> Dataset:
    """Read extended XYZ into a :class:`Dataset` (see the module docstring for keys and grouping).

    Every frame is checked (elements, NaN/inf, coordinates, periodicity, ids) before a dataset is returned, so a
    caller that writes the result never writes refused data.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not path.is_file():
        raise DatasetError(f"{path}: not a file")
    frames = _frames(path)
    if not frames:
        raise DatasetError(f"{path}: no frames")
    groups: dict[Any, dict[str, Any]] = {}
    missing_forces: bool | None = None  # decided by frame 0
    for i, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise DatasetError(f"{path}: frame {i} has no atoms")
        energy, forces = _label(path, i, atoms)
        if missing_forces is None:
            missing_forces = forces is None
        elif missing_forces != (forces is None):
            without, having = (i, 0) if forces is None else (0, i)
            raise DatasetError(f"{path}: frame {without} has no forces (expected a REF_forces or forces column) but "
                               f"frame {having} has: every frame needs them, or none does")
        forces = np.zeros((len(atoms), 3)) if forces is None else forces
        _check_frame(path, i, atoms, energy, forces)
        z = tuple(int(n) for n in atoms.numbers)
        info = atoms.info
        if "mol_id" in info:
            key: Any = str(info["mol_id"])
            smiles = str(info.get("smiles", ""))
        else:
            smiles = _perceived_smiles(atoms)
            key = (smiles or "formula:" + atoms.get_chemical_formula(), z)
        g = groups.setdefault(key, {"z": z, "smiles": smiles, "name": str(info.get("name", "")), "frames": [],
                                    "formula": atoms.get_chemical_formula(), "first": i})
        if g["z"] != z:
            raise DatasetError(f"{path}: frame {i} lists different atoms than frame {g['first']} of the same molecule")
        try:
            extra = (int(info.get("parent", 0)), float(info.get("temperature", 0.0)), str(info.get("method", "import")))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: frame {i}: parent or temperature is not a number") from exc
        g["frames"].append((np.asarray(atoms.positions, dtype=np.float64), energy, forces, *extra))
    molecules, used = [], set()
    level = {str(a.info["level_of_theory"]) for a in frames if "level_of_theory" in a.info}
    for key, g in groups.items():
        if isinstance(key, str):
            mol_id = key
        else:
            mol_id = molecule_id(g["smiles"]) if g["smiles"] else molecule_id("formula:" + g["formula"])
            base, k = mol_id, 2
            while mol_id in used:  # same molecule in another atom order: a separate entry
                mol_id, k = f"{base}_{k}", k + 1
        used.add(mol_id)
        pos, energies, all_forces, parent, temp, method = zip(*g["frames"])
        try:
            molecules.append(Molecule(
                id=mol_id, smiles=g["smiles"], name=g["name"], atomic_numbers=np.array(g["z"]),
                positions=np.array(pos), energy=np.array(energies), forces=np.array(all_forces),
                parent=np.array(parent), temperature=np.array(temp), method=np.array(method),
            ))
        except DatasetError as exc:  # e.g. float32 overflow of a huge value: same checks as every reader
            raise DatasetError(f"{path}: {exc} (from frame {g['first']})") from exc
    attrs: dict[str, Any] = {"level_of_theory": level.pop() if len(level) == 1 else "unknown",
                             "source": f"extxyz import: {path.name}"}
    if missing_forces:  # zeros stand in for the forces: the dataset says so, and training refuses it
        attrs["has_forces"] = 0
    return Dataset(molecules, attrs=attrs, path=path)
