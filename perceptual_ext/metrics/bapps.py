"""The BAPPS evaluation protocol of Zhang et al. 2018: 2AFC agreement with human judgements and
JND mean average precision, exactly as the ``lpips`` package scores them."""
from __future__ import annotations

import torch
from torch import Tensor


def _vector(value, name: str) -> Tensor:
    """A 1-D float64 CPU tensor from a tensor, array or sequence of numbers (any shape, flattened)."""
    if isinstance(value, Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor, array or sequence of numbers, "
                            f"got {type(value).__name__}") from exc
    if t.is_complex():
        raise TypeError(f"{name} must be real, got dtype {t.dtype}")
    return t.to("cpu", torch.float64).flatten()


def _same_length(tensors: dict) -> None:
    lengths = {name: t.numel() for name, t in tensors.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError("these must have the same number of elements: " +
                         ", ".join(f"{name} has {n}" for name, n in lengths.items()))


def _fraction(t: Tensor, name: str) -> None:
    if t.numel() and (torch.isnan(t).any() or t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name} must hold fractions of human votes in [0, 1], got values in "
                         f"[{t.min().item():.4g}, {t.max().item():.4g}]")


def two_afc_score(d0, d1, judge) -> float:
    r"""Two-alternative forced choice score: how often a distance agrees with the human judges.

    .. math::
        \mathrm{2AFC} = \operatorname{mean}_i \big( [d_{0,i} < d_{1,i}] (1 - j_i)
        + [d_{1,i} < d_{0,i}]\, j_i + \tfrac12 [d_{0,i} = d_{1,i}] \big)

    ``judge`` is the fraction of humans who found ``p1`` closer to the reference, so a distance
    that always sides with the majority scores the human agreement, not 1. As ``lpips``'s
    ``score_2afc_dataset``.

    Args:
        d0 (Tensor[M]): distances reference-p0. Any shape with M elements (flattened), or an array/list.
        d1 (Tensor[M]): distances reference-p1.
        judge (Tensor[M]): fraction of judges preferring p1, in [0, 1].

    Returns:
        float in [0, 1].

    Example:
        >>> two_afc_score([0.1, 0.5], [0.2, 0.4], [0.0, 1.0])
        1.0
    """
    d0, d1, judge = _vector(d0, "d0"), _vector(d1, "d1"), _vector(judge, "judge")
    _same_length({"d0": d0, "d1": d1, "judge": judge})
    if d0.numel() == 0:
        raise ValueError("d0, d1 and judge are empty: the 2AFC score of no triplets is undefined")
    _fraction(judge, "judge")
    score = (d0 < d1).double() * (1 - judge) + (d1 < d0).double() * judge + 0.5 * (d0 == d1).double()
    return float(score.mean())


def jnd_map(d, same) -> float:
    r"""Just-noticeable-difference score: the average precision of ``same`` ranked by distance.

    Pairs are sorted by ascending distance (a stable sort: ties keep their order); with
    :math:`TP_k = \sum_{i \le k} s_i` and :math:`FP_k = \sum_{i \le k} (1 - s_i)`, precision
    :math:`TP_k / (TP_k + FP_k)` and recall :math:`TP_k / \sum_i s_i` give the PASCAL VOC
    (2010+) average precision: the area under the precision envelope,

    .. math::
        \mathrm{AP} = \sum_k (r_k - r_{k-1}) \max_{k' \ge k} p_{k'}

    As ``lpips``'s ``score_jnd_dataset`` with ``voc_ap(use_07_metric=False)``.

    Args:
        d (Tensor[M]): distances of the M pairs (any shape, flattened; or an array/list).
        same (Tensor[M]): fraction of judges who saw no difference, in [0, 1].

    Returns:
        float in [0, 1].

    Example:
        >>> jnd_map([0.1, 0.2, 0.3], [1.0, 1.0, 0.0])
        1.0
    """
    d, same = _vector(d, "d"), _vector(same, "same")
    _same_length({"d": d, "same": same})
    _fraction(same, "same")
    total = same.sum()
    if d.numel() == 0 or total <= 0:
        raise ValueError("same must hold at least one pair judged the same (sum(same) > 0): average precision "
                         "has no positives to recall")
    if torch.isnan(d).any():
        raise ValueError("d must not contain NaN: it cannot be ranked")
    order = torch.sort(d, stable=True).indices
    s = same[order]
    tp = torch.cumsum(s, 0)
    fp = torch.cumsum(1 - s, 0)
    precision = tp / (tp + fp)
    recall = tp / total
    mrec = torch.cat([recall.new_zeros(1), recall, recall.new_ones(1)])
    mpre = torch.cat([precision.new_zeros(1), precision, precision.new_zeros(1)])
    mpre = torch.flip(torch.cummax(torch.flip(mpre, [0]), 0).values, [0])  # precision envelope
    step = torch.nonzero(mrec[1:] != mrec[:-1]).flatten()
    return float(((mrec[step + 1] - mrec[step]) * mpre[step + 1]).sum())
