"""Translation with a trained pix2pix or CycleGAN generator: loading it from a checkpoint and applying
it to image files (per-image batch statistics, as pix2pix does at test time)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ..data.pairs import DIRECTIONS, split_aligned
from ..models.gan import GAN_MODELS, UNetGenerator
from .checkpoint import load_checkpoint
from .gan import (GAN_TASKS, PaperInference)


class PadToMultiple(nn.Module):
    """Run ``net`` on any size: pad (reflect; replicate where too small) to a multiple of ``multiple``,
    then crop the output back to the input's size."""

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
        return self.net(x)[..., :h, :w]


def load_gan_generator(path: str, direction: str = "AtoB",
                       device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, dict]:
    """The generator of a :func:`train_pix2pix` or :func:`train_cyclegan` checkpoint, in eval mode,
    wrapped to accept any image size (:class:`PadToMultiple`) and to normalize each image with its
    own batch-norm statistics (:class:`PaperInference`), and the checkpoint.

    Args:
        direction: CycleGAN: ``"AtoB"`` (G_A) or ``"BtoA"`` (G_B); pix2pix: must be ``"AtoB"``
            (its G translates the direction it was trained in).

    Raises:
        ValueError: not a GAN checkpoint (e.g. a style or SR one), or ``BtoA`` of a pix2pix one.
    """
    _checks.choice(direction, "direction", DIRECTIONS)
    checkpoint = load_checkpoint(path, map_location="cpu")
    if checkpoint["task"] not in GAN_TASKS:
        raise ValueError(f"{path} is a {checkpoint['task']!r} checkpoint, not a pix2pix or cyclegan one")
    if checkpoint["task"] == "pix2pix" and direction != "AtoB":
        raise ValueError(f"{path} is a pix2pix checkpoint: its G translates one way only (trained "
                         f"{checkpoint['train_config'].get('direction', 'AtoB')}); direction BtoA needs a cyclegan one")
    name = "G_B" if direction == "BtoA" else ("G_A" if checkpoint["task"] == "cyclegan" else "G")
    try:
        saved = checkpoint["networks"][name]
        net = GAN_MODELS[saved["class"]](**saved["config"])
        net.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {path} does not hold a generator this version can build: {exc}") from exc
    multiple = 2 ** net.config["num_downs"] if isinstance(net, UNetGenerator) else 4
    model = PadToMultiple(PaperInference(net), multiple)
    return model.to(device).eval(), checkpoint


def translate_files(model: nn.Module, inputs: Sequence[str], outputs: Sequence[str], *, aligned: Optional[str] = None,
                    batch_size: int = 4, device: Union[str, torch.device] = "cpu", overwrite: bool = False,
                    progress: bool = True) -> int:
    """Translate image files with a generator (from :func:`load_gan_generator`) and write the results.

    Args:
        aligned: inputs are aligned A|B images: ``"A"`` translates their left half, ``"B"`` their
            right half; ``None`` translates the whole image.
        Other arguments: as :func:`~perceptual_ext.train.transform_files` (batches of equal-size
        images, every output checked before any work, FileExistsError unless ``overwrite``).

    Returns:
        the number of images written.
    """
    from .apply import transform_files

    if aligned is None:
        return transform_files(model, inputs, outputs, batch_size=batch_size, device=device, overwrite=overwrite,
                               progress=progress)
    _checks.choice(aligned, "aligned", ("A", "B"))
    return transform_files(_Half(model, aligned), inputs, outputs, batch_size=batch_size, device=device,
                           overwrite=overwrite, progress=progress)


class _Half(nn.Module):
    def __init__(self, net: nn.Module, half: str):
        super().__init__()
        self.net, self.half = net, half

    def forward(self, x: Tensor) -> Tensor:
        a, b = split_aligned(x[0])  # checks the width
        w = a.shape[-1]
        return self.net(x[..., :w] if self.half == "A" else x[..., w:2 * w])


__all__ = ["load_gan_generator", "translate_files", "PadToMultiple"]
