"""The GIM experiment of seed 004 (§1, §5): which image minimizes the mean loss to a set of
shifted crops of one image? Losses that compare patch statistics give a sharp image; MSE gives the
blurry mean."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import _checks
from ..metrics import psnr, swd
from .optimize import optimize_image
from .synthesis import LOSS_NAMES, _device, _loss_module, _one_image, resize_short_side


@dataclasses.dataclass
class GIMResult:
    """What :func:`gim_experiment` returns.

    Attributes:
        crops: Tensor[K, C, s, s], the target set.
        offsets: the K (dy, dx) shifts of the crops from the centre crop.
        mean: Tensor[1, C, s, s], the mean of the crops (every optimization starts here; it is the
            optimum of MSE).
        images: loss name -> Tensor[1, C, s, s], the optimized images.
        metrics: row name -> {"swd", "swd_levels", "psnr", and for losses "seconds", "final_loss"}.
            SWD (×10³, Karras et al.) of the image against the set of crops (with
            :data:`GIM_SWD_DEFAULTS` unless ``swd_kwargs`` says otherwise); PSNR of the mean squared
            error over all crops. Besides one row per loss: ``"init_mean"`` (the mean image) and
            ``"target_crop"`` (crop 0 itself, what a real sample of the set scores).
        histories: loss name -> the loss per step.
    """

    crops: Tensor
    offsets: List[Tuple[int, int]]
    mean: Tensor
    images: Dict[str, Tensor]
    metrics: Dict[str, Dict[str, object]]
    histories: Dict[str, List[float]]

    @property
    def columns(self) -> List[str]:
        """The order of :meth:`grid_row`: a target crop, the mean, then each loss's image."""
        return ["target_crop", "init_mean"] + list(self.images)

    def grid_row(self) -> List[Tensor]:
        """The pictures of :attr:`columns`, each [C, s, s] on the CPU (one row of a GIM figure)."""
        return [self.crops[0].cpu(), self.mean[0].cpu()] + [img[0].cpu() for img in self.images.values()]

    def record(self) -> Dict[str, object]:
        """What a report keeps of one run: the crop offsets, the column order and every metric."""
        return {"offsets": self.offsets, "grid_order": self.columns, "metrics": self.metrics}


def shifted_crops(image: Tensor, crop_size: int, num_crops: int = 9, shift: int = 4,
                  seed: int = 0) -> Tuple[Tensor, List[Tuple[int, int]]]:
    """``num_crops`` square crops of ``image`` [1, C, H, W] at random integer offsets in
    [−shift, shift]² from the centre crop (seed 004 §5, "random spatial transformations")."""
    _, _, h, w = image.shape
    if min(h, w) < crop_size + 2 * shift:
        raise ValueError(f"image must be at least crop_size + 2*shift = {crop_size + 2 * shift} pixels on each side, "
                         f"got {h}x{w}")
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(-shift, shift + 1, (num_crops, 2), generator=g).tolist()
    top0, left0 = (h - crop_size) // 2, (w - crop_size) // 2
    crops = torch.cat([image[:, :, top0 + dy:top0 + dy + crop_size, left0 + dx:left0 + dx + crop_size]
                       for dy, dx in offsets])
    return crops, [tuple(o) for o in offsets]


#: GIM scores one image against K crops; 1024 neighbourhoods per image (Karras: 128) bring the
#: sampling noise of SWD well below the blurry-vs-sharp differences being measured.
GIM_SWD_DEFAULTS = {"nhoods_per_image": 1024}


def _score(image: Tensor, crops: Tensor, seed: int, swd_kwargs: dict) -> Dict[str, object]:
    mean, levels = swd(crops, image, seed=seed, return_levels=True, **swd_kwargs)
    # PSNR of the mean squared error over all crops (finite for an image that equals one crop)
    k, c, h, w = crops.shape
    pooled = psnr(image.expand_as(crops).reshape(1, k * c, h, w), crops.reshape(1, k * c, h, w))
    return {"swd": float(mean), "swd_levels": [float(v) for v in levels], "psnr": float(pooled)}


def _loss_specs(losses) -> Dict[str, Union[str, Callable]]:
    """``losses`` of :func:`gim_experiment` as a mapping name -> loss name or callable."""
    if isinstance(losses, Mapping):
        specs = dict(losses)
    elif isinstance(losses, str):
        raise TypeError(f"losses must be a sequence of names, not one string: use ({losses!r},)")
    else:
        specs = {name: name for name in losses}
    if not specs:
        raise ValueError("losses must name at least one loss")
    for spec in specs.values():
        if isinstance(spec, str):
            _checks.choice(spec, "losses entry", LOSS_NAMES)
    return specs


def gim_experiment(image: Tensor, losses: Union[Sequence[str], Mapping[str, Callable]] = ("mse", "vgg", "scnn",
                                                                                            "mmd", "mmdpp"),
                   num_crops: int = 9, shift: int = 4, crop_size: int = 64, image_size: Optional[int] = None,
                   steps: int = 300, lr: float = 0.01, optimizer: str = "adam", vgg_weights: Optional[str] = None,
                   seed: int = 0, device=None, loss_kwargs: Optional[Mapping[str, dict]] = None,
                   swd_kwargs: Optional[dict] = None, progress: bool = True) -> GIMResult:
    r"""The GIM experiment of seed 004: which image minimizes the mean loss to a set of shifted crops?

    .. math::
        \hat y = \arg\min_y \frac{1}{K} \sum_{i=1}^{K} \mathcal L(y, y_i)

    The target set is K crops of one image shifted by up to ±``shift`` pixels. For every loss,
    ``y`` starts at the mean of the crops (the MSE optimum, blurry) and is optimized with Adam;
    the result is judged by SWD to the set of crops (patch statistics: lower is more like the
    crops) and by PSNR to the crops (higher is closer pixel by pixel; the mean maximizes it).

    Args:
        image (Tensor[C, H, W] or Tensor[1, C, H, W]): the source image in [0, 1].
        losses: loss names (:data:`LOSS_NAMES`) or a mapping name -> callable ``(input, target)``.
        num_crops: K.
        shift: s, the largest offset of a crop from the centre crop, in pixels.
        crop_size: side of the crops (and of the optimized image).
        image_size: the image is first resized so that its short side is ``image_size``
            (default ``2 * crop_size``: the paper crops 128 from 256).
        steps, lr, optimizer: of :func:`optimize_image`.
        vgg_weights: torchvision-layout VGG16 weights for ``vgg``/``gram`` (random VGG if None).
        seed: seeds the crop offsets, the random losses, the optimization and the SWD draws.
        device: where to optimize (default: the image's device).
        loss_kwargs: loss name -> extra keyword arguments of its class.
        swd_kwargs: keyword arguments of :func:`perceptual_ext.metrics.swd` over
            :data:`GIM_SWD_DEFAULTS`.
        progress: show a progress bar per loss.

    Returns:
        :class:`GIMResult`.

    Example:
        >>> from perceptual_ext.data import sample_image
        >>> result = gim_experiment(sample_image("astronaut", channels=3), losses=("mse", "mmd"), steps=100)
        >>> result.metrics["mmd"]["swd"] < result.metrics["mse"]["swd"]
    """
    image = _one_image(image, "image")
    _checks.positive_int(num_crops, "num_crops")
    _checks.positive_int(shift, "shift", minimum=0)
    _checks.positive_int(crop_size, "crop_size")
    specs = _loss_specs(losses)
    image_size = 2 * crop_size if image_size is None else _checks.positive_int(image_size, "image_size")
    dev = _device(device, image.device)
    source = resize_short_side(image.to(dev), image_size)
    crops, offsets = shifted_crops(source, crop_size, num_crops, shift, seed)
    mean = crops.mean(0, keepdim=True)
    swd_kwargs = {**GIM_SWD_DEFAULTS, **(swd_kwargs or {})}
    loss_kwargs = dict(loss_kwargs or {})

    metrics: Dict[str, Dict[str, object]] = {
        "init_mean": _score(mean, crops, seed, swd_kwargs),
        "target_crop": _score(crops[:1], crops, seed, swd_kwargs),
    }
    images: Dict[str, Tensor] = {}
    histories: Dict[str, List[float]] = {}
    for name, spec in specs.items():
        loss_fn = _loss_module(spec, vgg_weights, seed, loss_kwargs.get(name), dev)

        if hasattr(loss_fn, "mean_over_targets"):  # the crops' features once, x's once per step
            objective = loss_fn.mean_over_targets(crops)
        else:
            def objective(x: Tensor, loss_fn=loss_fn) -> Tensor:
                # one call on the batch of K pairs: mean over the crops (eq. 1), one draw of random features
                return loss_fn(x.expand_as(crops), crops)

        start = time.perf_counter()
        result = optimize_image(objective, mean, steps, lr, optimizer=optimizer,
                                progress=f"gim {name}" if progress else False, seed=seed)
        seconds = time.perf_counter() - start
        images[name] = result.image
        histories[name] = result.history
        metrics[name] = {**_score(result.image, crops, seed, swd_kwargs), "seconds": seconds,
                         "final_loss": result.history[-1] if result.history else None}
    return GIMResult(crops, offsets, mean, images, metrics, histories)


__all__ = ["gim_experiment", "GIMResult", "shifted_crops", "GIM_SWD_DEFAULTS"]
