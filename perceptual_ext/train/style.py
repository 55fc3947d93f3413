"""Fast style transfer (Johnson et al., seed 003): :func:`train_style` trains a
:class:`~perceptual_ext.models.StyleTransformNet` for one style image."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ..data.datasets import DEFAULT_SAMPLES, ImageCrops
from ..data.images import center_resize, load_image, sample_image
from ..losses.factory import build_loss
from ..models.transform import StyleTransformNet
from .loop import fit, grid


def _style_tensor(style_image: Union[str, Tensor], size: int) -> Tensor:
    if isinstance(style_image, Tensor):
        _checks.rank(style_image, "style_image", (3,), "[3, H, W]")
        image = style_image.float()
    elif isinstance(style_image, str) and not os.path.exists(style_image) and style_image in DEFAULT_SAMPLES:
        image = sample_image(style_image, channels=3)
    else:
        image = load_image(style_image, channels=3)
    return center_resize(image, size)


def train_style(style_image: Union[str, Tensor], content_dir: Optional[str] = None, *,
                style_loss: str = "gram", content_loss: str = "vgg", style_weight: float = 5.0,
                content_weight: float = 1.0, tv_weight: float = 0.0, out_dir: str = "runs/style",
                steps: int = 2000, batch_size: int = 4, image_size: int = 256, lr: float = 1e-3,
                vgg_weights: Optional[str] = None, lpips_weights: Optional[str] = None, norm: str = "instance",
                upsample: str = "deconv",
                channels: int = 32, num_residual: int = 5, samples: Sequence[str] = DEFAULT_SAMPLES,
                seed: int = 0, device: Optional[str] = None, num_workers: int = 0, sample_every: int = 500,
                checkpoint_every: int = 500, resume: Optional[str] = None, overwrite: bool = False,
                progress: bool = True, optimizer: str = "adam") -> dict:
    """Train a :class:`StyleTransformNet` for one style (Johnson et al.'s fast style transfer).

    The objective on content crops ``x`` with output ``y = f(x)`` is
    ``content_weight·content_loss(y, x) + style_weight·style_loss(y, s) + tv_weight·TV(y)``, where
    ``s`` is the style image resized (centre square) to ``image_size`` and repeated over the batch.

    Args:
        style_image: path of the style image, a sample name (e.g. ``"brick"``) or a [3, H, W] tensor.
        content_dir: folder of content images; ``None`` uses scikit-image's samples.
        style_loss, content_loss: loss names of :data:`perceptual_ext.losses.factory.LOSSES`
            (Johnson: ``"gram"`` and ``"vgg"``; pass ``vgg_weights`` for a trained VGG16, and
            ``lpips_weights``, lpips's lin file, for the ``"lpips"`` loss).
        style_weight, content_weight: the λ's of the two terms; tv_weight: total variation
            (Johnson used 1e-6..1e-4 of the image scale; 0 turns it off).
        Other arguments: as :func:`train_sr` (network options are :class:`StyleTransformNet`'s).

    Returns:
        as :func:`train_sr`.
    """
    for name, value in (("style_weight", style_weight), ("content_weight", content_weight)):
        _checks.positive_float(value, name)
    if isinstance(tv_weight, bool) or not isinstance(tv_weight, (int, float)) or not tv_weight >= 0:
        raise ValueError(f"tv_weight must be a number >= 0, got {tv_weight!r}")
    config = {k: v for k, v in locals().items() if isinstance(v, (str, int, float, bool, type(None)))}
    device = _checks.device(device)
    torch.manual_seed(seed)
    net = StyleTransformNet(channels=channels, num_residual=num_residual, norm=norm, upsample=upsample)
    dataset = ImageCrops(content_dir, image_size, samples=samples, seed=seed)
    style = _style_tensor(style_image, image_size)
    style_fn = build_loss(style_loss, vgg_weights=vgg_weights, lpips_weights=lpips_weights, seed=seed)
    content_fn = build_loss(content_loss, vgg_weights=vgg_weights, lpips_weights=lpips_weights, seed=seed)
    terms = nn.ModuleList([style_fn, content_fn])
    tv_fn = None
    if tv_weight > 0:
        from ..losses.perceptual import TVLoss

        tv_fn = TVLoss()
        terms.append(tv_fn)
    style_on = {}

    def objective(m, batch):
        x = batch["image"]
        y = m(x)
        target = style_on.setdefault(x.device, style.to(x.device))
        value = content_weight * content_fn(y, x) + style_weight * style_fn(y, target.expand(len(y), -1, -1, -1))
        if tv_fn is not None:
            value = value + tv_weight * tv_fn(y)
        return value

    def preview(m, batch):
        return grid([batch["image"], m(batch["image"])])

    return fit(task="style", model=net, dataset=dataset, objective=objective, preview=preview, loss=terms,
                config=config, out_dir=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                num_workers=num_workers, sample_every=sample_every, checkpoint_every=checkpoint_every, resume=resume,
                overwrite=overwrite, progress=progress, optimizer=optimizer)

