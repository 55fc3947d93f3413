"""Gram matrix op: ``G = psi psi^T / (C*H*W)`` computed as one block triangle and mirrored."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import (
    _C,  # noqa: F401  (registers torch.ops.perceptual_ext)
    _checks,
)

_OPS = torch.ops.perceptual_ext


def gram(features: Tensor, normalize: bool = True) -> Tensor:
    r"""Batched Gram matrix of feature maps.

    .. math::
        G_{n,i,j} = \frac{1}{C H W} \sum_{p} \psi_{n,i,p}\,\psi_{n,j,p}

    Only the block upper triangle is computed (half the products of ``x @ x.mT``) and mirrored;
    the backward pass is the single GEMM :math:`d\psi = (dG + dG^\top)\psi / (CHW)`.

    Args:
        features (Tensor[N, C, H, W] or Tensor[N, C, L]): feature maps, any strides.
            float32/float64 (float16/bfloat16 on CUDA with float32 accumulation; on the CPU they
            are computed in float32 and returned in their own dtype).
        normalize (bool): divide by ``C*H*W`` (Johnson et al.'s normalization). ``False`` gives
            the raw ``psi psi^T``.

    Returns:
        Tensor[N, C, C]

    Example:
        >>> x = torch.rand(2, 64, 32, 32)
        >>> gram(x).shape
        torch.Size([2, 64, 64])
    """
    _checks.floating(features, "features")
    _checks.rank(features, "features", (3, 4), "[N, C, H, W] or [N, C, L]")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    flat = features.flatten(2) if features.dim() == 4 else features
    dtype = _checks.compute_dtype(flat, native_cuda=True)
    if dtype != flat.dtype:
        return _OPS.gram(flat.to(dtype), normalize).to(features.dtype)
    return _OPS.gram(flat, normalize)


@torch.library.register_fake("perceptual_ext::gram")
def _gram_fake(features, normalize):
    torch._check(features.dim() == 3, lambda: "gram: features must be [N, C, L]")
    n, c, _ = features.shape
    return features.new_empty((n, c, c))


@torch.library.register_fake("perceptual_ext::gram_backward")
def _gram_backward_fake(grad, features, normalize):
    torch._check(grad.dim() == 3 and features.dim() == 3, lambda: "gram_backward: expects 3-D tensors")
    return features.new_empty(features.shape)
