"""VGG16 perceptual losses (Johnson et al.'s l_feat and l_style; seeds 000/003) and total variation."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Callable, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ..features import VGG16Features
from ..ops import gram
from ._statistics import Statistics, mean_over_targets, squared_distance

FEATURES = ("l2", "gram", "both")


class PerceptualLoss(nn.Module):
    r"""Multi-layer VGG16 feature loss, optionally with the Gram-matrix style term.

    .. math::
        \ell(x, y) = \sum_i \frac{\lambda_i}{C_i H_i W_i} \|F_i(x) - F_i(y)\|_2^2
        \;+\; w_s \sum_i \lambda_i \|G(F_i(x)) - G(F_i(y))\|_F^2,
        \qquad G(\psi) = \psi\psi^\top / (C_i H_i W_i)

    The first sum is used for ``feature="l2"``, the second for ``"gram"``, both for ``"both"``; the
    Gram matrices come from :func:`perceptual_ext.ops.gram`. :math:`F_i` are the named layers of
    :class:`~perceptual_ext.features.VGG16Features` (trained weights from a file, or random ones --
    seed 004 shows random VGG works about as well). The network's weights are frozen buffers.

    Args:
        layers: VGG16 layer names (default Johnson et al.'s relu1_2, relu2_2, relu3_3, relu4_3).
        layer_weights: :math:`\lambda_i`, one per layer (default all 1).
        feature: ``"l2"`` (feature reconstruction), ``"gram"`` (style reconstruction) or ``"both"``.
        style_weight: :math:`w_s`, the factor of the Gram term.
        weights: ``None`` (random VGG, seeded), a path to a torchvision VGG16 ``.pth`` state dict,
            or a state dict.
        seed: seed of the random VGG weights.
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Shape:
        input ``[N, 3, H, W]`` in [0, 1]; target ``[N or 1, 3, H, W]`` in [0, 1].

    Example:
        >>> loss_fn = PerceptualLoss(layers=("relu1_2", "relu2_2"), feature="both", style_weight=10.0)
        >>> x = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> loss_fn(x, torch.rand(2, 3, 32, 32)).backward()
    """

    def __init__(self, layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 layer_weights: Optional[Sequence[float]] = None, feature: str = "l2", style_weight: float = 1.0,
                 weights: Union[None, str, os.PathLike, Mapping] = None, seed: int = 0,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.feature = _checks.choice(feature, "feature", FEATURES)
        self.reduction = _checks.reduction(reduction)
        self.style_weight = _checks.positive_float(style_weight, "style_weight")
        self.vgg = VGG16Features(layers=layers, weights=weights, seed=seed)
        if layer_weights is None:
            self.layer_weights = [1.0] * len(self.vgg.layers)
        else:
            self.layer_weights = [float(w) for w in layer_weights]
            if len(self.layer_weights) != len(self.vgg.layers):
                raise ValueError(f"layer_weights must have one weight per layer ({len(self.vgg.layers)}), "
                                 f"got {len(self.layer_weights)}")

    def _target_features(self, target: Tensor) -> dict:
        if target.requires_grad:
            return self.vgg(target)
        with torch.no_grad():
            return self.vgg(target)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _checks.floating(input, "input")
        _checks.floating(target, "target")
        _checks.same_device(input, target, "input", "target")
        if input.dim() != 4 or target.dim() != 4 or input.shape[1:] != target.shape[1:] or \
                target.shape[0] not in (1, input.shape[0]):
            raise ValueError(f"input [N, C, H, W] and target [N or 1, C, H, W] must agree, got {tuple(input.shape)} "
                             f"and {tuple(target.shape)}")
        distance = squared_distance(self._statistics(self.vgg(input)), self._statistics(self._target_features(target)))
        return _checks.reduce(distance, self.reduction)

    def _statistics(self, features: dict) -> Statistics:
        """(factor, statistic) per term: λ_i/(C_i H_i W_i) with F_i, and w_s λ_i with G(F_i)."""
        terms = []
        for name, weight in zip(self.vgg.layers, self.layer_weights):
            f = features[name]
            if self.feature in ("l2", "both"):
                terms.append((weight / f[0].numel(), f))
            if self.feature in ("gram", "both"):
                terms.append((self.style_weight * weight, gram(f)))
        return terms

    def mean_over_targets(self, targets: Tensor) -> Callable[[Tensor], Tensor]:
        r"""``x -> mean_k loss(x, targets[k])`` (then reduced over x's batch), with the targets'
        VGG features computed once: the loss is a squared distance between features and Gram
        matrices, so the mean over targets is the distance to their mean plus their spread
        (exact; see :mod:`perceptual_ext.losses._statistics`). The targets get no gradient.

        Example:
            >>> loss_fn = PerceptualLoss(layers=("relu1_2",))
            >>> crops = torch.rand(9, 3, 32, 32)
            >>> objective = loss_fn.mean_over_targets(crops)   # == loss_fn(x.expand_as(crops), crops)
            >>> objective(torch.rand(1, 3, 32, 32)).shape
            torch.Size([])
        """
        return mean_over_targets(lambda x: self._statistics(self.vgg(x)), targets, self.reduction)

    def extra_repr(self) -> str:
        return (f"feature={self.feature!r}, layer_weights={self.layer_weights}, style_weight={self.style_weight}, "
                f"reduction={self.reduction!r}")


def total_variation(input: Tensor, reduction: str = "mean") -> Tensor:
    r"""Johnson et al.'s total-variation regularizer, per image:
    :math:`\sum_{c,i,j} (x_{c,i,j+1} - x_{c,i,j})^2 + (x_{c,i+1,j} - x_{c,i,j})^2`.

    Args:
        input (Tensor[N, C, H, W]): images.
        reduction: ``'mean'`` over the batch, ``'sum'``, or ``'none'`` (Tensor[N]).
    """
    reduction = _checks.reduction(reduction)
    _checks.floating(input, "input")
    _checks.rank(input, "input", (4,), "[N, C, H, W]")
    dx = (input[..., :, 1:] - input[..., :, :-1]).square().sum(dim=(1, 2, 3))
    dy = (input[..., 1:, :] - input[..., :-1, :]).square().sum(dim=(1, 2, 3))
    return _checks.reduce(dx + dy, reduction)


class TVLoss(nn.Module):
    r"""Total-variation regularizer (Johnson et al., after Mahendran & Vedaldi) as a module.

    .. math::
        \ell_{TV}(x) = \sum_{c,i,j} (x_{c,i,j+1} - x_{c,i,j})^2 + (x_{c,i+1,j} - x_{c,i,j})^2

    Args:
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Shape:
        input ``[N, C, H, W]``; an optional second argument (a target) is accepted and ignored, so
        the module fits the ``loss(input, target)`` contract.

    Example:
        >>> TVLoss()(torch.zeros(1, 3, 8, 8))
        tensor(0.)
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _checks.reduction(reduction)

    def forward(self, input: Tensor, target: Optional[Tensor] = None) -> Tensor:
        return total_variation(input, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
