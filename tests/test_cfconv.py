"""The symmetric continuous-filter convolution against plain autograd, at every order a training step uses and one more."""

from __future__ import annotations

import torch

from mlipdiv.models.cfconv import cfconv


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


def test_forward_matches_the_message_sum():
    x, w, edge_index = _graph()
    torch.testing.assert_close(cfconv(x, w, edge_index), _naive(x, w, edge_index))


def test_first_and_second_derivatives_match_finite_differences():
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


def test_higher_derivatives_match_plain_autograd():
    x, w, edge_index = _graph()
    ours = _third_order(cfconv, x, w, edge_index)
    plain = _third_order(_naive, x, w, edge_index)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)


def test_force_loss_gradient_matches_plain_autograd():
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
