"""Super-resolution (Johnson et al., seed 003): :func:`train_sr` trains a ×4/×8
:class:`~perceptual_ext.models.SuperResolutionNet` (or ``SRCNN``) on (bicubic-downsampled, HR crop)
pairs with any loss of :mod:`perceptual_ext.losses.factory`; :func:`evaluate_sr` scores it against
bicubic upsampling (PSNR, SSIM, SWD)."""
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .. import _checks
from ..data.datasets import DEFAULT_SAMPLES, ImageCrops, downsample, list_images, upsample_bicubic
from ..data.images import center_resize, load_image, sample_image
from ..models.transform import SRCNN, SuperResolutionNet
from ..losses.factory import build_loss
from .apply import load_transform_net
from .loop import fit, grid

SR_MODELS = ("johnson", "srcnn")


def train_sr(image_dir: Optional[str] = None, scale: int = 4, loss: str = "mse", *, model: str = "johnson",
             out_dir: str = "runs/sr", steps: int = 1000, batch_size: int = 8, image_size: int = 96,
             lr: float = 1e-3, loss_kwargs: Optional[dict] = None, vgg_weights: Optional[str] = None,
             lpips_weights: Optional[str] = None,
             norm: str = "batch", upsample: str = "deconv", channels: int = 64, num_residual: int = 4,
             residual: bool = False, samples: Sequence[str] = DEFAULT_SAMPLES, seed: int = 0,
             device: Optional[str] = None,
             num_workers: int = 0, sample_every: int = 500, checkpoint_every: int = 500,
             resume: Optional[str] = None, overwrite: bool = False, progress: bool = True,
             optimizer: str = "adam") -> dict:
    """Train a ×``scale`` super-resolution network on (bicubic-downsampled, HR crop) pairs.

    Args:
        image_dir: folder of training images; ``None`` uses scikit-image's samples (``samples``).
        scale: 4 or 8.
        loss: a loss name of :data:`perceptual_ext.losses.factory.LOSSES` (``"mse"``, ``"vgg"``, ``"mmd"``, ...),
            applied as ``loss(sr, hr)``; ``loss_kwargs``, ``vgg_weights`` and ``lpips_weights``
            (lpips's lin file, for ``"lpips"``) go to ``build_loss``.
        model: ``"johnson"`` (:class:`SuperResolutionNet`) or ``"srcnn"`` (:class:`SRCNN`).
        out_dir: where ``checkpoint.pt`` and ``samples/step_*.png`` (rows: bicubic, model, HR) go.
        steps: total optimizer steps (a resumed run continues up to it).
        batch_size: images per step and process; image_size: HR crop side (a multiple of scale).
        lr: learning rate; optimizer: ``"adam"`` (default) or ``"sgd"`` (plain SGD).
        norm, upsample, channels, num_residual: :class:`SuperResolutionNet` options.
        residual: ``SuperResolutionNet(residual=True)``: learn a correction to bicubic upsampling,
            starting exactly at bicubic (global residual learning; ``model="johnson"`` only).
        seed: model initialisation, data order and crops, loss random features.
        device: ``"cpu"``, ``"cuda"`` (default: cuda if available).
        num_workers: DataLoader worker processes decoding images.
        sample_every, checkpoint_every: periods in steps (0: never; a checkpoint is always written at the end).
        resume: a checkpoint to continue from (its model config and data seed are used).
        overwrite: replace an existing ``out_dir/checkpoint.pt`` instead of raising FileExistsError.
        progress: show the tqdm bar.

    Returns:
        dict with ``checkpoint`` (path, rank 0), ``history`` (loss per step), ``skipped_files``,
        ``failed_loads`` and ``model`` (the trained network, eval mode).

    Example:
        >>> result = train_sr(None, scale=4, loss="mse", steps=2, batch_size=2, image_size=32,
        ...                   out_dir="/tmp/sr-doc", overwrite=True, progress=False)
    """
    _checks.choice(model, "model", SR_MODELS)
    _checks.positive_int(scale, "scale", minimum=2)
    if residual and model != "johnson":
        raise ValueError(f"residual=True is an option of the johnson network, not of {model!r}")
    config = {k: v for k, v in locals().items() if isinstance(v, (str, int, float, bool, type(None)))}
    device = _checks.device(device)
    torch.manual_seed(seed)
    net = (SuperResolutionNet(scale, channels=channels, num_residual=num_residual, norm=norm, upsample=upsample,
                              residual=residual)
           if model == "johnson" else SRCNN(scale))
    dataset = ImageCrops(image_dir, image_size, samples=samples, seed=seed, scale=scale)
    loss_fn = build_loss(loss, vgg_weights=vgg_weights, lpips_weights=lpips_weights, seed=seed, **(loss_kwargs or {}))

    def objective(m, batch):
        return loss_fn(m(batch["lr"]), batch["image"])

    def preview(m, batch):
        return grid([upsample_bicubic(batch["lr"], scale), m(batch["lr"]), batch["image"]])

    return fit(task="sr", model=net, dataset=dataset, objective=objective, preview=preview, loss=loss_fn,
                config=config, out_dir=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                num_workers=num_workers, sample_every=sample_every, checkpoint_every=checkpoint_every, resume=resume,
                overwrite=overwrite, progress=progress, optimizer=optimizer)

def _eval_images(image_dir: Optional[str], samples: Sequence[str], size: Optional[int],
                 scale: int) -> List[Tuple[str, Tensor]]:
    if image_dir is None:
        named = [(name, sample_image(name, channels=3)) for name in samples]
    else:
        named = []
        for path in list_images(image_dir):
            try:
                named.append((os.path.basename(path), load_image(path, channels=3)))
            except ValueError as exc:
                warnings.warn(f"skipping unreadable image: {exc}", RuntimeWarning, stacklevel=3)
        if not named:
            raise ValueError(f"no readable images in {image_dir}")
    out = []
    for name, image in named:
        if size is not None:
            image = center_resize(image, size)
        h, w = image.shape[-2:]
        if h < scale or w < scale:
            raise ValueError(f"image {name} ({h}x{w}) is smaller than the scale {scale}")
        out.append((name, image[:, :h - h % scale, :w - w % scale].contiguous()))
    return out


def evaluate_sr(checkpoint: str, image_dir: Optional[str] = None, *, size: Optional[int] = None,
                samples: Sequence[str] = ("astronaut", "coffee", "chelsea", "rocket"),
                device: Optional[str] = None) -> dict:
    """PSNR, SSIM and SWD of a trained SR model and of bicubic upsampling against the HR images.

    Each image (cropped to a multiple of the scale; centre square resized to ``size`` if given) is
    downsampled (bicubic, antialiased), then upsampled by the model and by bicubic interpolation,
    and compared with the original: PSNR and SSIM (data range 1) and SWD, each per image, then
    averaged over the images (seed 003/004 tables' columns).

    Args:
        checkpoint: a :func:`train_sr` checkpoint.
        image_dir: folder of HR test images; ``None`` uses scikit-image's ``samples``.

    Returns:
        ``{"scale", "model", "images", "methods": {"bicubic": {"psnr", "ssim", "swd"}, "model": {...}},
        "per_image": [{"name", "bicubic": {...}, "model": {...}}]}``
    """
    from ..metrics import psnr, ssim, swd

    device = _checks.device(device)
    model, state = load_transform_net(checkpoint, device)
    if state["task"] != "sr":
        raise ValueError(f"{checkpoint} is a {state['task']!r} checkpoint, not a super-resolution one")
    scale = state["model"]["config"]["scale"]
    per_image = []
    with torch.no_grad():
        for name, hr in _eval_images(image_dir, samples, size, scale):
            hr = hr[None].to(device)
            lr = downsample(hr, scale)
            outputs = {"bicubic": upsample_bicubic(lr, scale), "model": model(lr).clamp_(0, 1)}
            row = {"name": name}
            for method, sr in outputs.items():
                row[method] = {"psnr": float(psnr(sr, hr, data_range=1.0)), "ssim": float(ssim(sr, hr, data_range=1.0)),
                               "swd": float(swd(sr, hr))}
            per_image.append(row)
    methods = {m: {k: float(np.mean([r[m][k] for r in per_image])) for k in ("psnr", "ssim", "swd")}
               for m in ("bicubic", "model")}
    return {"scale": scale, "model": state["model"]["class"], "loss": state["train_config"].get("loss"),
            "images": len(per_image), "methods": methods, "per_image": per_image}


def format_sr_table(result: dict) -> str:
    """The :func:`evaluate_sr` result as a text table (one row per method)."""
    label = f"{result['model']} ({result.get('loss') or '?'})"
    lines = [f"x{result['scale']} super-resolution on {result['images']} images",
             f"{'method':<28} {'PSNR dB':>8} {'SSIM':>7} {'SWD':>9}"]
    for method, name in (("bicubic", "bicubic"), ("model", label)):
        m = result["methods"][method]
        lines.append(f"{name:<28} {m['psnr']:>8.2f} {m['ssim']:>7.4f} {m['swd']:>9.4g}")
    return "\n".join(lines)


