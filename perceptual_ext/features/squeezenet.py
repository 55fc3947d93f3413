"""SqueezeNet 1.1 convolutional features with torchvision's state-dict layout, random or from a file."""
from __future__ import annotations


import torch
from torch import Tensor, nn

from ._torchvision import FrozenConv2d, TorchvisionFeatures

#: Tap name -> index in ``features``: conv1's ReLU, then the fire modules lpips taps (its
#: ``squeezenet`` slices end at features 1, 4, 7, 9, 10, 11, 12), named as in the SqueezeNet paper.
SQUEEZENET_LAYERS = {"relu1": 1, "fire3": 4, "fire5": 7, "fire6": 9, "fire7": 10, "fire8": 11, "fire9": 12}


class Fire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze, ReLU, then 1x1 and 3x3 expands, each ReLU, concatenated.
    Keys ``squeeze``, ``expand1x1``, ``expand3x3`` as torchvision's ``Fire``."""

    def __init__(self, in_channels: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = FrozenConv2d(in_channels, squeeze, 1)
        self.expand1x1 = FrozenConv2d(squeeze, expand1x1, 1)
        self.expand3x3 = FrozenConv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], dim=1)


class SqueezeNet11Features(TorchvisionFeatures):
    r"""The convolutional part of SqueezeNet 1.1 (torchvision's ``squeezenet1_1().features``), our own
    definition with torchvision's keys (``features.0.weight``, ``features.3.squeeze.weight``, ...).

    ``features``: conv 3x3/2 3->64, ReLU, max pool 3/2 (ceil), fire(64: 16, 64, 64),
    fire(128: 16, 64, 64), max pool, fire(128: 32, 128, 128), fire(256: 32, 128, 128), max pool,
    fire(256: 48, 192, 192), fire(384: 48, 192, 192), fire(384: 64, 256, 256), fire(512: 64, 256, 256);
    pools with ``ceil_mode=True``. The seven taps (64, 128, 256, 384, 384, 512, 512 channels) are
    lpips's ``squeezenet``. All weights are buffers (frozen). ``forward`` normalizes images in [0, 1]
    with ImageNet's mean and std; :meth:`taps` takes an already scaled input.

    Args:
        layers: names from :data:`SQUEEZENET_LAYERS` to return (default: all).
        weights: ``None`` for random weights (Kaiming normal, fan-in, zero bias, seeded by ``seed``),
            a path to a torchvision SqueezeNet 1.1 ``.pth`` state dict (``classifier.*`` ignored), or a
            state dict. A missing or unreadable file, missing/unexpected keys or wrong shapes raise
            ``ValueError``.
        seed: seed of the random weights.

    Shape:
        input ``[N, 1 or 3, H, W]`` with ``H, W >= 17``; output ``{name: Tensor[N, C_l, H_l, W_l]}``.

    Example:
        >>> net = SqueezeNet11Features(layers=("relu1", "fire9"))
        >>> [tuple(v.shape[1:]) for v in net(torch.rand(1, 3, 64, 64)).values()]
        [(64, 31, 31), (512, 3, 3)]
    """

    ARCH = "a torchvision SqueezeNet 1.1"
    EXAMPLE = "squeezenet1_1-b8a52dc0.pth"
    TAPS = SQUEEZENET_LAYERS

    def build(self) -> nn.Sequential:
        return nn.Sequential(
            FrozenConv2d(3, 64, 3, stride=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
