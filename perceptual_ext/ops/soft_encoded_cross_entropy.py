"""Colorization cross-entropy with soft-encoded targets (Zhang, Isola, Efros 2016), fused.

The per-pixel loss is computed from the logits and the target ab image directly: the nearest bins
are found by a search over the bins' grid (no distance to every bin), the log-sum-exp is taken per
pixel, and the backward pass recomputes the soft encoding and the softmax (from the saved
log-sum-exp, ``[N, H, W]``). No ``[N, Q, H, W]`` target, distance or log-softmax tensor exists.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import (
    _C,  # noqa: F401  (registers torch.ops.perceptual_ext)
    _checks,
)

_OPS = torch.ops.perceptual_ext
#: Most neighbours a soft encoding may use (csrc/common/soft_encoded_cross_entropy.h).
MAX_NEIGHBORS = 32


def soft_encoded_cross_entropy(logits: Tensor, ab: Tensor, bins: Tensor, weights: Optional[Tensor] = None,
                               neighbors: int = 5, sigma: float = 5.0) -> Tensor:
    r"""Per-pixel cross-entropy between softmax(logits) and the soft-encoded target colour.

    For each pixel with target colour :math:`y = (a, b)`, let :math:`q_1, \dots, q_k` be the
    ``neighbors`` bins nearest to :math:`y` (ties: lower bin index first) at distances
    :math:`d_j`, and :math:`Z_j \propto \exp(-d_j^2 / 2\sigma^2)` with :math:`\sum_j Z_j = 1`:

    .. math::
        \ell_{n,h,w} = v \Bigl(\log \sum_{q=1}^{Q} e^{x_{n,q,h,w}} - \sum_{j=1}^{k} Z_j\, x_{n,q_j,h,w}\Bigr),
        \qquad v = \text{weights}[q_1] \ (1 \text{ without weights})

    and :math:`\partial \ell / \partial x_q = v\,(\mathrm{softmax}(x)_q - Z_q)`. The bins must lie on
    a regular square grid (any subset of it, such as the 313 in-gamut bins of :func:`ab_bins
    <perceptual_ext.losses.ab_bins>`): the nearest bins are found by searching the grid in growing
    rings around the target's cell. A pixel whose target is NaN or infinite has loss NaN.

    Args:
        logits (Tensor[N, Q, H, W]): unnormalized scores; any strides. float32/float64
            (float16/bfloat16 computed in float32 and returned in their dtype).
        ab (Tensor[N, 2, H, W]): target colours (converted to the logits' dtype). Not differentiated.
        bins (Tensor[Q, 2]): bin centres on a square grid, one per channel of ``logits``.
        weights (Tensor[Q], optional): class-rebalancing weight of each bin; ``None``: v = 1.
        neighbors (int): k, the number of nearest bins of the soft encoding, 1 to min(Q, 32).
        sigma (float): the Gaussian's standard deviation, in ab units.

    Returns:
        Tensor[N, H, W]: the loss of every pixel.

    Example:
        >>> from perceptual_ext.losses import ab_bins
        >>> bins = ab_bins()
        >>> logits = torch.randn(2, 313, 8, 8, requires_grad=True)
        >>> ab = torch.randn(2, 2, 8, 8) * 20
        >>> soft_encoded_cross_entropy(logits, ab, bins).mean().backward()
    """
    _checks.floating(logits, "logits")
    _checks.rank(logits, "logits", (4,), "[N, Q, H, W]")
    _checks.floating(ab, "ab")
    _checks.floating(bins, "bins")
    n, q, h, w = logits.shape
    if q < 1:
        raise ValueError(f"logits must have at least one channel (class), got shape {tuple(logits.shape)}")
    if ab.dim() != 4 or ab.shape[1] != 2 or (ab.shape[0], ab.shape[2], ab.shape[3]) != (n, h, w):
        raise ValueError(f"ab must be [N, 2, H, W] = [{n}, 2, {h}, {w}] (N, H, W of logits), "
                         f"got shape {tuple(ab.shape)}")
    if bins.dim() != 2 or bins.shape[1] != 2 or bins.shape[0] != q:
        raise ValueError(f"bins must be [Q, 2] with Q = {q} (the channels of logits), got shape {tuple(bins.shape)}")
    _checks.same_device(logits, ab, "logits", "ab")
    _checks.same_device(logits, bins, "logits", "bins")
    if weights is not None:
        _checks.floating(weights, "weights")
        if weights.shape != (q,):
            raise ValueError(f"weights must be [Q] with Q = {q} (the channels of logits), "
                             f"got shape {tuple(weights.shape)}")
        _checks.same_device(logits, weights, "logits", "weights")
    _checks.positive_int(neighbors, "neighbors")
    if neighbors > min(q, MAX_NEIGHBORS):
        raise ValueError(f"neighbors must be at most min(Q, {MAX_NEIGHBORS}) = {min(q, MAX_NEIGHBORS)}, "
                         f"got {neighbors}")
    sigma = _checks.positive_float(sigma, "sigma")
    dtype = _checks.compute_dtype(logits)
    x = logits.to(dtype)
    empty = x.new_empty(0)
    loss, _ = _OPS.soft_encoded_cross_entropy(x, ab.to(dtype), bins.to(dtype),
                                               empty if weights is None else weights.to(dtype), neighbors, sigma)
    return loss.to(logits.dtype)


@torch.library.register_fake("perceptual_ext::soft_encoded_cross_entropy")
def _fake(logits, ab, bins, weights, neighbors, sigma):
    torch._check(logits.dim() == 4, lambda: "soft_encoded_cross_entropy: logits must be [N, Q, H, W]")
    torch._check(ab.dim() == 4 and ab.shape[1] == 2, lambda: "soft_encoded_cross_entropy: ab must be [N, 2, H, W]")
    n, _, h, w = logits.shape
    return logits.new_empty((n, h, w)), logits.new_empty((n, h, w))


@torch.library.register_fake("perceptual_ext::soft_encoded_cross_entropy_backward")
def _backward_fake(grad, logits, ab, bins, weights, lse, neighbors, sigma):
    torch._check(logits.dim() == 4, lambda: "soft_encoded_cross_entropy_backward: logits must be [N, Q, H, W]")
    return logits.new_empty(logits.shape)
