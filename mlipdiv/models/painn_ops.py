"""PaiNN's message step over symmetric pairs, differentiable to any order without per-edge saved tensors.

PaiNN's messages (Schütt et al. 2021, eq. 7-8) into atom ``i`` from its neighbours ``j``, with ``x = phi(s)`` split
into ``(x_s, x_vv, x_vs)``, the pair filter ``W[p]`` split likewise, and ``u`` the unit vector from ``j`` to ``i``::

    ds[i] = sum_j x_s[j] * W_s[p]
    dv[i] = sum_j v[j] * x_vv[j] * W_vv[p]  +  u_ji (outer) x_vs[j] * W_vs[p]

Each term is a *signed* continuous-filter convolution over the pairs ``p = (a, b)`` (see
:mod:`mlipdiv.models.cfconv` for the unsigned one, and its derivation)::

    conv(x, W)[i] = sum over pairs with b == i of x[a] * W[p]  +  sigma * sum over pairs with a == i of x[b] * W[p]

with ``sigma = +1`` for the first two terms and ``sigma = -1`` for the last (the unit vector flips with the
direction: ``W[p] = u_p (outer) W_vs[p]`` is shared by both directions, the sign is not). ``sigma`` is a vector, one
sign per feature column, so that the whole message step is a single ``conv`` of width ``7F``. Its derivatives are
``conv`` again and one pair-wise product, column by column::

    d conv(x, W) / dx  applied to G  =  sigma * conv(G, W)
    d conv(x, W) / dW  applied to G  =  pair(G, x)          pair(u, v)[p] = u[b] * v[a] + sigma * u[a] * v[b]
    d pair(u, v) / du  applied to H  =  conv(v, H),   d pair(u, v) / dv  applied to H  =  sigma * conv(u, H)

so, as in cfconv, they are autograd functions whose backward passes call each other, saving only their inputs (atom
features and per-pair filters): no (edges, 3, F) message tensor is ever stored for the double backward of force
training. On CPU they run as two compiled kernels (``painn_cpu.cpp``: cfconv's, with the signs; built on first use)
that read each pair's row once; on a GPU, or without a compiler (or with ``MLIPDIV_CPU_KERNELS=0``), the PyTorch path
computes the same values with gathers, products and one ``index_add``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mlipdiv.models.kernels import gather_pairs, load_cpu_kernels

KERNEL_SOURCE = Path(__file__).with_name("painn_cpu.cpp")


@functools.cache
def cpu_kernels() -> bool:
    """Whether the CPU kernels of the signed ``conv`` and ``pair`` (:data:`KERNEL_SOURCE`) are loaded, built on
    first use (see :func:`mlipdiv.models.kernels.load_cpu_kernels`; False means the PyTorch path)."""
    return load_cpu_kernels("mlipdiv_painn", KERNEL_SOURCE, "PaiNN CPU kernels")


def _kernel_applies(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and cpu_kernels()


def _conv(x: Tensor, w: Tensor, sign: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    if _kernel_applies(x):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_painn.conv(x.contiguous(), w.contiguous(), sign.contiguous(), a, b)
    messages = gather_pairs(x, src).mul_(w)
    messages[1].mul_(sign)
    return torch.zeros_like(x).index_add_(0, dst, messages.view(dst.shape[0], x.shape[1]))


def _pair(u: Tensor, v: Tensor, sign: Tensor, src: Tensor) -> Tensor:
    if _kernel_applies(u):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_painn.pair(u.contiguous(), v.contiguous(), sign.contiguous(), a, b)
    us, vs = gather_pairs(u, src), gather_pairs(v, src)
    return torch.mul(us[1], vs[0]).addcmul_(us[0].mul_(sign), vs[1])


class _Conv(torch.autograd.Function):
    """``conv(x, W)`` with per-column signs."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, sign: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(x, w, sign, src, dst)
        return _conv(x, w, sign, src, dst)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        x, w, sign, src, dst = ctx.saved_tensors
        grad_x = _Conv.apply(grad, w, sign, src, dst) * sign if ctx.needs_input_grad[0] else None
        grad_w = _Pair.apply(grad, x, sign, src, dst) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None, None


class _Pair(torch.autograd.Function):
    """``pair(u, v)`` with per-column signs."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, v: Tensor, sign: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(u, v, sign, src, dst)
        return _pair(u, v, sign, src)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        u, v, sign, src, dst = ctx.saved_tensors
        grad_u = _Conv.apply(v, grad, sign, src, dst) if ctx.needs_input_grad[0] else None
        grad_v = _Conv.apply(u, grad, sign, src, dst) * sign if ctx.needs_input_grad[1] else None
        return grad_u, grad_v, None, None, None


def signed_conv(x: Tensor, w: Tensor, sign: Tensor, edge_index: Tensor) -> Tensor:
    """``conv(x, W)`` of the module docstring over symmetric edges (see :class:`~mlipdiv.models.graph.Graph`).

    Args:
        x: (n_atoms, C) atom features.
        w: (n_pairs, C) one filter per pair, shared by its two directions.
        sign: (C,) +1 or -1 per column: the sign of the messages from ``b`` to ``a``.
        edge_index: (2, 2 * n_pairs) symmetric edges: the first half the pairs, the second half the same reversed.
    """
    src, dst = edge_index
    return _Conv.apply(x, w, sign.to(x.dtype), src, dst)


_COLUMNS = (0, 1, 1, 1, 2, 2, 2)
"""The width-``7F`` operands, in blocks of ``F`` columns, from the blocks ``(s, vv, vs)`` of ``x`` and ``W``."""
_FACTORS = (0, 0, 0, 0, 1, 2, 3)
"""The geometric factor of each block: the envelope, or the envelope times unit-vector component 0, 1 or 2."""


def _index(values: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.tensor(values, device=like.device)


def _expand(w: Tensor, g: Tensor) -> Tensor:
    """(n_pairs, 7F) the block filters ``w[p, c(k)] * g[p, e(k)]`` (the PyTorch path's operand)."""
    n_pairs, f = w.shape[0], w.shape[1] // 3
    blocks = w.view(n_pairs, 3, f).index_select(1, _index(_COLUMNS, w))
    return (blocks * g.index_select(1, _index(_FACTORS, g)).unsqueeze(-1)).view(n_pairs, 7 * f)


def _convg(x: Tensor, w: Tensor, g: Tensor, sign: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    if _kernel_applies(x):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_painn.convg(x.contiguous(), w.contiguous(), g.contiguous(), sign.contiguous(), a, b)
    return _conv(x, _expand(w, g), sign, src, dst)


def _pairg(u: Tensor, v: Tensor, w: Tensor, g: Tensor, sign: Tensor, src: Tensor) -> tuple[Tensor, Tensor]:
    if _kernel_applies(u):
        a, b = src.reshape(2, -1).contiguous()
        return torch.ops.mlipdiv_painn.pairg(
            u.contiguous(), v.contiguous(), w.contiguous(), g.contiguous(), sign.contiguous(), a, b
        )
    n_pairs, f = w.shape[0], w.shape[1] // 3
    pair = _pair(u, v, sign, src).view(n_pairs, 7, f)
    columns, factors = _index(_COLUMNS, w), _index(_FACTORS, g)
    scaled = pair * g.index_select(1, factors).unsqueeze(-1)
    grad_w = w.new_zeros(n_pairs, 3, f).index_add_(1, columns, scaled).view(n_pairs, 3 * f)
    dots = (pair * w.view(n_pairs, 3, f).index_select(1, columns)).sum(-1)
    return grad_w, g.new_zeros(n_pairs, 4).index_add_(1, factors, dots)


class _ConvG(torch.autograd.Function):
    """``conv(x, W)`` with the block filters ``W = expand(w, g)`` formed on the fly (never stored per pair)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, g: Tensor, sign: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        ctx.save_for_backward(x, w, g, sign, src, dst)
        return _convg(x, w, g, sign, src, dst)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w, g, sign, src, dst = ctx.saved_tensors
        grad_x = _ConvG.apply(grad, w, g, sign, src, dst) * sign if ctx.needs_input_grad[0] else None
        grad_w = grad_g = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w, grad_g = _PairG.apply(grad, x, w, g, sign, src, dst)
        return grad_x, grad_w, grad_g, None, None, None


class _PairG(torch.autograd.Function):
    """``pair(u, v)`` reduced onto the fused filter's inputs: ``(d/dw, d/dg)`` of ``sum(pair * expand(w, g))``,
    i.e. ``(R_w(pair, g), R_g(pair, w))``; both are linear in ``(w, g)`` crosswise, which closes the algebra:
    its derivatives are ``_ConvG`` and ``_PairG`` again."""

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, v: Tensor, w: Tensor, g: Tensor, sign: Tensor, src: Tensor, dst: Tensor
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(u, v, w, g, sign, src, dst)
        ctx.set_materialize_grads(False)
        return _pairg(u, v, w, g, sign, src)

    @staticmethod
    def backward(ctx: Any, grad_w: Tensor | None, grad_g: Tensor | None) -> tuple[Tensor | None, ...]:
        u, v, w, g, sign, src, dst = ctx.saved_tensors
        # the upstream gradient of pair() is expand(grad_w, g) + expand(w, grad_g): a fused filter of two terms
        terms = [(fw, fg) for fw, fg in ((grad_w, g), (w, grad_g)) if fw is not None and fg is not None]
        grad_u = grad_v = None
        if terms and ctx.needs_input_grad[0]:
            grad_u = functools.reduce(torch.add, [_ConvG.apply(v, fw, fg, sign, src, dst) for fw, fg in terms])
        if terms and ctx.needs_input_grad[1]:
            grad_v = functools.reduce(torch.add, [_ConvG.apply(u, fw, fg, sign, src, dst) for fw, fg in terms]) * sign
        d_w = d_g = None
        if (ctx.needs_input_grad[2] and grad_g is not None) or (ctx.needs_input_grad[3] and grad_w is not None):
            # R_g(pair, w) is linear in w, R_w(pair, g) in g: (d/dw, d/dg) = (R_w(pair, grad_g), R_g(pair, grad_w))
            d_w, d_g = _PairG.apply(
                u, v, grad_w if grad_w is not None else torch.zeros_like(w),
                grad_g if grad_g is not None else torch.zeros_like(g), sign, src, dst,
            )
            d_w = d_w if grad_g is not None else None
            d_g = d_g if grad_w is not None else None
        return grad_u, grad_v, d_w, d_g, None, None, None


def fused_conv(x: Tensor, w: Tensor, g: Tensor, sign: Tensor, edge_index: Tensor) -> Tensor:
    """``conv(x, expand(w, g))``: :func:`signed_conv` of width ``7F`` whose pair filter of block ``k`` is
    ``w[p, c(k)] * g[p, e(k)]`` (blocks :data:`_COLUMNS` of ``w``, factors :data:`_FACTORS` of ``g``), formed inside
    the kernel: the envelope and unit-vector scaling cost no (n_pairs, 7F) tensor, forward or backward.

    Args:
        x: (n_atoms, 7F) atom operand. w: (n_pairs, 3F) radial filters. g: (n_pairs, 4) the envelope and the
        envelope times the unit vector. sign: (7F,). edge_index: (2, 2 * n_pairs) symmetric edges.
    """
    src, dst = edge_index
    return _ConvG.apply(x, w, g, sign.to(x.dtype), src, dst)


def painn_message(
    x: Tensor, v: Tensor, w: Tensor, unit: Tensor, envelope: Tensor, edge_index: Tensor
) -> tuple[Tensor, Tensor]:
    """PaiNN's summed messages ``(ds, dv)`` (module docstring), as one signed convolution of width ``7F``.

    The operands are ``[x_s, v * x_vv, x_vs, x_vs, x_vs]`` per atom and ``[W_s, W_vv, W_vv, W_vv, u_0 W_vs, u_1 W_vs,
    u_2 W_vs]`` times the envelope per pair (blocks of ``F`` columns); the pair operand is formed inside the kernel
    from ``w`` and the four per-pair factors (:func:`fused_conv`).

    Args:
        x: (n_atoms, 3F) ``phi(s)``, columns ``(x_s, x_vv, x_vs)``.
        v: (n_atoms, 3, F) vector features.
        w: (n_pairs, 3F) the pair filters (without the envelope), columns ``(W_s, W_vv, W_vs)``.
        unit: (n_pairs, 3) unit vectors from ``a`` to ``b`` of the pairs ``(a, b)`` (the first half of the edges).
        envelope: (n_pairs,) the cutoff envelope, multiplied into every filter.
        edge_index: (2, 2 * n_pairs) symmetric edges.

    Returns:
        ds (n_atoms, F) and dv (n_atoms, 3, F).
    """
    n, f = v.shape[0], v.shape[-1]
    columns = _index(_COLUMNS, x)
    atoms = x.view(n, 3, f).index_select(1, columns) * torch.cat([v.new_ones(n, 1, f), v, v.new_ones(n, 3, f)], 1)
    factors = torch.cat([envelope.unsqueeze(-1), unit * envelope.unsqueeze(-1)], dim=1)
    sign = x.new_ones(7, f)
    sign[4:] = -1.0
    out = fused_conv(atoms.view(n, 7 * f), w, factors, sign.view(-1), edge_index).view(n, 7, f)
    return out[:, 0], out[:, 1:4] + out[:, 4:]
