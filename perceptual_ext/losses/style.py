"""Style losses on Gram matrices (Gatys et al.; Johnson et al.'s normalized l_style)."""
from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from .. import _checks
from ..ops import gram


def _target_grams(target_features, name: str) -> list:
    if isinstance(target_features, Tensor):
        target_features = [target_features]
    if not isinstance(target_features, (list, tuple)) or not target_features:
        raise TypeError(f"{name} must be a Tensor or a non-empty list of Tensors, got {type(target_features).__name__}")
    return [gram(_checks.floating(f, f"{name}[{i}]")).detach() for i, f in enumerate(target_features)]


def _layer_weights(layer_weights, count: int) -> list:
    if layer_weights is None:
        return [1.0] * count
    weights = [float(w) for w in layer_weights]
    if len(weights) != count:
        raise ValueError(f"layer_weights must have one weight per layer ({count}), got {len(weights)}")
    return weights


def _gram_distance(features: Tensor, target_gram: Tensor, name: str) -> Tensor:
    """Per-sample squared Frobenius distance ||G(features) - target_gram||_F^2, shape [N]."""
    _checks.floating(features, name)
    _checks.same_device(features, target_gram, name, "the target Gram matrix")
    g = gram(features)
    if g.shape[1:] != target_gram.shape[1:]:
        raise ValueError(f"{name} has {g.shape[1]} channels but the target has {target_gram.shape[1]}")
    if target_gram.shape[0] not in (1, g.shape[0]):
        raise ValueError(f"{name} has batch size {g.shape[0]}; the target batch must be 1 or {g.shape[0]}, "
                         f"got {target_gram.shape[0]}")
    return (g - target_gram.to(g.dtype)).square().sum(dim=(1, 2))


def gram_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    r"""Squared Frobenius distance of Gram matrices, :math:`\|G(x) - G(y)\|_F^2`, per sample.

    Args:
        input (Tensor[N, C, H, W]): features of the generated image.
        target (Tensor[N or 1, C, H', W']): features of the style image (no gradient flows to it).
        reduction: ``'mean'`` over the batch, ``'sum'``, or ``'none'`` (Tensor[N]).
    """
    reduction = _checks.reduction(reduction)
    target_gram = _target_grams(target, "target")[0]
    return _checks.reduce(_gram_distance(input, target_gram, "input"), reduction)


def style_loss(features: Sequence[Tensor], target_features: Sequence[Tensor],
               layer_weights: Optional[Sequence[float]] = None, reduction: str = "mean") -> Tensor:
    """Functional form of :class:`StyleLoss`."""
    return StyleLoss(target_features, layer_weights, reduction)(features)


class StyleLoss(nn.Module):
    r"""Johnson et al.'s style reconstruction loss over several feature layers.

    .. math::
        \ell_{style} = \sum_l \lambda_l \, \| G(\phi_l(\hat y)) - G(\phi_l(y_s)) \|_F^2,
        \qquad G(\psi) = \psi \psi^\top / (C_l H_l W_l)

    The target Gram matrices are computed once and kept as buffers (no parameters), so the
    module moves with ``.to(device)`` and is saved in ``state_dict``.

    Args:
        target_features (Tensor or list of Tensor[N or 1, C_l, H_l, W_l]): features of the style
            image, one per layer.
        layer_weights (list of float, optional): :math:`\lambda_l`; all ones by default.
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Example:
        >>> style = [torch.rand(1, 64, 32, 32), torch.rand(1, 128, 16, 16)]
        >>> loss_fn = StyleLoss(style, layer_weights=[1.0, 0.5])
        >>> x = [torch.rand(4, 64, 32, 32, requires_grad=True), torch.rand(4, 128, 16, 16)]
        >>> loss_fn(x).backward()
    """

    def __init__(self, target_features, layer_weights: Optional[Sequence[float]] = None,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _checks.reduction(reduction)
        grams = _target_grams(target_features, "target_features")
        self.layer_weights = _layer_weights(layer_weights, len(grams))
        self.num_layers = len(grams)
        for i, g in enumerate(grams):
            self.register_buffer(f"target_gram_{i}", g)

    def target_grams(self) -> list:
        return [getattr(self, f"target_gram_{i}") for i in range(self.num_layers)]

    def forward(self, features) -> Tensor:
        if isinstance(features, Tensor):
            features = [features]
        if not isinstance(features, (list, tuple)) or len(features) != self.num_layers:
            count = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
            raise ValueError(f"features must be a list of {self.num_layers} tensors (one per layer), got {count}")
        total = None
        for i, (f, g, w) in enumerate(zip(features, self.target_grams(), self.layer_weights)):
            term = w * _gram_distance(f, g, f"features[{i}]")
            total = term if total is None else total + term
        return _checks.reduce(total, self.reduction)

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, layer_weights={self.layer_weights}, reduction={self.reduction!r}"


class GramLoss(StyleLoss):
    r"""Squared Frobenius distance to the Gram matrix of one target feature tensor.

    Args:
        target (Tensor[N or 1, C, H, W]): target features.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Example:
        >>> loss_fn = GramLoss(torch.rand(1, 8, 16, 16))
        >>> loss_fn(torch.rand(3, 8, 16, 16)).shape
        torch.Size([])
    """

    def __init__(self, target: Tensor, reduction: str = "mean") -> None:
        _checks.tensor(target, "target")
        super().__init__([target], None, reduction)

    def forward(self, input: Tensor) -> Tensor:
        _checks.tensor(input, "input")
        return _checks.reduce(_gram_distance(input, self.target_gram_0, "input"), self.reduction)
