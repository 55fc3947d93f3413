"""Checkpoints and result files of the trainers, written atomically.

Every file a trainer writes (checkpoints, JSON results, sample images) goes through
:func:`perceptual_ext.data.images.write_atomic`: a temporary file beside the target, renamed into
place, removed if the write fails. A reader never sees a half-written file.

Exact resume: a checkpoint holds the model, the optimizer(s), the step, the torch/numpy/python RNG
states and the states of the generators inside the loss (random features redrawn per call), so a
resumed run continues bit for bit where the interrupted one stopped (on the CPU).
"""
from __future__ import annotations

import inspect
import json
import os
import random
from typing import Dict, Iterable, List, Union

import numpy as np
import torch
from torch import nn

from ..data.images import save_text, write_atomic

CHECKPOINT_FORMAT = "perceptual_ext.feedforward/1"
CHECKPOINT_NAME = "checkpoint.pt"
#: keys every trainer checkpoint has; a file without them is refused with the missing key named.
REQUIRED_KEYS = ("format", "task", "step", "model", "state_dict")


def loss_generators(loss: nn.Module) -> List[torch.Generator]:
    """torch.Generators held by the loss's modules (random features redrawn per call), in a fixed order."""
    found = []
    for module in loss.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Generator) and value not in found:
                found.append(value)
    return found


def rng_state(loss: nn.Module) -> dict:
    """Every random state a training step reads: torch (and CUDA), numpy, python and ``loss``'s generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate(),
             "loss_generators": [g.get_state() for g in loss_generators(loss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, loss: nn.Module) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generators = loss_generators(loss)
    if len(generators) != len(state["loss_generators"]):
        raise ValueError("the checkpoint was written with a different loss (its random generators do not match)")
    for g, s in zip(generators, state["loss_generators"]):
        g.set_state(s)
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(checkpoint: dict, path: str) -> str:
    """Write ``checkpoint`` with torch.save, atomically (see the module docstring)."""
    return write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: str, map_location: Union[str, torch.device] = "cpu",
                    required: Iterable[str] = REQUIRED_KEYS) -> dict:
    """Read a trainer checkpoint (``torch.load(weights_only=True)``).

    Raises:
        ValueError: the file is missing or unreadable, is not a checkpoint of these trainers, or
            lacks one of the ``required`` keys (named in the message).
    """
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a perceptual_ext feed-forward checkpoint")
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint {path} has no {', '.join(map(repr, missing))} entry (damaged or not written "
                         "by these trainers)")
    return checkpoint


def restore_network(path: str, checkpoint: dict, build) -> nn.Module:
    """``build(**config)`` with the checkpoint's weights loaded; ValueError naming ``path`` if the
    checkpoint's config or weights do not fit the network this version builds."""
    try:
        model = build(**checkpoint["model"]["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {path} does not hold a network this version can build: {exc}") from exc
    return model


def full_config(cls: type, config: dict) -> dict:
    """A checkpoint's model config completed with ``cls``'s defaults for options added since it was
    written (e.g. ``residual=False``), so that old checkpoints still compare equal when resumed."""
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k != "self" and p.default is not inspect.Parameter.empty}
    return {**{k: defaults[k] for k in defaults if k not in config}, **config}


def write_json(data: Dict, path: str, overwrite: bool = False) -> str:
    """Write ``data`` as indented JSON atomically; an existing file needs ``overwrite``."""
    return save_text(json.dumps(data, indent=2) + "\n", path, overwrite=overwrite)
