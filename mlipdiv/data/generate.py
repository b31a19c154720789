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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlipdiv.data.molecules import Entry, Rejected
from mlipdiv.data.oracle import Oracle, OracleFailure
from mlipdiv.errors import InvalidSetting, MlipdivError
from mlipdiv.io.atomic import atomic_path
from mlipdiv.io.dataset import Molecule
from mlipdiv.io.hdf5 import write_header
from mlipdiv.io.validate import check_output, make_parent
from mlipdiv.limits import MAX_ATOMS_GENERATE

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
            raise InvalidSetting("conformers must be at least 1", "conformers")
        if self.parents < 1:
            raise InvalidSetting("parents must be at least 1", "parents")
        if self.sampling not in SAMPLINGS:
            raise InvalidSetting(f"sampling must be one of {', '.join(SAMPLINGS)}", "sampling")
        if self.relax not in RELAXATIONS:
            raise InvalidSetting(f"relax must be one of {', '.join(RELAXATIONS)}", "relax")
        if not self.temperature > 0:
            raise InvalidSetting("temperature must be positive (kelvin)", "temperature")


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
        if len(z) > MAX_ATOMS_GENERATE:  # before embedding: a huge molecule would never finish
            out.reason = (f"{len(z)} atoms with hydrogens (generate's limit is {MAX_ATOMS_GENERATE} atoms "
                          f"per molecule)")
            return out
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
            positions.append(x)
            energy.append(label.energy)
            forces.append(label.forces)
            parent.append(k)
            temperature.append(0.0)
            method.append("relaxed")
            need, budget = size - 1, max(10, size - 1)  # replacements allowed before giving up
            pending: list[np.ndarray] = []
            while need > 0:
                if not pending:
                    if settings.sampling == "nms":
                        assert sampler is not None  # built with the family when sampling is nms
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
                positions.append(y)
                energy.append(lab.energy)
                forces.append(lab.forces)
                parent.append(k)
                temperature.append(settings.temperature)
                method.append(settings.sampling)
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


PARENT_POLL_SECONDS = 1.0  # how often a worker's watchdog checks that the parent is still alive


def _exit_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid`` dies (kill -9 included), so no worker is left computing for nobody.

    On Linux the kernel sends SIGTERM the moment the parent dies (``PR_SET_PDEATHSIG``); everywhere a daemon
    thread notices the re-parenting (``os.getppid()`` changes) within ``PARENT_POLL_SECONDS``. Once the workers
    are gone the multiprocessing resource tracker sees its pipe close and exits as well.
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="mlipdiv-parent-watchdog", daemon=True).start()


def _init_worker(parent_pid: int | None = None) -> None:
    """Worker start-up: exit with the parent, one thread per worker (OMP_NUM_THREADS=1 was exported before
    spawning us)."""
    from threadpoolctl import threadpool_limits

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
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
            lines = self.log.read_text(errors="replace").splitlines()  # a torn last line may cut a character
            try:
                header = json.loads(lines[0]) if lines else None
            except json.JSONDecodeError:
                header = None
            if not isinstance(header, dict) or header.get("fingerprint") != fp:
                raise MlipdivError(
                    f"{self.h5} holds an unfinished run made with different arguments; rerun with the same "
                    f"arguments to continue it, or delete {self.h5} and {self.log} to start over"
                )
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the interruption
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    done[rec["id"]] = rec
            self._recover(done)
        else:
            with h5py.File(self.h5, "w"):
                pass
            self.log.write_text(json.dumps({"fingerprint": fp}) + "\n")
        return done

    def _recover(self, done: dict[str, dict[str, Any]]) -> None:
        """Rebuild ``OUT.partial`` from the molecules in it that are logged as finished and read back complete.

        A run killed mid-write can leave the file torn (cut short, a half-written group); every molecule that
        still reads and passes the dataset checks is kept, the rest (and anything written but not logged) is
        dropped from ``done`` so it is computed again.
        """
        import h5py

        from mlipdiv.io.hdf5 import check_hdf5_group, read_molecule, write_molecule

        wanted = {k for k, rec in done.items() if rec.get("status") == "ok"}
        kept: set[str] = set()
        padded = self.h5.with_name(self.h5.name + ".recover")
        try:
            with atomic_path(self.h5) as tmp, h5py.File(tmp, "w") as dst:
                src = self._open_torn(padded) if wanted else None
                if src is not None:
                    with src:
                        for name in list(src):
                            if name not in wanted:
                                continue  # written but not logged: redo it
                            try:
                                check_hdf5_group(self.h5, src, name)
                                mol = read_molecule(self.h5, name, src[name])
                            except Exception:  # noqa: BLE001 - any damage means: compute this molecule again
                                continue
                            rec = done[name]
                            if mol.n_conformers != rec.get("conformers") or mol.smiles != rec.get("smiles"):
                                continue
                            write_molecule(dst, mol)
                            kept.add(name)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise MlipdivError(f"{self.h5}: cannot rebuild the unfinished output ({why}); check the folder is "
                               f"writable, or delete it and {self.log} to start over") from exc
        finally:
            padded.unlink(missing_ok=True)
        lost = wanted - kept
        for key in lost:
            del done[key]
        if lost:
            print(f"{self.h5} was damaged: kept {len(kept)} finished molecules, {len(lost)} will be computed again",
                  file=sys.stderr)

    def _open_torn(self, padded: Path) -> Any:
        """``OUT.partial`` opened for reading; if it was cut short, a copy padded back to the length its header
        records (HDF5 refuses to open a file shorter than that). ``None`` when nothing can be opened."""
        import h5py

        try:
            return h5py.File(self.h5, "r")
        except OSError:
            pass
        end = _hdf5_end_of_file(self.h5)
        if end is None:
            return None
        try:
            import shutil

            shutil.copyfile(self.h5, padded)
            with open(padded, "r+b") as fh:
                fh.truncate(max(end, padded.stat().st_size))
            return h5py.File(padded, "r")
        except OSError:
            return None

    def add(self, outcome: Outcome) -> dict[str, Any]:
        import h5py

        from mlipdiv.io.hdf5 import write_molecule

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

        from mlipdiv.io.hdf5 import read_molecule, write_molecule

        # the same file layout as write_hdf5 (v1.10 objects, molecules in creation order)
        with atomic_path(self.out) as tmp, h5py.File(self.h5, "r") as src, \
                h5py.File(tmp, "w", libver="v110", track_order=True) as dst:
            write_header(dst, attrs)
            for mol_id in order:
                if mol_id in src:
                    write_molecule(dst, read_molecule(self.h5, mol_id, src[mol_id]))
        self.h5.unlink()
        self.log.unlink()


def _hdf5_end_of_file(path: Path) -> int | None:
    """The end-of-file address an HDF5 superblock (at offset 0, versions 0 to 3) records, or ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return None
    if len(head) < 48 or head[:8] != b"\x89HDF\r\n\x1a\n":
        return None
    version = head[8]
    if version in (0, 1):
        size, base = head[13], 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        size, base = head[9], 12
    else:
        return None
    start = base + 2 * size
    if size not in (4, 8) or len(head) < start + size:
        return None
    end = int.from_bytes(head[start:start + size], "little")
    return end if 0 < end < 1 << 40 else None


def _check_request(out: Path, store: PartialStore, entries: list[Entry], rejected: list[Rejected],
                   overwrite: bool) -> None:
    """Refuse, before any work, an output that would be clobbered, an empty input or an unwritable ``--out``."""
    if out.exists() and not store.log.exists():
        if not overwrite:
            raise MlipdivError(f"{out} already exists; delete it, choose another --out, or pass --overwrite")
    if not entries and not rejected:
        raise MlipdivError("no molecules to generate: give --pool nci, --smiles or --smiles-file")
    check_output(out, "--out", overwrite=True)  # a folder, a file as folder, no write permission: say so now
    make_parent(out)


def _open_partial(store: PartialStore, fp: dict[str, Any], entries: list[Entry],
                  max_new: int | None) -> tuple[dict[str, dict[str, Any]], list[Entry]]:
    """Start or continue ``OUT.partial`` and decide what is left, so a resumed run computes only the missing."""
    done = store.open(fp)
    todo = [e for e in entries if e.id not in done]
    if max_new is not None:
        todo = todo[:max_new]
    if done:
        print(f"continuing {store.h5}: {len(done)} of {len(entries)} molecules already done", file=sys.stderr)
    return done, todo


class _Recorder:
    """Stores each finished molecule the moment it arrives (an interruption loses nothing) and shows progress."""

    def __init__(self, store: PartialStore, done: dict[str, dict[str, Any]], n_rejected: int, started: float,
                 bar: Any, on_outcome: Callable[[dict[str, Any]], None] | None) -> None:
        self.store, self.done, self.n_rejected, self.started = store, done, n_rejected, started
        self.bar, self.on_outcome = bar, on_outcome
        self.new_conformers = 0

    def __call__(self, outcome: Outcome) -> None:
        rec = self.store.add(outcome)
        self.done[outcome.id] = rec
        self.new_conformers += rec.get("conformers", 0)
        if self.bar is not None:
            self.bar.update(1)
            rate = self.new_conformers / max(time.time() - self.started, 1e-9)
            skipped = self.n_rejected + sum(r["status"] == "skipped" for r in self.done.values())
            self.bar.set_postfix(conf_per_s=f"{rate:.1f}", skipped=skipped)
        if self.on_outcome is not None:
            self.on_outcome(rec)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(progress: bool, total: int, initial: int) -> Any:
    """A tqdm bar on stderr (stdout may carry the CLI's JSON), or ``None`` when progress is off."""
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="mol", desc="generate", file=sys.stderr, dynamic_ncols=True)


def _compute(todo: list[Entry], settings: Settings, oracle: Oracle, workers: int,
             record: Callable[[Outcome], None]) -> float:
    """Compute the molecules left, here or in a pool, recording each as it finishes; returns the seconds taken."""
    t_compute = time.perf_counter()
    if workers == 1 or len(todo) <= 1:
        with _single_thread():
            for entry in todo:
                record(process_molecule(entry, settings, oracle))
    else:
        _compute_in_pool(todo, settings, oracle, workers, record)
    return time.perf_counter() - t_compute


def _compute_in_pool(todo: list[Entry], settings: Settings, oracle: Oracle, workers: int,
                     record: Callable[[Outcome], None]) -> None:
    """Spawned single-threaded workers that die with this process; on any error the queued tasks are dropped."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers before tblite loads OpenMP
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        with _workers_skip_main():  # the workers start as tasks are submitted
            futures = [pool.submit(_task, e, settings, oracle) for e in todo]
        try:
            for fut in as_completed(futures):
                record(fut.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _report(out: Path, command: str, entries: list[Entry], rejected: list[Rejected],
            done: dict[str, dict[str, Any]], started: float, compute_seconds: float, workers: int,
            settings: Settings) -> dict[str, Any]:
    """``OUT.report.json``: what was made and skipped (with reasons), and what it cost, over all resumed runs."""
    order = [e.id for e in entries]
    ok = [i for i in order if done.get(i, {}).get("status") == "ok"]
    skipped = [{"input": r.input, "name": r.name, "reason": r.reason} for r in rejected]
    skipped += [{"input": done[i]["smiles"], "id": i, "reason": done[i]["reason"]}
                for i in order if done.get(i, {}).get("status") == "skipped"]
    finished = [done[i]["stats"] for i in order if i in done]
    parents = Counter(done[i]["stats"].get("parents") for i in ok)
    return {
        "output": str(out),
        "command": command,
        "molecules": len(ok),
        "conformers": sum(done[i]["conformers"] for i in ok),
        "skipped": skipped,
        "parents_per_molecule": {str(k): v for k, v in sorted(parents.items())},
        "failed_samples_replaced": sum(done[i]["stats"].get("failed_samples", 0) for i in ok),
        "oracle_calls": sum(s.get("oracle_calls", 0) for s in finished),
        "wall_seconds_this_run": round(time.time() - started, 1),
        "compute_seconds_this_run": round(compute_seconds, 1),
        # summed over molecules (all runs, if resumed): wall time of each task, and its CPU time
        "task_seconds_all_molecules": round(sum(s.get("seconds", 0.0) for s in finished), 1),
        "cpu_seconds_all_molecules": round(sum(s.get("cpu_seconds", 0.0) for s in finished), 1),
        "workers": workers,
        "settings": asdict(settings),
    }


def _file_attrs(settings: Settings, command: str, source: str) -> dict[str, Any]:
    """The provenance written into the dataset's header, so the file says how it was made."""
    return {
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
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _write_outputs(store: PartialStore, entries: list[Entry], report: dict[str, Any], settings: Settings,
                   command: str, source: str) -> None:
    """Write ``OUT`` (input order) and its report and drop the partial files; with no molecule, the report and an
    error only."""
    out = store.out
    report_path = out.with_name(out.name + ".report.json")
    if not report["molecules"]:
        store.h5.unlink(missing_ok=True)
        store.log.unlink(missing_ok=True)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        reasons = "; ".join(f"{s['input']}: {s['reason']}" for s in report["skipped"]) or "no input"
        raise MlipdivError(f"no molecule could be generated ({reasons}); nothing written to {out}")
    store.finish([e.id for e in entries], _file_attrs(settings, command, source))
    report_path.write_text(json.dumps(report, indent=2) + "\n")


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
    _check_request(out, store, entries, rejected, overwrite)
    fp = fingerprint(entries, settings)
    started = time.time()
    done, todo = _open_partial(store, fp, entries, max_new)
    initial = len(entries) - len(todo) if max_new is None else len(done)
    record = _Recorder(store, done, len(rejected), started, _progress_bar(progress, len(entries), initial),
                       on_outcome)
    compute_seconds = _compute(todo, settings, oracle, workers, record)
    record.close()
    if max_new is not None and any(e.id not in done for e in entries):
        return {"interrupted": True, "done": len(done)}
    report = _report(out, command, entries, rejected, done, started, compute_seconds, workers, settings)
    _write_outputs(store, entries, report, settings, command, source)
    return report
