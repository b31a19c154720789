"""The training loop: split -> packed device tensors -> reference fit -> AdamW on energies and forces -> metrics.

Files written in ``out_dir`` through :class:`mlipdiv.io.rundir.RunDir` (atomic, so readers never see a torn file):

- ``config.json``: the :class:`TrainConfig`.
- ``split.json``: the training / val / test pairs (:meth:`mlipdiv.selection.Split.save`).
- ``checkpoint.pt``: at the end of every epoch, everything :func:`train` needs to resume (``resume=True``).
- ``model.pt``: the best weights (lowest validation loss) with hyperparameters, element reference energies and
  supported elements, as plain tensors and numbers (``torch.load(path, weights_only=True)``;
  :meth:`mlipdiv.models.Potential.load`).
- ``predictions.npz``: per conformer of ``val``, ``test_conformers``, ``test_molecules``: ``mol_id``, ``conf_idx``,
  ``split``, ``E_true``, ``E_pred``, ``E_baseline`` (eV), ``n_atoms``, ``forces_mae`` (eV/angstrom).
- ``metrics.json``: :class:`mlipdiv.io.metrics.RunMetrics` (``version``, ``model``, ``n_molecules``,
  ``conformers_per_molecule``, ``seed``, ``device``, ``seconds``, ``splits`` and ``baselines`` per split, ``curve``).
- ``summary.json``: what else a reader may want (best epoch, whether it stopped early, supported elements,
  conformers left out of evaluation because they hold elements the training set lacks).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlipdiv.errors import InvalidSetting, TrainingCancelled, TrainingError
from mlipdiv.io.metrics import CurvePoint, RunMetrics, SplitErrors
from mlipdiv.io.rundir import RunDir
from mlipdiv.models.potential import Potential
from mlipdiv.names import EVAL_SPLITS, SPLITS, SplitName  # re-exported: the split names, defined once
from mlipdiv.training.config import TrainConfig
from mlipdiv.training.data import Batch, PackedSplit, pack
from mlipdiv.training.metrics import ConformerErrors, summarize
from mlipdiv.training.reference import composition, fit_element_energies

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``event`` is ``"batch"`` (after every optimisation step; ``loss`` is that batch's loss) or ``"epoch"`` (after
    validation; ``loss`` is the epoch's mean training loss and ``val_*`` are set). ``epoch`` and ``batch`` count from
    1; ``seconds`` is the wall time of the run so far (across resumes). Energies in eV per molecule, forces in
    eV/angstrom.
    """

    event: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    lr: float
    seconds: float
    val_energy_mae: float | None = None
    val_forces_mae: float | None = None
    best_epoch: int | None = None


ProgressCallback = Callable[[Progress], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidSetting("device cuda requested but no CUDA GPU is available to torch; use cpu or auto", "device")
    return torch.device(name)


# --------------------------------------------------------------------------------------------- loss and evaluation


def compute_loss(pot: Potential, b: Batch, cfg: TrainConfig) -> torch.Tensor:
    """``w_E * MSE(E / n_atoms) + w_F * MSE(F)`` on one batch, with the graph kept for the backward pass."""
    energy, forces = pot.residual_and_forces(
        b.z, b.pos, b.batch, b.num_graphs, b.pairs, create_graph=True, within_cutoff=True
    )
    energy_term = torch.mean(((energy - b.residual) / b.n_atoms) ** 2)
    forces_term = torch.mean((forces - b.forces) ** 2)
    return cfg.energy_weight * energy_term + cfg.forces_weight * forces_term


def make_optimizer(pot: Potential, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, as one fused kernel per step on the CPU and CUDA (the same update as the per-parameter loop)."""
    fused = pot.element_energy.device.type in ("cpu", "cuda")
    return torch.optim.AdamW(pot.parameters(), lr=cfg.peak_lr(), weight_decay=cfg.weight_decay, fused=fused)


def parameter_gradients(pot: Potential, loss: torch.Tensor, grad_clip: float) -> torch.Tensor:
    """Backpropagate ``loss`` to the parameters only and clip; returns the gradient norm before clipping.

    The positions require grad too (the forces are their derivative), so a plain ``loss.backward()`` would also
    differentiate the force loss with respect to them, a second-order pass through the whole geometry that nothing
    reads; ``inputs=`` prunes it.
    """
    params = [p for p in pot.parameters() if p.requires_grad]
    loss.backward(inputs=params)
    return torch.nn.utils.clip_grad_norm_(params, grad_clip)


def predict(pot: Potential, split: PackedSplit, batch_size: int) -> ConformerErrors:
    """Total energies and force-error sums of every conformer of ``split`` (eval mode, no parameter gradients)."""
    e_pred, abs_sum, sq_sum = [], [], []
    for b in split.batches(batch_size):
        energy, forces = pot.residual_and_forces(b.z, b.pos, b.batch, b.num_graphs, b.pairs, within_cutoff=True)
        err = (forces.detach() - b.forces).to(torch.float64)
        per_graph = torch.zeros(b.num_graphs, 2, dtype=torch.float64, device=err.device)
        per_graph.index_add_(0, b.batch, torch.stack([err.abs().sum(1), (err**2).sum(1)], dim=1))
        e_pred.append(energy.detach().to(torch.float64).cpu())
        abs_sum.append(per_graph[:, 0].cpu())
        sq_sum.append(per_graph[:, 1].cpu())
    cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros(0)  # noqa: E731
    return ConformerErrors(
        energy_true=split.energy,
        energy_pred=cat(e_pred) + split.reference,
        n_atoms=split.n_atoms_host,
        force_abs_sum=cat(abs_sum),
        force_sq_sum=cat(sq_sum),
    )


def baseline(split: PackedSplit) -> ConformerErrors:
    """The model that learns nothing geometric: element-linear energy, zero forces."""
    f = split.forces.to(torch.float64)
    per_graph = torch.zeros(len(split), 2, dtype=torch.float64, device=f.device)
    graph = torch.repeat_interleave(torch.arange(len(split), device=f.device), split.n_atoms)
    per_graph.index_add_(0, graph, torch.stack([f.abs().sum(1), (f**2).sum(1)], dim=1))
    return ConformerErrors(split.energy, split.reference, split.n_atoms_host, *per_graph.cpu().numpy().T)


def validation_loss(err: ConformerErrors, cfg: TrainConfig) -> float:
    """The training loss evaluated on a split (mean over conformers / force components)."""
    if len(err.energy_true) == 0:
        return math.nan
    e = np.mean(((err.energy_pred - err.energy_true) / err.n_atoms) ** 2)
    f = np.sum(err.force_sq_sum) / (3.0 * np.sum(err.n_atoms))
    return float(cfg.energy_weight * e + cfg.forces_weight * f)


# -------------------------------------------------------------------------------------------------- schedules


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``final_lr_ratio`` at the last step."""
    warm = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    total = max(warm + 1, cfg.epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / (total - warm))
    return cfg.final_lr_ratio + (1.0 - cfg.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CPU for the duration of training (the global flag is restored afterwards)."""
    before = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _batch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of an epoch: a permutation fixed by (seed, epoch), so a resumed run draws the same ones."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


# ------------------------------------------------------------------------------------------------------ set-up


@dataclass
class _Setup:
    split: Any
    packed: dict[str, PackedSplit]
    excluded: dict[str, int]
    elements: list[int]
    element_energies: np.ndarray
    energy_scale: float
    avg_num_neighbors: float


def _prepare(cfg: TrainConfig, device: torch.device, out_dir: Path) -> _Setup:
    from mlipdiv.io.load import load_dataset
    from mlipdiv.selection import make_split

    dataset = load_dataset(cfg.dataset)
    split = make_split(dataset, cfg.split_spec(), diversity=False)
    RunDir(out_dir).write_split(split.to_json())
    train_pairs = split.train
    elements = sorted({int(z) for m, _ in train_pairs for z in dataset[m].atomic_numbers})
    allowed = set(elements)
    excluded: dict[str, int] = {}
    packed: dict[str, PackedSplit] = {}
    for name in SPLITS:
        pairs = getattr(split, name)
        keep = [p for p in pairs if set(np.unique(dataset[p[0]].atomic_numbers).tolist()) <= allowed]
        excluded[name] = len(pairs) - len(keep)
        packed[name] = pack(dataset, keep, name, device, cfg.cutoff)
    train = packed[SplitName.TRAIN]
    energies = fit_element_energies(composition(train.atom_z_host, elements), train.energy)
    for p in packed.values():
        p.set_reference(composition(p.atom_z_host, elements) @ energies if len(p) else np.zeros(0))
    forces_rms = float(torch.sqrt(torch.mean(train.forces.double() ** 2)))
    return _Setup(
        split=split,
        packed=packed,
        excluded=excluded,
        elements=elements,
        element_energies=energies,
        energy_scale=forces_rms if forces_rms > 0 else 1.0,
        avg_num_neighbors=_avg_neighbors(train),
    )


def _avg_neighbors(split: PackedSplit) -> float:
    """Mean number of neighbours within the cutoff per atom (MACE normalises its messages by it)."""
    return max(1.0, 2.0 * split.edges.shape[1] / max(1, split.z.numel()))


# ---------------------------------------------------------------------------------------------------- training


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the ``metrics.json`` object (:meth:`RunMetrics.to_dict`).

    Args:
        cfg: the run's configuration.
        out_dir: run folder (created when missing).
        on_progress: called with a :class:`Progress` after every batch and every epoch.
        should_stop: polled after every batch; when it returns True, :class:`TrainingCancelled` is raised (the last
            epoch's checkpoint stays, so ``resume=True`` continues).
        resume: continue from ``out_dir/checkpoint.pt`` instead of starting over. The configuration must be the
            checkpoint's except ``device`` and ``epochs``; a new ``epochs`` stretches the cosine schedule to the new
            total from the step reached (a run that had stopped early stays stopped).

    The folder is locked (:func:`mlipdiv.io.runlock.run_lock`) for the whole training, so a second process training
    into it fails at once instead of both "succeeding" with one result surviving.

    Raises:
        TrainingError: non-finite loss or gradients (the last good checkpoint is kept), or a resume that does not match.
        TrainingCancelled: ``should_stop`` returned True.
        InfeasibleRequest / DatasetError: the split cannot be made from the data.
        RunFolderBusy: another process or thread is writing ``out_dir``.
    """
    with RunDir(out_dir).lock():
        return _train(cfg, Path(out_dir), on_progress, should_stop, resume).to_dict()


def _train(
    cfg: TrainConfig,
    out_dir: Path,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    resume: bool,
) -> RunMetrics:
    run = RunDir(out_dir)
    ckpt_path = run.checkpoint_path
    state = _load_checkpoint(ckpt_path, cfg) if resume else None
    if state is None:  # a fresh start: results of an earlier run in this folder must not pass for this one's
        run.clear_training_outputs()
    device = resolve_device(cfg.device)
    run.write_config(cfg.to_dict())
    started = time.perf_counter()
    previous_seconds = state["seconds"] if state else 0.0

    def elapsed() -> float:
        return previous_seconds + time.perf_counter() - started

    with _deterministic(device):
        setup = _prepare(cfg, device, out_dir)
        torch.manual_seed(cfg.seed)
        hparams = {
            **cfg.model_hparams(),
            "elements": setup.elements,
            "avg_num_neighbors": round(setup.avg_num_neighbors, 4),
        }
        pot = Potential(cfg.model, hparams, setup.element_energies.tolist(), setup.energy_scale).to(device)
        optimizer = make_optimizer(pot, cfg)
        train_split, val_split = setup.packed[SplitName.TRAIN], setup.packed[SplitName.VAL]
        steps_per_epoch = math.ceil(len(train_split) / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))

        curve: list[dict[str, Any]] = []
        best_state, best_val, best_epoch, bad_epochs, first_epoch, finished = None, math.inf, 0, 0, 1, False
        if state is not None:
            pot.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            curve, best_val, best_epoch = state["curve"], state["best_val"], state["best_epoch"]
            best_state, bad_epochs = state["best_state"], state["bad_epochs"]
            first_epoch = state["epoch"] + 1
            finished = bad_epochs >= cfg.patience or state["epoch"] >= cfg.epochs  # more epochs may have been asked
            torch.set_rng_state(state["rng_cpu"])
            if "rng_cuda" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["rng_cuda"])

        for epoch in range(first_epoch, cfg.epochs + 1) if not finished else ():
            pot.train()
            order = _batch_order(len(train_split), cfg.seed, epoch).to(device)
            losses = []
            for k, start in enumerate(range(0, len(train_split), cfg.batch_size), start=1):
                b = train_split.batch(order[start : start + cfg.batch_size])
                loss = compute_loss(pot, b, cfg)
                where = f"epoch {epoch}, batch {k}"
                _check_finite(loss, "loss", where, cfg, ckpt_path, epoch - 1)
                optimizer.zero_grad(set_to_none=True)
                norm = parameter_gradients(pot, loss, cfg.grad_clip)
                _check_finite(norm, "gradient", where, cfg, ckpt_path, epoch - 1)
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                if on_progress:
                    lr = optimizer.param_groups[0]["lr"]
                    on_progress(Progress("batch", epoch, cfg.epochs, k, steps_per_epoch, losses[-1], lr, elapsed()))
                if should_stop is not None and should_stop():
                    raise TrainingCancelled(
                        f"training cancelled during epoch {epoch}; "
                        + (f"epochs 1-{epoch - 1} are saved in {ckpt_path}" if epoch > 1 else "no epoch was completed")
                    )

            pot.eval()
            monitored = val_split if len(val_split) else train_split
            err = predict(pot, monitored, cfg.eval_batch_size)
            val_loss = validation_loss(err, cfg)
            _check_finite(torch.tensor(val_loss), "validation loss", f"epoch {epoch}", cfg, ckpt_path, epoch - 1)
            metrics = summarize(err) if monitored is val_split else {"energy_mae": None, "forces_mae": None}
            if val_loss < best_val:
                best_val, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pot.model.state_dict().items()})
            else:
                bad_epochs += 1
            finished = bad_epochs >= cfg.patience or epoch == cfg.epochs
            curve.append(
                {
                    "epoch": epoch,
                    "lr": optimizer.param_groups[0]["lr"],
                    "train_loss": float(np.mean(losses)),
                    "val_energy_mae": metrics["energy_mae"],
                    "val_forces_mae": metrics["forces_mae"],
                    "seconds": round(elapsed(), 3),
                }
            )
            run.write_checkpoint(
                {
                    "version": CHECKPOINT_VERSION,
                    "config": cfg.to_dict(),
                    "epoch": epoch,
                    "model": pot.model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "curve": curve,
                    "best_state": best_state,
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "seconds": elapsed(),
                    "rng_cpu": torch.get_rng_state(),
                    **({"rng_cuda": torch.cuda.get_rng_state()} if device.type == "cuda" else {}),
                },
            )
            if on_progress:
                on_progress(
                    Progress(
                        "epoch", epoch, cfg.epochs, steps_per_epoch, steps_per_epoch, curve[-1]["train_loss"],
                        curve[-1]["lr"], elapsed(), metrics["energy_mae"], metrics["forces_mae"], best_epoch,
                    )
                )
            if finished:
                break

        if best_state is not None:
            pot.model.load_state_dict(best_state)
        pot.eval()
        last_epoch = curve[-1]["epoch"] if curve else 0
        return _finish(cfg, out_dir, pot, setup, curve, best_epoch, last_epoch, elapsed(), device)


def _check_finite(value: torch.Tensor, what: str, where: str, cfg: TrainConfig, ckpt: Path, last_good: int) -> None:
    if bool(torch.isfinite(value).all()):
        return
    kept = f"the last good checkpoint (epoch {last_good}) is kept in {ckpt}" if last_good > 0 else "no epoch finished"
    raise TrainingError(
        f"training diverged: non-finite {what} at {where} (peak learning rate {cfg.peak_lr():g}); {kept}. "
        "Try a lower --lr (or a smaller --batch-size)."
    )


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    if not path.exists():
        raise TrainingError(f"cannot resume: {path} does not exist (start the run without resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"cannot resume: {path} is not a readable checkpoint ({exc})") from exc
    if state.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(f"cannot resume: {path} has checkpoint version {state.get('version')!r}")
    free = ("device", "epochs")  # a resume may move to another device or ask for more (or fewer) epochs
    saved = {k: v for k, v in state["config"].items() if k not in free}
    wanted = {k: v for k, v in cfg.to_dict().items() if k not in free}
    changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in changed)
        raise TrainingError(f"cannot resume: the configuration differs from the checkpoint's ({diffs})")
    return state


def _finish(
    cfg: TrainConfig,
    out_dir: Path,
    pot: Potential,
    setup: _Setup,
    curve: list[dict[str, Any]],
    best_epoch: int,
    last_epoch: int,
    seconds: float,
    device: torch.device,
) -> RunMetrics:
    """Evaluate the best weights on every split and write model.pt, predictions.npz, metrics.json, summary.json."""
    errors = {name: predict(pot, setup.packed[name], cfg.eval_batch_size) for name in SPLITS}
    base = {name: baseline(setup.packed[name]) for name in SPLITS}
    run = RunDir(out_dir)
    pot.save(run.model_path)

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("mol_id", "conf_idx", "split", "E_true", "E_pred",
                                                           "E_baseline", "n_atoms", "forces_mae")}
    for name in EVAL_SPLITS:
        p, e = setup.packed[name], errors[name]
        for key, value in (
            ("mol_id", p.mol_id), ("conf_idx", p.conf_idx), ("split", np.full(len(p), name)),
            ("E_true", e.energy_true), ("E_pred", e.energy_pred), ("E_baseline", p.reference),
            ("n_atoms", p.n_atoms_host), ("forces_mae", e.forces_mae_per_conformer),
        ):
            rows[key].append(np.asarray(value))
    arrays = {k: np.concatenate(v) for k, v in rows.items()}
    arrays["mol_id"], arrays["split"] = arrays["mol_id"].astype(str), arrays["split"].astype(str)
    run.write_predictions(arrays)

    counts = setup.split.counts
    metrics = RunMetrics(
        model=cfg.model,
        n_molecules=int(counts.get("train_molecules", len({m for m, _ in setup.split.train}))),
        conformers_per_molecule=int(counts.get("conformers_per_molecule", 0)),
        seed=cfg.seed,
        device=str(device),
        seconds=round(seconds, 3),
        splits={name: SplitErrors.from_dict(summarize(errors[name])) for name in SPLITS},
        baselines={name: SplitErrors.from_dict(summarize(base[name])) for name in SPLITS},
        curve=[CurvePoint.from_dict(c) for c in curve],
    )
    run.write_metrics(metrics)
    run.write_summary(
        {
            "best_epoch": best_epoch,
            "epochs_run": last_epoch,
            "stopped_early": last_epoch < cfg.epochs,
            "elements": setup.elements,
            "energy_scale": setup.energy_scale,
            "peak_lr": cfg.peak_lr(),
            "n_parameters": sum(p.numel() for p in pot.model.parameters()),
            "excluded_unseen_elements": setup.excluded,
        },
    )
    return metrics
