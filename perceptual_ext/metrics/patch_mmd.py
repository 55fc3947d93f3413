"""Exact patch MMD: the reference the random-Fourier-feature loss converges to."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _checks
from ..ops.rff_patch import pooled_size

# Kernel entries per chunk of windows: 2^22 float64 values (32 MiB) per [windows, W^2, W^2] block.
_CHUNK_ELEMENTS = 1 << 22


def _patches(x: Tensor, patch_size: int, channel_mean: bool) -> Tensor:
    """Reflect-padded P x P patches of every pixel, [N, H_map, W_map, C P P] (the op's layout)."""
    pad = patch_size // 2
    padded = F.pad(x, [pad] * 4, mode="reflect") if pad else x
    n, c = x.shape[:2]
    cols = F.unfold(padded, patch_size)  # [N, C P P, L]
    if channel_mean:
        cols = cols.view(n, c, patch_size * patch_size, -1)
        cols = (cols - cols.mean(dim=2, keepdim=True)).view(n, c * patch_size ** 2, -1)
    map_h = padded.shape[2] - patch_size + 1
    return cols.transpose(1, 2).reshape(n, map_h, -1, cols.shape[1])


def _window_patches(patches: Tensor, rows: Tensor, cols: Tensor, window: int) -> Tensor:
    """Patches of windows (rows[i], cols[i]) -> [N, windows, W^2, K]."""
    offsets = torch.arange(window, device=patches.device)
    r = (rows[:, None] + offsets)[:, :, None].expand(-1, window, window)
    c = (cols[:, None] + offsets)[:, None, :].expand(-1, window, window)
    return patches[:, r.reshape(len(rows), -1), c.reshape(len(rows), -1)]


def _mean_kernel(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """mean_ij exp(-|a_i - b_j|^2 / 2 s^2) over the last two dims of [..., L, K] batches."""
    sq = (a.square().sum(-1)[..., :, None] + b.square().sum(-1)[..., None, :] - 2 * a @ b.mT).clamp_min(0)
    return torch.exp(-sq / (2 * scale ** 2)).mean(dim=(-2, -1))


def exact_patch_mmd(x: Tensor, y: Tensor, patch_size: int = 3, sigma: float = 0.06, window: int = 32,
                    stride: int = 16, channel_mean: bool = False, reduction: str = "mean") -> Tensor:
    r"""Exact biased MMD² between the patch distributions of corresponding windows, averaged over windows.

    .. math::
        \mathrm{MMD}^2_{a,b} = \frac{1}{L^2}\sum_{i,j} k(p_i,p_j) - 2k(p_i,q_j) + k(q_i,q_j),
        \qquad k(p,q) = e^{-\|p-q\|^2 / 2\sigma_P^2}

    over the :math:`L = W^2` patches of window (a, b) — exactly the patches
    :func:`perceptual_ext.ops.rff_patch_features` pools (reflect padding P // 2, windows of
    ``avg_pool2d`` without padding) — with the conventions of
    :class:`perceptual_ext.losses.PatchMMDLoss`: images in [0, 1] mapped to [-1, 1],
    :math:`\sigma_P = \sigma P^2`, optional per-channel patch centring. Hence
    ``2 * PatchMMDLoss(...)(x, y)`` converges to this value as its number of features grows.

    Cost O(N h' w' W^4 C P^2): a reference for small images and windows. Computed in float64 in
    chunks of windows, so memory stays near 32 MiB beyond the patches (C P² times the images).

    Args:
        x, y (Tensor[N, C, H, W]): images in [0, 1], same shape.
        patch_size, sigma, window, stride, channel_mean: as in :class:`PatchMMDLoss`.
        reduction: ``'mean'`` over the batch, ``'sum'``, or ``'none'`` (Tensor[N]).

    Returns:
        float64 scalar, or Tensor[N] with ``reduction='none'``.

    Example:
        >>> x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
        >>> exact_patch_mmd(x, y, window=8, stride=4).shape
        torch.Size([])
    """
    for t, name in ((x, "x"), (y, "y")):
        _checks.floating(t, name)
        _checks.rank(t, name, (4,), "[N, C, H, W]")
    _checks.same_device(x, y, "x", "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    _checks.positive_int(patch_size, "patch_size")
    scale = _checks.positive_float(sigma, "sigma") * patch_size ** 2
    _checks.positive_int(window, "window")
    _checks.positive_int(stride, "stride")
    reduction = _checks.reduction(reduction)
    h, w = x.shape[2:]
    if patch_size // 2 >= min(h, w):
        raise ValueError(f"x must be larger than the reflect padding {patch_size // 2}, got {h}x{w}")
    out_h, out_w = pooled_size(h, w, patch_size, window, stride)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"window ({window}) is larger than the patch map of x ({h}x{w} image, patch size "
                         f"{patch_size})")
    px = _patches(x.double() * 2 - 1, patch_size, channel_mean)
    py = _patches(y.double() * 2 - 1, patch_size, channel_mean)
    rows = torch.arange(out_h, device=x.device).repeat_interleave(out_w) * stride
    cols = torch.arange(out_w, device=x.device).repeat(out_h) * stride
    per_chunk = max(1, _CHUNK_ELEMENTS // (max(1, x.shape[0]) * window ** 4))
    total = x.new_zeros(x.shape[0], dtype=torch.float64)
    for start in range(0, len(rows), per_chunk):
        r, c = rows[start:start + per_chunk], cols[start:start + per_chunk]
        a, b = _window_patches(px, r, c, window), _window_patches(py, r, c, window)
        mmd = _mean_kernel(a, a, scale) - 2 * _mean_kernel(a, b, scale) + _mean_kernel(b, b, scale)
        total += mmd.sum(dim=1)
    return _checks.reduce(total / len(rows), reduction)
