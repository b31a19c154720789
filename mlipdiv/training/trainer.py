"""The training loop: split -> packed device tensors -> reference fit -> AdamW on energies and forces -> metrics.

In parts, as MACE's ``tools/train.py`` has them: :func:`prepare` (data, model, optimiser, schedule),
:func:`take_step` (one optimiser step; the benchmark times this one), :func:`train_one_epoch`, :func:`evaluate`,
and a :class:`Checkpoint` (what is saved and restored); :func:`train` runs them, and every file goes through the run
folder's owner, :class:`mlipdiv.io.rundir.RunDir` (:func:`write_outputs` builds the typed
:class:`~mlipdiv.io.metrics.RunMetrics`).

Files written in ``out_dir`` through :class:`mlipdiv.io.rundir.RunDir` (atomic, so readers never see a torn file):

- ``config.json``: the :class:`TrainConfig`.
- ``split.json``: the training / val / test pairs (:meth:`mlipdiv.selection.Split.save`).
- ``checkpoint.pt``: at the end of every epoch, everything :func:`train` needs to resume (``resume=True``).
- ``model.pt``: the best weights (lowest validation loss) with hyperparameters, element reference energies and
  supported elements, as plain tensors and numbers (``torch.load(path, weights_only=True)``;
  :meth:`mlipdiv.models.Potential.load`).
- ``predictions.npz``: per conformer of ``val``, ``test_conformers``, ``test_molecules``: ``mol_id``, ``conf_idx``,
  ``split``, ``E_true``, ``E_pred``, ``E_baseline`` (eV), ``n_atoms``, ``forces_mae`` (eV/angstrom).
- ``metrics.json``: ``model``, ``n_molecules``, ``conformers_per_molecule``, ``seed``, ``device``, ``seconds``,
  ``splits`` and ``baselines`` (per split, keys of :mod:`mlipdiv.training.metrics`), ``curve`` (per epoch: ``epoch``,
  ``lr``, ``train_loss``, ``val_energy_mae``, ``val_forces_mae``, ``seconds``).
- ``summary.json``: what else a reader may want (best epoch, whether it stopped early, supported elements,
  conformers left out of evaluation because they hold elements the training set lacks).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlipdiv.errors import MlipdivError, TrainingCancelled, TrainingError
from mlipdiv.io.atomic import atomic_torch_save
from mlipdiv.io.metrics import CurvePoint, RunMetrics, SplitErrors, forces_converged
from mlipdiv.io.rundir import RunDir
from mlipdiv.models.potential import Potential
from mlipdiv.names import EVAL_SPLITS, SPLITS, SplitName  # re-exported: the split names, defined once
from mlipdiv.selection.splits import Split
from mlipdiv.training.config import ModelConfig, TrainConfig
from mlipdiv.training.data import Batch, PackedSplit, pack
from mlipdiv.training.metrics import ConformerErrors, summarize
from mlipdiv.training.reference import (
    composition,
    fit_element_energies,
    level_prior,
    predictable,
    training_elements,
)

CHECKPOINT_VERSION = 2  # 2: counts steps (runs of --steps, validation inside epochs)


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``event`` is ``"batch"`` (after every optimisation step; ``loss`` is that batch's loss) or ``"epoch"`` (after a
    validation -- at the end of an epoch, or every ``eval_every`` steps; ``loss`` is the mean training loss since the
    previous one and ``val_*`` are set). ``epoch``, ``batch`` and ``step`` count from 1 (``batch`` within the epoch,
    ``step`` over the run, of ``steps``); ``seconds`` is the wall time of the run so far (across resumes). Energies
    in eV per molecule, forces in eV/angstrom.
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
    step: int = 0
    steps: int = 0


ProgressCallback = Callable[[Progress], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MlipdivError("--device cuda requested but no CUDA GPU is available to torch; use --device cpu or auto")
    return torch.device(name)


# --------------------------------------------------------------------------------------------- loss and evaluation


def compute_loss(pot: Potential, b: Batch, cfg: TrainConfig) -> torch.Tensor:
    """``w_E * MSE(E / n_atoms) + w_F * MSE(F)`` on one batch, with the graph kept for the backward pass."""
    energy, forces = pot.residual_and_forces(
        b.z, b.pos, b.batch, b.num_graphs, b.pairs, create_graph=True, within_cutoff=True
    )
    energy_term = torch.mean(((energy - b.residual) / b.n_atoms) ** 2)
    forces_term = torch.mean((forces - b.forces) ** 2)
    return cfg.optim.energy_weight * energy_term + cfg.optim.forces_weight * forces_term


def make_optimizer(pot: Potential, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, as one fused kernel per step on the CPU and CUDA (the same update as the per-parameter loop)."""
    fused = pot.element_energy.device.type in ("cpu", "cuda")
    return torch.optim.AdamW(pot.parameters(), lr=cfg.peak_lr(), weight_decay=cfg.optim.weight_decay, fused=fused)


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
    reference = split.reference
    assert reference is not None, "set_reference() first"
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
        energy_pred=cat(e_pred) + reference,
        n_atoms=split.n_atoms_host,
        force_abs_sum=cat(abs_sum),
        force_sq_sum=cat(sq_sum),
        molecule=split.mol_id,
    )


def baseline(split: PackedSplit) -> ConformerErrors:
    """The model that learns nothing geometric: element-linear energy, zero forces."""
    assert split.reference is not None, "set_reference() first"
    f = split.forces.to(torch.float64)
    per_graph = torch.zeros(len(split), 2, dtype=torch.float64, device=f.device)
    graph = torch.repeat_interleave(torch.arange(len(split), device=f.device), split.n_atoms)
    per_graph.index_add_(0, graph, torch.stack([f.abs().sum(1), (f**2).sum(1)], dim=1))
    abs_sum, sq_sum = per_graph.cpu().numpy().T
    return ConformerErrors(split.energy, split.reference, split.n_atoms_host, abs_sum, sq_sum, molecule=split.mol_id)


def validation_loss(err: ConformerErrors, cfg: TrainConfig) -> float:
    """The training loss evaluated on a split (mean over conformers / force components)."""
    if len(err.energy_true) == 0:
        return math.nan
    e = np.mean(((err.energy_pred - err.energy_true) / err.n_atoms) ** 2)
    f = np.sum(err.force_sq_sum) / (3.0 * np.sum(err.n_atoms))
    return float(cfg.optim.energy_weight * e + cfg.optim.forces_weight * f)


# -------------------------------------------------------------------------------------------------- schedules


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of the run: ``steps`` when set (whatever the training-set size), else ``epochs`` epochs."""
    return int(cfg.optim.steps) if cfg.optim.steps else cfg.optim.epochs * steps_per_epoch


def eval_interval(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps between validations: ``eval_every``, else about 25 per run (a one-epoch demo run still draws a
    curve), and for a run counted in epochs at least one per epoch (:func:`validates_epoch_ends`)."""
    if cfg.optim.eval_every:
        return int(cfg.optim.eval_every)
    every = max(1, total_steps(cfg, steps_per_epoch) // 25)
    return min(steps_per_epoch, every) if validates_epoch_ends(cfg) else every


def validates_epoch_ends(cfg: TrainConfig) -> bool:
    """A run counted in epochs (no ``steps``, no ``eval_every``) also validates at every epoch's end, as it always
    did; a run of ``steps`` validates on its own cadence (a tiny training set would otherwise validate every few
    steps)."""
    return not cfg.optim.steps and not cfg.optim.eval_every


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to ``final_lr_ratio`` at the last step
    (:func:`total_steps`)."""
    o = cfg.optim
    warm = max(1, round(o.warmup_epochs * steps_per_epoch))
    total = max(warm + 1, total_steps(cfg, steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / (total - warm))
    return o.final_lr_ratio + (1.0 - o.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


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


def avg_neighbors(split: PackedSplit) -> float:
    """Mean number of neighbours within the cutoff per atom (MACE normalises its messages by it)."""
    return max(1.0, 2.0 * split.edges.shape[1] / max(1, split.z.numel()))


def build_potential(
    model: ModelConfig, train: PackedSplit, elements: list[int], element_energies: list[float], energy_scale: float
) -> Potential:
    """The untrained ``model`` for the training data ``train`` (on the CPU, drawn from torch's global generator:
    seed it first). The hyperparameters hold the elements and the mean neighbour count, so ``model.pt`` rebuilds it."""
    hparams = {**model.hparams(), "elements": elements, "avg_num_neighbors": round(avg_neighbors(train), 4)}
    return Potential(model.name, hparams, element_energies, energy_scale)


def make_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of every step (:func:`lr_factor` x the peak), stepped once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))


@dataclass
class Setup:
    """What :func:`prepare` builds for a run: the split and its packed data, the element references, and the model
    with its optimiser and learning-rate schedule, on ``device``."""

    split: Split
    packed: dict[str, PackedSplit]
    excluded: dict[str, int]
    elements: list[int]
    element_energies: np.ndarray
    energy_scale: float
    device: torch.device
    pot: Potential
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    steps_per_epoch: int

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"])


def require_forces(dataset: Any) -> None:
    """Refuse a dataset imported without forces: every model here trains on energies and forces."""
    if not dataset.has_forces:
        name = dataset.path.name if dataset.path is not None else "the dataset"
        raise TrainingError(f"{name} has no forces (imported from a source without them): training needs energies "
                            "and forces; it can still be explored (info, split, the Dataset and Embeddings pages)")


def prepare(cfg: TrainConfig, device: torch.device, dataset: Any = None) -> Setup:
    """Data, model, optimiser and schedule of ``cfg``.

    The split is made from the data each time (the same one for a seed, so a resume trains on what the run started
    on); every split is packed on ``device`` without the conformers holding elements the training set lacks (the
    model has no embedding for them); the element-linear reference energies are fitted on the training set; the
    model's initial weights come from ``cfg.seed``.
    """
    from mlipdiv.io.load import load_dataset
    from mlipdiv.selection import make_split

    dataset = dataset if dataset is not None else load_dataset(cfg.dataset)
    require_forces(dataset)
    split = make_split(dataset, cfg.split, diversity=False)
    elements = training_elements(dataset, split.train)
    excluded: dict[str, int] = {}
    packed: dict[str, PackedSplit] = {}
    left_out_by_split = {SplitName.TEST_CONFORMERS: split.counts.get("rigid_test_conformers", 0),
                         SplitName.TEST_MOLECULES: split.counts.get("test_molecules_excluded", 0)}
    for name in SPLITS:
        pairs = getattr(split, name)
        keep = predictable(dataset, pairs, elements)
        excluded[name] = len(pairs) - len(keep) + int(left_out_by_split.get(name, 0))
        packed[name] = pack(dataset, keep, name, device, cfg.model.cutoff)
    train = packed[SplitName.TRAIN]
    prior = element_prior(cfg, dataset.attrs, elements)
    energies = fit_element_energies(composition(train.atom_z_host, elements), train.energy, prior)
    for p in packed.values():
        p.set_reference(composition(p.atom_z_host, elements) @ energies if len(p) else np.zeros(0))
    forces_rms = float(torch.sqrt(torch.mean(train.forces.double() ** 2)))
    energy_scale = forces_rms if forces_rms > 0 else 1.0

    torch.manual_seed(cfg.seed)
    pot = build_potential(cfg.model, train, elements, energies.tolist(), energy_scale).to(device)
    optimizer = make_optimizer(pot, cfg)
    steps_per_epoch = math.ceil(len(train) / cfg.optim.batch_size)
    return Setup(
        split=split,
        packed=packed,
        excluded=excluded,
        elements=elements,
        element_energies=energies,
        energy_scale=energy_scale,
        device=device,
        pot=pot,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, steps_per_epoch, cfg),
        steps_per_epoch=steps_per_epoch,
    )


def element_prior(cfg: TrainConfig, attrs: Mapping[str, Any], elements: list[int]) -> np.ndarray | None:
    """The prior of the element reference energies for ``cfg.optim.element_prior``
    (:func:`~mlipdiv.training.reference.level_prior`)."""
    return level_prior(cfg.optim.element_prior, attrs, elements)


# -------------------------------------------------------------------------------------------- step, epoch, eval


class Diverged(TrainingError):
    """A non-finite loss, gradient norm or validation loss (``what``, at ``where``)."""

    def __init__(self, what: str, where: str = "") -> None:
        self.what, self.where = what, where
        super().__init__(f"non-finite {what}" + (f" at {where}" if where else ""))


@dataclass(frozen=True)
class StepResult:
    """One optimiser step: the batch's loss and the gradient norm before clipping (tensors, so reading them, a
    device sync, is the caller's choice)."""

    loss: torch.Tensor
    grad_norm: torch.Tensor


def take_step(
    pot: Potential,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    cfg: TrainConfig,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> StepResult:
    """One optimiser step on one batch: the loss (:func:`compute_loss`), the parameters' gradients clipped to
    ``grad_clip``, the AdamW update and, with ``scheduler``, the next learning rate.

    Raises:
        Diverged: the loss or the gradient norm is not finite; raised before the update, so the weights stay good.
    """
    loss = compute_loss(pot, batch, cfg)
    if not bool(torch.isfinite(loss).all()):
        raise Diverged("loss")
    optimizer.zero_grad(set_to_none=True)
    norm = parameter_gradients(pot, loss, cfg.optim.grad_clip)
    if not bool(torch.isfinite(norm).all()):
        raise Diverged("gradient")
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return StepResult(loss.detach(), norm)


def train_one_epoch(
    setup: Setup,
    cfg: TrainConfig,
    epoch: int,
    after_batch: Callable[[int, float], None] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> float:
    """Batches ``start + 1`` .. ``stop`` (default: all) of epoch ``epoch`` (from 1), the training set in its seeded
    order; returns the mean batch loss. A run of ``steps`` steps ends inside an epoch, and a resumed one may start
    inside one: the epoch's order depends only on (seed, epoch), so the batches are the same either way.

    ``after_batch(k, loss)`` runs after batch ``k`` (from 1); it may raise to stop the epoch (cancellation).

    Raises:
        Diverged: a step's loss or gradient is not finite (``where`` names epoch and batch).
    """
    train, size = setup.packed[SplitName.TRAIN], cfg.optim.batch_size
    setup.pot.train()
    order = _batch_order(len(train), cfg.seed, epoch).to(setup.device)
    starts = list(range(0, len(train), size))[start:stop]
    losses = []
    for k, first in enumerate(starts, start=start + 1):
        b = train.batch(order[first : first + size])
        try:
            step = take_step(setup.pot, setup.optimizer, b, cfg, setup.scheduler)
        except Diverged as exc:
            raise Diverged(exc.what, f"epoch {epoch}, batch {k}") from None
        losses.append(step.loss.item())
        if after_batch is not None:
            after_batch(k, losses[-1])
    return float(np.mean(losses)) if losses else math.nan


@dataclass(frozen=True)
class Evaluation:
    """Validation after an epoch: the loss early stopping watches and the val errors (None without val conformers)."""

    loss: float
    energy_mae: float | None
    forces_mae: float | None


def evaluate(setup: Setup, cfg: TrainConfig) -> Evaluation:
    """The training loss on the val set in eval mode; on the training set when val is empty (early stopping still
    needs a signal, but training errors are not reported as validation errors)."""
    val, train = setup.packed[SplitName.VAL], setup.packed[SplitName.TRAIN]
    setup.pot.eval()
    monitored = val if len(val) else train
    err = predict(setup.pot, monitored, cfg.eval_batch_size)
    metrics = summarize(err) if monitored is val else {"energy_mae": None, "forces_mae": None}
    return Evaluation(validation_loss(err, cfg), metrics["energy_mae"], metrics["forces_mae"])


def evaluate_splits(
    setup: Setup, cfg: TrainConfig
) -> tuple[dict[SplitName, ConformerErrors], dict[SplitName, ConformerErrors]]:
    """The model's errors and the baseline's (:func:`baseline`) on every split, for the run's outputs."""
    errors = {name: predict(setup.pot, setup.packed[name], cfg.eval_batch_size) for name in SPLITS}
    return errors, {name: baseline(setup.packed[name]) for name in SPLITS}


# ------------------------------------------------------------------------------------------------- checkpoint


@dataclass
class TrainState:
    """Where the loop is: optimiser steps done (``step``; the epoch follows from it), the learning curve, the
    validation history and early stopping's bookkeeping (the best validation loss, its step, epoch and weights,
    validations since)."""

    step: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val: float = math.inf
    best_step: int = 0
    best_epoch: int = 0
    bad_evals: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss) of every validation

    def epoch(self, steps_per_epoch: int) -> int:
        """Epochs begun (a run of ``steps`` steps may end inside one)."""
        return math.ceil(self.step / steps_per_epoch)

    def finished(self, cfg: TrainConfig, total: int) -> bool:
        """Stopped early (``patience`` > 0 validations without improvement), or all ``total`` steps are done (a
        resume may ask for more; one that had stopped early stays stopped)."""
        return (cfg.optim.patience > 0 and self.bad_evals >= cfg.optim.patience) or self.step >= total

    def record(self, step: int, epoch: int, val_loss: float, pot: Potential) -> None:
        """A validation at ``step`` gave ``val_loss``: keep the weights when they are the best so far."""
        self.history.append((step, val_loss))
        if val_loss < self.best_val:
            self.best_val, self.best_step, self.best_epoch, self.bad_evals = val_loss, step, epoch, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in pot.model.state_dict().items()})
        else:
            self.bad_evals += 1


@dataclass
class Checkpoint:
    """Everything a run needs to continue where it stopped, as ``checkpoint.pt`` holds it (written after every
    validation): the configuration, the loop's :class:`TrainState`, the model's, optimiser's and schedule's states,
    the wall time so far and the random generators' states."""

    config: dict[str, Any]
    state: TrainState
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    seconds: float
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None = None

    FREE = ("device", "epochs", "steps")
    """Settings a resume may change: move to another device, ask for more (or fewer) epochs or steps."""

    @classmethod
    def capture(cls, cfg: TrainConfig, state: TrainState, setup: Setup, seconds: float) -> Checkpoint:
        """The run now (the states are the live ones: save it before the next step)."""
        return cls(
            config=cfg.to_dict(),
            state=state,
            model=setup.pot.model.state_dict(),
            optimizer=setup.optimizer.state_dict(),
            scheduler=setup.scheduler.state_dict(),
            seconds=seconds,
            rng_cpu=torch.get_rng_state(),
            rng_cuda=torch.cuda.get_rng_state() if setup.device.type == "cuda" else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The saved form (version :data:`CHECKPOINT_VERSION`: plain tensors, numbers and lists)."""
        s = self.state
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config,
            "step": s.step,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "curve": s.curve,
            "best_state": s.best_state,
            "best_val": s.best_val,
            "best_step": s.best_step,
            "best_epoch": s.best_epoch,
            "bad_evals": s.bad_evals,
            "history": [list(h) for h in s.history],
            "seconds": self.seconds,
            "rng_cpu": self.rng_cpu,
            **({"rng_cuda": self.rng_cuda} if self.rng_cuda is not None else {}),
        }

    def save(self, path: Path) -> None:
        atomic_torch_save(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, cfg: TrainConfig) -> Checkpoint:
        """The checkpoint at ``path``, checked to be one ``cfg`` can continue (same settings but :attr:`FREE`).

        Raises:
            TrainingError: missing, unreadable, another version, or another configuration (naming what changed).
        """
        if not path.exists():
            raise TrainingError(f"cannot resume: {path} does not exist (start the run without resume)")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise TrainingError(f"cannot resume: {path} is not a readable checkpoint ({exc})") from exc
        if d.get("version") != CHECKPOINT_VERSION:
            raise TrainingError(f"cannot resume: {path} has checkpoint version {d.get('version')!r}")
        saved = {k: v for k, v in d["config"].items() if k not in cls.FREE}
        wanted = {k: v for k, v in cfg.to_dict().items() if k not in cls.FREE}
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in changed)
            raise TrainingError(f"cannot resume: the configuration differs from the checkpoint's ({diffs})")
        state = TrainState(d["step"], d["curve"], d["best_state"], d["best_val"], d["best_step"], d["best_epoch"],
                           d["bad_evals"], [(int(a), float(b)) for a, b in d["history"]])
        return cls(d["config"], state, d["model"], d["optimizer"], d["scheduler"], d["seconds"], d["rng_cpu"],
                   d.get("rng_cuda"))

    def restore(self, setup: Setup) -> TrainState:
        """Put the saved states into ``setup``'s model, optimiser and schedule and the random generators; returns
        the loop's state to continue from."""
        setup.pot.model.load_state_dict(self.model)
        setup.optimizer.load_state_dict(self.optimizer)
        setup.scheduler.load_state_dict(self.scheduler)
        torch.set_rng_state(self.rng_cpu)
        if self.rng_cuda is not None and setup.device.type == "cuda":
            torch.cuda.set_rng_state(self.rng_cuda)
        return self.state


# ---------------------------------------------------------------------------------------------------- training


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the ``metrics.json`` dictionary.

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
    run = RunDir(out_dir)
    with run.lock():
        return _train(cfg, run, on_progress, should_stop, resume).to_dict()


class _Clock:
    """Wall time of the run: ``before`` (earlier sessions of a resumed run) plus the time since this one started."""

    def __init__(self, before: float) -> None:
        self.before, self.started = before, time.perf_counter()

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.started


def _train(
    cfg: TrainConfig,
    run: RunDir,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    resume: bool,
) -> RunMetrics:
    from mlipdiv.io.load import load_dataset

    dataset = load_dataset(cfg.dataset)
    require_forces(dataset)  # before the folder is touched: a dataset that cannot train leaves it as it was
    saved = Checkpoint.load(run.checkpoint_path, cfg) if resume else None
    if saved is None:  # a fresh start: results of an earlier run in this folder must not pass for this one's
        run.clear_training_outputs()
    device = resolve_device(cfg.device)
    run.write_config(cfg.to_dict())
    clock = _Clock(saved.seconds if saved is not None else 0.0)
    with _deterministic(device):
        setup = prepare(cfg, device, dataset)
        run.write_split(setup.split.to_json())
        state = saved.restore(setup) if saved is not None else TrainState()
        total = total_steps(cfg, setup.steps_per_epoch)
        try:
            while not state.finished(cfg, total):
                _train_until_validation(cfg, setup, state, run, clock, on_progress, should_stop, total)
        except Diverged as exc:
            raise _diverged(exc, cfg, run.checkpoint_path, state.history[-1][0] if state.history else 0) from None
        except TrainingCancelled as exc:
            # what the run had reached is still worth seeing: its best weights, scored (nothing is written, so the
            # folder stays a resumable, unfinished run)
            if state.best_state is not None:
                setup.pot.model.load_state_dict(state.best_state)
                setup.pot.eval()
                errors, baselines = evaluate_splits(setup, cfg)
                exc.metrics = run_metrics(cfg, setup, state, errors, baselines, clock()).to_dict()
            raise
        if state.best_state is not None:
            setup.pot.model.load_state_dict(state.best_state)
        setup.pot.eval()
        seconds = clock()
        errors, baselines = evaluate_splits(setup, cfg)
        return write_outputs(run, cfg, setup, state, errors, baselines, seconds)


def _train_until_validation(
    cfg: TrainConfig,
    setup: Setup,
    state: TrainState,
    run: RunDir,
    clock: _Clock,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
    total: int,
) -> None:
    """Steps up to the next validation (every :func:`eval_interval` steps, at every epoch's end and at the last
    step), then validate, record, checkpoint, report."""
    spe, every = setup.steps_per_epoch, eval_interval(cfg, setup.steps_per_epoch)
    epochs = math.ceil(total / spe)
    target = min(total, (state.step // every + 1) * every)
    losses: list[float] = []
    while state.step < target:
        epoch, done_in_epoch = state.step // spe + 1, state.step % spe
        stop_at = min(spe, done_in_epoch + target - state.step)

        def after_batch(k: int, loss: float, epoch: int = epoch) -> None:
            state.step += 1
            if on_progress:
                on_progress(Progress("batch", epoch, epochs, k, spe, loss, setup.lr, clock(), step=state.step,
                                     steps=total))
            if should_stop is not None and should_stop():
                saved = "no validation was reached"
                if state.history:
                    saved = f"steps 1-{state.history[-1][0]} are saved in {run.checkpoint_path}"
                raise TrainingCancelled(f"training cancelled at step {state.step} (epoch {epoch}); " + saved)

        loss = train_one_epoch(setup, cfg, epoch, after_batch, start=done_in_epoch, stop=stop_at)
        losses.append(loss)
        if state.step % spe == 0 and validates_epoch_ends(cfg):
            target = state.step
    epoch = state.epoch(spe)
    train_loss = float(np.mean(losses))
    ev = evaluate(setup, cfg)
    if not math.isfinite(ev.loss):
        raise Diverged("validation loss", f"step {state.step} (epoch {epoch})")
    state.record(state.step, epoch, ev.loss, setup.pot)
    state.curve.append(
        {
            "step": state.step,
            "epoch": epoch,
            "lr": setup.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_energy_mae": ev.energy_mae,
            "val_forces_mae": ev.forces_mae,
            "seconds": round(clock(), 3),
        }
    )
    Checkpoint.capture(cfg, state, setup, clock()).save(run.checkpoint_path)
    if on_progress:
        on_progress(Progress("epoch", epoch, epochs, state.step - (epoch - 1) * spe, spe, train_loss,
                             state.curve[-1]["lr"], clock(), ev.energy_mae, ev.forces_mae, state.best_epoch,
                             step=state.step, steps=total))


def _diverged(exc: Diverged, cfg: TrainConfig, ckpt: Path, reached: int) -> TrainingError:
    kept = f"the last good checkpoint (step {reached}) is kept in {ckpt}" if reached > 0 else "no step was saved"
    return TrainingError(
        f"training diverged: non-finite {exc.what} at {exc.where} (peak learning rate {cfg.peak_lr():g}); {kept}. "
        "Try a lower --lr (or a smaller --batch-size)."
    )


# ----------------------------------------------------------------------------------------------- run folder


def run_metrics(
    cfg: TrainConfig,
    setup: Setup,
    state: TrainState,
    errors: Mapping[SplitName, ConformerErrors],
    baselines: Mapping[SplitName, ConformerErrors],
    seconds: float,
) -> RunMetrics:
    """The typed ``metrics.json`` of the weights ``setup.pot`` holds (errors scored by :func:`evaluate_splits`)."""
    counts = setup.split.counts
    curve = [CurvePoint.from_dict(c) for c in state.curve]
    return RunMetrics(
        model=cfg.model.name,
        n_molecules=int(counts.get("train_molecules", len({m for m, _ in setup.split.train}))),
        conformers_per_molecule=int(counts.get("conformers_per_molecule", 0)),
        seed=cfg.seed,
        device=str(setup.device),
        seconds=round(seconds, 3),
        splits={name: SplitErrors.from_dict(summarize(errors[name])) for name in SPLITS},
        baselines={name: SplitErrors.from_dict(summarize(baselines[name])) for name in SPLITS},
        curve=curve,
        steps_run=state.step,
        epochs_run=state.epoch(setup.steps_per_epoch),
        best_step=state.best_step,
        best_epoch=state.best_epoch,
        converged=forces_converged(curve, state.step, cfg.optim.converge_tol),
        excluded={str(k): int(v) for k, v in setup.excluded.items()},
    )


def write_outputs(
    run: RunDir,
    cfg: TrainConfig,
    setup: Setup,
    state: TrainState,
    errors: Mapping[SplitName, ConformerErrors],
    baselines: Mapping[SplitName, ConformerErrors],
    seconds: float,
) -> RunMetrics:
    """model.pt (the weights ``setup.pot`` holds), predictions.npz, metrics.json and summary.json; returns the
    metrics."""
    setup.pot.save(run.model_path)

    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("mol_id", "conf_idx", "split", "E_true", "E_pred",
                                                           "E_baseline", "n_atoms", "forces_mae")}
    for name in EVAL_SPLITS:
        p, e = setup.packed[name], errors[name]
        for key, value in (
            ("mol_id", p.mol_id), ("conf_idx", p.conf_idx), ("split", np.full(len(p), str(name))),
            ("E_true", e.energy_true), ("E_pred", e.energy_pred), ("E_baseline", p.reference),
            ("n_atoms", p.n_atoms_host), ("forces_mae", e.forces_mae_per_conformer),
        ):
            rows[key].append(np.asarray(value))
    arrays = {k: np.concatenate(v) for k, v in rows.items()}
    arrays["mol_id"], arrays["split"] = arrays["mol_id"].astype(str), arrays["split"].astype(str)
    run.write_predictions(arrays)

    metrics = run_metrics(cfg, setup, state, errors, baselines, seconds)
    run.write_metrics(metrics)
    run.write_summary(
        {
            "best_epoch": state.best_epoch,
            "best_step": state.best_step,
            "epochs_run": state.epoch(setup.steps_per_epoch),
            "steps_run": state.step,
            "stopped_early": state.step < total_steps(cfg, setup.steps_per_epoch),
            "elements": setup.elements,
            "energy_scale": setup.energy_scale,
            "peak_lr": cfg.peak_lr(),
            "n_parameters": sum(p.numel() for p in setup.pot.model.parameters()),
            "excluded_unseen_elements": setup.excluded,
        },
    )
    return metrics
