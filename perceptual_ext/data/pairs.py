"""Image-to-image data sets: paired (pix2pix) and unpaired (CycleGAN), and a built-in paired set.

Layouts on disk, as the reference implementation (``junyanz/pytorch-CycleGAN-and-pix2pix``) reads them:

- **aligned**: one folder of images, each holding A on its left half and B on its right half
  (pix2pix's ``facades``, ``edges2shoes``, ... are distributed this way);
- **two folders** ``A/`` and ``B/`` whose files pair up by name (the stem: ``x.png`` and ``x.jpg`` pair);
- **unpaired**: two folders, any names, any counts (CycleGAN's ``trainA``/``trainB``).

Every item is a pure function of ``(seed, epoch, index)`` like :class:`~perceptual_ext.data.ImageCrops`:
pix2pix's random jitter (resize to ``load_size``², random ``crop_size``² crop, horizontal flip,
the same for A and B of a pair) and CycleGAN's random choice of B are drawn from a generator
seeded by that key, so a resumed or distributed run sees exactly the data of an uninterrupted one.

With no data at hand, :func:`sample_pairs` builds a small paired set from the bundled
scikit-image samples (no download): ``"edges"`` (Canny edge map → photo, like pix2pix's
edges2photo sets) or ``"grey"`` (greyscale → colour, colour samples only).
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from .. import _checks
from .datasets import DEFAULT_SAMPLES, _readable, list_images, load_skipping
from .images import center_resize, load_image, refuse_existing, sample_image, save_image

SAMPLE_PAIR_KINDS = ("edges", "grey")
#: the colour photographs the ``"grey"`` built-in set is made of.
GREY_PAIR_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
DIRECTIONS = ("AtoB", "BtoA")


# --------------------------------------------------------------------------- the built-in set

def edge_map(image: Tensor, sigma: float = 2.0) -> Tensor:
    """Canny edges of a [C, H, W] image in [0, 1] as black lines on white, [3, H, W] (float 0/1)."""
    from skimage.feature import canny

    grey = image if image.shape[0] == 1 else greyscale(image)[:1]
    edges = canny(grey[0].double().numpy(), sigma=sigma)
    return torch.from_numpy(1.0 - edges.astype(np.float32))[None].expand(3, -1, -1).contiguous()


def _edges_at(name: str, size: int) -> Tensor:
    """The edge map of a sample's centre square: Canny at 256² (σ = 2, scaled with larger sizes), kept
    as lines when shrunk to ``size`` (a pixel is an edge if a fifth of the pixels it covers are)."""
    work = max(size, 256)
    edges = edge_map(center_resize(sample_image(name, channels=3), work), sigma=2.0 * work / 256)
    if work != size:
        edges = (F.adaptive_avg_pool2d((1.0 - edges)[None], size)[0] < 0.2).float()
    return edges


def greyscale(image: Tensor) -> Tensor:
    """ITU-R 601 luma of a [3, H, W] image, repeated to [3, H, W]."""
    grey = (image[:3] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    return grey.expand(3, -1, -1).contiguous()


@functools.lru_cache(maxsize=8)
def _sample_pairs(kind: str, size: int) -> Tuple[Tuple[str, Tensor, Tensor], ...]:
    names = DEFAULT_SAMPLES if kind == "edges" else GREY_PAIR_SAMPLES
    pairs = []
    for name in names:
        photo = center_resize(sample_image(name, channels=3), size)
        source = _edges_at(name, size) if kind == "edges" else greyscale(photo)
        pairs.append((name, source, photo))
    return tuple(pairs)


def sample_pairs(kind: str = "edges", size: int = 256) -> List[Tuple[str, Tensor, Tensor]]:
    """A small paired set from scikit-image's bundled samples: ``[(name, A, B)]``, each [3, size, size].

    Args:
        kind: ``"edges"`` — A is the Canny edge map (σ = 2 at 256², black lines on white) of B,
            the photo's centre square, for all ten samples; ``"grey"`` — A is the greyscale of B, for the four
            colour samples (astronaut, coffee, chelsea, rocket).
        size: side of the square images.
    """
    _checks.choice(kind, "kind", SAMPLE_PAIR_KINDS)
    _checks.positive_int(size, "size", minimum=8)
    return [(name, a.clone(), b.clone()) for name, a, b in _sample_pairs(kind, size)]


def write_sample_pairs(folder: str, kind: str = "edges", size: int = 256, layout: str = "aligned",
                       overwrite: bool = False) -> List[str]:
    """Write :func:`sample_pairs` as PNGs: ``layout="aligned"`` → ``folder/NAME.png`` (A|B side by
    side), ``"folders"`` → ``folder/A/NAME.png`` and ``folder/B/NAME.png``. Returns the paths written.

    Raises:
        FileExistsError: a file exists and ``overwrite`` is False (nothing is written then).
    """
    _checks.choice(layout, "layout", ("aligned", "folders"))
    pairs = sample_pairs(kind, size)
    if layout == "aligned":
        jobs = [(os.path.join(folder, f"{name}.png"), torch.cat([a, b], dim=-1)) for name, a, b in pairs]
    else:
        jobs = [job for name, a, b in pairs for job in ((os.path.join(folder, "A", f"{name}.png"), a),
                                                          (os.path.join(folder, "B", f"{name}.png"), b))]
    refuse_existing([path for path, _ in jobs], overwrite)
    return [save_image(image, path) for path, image in jobs]


# --------------------------------------------------------------------------- shared pieces

def split_aligned(image: Tensor) -> Tuple[Tensor, Tensor]:
    """The A (left) and B (right) halves of an aligned [C, H, W] image (W even; an odd last column is dropped)."""
    _checks.rank(image, "image", (3,), "[C, H, W]")
    half = image.shape[-1] // 2
    if half == 0:
        raise ValueError(f"an aligned image must be at least 2 pixels wide, got shape {tuple(image.shape)}")
    return image[..., :half], image[..., half:2 * half]


def _check_jitter(load_size: Optional[int], crop_size: int) -> None:
    _checks.positive_int(crop_size, "crop_size", minimum=4)
    if load_size is not None:
        _checks.positive_int(load_size, "load_size", minimum=4)
        if load_size < crop_size:
            raise ValueError(f"load_size must be >= crop_size, got load_size={load_size}, crop_size={crop_size}")


def _jitter(images: Sequence[Tensor], rng: np.random.Generator, load_size: Optional[int], crop_size: int,
            flip: bool) -> List[Tensor]:
    """pix2pix's ``resize_and_crop`` + flip, with one draw shared by ``images``.

    Each image is resized to ``load_size``² (bicubic, antialiased; ``None`` keeps its size, upscaling
    only an image smaller than the crop), then cropped at the same random position and flipped
    (probability 1/2) together with the others.
    """
    out = []
    for image in images:
        h, w = image.shape[-2:]
        if load_size is not None:
            target = (load_size, load_size)
        elif min(h, w) < crop_size:
            factor = crop_size / min(h, w)
            target = (max(crop_size, round(h * factor)), max(crop_size, round(w * factor)))
        else:
            target = (h, w)
        if target != (h, w):
            image = F.interpolate(image[None], size=target, mode="bicubic", antialias=True,
                                  align_corners=False)[0].clamp_(0, 1)
        out.append(image)
    h = min(im.shape[-2] for im in out)
    w = min(im.shape[-1] for im in out)
    top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
    mirror = bool(rng.integers(0, 2)) if flip else False
    crops = []
    for image in out:
        crop = image[:, top:top + crop_size, left:left + crop_size]
        crops.append((crop.flip(-1) if mirror else crop).contiguous())
    return crops


def _readable_images(folder: str, what: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    """The readable images of ``folder`` and the skipped ``(path, reason)`` ones (warned about)."""
    if folder is None or not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"{what} must be a folder path, got {type(folder).__name__}")
    paths = list_images(os.fspath(folder))
    if not paths:
        raise ValueError(f"{what} {folder} holds no images (png, jpg, ...)")
    good, skipped = [], []
    for path in paths:
        reason = _readable(path)
        if reason is None:
            good.append(path)
        else:
            skipped.append((path, reason))
            warnings.warn(f"skipping unreadable image {path}: {reason}", RuntimeWarning, stacklevel=3)
    if not good:
        raise ValueError(f"no readable images in {what} {folder} ({len(skipped)} unreadable skipped)")
    return good, skipped


def _key(key) -> Tuple[int, int]:
    return key if isinstance(key, tuple) else (key, 0)


# --------------------------------------------------------------------------- paired

class PairedImages(Dataset):
    """Pairs (A, B) for pix2pix: an aligned folder, two folders paired by name, or the built-in set.

    Args:
        folder: aligned images (A|B side by side), or the A folder when ``folder_b`` is given;
            ``None`` uses :func:`sample_pairs` (``builtin`` kind, offline).
        folder_b: the B folder: files pair with ``folder``'s by name (stem); every name must
            be in both, else ValueError listing the unmatched ones.
        load_size: side A and B are resized to before cropping (pix2pix: 286); ``None`` keeps
            the image's size.
        crop_size: side of the random crop (pix2pix: 256).
        flip: random horizontal flips.
        direction: ``"AtoB"`` (input A, target B) or ``"BtoA"`` (swapped).
        seed: with the key ``(index, epoch)`` decides the crop and the flip.
        builtin: kind of the built-in set (``"edges"`` or ``"grey"``); builtin_size: its image side.

    Items (key ``(index, epoch)`` from :class:`~perceptual_ext.data.StepSampler`, or an index):
        ``{"A": Tensor[3, crop, crop], "B": Tensor[3, crop, crop], "failures": int}`` with A the
        input and B the target of ``direction``.
    """

    def __init__(self, folder: Optional[str] = None, folder_b: Optional[str] = None, *, load_size: Optional[int] = 286,
                 crop_size: int = 256, flip: bool = True, direction: str = "AtoB", seed: int = 0,
                 builtin: str = "edges", builtin_size: int = 256):
        _check_jitter(load_size, crop_size)
        _checks.choice(direction, "direction", DIRECTIONS)
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.direction, self.seed = direction, seed
        self.skipped: List[Tuple[str, str]] = []
        self.names: List[str]
        self._pairs: Optional[List[Tuple[Tensor, Tensor]]] = None
        if folder is None:
            if folder_b is not None:
                raise ValueError("folder_b needs folder (the A images)")
            pairs = sample_pairs(builtin, builtin_size)
            self.names = [name for name, _, _ in pairs]
            self._pairs = [(a, b) for _, a, b in pairs]
            self.layout = "builtin"
        elif folder_b is None:
            self.sources, self.skipped = _readable_images(folder, "folder")
            self.names = [os.path.basename(p) for p in self.sources]
            self.layout = "aligned"
        else:
            paths_a, skipped_a = _readable_images(folder, "folder")
            paths_b, skipped_b = _readable_images(folder_b, "folder_b")
            self.skipped = skipped_a + skipped_b
            by_stem_a = _by_stem(paths_a, "folder")
            by_stem_b = _by_stem(paths_b, "folder_b")
            only_a = sorted(set(by_stem_a) - set(by_stem_b))
            only_b = sorted(set(by_stem_b) - set(by_stem_a))
            if only_a or only_b:
                raise ValueError(f"mismatched pairs: {len(only_a)} image(s) of folder have no match in folder_b "
                                 f"{only_a[:3]}, {len(only_b)} of folder_b none in folder {only_b[:3]} "
                                 "(files pair up by name without extension)")
            stems = sorted(by_stem_a)
            self.sources = [(by_stem_a[s], by_stem_b[s]) for s in stems]
            self.names = stems
            self.layout = "folders"

    def __len__(self) -> int:
        return len(self.names)

    def load_pair(self, index: int) -> Tuple[Tensor, Tensor]:
        """The full-size (A, B) of pair ``index`` in the dataset's ``direction`` (input, target)."""
        if self.layout == "builtin":
            a, b = self._pairs[index]
        elif self.layout == "aligned":
            a, b = split_aligned(load_image(self.sources[index], channels=3))
        else:
            a, b = (load_image(p, channels=3) for p in self.sources[index])
        return (a, b) if self.direction == "AtoB" else (b, a)

    def __getitem__(self, key) -> Dict[str, object]:
        index, epoch = _key(key)
        (a, b), index, failures = load_skipping(self.load_pair, index, len(self), "pair", "the dataset")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        a, b = _jitter([a, b], rng, self.load_size, self.crop_size, self.flip)
        return {"A": a, "B": b, "failures": failures}


def _by_stem(paths: Sequence[str], what: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in out:
            raise ValueError(f"{what} holds two images named {stem!r}: {os.path.basename(out[stem])} and "
                             f"{os.path.basename(path)}")
        out[stem] = path
    return out


# --------------------------------------------------------------------------- unpaired

class UnpairedImages(Dataset):
    """Unpaired domains A and B for CycleGAN: two folders, or the two halves of the built-in set.

    Item ``index`` takes A image ``index mod |A|`` and a B image drawn uniformly from its key (the
    reference's ``unaligned`` mode with random B), each jittered independently.

    Args:
        folder_a, folder_b: the two domains' folders; both ``None`` uses :func:`sample_pairs`
            (``builtin`` kind) with the pairing ignored.
        load_size, crop_size, flip, seed: as :class:`PairedImages`.

    Items:
        ``{"A": Tensor[3, crop, crop], "B": Tensor[3, crop, crop], "failures": int}``; the length
        is ``max(|A|, |B|)``.
    """

    def __init__(self, folder_a: Optional[str] = None, folder_b: Optional[str] = None, *,
                 load_size: Optional[int] = 286, crop_size: int = 256, flip: bool = True, seed: int = 0,
                 builtin: str = "edges", builtin_size: int = 256):
        _check_jitter(load_size, crop_size)
        self.load_size, self.crop_size, self.flip, self.seed = load_size, crop_size, flip, seed
        self.skipped: List[Tuple[str, str]] = []
        if (folder_a is None) != (folder_b is None):
            raise ValueError("give both folder_a and folder_b, or neither (the built-in set)")
        self.builtin = folder_a is None
        if self.builtin:
            pairs = sample_pairs(builtin, builtin_size)
            self.sources_a = [a for _, a, _ in pairs]
            self.sources_b = [b for _, _, b in pairs]
        else:
            self.sources_a, skipped_a = _readable_images(folder_a, "folder_a")
            self.sources_b, skipped_b = _readable_images(folder_b, "folder_b")
            self.skipped = skipped_a + skipped_b

    def __len__(self) -> int:
        return max(len(self.sources_a), len(self.sources_b))

    def _load(self, source) -> Tensor:
        return source if isinstance(source, Tensor) else load_image(source, channels=3)

    def __getitem__(self, key) -> Dict[str, object]:
        index, epoch = _key(key)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index]))
        index_b = int(rng.integers(0, len(self.sources_b)))
        a, _, fa = load_skipping(lambda i: self._load(self.sources_a[i]), index % len(self.sources_a),
                                 len(self.sources_a), "image", "a domain")
        b, _, fb = load_skipping(lambda i: self._load(self.sources_b[i]), index_b, len(self.sources_b), "image",
                                 "a domain")
        (a,) = _jitter([a], rng, self.load_size, self.crop_size, self.flip)
        (b,) = _jitter([b], rng, self.load_size, self.crop_size, self.flip)
        return {"A": a, "B": b, "failures": fa + fb}
