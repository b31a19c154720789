"""Training throughput: conformers per second, trained on energies and forces, for every registered model.

Setting (the issue's): batch 32, hidden 128, 3 interactions, cutoff 5 angstrom, float32, AdamW, the first
``--conformers`` conformers of the dataset (all molecules, in file order), ``--steps`` timed steps after
``--warmup`` untimed ones. Contenders are timed in alternating rounds of ``--chunk`` steps and each reports its
median round, which keeps the comparison fair on a machine shared with other jobs. The comparison (schnet and the
reference) runs in rounds of its own before the other models: timed beside painn or mace, the reference inherits
the larger heap they leave behind and skips page faults that it pays in a process of its own (it measured 350-370
conformers/s there against 290-330 alone or beside schnet, on the development machine).

``reference`` is the same PyG SchNet trained the way PyG's documentation writes such a loop: a list of ``Data``
objects, ``torch_geometric.loader.DataLoader(shuffle=True)``, and a pure-torch radius graph rebuilt from the positions
at every step (pyg-lib / torch-cluster are not installable here). Ours is the training loop's own step
(:mod:`mlipdiv.training.trainer`): batches gathered from tensors packed once on the device, with each conformer's
pairs within the cutoff found once (:mod:`mlipdiv.training.data`); each SchNet filter evaluated once per pair and the
message step differentiated by hand (:mod:`mlipdiv.models.schnet`, :mod:`mlipdiv.models.cfconv`) and, on CPU, run
as compiled kernels (``message_step`` in the output says whether they were available); the loss
backpropagated to the parameters only; a fused AdamW. ``ratio`` is ours (schnet) / reference.

``reference_painn`` is the same plain loop over PaiNN (timed beside ``painn``, in the other models' rounds): the
DataLoader, the radius graph rebuilt every step, and PaiNN's original message step on PyG's ``MessagePassing``
(``PaiNN(..., pyg=True)``: per-edge messages, plain autograd). ``ratio_painn_vs_reference`` is painn / that.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any

HELP = "training throughput (conformers/s with forces) of every model vs a plain PyG DataLoader loop"


SETTINGS = ("dataset", "hidden", "interactions", "cutoff", "batch_size", "device")
"""The training settings the benchmark takes (flags and defaults from TrainConfig; batch 32 is the issue's)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mlipdiv.cli.options import add_dataclass_arguments
    from mlipdiv.training.config import TrainConfig

    parser.add_argument(
        "--steps", type=int, default=90,
        help="timed optimisation steps per model (default: 90; fewer give noisier figures)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--chunk", type=int, default=3, help="steps per contender per interleaved round (default: 3)")
    parser.add_argument("--conformers", type=int, default=1024, help="conformers to draw batches from (default: 1024)")
    add_dataclass_arguments(parser, TrainConfig, only=SETTINGS, defaults={"batch_size": 32})
    parser.add_argument("--models", nargs="+", help="models to time (default: all registered)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _pairs(dataset: Any, n: int) -> list[tuple[str, int]]:
    pairs = []
    # Round-robin over molecules so that a small n still covers many molecules.
    most = max(m.n_conformers for m in dataset)
    for j in range(most):
        for m in dataset:
            if j < m.n_conformers:
                pairs.append((m.id, j))
                if len(pairs) == n:
                    return pairs
    return pairs


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def ours(name: str, dataset: Any, pairs: list, args: argparse.Namespace, device: Any) -> Any:
    """One training step of our loop for model ``name`` (a function of the step number): the trainer's
    :func:`~mlipdiv.training.trainer.take_step` at a constant learning rate of 1e-4."""
    import numpy as np
    import torch

    from mlipdiv.training.config import TrainConfig
    from mlipdiv.training.data import pack
    from mlipdiv.training.trainer import build_potential, make_optimizer, take_step

    cfg = TrainConfig.from_flat(**{k: getattr(args, k) for k in SETTINGS}, model=name, lr=1e-4)
    torch.manual_seed(0)
    split = pack(dataset, pairs, "bench", device, cfg.model.cutoff)
    split.set_reference(np.full(len(split), float(np.mean(split.energy))))
    elements = split.elements()
    pot = build_potential(cfg.model, split, elements, [0.0] * len(elements), 1.0).to(device).train()
    opt = make_optimizer(pot, cfg)
    size = cfg.optim.batch_size
    generator = torch.Generator().manual_seed(0)
    order = torch.cat([torch.randperm(len(split), generator=generator) for _ in range(
        math.ceil((args.steps + args.warmup) * size / len(split)) + 1)]).to(device)

    def step(k: int) -> None:
        take_step(pot, opt, split.batch(order[k * size : (k + 1) * size]), cfg)

    return step


def reference(dataset: Any, pairs: list, args: argparse.Namespace, device: Any, model_name: str = "schnet") -> Any:
    """One training step of the plain PyG loop over ``model_name`` (schnet or painn; a function of the step number)."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader
    from torch_geometric.nn.models import SchNet

    from mlipdiv.models.graph import Graph
    from mlipdiv.models.painn import PaiNN

    def radius_graph(pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = torch.cdist(pos, pos)
        mask = (batch[:, None] == batch[None, :]) & (dist < args.cutoff)
        mask.fill_diagonal_(False)
        edge_index = mask.nonzero().t()
        row, col = edge_index
        return edge_index, (pos[row] - pos[col]).norm(dim=-1)

    torch.manual_seed(0)
    data = []
    for mol_id, j in pairs:
        m = dataset[mol_id]
        data.append(Data(z=torch.tensor(m.atomic_numbers), pos=torch.tensor(m.positions[j]),
                         y=torch.tensor([m.energy[j]], dtype=torch.float32), force=torch.tensor(m.forces[j])))
    mean = float(torch.cat([d.y for d in data]).mean())
    model: torch.nn.Module
    if model_name == "painn":
        model = PaiNN(args.hidden, args.interactions, args.cutoff, num_rbf=20, pyg=True)
    else:
        model = SchNet(hidden_channels=args.hidden, num_filters=args.hidden, num_interactions=args.interactions,
                       num_gaussians=50, cutoff=args.cutoff, interaction_graph=radius_graph)
    model = model.to(device).train()

    def energies(batch: Any) -> torch.Tensor:
        if model_name != "painn":
            return model(batch.z, batch.pos, batch.batch).squeeze(-1)
        edge_index, dist = radius_graph(batch.pos, batch.batch)
        src, dst = edge_index[0], edge_index[1]  # both directions: the pairs (src < dst) first, as Graph wants
        first = src < dst
        edge_index = torch.cat([edge_index[:, first], edge_index[:, first].flip(0)], dim=1)
        vec = batch.pos[edge_index[1]] - batch.pos[edge_index[0]]
        g = Graph(z=batch.z, pos=batch.pos, batch=batch.batch, num_graphs=batch.num_graphs, edge_index=edge_index,
                  vec=vec, dist=torch.linalg.vector_norm(vec, dim=-1))
        return model(g)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    batches: Iterator[Any] = iter(())  # PyG batches, refilled from the loader when it runs out

    def step(_: int) -> None:
        nonlocal batches
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        batch = batch.to(device)
        batch.pos.requires_grad_(True)
        energy = energies(batch)
        forces = -torch.autograd.grad(energy.sum(), batch.pos, create_graph=True)[0]
        n = torch.bincount(batch.batch).float()
        loss = torch.mean(((energy - (batch.y - mean)) / n) ** 2) + 100.0 * torch.mean((forces - batch.force) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    return step


def interleaved(steps: dict[str, Any], args: argparse.Namespace, device: Any) -> dict[str, float]:
    """Conformers/s of each step function: the median over rounds in which every contender runs ``args.chunk`` steps.

    Interleaving and the median make the comparison fair on a shared machine: a burst of load from another process
    slows every contender of that round, or is voted out, instead of skewing one of them.
    """
    for step in steps.values():
        for k in range(args.warmup):
            step(k)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    done = 0
    while done < args.steps:
        chunk = min(args.chunk, args.steps - done)
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for k in range(args.warmup + done, args.warmup + done + chunk):
                step(k)
            _sync(device)
            rates[name].append(chunk * args.batch_size / (time.perf_counter() - start))
        done += chunk
    return {name: statistics.median(r) for name, r in rates.items()}


def run(args: argparse.Namespace) -> int:
    import torch

    from mlipdiv.io.load import load_dataset
    from mlipdiv.models.cfconv import cpu_kernels
    from mlipdiv.models.registry import model_names
    from mlipdiv.training.trainer import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)
    pairs = _pairs(dataset, args.conformers)
    atoms = sum(dataset[m].n_atoms for m, _ in pairs) / len(pairs)
    result: dict[str, Any] = {
        "dataset": str(dataset.path),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "interactions": args.interactions,
        "cutoff": args.cutoff,
        "conformers": len(pairs),
        "mean_atoms": round(atoms, 2),
        "steps": args.steps,
        "message_step": "compiled CPU kernels" if device.type == "cpu" and cpu_kernels() else "PyTorch",
        "conformers_per_s": {},
    }
    names = args.models or model_names()
    # The comparison first, in rounds of its own (see the module docstring), then the other models.
    compared = {"schnet": ours("schnet", dataset, pairs, args, device)} if "schnet" in names else {}
    compared["reference"] = reference(dataset, pairs, args, device)
    rates = interleaved(compared, args, device)
    others = {name: ours(name, dataset, pairs, args, device) for name in names if name != "schnet"}
    if "painn" in others:
        others["reference_painn"] = reference(dataset, pairs, args, device, "painn")
    if others:
        rates.update(interleaved(others, args, device))
    ref_painn = rates.pop("reference_painn", None)
    rates = {name: rates[name] for name in [*names, "reference"]}
    ref = rates.pop("reference")
    result["conformers_per_s"] = {name: round(rate, 1) for name, rate in rates.items()}
    result["reference_schnet_conformers_per_s"] = round(ref, 1)
    if "schnet" in rates:
        result["ratio_schnet_vs_reference"] = round(rates["schnet"] / ref, 2)
    if ref_painn is not None:
        result["reference_painn_conformers_per_s"] = round(ref_painn, 1)
        result["ratio_painn_vs_reference"] = round(rates["painn"] / ref_painn, 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, rate in result["conformers_per_s"].items():
            print(f"{name:<10} {rate:>9.1f} conformers/s")
        print(f"{'reference':<10} {ref:>9.1f} conformers/s (PyG DataLoader + SchNet, graph rebuilt every step)")
        if "ratio_schnet_vs_reference" in result:
            print(f"ratio      {result['ratio_schnet_vs_reference']:>9.2f} x (schnet / reference)")
        if ref_painn is not None:
            print(f"{'ref painn':<10} {ref_painn:>9.1f} conformers/s (PyG DataLoader + PaiNN on MessagePassing)")
            print(f"ratio      {result['ratio_painn_vs_reference']:>9.2f} x (painn / ref painn)")
        print(f"({result['device']}, {result['threads']} threads, batch {args.batch_size}, hidden {args.hidden}, "
              f"{args.interactions} interactions, cutoff {args.cutoff} A, {atoms:.1f} atoms per conformer, "
              f"message step: {result['message_step']})")
    return 0
