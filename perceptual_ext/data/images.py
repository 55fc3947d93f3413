"""Image I/O as float tensors in [0, 1], CHW; sample images from scikit-image (no network)."""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

# scikit-image ships these inside the package: no download at run time.
SAMPLE_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "brick", "grass", "gravel", "rocket", "text", "coins",
                 "motorcycle")
# The colour photographs among them ("motorcycle" is the left view of skimage's stereo_motorcycle).
COLOUR_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
_LOADERS = {"motorcycle": lambda data: data.stereo_motorcycle()[0]}


def _to_tensor(array: np.ndarray, channels: Optional[int]) -> Tensor:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype == np.uint8:
        t = torch.from_numpy(np.require(array, requirements=["C", "W"])).float().div_(255.0)
    elif array.dtype == np.uint16:
        t = torch.from_numpy(array.astype(np.float32) / 65535.0)
    else:
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).clamp_(0, 1)
    t = t.permute(2, 0, 1).contiguous()
    if t.shape[0] == 4:  # drop alpha
        t = t[:3]
    if channels == 3 and t.shape[0] == 1:
        t = t.expand(3, -1, -1).contiguous()
    elif channels == 1 and t.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        t = (t * weights).sum(0, keepdim=True)
    elif channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels}")
    return t


def sample_image(name: str, channels: Optional[int] = None, size: Optional[int] = None) -> Tensor:
    """A scikit-image sample image as a float tensor [C, H, W] in [0, 1].

    Args:
        name: one of :data:`SAMPLE_IMAGES`.
        channels: ``None`` keeps the image's own channels; 1 (grayscale) or 3 (RGB) converts.
        size: if given, a centre square crop resized to ``size x size`` (bicubic, antialiased).
    """
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"name must be one of {SAMPLE_IMAGES}, got {name!r}")
    import skimage.data

    load = _LOADERS.get(name, lambda data: getattr(data, name)())
    t = _to_tensor(load(skimage.data), channels)
    return center_resize(t, size) if size else t


def center_resize(image: Tensor, size: int) -> Tensor:
    """Centre square crop of a [C, H, W] image, resized to size x size."""
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[:, top:top + side, left:left + side]
    if side == size:
        return crop.contiguous()
    out = torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bicubic", antialias=True,
                                          align_corners=False)
    return out[0].clamp_(0, 1)


def image_grid(images, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Images [C, H, W] (or [1, C, H, W]) side by side in one row, ``padding`` pixels apart.

    Images of different heights are top-aligned; grayscale ones are repeated to RGB when the row
    mixes channel counts.
    """
    images = [im[0] if im.dim() == 4 else im for im in images]
    if not images:
        raise ValueError("images must hold at least one image")
    channels = max(im.shape[0] for im in images)
    images = [im.expand(channels, -1, -1) if im.shape[0] == 1 else im for im in images]
    height = max(im.shape[1] for im in images)
    width = sum(im.shape[2] for im in images) + padding * (len(images) - 1)
    grid = images[0].new_full((channels, height, width), pad_value)
    left = 0
    for im in images:
        grid[:, :im.shape[1], left:left + im.shape[2]] = im
        left += im.shape[2] + padding
    return grid


def labelled_grid(rows, labels, padding: int = 2, scale: int = 1, header: int = 16) -> Tensor:
    """Rows of images (each row as :func:`image_grid` lays it out) stacked under a strip of column labels.

    Args:
        rows: a list of rows, each a list of images [C, H, W]; the columns follow the first row's widths.
        labels: one caption per column (PIL's default font), written in a white strip above the grid.
        padding: pixels between images and rows; scale: nearest-neighbour enlargement of the grid.

    Returns:
        Tensor[3, H, W] in [0, 1], ready for :func:`save_image`.
    """
    from PIL import Image, ImageDraw

    grids = [image_grid(row, padding=padding) for row in rows]
    if not grids:
        raise ValueError("rows must hold at least one row")
    grids = [g.expand(3, -1, -1) if g.shape[0] == 1 else g for g in grids]
    width = max(g.shape[2] for g in grids)
    body = torch.ones(3, sum(g.shape[1] for g in grids) + padding * (len(grids) - 1), width)
    top = 0
    for g in grids:
        body[:, top:top + g.shape[1], :g.shape[2]] = g
        top += g.shape[1] + padding
    if scale != 1:
        body = torch.nn.functional.interpolate(body[None], scale_factor=scale, mode="nearest")[0]
    canvas = Image.new("RGB", (body.shape[2], body.shape[1] + header), "white")
    canvas.paste(Image.fromarray((body.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()), (0, header))
    draw = ImageDraw.Draw(canvas)
    left = 0
    for image, text in zip(rows[0], labels):
        draw.text((left * scale + 2, 2), text, fill="black")
        left += image.shape[-1] + padding
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def load_image(path: str, channels: Optional[int] = 3) -> Tensor:
    """Read an image file (PNG, JPEG, ...) as a float tensor [C, H, W] in [0, 1].

    Raises:
        ValueError: the file does not exist or cannot be decoded as an image.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = "RGB" if channels == 3 else ("L" if channels == 1 else None)
            if img.mode not in ("L", "RGB", "RGBA", "I;16") or mode:
                img = img.convert(mode or "RGB")
            array = np.asarray(img)
    except Image.DecompressionBombError as exc:  # Pillow's guard against a tiny file that decodes to gigabytes
        raise ValueError(f"cannot read image {path}: it is too large to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    return _to_tensor(array, channels)


def save_image(image: Tensor, path: str, overwrite: bool = True) -> str:
    """Write a [C, H, W] (or [1, C, H, W]) tensor in [0, 1] as an 8-bit PNG/JPEG, atomically.

    The image is written to a temporary file beside ``path`` and renamed, so a reader never
    sees a half-written file. With ``overwrite=False`` an existing file raises ``FileExistsError``.
    """
    from PIL import Image

    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"image must be [C, H, W] or [1, C, H, W], got {tuple(image.shape)}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be [C, H, W] with C in (1, 3), got {tuple(image.shape)}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    array = (image.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    return write_atomic(path, pil.save)


def refuse_existing(paths: Sequence[str], overwrite: bool) -> None:
    """FileExistsError naming the first of ``paths`` that exists (and how many more), unless
    ``overwrite``: the check before a batch of writes, so that nothing is written when one is refused."""
    if not overwrite:
        existing = [p for p in paths if os.path.exists(p)]
        if existing:
            raise FileExistsError(f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite to replace")


def write_atomic(path: str, write: Callable[[str], object]) -> str:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    A reader never sees a half-written file and a failed write leaves nothing behind. The
    temporary file keeps ``path``'s suffix (Pillow picks the format from it).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_text(text: str, path: str, overwrite: bool = True) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``overwrite=False`` refuses an existing file."""
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomic(path, write)
