"""The pooled-size rule every pooling op shares (the Python twin of ``csrc/common/pooling.h``)."""
from __future__ import annotations


def pooled_length(size: int, window: int, stride: int) -> int:
    """Windows of ``window`` pixels at multiples of ``stride`` that fit in ``size`` pixels.

    Like ``avg_pool2d`` without padding: ``(size - window) // stride + 1``, and 0 when not even
    one window fits.
    """
    return (size - window) // stride + 1 if size >= window else 0
