"""What every torchvision-layout feature extractor shares: frozen convs under nn.Conv2d's keys,
reading a user's weight file, and strict validation of a state dict against the module's keys."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks

WeightsArg = Union[None, str, os.PathLike, Mapping]


class FrozenConv2d(nn.Module):
    """A conv whose weight and bias are buffers (frozen), under nn.Conv2d's state-dict keys."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        self.register_buffer("weight", torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("bias", torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


def read_state_dict(weights, arch: str, example: str, name: str = "weights") -> Tuple[Mapping, Optional[str]]:
    """``(state dict, path or None)`` from a mapping or a ``.pth`` file (``torch.load(weights_only=True)``,
    on the CPU). A missing or unreadable file, or one that holds no mapping, raises ``ValueError``
    naming ``name`` and the file; ``arch``/``example`` say what was expected."""
    if isinstance(weights, Mapping):
        return weights, None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{name} must be None, a path to a .pth state dict, or a state dict, "
                        f"got {type(weights).__name__}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such file {path!r} (expected {arch} state dict, e.g. {example})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"{name}: could not read {path!r} as a state dict with torch.load(weights_only=True): "
                         f"{exc}") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"{name}: {path!r} holds a {type(state).__name__}, expected a state dict "
                         "(a mapping of tensors)")
    return state, path


def _some(keys) -> str:
    keys = sorted(keys)
    return f"{keys[:6]}{'...' if len(keys) > 6 else ''}"


def load_strict(module: nn.Module, state: Mapping, arch: str, path: Optional[str] = None, name: str = "weights",
                ignore_prefix: Tuple[str, ...] = ("classifier.",)) -> None:
    """Load ``state`` into ``module``'s buffers, exactly: every key of ``module.state_dict()`` present
    with its shape, no other key (except those under ``ignore_prefix``, e.g. torchvision's
    ``classifier.*``), floating-point tensors only (cast to float32). Anything else raises
    ``ValueError`` naming ``name``, the file and the key."""
    where = f"{name} ({path!r})" if path else name
    expected = {k: v.shape for k, v in module.state_dict().items()}
    keys = [k for k in state if not str(k).startswith(ignore_prefix)]
    missing = set(expected) - set(keys)
    unexpected = set(keys) - set(expected)
    if missing or unexpected:
        raise ValueError(f"{where}: not {arch} state dict; missing keys {_some(missing)}, unexpected keys "
                         f"{_some(unexpected)}")
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(f"{where}: {key} must be a floating-point tensor, got {type(value).__name__}")
        if value.shape != shape:
            raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    module.load_state_dict({k: state[k].to(torch.float32) for k in expected}, strict=True)


def init_random(module: nn.Module, seed: int) -> None:
    """Kaiming-normal (fan-in, ReLU gain) weights and zero biases for every FrozenConv2d of
    ``module``, in module order, from a generator seeded by ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    generator = torch.Generator().manual_seed(seed)
    for conv in module.modules():
        if isinstance(conv, FrozenConv2d):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=generator)
            conv.bias.zero_()


def check_layers(layers, known: Tuple[str, ...], arch: str) -> Tuple[str, ...]:
    """A non-empty tuple of distinct names from ``known``."""
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(f"layers must be a non-empty list or tuple of layer names, got {layers!r}")
    for name in layers:
        if name not in known:
            raise ValueError(f"layers: unknown {arch} layer {name!r}; expected names from {known}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must not repeat a name, got {tuple(layers)}")
    return tuple(layers)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def run_taps(features: nn.Sequential, h: Tensor, taps: Mapping, layers: Tuple[str, ...]) -> dict:
    """Run ``features`` on ``h`` up to the last requested tap; ``{name: output of module taps[name]}``
    in the order of ``layers``."""
    wanted = {taps[name]: name for name in layers}
    last = max(wanted)
    found = {}
    for i, module in enumerate(features[: last + 1]):
        h = module(h)
        if i in wanted:
            found[wanted[i]] = h
    return {name: found[name] for name in layers}


def _output_side(module: nn.Module, side: int) -> int:
    """The output side of ``module`` for an input side ``side``: torch's rule for convolutions and
    max pooling (floor or ceil mode); every other module of these stacks keeps the size."""
    if isinstance(module, FrozenConv2d):
        kernel, stride, padding, ceil = module.weight.shape[-1], module.stride, module.padding, False
    elif isinstance(module, nn.MaxPool2d):
        kernel, stride, padding, ceil = module.kernel_size, module.stride, module.padding, module.ceil_mode
    else:
        return side
    span = side + 2 * padding - kernel
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= side + padding else out  # the last window starts inside


def smallest_side(features: nn.Sequential, index: int) -> int:
    """The smallest input side for which ``features[:index + 1]`` gives an output of at least 1x1."""
    side = 1
    while True:
        size = side
        for module in features[: index + 1]:
            size = _output_side(module, size)
            if size < 1:
                break
        else:
            return side
        side += 1


class TorchvisionFeatures(nn.Module):
    """Base of the fixed feature extractors with torchvision's ``features.*`` keys.

    A subclass sets ``ARCH`` (e.g. ``"a torchvision AlexNet"``), ``EXAMPLE`` (a weight file name)
    and ``TAPS`` (layer name -> index into ``features`` whose output it is), and builds its
    ``features`` in :meth:`build`; ``min_size`` (layer name -> the smallest input side that reaches
    it) follows from them.

    Args:
        layers: names from ``TAPS`` to return (default: all of them).
        weights: ``None`` for random weights (Kaiming normal, fan-in, zero bias, seeded by ``seed``),
            a path to a torchvision ``.pth`` state dict of the architecture, or a state dict.
        seed: seed of the random weights.
    """

    ARCH = ""
    EXAMPLE = ""
    TAPS: Mapping = {}

    def __init__(self, layers: Optional[Sequence[str]] = None, weights: WeightsArg = None, seed: int = 0) -> None:
        super().__init__()
        self.features = self.build()
        self.min_size = {name: smallest_side(self.features, index) for name, index in self.TAPS.items()}
        self.layers = check_layers(tuple(self.TAPS) if layers is None else layers, tuple(self.TAPS),
                                   self.ARCH.split()[-1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is None:
            init_random(self, seed)
        else:
            state, path = read_state_dict(weights, self.ARCH, self.EXAMPLE)
            load_strict(self, state, self.ARCH, path)

    def build(self) -> nn.Sequential:
        """The layers (``features``), with torchvision's indices."""
        raise NotImplementedError

    def taps(self, h: Tensor, layers: Optional[Tuple[str, ...]] = None) -> dict:
        """The requested layers' outputs for an input ``h`` that is already scaled (no ImageNet
        normalization): what LPIPS uses after its own scaling layer."""
        return run_taps(self.features, h, self.TAPS, self.layers if layers is None else layers)

    def forward(self, x: Tensor) -> dict:
        _checks.floating(x, "x")
        _checks.rank(x, "x", (4,), "[N, 1 or 3, H, W]")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels (RGB in [0, 1]), got {x.shape[1]}")
        deepest = max(self.layers, key=lambda name: (self.min_size[name], self.TAPS[name]))
        if min(x.shape[2:]) < self.min_size[deepest]:
            side = self.min_size[deepest]
            raise ValueError(f"x is {x.shape[2]}x{x.shape[3]} pixels: {self.ARCH.split(' ', 2)[-1]} layer {deepest} "
                             f"needs at least {side}x{side}")
        h = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.taps(h)

    def extra_repr(self) -> str:
        return f"layers={self.layers}"
