"""Feed-forward networks at inference: loading a trained network and applying it to image files."""
from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch import nn

from .. import _checks
from ..data.images import load_image, refuse_existing, save_image
from ..models.transform import build_model
from .checkpoint import load_checkpoint, restore_network


def load_transform_net(path: str, device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, dict]:
    """The trained network of a checkpoint, in eval mode on ``device``, and the checkpoint itself."""
    checkpoint = load_checkpoint(path)
    model = restore_network(path, checkpoint, lambda **config: build_model(checkpoint["model"]["class"], **config))
    return model.to(device).eval(), checkpoint


def check_io_lists(inputs: Sequence[str], outputs: Sequence[str], overwrite: bool) -> None:
    """Before any work on files: one output per input, and no existing output unless ``overwrite``."""
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs and outputs must have the same length, got {len(inputs)} and {len(outputs)}")
    refuse_existing(outputs, overwrite)


def transform_files(model: nn.Module, inputs: Sequence[str], outputs: Sequence[str], *, batch_size: int = 4,
                    device: Union[str, torch.device] = "cpu", overwrite: bool = False, progress: bool = True) -> int:
    """Run ``model`` on image files and write the results (PNG/JPEG by extension), in batches.

    Images of equal size are batched together (``batch_size`` at most); outputs are clamped to
    [0, 1]. Every output is checked before any work: an existing one raises FileExistsError
    unless ``overwrite``. Unreadable inputs raise ValueError naming the file.

    Returns:
        the number of images written.
    """
    _checks.positive_int(batch_size, "batch_size")
    check_io_lists(inputs, outputs, overwrite)
    by_size: Dict[tuple, List[int]] = {}
    for i, path in enumerate(inputs):  # headers only: batches of equal size, decoded one batch at a time
        by_size.setdefault(_image_size(path), []).append(i)
    from tqdm.auto import tqdm

    model = model.to(device).eval()
    with tqdm(total=len(inputs), desc="images", disable=not progress, dynamic_ncols=True) as bar, torch.no_grad():
        for indices in by_size.values():
            for begin in range(0, len(indices), batch_size):
                chunk = indices[begin:begin + batch_size]
                batch = torch.stack([load_image(inputs[i], channels=3) for i in chunk]).to(device)
                for i, image in zip(chunk, model(batch).clamp_(0, 1).cpu()):
                    save_image(image, outputs[i], overwrite=True)
                bar.update(len(chunk))
    return len(inputs)


def _image_size(path: str) -> Tuple[int, int]:
    from PIL import Image

    if not os.path.isfile(path):
        raise ValueError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc

