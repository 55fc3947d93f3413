"""The FID variant of Inception v3 (pytorch-fid's network), loaded from the user's weight file.

Our own definition whose state-dict keys are those of pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (torchvision's ``Inception3`` layout with 1008 classes,
no auxiliary classifier): ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
... ``fc.weight``. Nothing is downloaded: the file comes from the user.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from ._torchvision import read_state_dict

#: The weight file pytorch-fid downloads (the TensorFlow FID Inception ported to PyTorch).
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
#: Resize conventions: pytorch-fid's bilinear ``F.interpolate`` or clean-fid's PIL bicubic.
RESIZE_MODES = ("bilinear", "clean", None)
INPUT_SIZE = 299
FEATURE_DIM = 2048
_BN_EPS = 1e-3
_NUM_CLASSES = 1008


class _Conv(nn.Module):
    """torchvision's ``BasicConv2d``: conv (no bias) → batch norm (eval, eps 1e-3) → ReLU; buffers only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        self.stride, self.padding = stride, padding
        self.conv = nn.Module()
        self.conv.register_buffer("weight", torch.empty(out_channels, in_channels, kh, kw))
        self.bn = nn.Module()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.bn.register_buffer(name, torch.full((out_channels,), value))

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.conv.weight, None, self.stride, self.padding)
        x = F.batch_norm(x, self.bn.running_mean, self.bn.running_var, self.bn.weight, self.bn.bias,
                         training=False, eps=_BN_EPS)
        return F.relu_(x)


def _avg_pool_3x3(x: Tensor) -> Tensor:
    # TensorFlow's average pool leaves the padded zeros out of the mean (pytorch-fid's FID patch).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):  # torchvision InceptionA with the FID pool
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(in_channels, 64, 1)
        self.branch5x5_1 = _Conv(in_channels, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_3x3(x))], 1)


class _BlockB(nn.Module):  # torchvision InceptionB (grid reduction 35 -> 17)
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(in_channels, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):  # torchvision InceptionC with the FID pool
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = _Conv(in_channels, 192, 1)
        self.branch7x7_1 = _Conv(in_channels, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(in_channels, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg_pool_3x3(x))], 1)


class _BlockD(nn.Module):  # torchvision InceptionD (grid reduction 17 -> 8)
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(in_channels, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(in_channels, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    """torchvision InceptionE; pool ``"avg"`` (FID Mixed_7b: count_include_pad=False) or ``"max"``
    (FID Mixed_7c: the TensorFlow graph max-pools here)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = _Conv(in_channels, 320, 1)
        self.branch3x3_1 = _Conv(in_channels, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(in_channels, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_3x3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd), self.branch_pool(pooled)], 1)


def _read_state_dict(weights) -> Mapping:
    if weights is None:
        raise ValueError(f"weights: FIDInceptionV3 needs pytorch-fid's Inception weight file {FID_WEIGHTS_FILE} "
                         f"(download it once from {FID_WEIGHTS_URL} and pass its path; nothing is downloaded "
                         "at run time)")
    if not isinstance(weights, (str, os.PathLike, Mapping)):
        raise TypeError(f"weights must be a path to {FID_WEIGHTS_FILE} or a state dict, got {type(weights).__name__}")
    state, _ = read_state_dict(weights, "pytorch-fid's Inception", f"{FID_WEIGHTS_FILE}, from {FID_WEIGHTS_URL}")
    return state


def _pil_bicubic_299(x: Tensor, size: int) -> Tensor:
    """clean-fid's resize: each channel as a float32 PIL image on the 0..255 scale, bicubic, clipped."""
    from PIL import Image

    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.float32)
    values = (x.detach().to("cpu", torch.float32) * 255.0).numpy()
    for n in range(values.shape[0]):
        for c in range(values.shape[1]):
            resized = Image.fromarray(np.ascontiguousarray(values[n, c])).resize((size, size), Image.Resampling.BICUBIC)
            out[n, c] = np.asarray(resized)
    return torch.from_numpy(np.clip(out, 0.0, 255.0) / 255.0).to(device=x.device, dtype=x.dtype)


def resize_for_inception(x: Tensor, resize: Optional[str] = "bilinear", size: int = INPUT_SIZE) -> Tensor:
    """Resize images ``[N, C, H, W]`` in [0, 1] to ``size x size`` by one of two FID conventions.

    ``"bilinear"``: pytorch-fid's ``F.interpolate(mode="bilinear", align_corners=False)`` (no
    antialiasing). ``"clean"``: clean-fid's resize, PIL bicubic (antialiased) per channel on float
    values on the 0..255 scale, clipped to [0, 255] (computed on the CPU). ``None``: unchanged.
    """
    _checks.choice(resize, "resize", RESIZE_MODES)
    if resize is None or x.shape[-2:] == (size, size):
        return x
    if resize == "bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return _pil_bicubic_299(x, size)


class FIDInceptionV3(nn.Module):
    r"""The Inception v3 of FID (pytorch-fid's ``fid_inception_v3``), 2048-d pool features.

    torchvision's Inception v3 layout with 1008 classes and the TensorFlow graph's differences:
    the average pools of the A, C and first E blocks leave padded zeros out
    (``count_include_pad=False``) and the last E block max-pools. Loads the file pytorch-fid
    downloads, ``pt_inception-2015-12-05-6726825d.pth``, with its state-dict keys as they are
    (``fc.*`` and ``*.num_batches_tracked`` are accepted and not used). Every weight is a buffer.

    Input images in [0, 1] are resized to 299x299 (``resize``), mapped to [-1, 1] by ``2x - 1`` as
    pytorch-fid does, and run up to the global average pool.

    Args:
        weights: path to ``pt_inception-2015-12-05-6726825d.pth`` (or a state dict with its keys).
            Required: ``None`` raises a ``ValueError`` naming the file. Missing or unexpected
            keys and wrong shapes raise ``ValueError``.
        resize: ``"bilinear"`` (pytorch-fid: ``F.interpolate``, ``align_corners=False``),
            ``"clean"`` (clean-fid: PIL bicubic per channel on float values, computed on the CPU),
            or ``None`` (no resizing; the network needs at least 75x75, and FID values are only
            comparable at 299x299).

    Shape:
        input ``[N, 3, H, W]`` (or ``[N, 1, H, W]``, repeated to RGB), float in [0, 1];
        output ``[N, 2048]`` in the input's dtype (float32 or float64; half precision is
        computed in float32).

    Example:
        >>> net = FIDInceptionV3("pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
        >>> net(torch.rand(4, 3, 128, 128)).shape  # doctest: +SKIP
        torch.Size([4, 2048])
    """

    def __init__(self, weights: Union[str, os.PathLike, Mapping, None] = None,
                 resize: Optional[str] = "bilinear") -> None:
        super().__init__()
        self.resize = _checks.choice(resize, "resize", RESIZE_MODES)
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, channels_7x7=128)
        self.Mixed_6c = _BlockC(768, channels_7x7=160)
        self.Mixed_6d = _BlockC(768, channels_7x7=160)
        self.Mixed_6e = _BlockC(768, channels_7x7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, pool="avg")
        self.Mixed_7c = _BlockE(2048, pool="max")
        self.load_fid_state_dict(_read_state_dict(weights))
        self.eval()

    @staticmethod
    def _optional_keys() -> Dict[str, Tuple[int, ...]]:
        return {"fc.weight": (_NUM_CLASSES, FEATURE_DIM), "fc.bias": (_NUM_CLASSES,)}

    def load_fid_state_dict(self, state: Mapping) -> None:
        """Load pytorch-fid's Inception weights (its keys as they are; ``fc.*`` and BN
        ``num_batches_tracked`` entries are checked and ignored)."""
        expected = {k: v.shape for k, v in self.state_dict().items()}
        optional = self._optional_keys()
        keys = [str(k) for k in state]
        ignored = {k for k in keys if k in optional or
                   (k.endswith(".bn.num_batches_tracked") and k[: -len("num_batches_tracked")] + "weight" in expected)}
        missing = sorted(set(expected) - set(keys))
        unexpected = sorted(set(keys) - set(expected) - ignored)
        if missing or unexpected:
            raise ValueError(f"weights: not pytorch-fid's FID Inception state dict ({FID_WEIGHTS_FILE}); missing keys "
                             f"{missing[:6]}{'...' if len(missing) > 6 else ''} ({len(missing)}), unexpected keys "
                             f"{unexpected[:6]}{'...' if len(unexpected) > 6 else ''} ({len(unexpected)})")
        for key, shape in list(expected.items()) + [(k, s) for k, s in optional.items() if k in state]:
            value = state[key]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise ValueError(f"weights: {key} must be a floating-point tensor, got "
                                 f"{type(value).__name__ if not isinstance(value, Tensor) else value.dtype}")
            if tuple(value.shape) != tuple(shape):
                raise ValueError(f"weights: {key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        self.load_state_dict({k: state[k].to(torch.float32) for k in expected}, strict=True)

    def forward(self, x: Tensor) -> Tensor:
        _checks.floating(x, "x")
        _checks.rank(x, "x", (4,), "[N, 3, H, W]")
        if x.shape[1] not in (1, 3):
            raise ValueError(f"x must have 3 channels (RGB in [0, 1]) or 1 (repeated to RGB), got {x.shape[1]}")
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        weight_dtype = self.Conv2d_1a_3x3.conv.weight.dtype
        if x.shape[0] == 0:
            return x.new_zeros((0, FEATURE_DIM), dtype=dtype)
        h = resize_for_inception(x.to(dtype).expand(-1, 3, -1, -1), self.resize)
        if min(h.shape[-2:]) < 75:
            raise ValueError(f"x must be at least 75x75 when resize=None, got {tuple(x.shape[-2:])}")
        # channels_last: oneDNN's (and cuDNN's) fast convolution layout, ~1.4x faster on the CPU.
        h = (2.0 * h - 1.0).to(weight_dtype).contiguous(memory_format=torch.channels_last)
        h = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(h)))
        h = F.max_pool2d(h, kernel_size=3, stride=2)
        h = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(h))
        h = F.max_pool2d(h, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            h = block(h)
        return h.mean(dim=(2, 3)).to(dtype)

    def extra_repr(self) -> str:
        return f"resize={self.resize!r}"
