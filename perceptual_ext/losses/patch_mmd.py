"""Patch MMD with random Fourier features (Amir & Weiss) and MMD++.

Conventions of the paper's public reimplementation, so results are comparable: images in [0, 1]
are mapped to [-1, 1]; sigma is given per pixel and multiplied by P^2 (0.06 * 9 = 0.54 for
P = 3); patches are reflect-padded by P // 2; W = 32, S = 16; the random features are redrawn at
every call unless ``resample=False``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from ..ops import rff_patch_features


def _images(input: Tensor, target: Tensor) -> tuple:
    _checks.floating(input, "input")
    _checks.floating(target, "target")
    _checks.rank(input, "input", (4,), "[N, C, H, W]")
    _checks.rank(target, "target", (4,), "[N, C, H, W]")
    _checks.same_device(input, target, "input", "target")
    if input.shape != target.shape:
        raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and "
                         f"{tuple(target.shape)}")
    dtype = torch.promote_types(input.dtype, target.dtype)
    return input.to(dtype) * 2 - 1, target.to(dtype) * 2 - 1


def draw_features(num_features: int, channels: int, patch_size: int, sigma: float, channel_mean: bool = False,
                  generator: Optional[torch.Generator] = None, dtype=torch.float32) -> tuple:
    r"""Random Fourier features of the Gaussian kernel :math:`\exp(-\|p-q\|^2 / 2\sigma_P^2)`.

    :math:`w \sim \mathcal N(0, I/\sigma_P^2)` with :math:`\sigma_P = \sigma P^2`, :math:`b \sim U(0, 2\pi)`.
    With ``channel_mean`` each filter's mean over its P x P window is removed per channel
    (``w -= w.mean((2, 3))``, as the reimplementation does): then :math:`w\cdot p = w\cdot(p - \bar p_c)`,
    so the features see every patch with its per-channel mean (DC) removed — the paper's
    "channel normalization" — and approximate the kernel on those centred patches.

    Returns:
        (weight Tensor[F, C, P, P], bias Tensor[F]) drawn on the generator's device (CPU by default).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    scale = sigma * patch_size ** 2
    weight = torch.randn(num_features, channels, patch_size, patch_size, generator=generator, device=device,
                         dtype=dtype) / scale
    if channel_mean:
        weight = weight - weight.mean(dim=(2, 3), keepdim=True)
    bias = torch.rand(num_features, generator=generator, device=device, dtype=dtype) * (2 * math.pi)
    return weight, bias


def _check_options(patch_size, num_features, sigma, window, stride) -> None:
    _checks.positive_int(patch_size, "patch_size")
    _checks.positive_int(num_features, "num_features")
    _checks.positive_float(sigma, "sigma")
    _checks.positive_int(window, "window")
    _checks.positive_int(stride, "stride")


class PatchMMDLoss(nn.Module):
    r"""MMD between the distributions of P x P patches in corresponding W x W windows, by random
    Fourier features (Amir & Weiss, "Understanding and Simplifying Perceptual Distances", §3).

    .. math::
        \ell(x, y) = \frac{1}{F\,h'w'} \sum_{f,a,b} \big(\bar z_{f,a,b}(x) - \bar z_{f,a,b}(y)\big)^2,
        \qquad \bar z = \mathrm{avgpool}_{W,S} \cos(w_f \cdot p + b_f)

    :math:`2\ell` is the unbiased random-feature estimate (no :math:`\sqrt{2/F}` factor in
    :math:`\bar z`) of the biased MMD² with kernel :math:`\exp(-\|p-q\|^2/2\sigma_P^2)`, averaged
    over windows: it converges to :func:`perceptual_ext.metrics.exact_patch_mmd` as F grows.
    Computed by the fused :func:`perceptual_ext.ops.rff_patch_features` (no [N, F, H, W] map).

    Args:
        patch_size (int): P (odd sizes keep the feature map the size of the image).
        num_features (int): F.
        sigma (float): kernel bandwidth per pixel; the kernel uses :math:`\sigma_P = \sigma P^2`.
        window (int): pooling window W (must fit the image).
        stride (int): pooling stride S.
        channel_mean (bool): compare patches with their per-channel mean removed (see
            :func:`draw_features`).
        resample (bool): draw new features at every call (default, as the reimplementation). With
            ``False`` they are drawn once from ``generator`` at construction and kept as buffers
            (``weight``, ``bias``), so the loss is deterministic.
        generator (torch.Generator, optional): source of the random features.
        reduction: ``'mean'`` over the batch, ``'sum'``, or ``'none'`` (Tensor[N]).

    Shape:
        input, target: [N, C, H, W] in [0, 1] (mapped to [-1, 1] inside). Output: scalar or [N].
        With ``resample=False`` C must be ``channels`` (3 by default).

    Example:
        >>> loss_fn = PatchMMDLoss(num_features=256, generator=torch.Generator().manual_seed(0))
        >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)
        >>> loss_fn(x, torch.rand(2, 3, 64, 64)).backward()
    """

    def __init__(self, patch_size: int = 3, num_features: int = 1024, sigma: float = 0.06, window: int = 32,
                 stride: int = 16, channel_mean: bool = False, resample: bool = True,
                 generator: Optional[torch.Generator] = None, reduction: str = "mean", channels: int = 3) -> None:
        super().__init__()
        _check_options(patch_size, num_features, sigma, window, stride)
        self.patch_size, self.num_features, self.sigma = patch_size, num_features, float(sigma)
        self.window, self.stride = window, stride
        self.channel_mean, self.resample = bool(channel_mean), bool(resample)
        self.reduction = _checks.reduction(reduction)
        self.generator = generator
        if not self.resample:
            weight, bias = draw_features(num_features, _checks.positive_int(channels, "channels"), patch_size,
                                         self.sigma, self.channel_mean, generator)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def features(self, channels: int, like: Tensor) -> tuple:
        """The random features for this call, in ``like``'s dtype and device."""
        if self.resample:
            weight, bias = draw_features(self.num_features, channels, self.patch_size, self.sigma, self.channel_mean,
                                         self.generator)
        else:
            weight, bias = self.weight, self.bias
            if weight.shape[1] != channels:
                raise ValueError(f"input has {channels} channels but the fixed features were drawn for "
                                 f"{weight.shape[1]}")
        return weight.to(like.device, like.dtype), bias.to(like.device, like.dtype)

    def per_sample(self, x: Tensor, y: Tensor) -> Tensor:
        """Loss per sample, [N], of images already mapped to [-1, 1].

        One op call per image: an image that does not require grad (the usual target) is
        featurized without a graph, so backward computes the gradient of the other one only (one
        call on the concatenation would make backward differentiate both).
        """
        weight, bias = self.features(x.shape[1], x)
        fx = rff_patch_features(x, weight, bias, self.window, self.stride)
        fy = rff_patch_features(y, weight, bias, self.window, self.stride)
        return (fx - fy).square().mean(dim=(1, 2, 3))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x, y = _images(input, target)
        return _checks.reduce(self.per_sample(x, y), self.reduction)

    def extra_repr(self) -> str:
        return (f"patch_size={self.patch_size}, num_features={self.num_features}, sigma={self.sigma}, "
                f"window={self.window}, stride={self.stride}, channel_mean={self.channel_mean}, "
                f"resample={self.resample}, reduction={self.reduction!r}")


def patch_mmd_loss(input: Tensor, target: Tensor, patch_size: int = 3, num_features: int = 1024,
                   sigma: float = 0.06, window: int = 32, stride: int = 16, channel_mean: bool = False,
                   generator: Optional[torch.Generator] = None, reduction: str = "mean") -> Tensor:
    """Functional form of :class:`PatchMMDLoss` (features drawn for this call)."""
    return PatchMMDLoss(patch_size, num_features, sigma, window, stride, channel_mean, True, generator,
                        reduction)(input, target)


def local_patch_loss(x: Tensor, y: Tensor, patch_size: int, sigma: float) -> Tensor:
    r"""Robust loss over aligned patches, per sample [N]:
    :math:`\mathrm{mean}_i\, 1 - \exp(-\|p_i - q_i\|^2 / 2\sigma_P^2)`, :math:`\sigma_P = \sigma P^2`.

    Patches are the same reflect-padded P x P patches the MMD term uses; the squared patch
    distance is a P x P box sum of the per-pixel squared difference (summed over channels).
    """
    pad = patch_size // 2
    diff = (x - y).square().sum(dim=1, keepdim=True)
    if pad:
        diff = F.pad(diff, [pad] * 4, mode="reflect")
    dist = F.avg_pool2d(diff, patch_size, stride=1) * patch_size ** 2
    scale = sigma * patch_size ** 2
    return (1 - torch.exp(-dist / (2 * scale ** 2))).mean(dim=(1, 2, 3))


class MMDPlusPlus(nn.Module):
    r"""MMD++ (Amir & Weiss §6): patch MMD + a robust loss over aligned patches + a small L2.

    .. math::
        \ell = \lambda_{mmd}\,\ell_{MMD}(x, y)
             + \lambda_{local}\,\mathrm{mean}_i\big(1 - e^{-\|p_i-q_i\|^2/2\sigma_l^2}\big)
             + \lambda_{2}\,\mathrm{mean}\,(x - y)^2

    All three terms see the images mapped to [-1, 1]. Defaults follow the paper's
    reimplementation: :math:`\lambda_2 = 0.001`, :math:`\lambda_{local} = 0.05` with
    :math:`\sigma_l = 0.1 P^2 = 0.9`, :math:`\lambda_{mmd} = 1` with F = 512 and ``channel_mean``.

    Args:
        patch_size, num_features, sigma, window, stride, channel_mean, resample, generator:
            the MMD term (:class:`PatchMMDLoss`); ``patch_size`` also sizes the local patches.
        local_sigma (float): bandwidth of the local term per pixel (:math:`\sigma_l = ` local_sigma · P²).
        mmd_weight, local_weight, l2_weight (float): the weights λ (0 switches a term off).
        reduction: ``'mean'`` over the batch, ``'sum'``, or ``'none'`` (Tensor[N]).

    Example:
        >>> loss_fn = MMDPlusPlus(generator=torch.Generator().manual_seed(0))
        >>> x = torch.rand(1, 3, 64, 64, requires_grad=True)
        >>> loss_fn(x, torch.rand(1, 3, 64, 64)).backward()
    """

    def __init__(self, patch_size: int = 3, num_features: int = 512, sigma: float = 0.06, window: int = 32,
                 stride: int = 16, channel_mean: bool = True, local_sigma: float = 0.1, mmd_weight: float = 1.0,
                 local_weight: float = 0.05, l2_weight: float = 0.001, resample: bool = True,
                 generator: Optional[torch.Generator] = None, reduction: str = "mean", channels: int = 3) -> None:
        super().__init__()
        self.mmd = PatchMMDLoss(patch_size, num_features, sigma, window, stride, channel_mean, resample, generator,
                                "none", channels)
        self.local_sigma = _checks.positive_float(local_sigma, "local_sigma")
        for name, value in (("mmd_weight", mmd_weight), ("local_weight", local_weight), ("l2_weight", l2_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        self.mmd_weight, self.local_weight, self.l2_weight = float(mmd_weight), float(local_weight), float(l2_weight)
        self.reduction = _checks.reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x, y = _images(input, target)
        total = x.new_zeros(x.shape[0])
        if self.mmd_weight:
            total = total + self.mmd_weight * self.mmd.per_sample(x, y)
        if self.local_weight:
            total = total + self.local_weight * local_patch_loss(x, y, self.mmd.patch_size, self.local_sigma)
        if self.l2_weight:
            total = total + self.l2_weight * (x - y).square().mean(dim=(1, 2, 3))
        return _checks.reduce(total, self.reduction)

    def extra_repr(self) -> str:
        return (f"mmd_weight={self.mmd_weight}, local_weight={self.local_weight}, local_sigma={self.local_sigma}, "
                f"l2_weight={self.l2_weight}, reduction={self.reduction!r}")
