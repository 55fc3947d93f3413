"""FID over images: Inception features of folders, file lists or tensors (unreadable files skipped and
counted), their statistics, and :func:`fid` end to end (the distance itself is in :mod:`.fid`)."""
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .. import _checks

from .fid import FeatureStatistics


def _read_rgb(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("RGB"))  # pytorch-fid: Image.open(path).convert("RGB")


class _ImageFiles(torch.utils.data.Dataset):
    """Image files → ``[3, 299, 299]`` float in [0, 1], resized by the chosen convention; a file that
    cannot be read gives ``(None, reason)``."""

    def __init__(self, files: Sequence[str], resize: Optional[str]) -> None:
        self.files, self.resize = list(files), resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from ..features.inception import resize_for_inception

        path = self.files[i]
        try:
            array = _read_rgb(path)
        except Exception as exc:  # Pillow raises many kinds for corrupt data
            return None, f"{path}: {type(exc).__name__}: {exc}"
        image = torch.from_numpy(array).permute(2, 0, 1)[None].float().div_(255.0)
        return resize_for_inception(image, self.resize)[0], None


def _collate(items):
    images = [im for im, _ in items if im is not None]
    skipped = [reason for im, reason in items if im is None]
    if len({tuple(im.shape) for im in images}) > 1:
        raise ValueError(f"images of different sizes {sorted({tuple(im.shape[1:]) for im in images})} cannot be "
                         "batched without resizing (the model has resize=None)")
    return (torch.stack(images) if images else None), skipped


def _resolve_files(source) -> List[str]:
    from ..data.datasets import list_images

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            files = list_images(path)
            if not files:
                raise ValueError(f"no image files in folder {path}")
            return files
        if not os.path.exists(path):
            raise ValueError(f"no such file or folder: {path}")
        return [path]
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("the list of image files is empty")
        for p in source:
            if not isinstance(p, (str, os.PathLike)):
                raise TypeError(f"a list of images must hold file paths, got {type(p).__name__}")
            if not os.path.isfile(p):
                raise ValueError(f"image file not found: {os.fspath(p)}")
        return [os.fspath(p) for p in source]
    raise TypeError(f"images must be a folder, a list of image files or a Tensor[N, 3, H, W], got "
                    f"{type(source).__name__}")


def _inception(weights, resize, device: torch.device):
    from ..features.inception import FIDInceptionV3

    if isinstance(weights, FIDInceptionV3):
        return weights.to(device).eval()
    return FIDInceptionV3(weights, resize=resize).to(device).eval()


@torch.no_grad()
def compute_features(images, model, batch_size: int = 50, device=None, num_workers: int = 0,
                     progress: bool = True, desc: Optional[str] = None) -> Tuple[Tensor, List[str]]:
    """Inception features of a folder, a list of image files, or a tensor of images.

    Files are read as pytorch-fid reads them (Pillow, converted to RGB, ``/255``) and resized one by
    one with ``model.resize``; files Pillow cannot read are skipped and returned with the reason.

    Args:
        images: a folder (its image files, sorted by name), a list of files, or
            ``Tensor[N, 3, H, W]`` in [0, 1].
        model: a :class:`~perceptual_ext.features.FIDInceptionV3` (or any module mapping
            ``[B, 3, H, W]`` to ``[B, d]`` with a ``resize`` attribute).
        batch_size, num_workers: batching and image-decoding worker processes.
        device: where the network runs (``None``: CUDA if available, else CPU).
        progress: show a tqdm progress bar over images (stderr).

    Returns:
        ``(features, skipped)``: ``Tensor[N_read, d]`` float32 on the CPU and a list of
        ``"path: reason"`` strings for the skipped files.
    """
    from tqdm import tqdm

    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_int(num_workers, "num_workers", minimum=0)
    device = _checks.device(device)
    model = model.to(device).eval()
    out, skipped = [], []
    if isinstance(images, Tensor):
        _checks.floating(images, "images")
        _checks.rank(images, "images", (4,), "[N, 3, H, W]")
        with tqdm(total=images.shape[0], unit="img", desc=desc, disable=not progress) as bar:
            for start in range(0, images.shape[0], batch_size):
                batch = images[start:start + batch_size].to(device)
                out.append(model(batch).float().cpu())
                bar.update(batch.shape[0])
        return (torch.cat(out) if out else torch.zeros(0, 2048)), skipped
    files = _resolve_files(images)
    loader = torch.utils.data.DataLoader(_ImageFiles(files, getattr(model, "resize", "bilinear")),
                                         batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    with tqdm(total=len(files), unit="img", desc=desc, disable=not progress) as bar:
        for batch, bad in loader:
            skipped += bad
            if batch is not None:
                out.append(model(batch.to(device)).float().cpu())
            bar.update((0 if batch is None else batch.shape[0]) + len(bad))
    features = torch.cat(out) if out else torch.zeros(0, 2048)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s), e.g. {skipped[0]}", stacklevel=2)
    return features, skipped


def _is_npz(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".npz")


def statistics_of(source, model, batch_size: int = 50, device=None, num_workers: int = 0, progress: bool = True,
                  desc: Optional[str] = None) -> FeatureStatistics:
    """:class:`FeatureStatistics` of a ``.npz`` file (loaded), a :class:`FeatureStatistics` (as is),
    or images (see :func:`compute_features`); ``model`` may be a callable returning the model, so
    that it is only built when images need it."""
    if isinstance(source, FeatureStatistics):
        return source
    if _is_npz(source):
        return FeatureStatistics.load(source)
    if callable(model) and not isinstance(model, torch.nn.Module):
        model = model()
    features, _ = compute_features(source, model, batch_size=batch_size, device=device, num_workers=num_workers,
                                   progress=progress, desc=desc)
    if features.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {features.shape[0]} readable from "
                         f"{desc or 'input'}")
    return FeatureStatistics().update(features.double())


def fid(real, fake, weights=None, batch_size: int = 50, device=None, resize: Optional[str] = "bilinear",
        num_workers: int = 0, progress: bool = True) -> float:
    r"""Fréchet Inception distance between two image sets (pytorch-fid's definition).

    .. math::
        \mathrm{FID} = \lVert \mu_r - \mu_f \rVert^2 + \operatorname{Tr}\left(\Sigma_r + \Sigma_f
                       - 2 (\Sigma_r \Sigma_f)^{1/2}\right)

    over the 2048-d pool features of :class:`~perceptual_ext.features.FIDInceptionV3`.

    Args:
        real, fake: each a folder of images, a list of image files, ``Tensor[N, 3, H, W]`` in
            [0, 1], a pytorch-fid ``.npz`` of statistics, or a :class:`FeatureStatistics`.
        weights: path to ``pt_inception-2015-12-05-6726825d.pth`` (or a loaded
            ``FIDInceptionV3``); not needed when both sides are statistics.
        batch_size: images per forward pass.
        device: ``None`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda:0"``, ...
        resize: ``"bilinear"`` (pytorch-fid) or ``"clean"`` (clean-fid's PIL bicubic) to 299x299.
        num_workers: image-decoding worker processes.
        progress: a progress bar over images.

    Returns:
        float: the FID.

    Example:
        >>> fid("real/", "fake/", weights="pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
    """
    _checks.choice(resize, "resize", ("bilinear", "clean"))
    device = _checks.device(device)
    cache = {}

    def model():
        if "m" not in cache:
            cache["m"] = _inception(weights, resize, device)
        return cache["m"]

    kw = dict(batch_size=batch_size, device=device, num_workers=num_workers, progress=progress)
    stats_real = statistics_of(real, model, desc="real", **kw)
    stats_fake = statistics_of(fake, model, desc="fake", **kw)
    if stats_real.dim != stats_fake.dim:
        raise ValueError(f"real and fake statistics have different dimensions: {stats_real.dim} and {stats_fake.dim}")
    return stats_real.frechet_distance(stats_fake)
