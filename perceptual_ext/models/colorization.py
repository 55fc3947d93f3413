"""A small colorization network after Zhang, Isola, Efros (2016): L in, 313 bin logits at ¼ resolution.

The paper's network is a VGG-style stack of eight conv blocks (two stride-2 downsamplings, then
dilated convolutions, batch normalization after each block) ending in a 1×1 convolution to the 313
ab bins at a quarter of the input's resolution. :class:`ColorizationNet` keeps that layout at a
width that trains on a CPU: the widths and the number of dilated blocks are arguments.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _checks
from ..data.color import lab_to_rgb, rgb_to_lab
from ..losses.colorization import NUM_BINS, annealed_mean


NORMS = ("batch", "none")


def _block(in_channels: int, out_channels: int, convs: int, stride: int = 1, dilation: int = 1,
           norm: str = "batch") -> nn.Sequential:
    """``convs`` 3×3 convolutions with ReLU (the last with ``stride``), then batch normalization."""
    layers = []
    for i in range(convs):
        last = i == convs - 1
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3,
                             stride=stride if last else 1, padding=dilation, dilation=dilation),
                   nn.ReLU(inplace=True)]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class ColorizationNet(nn.Module):
    r"""Colorization network: lightness ``L`` ``[N, 1, H, W]`` (0..100) → logits ``[N, 313, ⌈H/4⌉, ⌈W/4⌉]``.

    Blocks (each: 3×3 convs with ReLU, then BatchNorm): ``widths[0]`` at ½ resolution,
    ``widths[1]`` at ¼, ``widths[2]``, then ``dilated`` blocks of ``widths[2]`` channels with
    dilation 2, a 1×1 convolution to the 313 ab bins of :func:`~perceptual_ext.losses.ab_bins`.
    The input is centred as in the paper, ``(L - 50) / 50``.

    Args:
        widths (sequence of 3 ints): channels of the three resolution stages.
        dilated (int): number of dilated blocks (the paper has 2 of 512 channels).
        norm (str): ``"batch"`` (the paper's BatchNorm after each block) or ``"none"``.

    Example:
        >>> net = ColorizationNet()
        >>> net(torch.rand(2, 1, 64, 64) * 100).shape
        torch.Size([2, 313, 16, 16])
        >>> net.colorize(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), dilated: int = 2, norm: str = "batch"):
        super().__init__()
        widths = tuple(widths)
        if len(widths) != 3:
            raise ValueError(f"widths must hold 3 channel counts, got {widths!r}")
        for i, w in enumerate(widths):
            _checks.positive_int(w, f"widths[{i}]")
        _checks.positive_int(dilated, "dilated", minimum=0)
        _checks.choice(norm, "norm", NORMS)
        self.config = {"widths": list(widths), "dilated": dilated, "norm": norm}
        w1, w2, w3 = widths
        blocks = [_block(1, w1, 2, stride=2, norm=norm), _block(w1, w2, 2, stride=2, norm=norm),
                  _block(w2, w3, 3, norm=norm)]
        blocks += [_block(w3, w3, 3, dilation=2, norm=norm) for _ in range(dilated)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Conv2d(w3, NUM_BINS, 1)

    def forward(self, lightness: Tensor) -> Tensor:
        _checks.floating(lightness, "lightness")
        _checks.rank(lightness, "lightness", (4,), "[N, 1, H, W]")
        if lightness.shape[1] != 1:
            raise ValueError(f"lightness must be [N, 1, H, W] (the L channel of Lab), got shape "
                             f"{tuple(lightness.shape)}")
        return self.head(self.features((lightness - 50.0) / 50.0))

    @torch.no_grad()
    def colorize(self, images: Tensor, temperature: float = 0.38) -> Tensor:
        """RGB images coloured from their lightness: ``[N, C, H, W]`` in [0, 1] (C = 1 or 3) → ``[N, 3, H, W]``.

        The L channel of the input is kept at full resolution; ab is the annealed mean
        (:func:`~perceptual_ext.losses.annealed_mean`) of the predicted distribution, upsampled
        bilinearly to the input's size.
        """
        _checks.floating(images, "images")
        _checks.rank(images, "images", (4,), "[N, 1 or 3, H, W]")
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 (grey) or 3 (RGB) channels, got shape {tuple(images.shape)}")
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        lightness = rgb_to_lab(rgb.float())[:, :1]
        ab = annealed_mean(self(lightness).float(), temperature)
        ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        return lab_to_rgb(torch.cat([lightness, ab], dim=1))
