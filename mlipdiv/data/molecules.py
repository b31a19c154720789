"""Molecule pools: RDKit's bundled NCI set, a user's SMILES, or a SMILES file.

Every entry is reduced to its canonical SMILES without stereo (the molecule's identity), duplicates are merged
(first occurrence wins, its name is kept) and the id is :func:`mlipdiv.io.dataset.molecule_id` of that SMILES.
Entries that cannot be used (invalid SMILES, unsupported element, charged, several fragments, radicals) are not
dropped silently: they come back as :class:`Rejected` with a reason, so ``generate`` can report them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.io.dataset import molecule_id
from mlipdiv.limits import MAX_ATOMS_GENERATE

# H C N O F S Cl: what the shipped pool allows and what the pipeline accepts from users.
SUPPORTED_ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 16: "S", 17: "Cl"}


@dataclass(frozen=True)
class Entry:
    """A usable molecule: ``smiles`` is canonical and stereo-free, ``id`` its stable id."""

    id: str
    smiles: str
    name: str = ""
    source: str = ""  # the SMILES as given


@dataclass(frozen=True)
class Rejected:
    """An input that cannot be used, with the reason in words."""

    input: str
    reason: str
    name: str = ""


def nci_pool_path() -> Path:
    from rdkit import RDConfig

    return Path(RDConfig.RDDataDir) / "NCI" / "first_5K.smi"


def _silence_rdkit() -> None:
    from rdkit import rdBase

    rdBase.DisableLog("rdApp.*")


def check_smiles(smiles: str, name: str = "", max_heavy_atoms: int | None = None) -> Entry | Rejected:
    """Parse and vet one SMILES: an :class:`Entry` if usable, else a :class:`Rejected` saying why."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    _silence_rdkit()
    text = smiles.strip()
    mol = Chem.MolFromSmiles(text) if text else None
    if mol is None:
        return Rejected(smiles, "invalid SMILES (RDKit cannot parse it)", name)
    bad = sorted({a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() not in SUPPORTED_ELEMENTS})
    if bad:
        allowed = " ".join(SUPPORTED_ELEMENTS.values())
        return Rejected(smiles, f"unsupported element {', '.join(bad)} (supported: {allowed})", name)
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        return Rejected(smiles, f"net charge {charge:+d} (only neutral molecules are supported)", name)
    if len(Chem.GetMolFrags(mol)) > 1:
        return Rejected(smiles, "several fragments (only single molecules are supported)", name)
    if Descriptors.NumRadicalElectrons(mol) > 0:
        return Rejected(smiles, "radical (only closed-shell molecules are supported)", name)
    heavy = mol.GetNumHeavyAtoms()
    if heavy == 0:
        return Rejected(smiles, "no heavy atoms", name)
    if max_heavy_atoms is not None and heavy > max_heavy_atoms:
        return Rejected(smiles, f"{heavy} heavy atoms (more than --max-heavy-atoms {max_heavy_atoms})", name)
    n_atoms = mol.GetNumAtoms() + sum(a.GetTotalNumHs() for a in mol.GetAtoms())  # implicit H too
    if n_atoms > MAX_ATOMS_GENERATE:
        return Rejected(smiles, f"{n_atoms} atoms with hydrogens (generate's limit is {MAX_ATOMS_GENERATE} atoms "
                                f"per molecule; see data/README.md)", name)
    canonical = Chem.MolToSmiles(mol, isomericSmiles=False)
    return Entry(id=molecule_id(canonical), smiles=canonical, name=name, source=text)


def dedupe(items: Sequence[Entry | Rejected]) -> list[Entry | Rejected]:
    """Merge entries with the same canonical SMILES (the first one wins); rejections are kept as they are."""
    seen: set[str] = set()
    out: list[Entry | Rejected] = []
    for item in items:
        if isinstance(item, Entry):
            if item.id in seen:
                continue
            seen.add(item.id)
        out.append(item)
    return out


def read_smiles_file(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(smiles, name)`` per non-empty, non-comment line; the name is the rest of the line (may be empty)."""
    path = Path(path)
    if path.is_dir():
        raise MlipdivError(f"{path}: is a folder, not a SMILES file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MlipdivError(f"{path}: cannot read SMILES file ({exc.strerror or type(exc).__name__})") from exc
    rows = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:  # the line's bytes are not shown: the path may point at any file
            raise MlipdivError(f"{path}: line {number} is not UTF-8; save the file as UTF-8") from exc
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        rows.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return rows


def nci_pool(max_heavy_atoms: int | None = None) -> list[Entry]:
    """RDKit's ``NCI/first_5K.smi`` filtered to neutral single-fragment closed-shell molecules of H C N O F S Cl
    with at most ``max_heavy_atoms`` heavy atoms, deduplicated, in file order."""
    path = nci_pool_path()
    if not path.exists():
        raise MlipdivError(f"RDKit's NCI pool is missing at {path}; reinstall rdkit or use --smiles/--smiles-file")
    items = []
    for smiles, name in read_smiles_file(path):
        item = check_smiles(smiles, name=f"NCI {name}" if name else "", max_heavy_atoms=max_heavy_atoms)
        if isinstance(item, Entry):
            items.append(item)
    return [e for e in dedupe(items) if isinstance(e, Entry)]


def build_pool(
    pool: str | None = None,
    smiles: list[str] | None = None,
    smiles_file: str | os.PathLike | None = None,
    max_heavy_atoms: int | None = None,
    max_molecules: int | None = None,
) -> tuple[list[Entry], list[Rejected]]:
    """The molecules to generate, in input order, and the inputs that were rejected.

    The NCI pool (``pool="nci"``) is pre-filtered, so its unusable entries are not reported; a user's SMILES
    (``smiles``, ``smiles_file``) are reported one by one. ``max_molecules`` keeps the first K usable molecules.
    """
    for field, value in (("max_molecules", max_molecules), ("max_heavy_atoms", max_heavy_atoms)):
        if value is not None and value < 1:
            raise InvalidSetting(f"{field} must be at least 1 (got {value})", field)
    items: list[Entry | Rejected] = []
    if pool:
        if pool.lower() != "nci":
            raise MlipdivError(f"unknown pool {pool!r}; available: nci")
        items.extend(nci_pool(max_heavy_atoms))
    for s in smiles or []:
        items.append(check_smiles(s, max_heavy_atoms=max_heavy_atoms))
    if smiles_file is not None:
        for s, name in read_smiles_file(smiles_file):
            items.append(check_smiles(s, name=name, max_heavy_atoms=max_heavy_atoms))
    items = dedupe(items)
    entries = [e for e in items if isinstance(e, Entry)]
    rejected = [e for e in items if isinstance(e, Rejected)]
    if max_molecules is not None:
        entries = entries[:max_molecules]
    return entries, rejected
