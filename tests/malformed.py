"""Builders of malformed dataset files (shared by the fuzz tests; reusable for the app's upload path).

Each builder is ``builder(folder, secret) -> path``: it writes one bad file into ``folder`` and returns its path.
``secret`` is a file outside the dataset holding :data:`SECRET`; builders that try to make a reader pull in
other files point at it, so a test can assert that :data:`SECRET` never reaches a message or a result.
:data:`CASES` lists ``(name, builder, expected message fragment)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SECRET = "SECRET-7f3a9c1e-do-not-show"
SECRET_MARK = SECRET[:15]  # what any part of the secret that leaked would contain


def write_secret(folder: Path) -> Path:
    """A plain text file and an HDF5 file, both holding :data:`SECRET` (what a crafted file would exfiltrate)."""
    import h5py

    text = folder / "secret.txt"
    text.write_text((SECRET + "\n") * 64)
    with h5py.File(folder / "secret.h5", "w") as f:
        f["data"] = np.frombuffer((SECRET * 4).encode(), dtype="S1")
        f["method"] = np.array([SECRET.encode()] * 2)
    return text


def _arrays(n_conf: int = 2, z: tuple[int, ...] = (8, 1, 1)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n = len(z)
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])[:n] if n <= 3 else rng.normal(size=(n, 3))
    return {
        "atomic_numbers": np.array(z, dtype=np.int16),
        "positions": (pos + rng.normal(0, 0.01, (n_conf, n, 3))).astype(np.float32),
        "energy": -137.0 + rng.normal(0, 0.1, n_conf),
        "forces": rng.normal(0, 0.5, (n_conf, n, 3)).astype(np.float32),
        "parent": np.zeros(n_conf, dtype=np.int32),
        "temperature": np.zeros(n_conf, dtype=np.float32),
        "method": np.array([b"import"] * n_conf),
    }


def _h5(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> Path:
    """An mlipdiv-looking HDF5 file written with h5py directly (no checks), one group per molecule."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "mlipdiv", "version": 1, "level_of_theory": "test"})
        for name, arrays in groups.items():
            g = f.create_group(name)
            g.attrs["smiles"] = "O"
            for key, value in arrays.items():
                g[key] = value
    return path


def _h5_tampered(d: Path, name: str, tamper: Callable[[object, Path], None], secret: Path) -> Path:
    import h5py

    path = _h5(d / name, {"mol_000000000001": _arrays(), "mol_000000000002": _arrays()})
    with h5py.File(path, "a") as f:
        tamper(f, secret)
    return path


def external_storage(d: Path, secret: Path) -> Path:
    def tamper(f, secret: Path) -> None:
        g = f["mol_000000000002"]
        del g["method"]
        g.create_dataset("method", shape=(2,), dtype="S24", external=[(str(secret), 0, 48)])

    return _h5_tampered(d, "external_storage.h5", tamper, secret)


def external_link(d: Path, secret: Path) -> Path:
    def tamper(f, secret: Path) -> None:
        del f["mol_000000000002"]["method"]
        import h5py

        f["mol_000000000002"]["method"] = h5py.ExternalLink(str(secret.with_suffix(".h5")), "/method")

    return _h5_tampered(d, "external_link.h5", tamper, secret)


def external_group_link(d: Path, secret: Path) -> Path:
    def tamper(f, secret: Path) -> None:
        import h5py

        f["mol_000000000003"] = h5py.ExternalLink(str(secret.with_suffix(".h5")), "/")

    return _h5_tampered(d, "external_group_link.h5", tamper, secret)


def soft_link(d: Path, secret: Path) -> Path:
    def tamper(f, secret: Path) -> None:
        import h5py

        del f["mol_000000000002"]["energy"]
        f["mol_000000000002"]["energy"] = h5py.SoftLink("/mol_000000000001/energy")

    return _h5_tampered(d, "soft_link.h5", tamper, secret)


def virtual_dataset(d: Path, secret: Path) -> Path:
    def tamper(f, secret: Path) -> None:
        import h5py

        layout = h5py.VirtualLayout(shape=(2,), dtype=f"S{len(SECRET)}")
        layout[:] = h5py.VirtualSource(str(secret.with_suffix(".h5")), "method", shape=(2,))
        del f["mol_000000000002"]["method"]
        f["mol_000000000002"].create_virtual_dataset("method", layout)

    return _h5_tampered(d, "virtual.h5", tamper, secret)


def _bad_arrays(name: str, **change: np.ndarray) -> Callable[[Path, Path], Path]:
    def build(d: Path, secret: Path) -> Path:
        arrays = {**_arrays(), **change}
        return _h5(d / f"{name}.h5", {"mol_000000000001": _arrays(), "mol_000000000002": arrays})

    build.__name__ = name
    return build


def _nonfinite(key: str, value: float) -> Callable[[Path, Path], Path]:
    arrays = _arrays()
    bad = arrays[key].copy()
    bad.flat[1] = value
    return _bad_arrays(f"{key}_{value}", **{key: bad})


def _bad_id(label: str, mol_id: str) -> Callable[[Path, Path], Path]:
    def build(d: Path, secret: Path) -> Path:
        return _h5(d / f"id_{label}.h5", {mol_id: _arrays()})

    build.__name__ = f"id_{label}"
    return build


def truncated(d: Path, secret: Path) -> Path:
    path = _h5(d / "truncated.h5", {f"mol_00000000000{k}": _arrays(50) for k in range(3)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def not_hdf5(d: Path, secret: Path) -> Path:
    path = d / "renamed.h5"
    path.write_bytes(secret.read_bytes())  # any text file with an .h5 name
    return path


# ------------------------------------------------------------------------------------------------- extended XYZ


def _frame(mol_id: str | None = "mol_000000000001", symbols: str = "O H H", pos: str = "", energy: str = "-137.0",
           extra: str = "", force: str = "0.1") -> str:
    syms = symbols.split()
    rows = pos.splitlines() if pos else ["0.0 0.0 0.0", "0.96 0.0 0.0", "-0.24 0.93 0.0"]
    ident = f"mol_id={mol_id} " if mol_id is not None else ""
    lines = [str(len(syms)),
             f'Properties=species:S:1:pos:R:3:REF_forces:R:3 {ident}REF_energy={energy} {extra}'.strip()]
    lines += [f"{s} {p} {force} 0.0 0.0" for s, p in zip(syms, rows)]
    return "\n".join(lines) + "\n"


def _xyz(name: str, text: str, encoding: str = "utf-8") -> Callable[[Path, Path], Path]:
    def build(d: Path, secret: Path) -> Path:
        path = d / f"{name}.xyz"
        path.write_bytes((_frame() + text).encode(encoding))
        return path

    build.__name__ = name
    return build


def xyz_symlink_to_secret(d: Path, secret: Path) -> Path:
    path = d / "link.xyz"
    path.symlink_to(secret)
    return path


CASES: list[tuple[str, Callable[[Path, Path], Path], str]] = [
    ("external storage", external_storage, "stored in external files"),
    ("external link", external_link, "external or soft link"),
    ("external group link", external_group_link, "external or soft link"),
    ("soft link", soft_link, "external or soft link"),
    ("virtual dataset", virtual_dataset, "virtual dataset"),
    ("Z = 0", _bad_arrays("z0", atomic_numbers=np.array([8, 0, 1], dtype=np.int16)), "atomic number 0"),
    ("Z = 119", _bad_arrays("z119", atomic_numbers=np.array([8, 119, 1], dtype=np.int16)), "atomic number 119"),
    ("Z = 200", _bad_arrays("z200", atomic_numbers=np.array([8, 200, 1], dtype=np.int16)), "atomic number 200"),
    ("NaN positions", _nonfinite("positions", np.nan), "positions hold NaN"),
    ("inf energy", _nonfinite("energy", np.inf), "energy holds NaN"),
    ("NaN forces", _nonfinite("forces", np.nan), "forces hold NaN"),
    ("0 conformers", _bad_arrays("noconf", **{k: v[:0] for k, v in _arrays().items() if k != "atomic_numbers"}),
     "no conformers"),
    ("1e30 angstrom", _bad_arrays("far", positions=np.full((2, 3, 3), 1e30, dtype=np.float32)), "beyond"),
    ("id with a space", _bad_id("space", "mol 1"), "not a safe name"),
    ("id with a control character", _bad_id("ctrl", "mol\x01"), "not a safe name"),
    ("id starting with a dot", _bad_id("dot", ".hidden"), "not a safe name"),
    ("truncated HDF5", truncated, "truncated"),
    ("not HDF5", not_hdf5, "not a readable HDF5 file"),
    ("xyz Z = 0 (X)", _xyz("x_atom", _frame(symbols="O X H")), "atomic number 0"),
    ("xyz NaN positions", _xyz("nan_pos", _frame(pos="0 0 0\nnan 0 0\n0 1 0")), "positions hold NaN"),
    ("xyz inf energy", _xyz("inf_energy", _frame(energy="inf")), "energy holds NaN"),
    ("xyz NaN forces", _xyz("nan_forces", _frame(force="nan")), "forces hold NaN"),
    ("xyz 1e30 angstrom", _xyz("far", _frame(pos="0 0 0\n1e30 0 0\n0 1 0")), "beyond"),
    ("xyz no atoms", _xyz("empty_frame", "0\nREF_energy=1.0 mol_id=mol_000000000009\n"), "no atoms"),
    ("xyz id '.'", _xyz("id_dot", _frame(mol_id=".")), "not a safe name"),
    ("xyz id '..'", _xyz("id_dotdot", _frame(mol_id="..")), "not a safe name"),
    ("xyz id 'a/b'", _xyz("id_slash", _frame(mol_id="a/b")), "not a safe name"),
    ("xyz periodic Lattice", _xyz("lattice", _frame(extra='Lattice="10 0 0 0 10 0 0 0 10" pbc="T T T"')),
     "periodic structures are not supported"),
    ("xyz periodic pbc only", _xyz("pbc", _frame(extra='pbc="T F F"')), "periodic structures are not supported"),
    ("xyz Latin-1", _xyz("latin1", _frame(extra="name=Ångström"), encoding="latin-1"), "not UTF-8"),
    ("xyz symlink to a secret", xyz_symlink_to_secret, "cannot be parsed"),
]
