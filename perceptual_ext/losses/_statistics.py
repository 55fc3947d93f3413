"""Losses that are weighted squared distances between per-image statistics (features, Gram matrices).

Such a loss is :math:`\\ell(x, y) = \\sum_i f_i \\|s_i(x) - s_i(y)\\|^2`, and its mean over a set of
targets is the distance to the targets' mean statistics plus their spread,

.. math::
    \\frac1K \\sum_k \\ell(x, y_k) = \\sum_i f_i \\|s_i(x) - \\bar s_i\\|^2
    + \\frac1K \\sum_k \\sum_i f_i \\|s_i(y_k) - \\bar s_i\\|^2,

so the targets' statistics are computed once and the input's once per evaluation (the GIM
objective of seed 004, eq. 1, costs one feature pass instead of 2K).
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import torch
from torch import Tensor

from .. import _checks

#: (factor f_i, statistic s_i as Tensor[N, ...]) per term.
Statistics = List[Tuple[float, Tensor]]


def squared_distance(xs: Statistics, ys: Statistics) -> Tensor:
    """Tensor[N]: :math:`\\sum_i f_i \\|s_i(x) - s_i(y)\\|^2` per image (``ys`` may have batch 1)."""
    total = None
    for (factor, a), (_, b) in zip(xs, ys):
        term = factor * (a - b).square().flatten(1).sum(dim=1)
        total = term if total is None else total + term
    return total


def mean_over_targets(statistics: Callable[[Tensor], Statistics], targets: Tensor,
                      reduction: str) -> Callable[[Tensor], Tensor]:
    """``x -> reduce_n mean_k loss(x_n, targets_k)``, the targets' statistics computed once (no grad)."""
    _checks.floating(targets, "targets")
    _checks.rank(targets, "targets", (4,), "[K, C, H, W]")
    if targets.shape[0] == 0:
        raise ValueError("targets must hold at least one image")
    with torch.no_grad():
        ys = statistics(targets)
        means = [(factor, b.mean(dim=0, keepdim=True)) for factor, b in ys]
        spread = squared_distance(ys, means).mean()

    def loss(input: Tensor) -> Tensor:
        _checks.floating(input, "input")
        return _checks.reduce(squared_distance(statistics(input), means) + spread, reduction)

    return loss
