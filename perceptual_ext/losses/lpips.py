"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), version 0.1 of the ``lpips`` package, from the user's weight files, on the fused head op."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from ..features import AlexNetFeatures, SqueezeNet11Features, VGG16Features
from ..features._torchvision import read_state_dict
from ..ops import lpips_layer

#: lpips's ScalingLayer, applied to images in [-1, 1]: (x - shift) / scale.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

#: net -> (feature extractor, its taps in order, their channels): lpips v0.1's three backbones.
NETS: Dict[str, Tuple[type, Tuple[str, ...], Tuple[int, ...]]] = {
    "alex": (AlexNetFeatures, ("relu1", "relu2", "relu3", "relu4", "relu5"), (64, 192, 384, 256, 256)),
    "vgg": (VGG16Features, ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"), (64, 128, 256, 512, 512)),
    "squeeze": (SqueezeNet11Features, ("relu1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9"),
                (64, 128, 256, 384, 384, 512, 512)),
}

WeightsArg = Union[None, str, os.PathLike, Mapping]
#: The smallest image side that reaches every tap of the net.
MIN_SIZE = {"alex": 31, "vgg": 16, "squeeze": 17}


def lin_keys(net: str) -> Tuple[str, ...]:
    """The keys of an ``lpips`` lin file for ``net``: ``lin<k>.model.1.weight``, one per tap."""
    return tuple(f"lin{k}.model.1.weight" for k in range(len(NETS[net][2])))


def load_lin_weights(lin_weights, net: str) -> Tuple[Tensor, ...]:
    """The per-channel weights ``[C_k]`` of every tap, from an ``lpips`` lin file (or its state dict).

    The file is read with ``torch.load(map_location="cpu", weights_only=True)`` (``lpips`` ships the
    old non-zip format, saved from CUDA tensors; both formats load). Strict: exactly the keys
    :func:`lin_keys`, each a floating-point ``[1, C_k, 1, 1]`` tensor with finite, non-negative
    entries (lpips clamps them at 0 while training). Anything else raises ``ValueError`` naming
    the file and the key.
    """
    state, path = read_state_dict(lin_weights, f"an lpips v0.1 '{net}' lin", f"lpips/weights/v0.1/{net}.pth",
                                  name="lin_weights")
    where = f"lin_weights ({path!r})" if path else "lin_weights"
    expected = lin_keys(net)
    missing = [k for k in expected if k not in state]
    unexpected = sorted(str(k) for k in state if k not in expected)
    if missing or unexpected:
        raise ValueError(f"{where}: not an lpips v0.1 '{net}' lin file; missing keys {missing}, unexpected keys "
                         f"{unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")
    weights = []
    for key, channels in zip(expected, NETS[net][2]):
        value = state[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(f"{where}: {key} must be a floating-point tensor, got {type(value).__name__}")
        if tuple(value.shape) != (1, channels, 1, 1):
            raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, expected (1, {channels}, 1, 1)")
        value = value.detach().to("cpu", torch.float32).flatten()
        if not torch.isfinite(value).all():
            raise ValueError(f"{where}: {key} has non-finite entries")
        if (value < 0).any():
            raise ValueError(f"{where}: {key} has negative entries (min {value.min().item():.4g}); LPIPS's lin "
                             f"weights are non-negative")
        weights.append(value)
    return tuple(weights)


class LPIPS(nn.Module):
    r"""Learned Perceptual Image Patch Similarity, lpips v0.1, from your own weight files.

    .. math::
        d(x, y) = \sum_k \frac{1}{H_k W_k} \sum_{h,w} \sum_c w_{k,c}
        \left(\hat F_k(x)_{c,h,w} - \hat F_k(y)_{c,h,w}\right)^2,
        \qquad \hat F = \frac{F}{\|F\|_{2,\mathrm{channels}} + 10^{-10}}

    Images in [0, 1] are mapped to [-1, 1] (lpips's ``normalize=True``) and scaled by lpips's
    layer, ``(x - shift) / scale`` with shift ``(-.030, -.088, -.188)`` and scale
    ``(.458, .448, .450)``; :math:`F_k` are the taps of the backbone (``alex``: its five ReLUs;
    ``vgg``: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; ``squeeze``: SqueezeNet 1.1's seven
    taps); each tap's head is the fused :func:`perceptual_ext.ops.lpips_layer`, which keeps no
    normalized copies (so as a training loss it stores, per tap, nothing beyond the backbone's
    own activations), and whose gradient is finite everywhere (0 where ``x == y``). With
    ``spatial=True`` each tap's map is upsampled bilinearly (``align_corners=False``) to the
    input size and the maps are summed, as lpips does.

    Given the same weights, this equals ``lpips.LPIPS(net=net, version="0.1")(x, y, normalize=True)``
    to float rounding, per image and spatially (tested in float64 against a plain composition).
    Nothing is downloaded: the backbone and the lin layers come from files you name.

    Args:
        net: ``"alex"`` (AlexNet), ``"vgg"`` (VGG16) or ``"squeeze"`` (SqueezeNet 1.1).
        backbone_weights: a torchvision state dict of that network (``features.<i>.*``; a full
            torchvision file with ``classifier.*`` loads too), as a path or a mapping. ``None``:
            a seeded random backbone (seed 004's "random network"): **its distances are not the
            published LPIPS**.
        lin_weights: the ``lpips`` package's lin file for ``net`` (``lpips/weights/v0.1/<net>.pth``,
            keys ``lin<k>.model.1.weight``), as a path or a mapping, loaded strictly (see
            :func:`load_lin_weights`). ``None``: unit weights, lpips's ``lpips=False`` baseline
            (the plain cosine distance of the features).
        spatial: return the distance map ``[N, 1, H, W]`` instead of one number per image.
        reduction: ``'mean'`` (default), ``'sum'`` or ``'none'`` (``[N]``, or ``[N, 1, H, W]`` with
            ``spatial=True``). ``'mean'``/``'sum'`` reduce over every element of that.
        seed: seed of the random backbone (``backbone_weights=None``).

    Every weight is a buffer (``parameters()`` is empty). ``module.double()`` computes in float64;
    the input is cast to the module's dtype.

    Shape:
        input ``[N, 3, H, W]`` in [0, 1] (one channel is repeated to RGB), ``H, W`` at least 31 (alex),
        16 (vgg) or 17 (squeeze); target ``[N or 1, 3, H, W]``.

    Raises:
        ValueError: a missing, unreadable or wrong weight file (missing or unexpected keys, wrong
            shapes, negative lin weights): the message names the file and the key.

    Example:
        >>> loss_fn = LPIPS(net="alex")  # random AlexNet, unit lin weights
        >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)
        >>> loss_fn(x, torch.rand(2, 3, 64, 64)).backward()
    """

    def __init__(self, net: str = "alex", backbone_weights: WeightsArg = None, lin_weights: WeightsArg = None,
                 spatial: bool = False, reduction: str = "mean", seed: int = 0) -> None:
        super().__init__()
        self.net_name = _checks.choice(net, "net", tuple(NETS))
        self.reduction = _checks.reduction(reduction)
        if not isinstance(spatial, bool):
            raise TypeError(f"spatial must be a bool, got {type(spatial).__name__}")
        self.spatial = spatial
        features, self.taps, channels = NETS[net]
        self.net = features(layers=self.taps, weights=backbone_weights, seed=seed)
        lins = load_lin_weights(lin_weights, net) if lin_weights is not None else [torch.ones(c) for c in channels]
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w)
        # float32 as lpips's own buffers (torch.Tensor([...])): module.double() then gives its exact values.
        self.register_buffer("shift", torch.tensor(SHIFT, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE, dtype=torch.float32).view(1, 3, 1, 1))
        self.pretrained_lin = lin_weights is not None

    def _features(self, x: Tensor, grad: bool) -> Dict[str, Tensor]:
        h = ((2 * x - 1) - self.shift) / self.scale
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.net.taps(h)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _checks.floating(input, "input")
        _checks.floating(target, "target")
        _checks.same_device(input, target, "input", "target")
        _checks.rank(input, "input", (4,), "[N, 3, H, W]")
        _checks.rank(target, "target", (4,), "[N or 1, 3, H, W]")
        if input.shape[1] not in (1, 3):
            raise ValueError(f"input must have 3 channels (RGB in [0, 1]) or 1, got {input.shape[1]}")
        if target.shape[1] not in (1, 3) or target.shape[2:] != input.shape[2:] or \
                target.shape[0] not in (1, input.shape[0]):
            raise ValueError(f"input [N, 3, H, W] and target [N or 1, 3, H, W] must agree, got {tuple(input.shape)} "
                             f"and {tuple(target.shape)}")
        side = MIN_SIZE[self.net_name]
        if min(input.shape[2:]) < side:
            raise ValueError(f"input is {input.shape[2]}x{input.shape[3]} pixels: LPIPS(net={self.net_name!r}) needs "
                             f"at least {side}x{side} (its deepest tap)")
        dtype = self.shift.dtype
        x = input.to(dtype).expand(-1, 3, -1, -1)
        y = target.to(dtype).expand(-1, 3, -1, -1)
        fx = self._features(x, True)
        fy = self._features(y, target.requires_grad)
        height, width = input.shape[2:]
        total = None
        for k, name in enumerate(self.taps):
            a, b = fx[name], fy[name]
            if b.shape[0] != a.shape[0]:
                b = b.expand_as(a)
            d = lpips_layer(a, b, getattr(self, f"lin{k}"))
            if self.spatial:
                d = F.interpolate(d, size=(height, width), mode="bilinear", align_corners=False)
            else:
                d = d.mean(dim=(1, 2, 3))
            total = d if total is None else total + d
        if self.reduction == "mean":
            return total.mean() if total.numel() else total.sum()
        if self.reduction == "sum":
            return total.sum()
        return total

    def extra_repr(self) -> str:
        return (f"net={self.net_name!r}, pretrained_lin={self.pretrained_lin}, spatial={self.spatial}, "
                f"reduction={self.reduction!r}")


def lpips_loss(input: Tensor, target: Tensor, net: str = "alex", backbone_weights: WeightsArg = None,
          lin_weights: WeightsArg = None, spatial: bool = False, reduction: str = "mean", seed: int = 0) -> Tensor:
    r"""Functional form of :class:`LPIPS`: builds the module (reading the weight files) on
    ``input``'s device and dtype, and applies it once. For repeated use build :class:`LPIPS` once.

    .. math::
        d(x, y) = \sum_k \operatorname{mean}_{h,w} \sum_c w_{k,c} (\hat F_k(x) - \hat F_k(y))^2_{c,h,w}

    Args:
        input (Tensor[N, 3, H, W]): images in [0, 1].
        target (Tensor[N or 1, 3, H, W]): images in [0, 1].
        net, backbone_weights, lin_weights, spatial, reduction, seed: as :class:`LPIPS`.

    Example:
        >>> x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
        >>> lpips_loss(x, y, net="squeeze").shape
        torch.Size([])
    """
    _checks.floating(input, "input")
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    module = LPIPS(net, backbone_weights, lin_weights, spatial, reduction, seed).to(input.device, dtype)
    return module(input, target)


__all__ = ["LPIPS", "NETS", "SCALE", "SHIFT", "lin_keys", "load_lin_weights", "lpips_loss"]
