"""Training datasets: random crops of a folder of images (or of the bundled samples), SR pairs.

Samples are a pure function of ``(seed, epoch, image index)``: :class:`StepSampler` yields
``(index, epoch)`` keys and the dataset draws its crop from a generator seeded by them. So the data
of training step ``t`` does not depend on worker processes, on where a run was resumed, or on how
many DDP processes share the batch (each process takes its slice of the global order).
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset, Sampler

from .. import _checks
from .images import SAMPLE_IMAGES, load_image, sample_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: RGB samples of scikit-image used when no folder is given (the grayscale ones are converted).
DEFAULT_SAMPLES = ("astronaut", "camera", "coffee", "chelsea", "brick", "grass", "gravel", "rocket", "text", "coins")


def list_images(folder: str) -> List[str]:
    """Image files (by extension) directly inside ``folder``, sorted by name.

    Raises:
        ValueError: ``folder`` is not a directory.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"image folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    return [os.path.join(folder, n) for n in names]


def _readable(path: str) -> Optional[str]:
    """None if Pillow can identify and verify ``path``, else the reason it cannot."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:  # Pillow raises many kinds for corrupt data
        return f"{type(exc).__name__}: {exc}"
    return None


def downsample(hr: Tensor, scale: int) -> Tensor:
    """Bicubic antialiased ×1/scale downsampling of [C, H, W] or [N, C, H, W], clamped to [0, 1]."""
    batch = hr if hr.dim() == 4 else hr[None]
    lr = F.interpolate(batch, scale_factor=1.0 / scale, mode="bicubic", antialias=True, align_corners=False)
    lr = lr.clamp_(0, 1)
    return lr if hr.dim() == 4 else lr[0]


def upsample_bicubic(lr: Tensor, scale: int) -> Tensor:
    """Bicubic ×scale upsampling of [N, C, h, w], clamped to [0, 1] (the SR baseline)."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp_(0, 1)


T = TypeVar("T")


def load_skipping(load: Callable[[int], T], index: int, count: int, item: str = "image",
                  whole: str = "the dataset") -> Tuple[T, int, int]:
    """``load(index)`` for a dataset's ``__getitem__``; where it fails to decode (ValueError), a
    RuntimeWarning (pointing at the caller of ``__getitem__``) and the next index, cyclically.

    Returns:
        (the loaded value, the index it came from, how many indices failed first). ValueError when
        none of the ``count`` indices decodes.
    """
    failures = 0
    while True:
        try:
            return load(index), index, failures
        except ValueError as exc:
            failures += 1
            warnings.warn(f"skipping {item} that failed to decode: {exc}", RuntimeWarning, stacklevel=3)
            if failures >= count:
                raise ValueError(f"no {item} of {whole} can be decoded") from exc
            index = (index + 1) % count


@functools.lru_cache(maxsize=16)
def _decoded_sample(name: str) -> Tensor:
    # Bundled samples are decoded once per process, not once per crop.
    return sample_image(name, channels=3)


class ImageCrops(Dataset):
    """Random square crops of the images in a folder, or of scikit-image's samples.

    Files that Pillow cannot verify are skipped when the dataset is built (listed in
    :attr:`skipped` with the reason, and warned about). A file that still fails to decode in a
    worker is replaced by the next readable image, and the item reports how many files it had to
    skip (``failures``), so a long run never crashes on one bad file. Images smaller than the
    crop are resized up (bicubic) first.

    Args:
        folder: a folder of png/jpg/... images; ``None`` uses :data:`DEFAULT_SAMPLES` (offline).
        size: crop side in pixels.
        samples: names of sample images to use when ``folder`` is None.
        seed: with the key ``(index, epoch)`` decides the crop position and horizontal flip.
        scale: if given, items are super-resolution pairs: ``size`` must be a multiple of it.

    Items (key ``(index, epoch)`` from :class:`StepSampler`, or a plain index for epoch 0):
        ``{"image": Tensor[3, size, size], "failures": int}``, plus ``"lr": Tensor[3, size/scale,
        size/scale]`` (bicubic, antialiased) when ``scale`` is given.
    """

    def __init__(self, folder: Optional[str] = None, size: int = 256, *, samples: Sequence[str] = DEFAULT_SAMPLES,
                 seed: int = 0, scale: Optional[int] = None):
        _checks.positive_int(size, "size", minimum=2)
        if scale is not None:
            _checks.positive_int(scale, "scale", minimum=2)
            if size % scale:
                raise ValueError(f"size must be a multiple of scale, got size={size}, scale={scale}")
        self.size, self.seed, self.scale = size, seed, scale
        self.skipped: List[Tuple[str, str]] = []
        self.from_samples = folder is None
        if folder is None:
            for name in samples:
                _checks.choice(name, "samples", SAMPLE_IMAGES)
            self.sources = list(samples)
        else:
            self.sources = []
            for path in list_images(folder):
                reason = _readable(path)
                if reason is None:
                    self.sources.append(path)
                else:
                    self.skipped.append((path, reason))
                    warnings.warn(f"skipping unreadable image {path}: {reason}", RuntimeWarning, stacklevel=2)
            if not self.sources:
                raise ValueError(f"no readable images in {folder}" +
                                 (f" ({len(self.skipped)} unreadable skipped)" if self.skipped else ""))

    def __len__(self) -> int:
        return len(self.sources)

    def _load(self, source: str) -> Tensor:
        # a copy of the decoded sample (a millisecond, not a decode): a crop may be the whole image
        return _decoded_sample(source).clone() if self.from_samples else load_image(source, channels=3)

    def _crop(self, image: Tensor, rng: np.random.Generator) -> Tensor:
        _, h, w = image.shape
        if min(h, w) < self.size:
            factor = self.size / min(h, w)
            new = (max(self.size, round(h * factor)), max(self.size, round(w * factor)))
            image = F.interpolate(image[None], size=new, mode="bicubic", align_corners=False)[0].clamp_(0, 1)
            _, h, w = image.shape
        top, left = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
        crop = image[:, top:top + self.size, left:left + self.size]
        if rng.integers(0, 2):
            crop = crop.flip(-1)
        return crop.contiguous()

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, index, failures = load_skipping(lambda i: self._load(self.sources[i]), index, len(self.sources))
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        item = {"image": self._crop(image, rng), "failures": failures}
        if self.scale is not None:
            item["lr"] = downsample(item["image"], self.scale)
        return item


class StepSampler(Sampler):
    """Endless ``(index, epoch)`` keys in a seeded per-epoch shuffled order, starting at a step.

    Epoch ``e`` visits ``torch.randperm(n)`` drawn from seed ``seed + e`` (DistributedSampler's
    order, drop_last), cut into global batches of ``batch_size * world_size``; process ``rank``
    takes ``indices[rank::world_size]`` of each epoch, exactly as ``DistributedSampler`` does. So
    one process with batch ``world_size * b`` sees the same samples per step as ``world_size``
    processes with batch ``b`` each, and step ``start_step`` is reached without decoding anything.

    Args:
        length: dataset length.
        batch_size: per-process batch size.
        rank, world_size: this process and the number of processes.
        seed: shuffle seed.
        start_step: the first step to yield (resume).
    """

    def __init__(self, length: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 start_step: int = 0):
        from torch.utils.data.distributed import DistributedSampler

        self._distributed = DistributedSampler
        self.length, self.batch_size, self.rank, self.world_size = length, batch_size, rank, world_size
        self.seed, self.start_step = seed, start_step
        per_rank = length // world_size
        self.steps_per_epoch = per_rank // batch_size
        if self.steps_per_epoch < 1:
            # Fewer images than one global batch: repeat the list so an epoch holds one batch.
            self.repeat = -(-batch_size * world_size // length)
            self.steps_per_epoch = (length * self.repeat // world_size) // batch_size
        else:
            self.repeat = 1

    def _epoch(self, epoch: int) -> List[int]:
        sampler = self._distributed(_Sized(self.length * self.repeat), num_replicas=self.world_size, rank=self.rank,
                                    shuffle=True, seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        return [i % self.length for i in sampler][:self.steps_per_epoch * self.batch_size]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        offset *= self.batch_size
        while True:
            for index in self._epoch(epoch)[offset:]:
                yield index, epoch
            epoch, offset = epoch + 1, 0


class _Sized:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n
