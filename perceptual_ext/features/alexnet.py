"""AlexNet convolutional features with torchvision's state-dict layout, random or loaded from a file."""
from __future__ import annotations


from torch import nn

from ._torchvision import FrozenConv2d, TorchvisionFeatures

#: Tap name -> index in ``features`` (the output of each of the five ReLUs), lpips's slices.
ALEXNET_LAYERS = {"relu1": 1, "relu2": 4, "relu3": 7, "relu4": 9, "relu5": 11}


class AlexNetFeatures(TorchvisionFeatures):
    r"""The convolutional part of AlexNet (torchvision's ``alexnet().features``, Krizhevsky's one-GPU
    variant), our own definition with torchvision's keys (``features.0.weight`` ... ``features.10.bias``).

    ``features``: conv 11x11/4 (pad 2) 3->64, ReLU, max pool 3/2, conv 5x5 (pad 2) 64->192, ReLU,
    max pool 3/2, conv 3x3 192->384, ReLU, conv 3x3 384->256, ReLU, conv 3x3 256->256, ReLU, max pool
    3/2. The taps are the five ReLUs (64, 192, 384, 256, 256 channels), as lpips's ``alexnet``.
    All weights are buffers (frozen). ``forward`` normalizes images in [0, 1] with ImageNet's mean
    and std (a single channel is repeated to RGB); :meth:`taps` takes an already scaled input.

    Args:
        layers: names from :data:`ALEXNET_LAYERS` to return (default: all).
        weights: ``None`` for random weights (Kaiming normal, fan-in, zero bias, seeded by ``seed``),
            a path to a torchvision AlexNet ``.pth`` state dict (``classifier.*`` ignored), or a state
            dict. A missing or unreadable file, missing/unexpected keys or wrong shapes raise
            ``ValueError``.
        seed: seed of the random weights.

    Shape:
        input ``[N, 1 or 3, H, W]`` with ``H, W >= 31``; output ``{name: Tensor[N, C_l, H_l, W_l]}``.

    Example:
        >>> net = AlexNetFeatures()
        >>> [tuple(v.shape[1:]) for v in net(torch.rand(1, 3, 64, 64)).values()]
        [(64, 15, 15), (192, 7, 7), (384, 3, 3), (256, 3, 3), (256, 3, 3)]
    """

    ARCH = "a torchvision AlexNet"
    EXAMPLE = "alexnet-owt-7be5be79.pth"
    TAPS = ALEXNET_LAYERS

    def build(self) -> nn.Sequential:
        return nn.Sequential(
            FrozenConv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            FrozenConv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            FrozenConv2d(192, 384, 3, padding=1), nn.ReLU(),
            FrozenConv2d(384, 256, 3, padding=1), nn.ReLU(),
            FrozenConv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2))
