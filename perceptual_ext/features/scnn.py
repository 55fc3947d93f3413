"""The shallow wide CNN of random filters (S-CNN, seed 004 §1.2) on the fused op."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks
from ..ops import scnn_features


class SCNN(nn.Module):
    r"""Random S-CNN features: one ``P x P`` conv, ``depth`` 1x1 convs, ReLU after each, average pool.

    .. math::
        y = \mathrm{AvgPool}_{W,S}\big(\mathrm{ReLU}(W_D \cdots \mathrm{ReLU}(W_0 * (2x - 1)))\big)

    Weights are drawn once from Kaiming-normal (fan-in, ReLU gain: std :math:`\sqrt{2/\mathrm{fan\_in}}`)
    with a generator seeded by ``seed`` (the same weights on every machine), biases are zero, and
    all of them are buffers (frozen; ``parameters()`` is empty). Images in [0, 1] are mapped to
    [-1, 1] first, the range of seed 004's reimplementation. ``forward`` runs the fused
    :func:`perceptual_ext.ops.scnn_features` (zero padding ``P // 2``; see there), differentiable
    w.r.t. the image. ``module.to(torch.bfloat16)`` on CUDA runs the bfloat16 path.

    Args:
        in_channels: image channels ``C_in``. channels: width ``C``. depth: number ``D`` of 1x1 convs.
        patch_size: first conv kernel ``P`` (odd). window, stride: pooling ``W``, ``S``.
        zero_mean_filters: subtract each first-layer filter's spatial mean per input channel
            (seed 004's "zero-mean filters": the DC of every channel is ignored).
        patch_norm: normalize every input patch to unit L2 norm before the first conv.
        seed: seed of the random weights.

    Shape:
        input ``[N, C_in, H, W]`` with ``H, W >= window``; output ``[N, C, (H-W)//S+1, (W-W)//S+1]``.

    Example:
        >>> net = SCNN(channels=64, depth=2)
        >>> net(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 64, 3, 3])
    """

    def __init__(self, in_channels: int = 3, channels: int = 1024, depth: int = 6, patch_size: int = 3,
                 window: int = 32, stride: int = 16, zero_mean_filters: bool = False, patch_norm: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        _checks.positive_int(in_channels, "in_channels")
        _checks.positive_int(channels, "channels")
        _checks.positive_int(depth, "depth", minimum=0)
        _checks.positive_int(patch_size, "patch_size")
        if patch_size % 2 == 0:
            raise ValueError(f"patch_size must be odd (zero padding P // 2 keeps the size), got {patch_size}")
        self.window = _checks.positive_int(window, "window")
        self.stride = _checks.positive_int(stride, "stride")
        for name, flag in (("zero_mean_filters", zero_mean_filters), ("patch_norm", patch_norm)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.patch_norm = patch_norm
        self.zero_mean_filters = zero_mean_filters
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        first = torch.empty(channels, in_channels, patch_size, patch_size)
        nn.init.kaiming_normal_(first, nonlinearity="relu", generator=generator)
        if zero_mean_filters:
            first -= first.mean(dim=(2, 3), keepdim=True)
        weights = torch.empty(depth, channels, channels)
        for layer in weights:
            nn.init.kaiming_normal_(layer, nonlinearity="relu", generator=generator)
        self.register_buffer("first_weight", first)
        self.register_buffer("first_bias", torch.zeros(channels))
        self.register_buffer("weights", weights)
        self.register_buffer("biases", torch.zeros(depth, channels))

    @property
    def channels(self) -> int:
        return self.first_weight.shape[0]

    @property
    def depth(self) -> int:
        return self.weights.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        _checks.floating(x, "x")
        x = (2 * x - 1).to(self.first_weight.dtype)
        return scnn_features(x, self.first_weight, self.first_bias, self.weights, self.biases, self.window,
                             self.stride, self.patch_norm)

    def extra_repr(self) -> str:
        c_out, c_in, p, _ = self.first_weight.shape
        return (f"in_channels={c_in}, channels={c_out}, depth={self.depth}, patch_size={p}, window={self.window}, "
                f"stride={self.stride}, zero_mean_filters={self.zero_mean_filters}, patch_norm={self.patch_norm}, "
                f"seed={self.seed}")
