"""QM cost model: CPU-seconds to label one conformer as a function of its atom count.

GFN2-xTB cost is *measured*: :func:`calibrate` times single points (energy + gradient, one thread, CPU time of the
process, so other load on the machine does not inflate it) on molecules of different sizes and fits
``t = c * n_atoms ** p`` by least squares in log-log space. The constants shipped in ``cost_calibration.json`` (next
to this module) were measured with ``python -m mlipdiv.analysis.cost --calibrate``, which records the date, the
machine and the raw timings; rerun it to calibrate another machine.

DFT cost is *not* measured here. :meth:`CostModel.scaled` gives a documented scaling option: a DFT single point is
``factor`` times the cost of a GFN2-xTB single point at a reference size (default 20 atoms) and grows as
``n_atoms ** exponent`` (default 3, the formal scaling of hybrid DFT with density fitting; conventional
implementations are closer to n^3-n^4). ``factor`` must be supplied by the user from their own code and machine:
it depends on the functional, basis set and program by orders of magnitude, so we ship no default.

End to end: labelling is not the whole cost of a dataset. :func:`pipeline_cost_model` scales the single-point model
to the measured CPU time per stored conformer of generating the shipped dataset (RDKit embedding, GFN2-xTB
relaxation and Hessians of the parent conformers, normal-mode sampling, labelling; recorded from
``data/default.h5.report.json`` in ``cost_calibration.json``).

Budgets: a budget in CPU-hours becomes a number of conformers with :meth:`CostModel.conformers_for`, and back with
:meth:`CostModel.cpu_hours_for`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.units import S_TO_MS

__all__ = ["BUDGET_UNITS", "CALIBRATION_FILE", "CostModel", "budget_in_conformers", "calibrate",
           "dataset_atom_counts", "load_calibration", "pipeline_cost_model",
           "xtb_cost_model"]

CALIBRATION_FILE = Path(__file__).with_name("cost_calibration.json")
BUDGET_UNITS = ("conformers", "cpu-hours")  # how a user may state a QM budget

# Molecules spanning 5 to ~80 atoms (with hydrogens), common organic chemistry, elements H C N O S.
CALIBRATION_SMILES = [
    "C",  # methane, 5
    "CCO",  # ethanol, 9
    "c1ccccc1O",  # phenol, 13
    "CCCCCCC",  # heptane, 23
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",  # caffeine, 24
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",  # ibuprofen, 33
    "CC(=O)Nc1ccc(O)cc1.CCCCCCCCCC",  # paracetamol + decane in one box (not bonded), 52
    "CC(C)CCCC(C)C1CCC2C1(CCC3C2CC=C4C3(CCC(C4)O)C)C",  # cholesterol, 74
]


@dataclass(frozen=True)
class CostModel:
    """CPU-seconds per conformer ``t(n) = c * n ** p`` (n = atoms including hydrogens).

    Attributes:
        c: prefactor in CPU-seconds.
        p: exponent.
        label: what it models ("GFN2-xTB (measured)", "DFT (scaled: ...)").
        meta: provenance (date, machine, raw points) for display.
    """

    c: float
    p: float
    label: str = "GFN2-xTB"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def seconds_per_conformer(self, n_atoms: float | np.ndarray) -> float | np.ndarray:
        n = np.asarray(n_atoms, dtype=float)
        if np.any(n <= 0):
            raise MlipdivError("atom counts must be positive")
        out = self.c * n**self.p
        return float(out) if out.ndim == 0 else out

    def mean_seconds(self, n_atoms: float | np.ndarray) -> float:
        """Mean cost of one conformer when molecules have the given atom counts (equally many conformers each)."""
        return float(np.mean(self.seconds_per_conformer(n_atoms)))

    def cpu_hours_for(self, n_conformers: float, n_atoms: float | np.ndarray) -> float:
        """CPU-hours to label ``n_conformers`` conformers of molecules with ``n_atoms`` atoms (one size or many)."""
        return float(n_conformers) * self.mean_seconds(n_atoms) / 3600.0

    def conformers_for(self, cpu_hours: float, n_atoms: float | np.ndarray) -> int:
        """How many conformers ``cpu_hours`` can label (rounded down); ``n_atoms`` as in :meth:`cpu_hours_for`."""
        if cpu_hours <= 0:
            raise MlipdivError(f"a CPU-hour budget must be positive, got {cpu_hours}")
        # the tiny epsilon keeps an exact round trip (hours from conformers back to conformers) from losing one
        return int(math.floor(cpu_hours * 3600.0 / self.mean_seconds(n_atoms) * (1 + 1e-12)))

    @classmethod
    def entered(cls, seconds: float, n_ref: float, exponent: float = 3.0, label: str = "your QM method") -> CostModel:
        """A method the user names and prices: ``seconds`` CPU-seconds per conformer of ``n_ref`` atoms (e.g. the
        mean size of their imported dataset, the level of theory it was computed at), scaling as ``n ** exponent``.
        """
        if not (math.isfinite(seconds) and seconds > 0 and n_ref > 0 and exponent > 0):
            raise MlipdivError("an entered QM cost needs a positive cost per conformer, reference size and exponent")
        return cls(c=seconds / n_ref**exponent, p=exponent,
                   label=f"{label} (entered: {seconds:g} CPU-s per conformer at {n_ref:.3g} atoms, n^{exponent:g})",
                   meta={"entered_seconds": seconds, "n_ref": n_ref, "exponent": exponent, "method": label})

    def scaled(self, factor: float, exponent: float = 3.0, n_ref: float = 20.0, label: str = "DFT") -> CostModel:
        """A more expensive method: ``factor`` x this model's cost at ``n_ref`` atoms, scaling as ``n ** exponent``.

        Args:
            factor: cost ratio (new method / this method) for an ``n_ref``-atom molecule; measure it for your code.
            exponent: formal scaling of the new method with atom count (3 for hybrid DFT).
            n_ref: atom count at which ``factor`` holds.
        """
        if factor <= 0 or exponent <= 0 or n_ref <= 0:
            raise MlipdivError("DFT scaling needs a positive factor, exponent and reference size")
        c_new = factor * float(self.seconds_per_conformer(n_ref)) / n_ref**exponent
        return CostModel(
            c=c_new,
            p=exponent,
            label=f"{label} (assumed: {factor:g}x {self.label} at {n_ref:g} atoms, n^{exponent:g})",
            meta={"base": self.label, "factor": factor, "exponent": exponent, "n_ref": n_ref},
        )


def load_calibration(path: Path = CALIBRATION_FILE) -> dict[str, Any]:
    if not path.exists():
        raise MlipdivError(f"{path}: no cost calibration; run `python -m mlipdiv.analysis.cost --calibrate`")
    return json.loads(path.read_text())


def budget_in_conformers(value: float, unit: str, cost: CostModel, n_atoms: float | np.ndarray) -> int:
    """A QM budget stated in ``unit`` (one of :data:`BUDGET_UNITS`) as a number of conformers: CPU-hours are
    converted with ``cost`` for molecules of ``n_atoms`` atoms (one size or the dataset's sizes).

    Raises:
        InvalidSetting: an unknown unit.
        MlipdivError: a CPU-hour budget too small to pay for one conformer.
    """
    if unit == "conformers":
        return int(value)
    if unit == "cpu-hours":
        n = cost.conformers_for(value, n_atoms)
        if n < 1:
            raise MlipdivError(f"{value:g} CPU-hours do not pay for one conformer with {cost.label}")
        return n
    raise InvalidSetting(f"unit must be one of {', '.join(BUDGET_UNITS)}, not {unit!r}", "unit")


def xtb_cost_model(path: Path = CALIBRATION_FILE) -> CostModel:
    """The GFN2-xTB cost model measured on this project's machine (see ``cost_calibration.json``)."""
    cal = load_calibration(path)
    return CostModel(c=cal["c"], p=cal["p"], label="GFN2-xTB (measured)", meta=cal)


def dataset_atom_counts(path: str | Path | None = None) -> np.ndarray:
    """Atom count of every molecule of an mlipdiv HDF5 dataset (reads only the atomic numbers; default dataset)."""
    import h5py

    from mlipdiv.io.hdf5 import FORMAT, check_hdf5_structure
    from mlipdiv.paths import default_dataset

    path = Path(path) if path is not None else default_dataset()
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise MlipdivError(f"{path}: not an mlipdiv dataset")
            check_hdf5_structure(path, f)  # no links or external storage: only this file is ever read
            counts = np.array([len(f[name]["atomic_numbers"]) for name in f])
    except OSError as exc:
        raise MlipdivError(f"{path}: cannot read atom counts ({exc}); give --atoms N instead") from exc
    if counts.size == 0:
        raise MlipdivError(f"{path}: the dataset holds no molecules")
    return counts


def pipeline_cost_model(path: Path = CALIBRATION_FILE) -> CostModel:
    """End-to-end cost of making a dataset like the shipped one (embedding, relaxing and sampling included).

    The measured single-point model scaled, with the same exponent, so that it gives the CPU-seconds per stored
    conformer that generating ``data/default.h5`` took (``dataset_generation`` in the calibration file).
    """
    xtb = xtb_cost_model(path)
    gen = xtb.meta.get("dataset_generation")
    if not gen:
        raise MlipdivError(f"{path}: no dataset_generation record to scale the single-point cost by")
    factor = gen["cpu_seconds_per_stored_conformer"] / float(xtb.seconds_per_conformer(gen["mean_atoms"]))
    model = xtb.scaled(factor, xtb.p, gen["mean_atoms"], label="GFN2-xTB dataset generation")
    return CostModel(model.c, model.p, f"GFN2-xTB dataset generation (measured: {factor:.1f}x the single point)",
                     {**model.meta, **gen})


def fit_power_law(n_atoms: np.ndarray, seconds: np.ndarray) -> tuple[float, float, float]:
    """Least squares of ``log t = log c + p log n``; returns ``(c, p, r2)`` (r2 in log space)."""
    x, y = np.log(np.asarray(n_atoms, float)), np.log(np.asarray(seconds, float))
    p, logc = np.polyfit(x, y, 1)
    resid = y - (logc + p * x)
    r2 = 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())
    return float(math.exp(logc)), float(p), r2


def _embed(smiles: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers  # AllChem re-exports these; its stubs miss them

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    if rdDistGeom.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise MlipdivError(f"could not embed {smiles}")
    rdForceFieldHelpers.MMFFOptimizeMolecule(mol)
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return z, mol.GetConformer().GetPositions()


def calibrate(smiles: list[str] = CALIBRATION_SMILES, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Time GFN2-xTB single points (one thread, process CPU time) and fit ``t = c n^p``.

    Each molecule is embedded (RDKit ETKDG + MMFF) and labelled ``repeats`` times at slightly perturbed geometries
    (0.02 A noise, as thermal samples would be); the median CPU time per call is its cost. Set
    ``OMP_NUM_THREADS=1`` before tblite is first imported (the ``--calibrate`` entry point does) for single-core
    figures.
    """
    from mlipdiv.data.oracle import GFN2xTB

    oracle = GFN2xTB()
    rng = np.random.default_rng(seed)
    points = []
    for smi in smiles:
        z, pos = _embed(smi, seed)
        oracle(z, pos)  # warm-up: library load, first-call allocations
        cpu, wall = [], []
        for _ in range(repeats):
            x = pos + rng.normal(0.0, 0.02, pos.shape)
            t0, w0 = time.process_time(), time.perf_counter()
            oracle(z, x)
            cpu.append(time.process_time() - t0)
            wall.append(time.perf_counter() - w0)
        points.append(
            {"smiles": smi, "n_atoms": int(len(z)), "cpu_s": float(np.median(cpu)), "wall_s": float(np.median(wall))}
        )
    n = np.array([p["n_atoms"] for p in points])
    t = np.array([p["cpu_s"] for p in points])
    c, p, r2 = fit_power_law(n, t)
    return {
        "c": c,
        "p": p,
        "r2_log": r2,
        "unit": "CPU-seconds per conformer (energy + forces), t = c * n_atoms**p",
        "method": "GFN2-xTB via tblite, accuracy 1.0, one OpenMP thread, median of repeats, process CPU time",
        "repeats": repeats,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": _machine(),
        "points": points,
    }


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import importlib.metadata as md

        tblite = md.version("tblite")
    except Exception:  # noqa: BLE001 - provenance only
        tblite = "unknown"
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tblite": tblite,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlipdiv.analysis.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--calibrate", action="store_true", help="measure GFN2-xTB timings on this machine")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    args = parser.parse_args(argv)
    if not args.calibrate:
        model = xtb_cost_model(args.out)
        print(json.dumps(asdict(model), indent=2))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cal = calibrate(repeats=args.repeats)
    args.out.write_text(json.dumps(cal, indent=2) + "\n")
    for p in cal["points"]:
        print(f"{p['n_atoms']:4d} atoms  {S_TO_MS * p['cpu_s']:8.1f} ms CPU  {S_TO_MS * p['wall_s']:8.1f} ms wall  "
              f"{p['smiles']}")
    print(f"t = {cal['c']:.3g} s * n^{cal['p']:.2f}  (R^2 log-log {cal['r2_log']:.3f}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
