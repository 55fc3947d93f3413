r"""Colorization as classification (Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016).

The ab plane is quantized into the 313 in-gamut bins of a grid of step 10 (:func:`ab_bins`); a
network predicts a distribution over them per pixel and is trained with the cross-entropy against
a soft encoding of the true colour (:func:`soft_encode`), each pixel weighted by how rare its colour
is (:func:`estimate_ab_prior`, :func:`rebalance_weights`): :class:`ColorizationLoss`, computed by the
fused op :func:`~perceptual_ext.ops.soft_encoded_cross_entropy`. A prediction is decoded into a
colour by the annealed mean (:func:`annealed_mean`).
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ..ops.soft_encoded_cross_entropy import MAX_NEIGHBORS, soft_encoded_cross_entropy

#: Number of in-gamut ab bins.
NUM_BINS = 313
#: Grid step of the bins, in ab units.
GRID_STEP = 10.0

# The paper's 313 bins (the authors' resources/pts_in_hull.npy), as the range of b of each column
# a = -90, -80, ..., 100 of the grid of step 10 (every column is contiguous), in the file's order:
# a ascending, then b ascending.
_BIN_COLUMNS = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100), -40: (-40, 100),
    -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100), 10: (-80, 90), 20: (-80, 90),
    30: (-90, 90), 40: (-100, 90), 50: (-100, 80), 60: (-110, 80), 70: (-110, 80), 80: (-110, 70),
    90: (-110, 70), 100: (-90, 0),
}


def ab_bins(dtype: torch.dtype = torch.float32, device: Union[str, torch.device, None] = None) -> Tensor:
    r"""The 313 in-gamut ab bin centres of Zhang et al. (2016), ``[313, 2]`` (columns a, b).

    Centres on the grid of step 10, :math:`a \in [-90, 100]`, :math:`b \in [-110, 100]`, ordered
    as the authors' ``pts_in_hull.npy`` (a ascending, then b). This is the published table,
    shipped as data: no script of the authors derives it, and the rule one would guess does not
    reproduce it. The grid cells reached by sRGB colours (scikit-image's ``rgb2lab`` of the whole
    8-bit RGB cube, ab rounded to the grid) are 261 bins, all of them in this table; the other 52
    lie on the gamut's rim, where no sRGB colour rounds to them (the tests check the inclusion).

    Args:
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Tensor[313, 2]

    Example:
        >>> bins = ab_bins()
        >>> bins.shape, bins[0].tolist()
        (torch.Size([313, 2]), [-90.0, 50.0])
    """
    rows = [(a, b) for a, (lo, hi) in _BIN_COLUMNS.items() for b in range(lo, hi + 1, 10)]
    return torch.tensor(rows, dtype=dtype, device=device)


def _bins_like(x: Tensor, bins: Optional[Tensor]) -> Tensor:
    if bins is None:
        return ab_bins(dtype=x.dtype, device=x.device)
    _checks.floating(bins, "bins")
    if bins.dim() != 2 or bins.shape[1] != 2:
        raise ValueError(f"bins must be [Q, 2], got shape {tuple(bins.shape)}")
    return bins.to(device=x.device, dtype=x.dtype)


def _check_ab(ab, name: str = "ab") -> Tensor:
    _checks.floating(ab, name)
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2, H, W] (the a and b channels of Lab), got shape {tuple(ab.shape)}")
    return ab


def soft_encode(ab: Tensor, neighbors: int = 5, sigma: float = 5.0, bins: Optional[Tensor] = None) -> Tensor:
    r"""Soft encoding of ab colours over the bins: the reference target of the colorization loss.

    Each pixel's colour is spread over its ``neighbors`` nearest bins (ties: lower bin index
    first) with Gaussian weights, normalized:

    .. math::
        Z_{n,q,h,w} = \frac{\exp(-\lVert y_{n,h,w} - c_q\rVert^2 / 2\sigma^2)}
                           {\sum_{j=1}^{k} \exp(-\lVert y_{n,h,w} - c_{q_j}\rVert^2 / 2\sigma^2)}
        \ \text{ for the } k \text{ nearest bins } q_j, \text{ else } 0.

    The paper uses k = 5 and σ = 5; the authors' released training code uses 10 neighbours. This
    plain composition materializes ``[N, Q, H, W]`` (and the distances to all Q bins): use it to
    inspect targets; the loss uses the fused op, which never forms it.

    Args:
        ab (Tensor[N, 2, H, W]): target a, b (e.g. ``rgb_to_lab(x)[:, 1:]``).
        neighbors (int): k, the number of bins each pixel is spread over.
        sigma (float): σ of the Gaussian, in ab units.
        bins (Tensor[Q, 2], optional): bin centres; default :func:`ab_bins`.

    Returns:
        Tensor[N, Q, H, W]: non-negative, summing to 1 over Q.

    Example:
        >>> z = soft_encode(torch.zeros(1, 2, 4, 4))
        >>> z.shape, round(float(z.sum(1).mean()), 6)
        (torch.Size([1, 313, 4, 4]), 1.0)
    """
    _check_ab(ab)
    bins = _bins_like(ab, bins)
    _checks.positive_int(neighbors, "neighbors")
    if neighbors > bins.shape[0]:
        raise ValueError(f"neighbors must be at most the number of bins {bins.shape[0]}, got {neighbors}")
    sigma = _checks.positive_float(sigma, "sigma")
    y = ab.permute(0, 2, 3, 1).unsqueeze(-2)                       # [N, H, W, 1, 2]
    d2 = (y - bins).square().sum(-1)                               # [N, H, W, Q]
    d2_sorted, order = torch.sort(d2, dim=-1, stable=True)
    near, idx = d2_sorted[..., :neighbors], order[..., :neighbors]
    w = torch.exp(-(near - near[..., :1]) / (2.0 * sigma * sigma))
    w = w / w.sum(-1, keepdim=True)
    z = torch.zeros_like(d2).scatter_(-1, idx, w)
    return z.permute(0, 3, 1, 2).contiguous()


def _cell_lookup(bins: Tensor):
    """Nearest bin of every cell of the bins' grid of step 10 (-1 outside the set)."""
    b = bins.double()
    origin = b.min(0).values
    cells = torch.round((b - origin) / GRID_STEP).long()
    size = cells.max(0).values + 1
    table = torch.full((int(size[0]), int(size[1])), -1, dtype=torch.long, device=bins.device)
    table[cells[:, 0], cells[:, 1]] = torch.arange(bins.shape[0], device=bins.device)
    return table, origin


def nearest_bin(ab: Tensor, bins: Optional[Tensor] = None) -> Tensor:
    """Index of the nearest bin of every pixel, ``[N, H, W]`` (int64); for ``bins`` on the grid of step 10.

    Colours whose grid cell is not a bin (outside the sRGB gamut) are assigned by distance to all bins.
    """
    _check_ab(ab)
    bins = _bins_like(ab, bins)
    table, origin = _cell_lookup(bins)
    y = ab.permute(0, 2, 3, 1).double()
    cell = torch.round((y - origin.to(y.device)) / GRID_STEP).long()
    inside = ((cell >= 0) & (cell < torch.tensor(table.shape, device=cell.device))).all(-1)
    cell = torch.where(inside.unsqueeze(-1), cell, torch.zeros_like(cell))
    index = torch.where(inside, table[cell[..., 0], cell[..., 1]], torch.full_like(cell[..., 0], -1))
    missing = index < 0
    if bool(missing.any()):
        far = y[missing]
        index[missing] = torch.cdist(far, bins.double()).argmin(-1)
    return index


def _image_batch(images: Tensor, name: str = "images") -> Tensor:
    _checks.floating(images, name)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be [N, 3, H, W] or [3, H, W] RGB in [0, 1], got shape {tuple(images.shape)}")
    return images


def _images(images) -> Iterable[Tensor]:
    from ..data.datasets import list_images
    from ..data.images import load_image

    if isinstance(images, Tensor):
        yield _image_batch(images)
        return
    if isinstance(images, (str, os.PathLike)):
        paths = list_images(os.fspath(images))
        if not paths:
            raise ValueError(f"images: no image files in folder {os.fspath(images)!r}")
    elif isinstance(images, Sequence) and images and all(isinstance(t, Tensor) for t in images):
        for i, t in enumerate(images):
            yield _image_batch(t, f"images[{i}]")
        return
    elif isinstance(images, Sequence) and all(isinstance(p, (str, os.PathLike)) for p in images):
        paths = [os.fspath(p) for p in images]
    else:
        raise TypeError(f"images must be a tensor, a list of tensors, a folder or a list of image paths, got "
                        f"{type(images).__name__}")
    from tqdm.auto import tqdm

    for path in tqdm(paths, desc="ab prior", unit="image", disable=len(paths) < 20):
        yield load_image(path, channels=3).unsqueeze(0)


def estimate_ab_prior(images, sigma: float = 5.0, bins: Optional[Tensor] = None) -> Tensor:
    r"""Empirical distribution of the bins over a set of images, smoothed over the ab plane.

    Every pixel counts for its nearest bin; the histogram :math:`p` is smoothed with a Gaussian
    of σ (ab units) over the bin centres and renormalized, as in the paper:

    .. math::
        \tilde p_q \propto \sum_r p_r \exp\!\bigl(-\lVert c_q - c_r\rVert^2 / 2\sigma^2\bigr)

    Args:
        images: RGB images in [0, 1]: a tensor ``[N, 3, H, W]`` (or ``[3, H, W]``), a list of
            such tensors (any sizes), a folder of image files, or a list of image paths (read one
            at a time). Every pixel counts once.
        sigma (float): σ of the smoothing Gaussian; 0 gives the raw histogram.
        bins (Tensor[Q, 2], optional): bin centres on the grid of step 10; default :func:`ab_bins`.

    Returns:
        Tensor[Q] (float64, on the CPU): a probability distribution.

    Example:
        >>> prior = estimate_ab_prior(torch.rand(2, 3, 16, 16))
        >>> prior.shape, round(float(prior.sum()), 6)
        (torch.Size([313]), 1.0)
    """
    from ..data.color import rgb_to_lab

    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0 or sigma == float("inf"):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    counts = None
    for batch in _images(images):
        ab = rgb_to_lab(batch.double())[:, 1:]
        ref = _bins_like(ab, bins)
        index = nearest_bin(ab, ref).flatten().cpu()
        c = torch.bincount(index, minlength=ref.shape[0]).double()
        counts = c if counts is None else counts + c
        centres = ref.double().cpu()
    if counts is None or counts.sum() == 0:
        raise ValueError("images must hold at least one pixel")
    p = counts / counts.sum()
    if sigma > 0:
        kernel = torch.exp(-torch.cdist(centres, centres).square() / (2.0 * sigma * sigma))
        p = kernel @ p
        p = p / p.sum()
    return p


def _check_prior(prior, classes: int) -> Tensor:
    if not isinstance(prior, Tensor):
        prior = torch.as_tensor(prior, dtype=torch.float64)
    _checks.floating(prior, "prior")
    if prior.shape != (classes,):
        raise ValueError(f"prior must be a distribution over the {classes} bins, [{classes}], got shape "
                         f"{tuple(prior.shape)}")
    p = prior.detach().double().cpu()
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-4:
        raise ValueError(f"prior must be a probability distribution (finite, >= 0, summing to 1), got sum "
                         f"{float(p.sum()):.6g} and min {float(p.min()):.6g}")
    return prior


def rebalance_weights(prior: Tensor, rebalance: float = 0.5) -> Tensor:
    r"""Class-rebalancing weights of the bins from their prior (Zhang et al., eq. 3–4).

    .. math::
        w_q \propto \Bigl((1 - \lambda)\,\tilde p_q + \frac{\lambda}{Q}\Bigr)^{-1},
        \qquad \sum_q \tilde p_q\, w_q = 1

    Args:
        prior (Tensor[Q]): a probability distribution over the bins (:func:`estimate_ab_prior`).
        rebalance (float): λ in [0, 1]; 0 reweights fully by rarity, 1 gives w = 1 (no rebalancing).

    Returns:
        Tensor[Q] in the prior's dtype and device.
    """
    prior = _check_prior(prior, prior.shape[0] if isinstance(prior, Tensor) and prior.dim() == 1 else NUM_BINS)
    if isinstance(rebalance, bool) or not isinstance(rebalance, (int, float)) or not 0.0 <= rebalance <= 1.0:
        raise ValueError(f"rebalance must be a number in [0, 1], got {rebalance!r}")
    q = prior.shape[0]
    w = 1.0 / ((1.0 - rebalance) * prior + rebalance / q)
    return w / (prior * w).sum()


def colorization_loss(logits: Tensor, ab: Tensor, prior: Optional[Tensor] = None, rebalance: float = 0.5,
                      neighbors: int = 5, sigma: float = 5.0, reduction: str = "mean") -> Tensor:
    r"""Functional form of :class:`ColorizationLoss` (the weights are recomputed at every call)."""
    return ColorizationLoss(prior, rebalance, neighbors, sigma, reduction).to(logits.device)(logits, ab)


class ColorizationLoss(nn.Module):
    r"""Multinomial cross-entropy over the 313 ab bins with soft-encoded targets and class rebalancing.

    Per sample, the mean over pixels of the rebalanced cross-entropy (Zhang et al., eq. 2):

    .. math::
        L_n = -\frac{1}{HW} \sum_{h,w} v(Z_{n,h,w}) \sum_q Z_{n,q,h,w} \log \mathrm{softmax}(x_{n,:,h,w})_q,
        \qquad v = w_{\arg\max_q Z_{n,q,h,w}}

    with Z the soft encoding of the target (:func:`soft_encode`) and w the rebalancing weights of
    the prior (:func:`rebalance_weights`); without a prior v = 1. Computed by the fused
    :func:`~perceptual_ext.ops.soft_encoded_cross_entropy`: no ``[N, 313, H, W]`` target exists.
    Buffers only (the bins and the weights).

    Args:
        prior (Tensor[313], optional): bin distribution of the training set
            (:func:`estimate_ab_prior`); ``None`` turns rebalancing off.
        rebalance (float): λ, the share of the uniform distribution mixed into the prior (paper: 0.5).
        neighbors (int): bins per soft-encoded target (paper: 5; the authors' training code: 10).
        sigma (float): σ of the soft encoding, in ab units (paper: 5).
        reduction (str): ``'mean'`` | ``'sum'`` | ``'none'`` over the batch (``'none'``: ``[N]``).

    Shape:
        - logits: ``[N, 313, H, W]``, the network's scores (any floating dtype).
        - ab: ``[N, 2, H, W]``, the target colours at the logits' resolution
          (e.g. ``F.interpolate(rgb_to_lab(x)[:, 1:], scale_factor=0.25, mode="area")``).

    Example:
        >>> loss_fn = ColorizationLoss(prior=estimate_ab_prior(torch.rand(4, 3, 32, 32)))
        >>> logits = torch.randn(2, 313, 8, 8, requires_grad=True)
        >>> loss_fn(logits, torch.randn(2, 2, 8, 8) * 30).backward()
    """

    def __init__(self, prior: Optional[Tensor] = None, rebalance: float = 0.5, neighbors: int = 5,
                 sigma: float = 5.0, reduction: str = "mean"):
        super().__init__()
        self.reduction = _checks.reduction(reduction)
        _checks.positive_int(neighbors, "neighbors")
        if neighbors > min(NUM_BINS, MAX_NEIGHBORS):
            raise ValueError(f"neighbors must be at most {MAX_NEIGHBORS}, got {neighbors}")
        self.neighbors = neighbors
        self.sigma = _checks.positive_float(sigma, "sigma")
        self.register_buffer("bins", ab_bins())
        if prior is None:
            if isinstance(rebalance, bool) or not isinstance(rebalance, (int, float)) or not 0 <= rebalance <= 1:
                raise ValueError(f"rebalance must be a number in [0, 1], got {rebalance!r}")
            self.register_buffer("weights", None)
        else:
            prior = _check_prior(prior, NUM_BINS)
            self.register_buffer("weights", rebalance_weights(prior.double(), rebalance).float())
        self.rebalance = float(rebalance)

    def forward(self, logits: Tensor, ab: Tensor) -> Tensor:
        _checks.floating(logits, "logits")
        _checks.rank(logits, "logits", (4,), "[N, 313, H, W]")
        if logits.shape[1] != NUM_BINS:
            raise ValueError(f"logits must have {NUM_BINS} channels (one per ab bin), got {logits.shape[1]} "
                             f"(shape {tuple(logits.shape)})")
        _check_ab(ab)
        n, _, h, w = logits.shape
        if (ab.shape[0], ab.shape[2], ab.shape[3]) != (n, h, w):
            raise ValueError(f"ab must be [N, 2, H, W] = [{n}, 2, {h}, {w}] (N, H, W of logits), got shape "
                             f"{tuple(ab.shape)}; downsample the target to the logits' resolution")
        per_pixel = soft_encoded_cross_entropy(logits, ab, self.bins, self.weights, self.neighbors, self.sigma)
        return _checks.reduce(per_pixel.flatten(1).mean(1) if h * w else per_pixel.new_zeros(n), self.reduction)

    def extra_repr(self) -> str:
        return (f"rebalance={self.rebalance if self.weights is not None else None}, neighbors={self.neighbors}, "
                f"sigma={self.sigma}, reduction={self.reduction!r}")


def annealed_mean(logits: Tensor, temperature: float = 0.38, bins: Optional[Tensor] = None) -> Tensor:
    r"""Decode per-pixel bin scores into ab colours by the annealed mean (Zhang et al., eq. 5).

    .. math::
        \hat y = \sum_q c_q\, f_T(z)_q, \qquad
        f_T(z)_q = \frac{\exp(\log z_q / T)}{\sum_r \exp(\log z_r / T)} = \mathrm{softmax}(x / T)_q

    with :math:`z = \mathrm{softmax}(x)`. T = 1 is the mean of the distribution (desaturated),
    T → 0 its mode (vivid but patchy); the paper uses T = 0.38. ``temperature=0`` gives the mode.

    Args:
        logits (Tensor[N, Q, H, W]): scores over the bins (Q = 313 with the default bins).
        temperature (float): T >= 0.
        bins (Tensor[Q, 2], optional): bin centres; default :func:`ab_bins`.

    Returns:
        Tensor[N, 2, H, W]: a and b. Differentiable in ``logits`` (for T > 0).

    Example:
        >>> ab = annealed_mean(torch.randn(1, 313, 4, 4))
        >>> ab.shape
        torch.Size([1, 2, 4, 4])
    """
    _checks.floating(logits, "logits")
    _checks.rank(logits, "logits", (4,), "[N, Q, H, W]")
    bins = _bins_like(logits, bins)
    if logits.shape[1] != bins.shape[0]:
        raise ValueError(f"logits must have {bins.shape[0]} channels (one per bin), got {logits.shape[1]}")
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not 0 <= temperature < float("inf")):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if temperature == 0:
        return bins[logits.argmax(1)].permute(0, 3, 1, 2).contiguous()
    probs = torch.softmax(logits / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, bins)
