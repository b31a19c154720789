"""The ``generate`` pipeline: molecules -> distinct conformers -> thermal samples -> GFN2-xTB labels -> HDF5.

One task is one molecule (embed, relax, Hessian, sample, label), run in a pool of worker processes. Each finished
molecule is appended to ``OUT.partial`` (HDF5) and logged in ``OUT.partial.log`` (JSON lines, the first line
holds the arguments' fingerprint), so an interrupted run restarted with the same arguments computes only the
missing molecules. At the end the molecules are copied into ``OUT`` in input order, the report goes to
``OUT.report.json`` and the partial files are removed.

Determinism: every molecule draws from its own RNG seeded by ``(seed, molecule id)``, so the result does not
depend on the number of workers, on scheduling or on resumption.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.data.dataset import Molecule, write_header
from mlipdiv.data.molecules import Entry, Rejected
from mlipdiv.data.oracle import Oracle, OracleFailure
from mlipdiv.errors import MlipdivError

SAMPLINGS = ("nms", "md")
RELAXATIONS = ("xtb", "mmff")


@dataclass(frozen=True)
class Settings:
    """Everything that determines a molecule's conformers and labels (part of the resume fingerprint)."""

    conformers: int = 100
    parents: int = 4
    sampling: str = "nms"
    temperature: float = 300.0
    relax: str = "xtb"
    seed: int = 0
    level_of_theory: str = "GFN2-xTB"

    def __post_init__(self) -> None:
        if self.conformers < 1:
            raise MlipdivError("--conformers must be at least 1")
        if self.parents < 1:
            raise MlipdivError("--parents must be at least 1")
        if self.sampling not in SAMPLINGS:
            raise MlipdivError(f"--sampling must be one of {', '.join(SAMPLINGS)}")
        if self.relax not in RELAXATIONS:
            raise MlipdivError(f"--relax must be one of {', '.join(RELAXATIONS)}")
        if not self.temperature > 0:
            raise MlipdivError("--temperature must be positive (kelvin)")


@dataclass
class Outcome:
    """What one task produced: a molecule, or the reason it was skipped, plus a few statistics."""

    id: str
    smiles: str
    molecule: Molecule | None = None
    reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


def molecule_seed(seed: int, mol_id: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(mol_id.split("_")[-1], 16)])


def family_sizes(total: int, n_families: int) -> list[int]:
    """Split ``total`` conformers evenly over ``n_families`` (the first ones get the remainder)."""
    return [total // n_families + (1 if i < total % n_families else 0) for i in range(n_families)]


class _CountingOracle:
    """Counts calls (for throughput figures) around the real oracle."""

    def __init__(self, oracle: Oracle):
        self.oracle = oracle
        self.level_of_theory = getattr(oracle, "level_of_theory", "unknown")
        self.calls = 0

    def __call__(self, atomic_numbers, positions, charge: int = 0):
        self.calls += 1
        return self.oracle(atomic_numbers, positions, charge)


def process_molecule(entry: Entry, settings: Settings, oracle: Oracle) -> Outcome:
    """Build one molecule's conformers and labels. Never raises for chemistry problems: returns a skip reason."""
    from mlipdiv.data import conformers as conf
    from mlipdiv.data import sampling

    t0, c0 = time.perf_counter(), time.process_time()
    counted = _CountingOracle(oracle)
    out = Outcome(id=entry.id, smiles=entry.smiles)
    ss = molecule_seed(settings.seed, entry.id)
    rdkit_seed, = ss.generate_state(1)
    rng = np.random.default_rng(ss.spawn(1)[0])
    notes: list[str] = []
    try:
        mol = conf.rdkit_molecule(entry.smiles)
        z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
        n_parents = min(settings.parents, settings.conformers)
        try:
            parents = conf.distinct_conformers(mol, n_parents, int(rdkit_seed & 0x7FFFFFFF), settings.relax,
                                               counted, notes)
        except conf.EmbeddingFailure as exc:
            out.reason = f"embedding failed: {exc}"
            return out
        # label each relaxed parent (at float32-rounded positions: exactly what is stored) and, for NMS, its Hessian
        families = []
        for p in parents:
            x = p.positions.astype(np.float32).astype(np.float64)
            try:
                label = counted(z, x)
                sampler = None
                if settings.sampling == "nms":
                    hess = sampling.hessian(z, x, counted, forces0=label.forces)
                    sampler = sampling.NormalModeSampler(x, z, hess, settings.temperature)
            except OracleFailure as exc:
                notes.append(f"a parent conformer was dropped: {exc}")
                continue
            families.append((x, label, sampler))
        if not families:
            reason = "; ".join(dict.fromkeys(notes)) or "no conformer survived relaxation"
            out.reason = f"no usable conformer ({reason})"
            return out
        sizes = family_sizes(settings.conformers, len(families))
        positions, energy, forces, parent, temperature, method = [], [], [], [], [], []
        failures: list[str] = []
        for k, ((x, label, sampler), size) in enumerate(zip(families, sizes)):
            positions.append(x), energy.append(label.energy), forces.append(label.forces)
            parent.append(k), temperature.append(0.0), method.append("relaxed")
            need, budget = size - 1, max(10, size - 1)  # replacements allowed before giving up
            pending: list[np.ndarray] = []
            while need > 0:
                if not pending:
                    if settings.sampling == "nms":
                        pending = [sampler.sample(rng) for _ in range(need)]
                    else:
                        try:
                            pending = sampling.md_snapshots(z, x, counted, settings.temperature, need, rng)
                        except OracleFailure as exc:
                            failures.append(str(exc))
                            budget -= 1
                            if budget < 0:
                                break
                            continue
                y = pending.pop(0).astype(np.float32).astype(np.float64)
                why = None
                if not conf.connectivity_ok(mol, y):
                    why = "sampled geometry broke or formed a bond"
                else:
                    try:
                        lab = counted(z, y)
                    except OracleFailure as exc:
                        why = str(exc)
                if why is not None:
                    failures.append(why)
                    budget -= 1
                    if budget < 0:
                        break
                    continue
                positions.append(y), energy.append(lab.energy), forces.append(lab.forces)
                parent.append(k), temperature.append(settings.temperature), method.append(settings.sampling)
                need -= 1
            if need > 0:
                common = Counter(failures).most_common(1)[0][0]  # ties: the first seen, deterministic
                out.reason = (f"could not label {settings.conformers} conformers: too many failed samples "
                              f"({len(failures)}; most often: {common})")
                return out
        out.molecule = Molecule(
            id=entry.id, smiles=entry.smiles, name=entry.name, atomic_numbers=z,
            positions=np.array(positions, dtype=np.float32), energy=np.array(energy),
            forces=np.array(forces, dtype=np.float32), parent=np.array(parent),
            temperature=np.array(temperature), method=np.array(method),
        )
        out.stats = {"parents": len(families), "failed_samples": len(failures),
                     "relax_converged": sum(p.converged for p in parents)}
        if notes:
            out.stats["notes"] = sorted(set(notes))
        return out
    except Exception as exc:  # noqa: BLE001 - one molecule must never take the whole run down
        out.reason = f"unexpected error: {type(exc).__name__}: {exc}"
        return out
    finally:
        out.stats["oracle_calls"] = counted.calls
        out.stats["seconds"] = round(time.perf_counter() - t0, 3)  # wall time of the task
        out.stats["cpu_seconds"] = round(time.process_time() - c0, 3)


# ------------------------------------------------------------------------------------------ running and storage


def _init_worker() -> None:
    """Worker start-up: one thread per worker (the parent exported OMP_NUM_THREADS=1 before spawning us)."""
    from threadpoolctl import threadpool_limits

    os.environ["OMP_NUM_THREADS"] = "1"
    threadpool_limits(limits=1)


@contextmanager
def _single_thread():
    """One OpenMP thread for tblite in this process: multi-threaded reductions change the last bits of the labels,
    and generation must be bit-for-bit reproducible (and the workers run single-threaded too)."""
    from threadpoolctl import threadpool_limits

    if "tblite" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = "1"
    import tblite.interface  # noqa: F401 - load tblite (and its OpenMP) so the limit applies

    with threadpool_limits(limits=1):  # OpenMP (tblite) and BLAS (numpy, loaded before OMP_NUM_THREADS was set)
        yield


@contextmanager
def _workers_skip_main():
    """Spawned workers re-run the parent's ``__main__`` before they work. Under Streamlit (and ``AppTest``) that
    module is ``app.py``, which would start the app's background threads in every worker and can deadlock them at
    exit; the workers need nothing from ``__main__``, so leave it out of what they are told to prepare."""
    import multiprocessing.spawn as spawn

    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = without_main
    try:
        yield
    finally:
        spawn.get_preparation_data = original


def _task(entry: Entry, settings: Settings, oracle: Oracle) -> Outcome:
    return process_molecule(entry, settings, oracle)


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import mlipdiv

    out = {"mlipdiv": mlipdiv.__version__, "python": sys.version.split()[0]}
    for pkg in ("rdkit", "tblite", "ase", "numpy", "h5py"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def fingerprint(entries: list[Entry], settings: Settings) -> dict[str, Any]:
    """What must match for a partial output to be continued."""
    ids = hashlib.sha256("\n".join(e.id for e in entries).encode()).hexdigest()[:16]
    return {"settings": asdict(settings), "molecules": len(entries), "molecule_ids_sha256": ids}


class PartialStore:
    """``OUT.partial`` (HDF5 molecule groups) + ``OUT.partial.log`` (JSON lines: header, then one per molecule)."""

    def __init__(self, out: Path):
        self.out = out
        self.h5 = out.with_name(out.name + ".partial")
        self.log = out.with_name(out.name + ".partial.log")

    def open(self, fp: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Start or continue; returns the log records of molecules already done (by id)."""
        import h5py

        done: dict[str, dict[str, Any]] = {}
        if self.log.exists():
            lines = self.log.read_text().splitlines()
            try:
                header = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                header = None
            if header is None or header.get("fingerprint") != fp:
                raise MlipdivError(
                    f"{self.h5} holds an unfinished run made with different arguments; rerun with the same "
                    f"arguments to continue it, or delete {self.h5} and {self.log} to start over"
                )
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption
                    continue
                done[rec["id"]] = rec
            try:
                with h5py.File(self.h5, "a") as f:
                    for name in list(f):
                        if done.get(name, {}).get("status") != "ok":
                            del f[name]  # written but not logged: redo it
                    for key, rec in list(done.items()):
                        if rec.get("status") == "ok" and key not in f:
                            del done[key]
            except OSError as exc:
                raise MlipdivError(
                    f"{self.h5}: unfinished output is damaged ({exc}); delete it and {self.log} to start over"
                ) from exc
        else:
            with h5py.File(self.h5, "w"):
                pass
            self.log.write_text(json.dumps({"fingerprint": fp}) + "\n")
        return done

    def add(self, outcome: Outcome) -> dict[str, Any]:
        import h5py

        from mlipdiv.data.dataset import write_molecule

        rec: dict[str, Any] = {"id": outcome.id, "smiles": outcome.smiles, "stats": outcome.stats}
        if outcome.molecule is not None:
            with h5py.File(self.h5, "a") as f:
                write_molecule(f, outcome.molecule)
            rec["status"] = "ok"
            rec["conformers"] = outcome.molecule.n_conformers
        else:
            rec["status"] = "skipped"
            rec["reason"] = outcome.reason
        with open(self.log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return rec

    def finish(self, order: list[str], attrs: dict[str, Any]) -> None:
        """Copy finished molecules into ``out`` in ``order`` and remove the partial files."""
        import h5py

        from mlipdiv.data.dataset import _read_molecule, write_molecule

        tmp = self.out.with_name(self.out.name + ".tmp")
        # the same file layout as write_hdf5 (v1.10 objects, molecules in creation order)
        with h5py.File(self.h5, "r") as src, h5py.File(tmp, "w", libver="v110", track_order=True) as dst:
            write_header(dst, attrs)
            for mol_id in order:
                if mol_id in src:
                    write_molecule(dst, _read_molecule(self.h5, mol_id, src[mol_id]))
        tmp.replace(self.out)
        self.h5.unlink()
        self.log.unlink()


def generate(
    entries: list[Entry],
    settings: Settings,
    out: str | Path,
    rejected: list[Rejected] | None = None,
    workers: int | None = None,
    oracle: Oracle | None = None,
    command: str = "",
    source: str = "",
    progress: bool = True,
    overwrite: bool = False,
    max_new: int | None = None,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the pipeline and write ``out`` plus ``out.report.json``; returns the report.

    ``max_new`` stops after that many newly computed molecules, leaving the partial output in place (used by
    tests to simulate an interruption). Raises :class:`MlipdivError` if no molecule could be made.
    """
    from mlipdiv.data.oracle import get_oracle

    out = Path(out)
    rejected = list(rejected or [])
    oracle = oracle if oracle is not None else get_oracle("gfn2-xtb")
    workers = max(1, int(workers or os.cpu_count() or 1))
    store = PartialStore(out)
    if out.exists() and not store.log.exists():
        if not overwrite:
            raise MlipdivError(f"{out} already exists; delete it, choose another --out, or pass --overwrite")
    if not entries and not rejected:
        raise MlipdivError("no molecules to generate: give --pool nci, --smiles or --smiles-file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(entries, settings)
    started = time.time()
    done = store.open(fp)
    todo = [e for e in entries if e.id not in done]
    if max_new is not None:
        todo = todo[:max_new]
    if done:
        print(f"continuing {store.h5}: {len(done)} of {len(entries)} molecules already done", file=sys.stderr)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(entries), initial=len(entries) - len(todo) if max_new is None else len(done),
                   unit="mol", desc="generate", file=sys.stderr, dynamic_ncols=True)
    new_conformers = 0

    def record(outcome: Outcome) -> None:
        nonlocal new_conformers
        rec = store.add(outcome)
        done[outcome.id] = rec
        new_conformers += rec.get("conformers", 0)
        if bar is not None:
            bar.update(1)
            rate = new_conformers / max(time.time() - started, 1e-9)
            bar.set_postfix(conf_per_s=f"{rate:.1f}", skipped=len(rejected) + sum(r["status"] == "skipped" for r in done.values()))
        if on_outcome is not None:
            on_outcome(rec)

    t_compute = time.perf_counter()
    if workers == 1 or len(todo) <= 1:
        with _single_thread():
            for entry in todo:
                record(process_molecule(entry, settings, oracle))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers before tblite loads OpenMP
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                 initializer=_init_worker) as pool:
            with _workers_skip_main():  # the workers start as tasks are submitted
                futures = [pool.submit(_task, e, settings, oracle) for e in todo]
            try:
                for fut in as_completed(futures):
                    record(fut.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    compute_seconds = time.perf_counter() - t_compute
    if bar is not None:
        bar.close()

    if max_new is not None and any(e.id not in done for e in entries):
        return {"interrupted": True, "done": len(done)}

    order = [e.id for e in entries]
    ok = [i for i in order if done.get(i, {}).get("status") == "ok"]
    skipped = [{"input": r.input, "name": r.name, "reason": r.reason} for r in rejected]
    skipped += [{"input": done[i]["smiles"], "id": i, "reason": done[i]["reason"]}
                for i in order if done.get(i, {}).get("status") == "skipped"]
    n_conf = sum(done[i]["conformers"] for i in ok)
    calls = sum(done[i]["stats"].get("oracle_calls", 0) for i in order if i in done)
    report = {
        "output": str(out),
        "command": command,
        "molecules": len(ok),
        "conformers": n_conf,
        "skipped": skipped,
        "parents_per_molecule": {str(k): v for k, v in sorted(_count(done[i]["stats"].get("parents") for i in ok).items())},
        "failed_samples_replaced": sum(done[i]["stats"].get("failed_samples", 0) for i in ok),
        "oracle_calls": calls,
        "wall_seconds_this_run": round(time.time() - started, 1),
        "compute_seconds_this_run": round(compute_seconds, 1),
        # summed over molecules (all runs, if resumed): wall time of each task, and its CPU time
        "task_seconds_all_molecules": round(sum(done[i]["stats"].get("seconds", 0.0) for i in order if i in done), 1),
        "cpu_seconds_all_molecules": round(sum(done[i]["stats"].get("cpu_seconds", 0.0) for i in order if i in done), 1),
        "workers": workers,
        "settings": asdict(settings),
    }
    report_path = out.with_name(out.name + ".report.json")
    if not ok:
        store.h5.unlink(missing_ok=True)
        store.log.unlink(missing_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        reasons = "; ".join(f"{s['input']}: {s['reason']}" for s in skipped) or "no input"
        raise MlipdivError(f"no molecule could be generated ({reasons}); nothing written to {out}")
    attrs = {
        "level_of_theory": settings.level_of_theory,
        "command": command,
        "source": source,
        "seed": settings.seed,
        "conformers_per_molecule": settings.conformers,
        "parents": settings.parents,
        "sampling": settings.sampling,
        "temperature": settings.temperature,
        "relax": settings.relax,
        "software": json.dumps(software_versions(), sort_keys=True),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    store.finish(order, attrs)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _count(values) -> dict[Any, int]:
    out: dict[Any, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
