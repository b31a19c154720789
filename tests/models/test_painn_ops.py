"""PaiNN's message step (signed convolutions) against plain autograd, at every order a training step uses and one more,
and the whole model against its PyG reference (``PaiNN(..., pyg=True)``, the original per-edge message step).

The checks that take ``path`` run twice: with the compiled CPU kernels and with the plain-PyTorch path they replace.
"""

from __future__ import annotations

import pytest
import torch

from mlipdiv.models import painn_ops
from mlipdiv.models.graph import build_graph, candidate_pairs
from mlipdiv.models.painn import PaiNN
from mlipdiv.models.painn_ops import signed_conv


@pytest.fixture(params=["kernel", "pytorch"])
def path(request, monkeypatch):
    """Runs a test on each path (tests that ask for it)."""
    if request.param == "kernel":
        assert painn_ops.cpu_kernels(), "the CPU kernels did not build: is a C++ compiler (g++) installed?"
    else:
        monkeypatch.setattr(painn_ops, "cpu_kernels", lambda: False)
    return request.param


def _graph(n_atoms: int = 7, n_pairs: int = 12, width: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(n_atoms, n_atoms, offset=1)
    keep = torch.randperm(i.numel(), generator=g)[:n_pairs]
    a, b = i[keep], j[keep]
    edge_index = torch.stack([torch.cat([a, b]), torch.cat([b, a])])
    x = torch.randn(n_atoms, width, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n_pairs, width, generator=g, dtype=torch.float64, requires_grad=True)
    sign = torch.tensor([1.0, -1.0] * (width // 2) + [1.0] * (width % 2), dtype=torch.float64)
    return x, w, sign, edge_index


def _naive(x, w, sign, edge_index):
    src, dst = edge_index
    n = w.shape[0]
    messages = x[src] * torch.cat([w, w * sign])
    assert messages.shape[0] == 2 * n
    return torch.zeros_like(x).index_add(0, dst, messages)


def test_forward_matches_the_message_sum(path):
    x, w, sign, edge_index = _graph()
    torch.testing.assert_close(signed_conv(x, w, sign, edge_index), _naive(x, w, sign, edge_index))


def test_first_and_second_derivatives_match_finite_differences(path):
    x, w, sign, edge_index = _graph(n_atoms=5, n_pairs=6, width=3)
    f = lambda x, w: signed_conv(x, w, sign, edge_index)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w))


def _third_order(conv, x, w, sign, edge_index):
    """A force-training pattern, one order deeper: d/dx of |d/dw |d/dx L|^2|, with L a nonlinear readout."""
    out = conv(x, w, sign, edge_index)
    loss = (torch.tanh(out) * torch.arange(1.0, out.shape[1] + 1, dtype=out.dtype)).sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    (gw,) = torch.autograd.grad((gx**2).sum(), w, create_graph=True)
    return torch.autograd.grad((gw**2).sum(), (x, w))


def test_higher_derivatives_match_plain_autograd(path):
    x, w, sign, edge_index = _graph()
    for a, b in zip(_third_order(signed_conv, x, w, sign, edge_index), _third_order(_naive, x, w, sign, edge_index)):
        torch.testing.assert_close(a, b)


def test_results_do_not_depend_on_the_thread_count(path):
    x, w, sign, edge_index = _graph(n_atoms=40, n_pairs=300, width=64)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = signed_conv(x, w, sign, edge_index)
            results.append([out, *torch.autograd.grad(torch.tanh(out).sum(), (x, w))])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_kernels_refuse_out_of_range_pairs():
    assert painn_ops.cpu_kernels()
    x = torch.randn(4, 3)
    a, b = torch.tensor([0, 1]), torch.tensor([2, 4])
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_painn.conv(x, torch.randn(2, 3), torch.ones(3), a, b)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_painn.pair(x, x, torch.ones(3), a, b)


def test_a_batch_without_pairs_gives_zeros(path):
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.zeros(0, 4, requires_grad=True)
    out = signed_conv(x, w, torch.ones(4), torch.zeros(2, 0, dtype=torch.long))
    (gx, gw) = torch.autograd.grad(out.sum(), (x, w), allow_unused=True)
    assert torch.equal(out, torch.zeros(3, 4)) and torch.equal(gx, torch.zeros(3, 4)) and gw.shape == (0, 4)


# --- the whole model against its PyG reference ---


def _models(dtype, hidden: int = 16, std: float = 0.15):
    torch.manual_seed(0)
    ours = PaiNN(hidden, 3, 5.0, 8).to(dtype)
    torch.manual_seed(0)
    reference = PaiNN(hidden, 3, 5.0, 8, pyg=True).to(dtype)
    for p in ours.parameters():  # the readout starts at zero: give every weight a part in the result
        torch.nn.init.normal_(p, std=std)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def _batch(dtype, sizes=(4, 6, 5, 1), seed: int = 0, spread: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    z = torch.randint(1, 10, (len(batch),), generator=g)
    pos = (torch.randn(len(batch), 3, generator=g, dtype=dtype) * spread).requires_grad_(True)
    return z, pos, batch, len(sizes)


def _training_step(model, z, pos, batch, num_graphs, create_graph: bool = False):
    """Energies, forces and the gradient of a force loss with respect to the parameters (the training step)."""
    g = build_graph(z, pos, batch, num_graphs, candidate_pairs(batch, num_graphs), 5.0)
    energy = model(g)
    (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=True)
    loss = (energy**2).sum() + ((grad - 0.1) ** 2).sum()
    params = list(model.parameters())
    return [energy, grad, *torch.autograd.grad(loss, params, allow_unused=True, create_graph=create_graph)]


def test_the_same_parameters_in_the_same_order_as_the_reference():
    torch.manual_seed(0)
    ours = PaiNN(16, 2, 5.0, 8)
    torch.manual_seed(0)
    reference = PaiNN(16, 2, 5.0, 8, pyg=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_training_step_matches_the_pyg_reference(path, dtype, tol):
    ours, reference = _models(dtype)
    data = _batch(dtype)
    for name, a, b in zip(["energy", "forces", *(n for n, _ in ours.named_parameters())],
                          _training_step(ours, *data), _training_step(reference, *data)):
        if b is None:
            assert a is None or not a.any(), name
            continue
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * float(b.detach().abs().max()), msg=name)


def test_model_third_derivative_matches_the_pyg_reference(path):
    """One order beyond training: the gradient of the parameter-gradient norm with respect to positions."""
    ours, reference = _models(torch.float64, hidden=8)
    z, pos, batch, n = _batch(torch.float64, sizes=(3, 4))

    def third(model):
        _, _, *grads = _training_step(model, z, pos, batch, n, create_graph=True)
        return torch.autograd.grad(sum((g**2).sum() for g in grads if g is not None), pos)[0]

    torch.testing.assert_close(third(ours), third(reference))


def test_a_batch_without_pairs(path):
    """Isolated atoms (or a cutoff shorter than every distance): energies from the atoms alone, zero forces."""
    ours, reference = _models(torch.float64)
    z, pos, batch, n = _batch(torch.float64, sizes=(1, 1, 1), spread=50.0)
    a, b = _training_step(ours, z, pos, batch, n), _training_step(reference, z, pos, batch, n)
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], torch.zeros_like(pos))


def test_the_benchmarks_pyg_loop_over_painn_trains_the_reference(tiny_dataset_path, tiny_dataset):
    """``mlipdiv.bench train``'s plain PyG loop over PaiNN (``ref painn``) runs optimisation steps."""
    import argparse

    from mlipdiv.bench import train as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--dataset", str(tiny_dataset_path), "--hidden", "16", "--interactions", "1",
                              "--batch-size", "4", "--device", "cpu", "--steps", "1", "--warmup", "0"])
    step = bench.reference(tiny_dataset, bench._pairs(tiny_dataset, 16), args, torch.device("cpu"), "painn")
    step(0)
    step(1)


# --- the fused form: the pair filter expand(w, g) formed inside the kernel ---


def _fused_inputs(n_atoms: int = 7, n_pairs: int = 12, f: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    _, _, _, edge_index = _graph(n_atoms, n_pairs, seed=seed)
    x = torch.randn(n_atoms, 7 * f, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n_pairs, 3 * f, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(n_pairs, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    sign = torch.ones(7, f, dtype=torch.float64)
    sign[4:] = -1.0
    return x, w, g, sign.view(-1), edge_index


def _fused_naive(x, w, g, sign, edge_index):
    """The same with the (n_pairs, 7F) filter built by plain tensor operations and summed by plain autograd."""
    n_pairs, f = w.shape[0], w.shape[1] // 3
    blocks = w.view(n_pairs, 3, f)[:, [0, 1, 1, 1, 2, 2, 2]] * g[:, [0, 0, 0, 0, 1, 2, 3]].unsqueeze(-1)
    return _naive(x, blocks.reshape(n_pairs, 7 * f), sign, edge_index)


def _fused_third_order(conv, x, w, g, sign, edge_index):
    out = conv(x, w, g, sign, edge_index)
    loss = (torch.tanh(out) * torch.arange(1.0, out.shape[1] + 1, dtype=out.dtype)).sum()
    gx, gg = torch.autograd.grad(loss, (x, g), create_graph=True)
    gw, gg2 = torch.autograd.grad((gx**2).sum() + (gg**3).sum(), (w, g), create_graph=True)
    return torch.autograd.grad((gw**2).sum() + (gg2**2).sum(), (x, w, g))


def test_fused_conv_matches_plain_autograd_at_every_order(path):
    x, w, g, sign, edge_index = _fused_inputs()
    torch.testing.assert_close(painn_ops.fused_conv(x, w, g, sign, edge_index), _fused_naive(x, w, g, sign, edge_index))
    ours = _fused_third_order(painn_ops.fused_conv, x, w, g, sign, edge_index)
    plain = _fused_third_order(_fused_naive, x, w, g, sign, edge_index)
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)


def test_fused_conv_derivatives_match_finite_differences(path):
    x, w, g, sign, edge_index = _fused_inputs(n_atoms=5, n_pairs=6, f=2)
    f = lambda x, w, g: painn_ops.fused_conv(x, w, g, sign, edge_index)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, g))
    assert torch.autograd.gradgradcheck(f, (x, w, g))


def test_fused_results_do_not_depend_on_the_thread_count(path):
    x, w, g, sign, edge_index = _fused_inputs(n_atoms=40, n_pairs=300, f=20)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = painn_ops.fused_conv(x, w, g, sign, edge_index)
            gx, gw, gg = torch.autograd.grad(torch.tanh(out).sum(), (x, w, g), create_graph=True)
            results.append([out, gx, gw, gg, *torch.autograd.grad((gw**2).sum() + (gg**2).sum(), (x, w, g))])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_fused_kernels_refuse_bad_operands():
    assert painn_ops.cpu_kernels()
    x, w, g = torch.randn(4, 14), torch.randn(2, 6), torch.randn(2, 4)
    a, b = torch.tensor([0, 1]), torch.tensor([2, 4])
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_painn.convg(x, w, g, torch.ones(14), a, b)
    with pytest.raises(RuntimeError, match="out of range"):
        torch.ops.mlipdiv_painn.pairg(x, x, w, g, torch.ones(14), a, b)
    with pytest.raises(RuntimeError, match=r"\(n_pairs, 4\)"):
        torch.ops.mlipdiv_painn.convg(x, w, torch.randn(2, 3), torch.ones(14), a, a)
