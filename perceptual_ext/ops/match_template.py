"""Template matching: the NCC family as one batched, differentiable op, and peak finding."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import (
    _C,  # registers torch.ops.perceptual_ext
    _checks,
)

_OPS = torch.ops.perceptual_ext

METHODS = ("corr", "zero_mean_corr", "ssd", "ncc", "ssd_normed", "corr_normed")

# Relative bound below which a variance/energy counts as zero: the kernel's rounding bound for
# SAT statistics (csrc/common/match_template.h) and, for masked matching (whose window sums are
# correlations, possibly by FFT, not SAT corners), a looser 1e-9.
_MASKED_FLAT_TOLERANCE = 1e-9


def match_template(image: Tensor, templ: Tensor, method: str = "ncc", mask: Tensor | None = None) -> Tensor:
    r"""Slide every template over every image and score each window ("valid" positions only).

    For a window :math:`f` of the image and a template :math:`g` (channels summed; means
    :math:`\bar g, \bar f` are per channel and, for :math:`\bar f`, per window):

    ============== ==================================================================== ===================
    method         score                                                                OpenCV
    ============== ==================================================================== ===================
    corr           :math:`\sum g f`                                                     TM_CCORR
    zero_mean_corr :math:`\sum (g-\bar g) f`                                            TM_CCOEFF
    ssd            :math:`\sum (g-f)^2`                                                 TM_SQDIFF
    ncc            :math:`\frac{\sum (g-\bar g)(f-\bar f)}{\sqrt{\sum (g-\bar g)^2 \sum (f-\bar f)^2}}` TM_CCOEFF_NORMED
    ssd_normed     :math:`\sum (g-f)^2 / \sqrt{\sum g^2 \sum f^2}`                      TM_SQDIFF_NORMED
    corr_normed    :math:`\sum g f / \sqrt{\sum g^2 \sum f^2}`                          TM_CCORR_NORMED
    ============== ==================================================================== ===================

    NaN or inf in the image gives NaN in every window that holds it (and only there), NaN or inf in a
    template gives NaN in all its windows, for every method, and their gradients are NaN; a
    float32 score beyond float32's range (``ssd`` of values near 3e38) is +inf. Window statistics
    come from summed-area tables in float64. Flat windows of finite input are defined, never
    NaN/inf: ``ncc`` and ``corr_normed`` give 1 where both the window and the template are flat
    (zero variance, resp. zero energy) and 0 where exactly one is; ``ssd_normed`` gives 0 and 1.
    ``ncc``/``corr_normed`` are clamped to [-1, 1] (they leave it only by rounding); ``ssd`` and
    ``ssd_normed`` are clamped at 0 from below; ``ssd_normed`` is not clamped above (OpenCV
    clamps it to 1). Small templates use a direct vectorized kernel, large ones an FFT,
    chosen by a cost model; all K templates are matched in one call.

    Args:
        image (Tensor[N, C, H, W], [C, H, W] or [H, W]): float32/float64 (float16/bfloat16 are
            computed in float32 and returned in their dtype, on every device), any strides.
        templ (Tensor[K, C, h, w], [C, h, w] or [h, w]): same dtype and device, ``h <= H``, ``w <= W``.
        method (str): one of :data:`METHODS`.
        mask (Tensor[K or 1, 1, h, w] or [h, w], optional): per-pixel template weights with
            OpenCV's masked semantics (each of ``g`` and ``f`` multiplied by the mask, means
            weighted by it), for every method. Computed as a float64 composition of the ``corr``
            kernel (slower than the unmasked path); flat when a weighted variance/energy is
            below 1e-9 of the weighted energy.

    Returns:
        Tensor[N, K, H-h+1, W-w+1] for 4-D inputs; Tensor[H-h+1, W-w+1] when both are 2-D;
        Tensor[K, H-h+1, W-w+1] for a 3-D/2-D image with a 4-D template (and [H-h+1, W-w+1]
        for a 3-D image with a 3-D template). Differentiable with respect to image, templ and mask.

    Example:
        >>> image = torch.rand(240, 320)
        >>> score = match_template(image, image[100:132, 50:90])     # ncc, [209, 281]
        >>> (score.argmax() // score.shape[1]).item(), (score.argmax() % score.shape[1]).item()
        (100, 50)
    """
    _checks.choice(method, "method", METHODS)
    _checks.floating(image, "image")
    _checks.floating(templ, "templ")
    _checks.rank(image, "image", (2, 3, 4), "[N, C, H, W], [C, H, W] or [H, W]")
    _checks.rank(templ, "templ", (2, 3, 4), "[K, C, h, w], [C, h, w] or [h, w]")
    _checks.same_device(image, templ, "image", "templ")
    _checks.same_dtype(image, templ, "image", "templ")
    image4 = image if image.dim() == 4 else image.reshape((1,) * (4 - image.dim()) + tuple(image.shape))
    templ4 = templ if templ.dim() == 4 else templ.reshape((1,) * (4 - templ.dim()) + tuple(templ.shape))
    if image4.shape[1] != templ4.shape[1]:
        raise ValueError(f"image and templ must have the same number of channels, got {image4.shape[1]} "
                         f"and {templ4.shape[1]}")
    if templ4.shape[2] > image4.shape[2] or templ4.shape[3] > image4.shape[3]:
        raise ValueError(f"templ must not be larger than image, got templ {tuple(templ.shape)} and image "
                         f"{tuple(image.shape)}")
    if templ4.shape[2] == 0 or templ4.shape[3] == 0:
        raise ValueError(f"templ must have a non-empty spatial size, got {tuple(templ.shape)}")
    dtype = _checks.compute_dtype(image4)
    if dtype != image4.dtype:
        image4, templ4 = image4.to(dtype), templ4.to(dtype)
    if mask is None:
        out = _OPS.match_template(image4, templ4, method)
    else:
        out = _masked(image4, templ4, method, _mask4(mask, templ4))
    out = out.to(image.dtype)
    if image.dim() == 4:
        return out
    if templ.dim() == 4:
        return out[0]
    return out[0, 0]


def release_fft_workspace() -> None:
    """Free the transform buffers that :func:`match_template` keeps between calls on this thread.

    On the CPU the FFT path (large templates) keeps its padded inputs, spectra and inverse
    transform buffers per calling thread, up to 128 MiB (a 2048² float32 image with one
    template keeps 96 MiB), so that repeated calls do not fault in fresh pages each time.
    Call this when matching is done and the memory is wanted back; the next call allocates anew.
    """
    _C.release_fft_workspace()


def _mask4(mask, templ4: Tensor) -> Tensor:
    _checks.tensor(mask, "mask")
    if mask.is_complex():
        raise TypeError(f"mask must be a real tensor (bool, integer or floating), got dtype {mask.dtype}")
    _checks.same_device(mask, templ4, "mask", "templ")
    mask = mask.to(templ4.dtype)
    k, _, h, w = templ4.shape
    m = mask if mask.dim() == 4 else mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, k) or tuple(m.shape[2:]) != (h, w):
        raise ValueError(f"mask must be [K or 1, 1, h, w] = [{k} or 1, 1, {h}, {w}] or [h, w], got {tuple(mask.shape)}")
    return m.expand(k, 1, h, w)


def _per_channel_corr(image: Tensor, weight: Tensor) -> Tensor:
    """corr of every image channel with every single-channel weight: [N, C, K, Ho, Wo]."""
    n, c, hh, ww = image.shape
    out = _OPS.match_template(image.reshape(n * c, 1, hh, ww), weight, "corr")
    return out.reshape(n, c, *out.shape[1:])


def _masked(image: Tensor, templ: Tensor, method: str, mask: Tensor) -> Tensor:
    """OpenCV's masked matching as a float64 composition of the corr kernel (differentiable)."""
    f, g, m = image.double(), templ.double(), mask.double()
    a = m * m
    if method in ("zero_mean_corr", "ncc"):
        weight_sum = m.sum((2, 3), keepdim=True)  # [K, 1, 1, 1]
        safe_sum = torch.where(weight_sum != 0, weight_sum, torch.ones_like(weight_sum))
        g = g - (m * g).sum((2, 3), keepdim=True) / safe_sum  # weighted per-channel mean removed
        window_mean = _per_channel_corr(f, m) / safe_sum.view(1, 1, -1, 1, 1)  # [N, C, K, Ho, Wo]
        ag_sum = (a * g).sum((2, 3))  # [K, C]
        cross = _OPS.match_template(f, a * g, "corr") - (window_mean * ag_sum.t()[None, :, :, None, None]).sum(1)
        if method == "zero_mean_corr":
            return cross
        window_a = _per_channel_corr(f, a)
        a_sum = a.sum((1, 2, 3)).view(1, 1, -1, 1, 1)
        f_energy = _OPS.match_template(f.square().sum(1, keepdim=True), a, "corr")
        f_var = f_energy - (2 * window_mean * window_a - window_mean.square() * a_sum).sum(1)
        g_var = (a * g * g).sum((1, 2, 3)).view(1, -1, 1, 1)
        templ_energy = (a * templ.double().square()).sum((1, 2, 3)).view(1, -1, 1, 1)
        return _normalized(cross, f_var, g_var, f_energy, templ_energy,
                           flat_value=1.0, clamp=True)
    cross = _OPS.match_template(f, a * g, "corr")
    if method == "corr":
        return cross
    f_energy = _OPS.match_template(f.square().sum(1, keepdim=True), a, "corr")
    g_energy = (a * g * g).sum((1, 2, 3)).view(1, -1, 1, 1)
    ssd = (f_energy - 2 * cross + g_energy).clamp_min(0)
    if method == "ssd":
        return ssd
    if method == "corr_normed":
        return _normalized(cross, f_energy, g_energy, f_energy, g_energy, flat_value=1.0, clamp=True)
    return _normalized(ssd, f_energy, g_energy, f_energy, g_energy, flat_value=0.0, clamp=False)


def _normalized(num: Tensor, f_stat: Tensor, g_stat: Tensor, f_scale: Tensor, g_scale: Tensor, flat_value: float,
                clamp: bool) -> Tensor:
    """num / sqrt(f_stat g_stat) with the flat-window rule (both flat: flat_value, one: 1 - flat_value)."""
    flat_f = f_stat <= _MASKED_FLAT_TOLERANCE * f_scale
    flat_g = g_stat <= _MASKED_FLAT_TOLERANCE * g_scale
    any_flat = flat_f | flat_g
    den = torch.where(any_flat, torch.ones_like(num), (f_stat.clamp_min(0) * g_stat.clamp_min(0)).sqrt())
    score = num / den
    if clamp:
        score = score.clamp(-1, 1)
    defined = torch.where(flat_f & flat_g, torch.full_like(num, flat_value), torch.full_like(num, 1 - flat_value))
    return torch.where(any_flat, defined, score)


def find_peaks(score: Tensor, k: int = 1, min_distance: int = 1, maximize: bool = True) -> tuple[Tensor, Tensor]:
    """The ``k`` best positions of score maps, greedily suppressing neighbours (non-maximum suppression).

    Peaks are picked best first; each pick removes every position closer than ``min_distance``
    in Chebyshev distance (``max(|dy|, |dx|) < min_distance``), so reported peaks are at least
    ``min_distance`` apart. Use about the template size to get one peak per object. NaN scores
    are never picked.

    Args:
        score (Tensor[..., H, W]): score maps, e.g. the output of :func:`match_template`.
        k (int): peaks per map.
        min_distance (int): >= 1; 1 returns the k best distinct positions.
        maximize (bool): ``True`` for similarity scores (ncc, corr, ...), ``False`` for ssd.

    Returns:
        (locations LongTensor[..., k, 2] as (y, x), scores Tensor[..., k]). Where fewer than
        ``k`` positions remain, locations are -1 and scores NaN.

    Example:
        >>> score = torch.zeros(10, 10); score[2, 3] = 1; score[7, 8] = 0.5
        >>> find_peaks(score, k=2, min_distance=3)[0].tolist()
        [[2, 3], [7, 8]]
    """
    _checks.floating(score, "score")
    _checks.rank(score, "score", range(2, 64), "[..., H, W]")
    _checks.positive_int(k, "k")
    _checks.positive_int(min_distance, "min_distance")
    if not isinstance(maximize, bool):
        raise TypeError(f"maximize must be a bool, got {type(maximize).__name__}")
    lead, (h, w) = score.shape[:-2], score.shape[-2:]
    batch = 1
    for size in lead:
        batch *= size
    work = score.detach().reshape(batch, h * w).double()
    work = work if maximize else -work
    work = torch.nan_to_num(work, nan=-torch.inf, posinf=torch.finfo(torch.float64).max)
    locations = torch.full((batch, k, 2), -1, dtype=torch.long, device=score.device)
    values = torch.full((batch, k), torch.nan, dtype=score.dtype, device=score.device)
    if batch == 0 or h * w == 0:
        return locations.reshape(*lead, k, 2), values.reshape(*lead, k)
    rows = torch.arange(h, device=score.device).view(1, h, 1)
    cols = torch.arange(w, device=score.device).view(1, 1, w)
    flat_score = score.detach().reshape(batch, h * w)
    for i in range(min(k, h * w)):
        best, index = work.max(dim=1)
        found = best > -torch.inf
        y, x = index // w, index % w
        locations[:, i, 0] = torch.where(found, y, -1)
        locations[:, i, 1] = torch.where(found, x, -1)
        picked = flat_score.gather(1, index[:, None])[:, 0]
        values[:, i] = torch.where(found, picked, torch.full_like(picked, torch.nan))
        near = ((rows - y.view(-1, 1, 1)).abs() < min_distance) & ((cols - x.view(-1, 1, 1)).abs() < min_distance)
        work = work.masked_fill(near.reshape(batch, h * w), -torch.inf)
    return locations.reshape(*lead, k, 2), values.reshape(*lead, k)


@torch.library.register_fake("perceptual_ext::match_template")
def _match_template_fake(image, templ, method):
    torch._check(image.dim() == 4 and templ.dim() == 4, lambda: "match_template: expects 4-D image and templ")
    n, _, hh, ww = image.shape
    k, _, h, w = templ.shape
    return image.new_empty((n, k, hh - h + 1, ww - w + 1))


@torch.library.register_fake("perceptual_ext::match_template_backward")
def _match_template_backward_fake(grad, image, templ, method):
    return image.new_empty(image.shape), templ.new_empty(templ.shape)
