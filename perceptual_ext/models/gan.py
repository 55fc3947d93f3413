"""Image-to-image GAN networks: pix2pix's U-Net and 70×70 PatchGAN, CycleGAN's ResNet generator.

The layouts follow the reference implementation of Isola et al. (pix2pix) and Zhu et al.
(CycleGAN), ``junyanz/pytorch-CycleGAN-and-pix2pix``: the same layers, kernel sizes, strides,
padding, biases (a convolution followed by batch norm has no bias) and the same initialisation,
N(0, 0.02) for every convolution weight and N(1, 0.02) for batch-norm scales, zero biases.

One convention differs, as everywhere in this library: images are float tensors in [0, 1].
The generators map their input to [−1, 1] (``2x − 1``) before the first layer and their
``tanh`` output back to [0, 1] (``(t + 1) / 2``); the discriminator maps its input to [−1, 1]
too. So a network trained here computes exactly what the reference computes on the reference's
[−1, 1] images.

- :class:`UNetGenerator` — ``[N, C_in, H, W] -> [N, C_out, H, W]`` in [0, 1]; H and W multiples
  of ``2**num_downs`` (256 for the default 8 downsamplings).
- :class:`ResnetGenerator` — ``[N, C_in, H, W] -> [N, C_out, H, W]`` in [0, 1]; H and W multiples of 4.
- :class:`PatchDiscriminator` — ``[N, C, H, W] -> [N, 1, H', W']`` logits; 256² gives 30×30 with
  the default ``n_layers=3``, each logit seeing a 70×70 patch of the input.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import _checks

GAN_NORMS = ("batch", "instance", "none")
#: std of the N(0, std) initialisation of every convolution (the reference's ``init_gain``).
INIT_STD = 0.02


#: least values of the networks' size arguments (the others: at least 1)
_MINIMUMS = {"num_downs": 5, "n_blocks": 0}


def _checked_config(**config) -> dict:
    """A network's ``config`` (its constructor's arguments, saved in checkpoints), checked: ``norm``
    one of :data:`GAN_NORMS`, ``dropout`` a bool, every other a whole number (see ``_MINIMUMS``)."""
    for name, value in config.items():
        if name == "norm":
            _checks.choice(value, "norm", GAN_NORMS)
        elif name == "dropout":
            if not isinstance(value, bool):
                raise TypeError(f"dropout must be a bool, got {type(value).__name__}")
        else:
            _checks.positive_int(value, name, minimum=_MINIMUMS.get(name, 1))
    return config


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":  # the reference's InstanceNorm2d: no affine parameters, no running statistics
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def init_weights(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """The reference's ``init_weights(net, "normal", 0.02)``: conv weights N(0, std), biases 0,
    batch-norm scales N(1, std) and shifts 0. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


class _Network(nn.Module):
    """What the generators and the discriminator share: ``config`` (the constructor's arguments,
    checked, saved in checkpoints) and a forward pass that checks the input ``[N, in_channels, H, W]``
    against :meth:`size_rule`, runs ``model`` on it mapped from [0, 1] to [-1, 1] and, for a
    generator (whose ``model`` ends in tanh), maps the output back to [0, 1]."""

    GENERATOR = True

    def __init__(self, **config) -> None:
        super().__init__()
        self.config = _checked_config(**config)

    def size_rule(self) -> Tuple[int, str, int, str]:
        """(multiple, why, minimum, why): H and W must be positive multiples of ``multiple`` and at least
        ``minimum``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        channels = self.config["in_channels"]
        _checks.floating(x, "input")
        _checks.rank(x, "input", (4,), f"[N, {channels}, H, W]")
        if x.shape[1] != channels:
            raise ValueError(f"input must have {channels} channels, got shape {tuple(x.shape)}")
        multiple, multiple_why, minimum, minimum_why = self.size_rule()
        h, w = x.shape[-2:]
        if multiple > 1 and (h % multiple or w % multiple or h == 0 or w == 0):
            raise ValueError(f"input height and width must be positive multiples of {multiple} ({multiple_why}), "
                             f"got {h}x{w}")
        if min(h, w) < minimum:
            raise ValueError(f"input height and width must be at least {minimum}{minimum_why}, got {(h, w)}")
        out = self.model(x * 2.0 - 1.0)
        return (out + 1.0) * 0.5 if self.GENERATOR else out


class _UNetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and the skip connection around them
    (the reference's ``UnetSkipConnectionBlock``)."""

    def __init__(self, outer: int, inner: int, *, in_channels: Optional[int] = None,
                 submodule: Optional[nn.Module] = None, outermost: bool = False, innermost: bool = False,
                 norm: str = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm != "batch"
        in_channels = outer if in_channels is None else in_channels
        down_conv = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        down_relu = nn.LeakyReLU(0.2, inplace=True)
        up_relu = nn.ReLU(inplace=True)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down_conv, submodule, up_relu, up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [down_relu, down_conv, up_relu, up_conv, _norm_layer(norm, outer)]
        else:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias)
            layers = [down_relu, down_conv, _norm_layer(norm, inner), submodule, up_relu, up_conv,
                      _norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UNetGenerator(_Network):
    """pix2pix's U-Net generator (Isola et al. 2017, the reference's ``UnetGenerator``).

    ``num_downs`` 4×4 stride-2 convolutions (LeakyReLU 0.2) down to a 1×1 bottleneck for a
    ``2**num_downs`` input, then as many 4×4 stride-2 transposed convolutions (ReLU) back up, each
    level's input concatenated to its output (skip connections); filters ngf, 2·ngf, 4·ngf, then
    8·ngf. Dropout 0.5 after the up blocks of the ``num_downs − 5`` levels just outside the
    innermost one (three for ``num_downs=8``: pix2pix's noise z). Output ``tanh``, mapped to [0, 1].

    Args:
        in_channels, out_channels: image channels in and out.
        num_downs: downsamplings (at least 5); H and W must be multiples of ``2**num_downs``
            (8 → 256², pix2pix's default; 7 → 128², 6 → 64²).
        ngf: filters of the outermost layer.
        norm: ``"batch"`` (pix2pix), ``"instance"`` or ``"none"``.
        dropout: use the dropout layers (kept on at test time by pix2pix; here ``eval()`` turns them off).

    Shape:
        input (Tensor[N, in_channels, H, W]) in [0, 1] -> Tensor[N, out_channels, H, W] in [0, 1].

    Example:
        >>> g = UNetGenerator(num_downs=6, ngf=8)
        >>> g(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = True):
        super().__init__(in_channels=in_channels, out_channels=out_channels, num_downs=num_downs, ngf=ngf, norm=norm,
                         dropout=dropout)
        block = _UNetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = _UNetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        block = _UNetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = _UNetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = _UNetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = _UNetBlock(out_channels, ngf, in_channels=in_channels, submodule=block, outermost=True, norm=norm)
        init_weights(self)

    def size_rule(self) -> Tuple[int, str, int, str]:
        return 2 ** self.config["num_downs"], f"num_downs={self.config['num_downs']}", 1, ""


class _ResnetBlock(nn.Module):
    def __init__(self, channels: int, norm: str, dropout: bool):
        super().__init__()
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm_layer(norm, channels),
                  nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(_Network):
    """CycleGAN's generator (Zhu et al. 2017, after Johnson et al.; the reference's ``ResnetGenerator``).

    Reflection pad 3 + 7×7 conv (ngf), two 3×3 stride-2 convs (2·ngf, 4·ngf), ``n_blocks``
    residual blocks (reflection-padded 3×3 convs), two 3×3 stride-2 transposed convs (2·ngf,
    ngf), reflection pad 3 + 7×7 conv, ``tanh`` mapped to [0, 1]; norm and ReLU after every
    inner convolution.

    Args:
        in_channels, out_channels: image channels in and out.
        ngf: filters of the first layer.
        n_blocks: residual blocks (9 for 256² images, 6 for 128² in CycleGAN).
        norm: ``"instance"`` (CycleGAN), ``"batch"`` or ``"none"``.
        dropout: dropout 0.5 inside the residual blocks (off in CycleGAN).

    Shape:
        input (Tensor[N, in_channels, H, W]) in [0, 1], H and W multiples of 4
        -> Tensor[N, out_channels, H, W] in [0, 1].

    Example:
        >>> g = ResnetGenerator(ngf=8, n_blocks=2)
        >>> g(torch.rand(1, 3, 36, 20)).shape
        torch.Size([1, 3, 36, 20])
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: bool = False):
        super().__init__(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_blocks=n_blocks, norm=norm,
                         dropout=dropout)
        bias = norm != "batch"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), _norm_layer(norm, ngf),
                  nn.ReLU(inplace=True)]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1, bias=bias), _norm_layer(norm, c * 2),
                       nn.ReLU(inplace=True)]
        layers += [_ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       _norm_layer(norm, c // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def size_rule(self) -> Tuple[int, str, int, str]:
        return 4, "two stride-2 downsamplings", 16, ""  # reflection pad 3 at H/4 needs H/4 > 3


class PatchDiscriminator(_Network):
    """The PatchGAN discriminator of pix2pix and CycleGAN (the reference's ``NLayerDiscriminator``).

    4×4 convolutions with LeakyReLU 0.2: ``n_layers`` of stride 2 (ndf, 2·ndf, 4·ndf, ... capped
    at 8·ndf; no norm on the first), one of stride 1, and a stride-1 convolution to one logit per
    patch. With ``n_layers=3`` (64→128→256→512→1) every logit sees a 70×70 patch and a 256²
    input gives 30×30 logits; ``n_layers=0`` is the 1×1 "PixelGAN" is not offered (use 1 or more).
    For pix2pix's conditional D, concatenate the input and the (real or generated) output on
    channels (``in_channels=6``).

    Args:
        in_channels: channels of the (concatenated) input.
        ndf: filters of the first layer.
        n_layers: stride-2 layers; the receptive field is 70 for 3, 34 for 2, 16 for 1, 142 for 4.
        norm: ``"batch"`` (pix2pix), ``"instance"`` (CycleGAN) or ``"none"``.

    Shape:
        input (Tensor[N, in_channels, H, W]) in [0, 1] -> Tensor[N, 1, H', W'] logits, with
        ``H' = H/2**n_layers − 2`` for H a multiple of ``2**n_layers``.

    Example:
        >>> d = PatchDiscriminator(in_channels=6, ndf=8)
        >>> d(torch.rand(1, 6, 256, 256)).shape
        torch.Size([1, 1, 30, 30])
    """

    GENERATOR = False  # logits, not an image

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm)
        bias = norm != "batch"
        layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                       _norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), _norm_layer(norm, ndf * mult),
                   nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """Side of the input patch each logit sees: ``9·2**n_layers − 2`` (70 for 3 layers).

        Backwards from one logit: the two stride-1 4×4 layers see 7 positions, and each stride-2
        4×4 layer maps r positions to 2r + 2.
        """
        return 9 * 2 ** self.config["n_layers"] - 2

    def size_rule(self) -> Tuple[int, str, int, str]:
        return 1, "", 2 ** self.config["n_layers"] * 3, f" for n_layers={self.config['n_layers']}"


#: class name -> class, for rebuilding a network from a checkpoint's ``{"class": ..., "config": ...}``.
GAN_MODELS = {cls.__name__: cls for cls in (UNetGenerator, ResnetGenerator, PatchDiscriminator)}


def build_gan_model(name: str, **config) -> nn.Module:
    """The network class ``name`` (a key of :data:`GAN_MODELS`) built with ``config``."""
    _checks.choice(name, "model", tuple(GAN_MODELS))
    return GAN_MODELS[name](**config)
