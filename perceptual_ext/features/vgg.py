"""VGG16 convolutional features with torchvision's state-dict layout, random or loaded from a file."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks

# torchvision's vgg16 "D" configuration: output channels per conv, "M" for a 2x2 max pool.
_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple:
    names, block, conv = [], 1, 1
    for v in _CONFIG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return tuple(names)


#: Names of the 31 layers of ``features`` in order: conv1_1, relu1_1, ..., pool5 (index = position).
VGG16_LAYERS = _layer_names()


class _FrozenConv2d(nn.Module):
    """3x3 conv (padding 1) whose weight and bias are buffers, under nn.Conv2d's state-dict keys."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.empty(out_channels, in_channels, 3, 3))
        self.register_buffer("bias", torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


def _read_state_dict(weights) -> Mapping:
    if isinstance(weights, Mapping):
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None, a path to a .pth state dict, or a state dict, got {type(weights).__name__}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights: no such file {path!r} (expected a torchvision VGG16 state dict, e.g. vgg16-397923af.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"weights: could not read {path!r} as a state dict with torch.load(weights_only=True): {exc}") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"weights: {path!r} holds a {type(state).__name__}, expected a state dict (a mapping of tensors)")
    return state


class VGG16Features(nn.Module):
    r"""Named intermediate layers of VGG16's convolutional part (Simonyan & Zisserman; Johnson et al.).

    Our own definition with torchvision's keys (``features.0.weight`` ... ``features.28.bias``), so
    torchvision's ``vgg16`` state dict loads as is (its ``classifier.*`` entries are ignored). All
    weights are buffers (frozen). Images in [0, 1] are normalized with ImageNet's mean and std
    inside; a single-channel image is repeated to RGB. ``forward`` stops after the last requested
    layer.

    Args:
        layers: names from :data:`VGG16_LAYERS` to return (``relu1_2``, ``relu2_2``, ``relu3_3``,
            ``relu4_3``, ``conv3_1``, ``pool2``, ...).
        weights: ``None`` for random weights (Kaiming normal, fan-in, zero bias, drawn from a
            generator seeded by ``seed`` -- seed 004's "random VGG"), a path to a ``.pth`` state
            dict loaded with ``torch.load(weights_only=True)``, or a state dict. A missing file,
            missing/unexpected keys or wrong shapes raise ``ValueError``.
        seed: seed of the random weights.

    Shape:
        input ``[N, 1 or 3, H, W]``; output a dict ``{name: Tensor[N, C_l, H_l, W_l]}`` in the order of
        ``layers``.

    Example:
        >>> vgg = VGG16Features(layers=("relu1_2", "relu2_2"))
        >>> {k: tuple(v.shape) for k, v in vgg(torch.rand(1, 3, 32, 32)).items()}
        {'relu1_2': (1, 64, 32, 32), 'relu2_2': (1, 128, 16, 16)}
    """

    def __init__(self, layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 weights: Union[None, str, os.PathLike, Mapping] = None, seed: int = 0) -> None:
        super().__init__()
        if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
            raise TypeError(f"layers must be a non-empty list or tuple of layer names, got {layers!r}")
        for name in layers:
            if name not in VGG16_LAYERS:
                raise ValueError(f"layers: unknown VGG16 layer {name!r}; expected names from {VGG16_LAYERS}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a name, got {tuple(layers)}")
        self.layers = tuple(layers)
        self._last = max(VGG16_LAYERS.index(name) for name in self.layers)
        modules, in_channels = [], 3
        for v in _CONFIG:
            if v == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [_FrozenConv2d(in_channels, v), nn.ReLU()]
                in_channels = v
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is None:
            self._init_random(seed)
        else:
            self.load_vgg_state_dict(_read_state_dict(weights))

    def _convs(self):
        return [(i, m) for i, m in enumerate(self.features) if isinstance(m, _FrozenConv2d)]

    def _init_random(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        generator = torch.Generator().manual_seed(seed)
        for _, conv in self._convs():
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
            conv.bias.zero_()

    def load_vgg_state_dict(self, state: Mapping) -> None:
        """Load torchvision-layout weights (``features.<i>.weight/bias``; ``classifier.*`` ignored)."""
        expected = {f"features.{i}.{p}": getattr(conv, p).shape for i, conv in self._convs() for p in ("weight", "bias")}
        keys = [k for k in state if not str(k).startswith("classifier.")]
        missing = sorted(set(expected) - set(keys))
        unexpected = sorted(set(keys) - set(expected))
        if missing or unexpected:
            raise ValueError(f"weights: not a torchvision VGG16 state dict; missing keys {missing[:6]}"
                             f"{'...' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
                             f"{'...' if len(unexpected) > 6 else ''}")
        for key, shape in expected.items():
            value = state[key]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise ValueError(f"weights: {key} must be a floating-point tensor, got {type(value).__name__}")
            if value.shape != shape:
                raise ValueError(f"weights: {key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        self.load_state_dict({k: state[k].to(torch.float32) for k in expected}, strict=True)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        _checks.floating(x, "x")
        _checks.rank(x, "x", (4,), "[N, 1 or 3, H, W]")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels (RGB in [0, 1]), got {x.shape[1]}")
        pools = sum(1 for name in VGG16_LAYERS[: self._last] if name.startswith("pool"))
        if min(x.shape[2:]) < 2 ** pools:
            deepest = VGG16_LAYERS[self._last]
            raise ValueError(f"x is {x.shape[2]}x{x.shape[3]} pixels: layer {deepest} comes after {pools} 2x2 max "
                             f"pools and needs at least {2 ** pools}x{2 ** pools}")
        h = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        found = {}
        for i, module in enumerate(self.features[: self._last + 1]):
            h = module(h)
            if VGG16_LAYERS[i] in self.layers:
                found[VGG16_LAYERS[i]] = h
        return {name: found[name] for name in self.layers}

    def extra_repr(self) -> str:
        return f"layers={self.layers}"
