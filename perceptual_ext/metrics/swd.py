r"""Sliced Wasserstein distance between two sets of images, as Karras et al. define it.

Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs" (ICLR 2018), §5 and their public
evaluation code: the distance between the distributions of local image patches of two image
sets, at every level of a Laplacian pyramid. Seed 004 (Amir & Weiss) judges its GIM and
super-resolution results with it. The definition, step by step:

1. **Pyramid.** Each image is decomposed into a Laplacian pyramid with the 5×5 binomial filter
   ``[1, 4, 6, 4, 1]ᵀ[1, 4, 6, 4, 1] / 256`` (OpenCV's ``pyrDown``/``pyrUp``, mirror borders):
   ``down(x) = (k * x)[::2, ::2]``, ``up(x) = (4k) * zero_upsample(x)``, level ``l`` is
   ``g_l − up(g_{l+1})`` and the last level is the coarsest Gaussian level itself. There is one
   level per resolution ``r = min(H, W), r/2, …`` while ``r ≥ 16``.
2. **Descriptors.** From every level, ``nhoods_per_image`` 7×7 neighbourhoods (all channels) are
   taken per image at uniformly random positions that fit inside the level.
3. **Normalization per set.** Each set's descriptors at a level are normalized per channel:
   minus the mean and divided by the standard deviation over all of that set's descriptors and
   their 7×7 positions. Then each descriptor is flattened to a vector of ``C·49`` numbers.
4. **Sliced Wasserstein.** ``dir_repeats`` times, ``dirs_per_repeat`` random unit directions are
   drawn (Gaussian, normalized); both sets are projected on them, the projections are sorted per
   direction, and the mean absolute difference of the sorted projections (the 1-D Wasserstein-1
   distance between the two empirical distributions, averaged over directions) is taken. The
   level's distance is the mean over the repeats.
5. The result is reported ×10³, per level (finest first) and averaged over the levels.

Randomness (positions and directions) comes from one ``numpy.random.default_rng(seed)`` drawn
in a fixed order — the positions of set A level by level (x then y), those of set B, then the
directions level by level and repeat by repeat — so the metric is deterministic, identical on
every device, and a plain numpy program can reproduce it draw for draw (tests/test_metrics.py
does). Everything is computed in float64.

Where we had to choose (Karras's code assumes equally large sets of 3-channel power-of-two
images): sets of different sizes draw the same number of descriptors,
``nhoods_per_image · max(N_a, N_b)``, spread evenly over each set's images (with equal sizes
this is exactly Karras's sampling); odd level sizes crop ``up(·)`` to the finer level's size; a
channel whose descriptors have zero spread (a flat image) is centred but not scaled. Because the
two sets draw their neighbourhoods independently, a set scored against itself gives a small
positive number, not zero; it shrinks as ``nhoods_per_image`` grows.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _checks

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _binomial_kernel(channels: int, dtype, device) -> Tensor:
    k = torch.tensor(_BINOMIAL, dtype=dtype, device=device)
    return (torch.outer(k, k) / 256.0).expand(channels, 1, 5, 5).contiguous()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def _pyr_down(x: Tensor, kernel: Tensor) -> Tensor:
    return _blur(x, kernel)[:, :, ::2, ::2]


def _pyr_up(x: Tensor, kernel: Tensor, size) -> Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, kernel * 4.0)[:, :, :size[0], :size[1]]


def default_num_levels(height: int, width: int, min_resolution: int = 16) -> int:
    """Karras's level count: one per resolution min(H, W), /2, ... while it is >= min_resolution."""
    levels, resolution = 0, min(height, width)
    while resolution >= min_resolution:
        levels += 1
        resolution //= 2
    return max(levels, 1)


def laplacian_pyramid(images: Tensor, num_levels: int) -> List[Tensor]:
    """Laplacian pyramid of ``images`` [N, C, H, W] with the 5×5 binomial filter, finest level first.

    Every level but the last is a band-pass ``g_l − up(g_{l+1})``; the last is the coarsest
    Gaussian level, so ``up`` of the levels summed from the coarsest reconstructs the input.
    """
    _checks.floating(images, "images")
    _checks.rank(images, "images", (4,), "[N, C, H, W]")
    _checks.positive_int(num_levels, "num_levels")
    kernel = _binomial_kernel(images.shape[1], images.dtype, images.device)
    levels, current = [], images
    for _ in range(num_levels - 1):
        if min(current.shape[-2:]) < 3:
            raise ValueError(f"images of size {tuple(images.shape[-2:])} are too small for {num_levels} pyramid levels")
        down = _pyr_down(current, kernel)
        levels.append(current - _pyr_up(down, kernel, current.shape[-2:]))
        current = down
    levels.append(current)
    return levels


def _draw_descriptors(level: Tensor, count: int, nhood_size: int, rng: np.random.Generator) -> Tensor:
    """``count`` random nhood_size² neighbourhoods of ``level`` [n, C, h, w] -> [count, C, s, s]."""
    n, c, h, w = level.shape
    half = nhood_size // 2
    image_index = np.arange(count) * n // count  # evenly over the set's images, in order
    xs = rng.integers(half, w - half, size=count)
    ys = rng.integers(half, h - half, size=count)
    device = level.device
    offsets = torch.arange(-half, half + 1, device=device)
    img = torch.as_tensor(image_index, device=device).view(-1, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, -1, 1, 1)
    rows = (torch.as_tensor(ys, device=device).view(-1, 1, 1, 1) + offsets.view(1, 1, -1, 1))
    cols = (torch.as_tensor(xs, device=device).view(-1, 1, 1, 1) + offsets.view(1, 1, 1, -1))
    return level[img, chan, rows, cols]


def _normalize_descriptors(desc: Tensor) -> Tensor:
    """Per-channel standardization over all descriptors of one set, flattened to [M, C·s²]."""
    desc = desc - desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True, correction=0)
    desc = desc / torch.where(std > 0, std, torch.ones_like(std))
    return desc.reshape(desc.shape[0], -1)


def _sort_last(t: Tensor) -> Tensor:
    if t.device.type == "cpu":  # numpy's sort is several times faster than torch.sort on the CPU
        return torch.from_numpy(np.sort(t.numpy(), axis=-1))
    return torch.sort(t, dim=-1).values


def _sliced_wasserstein(a: Tensor, b: Tensor, dir_repeats: int, dirs_per_repeat: int,
                        rng: np.random.Generator) -> Tensor:
    # One draw of [R, D, K] normals is, value for value, R successive draws of [D, K].
    dirs = rng.standard_normal((dir_repeats, a.shape[1], dirs_per_repeat))
    dirs /= np.sqrt(np.square(dirs).sum(axis=1, keepdims=True))
    dirs = torch.as_tensor(dirs, dtype=a.dtype, device=a.device).transpose(1, 2)  # [R, K, D]
    # Projections as [R, K, M] so that each direction's M values are contiguous for the sort.
    proj_a = _sort_last(dirs @ a.T)
    proj_b = _sort_last(dirs @ b.T)
    # mean over neighbourhoods and directions, then over repeats (equal counts: one mean)
    return (proj_a - proj_b).abs().mean()


def _image_set(x, name: str) -> Tensor:
    _checks.floating(x, name)
    _checks.rank(x, name, (3, 4), "[N, C, H, W] (a set of images) or [C, H, W] (one image)")
    x = x[None] if x.dim() == 3 else x
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one image, got an empty batch")
    return x


@torch.no_grad()
def swd(set_a: Tensor, set_b: Tensor, nhood_size: int = 7, nhoods_per_image: int = 128, dir_repeats: int = 4,
        dirs_per_repeat: int = 128, num_levels: Optional[int] = None, min_resolution: int = 16, seed: int = 0,
        return_levels: bool = False):
    r"""Sliced Wasserstein distance ×10³ between the patch distributions of two image sets.

    Karras et al.'s progressive-GAN evaluation metric, exactly as defined in the module
    docstring: Laplacian pyramid (5×5 binomial), random 7×7 neighbourhoods, per-set channel
    normalization, random unit directions, sorted projections; per level and averaged.

    .. math::
        \mathrm{SWD}_l = 10^3 \cdot \frac{1}{R D M} \sum_{r, d, m}
        \big| \mathrm{sort}(A_l \theta_{rd})_m - \mathrm{sort}(B_l \theta_{rd})_m \big|

    Args:
        set_a (Tensor[N_a, C, H, W] or Tensor[C, H, W]): the first set (e.g. real images), in any
            consistent value range (each set is standardized).
        set_b (Tensor[N_b, C, H, W] or Tensor[C, H, W]): the second set (e.g. generated images).
        nhood_size: side of the square neighbourhoods (7).
        nhoods_per_image: neighbourhoods drawn per image and level (128).
        dir_repeats: how many times directions are redrawn (4).
        dirs_per_repeat: random directions per repeat (128).
        num_levels: pyramid levels; by default one per resolution ≥ ``min_resolution``.
        min_resolution: the coarsest resolution of the default pyramid (16).
        seed: seed of the positions and directions.
        return_levels: also return the per-level distances.

    Returns:
        A float64 scalar tensor, the mean over levels; with ``return_levels=True`` a pair
        ``(mean, per_level)`` where ``per_level`` is Tensor[L], finest level first.

    Example:
        >>> real, fake = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64).pow(2)
        >>> mean, levels = swd(real, fake, return_levels=True)
        >>> levels.shape
        torch.Size([3])
    """
    a = _image_set(set_a, "set_a")
    b = _image_set(set_b, "set_b")
    _checks.same_device(a, b, "set_a", "set_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"set_a and set_b must hold images of the same [C, H, W], got {tuple(a.shape[1:])} "
                         f"and {tuple(b.shape[1:])}")
    for value, name in ((nhood_size, "nhood_size"), (nhoods_per_image, "nhoods_per_image"),
                        (dir_repeats, "dir_repeats"), (dirs_per_repeat, "dirs_per_repeat"),
                        (min_resolution, "min_resolution")):
        _checks.positive_int(value, name)
    if nhood_size % 2 == 0:
        raise ValueError(f"nhood_size must be odd, got {nhood_size}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    h, w = a.shape[-2:]
    if num_levels is None:
        num_levels = default_num_levels(h, w, min_resolution)
    _checks.positive_int(num_levels, "num_levels")
    coarsest = min(h, w) >> (num_levels - 1)
    if coarsest < nhood_size:
        raise ValueError(f"images of size {h}x{w} are too small for {num_levels} levels of {nhood_size}x{nhood_size} "
                         f"neighbourhoods (the coarsest level would be about {coarsest} pixels)")

    rng = np.random.default_rng(seed)
    count = nhoods_per_image * max(a.shape[0], b.shape[0])
    descriptors = []
    for images in (a, b):
        levels = laplacian_pyramid(images.to(torch.float64), num_levels)
        descriptors.append([_normalize_descriptors(_draw_descriptors(level, count, nhood_size, rng))
                            for level in levels])
    per_level = torch.stack([
        _sliced_wasserstein(da, db, dir_repeats, dirs_per_repeat, rng) for da, db in zip(*descriptors)]) * 1e3
    mean = per_level.mean()
    return (mean, per_level) if return_levels else mean


__all__ = ["swd", "laplacian_pyramid", "default_num_levels"]
