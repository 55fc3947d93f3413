"""S-CNN feature loss: MSE of the pooled features of a random shallow wide CNN (seed 004 §1.2)."""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .. import _checks
from ..features import SCNN
from ._statistics import Statistics, mean_over_targets, squared_distance


class SCNNLoss(nn.Module):
    r"""Mean squared distance between pooled S-CNN features of two images.

    .. math::
        \ell(x, y) = \frac{1}{C h' w'} \| \Phi(x) - \Phi(y) \|_2^2

    with :math:`\Phi` = :class:`perceptual_ext.features.SCNN` (random, seeded, frozen; the fused op,
    so memory does not grow with the network's width times the image size). Gradients flow to
    ``input`` (and to ``target`` if it requires grad).

    Args:
        **scnn_kwargs: arguments of :class:`~perceptual_ext.features.SCNN` (``channels=1024``,
            ``depth=6``, ``patch_size=3``, ``window=32``, ``stride=16``, ``zero_mean_filters``,
            ``patch_norm``, ``seed=0``, ``in_channels=3``).
        reduction: ``'mean'`` over the batch (default), ``'sum'``, or ``'none'`` (Tensor[N]).

    Shape:
        input, target ``[N, C_in, H, W]`` in [0, 1] with ``H, W >= window``.

    Example:
        >>> loss_fn = SCNNLoss(channels=64, depth=2, seed=1)
        >>> x = torch.rand(2, 3, 64, 64, requires_grad=True)
        >>> loss_fn(x, torch.rand(2, 3, 64, 64)).backward()
    """

    def __init__(self, reduction: str = "mean", **scnn_kwargs) -> None:
        super().__init__()
        self.reduction = _checks.reduction(reduction)
        self.scnn = SCNN(**scnn_kwargs)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _checks.floating(input, "input")
        _checks.floating(target, "target")
        if input.shape != target.shape:
            raise ValueError(f"input and target must have the same shape, got {tuple(input.shape)} and "
                             f"{tuple(target.shape)}")
        return _checks.reduce(squared_distance(self._statistics(input), self._statistics(target)), self.reduction)

    def _statistics(self, x: Tensor) -> Statistics:
        features = self.scnn(x)
        return [(1.0 / features[0].numel(), features)]

    def mean_over_targets(self, targets: Tensor) -> Callable[[Tensor], Tensor]:
        """``x -> mean_k loss(x, targets[k])`` with the targets' features computed once (exact: see
        :meth:`PerceptualLoss.mean_over_targets`). The targets get no gradient."""
        return mean_over_targets(self._statistics, targets, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def scnn_loss(input: Tensor, target: Tensor, reduction: str = "mean", **scnn_kwargs) -> Tensor:
    """Functional form of :class:`SCNNLoss` (draws the seeded weights on every call)."""
    return SCNNLoss(reduction=reduction, **scnn_kwargs).to(input.device)(input, target)
