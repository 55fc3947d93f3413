"""Colorization (Zhang, Isola, Efros 2016): :func:`train_colorization` trains a
:class:`~perceptual_ext.models.ColorizationNet` on random crops with the rebalanced soft-encoded
cross-entropy (:class:`~perceptual_ext.losses.ColorizationLoss`); :func:`load_colorization_net` and
:func:`colorize_files` apply it to image files (annealed-mean decoding)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _checks
from ..data.color import lab_to_rgb, rgb_to_lab
from ..data.datasets import ImageCrops
from ..data.images import SAMPLE_IMAGES
from ..data.images import load_image, sample_image, save_image
from ..losses.colorization import NUM_BINS, ColorizationLoss, estimate_ab_prior
from ..models.colorization import ColorizationNet
from .apply import check_io_lists
from .checkpoint import load_checkpoint, restore_network
from .loop import fit, grid

TASK = "colorize"
#: the colour images among scikit-image's samples: the default training set (the others are grey).
COLOR_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
#: temperatures of the sample PNGs' two colour rows (the paper's T and the plain mean).
PREVIEW_TEMPERATURES = (0.38, 1.0)


def lightness_and_target(images: Tensor, size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """``L`` ``[N, 1, H, W]`` of RGB images and their ab ``[N, 2, *size]`` area-averaged to the logits' size."""
    lab = rgb_to_lab(images)
    return lab[:, :1], F.interpolate(lab[:, 1:], size=size, mode="area")


def grey(images: Tensor) -> Tensor:
    """The network's input shown as an image: the L channel with a = b = 0."""
    lab = rgb_to_lab(images)
    return lab_to_rgb(torch.cat([lab[:, :1], torch.zeros_like(lab[:, 1:])], dim=1))


def _prior_of(prior, folder: Optional[str], samples: Sequence[str], resume: Optional[str]) -> Optional[Tensor]:
    """The prior of a run: a resumed run's own, else ``prior`` ("estimate": from the training images)."""
    if resume is not None:
        saved = load_checkpoint(resume).get("train_config", {}).get("prior")
        return None if saved is None else torch.tensor(saved, dtype=torch.float64)
    if prior is None:
        return None
    if isinstance(prior, str):
        if prior != "estimate":
            raise ValueError(f"prior must be 'estimate', None or a tensor of {NUM_BINS} probabilities, got {prior!r}")
        if folder is not None:
            return estimate_ab_prior(folder)
        return estimate_ab_prior([sample_image(name, channels=3) for name in samples])
    return torch.as_tensor(prior, dtype=torch.float64)


def train_colorization(folder: Optional[str] = None, *, out_dir: str = "runs/colorize", steps: int = 2000,
                       batch_size: int = 16, image_size: int = 64, lr: float = 1e-3,
                       widths: Sequence[int] = (32, 64, 128), dilated: int = 2, norm: str = "batch",
                       prior: Union[str, Tensor, None] = "estimate", rebalance: float = 0.5, neighbors: int = 5,
                       sigma: float = 5.0, samples: Sequence[str] = COLOR_SAMPLES, seed: int = 0,
                       device: Optional[str] = None, num_workers: int = 0, sample_every: int = 500,
                       checkpoint_every: int = 500, resume: Optional[str] = None, overwrite: bool = False,
                       progress: bool = True, optimizer: str = "adam") -> dict:
    """Train a :class:`~perceptual_ext.models.ColorizationNet` to predict ab bins from lightness.

    Each step takes random ``image_size`` crops, converts them to Lab, feeds L to the network and
    scores its ``[N, 313, image_size/4, image_size/4]`` logits with :class:`ColorizationLoss`
    against the crops' ab, area-averaged to the logits' resolution (as in the paper). Checkpoints,
    exact resume and DDP under torchrun are those of the other feed-forward trainers
    (:mod:`perceptual_ext.train.loop`).

    Args:
        folder: folder of training images (RGB); ``None`` uses scikit-image's colour samples
            (``samples``, default :data:`COLOR_SAMPLES`).
        out_dir: where ``checkpoint.pt`` and ``samples/step_*.png`` go (rows: grey input, annealed
            mean at T = 0.38, at T = 1, ground truth).
        steps: total optimizer steps (a resumed run continues up to it).
        batch_size: crops per step and process; image_size: crop side in pixels.
        lr: learning rate; optimizer: ``"adam"`` (default) or ``"sgd"``.
        widths, dilated, norm: :class:`ColorizationNet` options.
        prior: ``"estimate"`` (the training images' smoothed ab distribution,
            :func:`~perceptual_ext.losses.estimate_ab_prior`), a tensor of 313 probabilities, or
            ``None`` (no class rebalancing). It is stored in the checkpoint; a resumed run uses its own.
        rebalance, neighbors, sigma: :class:`ColorizationLoss` options (λ = 0.5, k = 5, σ = 5).
        seed: initialisation, data order and crops.
        device: ``"cpu"``, ``"cuda"`` (default: cuda if available).
        num_workers: DataLoader worker processes decoding images.
        sample_every, checkpoint_every: periods in steps (0: never; a checkpoint is always written at the end).
        resume: a checkpoint to continue from; overwrite: replace an existing ``out_dir/checkpoint.pt``.
        progress: show the tqdm bar.

    Returns:
        dict with ``checkpoint`` (path, rank 0), ``history`` (loss per step), ``skipped_files``,
        ``failed_loads``, ``model`` (the trained network, eval mode) and ``prior``.

    Example:
        >>> result = train_colorization(None, steps=2, batch_size=2, image_size=32, widths=(8, 16, 16),
        ...                             out_dir="/tmp/colorize-doc", overwrite=True, progress=False)
    """
    _checks.positive_int(image_size, "image_size", minimum=4)
    _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    ColorizationLoss(prior=None, rebalance=rebalance, neighbors=neighbors, sigma=sigma)  # option errors first
    for name in samples:
        _checks.choice(name, "samples", SAMPLE_IMAGES)
    device = _checks.device(device)
    prior_tensor = _prior_of(prior, folder, samples, resume)
    loss_fn = ColorizationLoss(prior=prior_tensor, rebalance=rebalance, neighbors=neighbors, sigma=sigma)
    config = {"folder": folder, "image_size": image_size, "lr": lr, "rebalance": rebalance, "neighbors": neighbors,
              "sigma": sigma, "seed": seed, "optimizer": optimizer, "batch_size": batch_size,
              "prior": None if prior_tensor is None else prior_tensor.tolist()}
    torch.manual_seed(seed)
    net = ColorizationNet(widths=widths, dilated=dilated, norm=norm)
    dataset = ImageCrops(folder, image_size, samples=samples, seed=seed)

    def objective(m, batch):
        images = batch["image"]
        lightness = rgb_to_lab(images)[:, :1]
        logits = m(lightness)
        _, target = lightness_and_target(images, logits.shape[-2:])
        return loss_fn(logits, target)

    def preview(m, batch):
        images = batch["image"]
        return grid([grey(images)] + [m.colorize(images, t) for t in PREVIEW_TEMPERATURES] + [images])

    result = fit(task=TASK, model=net, dataset=dataset, objective=objective, preview=preview, loss=loss_fn,
                 config=config, out_dir=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                 num_workers=num_workers, sample_every=sample_every, checkpoint_every=checkpoint_every,
                 resume=resume, overwrite=overwrite, progress=progress, optimizer=optimizer)
    result["prior"] = prior_tensor
    return result


def load_colorization_net(path: str, device: Union[str, torch.device] = "cpu") -> Tuple[ColorizationNet, dict]:
    """The :class:`ColorizationNet` of a ``train_colorization`` checkpoint, in eval mode, and the checkpoint.

    Raises:
        ValueError: the file is not a colorization checkpoint (or not readable).
    """
    checkpoint = load_checkpoint(path)
    if checkpoint["task"] != TASK or checkpoint["model"].get("class") != ColorizationNet.__name__:
        raise ValueError(f"{path} is a {checkpoint['task']!r} checkpoint, not a colorization one")
    model = restore_network(path, checkpoint, ColorizationNet)
    return model.to(device).eval(), checkpoint


def colorize_files(model: nn.Module, inputs: Sequence[str], outputs: Sequence[str], *, temperature: float = 0.38,
                   device: Union[str, torch.device] = "cpu", overwrite: bool = False, progress: bool = True) -> int:
    """Colour image files from their lightness with ``model`` and write them (format by extension).

    Colour inputs are reduced to their L channel first, so a colour photo and its grey version
    give the same result. Every output is checked before any work: an existing one raises
    FileExistsError unless ``overwrite``.

    Returns:
        the number of images written.
    """
    check_io_lists(inputs, outputs, overwrite)
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    for source, target in tqdm(list(zip(inputs, outputs)), desc="colorize", unit="image",
                               disable=not progress or len(inputs) < 2, dynamic_ncols=True):
        image = load_image(source, channels=3).unsqueeze(0).to(device)
        save_image(model.colorize(image, temperature)[0].cpu(), target, overwrite=True)
    return len(inputs)
