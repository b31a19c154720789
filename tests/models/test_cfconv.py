"""The symmetric continuous-filter convolution against plain autograd, at every order a training step uses and one more.

The checks that take ``path`` run twice: with the compiled CPU kernels and with the plain-PyTorch path they replace.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mlipdiv.models import cfconv as cfconv_module
from mlipdiv.models.cfconv import cfconv
from mlipdiv.paths import PROJECT_ROOT


@pytest.fixture(params=["kernel", "pytorch"])
def path(request, monkeypatch):
    """Runs a test on each path (tests that ask for it)."""
    if request.param == "kernel":
        assert cfconv_module.cpu_kernels(), "the CPU kernels did not build: is a C++ compiler (g++) installed?"
    else:
        monkeypatch.setattr(cfconv_module, "cpu_kernels", lambda: False)
    return request.param


def _graph(n_atoms: int = 7, n_pairs: int = 12, width: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(n_atoms, n_atoms, offset=1)
    keep = torch.randperm(i.numel(), generator=g)[:n_pairs]
    a, b = i[keep], j[keep]
    edge_index = torch.stack([torch.cat([a, b]), torch.cat([b, a])])
    x = torch.randn(n_atoms, width, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n_pairs, width, generator=g, dtype=torch.float64, requires_grad=True)
    return x, w, edge_index


def _naive(x: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    src, dst = edge_index
    messages = x[src] * torch.cat([w, w])
    return torch.zeros_like(x).index_add(0, dst, messages)


def test_forward_matches_the_message_sum(path):
    x, w, edge_index = _graph()
    torch.testing.assert_close(cfconv(x, w, edge_index), _naive(x, w, edge_index))


def test_first_and_second_derivatives_match_finite_differences(path):
    x, w, edge_index = _graph(n_atoms=5, n_pairs=6, width=2)
    f = lambda x, w: cfconv(x, w, edge_index)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w))


def _third_order(conv, x, w, edge_index):
    """A force-training pattern, one order deeper: d/dx of |d/dw |d/dx L|^2|, with L a nonlinear readout."""
    out = conv(x, w, edge_index)
    loss = (torch.tanh(out) * torch.arange(1.0, out.shape[1] + 1, dtype=out.dtype)).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    (gw,) = torch.autograd.grad((gx**2).sum(), w, create_graph=True)
    return torch.autograd.grad((gw**2).sum(), (x, w))


def test_higher_derivatives_match_plain_autograd(path):
    x, w, edge_index = _graph()
    ours = _third_order(cfconv, x, w, edge_index)
    plain = _third_order(_naive, x, w, edge_index)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)


def test_force_loss_gradient_matches_plain_autograd(path):
    """The training step: forces (create_graph), then the loss gradient with respect to the filters only."""

    def step(conv):
        x, w, edge_index = _graph(seed=3)
        pos = torch.linspace(0.5, 1.5, x.shape[0], dtype=torch.float64).unsqueeze(1).requires_grad_(True)
        energy = torch.sigmoid(conv(x * pos, w, edge_index)).sum()
        (grad,) = torch.autograd.grad(energy, pos, create_graph=True)
        loss = ((grad - 1.0) ** 2).sum() + energy
        return torch.autograd.grad(loss, (x, w))

    for a, b in zip(step(cfconv), step(_naive)):
        torch.testing.assert_close(a, b)


def _training_graph(n_molecules: int = 6, atoms: int = 9, width: int = 32, seed: int = 1):
    """Molecule-like float32 data: all pairs inside each molecule, as a training batch has them."""
    g = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(atoms, atoms, offset=1)
    a = torch.cat([i + atoms * m for m in range(n_molecules)])
    b = torch.cat([j + atoms * m for m in range(n_molecules)])
    x = torch.randn(atoms * n_molecules, width, generator=g)
    w = torch.randn(a.numel(), width, generator=g)
    return x, w, torch.stack([torch.cat([a, b]), torch.cat([b, a])])


def test_float32_batch_matches_plain_autograd(path):
    x, w, edge_index = _training_graph()
    torch.testing.assert_close(cfconv(x, w, edge_index), _naive(x, w, edge_index), rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_the_thread_count(path):
    x, w, edge_index = _training_graph()
    x.requires_grad_(True), w.requires_grad_(True)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = cfconv(x, w, edge_index)
            results.append([out, *torch.autograd.grad(torch.tanh(out).sum(), (x, w))])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_kernels_refuse_out_of_range_pairs():
    assert cfconv_module.cpu_kernels()
    x = torch.randn(4, 3)
    a, b = torch.tensor([0, 1]), torch.tensor([2, 4])
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_cfconv.conv(x, torch.randn(2, 3), a, b)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_cfconv.pair(x, x, a, b)


def test_without_a_compiler_the_pytorch_path_runs_with_a_warning(tmp_path):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path), "CXX": str(tmp_path / "no-such-c++")}
    code = "from mlipdiv.models import cfconv; print(cfconv.cpu_kernels())"
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert "CPU kernels unavailable" in done.stderr and "Install a C++ compiler" in done.stderr
    assert not list(tmp_path.glob("mlipdiv/*.so"))


def test_a_batch_without_pairs_gives_zeros(path):
    """Isolated atoms (or a cutoff shorter than every distance) leave no pairs at all."""
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.zeros(0, 4, requires_grad=True)
    out = cfconv(x, w, torch.zeros(2, 0, dtype=torch.long))
    (gx, gw) = torch.autograd.grad(out.sum(), (x, w), allow_unused=True)
    assert torch.equal(out, torch.zeros(3, 4)) and torch.equal(gx, torch.zeros(3, 4)) and gw.shape == (0, 4)


def test_a_header_change_rebuilds_every_kernel_library(tmp_path):
    """The sources include kernel_checks.h: the build key must follow it, or an edited check would load a stale
    library built from the old header."""
    from mlipdiv.models.kernels import build_key

    source, header = tmp_path / "k.cpp", tmp_path / "kernel_checks.h"
    source.write_text('#include "kernel_checks.h"\n')
    header.write_text("// v1\n")
    first = build_key(source)
    assert build_key(source) == first
    header.write_text("// v2\n")
    second = build_key(source)
    assert second != first
    source.write_text('#include "kernel_checks.h"\n// edited\n')
    assert build_key(source) not in (first, second)
