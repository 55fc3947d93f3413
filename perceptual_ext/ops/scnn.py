"""Fused S-CNN features (seed 004 §1.2): P x P conv, D 1x1 convs, ReLU after each, average pool.

Pixel tiles go through every layer and only the pooled output is kept; backward stores one bit
per activation (each ReLU's on/off mask) instead of the activations.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from .. import (
    _C,  # noqa: F401  (registers torch.ops.perceptual_ext)
    _checks,
)
from ._pooling import pooled_length

_OPS = torch.ops.perceptual_ext
_MASK_BITS = 32

WeightsArg = Union[Tensor, Sequence[Tensor]]


def _stack(value: WeightsArg, name: str, trailing: int) -> Tensor:
    """[D, *dims] from a stacked tensor or a sequence of D tensors; 1x1 conv kernels are squeezed."""
    if isinstance(value, Tensor):
        stacked = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, Tensor) for v in value):
        if not value:
            raise ValueError(f"{name} is an empty sequence; pass a [0, ...] tensor for depth 0")
        stacked = torch.stack([_checks.floating(v, f"{name}[{i}]") for i, v in enumerate(value)])
    else:
        raise TypeError(f"{name} must be a Tensor or a sequence of Tensors, got {type(value).__name__}")
    _checks.floating(stacked, name)
    if trailing == 2 and stacked.dim() == 5 and stacked.shape[-2:] == (1, 1):
        stacked = stacked.flatten(2)  # [D, C, C, 1, 1] 1x1 conv kernels
    if stacked.dim() != trailing + 1:
        layout = "[D, C, C] (or D tensors [C, C] / [C, C, 1, 1])" if trailing == 2 else "[D, C] (or D tensors [C])"
        raise ValueError(f"{name} must be {layout}, got shape {tuple(stacked.shape)}")
    return stacked


def _check_frozen(tensors: dict) -> None:
    if not torch.is_grad_enabled():
        return
    for name, t in tensors.items():
        if t.requires_grad:
            raise ValueError(f"{name} requires grad, but scnn_features is differentiable only w.r.t. x: the weights "
                             f"are frozen random features. Pass {name}.detach() (or register it as a buffer).")


def _check_shapes(x: Tensor, first_weight: Tensor, first_bias: Tensor, weights: Tensor, biases: Tensor,
                  window: int) -> None:
    """The layer shapes agree with each other and with ``x``; every tensor on x's device and dtype."""
    c, c_in, p, p2 = first_weight.shape
    if x.shape[1] != c_in:
        raise ValueError(f"x has {x.shape[1]} channels but first_weight expects {c_in} "
                         f"(shape {tuple(first_weight.shape)})")
    if p != p2 or p % 2 == 0:
        raise ValueError(f"first_weight must have an odd square kernel P x P, got shape {tuple(first_weight.shape)}")
    if first_bias.shape[0] != c:
        raise ValueError(f"first_bias must be [{c}], got shape {tuple(first_bias.shape)}")
    if weights.shape[1:] != (c, c):
        raise ValueError(f"weights must be [D, {c}, {c}], got shape {tuple(weights.shape)}")
    if biases.shape != (weights.shape[0], c):
        raise ValueError(f"biases must be [{weights.shape[0]}, {c}], got shape {tuple(biases.shape)}")
    if x.shape[2] < window or x.shape[3] < window:
        raise ValueError(f"x is {x.shape[2]} x {x.shape[3]}, smaller than the pooling window {window} x {window}")
    for name, t in (("first_weight", first_weight), ("first_bias", first_bias), ("weights", weights),
                    ("biases", biases)):
        _checks.same_device(x, t, "x", name)
        _checks.same_dtype(x, t, "x", name)


def scnn_features(x: Tensor, first_weight: Tensor, first_bias: Tensor, weights: WeightsArg, biases: WeightsArg,
                  window: int = 32, stride: int = 16, patch_norm: bool = False) -> Tensor:
    r"""Pooled features of a shallow wide CNN (S-CNN), fused: no activation map is ever stored.

    .. math::
        h_0 = \mathrm{ReLU}(W_0 * \hat x + b_0),\quad h_l = \mathrm{ReLU}(W_l h_{l-1} + b_l)\ (l=1..D),\quad
        y = \mathrm{AvgPool}_{W,S}(h_D)

    The first conv is :math:`P \times P` with **zero padding** ``P // 2`` (as ``nn.Conv2d(padding=P // 2)``
    in seed 004's reimplementation), so every layer keeps the ``H x W`` size; the pool has no
    padding, so ``h' = (H - window) // stride + 1`` (pixels of no window are never computed).
    With ``patch_norm`` each ``P x P x C_in`` patch :math:`p` is divided by :math:`\max(\|p\|_2, 10^{-4})`
    before the first conv (the reimplementation's ``ignore_patch_norm``, with a clamp that keeps
    gradients at black patches bounded).

    Differentiable w.r.t. ``x`` only: the weights are frozen random features, and passing weights
    that require grad (with grad enabled) raises ``ValueError``. Backward keeps each ReLU's on/off
    mask, one bit per activation, and runs ``dh_{l-1} = W_l^T (dh_l * mask_l)`` tile by tile, so
    peak memory grows with :math:`(D+1) C H W / 8` bytes instead of the composition's
    :math:`4 (D+1) C H W`.

    The layer products are BLAS/cuBLAS GEMMs on pixel tiles, so on CUDA they follow torch's matmul
    precision flags (``torch.backends.cuda.matmul.fp32_precision = "tf32"`` opts into TF32);
    float16/bfloat16 inputs and weights run the GEMMs in that precision on CUDA (the CPU computes
    them in float32). Window sums are accumulated in float64.

    Args:
        x (Tensor[N, C_in, H, W]): images, any strides; ``H, W >= window``.
        first_weight (Tensor[C, C_in, P, P]): first conv kernel, ``P`` odd.
        first_bias (Tensor[C]): first conv bias.
        weights (Tensor[D, C, C] or D tensors [C, C] / [C, C, 1, 1]): 1x1 conv kernels (``D`` may be 0).
        biases (Tensor[D, C] or D tensors [C]).
        window (int): pooling window ``W``. stride (int): pooling stride ``S``.
        patch_norm (bool): normalize each input patch to unit L2 norm.

    Returns:
        Tensor[N, C, h', w'] with ``h' = (H - W) // S + 1``, ``w' = (W_img - W) // S + 1``.

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> w0, b0 = torch.randn(16, 3, 3, 3), torch.zeros(16)
        >>> ws, bs = torch.randn(2, 16, 16) / 4, torch.zeros(2, 16)
        >>> scnn_features(x, w0, b0, ws, bs).shape
        torch.Size([2, 16, 3, 3])
    """
    _checks.floating(x, "x")
    _checks.rank(x, "x", (4,), "[N, C_in, H, W]")
    _checks.floating(first_weight, "first_weight")
    _checks.rank(first_weight, "first_weight", (4,), "[C, C_in, P, P]")
    _checks.floating(first_bias, "first_bias")
    _checks.rank(first_bias, "first_bias", (1,), "[C]")
    weights = _stack(weights, "weights", 2)
    biases = _stack(biases, "biases", 1)
    window = _checks.positive_int(window, "window")
    stride = _checks.positive_int(stride, "stride")
    if not isinstance(patch_norm, bool):
        raise TypeError(f"patch_norm must be a bool, got {type(patch_norm).__name__}")
    _check_shapes(x, first_weight, first_bias, weights, biases, window)
    _check_frozen({"first_weight": first_weight, "first_bias": first_bias, "weights": weights, "biases": biases})
    save_masks = torch.is_grad_enabled() and x.requires_grad
    dtype = _checks.compute_dtype(x, native_cuda=True)
    if dtype != x.dtype:
        args = [t.to(dtype) for t in (x, first_weight, first_bias, weights, biases)]
        return _OPS.scnn_features(*args, window, stride, patch_norm, save_masks)[0].to(x.dtype)
    return _OPS.scnn_features(x, first_weight, first_bias, weights, biases, window, stride, patch_norm,
                              save_masks)[0]


@torch.library.register_fake("perceptual_ext::scnn_features")
def _scnn_features_fake(x, first_weight, first_bias, weights, biases, window, stride, patch_norm, save_masks):
    torch._check(x.dim() == 4 and first_weight.dim() == 4 and weights.dim() == 3,
                 lambda: "scnn_features: x, first_weight must be 4-D and weights 3-D")
    n, _, h, w = x.shape
    c, depth = first_weight.shape[0], weights.shape[0]
    ph, pw = pooled_length(h, window, stride), pooled_length(w, window, stride)
    out = x.new_empty((n, c, ph, pw))
    if not save_masks:
        return out, x.new_empty((0,), dtype=torch.int32)
    covered = ((ph - 1) * stride + window) * ((pw - 1) * stride + window) if ph * pw > 0 else 0
    return out, x.new_empty((n, depth + 1, covered, (c + _MASK_BITS - 1) // _MASK_BITS), dtype=torch.int32)


@torch.library.register_fake("perceptual_ext::scnn_features_backward")
def _scnn_features_backward_fake(grad, x, first_weight, weights, masks, window, stride, patch_norm):
    return x.new_empty(x.shape)
