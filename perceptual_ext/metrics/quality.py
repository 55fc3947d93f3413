"""Full-reference image quality: PSNR and SSIM, per image, batched."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _checks


def _image_pair(x, y, name_x: str = "x", name_y: str = "y") -> tuple:
    """Validate two image batches [N, C, H, W] (or one image [C, H, W]) of equal shape."""
    _checks.floating(x, name_x)
    _checks.floating(y, name_y)
    _checks.rank(x, name_x, (3, 4), "[N, C, H, W] or [C, H, W]")
    _checks.rank(y, name_y, (3, 4), "[N, C, H, W] or [C, H, W]")
    _checks.same_device(x, y, name_x, name_y)
    if x.shape != y.shape:
        raise ValueError(f"{name_x} and {name_y} must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x[None], y[None]
    return x, y


def _metric_dtype(x: Tensor) -> torch.dtype:
    # Metrics are cheap next to what they evaluate: float64 on the CPU, at least float32 elsewhere.
    return torch.float64 if x.device.type == "cpu" else torch.promote_types(x.dtype, torch.float32)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    r"""Peak signal-to-noise ratio in dB, per image.

    .. math::
        \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{R^2}{\frac{1}{CHW}\sum (x - y)^2}

    Identical images give ``inf``. Matches ``skimage.metrics.peak_signal_noise_ratio`` per image.

    Args:
        x (Tensor[N, C, H, W] or Tensor[C, H, W]): images.
        y (Tensor, same shape as ``x``): reference images.
        data_range: :math:`R`, the range of the pixel values (1.0 for images in [0, 1]).
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> psnr(x, (x + 0.01).clamp(0, 1)).item() > 35
        True
    """
    reduction = _checks.reduction(reduction)
    data_range = _checks.positive_float(data_range, "data_range")
    x, y = _image_pair(x, y)
    dtype = _metric_dtype(x)
    mse = (x.to(dtype) - y.to(dtype)).square().flatten(1).mean(1)
    per_image = 10.0 * torch.log10(data_range ** 2 / mse)
    return _checks.reduce(per_image, reduction)


def gaussian_window(window_size: int, sigma: float, dtype=torch.float64, device=None) -> Tensor:
    """The normalized 1-D Gaussian of ``window_size`` taps (scipy.ndimage.gaussian_filter's weights)."""
    radius = window_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    weights = torch.exp(-0.5 * offsets.square() / sigma ** 2)
    return weights / weights.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, reduction: str = "mean") -> Tensor:
    r"""Structural similarity (Wang et al. 2004) with an 11×11 Gaussian window (σ = 1.5), per image.

    .. math::
        \mathrm{SSIM}(x, y) = \operatorname{mean}_{p}
        \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
        \qquad C_1 = (k_1 R)^2,\ C_2 = (k_2 R)^2

    Local statistics are Gaussian-weighted (population covariance) and averaged over the window
    positions that lie fully inside the image ("valid"), then over channels. This is exactly
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=...)`` (tested to ≤1e-4; skimage
    filters the padded image and crops the border, which leaves the same positions).

    Args:
        x (Tensor[N, C, H, W] or Tensor[C, H, W]): images, H and W at least ``window_size``.
        y (Tensor, same shape as ``x``): reference images.
        data_range: :math:`R`, the range of the pixel values.
        window_size: odd number of taps of the Gaussian window.
        sigma: standard deviation of the Gaussian window in pixels.
        k1, k2: the stabilizing constants.
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Example:
        >>> x = torch.rand(1, 3, 64, 64)
        >>> ssim(x, x).item()
        1.0
    """
    reduction = _checks.reduction(reduction)
    data_range = _checks.positive_float(data_range, "data_range")
    sigma = _checks.positive_float(sigma, "sigma")
    _checks.positive_int(window_size, "window_size")
    if window_size % 2 == 0:
        raise ValueError(f"window_size must be odd, got {window_size}")
    x, y = _image_pair(x, y)
    n, c, h, w = x.shape
    if h < window_size or w < window_size:
        raise ValueError(f"x must be at least {window_size}x{window_size} (window_size), got {h}x{w}")
    dtype = _metric_dtype(x)
    g = gaussian_window(window_size, sigma, dtype, x.device)
    rows = g.view(1, 1, 1, -1)
    cols = g.view(1, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:  # separable "valid" Gaussian filter of every channel
        t = t.reshape(n * c, 1, h, w)
        return F.conv2d(F.conv2d(t, rows), cols)

    x, y = x.to(dtype), y.to(dtype)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    per_image = ssim_map.reshape(n, -1).mean(1)
    return _checks.reduce(per_image, reduction)


__all__ = ["psnr", "ssim", "gaussian_window"]
