"""Patch random Fourier features: fused reflect pad + P x P conv + cos + average pooling."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import (
    _C,  # noqa: F401  (registers torch.ops.perceptual_ext)
    _checks,
)
from ._pooling import pooled_length

_OPS = torch.ops.perceptual_ext


def pooled_size(height: int, width: int, patch_size: int, window: int, stride: int) -> tuple:
    """Pooled output side ``(h', w')`` for an image of ``height x width``.

    The feature map has ``H + 2 (P // 2) - P + 1`` rows (``H`` for odd ``P``); windows start at
    multiples of ``stride`` and must fit entirely, like ``avg_pool2d`` without padding:
    ``h' = (H_map - window) // stride + 1``.
    """
    pad = patch_size // 2
    map_h, map_w = height + 2 * pad - patch_size + 1, width + 2 * pad - patch_size + 1
    return pooled_length(map_h, window, stride), pooled_length(map_w, window, stride)


def _validate(x: Tensor, weight: Tensor, bias: Tensor, window: int, stride: int) -> None:
    _checks.floating(x, "x")
    _checks.floating(weight, "weight")
    _checks.floating(bias, "bias")
    _checks.rank(x, "x", (4,), "[N, C, H, W]")
    _checks.rank(weight, "weight", (4,), "[F, C, P, P]")
    _checks.rank(bias, "bias", (1,), "[F]")
    _checks.positive_int(window, "window")
    _checks.positive_int(stride, "stride")
    _checks.same_device(x, weight, "x", "weight")
    _checks.same_device(x, bias, "x", "bias")
    _checks.same_dtype(x, weight, "x", "weight")
    _checks.same_dtype(x, bias, "x", "bias")
    f, c, p, q = weight.shape
    if c != x.shape[1] or p != q or p < 1:
        raise ValueError(f"weight must be [F, C, P, P] with C = {x.shape[1]} (the channels of x), "
                         f"got shape {tuple(weight.shape)}")
    if f == 0:
        raise ValueError(f"weight must have at least one feature (F >= 1 in [F, C, P, P]), got shape "
                         f"{tuple(weight.shape)}")
    if bias.shape[0] != f:
        raise ValueError(f"bias must be [F] with F = {f} (the features of weight), got shape {tuple(bias.shape)}")
    h, w = x.shape[2], x.shape[3]
    if p // 2 >= min(h, w):
        raise ValueError(f"x must be larger than the reflect padding {p // 2} of patch size {p}, got {h}x{w}")
    map_h, map_w = h + 2 * (p // 2) - p + 1, w + 2 * (p // 2) - p + 1
    if window > min(map_h, map_w):
        raise ValueError(f"window ({window}) is larger than the feature map of x ({map_h}x{map_w} for a "
                         f"{h}x{w} image and patch size {p}): no pooling window fits; use a smaller window "
                         f"or a larger image")
    if weight.requires_grad or bias.requires_grad:
        raise ValueError("weight and bias must not require grad: they are fixed random features and "
                         "rff_patch_features differentiates with respect to x only")


def rff_patch_features(x: Tensor, weight: Tensor, bias: Tensor, window: int = 32, stride: int = 16) -> Tensor:
    r"""Average-pooled random Fourier features of the image's P x P patches.

    .. math::
        \bar z_{n,f,a,b} = \frac{1}{W^2} \sum_{i=aS}^{aS+W-1} \sum_{j=bS}^{bS+W-1}
            \cos\big(w_f \cdot p_{n,i,j} + b_f\big)

    where :math:`p_{n,i,j}` is the P x P x C patch at pixel (i, j) of ``x`` reflect-padded by
    ``P // 2`` — the same values as ``avg_pool2d(cos(conv2d(F.pad(x, [P//2]*4, mode='reflect'),
    weight, bias)), window, stride)``, computed tile by tile without the ``[N, F, H, W]`` map.
    Windows are those of ``avg_pool2d`` without padding: ``h' = (H - W) // S + 1`` for odd P;
    pixels past the last window contribute nothing.

    Backward recomputes the projection per tile (nothing but the inputs is saved), so memory is
    O(input + output). Only ``x`` is differentiable: ``weight`` and ``bias`` are fixed random
    features and must not require grad.

    Args:
        x (Tensor[N, C, H, W]): images, float32/float64 (float16/bfloat16 are computed in float32
            and returned in their dtype), any strides.
        weight (Tensor[F, C, P, P]): projection directions, same dtype and device as ``x``.
        bias (Tensor[F]): phases.
        window (int): pooling window side W; must fit into the feature map.
        stride (int): pooling stride S.

    Returns:
        Tensor[N, F, h', w'] with ``(h', w') =`` :func:`pooled_size` ``(H, W, P, window, stride)``.

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> w, b = torch.randn(256, 3, 3, 3) / 0.54, torch.rand(256) * 2 * torch.pi
        >>> rff_patch_features(x, w, b, window=32, stride=16).shape
        torch.Size([2, 256, 3, 3])
    """
    _validate(x, weight, bias, window, stride)
    # Half and bfloat16 are computed in float32 on every device (the phase w.p + b needs it).
    dtype = _checks.compute_dtype(x)
    if dtype != x.dtype:
        return _OPS.rff_patch_features(x.to(dtype), weight.to(dtype), bias.to(dtype), window, stride).to(x.dtype)
    return _OPS.rff_patch_features(x, weight, bias, window, stride)


@torch.library.register_fake("perceptual_ext::rff_patch_features")
def _rff_patch_features_fake(x, weight, bias, window, stride):
    torch._check(x.dim() == 4 and weight.dim() == 4, lambda: "rff_patch_features: expects 4-D x and weight")
    h, w = pooled_size(x.shape[2], x.shape[3], weight.shape[2], window, stride)
    return x.new_empty((x.shape[0], weight.shape[0], h, w))


@torch.library.register_fake("perceptual_ext::rff_patch_features_backward")
def _rff_patch_features_backward_fake(grad, x, weight, bias, window, stride):
    return x.new_empty(x.shape)
