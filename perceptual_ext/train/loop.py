"""The fit loop shared by the feed-forward trainers (style transfer, super-resolution, colorization).

:func:`fit` trains one model on an objective over random crops: Adam (or SGD), a tqdm bar, sample
PNGs, atomic checkpoints (:mod:`.checkpoint`), exact resume and DDP under torchrun
(:mod:`.distributed`). The data of step ``t`` is a pure function of (seed, t) (see
:class:`~perceptual_ext.data.StepSampler`), so ``steps=N`` in one run and ``N/2`` then ``resume=``
to ``N`` give identical weights on the CPU.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import _checks
from ..data.datasets import StepSampler
from ..data.images import save_image
from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, full_config, load_checkpoint, rng_state, save_checkpoint, \
    set_rng_state
from .distributed import Process, mean_over_processes, process_group, wrap

#: optimizer name -> class (Johnson et al. train with Adam; plain SGD is there for exact comparisons).
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def grid(rows: Sequence[Tensor]) -> Tensor:
    """Rows of equally sized [N, 3, H, W] batches -> one [3, rows·H, N·W] picture."""
    return torch.cat([torch.cat(list(r.clamp(0, 1)), dim=-1) for r in rows], dim=-2)


def refuse_overwrite(out_dir: str, resume: Optional[str], overwrite: bool) -> str:
    """The checkpoint path of a run in ``out_dir``; an existing one needs ``resume`` or ``overwrite``."""
    path = os.path.join(out_dir, CHECKPOINT_NAME)
    if resume is None and not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists: pass resume= to continue it or overwrite=True")
    return path


def step_loader(dataset, batch_size: int, process: Process, seed: int, start: int, num_workers: int):
    """An endless iterator over this process's batches, from step ``start`` on (see StepSampler)."""
    sampler = StepSampler(len(dataset), batch_size, rank=process.rank, world_size=process.world, seed=seed,
                          start_step=start)
    return iter(torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                            pin_memory=process.device.type == "cuda"))


def preview_batch(dataset, count: int = 4) -> Dict[str, Tensor]:
    """``count`` fixed crops (distinct even for a one-image dataset), shown in every sample PNG."""
    items = [dataset[(i % len(dataset), i // len(dataset))] for i in range(count)]
    return {k: v for k, v in torch.utils.data.default_collate(items).items() if isinstance(v, Tensor)}


def check_options(steps, batch_size, lr, num_workers, sample_every, checkpoint_every, optimizer) -> None:
    """The loop options every trainer takes, checked before any work."""
    _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(lr, "lr")
    _checks.positive_int(num_workers, "num_workers", minimum=0)
    _checks.positive_int(sample_every, "sample_every", minimum=0)
    _checks.positive_int(checkpoint_every, "checkpoint_every", minimum=0)
    _checks.choice(optimizer, "optimizer", OPTIMIZERS)


def _restore(resume: str, *, task: str, model: nn.Module, optimizer, loss: nn.Module, steps: int,
             global_batch: int, device) -> dict:
    """Load ``resume`` into the model, optimizer and random states; its step, history and data seed."""
    state = load_checkpoint(resume, map_location=device)
    if state["task"] != task:
        raise ValueError(f"resume checkpoint {resume} is a {state['task']!r} run, not {task!r}")
    if full_config(type(model), state["model"]["config"]) != model.config:
        raise ValueError(f"resume checkpoint {resume} has model config {state['model']['config']}, "
                         f"this run builds {model.config}")
    if state["global_batch"] != global_batch:
        warnings.warn(f"resuming with global batch {global_batch} instead of {state['global_batch']}: "
                      "the data order will differ from an uninterrupted run", RuntimeWarning, stacklevel=4)
    if state["step"] > steps:
        raise ValueError(f"resume checkpoint is at step {state['step']}, beyond steps={steps}")
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"], loss)
    return state


def fit(*, task: str, model: nn.Module, dataset, objective: Callable[[nn.Module, dict], Tensor],
        preview: Callable[[nn.Module, dict], Tensor], loss: nn.Module, config: dict, out_dir: str, steps: int,
        batch_size: int, lr: float, seed: int, device, num_workers: int, sample_every: int, checkpoint_every: int,
        resume: Optional[str], overwrite: bool, progress: bool, optimizer: str = "adam") -> dict:
    """Train ``model`` to minimize ``objective(model, batch)`` over ``dataset``'s crops.

    Returns:
        dict with ``checkpoint`` (path, rank 0; else None), ``steps``, ``history`` (loss per step,
        averaged over processes), ``skipped_files``, ``failed_loads`` and ``model`` (eval mode).
    """
    check_options(steps, batch_size, lr, num_workers, sample_every, checkpoint_every, optimizer)
    checkpoint_path = refuse_overwrite(out_dir, resume, overwrite)
    with process_group(_checks.device(device)) as process:
        model.to(process.device)
        loss.to(process.device)
        opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr)
        run = {"start": 0, "history": [], "failures": 0, "seed": seed}
        if resume is not None:
            state = _restore(resume, task=task, model=model, optimizer=opt, loss=loss, steps=steps,
                             global_batch=batch_size * process.world, device=process.device)
            run.update(start=state["step"], history=list(state["history"]), failures=state["failures"],
                       seed=state["data_seed"])

        def checkpoint(step: int) -> None:
            save_checkpoint({
                "format": CHECKPOINT_FORMAT, "task": task, "step": step,
                "model": {"class": type(model).__name__, "config": dict(model.config)},
                "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(loss),
                "data_seed": run["seed"], "global_batch": batch_size * process.world, "history": run["history"],
                "failures": run["failures"], "skipped_files": [path for path, _ in dataset.skipped],
                "train_config": config,
            }, checkpoint_path)

        batches = step_loader(dataset, batch_size, process, run["seed"], run["start"], num_workers)
        _train_steps(task, wrap(model, process), model, opt, objective, preview, batches, preview_batch(dataset),
                     process, run, steps=steps, out_dir=out_dir, sample_every=sample_every,
                     checkpoint_every=checkpoint_every, checkpoint=checkpoint, progress=progress)
    if run["failures"]:
        warnings.warn(f"{run['failures']} image loads failed and were replaced by other images", RuntimeWarning,
                      stacklevel=3)
    return {"checkpoint": checkpoint_path if process.main else None, "steps": steps, "history": run["history"],
            "skipped_files": len(dataset.skipped), "failed_loads": run["failures"], "model": model.eval()}


def _train_steps(task, train_model, model, opt, objective, preview, batches, shown, process, run, *, steps, out_dir,
                 sample_every, checkpoint_every, checkpoint, progress) -> None:
    """Steps ``run["start"]`` .. ``steps``: optimize, record the loss, write samples and checkpoints."""
    from tqdm.auto import tqdm

    start, history = run["start"], run["history"]
    with tqdm(total=steps, initial=start, desc=f"train-{task}", disable=not (progress and process.main),
              dynamic_ncols=True) as bar:
        model.train()
        for step in range(start, steps):
            batch = next(batches)
            run["failures"] += int(batch["failures"].sum())
            batch = {k: v.to(process.device, non_blocking=True) for k, v in batch.items() if isinstance(v, Tensor)}
            opt.zero_grad(set_to_none=True)
            value = objective(train_model, batch)
            value.backward()
            opt.step()
            history.append(mean_over_processes(value, process.world))
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.4g}")
            done = step + 1
            if process.main and sample_every and done % sample_every == 0:
                write_sample(model, preview, shown, process.device, out_dir, done)
            if process.main and ((checkpoint_every and done % checkpoint_every == 0) or done == steps):
                checkpoint(done)
        if process.main and start == steps:
            checkpoint(steps)


def write_sample(model: nn.Module, preview: Callable[[nn.Module, dict], Tensor], shown: Dict[str, Tensor], device,
                 out_dir: str, step: int) -> str:
    """``preview(model, shown)`` in eval mode, as ``out_dir/samples/step_<step>.png``."""
    with torch.no_grad():
        model.eval()
        picture = preview(model, {k: v.to(device) for k, v in shown.items()})
        model.train()
    return save_image(picture, os.path.join(out_dir, "samples", f"step_{step:06d}.png"))
