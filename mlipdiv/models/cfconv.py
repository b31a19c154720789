"""Continuous-filter convolution over symmetric pairs, differentiable to any order without large saved tensors.

SchNet's message step on the pairs ``p = (a, b)`` of a molecule, with one filter ``W[p]`` shared by both directions::

    conv(x, W)[i] = sum over pairs (a, b) with b == i of x[a] * W[p]  +  sum over pairs with a == i of x[b] * W[p]

Autograd through ``x[src] * W`` and ``index_add`` keeps a gathered (2 * n_pairs, F) copy of ``x`` for every
product, and training on forces differentiates that graph twice: much of a step then goes to writing and re-reading
such copies. But the derivatives of ``conv`` are ``conv`` again and one more pair-wise product::

    d conv(x, W) / dx  applied to G  =  conv(G, W)           (the operator is symmetric)
    d conv(x, W) / dW  applied to G  =  pair(G, x)           pair(u, v)[p] = u[b] * v[a] + u[a] * v[b]
    d pair(u, v) / du  applied to H  =  conv(v, H),   and by symmetry  d pair / dv = conv(u, H)

so they are written as autograd functions whose backward passes call each other. Each saves only its inputs (atom
features, which are small, and the (n_pairs, F) filters), and the result is exact at every order of
differentiation (forces, and the gradient of a force loss).

Left to PyTorch, each ``conv`` or ``pair`` is still gathers, products and a scatter, each writing a (pairs, F)
temporary, and a force-training step of a three-interaction SchNet runs 25 of them. On CPU they run instead as two
compiled kernels (``cfconv_cpu.cpp``, built on first use) that read each pair's row once; on a GPU, or without a
compiler, the PyTorch path computes the same values.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mlipdiv.models.kernels import gather_pairs, load_cpu_kernels

KERNEL_SOURCE = Path(__file__).with_name("cfconv_cpu.cpp")


@functools.cache
def cpu_kernels() -> bool:
    """Whether the CPU kernels of ``conv`` and ``pair`` (:data:`KERNEL_SOURCE`) are loaded, built on first use
    (see :func:`mlipdiv.models.kernels.load_cpu_kernels`; False means the PyTorch path)."""
    return load_cpu_kernels("mlipdiv_cfconv", KERNEL_SOURCE, "CPU kernels")


def _kernel_applies(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and cpu_kernels()


def _conv(x: Tensor, w: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """The value of ``conv(x, W)``: the compiled kernel on CPU, else gather, multiply, scatter."""
    if _kernel_applies(x):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_cfconv.conv(x.contiguous(), w.contiguous(), a, b)
    messages = gather_pairs(x, src).mul_(w).view(dst.shape[0], x.shape[1])
    return torch.zeros_like(x).index_add_(0, dst, messages)


def _pair(u: Tensor, v: Tensor, src: Tensor) -> Tensor:
    """The value of ``pair(u, v)``: ``u[b] * v[a] + u[a] * v[b]``."""
    if _kernel_applies(u):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_cfconv.pair(u.contiguous(), v.contiguous(), a, b)
    us, vs = gather_pairs(u, src), gather_pairs(v, src)
    return torch.mul(us[1], vs[0]).addcmul_(us[0], vs[1])


class _Conv(torch.autograd.Function):
    """``conv(x, W)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(x, w, src, dst)
        return _conv(x, w, src, dst)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, w, src, dst = ctx.saved_tensors
        grad_x = _Conv.apply(grad, w, src, dst) if ctx.needs_input_grad[0] else None
        grad_w = _Pair.apply(grad, x, src, dst) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None


class _Pair(torch.autograd.Function):
    """``pair(u, v)``."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, v: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(u, v, src, dst)
        return _pair(u, v, src)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        u, v, src, dst = ctx.saved_tensors
        grad_u = _Conv.apply(v, grad, src, dst) if ctx.needs_input_grad[0] else None
        grad_v = _Conv.apply(u, grad, src, dst) if ctx.needs_input_grad[1] else None
        return grad_u, grad_v, None, None


def cfconv(x: Tensor, w: Tensor, edge_index: Tensor) -> Tensor:
    """``out[i] = sum_j x[j] * W[pair(i, j)]`` over symmetric edges (see :class:`~mlipdiv.models.graph.Graph`).

    Args:
        x: (n_atoms, F) atom features.
        w: (n_pairs, F) one filter per pair, shared by its two directions.
        edge_index: (2, 2 * n_pairs) symmetric edges: the first half the pairs, the second half the same reversed.
    """
    src, dst = edge_index
    return _Conv.apply(x, w, src, dst)
