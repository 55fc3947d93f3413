"""VGG16 convolutional features with torchvision's state-dict layout, random or loaded from a file."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Sequence, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ._torchvision import FrozenConv2d, check_layers, init_random, load_strict, read_state_dict, run_taps

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
        self.layers = check_layers(layers, VGG16_LAYERS, "VGG16")
        self._last = max(VGG16_LAYERS.index(name) for name in self.layers)
        modules, in_channels = [], 3
        for v in _CONFIG:
            if v == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [FrozenConv2d(in_channels, v, 3, padding=1), nn.ReLU()]
                in_channels = v
        self.features = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is None:
            init_random(self, seed)
        else:
            self.load_vgg_state_dict(*read_state_dict(weights, "a torchvision VGG16", "vgg16-397923af.pth"))

    def load_vgg_state_dict(self, state: Mapping, path: Union[None, str] = None) -> None:
        """Load torchvision-layout weights (``features.<i>.weight/bias``; ``classifier.*`` ignored), strictly:
        missing or unexpected keys, wrong shapes or non-float tensors raise ``ValueError``."""
        load_strict(self, state, "a torchvision VGG16", path)

    def taps(self, h: Tensor, layers: Union[None, Sequence[str]] = None) -> Dict[str, Tensor]:
        """The requested layers' outputs for an input ``h`` that is already scaled (no ImageNet
        normalization): what LPIPS uses after its own scaling layer."""
        layers = self.layers if layers is None else tuple(layers)
        return run_taps(self.features, h, {name: VGG16_LAYERS.index(name) for name in layers}, layers)

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
