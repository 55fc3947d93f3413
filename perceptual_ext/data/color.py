"""sRGB <-> CIE Lab (D65, 2° observer), the numbers of scikit-image's ``rgb2lab`` / ``lab2rgb``.

Plain differentiable torch code: it runs on any device and dtype, batched, with no NumPy round trip.
The constants and branch points are scikit-image's (sRGB matrix of its ``xyz_from_rgb``, white
point (0.95047, 1, 1.08883), the 0.008856 / 7.787 linear segment of the Lab curve), so the results
agree with it to float64 rounding (tested ≤ 1e-6; in practice ~1e-12).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import _checks

# scikit-image's xyz_from_rgb (sRGB primaries, D65) and its white point for illuminant D65, observer 2°.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                 (0.212671, 0.715160, 0.072169),
                 (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def _matrix(x: Tensor, inverse: bool) -> Tensor:
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    return m.to(device=x.device, dtype=x.dtype)


def _apply(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x[n, :, h, w]`` for every pixel."""
    return torch.einsum("ij,njhw->nihw", matrix, x)


def _white(x: Tensor) -> Tensor:
    return torch.tensor(_WHITE_D65, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def _check_image(x, name: str) -> Tensor:
    _checks.floating(x, name)
    _checks.rank(x, name, (4,), "[N, 3, H, W]")
    if x.shape[1] != 3:
        raise ValueError(f"{name} must be [N, 3, H, W], got {x.shape[1]} channels (shape {tuple(x.shape)})")
    return x


def _compute(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def rgb_to_lab(x: Tensor) -> Tensor:
    r"""sRGB in [0, 1] to CIE Lab (D65, 2° observer), as scikit-image's ``rgb2lab``.

    .. math::
        (L, a, b) = \bigl(116 f(Y) - 16,\ 500 (f(X) - f(Y)),\ 200 (f(Y) - f(Z))\bigr),\quad
        (X, Y, Z) = M\,\mathrm{linear}(x) / W_{D65}

    with the sRGB transfer curve ``linear``, scikit-image's matrix ``M`` and
    ``f(t) = t^{1/3}`` above 0.008856, ``7.787 t + 16/116`` below.

    Args:
        x (Tensor[N, 3, H, W]): RGB in [0, 1]; any floating dtype (float16/bfloat16 computed in
            float32 and returned in their dtype), any device. Values outside [0, 1] are converted
            by the same formulas (as scikit-image does).

    Returns:
        Tensor[N, 3, H, W]: L in [0, 100], a and b roughly in [-128, 127]. Differentiable.

    Example:
        >>> lab = rgb_to_lab(torch.rand(2, 3, 8, 8))
        >>> lab[:, 0].min() >= 0
        tensor(True)
    """
    _check_image(x, "x")
    dtype = x.dtype
    x = _compute(x)
    # sRGB transfer curve; each branch sees only arguments in its own domain (finite gradients).
    high = ((x.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4)
    linear = torch.where(x > 0.04045, high, x / 12.92)
    t = _apply(_matrix(x, inverse=False), linear) / _white(x)
    f = torch.where(t > 0.008856, t.clamp_min(0.008856).pow(1.0 / 3.0), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(1)
    lab = torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)
    return lab.to(dtype)


def lab_to_rgb(lab: Tensor) -> Tensor:
    r"""CIE Lab (D65, 2° observer) to sRGB in [0, 1], as scikit-image's ``lab2rgb``.

    The inverse of :func:`rgb_to_lab` on the sRGB gamut. Like scikit-image, a negative Z (b far
    too large for L) is set to 0 and the result is clipped to [0, 1] (out-of-gamut colours land on
    the cube's surface), without a warning.

    .. math::
        x = \mathrm{clip}_{[0,1]}\bigl(\mathrm{gamma}(M^{-1}\,(W_{D65} \odot f^{-1}(L, a, b)))\bigr)

    Args:
        lab (Tensor[N, 3, H, W]): L, a, b; any floating dtype, any device.

    Returns:
        Tensor[N, 3, H, W] in [0, 1]. Differentiable (zero gradient where clipped).

    Example:
        >>> x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
        >>> torch.allclose(lab_to_rgb(rgb_to_lab(x)), x)
        True
    """
    _check_image(lab, "lab")
    dtype = lab.dtype
    lab = _compute(lab)
    big_l, a, b = lab.unbind(1)
    fy = (big_l + 16.0) / 116.0
    f = torch.stack((a / 500.0 + fy, fy, (fy - b / 200.0).clamp_min(0.0)), dim=1)
    t = torch.where(f > 0.2068966, f.clamp_min(0.2068966).pow(3.0), (f - 16.0 / 116.0) / 7.787)
    linear = _apply(_matrix(lab, inverse=True), t * _white(lab))
    high = 1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055
    rgb = torch.where(linear > 0.0031308, high, 12.92 * linear)
    return rgb.clamp(0.0, 1.0).to(dtype)
