"""LPIPS head op (Zhang et al. 2018, lpips v0.1): unit-normalize two feature maps over channels,
weight their squared difference per channel and sum, in one pass per pixel.

Backward recomputes the norms and the difference instead of saving normalized copies, so the op
keeps nothing for backward but its inputs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import (
    _C,  # noqa: F401  (registers torch.ops.perceptual_ext)
    _checks,
)

_OPS = torch.ops.perceptual_ext

#: Added to each norm before dividing, as lpips's ``normalize_tensor`` does.
EPS = 1e-10


def lpips_layer(a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
    r"""Per-pixel LPIPS distance of one layer's features (the "lin" head of lpips v0.1).

    .. math::
        d_{n,1,h,w} = \sum_c w_c \left(\frac{a_{n,c,h,w}}{\|a_{n,:,h,w}\|_2 + \epsilon}
        - \frac{b_{n,c,h,w}}{\|b_{n,:,h,w}\|_2 + \epsilon}\right)^2, \qquad \epsilon = 10^{-10}

    Exactly ``lin(normalize_tensor(a) - normalize_tensor(b)) ** 2`` summed as lpips computes it
    (its ``NetLinLayer`` is a bias-free 1x1 conv with weight ``[1, C, 1, 1]``), but without the
    normalized copies, the difference and its square: forward reads ``a`` and ``b`` once and
    writes ``[N, 1, H, W]``; backward recomputes the norms per pixel and keeps nothing but the
    inputs. Differentiable w.r.t. ``a`` and ``b`` (fused) and ``weight`` (composed from torch
    ops, so that gradient costs the composition's memory; the losses keep ``weight`` frozen).
    The gradient is finite everywhere: 0 where ``a == b``, and where a feature vector is 0 the
    norm's radial term is taken as its limit 0 instead of sqrt's 0/0.

    Args:
        a (Tensor[N, C, H, W]): features of the first image, any strides.
        b (Tensor[N, C, H, W]): features of the second image, same shape, dtype and device.
        weight (Tensor[C] or Tensor[1, C, 1, 1]): per-channel weights :math:`w_c` (lpips's
            ``lin<k>.model.1.weight`` as is). Cast to the features' dtype.

    Float32 and float64 are computed in their own precision; float16/bfloat16 in float32 and
    returned in their dtype.

    Returns:
        Tensor[N, 1, H, W]

    Example:
        >>> a, b = torch.randn(2, 64, 16, 16), torch.randn(2, 64, 16, 16)
        >>> lpips_layer(a, b, torch.ones(64)).shape
        torch.Size([2, 1, 16, 16])
    """
    _checks.floating(a, "a")
    _checks.floating(b, "b")
    _checks.floating(weight, "weight")
    _checks.rank(a, "a", (4,), "[N, C, H, W]")
    _checks.rank(b, "b", (4,), "[N, C, H, W]")
    _checks.same_dtype(a, b, "a", "b")
    _checks.same_device(a, b, "a", "b")
    _checks.same_device(a, weight, "a", "weight")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [N, C, H, W], got {tuple(a.shape)} and {tuple(b.shape)}")
    channels = a.shape[1]
    if weight.dim() == 4 and weight.shape[0] == 1 and weight.shape[2:] == (1, 1):
        weight = weight.flatten()
    if weight.dim() != 1 or weight.shape[0] != channels:
        raise ValueError(f"weight must be [C] or [1, C, 1, 1] with C = {channels} (the channels of a), "
                         f"got shape {tuple(weight.shape)}")
    dtype = _checks.compute_dtype(a)
    if dtype != a.dtype:
        return _OPS.lpips_layer(a.to(dtype), b.to(dtype), weight.to(dtype)).to(a.dtype)
    return _OPS.lpips_layer(a, b, weight.to(dtype))


@torch.library.register_fake("perceptual_ext::lpips_layer")
def _lpips_layer_fake(a, b, weight):
    torch._check(a.dim() == 4, lambda: "lpips_layer: a must be [N, C, H, W]")
    torch._check(a.shape == b.shape, lambda: "lpips_layer: a and b must have the same shape")
    torch._check(weight.dim() == 1 and weight.shape[0] == a.shape[1], lambda: "lpips_layer: weight must be [C]")
    return a.new_empty((a.shape[0], 1, a.shape[2], a.shape[3]))


@torch.library.register_fake("perceptual_ext::lpips_layer_backward")
def _lpips_layer_backward_fake(grad, a, b, weight, need_a, need_b):
    torch._check(a.dim() == 4 and a.shape == b.shape, lambda: "lpips_layer_backward: a and b must be [N, C, H, W]")
    return (a.new_empty(a.shape) if need_a else a.new_empty((0,)),
            b.new_empty(b.shape) if need_b else b.new_empty((0,)))
