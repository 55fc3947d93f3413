"""Image losses by name, for the trainers and the command line.

Every loss built here is an ``nn.Module`` called as ``loss(input, target)`` on images
``[N, 3, H, W]`` in [0, 1] and returning a scalar (``reduction="mean"``).
"""
from __future__ import annotations

from typing import Optional

from torch import nn

#: name -> one-line description (shown by ``--help`` of the commands that take ``--loss``).
LOSSES = {
    "mse": "pixel mean squared error",
    "l1": "pixel mean absolute error",
    "vgg": "VGG16 feature loss (relu1_2..relu4_3); random VGG unless --vgg-weights is given",
    "gram": "VGG16 Gram (style) loss; random VGG unless --vgg-weights is given",
    "scnn": "shallow wide random CNN (S-CNN) feature loss",
    "mmd": "patch MMD with random Fourier features",
    "mmdpp": "MMD++: patch MMD + local robust term + L2",
    "lpips": "LPIPS v0.1 on VGG16 (backbone from --vgg-weights, random if not given; lin layers from "
             "--lpips-weights, lpips's lin file, unit weights if not given)",
}


def build_loss(name: str, *, vgg_weights: Optional[str] = None, seed: int = 0, lpips_net: str = "vgg",
               lpips_weights: Optional[str] = None, **kwargs) -> nn.Module:
    """Build the loss called ``name`` (see :data:`LOSSES`).

    Args:
        name: a key of :data:`LOSSES`.
        vgg_weights: path to torchvision-layout VGG16 weights for ``vgg``/``gram``, and for ``lpips``
            with ``lpips_net="vgg"`` (random if None).
        seed: seed of the random filters (random VGG, S-CNN, fixed RFF draws).
        lpips_net: backbone of ``lpips``: ``"vgg"`` (default: lpips recommends it as an optimization
            loss), ``"alex"`` or ``"squeeze"`` (their torchvision weights via ``backbone_weights=``).
        lpips_weights: the lpips package's lin file for ``lpips`` (unit weights if None).
        **kwargs: passed to the loss class (e.g. ``num_features`` for ``mmd``).
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {name!r}")
    if name == "mse":
        return nn.MSELoss(**kwargs)
    if name == "l1":
        return nn.L1Loss(**kwargs)
    if name in ("vgg", "gram"):
        from .perceptual import PerceptualLoss

        return PerceptualLoss(feature="l2" if name == "vgg" else "gram", weights=vgg_weights, seed=seed, **kwargs)
    if name == "lpips":
        from .lpips import LPIPS

        if lpips_net == "vgg":
            kwargs.setdefault("backbone_weights", vgg_weights)
        return LPIPS(net=lpips_net, lin_weights=lpips_weights, seed=seed, **kwargs)
    if name == "scnn":
        from .scnn import SCNNLoss

        return SCNNLoss(seed=seed, **kwargs)
    import torch

    generator = torch.Generator().manual_seed(seed)
    if name == "mmd":
        from .patch_mmd import PatchMMDLoss

        return PatchMMDLoss(generator=generator, **kwargs)
    from .patch_mmd import MMDPlusPlus

    return MMDPlusPlus(generator=generator, **kwargs)
