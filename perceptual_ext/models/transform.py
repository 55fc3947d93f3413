"""Image transformation networks of Johnson et al. (seed 003) and an SRCNN baseline.

All networks map images in [0, 1] to images in [0, 1] (``SRCNN``: unbounded, clamp to display):

- :class:`StyleTransformNet` — fast style transfer, ``[N, 3, H, W] -> [N, 3, H, W]``.
- :class:`SuperResolutionNet` — ×4/×8 super-resolution, ``[N, 3, h, w] -> [N, 3, s·h, s·w]``;
  ``residual=True`` predicts a correction to the bicubic upsampling (global residual learning).
- :class:`SRCNN` — Dong et al.'s three-layer baseline on the bicubic upsampling.

Upsampling stages (``upsample=``), each doubling height and width:

- ``"deconv"`` — 3×3 transposed convolution with stride 2 ("fractional stride 1/2", the paper's).
  Known to produce checkerboard artifacts.
- ``"pixelshuffle"`` — 3×3 convolution to 4·C channels followed by ``PixelShuffle(2)``
  (sub-pixel convolution, Shi et al. 2016).
- ``"nearest"`` — nearest-neighbour ×2 resize followed by a 3×3 convolution (resize-convolution,
  free of checkerboard artifacts by construction).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _checks

NORMS = ("instance", "batch", "none")
UPSAMPLES = ("deconv", "pixelshuffle", "nearest")
#: ``SuperResolutionNet(residual=True)``: the learned correction is this times the last conv's output.
RESIDUAL_SCALE = 0.1


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class Pad(nn.Module):
    """Reflection padding by ``p`` pixels; replicate padding on inputs too small to reflect (≤ p pixels)."""

    def __init__(self, p: int):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        mode = "reflect" if min(x.shape[-2:]) > self.p else "replicate"
        return F.pad(x, (self.p,) * 4, mode=mode)


class ConvBlock(nn.Sequential):
    """Reflection-padded convolution, optional normalization, optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm: str = "instance", relu: bool = True):
        layers = [Pad(kernel_size // 2), nn.Conv2d(in_channels, out_channels, kernel_size, stride),
                  _norm(norm, out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3×3 conv-norm layers (ReLU between them) plus the identity (Johnson's residual block)."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(ConvBlock(channels, channels, 3, norm=norm),
                                  ConvBlock(channels, channels, 3, norm=norm, relu=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsample2x(nn.Sequential):
    """One ×2 upsampling stage (see the module docstring for ``mode``), then norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "deconv", norm: str = "instance"):
        if mode == "deconv":
            up = [nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)]
        elif mode == "pixelshuffle":
            up = [Pad(1), nn.Conv2d(in_channels, 4 * out_channels, 3), nn.PixelShuffle(2)]
        else:
            up = [nn.Upsample(scale_factor=2, mode="nearest"), Pad(1),
                  nn.Conv2d(in_channels, out_channels, 3)]
        super().__init__(*up, _norm(norm, out_channels), nn.ReLU(inplace=True))


def _scaled_tanh(x: Tensor) -> Tensor:
    """Map R -> (0, 1): the paper's scaled tanh, for images in [0, 1]."""
    return 0.5 * (torch.tanh(x) + 1.0)


def _check_image(x, name: str = "input") -> Tensor:
    _checks.floating(x, name)
    _checks.rank(x, name, (4,), "[N, 3, H, W]")
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 channels, got shape {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name} must be at least 1x1 pixels, got shape {tuple(x.shape)}")
    return x


class StyleTransformNet(nn.Module):
    """Johnson et al.'s image transformation network for fast style transfer.

    32×9×9 conv, 64×3×3 conv stride 2, 128×3×3 conv stride 2, five residual blocks (128 filters),
    two ×2 upsampling stages (64 then 32 filters), 3×9×9 conv, scaled tanh. Inputs of any size work:
    they are padded (replicate) to a multiple of 4 and the output is cropped back.

    Args:
        channels: filters of the first layer (32 in the paper); the others scale with it.
        num_residual: residual blocks (5 in the paper).
        norm: ``"instance"`` (Ulyanov et al.'s improvement, default), ``"batch"`` (the paper) or ``"none"``.
        upsample: ``"deconv"`` (the paper), ``"pixelshuffle"`` or ``"nearest"``.

    Shape:
        input (Tensor[N, 3, H, W]) in [0, 1] -> Tensor[N, 3, H, W] in [0, 1].

    Example:
        >>> net = StyleTransformNet()
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, channels: int = 32, num_residual: int = 5, norm: str = "instance", upsample: str = "deconv"):
        super().__init__()
        _checks.positive_int(channels, "channels")
        _checks.positive_int(num_residual, "num_residual", minimum=0)
        _checks.choice(norm, "norm", NORMS)
        _checks.choice(upsample, "upsample", UPSAMPLES)
        self.config = dict(channels=channels, num_residual=num_residual, norm=norm, upsample=upsample)
        c = channels
        self.encoder = nn.Sequential(ConvBlock(3, c, 9, norm=norm), ConvBlock(c, 2 * c, 3, stride=2, norm=norm),
                                     ConvBlock(2 * c, 4 * c, 3, stride=2, norm=norm))
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c, norm) for _ in range(num_residual)])
        self.decoder = nn.Sequential(Upsample2x(4 * c, 2 * c, upsample, norm), Upsample2x(2 * c, c, upsample, norm))
        self.head = ConvBlock(c, 3, 9, norm="none", relu=False)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % 4, (-w) % 4
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = self.head(self.decoder(self.residuals(self.encoder(x))))
        return _scaled_tanh(y[..., :h, :w])


class SuperResolutionNet(nn.Module):
    """Johnson et al.'s super-resolution network (×4: 4 residual blocks, two ×2 stages; ×8: three).

    64×9×9 conv, ``num_residual`` residual blocks with 64 filters, log2(scale) ×2 upsampling stages
    with 64 filters, 3×9×9 conv, scaled tanh. The input is the low-resolution image itself.

    With ``residual=True`` (global residual learning, as in VDSR/EDSR; not in the paper) the same
    layers predict a correction to the bicubic upsampling ``b`` of the input: the output is
    ``clamp(clamp(b, 0, 1) + 0.1·h, 0, 1)``, ``h`` the last conv's output, instead of the scaled tanh.
    The last 9×9 conv starts at zero weights and bias, so an untrained net outputs exactly
    ``clamp(b, 0, 1)``, the bicubic baseline of :func:`perceptual_ext.data.upsample_bicubic` (same
    ``F.interpolate(mode="bicubic", align_corners=False)``, same clamp), and training starts from it
    instead of from a random image. The factor :data:`RESIDUAL_SCALE` = 0.1 is there for Adam: its
    first steps move every weight by about ``lr`` whatever the gradient's size, which at the default
    ``lr=1e-3`` and without the factor changes the 64-filter net's output by up to ~0.6 after one
    step and undoes the bicubic start.

    Args:
        scale: 4 or 8 (any power of two ≥ 2 works).
        channels: filters per layer (64 in the paper).
        num_residual: residual blocks (4 in the paper).
        norm: ``"batch"`` (the paper, default), ``"instance"`` or ``"none"``.
        upsample: ``"deconv"`` (the paper's fractional-stride conv), ``"pixelshuffle"`` or ``"nearest"``.
        residual: learn a correction to bicubic upsampling (see above); ``False`` (default) is the paper's net.

    Shape:
        input (Tensor[N, 3, h, w]) in [0, 1] -> Tensor[N, 3, scale·h, scale·w] in [0, 1].

    Example:
        >>> net = SuperResolutionNet(scale=4)
        >>> net(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, scale: int = 4, channels: int = 64, num_residual: int = 4, norm: str = "batch",
                 upsample: str = "deconv", residual: bool = False):
        super().__init__()
        _checks.positive_int(scale, "scale", minimum=2)
        if scale & (scale - 1):
            raise ValueError(f"scale must be a power of two (4 or 8), got {scale}")
        _checks.positive_int(channels, "channels")
        _checks.positive_int(num_residual, "num_residual", minimum=0)
        _checks.choice(norm, "norm", NORMS)
        _checks.choice(upsample, "upsample", UPSAMPLES)
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be a bool, got {residual!r}")
        self.scale = scale
        self.residual = residual
        self.config = dict(scale=scale, channels=channels, num_residual=num_residual, norm=norm, upsample=upsample,
                           residual=residual)
        c = channels
        self.stem = ConvBlock(3, c, 9, norm=norm)
        self.residuals = nn.Sequential(*[ResidualBlock(c, norm) for _ in range(num_residual)])
        self.upsample = nn.Sequential(*[Upsample2x(c, c, upsample, norm) for _ in range(int(math.log2(scale)))])
        self.head = ConvBlock(c, 3, 9, norm="none", relu=False)
        if residual:
            conv = self.head[1]
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        y = self.head(self.upsample(self.residuals(self.stem(x))))
        if not self.residual:
            return _scaled_tanh(y)
        # The evaluation's bicubic baseline (perceptual_ext.data.upsample_bicubic), computed here
        # because models do not import the data layer.
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False).clamp(0, 1)
        return (base + RESIDUAL_SCALE * y).clamp(0, 1)


class SRCNN(nn.Module):
    """SRCNN baseline (Dong et al. 2015, 9-1-5): bicubic ×scale, then 64×9×9, 32×1×1, 3×5×5 convs.

    The low-resolution input is upsampled inside the model, so all SR models share one interface.
    The output is linear (not bounded): clamp it to [0, 1] for display; PSNR is computed on the clamp.

    Shape:
        input (Tensor[N, 3, h, w]) -> Tensor[N, 3, scale·h, scale·w].

    Example:
        >>> SRCNN(scale=4)(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, scale: int = 4, channels: int = 64):
        super().__init__()
        _checks.positive_int(scale, "scale", minimum=2)
        _checks.positive_int(channels, "channels", minimum=2)
        self.scale = scale
        self.config = dict(scale=scale, channels=channels)
        self.body = nn.Sequential(Pad(4), nn.Conv2d(3, channels, 9), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels // 2, 1), nn.ReLU(inplace=True),
                                  Pad(2), nn.Conv2d(channels // 2, 3, 5))

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x)
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self.body(up)


#: class name -> class, for rebuilding a model from a checkpoint's ``{"class": ..., "config": ...}``.
MODELS = {cls.__name__: cls for cls in (StyleTransformNet, SuperResolutionNet, SRCNN)}


def build_model(name: str, **config) -> nn.Module:
    """The model class ``name`` (a key of :data:`MODELS`) built with ``config``."""
    _checks.choice(name, "model", tuple(MODELS))
    return MODELS[name](**config)
