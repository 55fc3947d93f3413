"""Normalized cross-correlation loss: 1 - NCC of equal-size images or patches."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks

# Same relative flatness bound as the match_template kernel (csrc/common/match_template.h).
_FLAT_TOLERANCE = 64.0 * torch.finfo(torch.float64).eps


def _ncc(input: Tensor, target: Tensor) -> Tensor:
    """Per-sample NCC with per-channel means, accumulated in float64; [N].

    ``target`` may have batch 1: its statistics are computed once and broadcast. Each side's
    statistics are built from that side alone, so a side that does not require grad (the usual
    target) adds no backward work.
    """
    x = input.double().flatten(2)
    y = target.double().flatten(2)
    xc = x - x.mean(2, keepdim=True)
    yc = y - y.mean(2, keepdim=True)
    num = (xc * yc).sum((1, 2))
    var_x, var_y = xc.square().sum((1, 2)), yc.square().sum((1, 2))
    flat_x = var_x <= _FLAT_TOLERANCE * x.square().sum((1, 2))
    flat_y = var_y <= _FLAT_TOLERANCE * y.square().sum((1, 2))
    any_flat = flat_x | flat_y
    # Flat samples take a constant; the safe denominator keeps their gradient finite (zero).
    den = torch.where(any_flat, torch.ones_like(num), (var_x * var_y).sqrt())
    r = (num / den).clamp(-1.0, 1.0)
    r = torch.where(any_flat, (flat_x & flat_y).to(r.dtype), r)
    return r.to(input.dtype)


def ncc_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Functional form of :class:`NCCLoss`."""
    reduction = _checks.reduction(reduction)
    _checks.floating(input, "input")
    _checks.floating(target, "target")
    _checks.rank(input, "input", (4,), "[N, C, H, W]")
    _checks.rank(target, "target", (4,), "[N or 1, C, H, W]")
    _checks.same_device(input, target, "input", "target")
    if target.shape[1:] != input.shape[1:]:
        raise ValueError(f"target must have the shape of input [C, H, W] = {tuple(input.shape[1:])}, "
                         f"got {tuple(target.shape[1:])}")
    if target.shape[0] not in (1, input.shape[0]):
        raise ValueError(f"target batch must be 1 or {input.shape[0]}, got {target.shape[0]}")
    return _checks.reduce(1.0 - _ncc(input, target), reduction)


class NCCLoss(nn.Module):
    r"""One minus the normalized cross-correlation of equal-size images (or patches), per sample.

    .. math::
        \ell(x, y) = 1 - \frac{\sum_c \sum_p (x_{c,p} - \bar x_c)(y_{c,p} - \bar y_c)}
        {\sqrt{\sum_c \sum_p (x_{c,p} - \bar x_c)^2 \; \sum_c \sum_p (y_{c,p} - \bar y_c)^2}}

    The NCC is :func:`perceptual_ext.ops.match_template` ``method="ncc"`` (OpenCV's
    TM_CCOEFF_NORMED) of a template the size of the image, with the same conventions: per-channel
    means, sums in float64, the value clamped to [-1, 1], and flat images defined (NCC 1 when both
    are flat, 0 when exactly one is, so the loss is 0, resp. 1, with zero gradient), never NaN.
    The loss lies in [0, 2] and is invariant to each image's brightness offset and contrast scale.

    Args:
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Shape:
        input (Tensor[N, C, H, W]), target (Tensor[N or 1, C, H, W]); a target batch of 1 broadcasts.

    Example:
        >>> loss_fn = NCCLoss()
        >>> x = torch.rand(4, 3, 32, 32, requires_grad=True)
        >>> loss_fn(x, 2 * x.detach() + 0.1).item() < 1e-6
        True
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _checks.reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ncc_loss(input, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
