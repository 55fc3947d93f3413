"""Argument validation shared by ops, losses and metrics.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
value or device) with a message that names the argument and quotes what was received.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def floating(x, name: str) -> Tensor:
    """A real floating-point tensor: float16, bfloat16, float32 or float64.

    The dtype policy of every op, on every device: float32/float64 are computed in their own
    precision; float16/bfloat16 are accepted and the result (and gradient) comes back in their
    dtype, computed in float32 (or, where a CUDA kernel supports them natively, with float32
    accumulation: gram, scnn_features).
    """
    tensor(x, name)
    if x.dtype not in FLOATING:
        raise TypeError(f"{name} must be a real floating-point tensor: float32 or float64, or float16/bfloat16 "
                        f"(computed in float32 and returned in their dtype), got dtype {x.dtype}")
    return x


def rank(x: Tensor, name: str, ranks: Iterable[int], layout: str) -> Tensor:
    ranks = tuple(ranks)
    if x.dim() not in ranks:
        raise ValueError(f"{name} must be {layout}, got a {x.dim()}-D tensor of shape {tuple(x.shape)}")
    return x


def same_device(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} must be on the same device, got {a.device} and {b.device}")


def same_dtype(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def choice(value, name: str, options: Iterable[str]) -> str:
    options = tuple(options)
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def reduction(value) -> str:
    return choice(value, "reduction", REDUCTIONS)


def reduce(per_sample: Tensor, how: str) -> Tensor:
    """Apply a torch-style reduction to a loss per sample [N] (or per element, any shape)."""
    if how == "mean":
        return per_sample.mean() if per_sample.numel() else per_sample.sum()
    if how == "sum":
        return per_sample.sum()
    return per_sample


def compute_dtype(x: Tensor, native_cuda: bool = False) -> torch.dtype:
    """The dtype an op computes reduced-precision input in (see :func:`floating`): float32,
    or the input's own dtype on CUDA where the op's kernel supports it (``native_cuda``)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not (native_cuda and x.device.type == "cuda"):
        return torch.float32
    return x.dtype


def device(value=None, name: str = "device") -> torch.device:
    """The one place a default device is chosen: ``None`` gives CUDA when it is available, else the
    CPU; anything else must name a CPU or an available CUDA device (``"cpu"``, ``"cuda"``, ``"cuda:1"``)."""
    if value is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(value, torch.device):
        resolved = value
    elif isinstance(value, str):
        try:
            resolved = torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(f"{name} must be 'cpu' or 'cuda[:N]', got {value!r}") from None
    else:
        raise TypeError(f"{name} must be a str or torch.device, got {type(value).__name__}")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be 'cpu' or 'cuda[:N]', got {value!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {value!r}: CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved
