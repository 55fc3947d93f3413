"""Trainers for feed-forward image transformation networks (Johnson et al., seed 003).

:func:`train_style` trains a :class:`~perceptual_ext.models.StyleTransformNet` for one style image;
:func:`train_sr` trains a ×4/×8 :class:`~perceptual_ext.models.SuperResolutionNet` (or ``SRCNN``)
on random crops. Both take any image loss of :mod:`perceptual_ext.losses.factory` by name, use
Adam, show a tqdm bar, write sample PNGs and atomic checkpoints, and resume exactly.

Exact resume: a checkpoint holds the model, the optimizer, the step, the torch/numpy/python RNG
states, the states of the generators inside the loss (random features redrawn per call), and the
data seed; the data of step ``t`` is a pure function of (seed, t) (see
:class:`~perceptual_ext.data.StepSampler`). So ``steps=N`` in one run and ``N/2`` then
``resume=`` to ``N`` give identical weights on the CPU.

Distributed: under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the trainers initialise a
process group (gloo on CPU, nccl on CUDA), wrap the model in DistributedDataParallel and give each
process its slice of every global batch; ``batch_size`` is per process, so the global batch is
``N * batch_size``. Only rank 0 shows progress and writes samples and checkpoints. BatchNorm is
converted to SyncBatchNorm on CUDA; on the CPU (gloo) it normalizes per process.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .. import _checks
from ..data.datasets import DEFAULT_SAMPLES, ImageCrops, StepSampler, downsample, list_images, upsample_bicubic
from ..data.images import center_resize, load_image, sample_image, save_image
from ..models.transform import MODELS, SRCNN, StyleTransformNet, SuperResolutionNet, build_model

CHECKPOINT_FORMAT = "perceptual_ext.feedforward/1"
CHECKPOINT_NAME = "checkpoint.pt"
SR_MODELS = ("johnson", "srcnn")
#: optimizer name -> class (Johnson et al. train with Adam; plain SGD is there for exact comparisons).
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


# --------------------------------------------------------------------------- checkpoints

def _loss_generators(loss: nn.Module) -> List[torch.Generator]:
    """torch.Generators held by the loss's modules (random features redrawn per call), in a fixed order."""
    found = []
    for module in loss.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Generator) and value not in found:
                found.append(value)
    return found


def _rng_state(loss: nn.Module) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "python": random.getstate(),
             "loss_generators": [g.get_state() for g in _loss_generators(loss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, loss: nn.Module) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generators = _loss_generators(loss)
    if len(generators) != len(state["loss_generators"]):
        raise ValueError("the checkpoint was written with a different loss (its random generators do not match)")
    for g, s in zip(generators, state["loss_generators"]):
        g.set_state(s)
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(checkpoint: dict, path: str) -> str:
    """Write ``checkpoint`` with torch.save to a temporary file beside ``path``, then rename it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path: str, map_location: Union[str, torch.device] = "cpu") -> dict:
    """Read a trainer checkpoint (``torch.load(weights_only=True)``).

    Raises:
        ValueError: the file is missing, unreadable, or not a checkpoint of these trainers.
    """
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a perceptual_ext feed-forward checkpoint")
    return checkpoint


def load_transform_net(path: str, device: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, dict]:
    """The trained network of a checkpoint, in eval mode on ``device``, and the checkpoint itself."""
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint["model"]["class"], **checkpoint["model"]["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval(), checkpoint


def _full_config(name: str, config: dict) -> dict:
    """A checkpoint's model config completed with the class's defaults for options added since it was
    written (e.g. ``residual=False``), so that old checkpoints still compare equal when resumed."""
    import inspect

    cls = MODELS.get(name)
    if cls is None:
        return dict(config)
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if k != "self" and p.default is not inspect.Parameter.empty}
    return {**{k: defaults[k] for k in defaults if k not in config}, **config}


# --------------------------------------------------------------------------- distributed

def _distributed(device: torch.device) -> Tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, created) — initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    import torch.distributed as dist

    created = not dist.is_initialized()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, created


def _mean_over_processes(value: Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world
    return float(value.detach())


# --------------------------------------------------------------------------- the training loop

def _grid(rows: Sequence[Tensor]) -> Tensor:
    """Rows of equally sized [N, 3, H, W] batches -> one [3, rows·H, N·W] picture."""
    return torch.cat([torch.cat(list(r.clamp(0, 1)), dim=-1) for r in rows], dim=-2)


def _fit(*, task: str, model: nn.Module, dataset: ImageCrops, objective: Callable[[nn.Module, dict], Tensor],
         preview: Callable[[nn.Module, dict], Tensor], loss: nn.Module, config: dict, out_dir: str, steps: int,
         batch_size: int, lr: float, seed: int, device, num_workers: int, sample_every: int, checkpoint_every: int,
         resume: Optional[str], overwrite: bool, progress: bool, optimizer: str = "adam") -> dict:
    _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(lr, "lr")
    _checks.positive_int(num_workers, "num_workers", minimum=0)
    _checks.positive_int(sample_every, "sample_every", minimum=0)
    _checks.positive_int(checkpoint_every, "checkpoint_every", minimum=0)
    rank, world, device, created_group = _distributed(torch.device(device))
    main_process = rank == 0
    checkpoint_path = os.path.join(out_dir, CHECKPOINT_NAME)
    if resume is None and not overwrite and os.path.exists(checkpoint_path):
        raise FileExistsError(f"{checkpoint_path} exists: pass resume= to continue it or overwrite=True")

    model.to(device)
    loss.to(device)
    _checks.choice(optimizer, "optimizer", OPTIMIZERS)
    optimizer = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    start, history, failures = 0, [], 0
    if resume is not None:
        state = load_checkpoint(resume, map_location=device)
        if state["task"] != task:
            raise ValueError(f"resume checkpoint {resume} is a {state['task']!r} run, not {task!r}")
        if _full_config(state["model"]["class"], state["model"]["config"]) != model.config:
            raise ValueError(f"resume checkpoint {resume} has model config {state['model']['config']}, "
                             f"this run builds {model.config}")
        if state["global_batch"] != batch_size * world:
            warnings.warn(f"resuming with global batch {batch_size * world} instead of {state['global_batch']}: "
                          "the data order will differ from an uninterrupted run", RuntimeWarning, stacklevel=3)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], loss)
        start, history, failures = state["step"], list(state["history"]), state["failures"]
        seed = state["data_seed"]
        if start > steps:
            raise ValueError(f"resume checkpoint is at step {start}, beyond steps={steps}")

    train_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = StepSampler(len(dataset), batch_size, rank=rank, world_size=world, seed=seed, start_step=start)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                         pin_memory=device.type == "cuda")
    # Four fixed crops (distinct even for a one-image dataset) shown in every sample PNG.
    preview_batch = torch.utils.data.default_collate([dataset[(i % len(dataset), i // len(dataset))] for i in range(4)])

    def checkpoint(step: int) -> None:
        save_checkpoint({
            "format": CHECKPOINT_FORMAT, "task": task, "step": step,
            "model": {"class": type(model).__name__, "config": dict(model.config)},
            "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": _rng_state(loss),
            "data_seed": seed, "global_batch": batch_size * world, "history": history, "failures": failures,
            "skipped_files": [path for path, _ in dataset.skipped], "train_config": config,
        }, checkpoint_path)

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=start, desc=f"train-{task}", disable=not (progress and main_process),
               dynamic_ncols=True)
    batches = iter(loader)
    completed = False
    try:
        model.train()
        for step in range(start, steps):
            batch = next(batches)
            failures += int(batch["failures"].sum())
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, Tensor)}
            optimizer.zero_grad(set_to_none=True)
            value = objective(train_model, batch)
            value.backward()
            optimizer.step()
            history.append(_mean_over_processes(value, world))
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.4g}")
            done = step + 1
            if main_process and sample_every and done % sample_every == 0:
                with torch.no_grad():
                    model.eval()
                    picture = preview(model, {k: v.to(device) for k, v in preview_batch.items()
                                              if isinstance(v, Tensor)})
                    model.train()
                save_image(picture, os.path.join(out_dir, "samples", f"step_{done:06d}.png"))
            if main_process and ((checkpoint_every and done % checkpoint_every == 0) or done == steps):
                checkpoint(done)
        if main_process and start == steps:
            checkpoint(steps)
        completed = True
    finally:
        bar.close()
        del batches
        if created_group:
            import torch.distributed as dist

            if completed:  # no process tears its group down while a peer still writes its checkpoint
                dist.barrier()
            dist.destroy_process_group()
    if failures:
        warnings.warn(f"{failures} image loads failed and were replaced by other images", RuntimeWarning, stacklevel=3)
    return {"checkpoint": checkpoint_path if main_process else None, "steps": steps, "history": history,
            "skipped_files": len(dataset.skipped), "failed_loads": failures, "model": model.eval()}


def _resolve_device(device: Optional[str]) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _build_loss(name: str, vgg_weights: Optional[str], seed: int, kwargs: Optional[dict]) -> nn.Module:
    from ..losses.factory import build_loss

    return build_loss(name, vgg_weights=vgg_weights, seed=seed, **(kwargs or {}))


# --------------------------------------------------------------------------- super-resolution

def train_sr(image_dir: Optional[str] = None, scale: int = 4, loss: str = "mse", *, model: str = "johnson",
             out_dir: str = "runs/sr", steps: int = 1000, batch_size: int = 8, image_size: int = 96,
             lr: float = 1e-3, loss_kwargs: Optional[dict] = None, vgg_weights: Optional[str] = None,
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
            applied as ``loss(sr, hr)``; ``loss_kwargs`` and ``vgg_weights`` go to ``build_loss``.
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
    device = _resolve_device(device)
    torch.manual_seed(seed)
    net = (SuperResolutionNet(scale, channels=channels, num_residual=num_residual, norm=norm, upsample=upsample,
                              residual=residual)
           if model == "johnson" else SRCNN(scale))
    dataset = ImageCrops(image_dir, image_size, samples=samples, seed=seed, scale=scale)
    loss_fn = _build_loss(loss, vgg_weights, seed, loss_kwargs)

    def objective(m, batch):
        return loss_fn(m(batch["lr"]), batch["image"])

    def preview(m, batch):
        return _grid([upsample_bicubic(batch["lr"], scale), m(batch["lr"]), batch["image"]])

    return _fit(task="sr", model=net, dataset=dataset, objective=objective, preview=preview, loss=loss_fn,
                config=config, out_dir=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                num_workers=num_workers, sample_every=sample_every, checkpoint_every=checkpoint_every, resume=resume,
                overwrite=overwrite, progress=progress, optimizer=optimizer)


# --------------------------------------------------------------------------- style transfer

def _style_tensor(style_image: Union[str, Tensor], size: int) -> Tensor:
    if isinstance(style_image, Tensor):
        _checks.rank(style_image, "style_image", (3,), "[3, H, W]")
        image = style_image.float()
    elif isinstance(style_image, str) and not os.path.exists(style_image) and style_image in DEFAULT_SAMPLES:
        image = sample_image(style_image, channels=3)
    else:
        image = load_image(style_image, channels=3)
    return center_resize(image, size)


def train_style(style_image: Union[str, Tensor], content_dir: Optional[str] = None, *,
                style_loss: str = "gram", content_loss: str = "vgg", style_weight: float = 5.0,
                content_weight: float = 1.0, tv_weight: float = 0.0, out_dir: str = "runs/style",
                steps: int = 2000, batch_size: int = 4, image_size: int = 256, lr: float = 1e-3,
                vgg_weights: Optional[str] = None, norm: str = "instance", upsample: str = "deconv",
                channels: int = 32, num_residual: int = 5, samples: Sequence[str] = DEFAULT_SAMPLES,
                seed: int = 0, device: Optional[str] = None, num_workers: int = 0, sample_every: int = 500,
                checkpoint_every: int = 500, resume: Optional[str] = None, overwrite: bool = False,
                progress: bool = True, optimizer: str = "adam") -> dict:
    """Train a :class:`StyleTransformNet` for one style (Johnson et al.'s fast style transfer).

    The objective on content crops ``x`` with output ``y = f(x)`` is
    ``content_weight·content_loss(y, x) + style_weight·style_loss(y, s) + tv_weight·TV(y)``, where
    ``s`` is the style image resized (centre square) to ``image_size`` and repeated over the batch.

    Args:
        style_image: path of the style image, a sample name (e.g. ``"brick"``) or a [3, H, W] tensor.
        content_dir: folder of content images; ``None`` uses scikit-image's samples.
        style_loss, content_loss: loss names of :data:`perceptual_ext.losses.factory.LOSSES`
            (Johnson: ``"gram"`` and ``"vgg"``; pass ``vgg_weights`` for a trained VGG16).
        style_weight, content_weight: the λ's of the two terms; tv_weight: total variation
            (Johnson used 1e-6..1e-4 of the image scale; 0 turns it off).
        Other arguments: as :func:`train_sr` (network options are :class:`StyleTransformNet`'s).

    Returns:
        as :func:`train_sr`.
    """
    for name, value in (("style_weight", style_weight), ("content_weight", content_weight)):
        _checks.positive_float(value, name)
    if isinstance(tv_weight, bool) or not isinstance(tv_weight, (int, float)) or not tv_weight >= 0:
        raise ValueError(f"tv_weight must be a number >= 0, got {tv_weight!r}")
    config = {k: v for k, v in locals().items() if isinstance(v, (str, int, float, bool, type(None)))}
    device = _resolve_device(device)
    torch.manual_seed(seed)
    net = StyleTransformNet(channels=channels, num_residual=num_residual, norm=norm, upsample=upsample)
    dataset = ImageCrops(content_dir, image_size, samples=samples, seed=seed)
    style = _style_tensor(style_image, image_size)
    style_fn = _build_loss(style_loss, vgg_weights, seed, None)
    content_fn = _build_loss(content_loss, vgg_weights, seed, None)
    terms = nn.ModuleList([style_fn, content_fn])
    tv_fn = None
    if tv_weight > 0:
        from ..losses.perceptual import TVLoss

        tv_fn = TVLoss()
        terms.append(tv_fn)
    style_on = {}

    def objective(m, batch):
        x = batch["image"]
        y = m(x)
        target = style_on.setdefault(x.device, style.to(x.device))
        value = content_weight * content_fn(y, x) + style_weight * style_fn(y, target.expand(len(y), -1, -1, -1))
        if tv_fn is not None:
            value = value + tv_weight * tv_fn(y)
        return value

    def preview(m, batch):
        return _grid([batch["image"], m(batch["image"])])

    return _fit(task="style", model=net, dataset=dataset, objective=objective, preview=preview, loss=terms,
                config=config, out_dir=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                num_workers=num_workers, sample_every=sample_every, checkpoint_every=checkpoint_every, resume=resume,
                overwrite=overwrite, progress=progress, optimizer=optimizer)


# --------------------------------------------------------------------------- inference

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
    if len(inputs) != len(outputs):
        raise ValueError(f"inputs and outputs must have the same length, got {len(inputs)} and {len(outputs)}")
    if not overwrite:
        existing = [p for p in outputs if os.path.exists(p)]
        if existing:
            raise FileExistsError(f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite to replace")
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


# --------------------------------------------------------------------------- evaluation

def _eval_images(image_dir: Optional[str], samples: Sequence[str], size: Optional[int], scale: int) -> List[Tuple[str, Tensor]]:
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

    device = _resolve_device(device)
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


def write_json(data: dict, path: str, overwrite: bool = False) -> str:
    """Write ``data`` as indented JSON atomically; an existing file needs ``overwrite``."""
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists (pass overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path
