"""The BAPPS dataset of Zhang et al. 2018 (Berkeley-Adobe Perceptual Patch Similarity), read from
its folder layout: 2AFC triplets with human judgements, and JND pairs."""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

#: kind -> the image folders of each subset, and the folder of its ``.npy`` human judgements.
LAYOUT = {"2afc": (("ref", "p0", "p1"), "judge"), "jnd": (("p0", "p1"), "same")}
#: The subsets of the published dataset (a folder may hold any of them, or others).
SUBSETS = {
    ("2afc", "train"): ("traditional", "cnn", "mix"),
    ("2afc", "val"): ("traditional", "cnn", "superres", "deblur", "color", "frameinterp"),
    ("jnd", "val"): ("traditional", "cnn"),
}
IMAGE_SIZE = 64


def _load_patch(path: str, size: int) -> Tensor:
    """An RGB image as [3, size, size] in [0, 1]; other sizes are resized (smaller edge to ``size``,
    bilinear, as the reference loader's ``transforms.Resize(64)``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            if min(w, h) != size:
                img = img.resize((max(size, round(w * size / min(w, h))), max(size, round(h * size / min(w, h)))),
                                 Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"BAPPS: cannot read image {path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _load_judgement(path: str) -> float:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"BAPPS: cannot read judgement {path} as a .npy array: {exc}") from exc
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"BAPPS: judgement {path} must hold one number, got an array of shape {value.shape} "
                         f"and dtype {value.dtype}")
    number = float(value.reshape(-1)[0])
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"BAPPS: judgement {path} must be a fraction of judges in [0, 1], got {number}")
    return number


def _stems(folder: str, extensions: Sequence[str]) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise ValueError(f"BAPPS: folder not found: {folder}")
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.lower().endswith(tuple(extensions)) and not n.startswith(".")}


class BAPPS(Dataset):
    """BAPPS from its published layout (no download): ``<root>/2afc/<split>/<subset>/{ref,p0,p1,judge}``
    or ``<root>/jnd/val/<subset>/{p0,p1,same}``, PNG patches and ``.npy`` judgements.

    Files of one item share a name (``000001.png`` in each image folder, ``000001.npy`` for the
    judgement); a name missing from any folder is an error, not a silently shifted pairing.
    Patches are RGB ``[3, 64, 64]`` in [0, 1] (other sizes are resized, smaller edge to 64, bilinear,
    as the reference loader); :class:`~perceptual_ext.losses.LPIPS` takes them as they are.

    Args:
        root: the dataset folder (holding ``2afc`` and/or ``jnd``).
        kind: ``"2afc"`` (triplets) or ``"jnd"`` (pairs).
        split: ``"train"`` or ``"val"`` (``jnd`` has only ``val``).
        subsets: names of subset folders to read (e.g. ``["traditional", "cnn"]``); ``None`` reads
            every subset folder present, in sorted order.
        image_size: side the patches are brought to (64, the reference loader's ``load_size``).

    Items:
        2afc: ``{"ref", "p0", "p1": Tensor[3, 64, 64], "judge": float (fraction preferring p1),
        "subset": str, "name": str}``; jnd: ``{"p0", "p1", "same": float (fraction who saw no
        difference), "subset", "name"}``. The default collate batches them.

    Example:
        >>> data = BAPPS("dataset", kind="2afc", split="val", subsets=["traditional"])  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(data, batch_size=50)  # doctest: +SKIP
    """

    def __init__(self, root: str, kind: str = "2afc", split: str = "val", subsets: Optional[Sequence[str]] = None,
                 image_size: int = IMAGE_SIZE) -> None:
        if kind not in LAYOUT:
            raise ValueError(f"kind must be one of {tuple(LAYOUT)}, got {kind!r}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if kind == "jnd" and split != "val":
            raise ValueError(f"split must be 'val' for kind='jnd' (BAPPS has no JND training split), got {split!r}")
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        self.root, self.kind, self.split, self.image_size = os.fspath(root), kind, split, image_size
        base = os.path.join(self.root, kind, split)
        if not os.path.isdir(base):
            raise ValueError(f"BAPPS: no {kind}/{split} folder in {self.root!r} (expected {base})")
        if subsets is None:
            subsets = sorted(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
            if not subsets:
                raise ValueError(f"BAPPS: no subset folders in {base}")
        elif isinstance(subsets, str) or not all(isinstance(s, str) for s in subsets) or not subsets:
            raise TypeError(f"subsets must be None or a non-empty list of subset names, got {subsets!r}")
        self.subsets = tuple(subsets)
        image_dirs, judgement_dir = LAYOUT[kind]
        self.items: List[dict] = []
        self.counts: Dict[str, int] = {}
        for subset in self.subsets:
            folder = os.path.join(base, subset)
            if not os.path.isdir(folder):
                raise ValueError(f"BAPPS: subset {subset!r} not found: {folder}")
            images = {d: _stems(os.path.join(folder, d), (".png", ".jpg", ".jpeg", ".bmp")) for d in image_dirs}
            judgements = _stems(os.path.join(folder, judgement_dir), (".npy",))
            names = set(judgements)
            for d, found in images.items():
                names |= set(found)
            for name in sorted(names):
                lacking = [d for d in image_dirs if name not in images[d]] + \
                    ([judgement_dir] if name not in judgements else [])
                if lacking:
                    raise ValueError(f"BAPPS: item {name!r} of {folder} has no file in {', '.join(lacking)}")
            self.counts[subset] = len(names)
            for name in sorted(names):
                item = {d: images[d][name] for d in image_dirs}
                item[judgement_dir] = judgements[name]
                item.update(subset=subset, name=name)
                self.items.append(item)
        if not self.items:
            raise ValueError(f"BAPPS: no items in {base} for subsets {self.subsets}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        paths = self.items[index]
        image_dirs, judgement_dir = LAYOUT[self.kind]
        item = {d: _load_patch(paths[d], self.image_size) for d in image_dirs}
        item[judgement_dir] = _load_judgement(paths[judgement_dir])
        item.update(subset=paths["subset"], name=paths["name"])
        return item

    def __repr__(self) -> str:
        return f"BAPPS(root={self.root!r}, kind={self.kind!r}, split={self.split!r}, counts={self.counts})"
