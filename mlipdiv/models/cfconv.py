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
features, which are small, and the (n_pairs, F) filters) and gathers again from the atom features when needed, and
the result is exact at every order of differentiation (forces, and the gradient of a force loss). The backward of
``conv`` computes both of its derivatives in one function (:class:`_ConvGrad`), which shares their gathers; its own
backward, the last pass of a training step, fuses its three products into two scatters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _gather(x: Tensor, src: Tensor) -> Tensor:
    """(2, n_pairs, F): ``[x[a], x[b]]`` for the pairs ``(a, b)`` (``src`` is both halves of the symmetric edges)."""
    return x.index_select(0, src).view(2, src.shape[0] // 2, -1)


def _scatter(messages: Tensor, dst: Tensor, like: Tensor) -> Tensor:
    """Sum the (2, n_pairs, F) messages into their target atoms."""
    return torch.zeros_like(like).index_add_(0, dst, messages.view(dst.shape[0], -1))


def _sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


def _pair(us: Tensor, vs: Tensor) -> Tensor:
    """``pair(u, v)`` from the gathered ``us = _gather(u)``, ``vs = _gather(v)``: ``u[b] * v[a] + u[a] * v[b]``."""
    return torch.mul(us[1], vs[0]).addcmul_(us[0], vs[1])


class _Conv(torch.autograd.Function):
    """``conv(x, W)``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(x, w, src, dst)
        return _scatter(_gather(x, src).mul_(w), dst, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, w, src, dst = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        if need_x and need_w:
            grad_x, grad_w = _ConvGrad.apply(grad, x, w, src, dst)
            return grad_x, grad_w, None, None
        grad_x = _Conv.apply(grad, w, src, dst) if need_x else None
        grad_w = _Pair.apply(grad, x, src, dst) if need_w else None
        return grad_x, grad_w, None, None


class _Pair(torch.autograd.Function):
    """``pair(u, v)``."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, v: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(u, v, src, dst)
        return _pair(_gather(u, src), _gather(v, src))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        u, v, src, dst = ctx.saved_tensors
        grad_u = _Conv.apply(v, grad, src, dst) if ctx.needs_input_grad[0] else None
        grad_v = _Conv.apply(u, grad, src, dst) if ctx.needs_input_grad[1] else None
        return grad_u, grad_v, None, None


class _ConvGrad(torch.autograd.Function):
    """Both derivatives of ``conv(x, W)`` applied to ``G``: ``(conv(G, W), pair(G, x))``, sharing the gather of G."""

    @staticmethod
    def forward(ctx: Any, g: Tensor, x: Tensor, w: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(g, x, w, src, dst)
        ctx.set_materialize_grads(False)
        gs = _gather(g, src)
        grad_w = _pair(gs, _gather(x, src))
        return _scatter(gs.mul_(w), dst, g), grad_w

    @staticmethod
    def backward(
        ctx: Any, h: Tensor | None, k: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        """With ``H``, ``K`` the gradients of the two outputs: ``d/dG = conv(H, W) + conv(x, K)``,
        ``d/dx = conv(G, K)``, ``d/dW = pair(H, G)``."""
        g, x, w, src, dst = ctx.saved_tensors
        need_g, need_x, need_w = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # differentiating once more: compose the differentiable functions
            grad_g = grad_x = grad_w = None
            if need_g:
                grad_g = _sum(_Conv.apply(h, w, src, dst) if h is not None else None,
                              _Conv.apply(x, k, src, dst) if k is not None else None)
            if need_x and k is not None:
                grad_x = _Conv.apply(g, k, src, dst)
            if need_w and h is not None:
                grad_w = _Pair.apply(h, g, src, dst)
            return grad_g, grad_x, grad_w, None, None
        # the last backward pass of a step: share the gathers and fuse the two scatters of d/dG
        hs = _gather(h, src) if h is not None else None
        gs = _gather(g, src) if (need_x and k is not None) or (need_w and hs is not None) else None
        grad_w = _pair(hs, gs) if need_w and hs is not None else None
        grad_x = _scatter(gs.mul_(k), dst, x) if need_x and k is not None else None
        grad_g = None
        if need_g and (hs is not None or k is not None):
            messages = hs.mul_(w) if hs is not None else None
            if k is not None:
                xk = _gather(x, src)
                messages = xk.mul_(k) if messages is None else messages.addcmul_(xk, k)
            grad_g = _scatter(messages, dst, g)
        return grad_g, grad_x, grad_w, None, None


def cfconv(x: Tensor, w: Tensor, edge_index: Tensor) -> Tensor:
    """``out[i] = sum_j x[j] * W[pair(i, j)]`` over symmetric edges (see :class:`~mlipdiv.models.graph.Graph`).

    Args:
        x: (n_atoms, F) atom features.
        w: (n_pairs, F) one filter per pair, shared by its two directions.
        edge_index: (2, 2 * n_pairs) symmetric edges: the first half the pairs, the second half the same reversed.
    """
    src, dst = edge_index
    return _Conv.apply(x, w, src, dst)
