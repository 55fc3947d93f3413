r"""Image-to-image GANs (seeds 000/001): pix2pix and CycleGAN trainers, and translation with them.

:func:`train_pix2pix` trains a :class:`~perceptual_ext.models.UNetGenerator` G against a
conditional :class:`~perceptual_ext.models.PatchDiscriminator` D on pairs (x, y):

.. math::
    G^* = \arg\min_G \max_D \; \mathcal{L}_{cGAN}(G, D) + \lambda_{L1} \, \mathbb{E}\lVert y - G(x) \rVert_1
    \;(+ \textstyle\sum_k w_k \, \ell_k(G(x), y))

:func:`train_cyclegan` trains two :class:`~perceptual_ext.models.ResnetGenerator`\ s G_A: A→B and
G_B: B→A and two PatchGANs (D_A judges domain B, D_B domain A, as in the reference) on unpaired
images with the least-squares GAN loss, the cycle-consistency loss
λ_cyc (‖G_B(G_A(a)) − a‖₁ + ‖G_A(G_B(b)) − b‖₁), the identity loss λ_idt·λ_cyc
(‖G_A(b) − b‖₁ + ‖G_B(a) − a‖₁) and an image pool of 50 generated images per discriminator.

Both follow the reference implementation (``junyanz/pytorch-CycleGAN-and-pix2pix``): Adam with
lr 2e-4 and betas (0.5, 0.999) for G and for D, the learning rate constant and then decayed
linearly towards 0 over the last ``decay_steps`` steps (``lr·(1 − max(0, t − t₀)/(decay_steps + 1))``,
t₀ = steps − decay_steps, the reference's ``linear`` policy counted in steps), D's loss halved,
and the order of the updates (pix2pix: D then G; CycleGAN: G then D). The L1, cycle and identity
distances are measured on the reference's [−1, 1] scale (twice the [0, 1] distance) so that the
λ's weigh the terms exactly as in the papers. ``extra_loss`` adds any loss of
:mod:`perceptual_ext.losses.factory` to G's objective, computed on [0, 1] images.

Recorded per step (``history``, averaged over processes): D's and G's losses, their terms, D's
accuracy on real and on generated patches (a logit above 0, or above ½ for ``lsgan``, means
"real"), and the learning rate. D's accuracy pinned at 1 with G's GAN loss climbing is a
collapse of G; both near ½ for long is a D that learns nothing.

Machinery shared with the other trainers: :mod:`.checkpoint` (atomic checkpoints with every
network, both optimizers, the image pools and the random states: exact resume on the CPU),
:mod:`.distributed` (DDP under torchrun; each process its slice of the global batch) and
:mod:`.loop` (the step-keyed data order, sample PNGs, the refusal to overwrite a run).
"""
from __future__ import annotations

import gc
import types
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .. import _checks
from ..losses.factory import LOSSES, build_loss
from ..losses.gan import GAN_MODES, gan_loss
from .checkpoint import CHECKPOINT_FORMAT, full_config, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import Process, mean_over_processes, process_group
from .image_pool import ImagePool
from .loop import OPTIMIZERS, check_options, preview_batch, refuse_overwrite, step_loader, write_sample

GAN_TASKS = ("pix2pix", "cyclegan")
#: Adam's betas in pix2pix and CycleGAN.
BETAS = (0.5, 0.999)


# --------------------------------------------------------------------------- options

def parse_extra_losses(spec: Union[None, str, Sequence]) -> List[Tuple[str, float]]:
    """``"vgg:1.0"``, ``["vgg:1", "mmd:0.5"]``, ``[("vgg", 1.0)]`` or ``{"vgg": 1.0}`` → [(name, weight)].

    Raises:
        ValueError: an unknown loss name, a missing or non-positive weight.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, dict):
        spec = list(spec.items())
    out = []
    for item in spec:
        if isinstance(item, str):
            name, sep, weight = item.partition(":")
            if not sep:
                raise ValueError(f"extra_loss must be NAME:WEIGHT (e.g. vgg:1.0), got {item!r}")
            try:
                weight = float(weight)
            except ValueError:
                raise ValueError(f"extra_loss weight must be a number, got {item!r}") from None
        else:
            name, weight = item
        name = name.strip()
        if name not in LOSSES:
            raise ValueError(f"extra_loss name must be one of {tuple(LOSSES)}, got {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 or weight == float("inf"):
            raise ValueError(f"extra_loss weight must be a positive number, got {weight!r} for {name}")
        out.append((name, float(weight)))
    return out


def build_extra_losses(extras: List[Tuple[str, float]], vgg_weights: Optional[str], lpips_weights: Optional[str],
                       seed: int) -> nn.ModuleList:
    """The loss modules of :func:`parse_extra_losses`' ``[(name, weight)]``, from the loss factory."""
    return nn.ModuleList([build_loss(name, vgg_weights=vgg_weights, lpips_weights=lpips_weights, seed=seed)
                          for name, _ in extras])


def _nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def lr_factor(step: int, steps: int, decay_steps: int) -> float:
    """The reference's linear policy in steps: 1 until ``steps − decay_steps``, then down by
    1/(decay_steps + 1) a step."""
    return 1.0 - max(0, step - (steps - decay_steps)) / float(decay_steps + 1)


def _threshold(mode: str) -> float:
    """The logit above which D says "real": ½ for lsgan's targets 1/0, else 0."""
    return 0.5 if mode == "lsgan" else 0.0


def _accuracy(pred: Tensor, real: bool, mode: str) -> Tensor:
    t = _threshold(mode)
    return ((pred > t) if real else (pred <= t)).float().mean()


def _distance(a: Tensor, b: Tensor) -> Tensor:
    """L1 on the reference's [−1, 1] scale: 2·mean|a − b| for images in [0, 1]."""
    return 2.0 * (a - b).abs().mean()


def _requires_grad(modules: Sequence[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class _Apply(nn.Module):
    """One module whose forward calls ``fn(*modules, *inputs)``: every use of the wrapped networks in
    one step is a single forward, as DistributedDataParallel requires (one forward per backward)."""

    def __init__(self, fn, **modules: nn.Module):
        super().__init__()
        self.fn = fn
        self.nets = nn.ModuleDict(modules)

    def forward(self, *inputs):
        return self.fn(self.nets, *inputs)


# --------------------------------------------------------------------------- the GAN loop

class _Run:
    """The state of one GAN run: networks, optimizers, pools, losses, history; its checkpoint."""

    def __init__(self, *, task: str, nets: Dict[str, nn.Module], groups: Dict[str, Sequence[str]], lr: float,
                 pools: Dict[str, ImagePool], extra: nn.ModuleList, config: dict, steps: int, decay_steps: int,
                 optimizer: str = "adam"):
        self.task, self.nets, self.groups, self.pools, self.extra = task, nets, groups, pools, extra
        self.config, self.steps, self.decay_steps, self.lr = config, steps, decay_steps, lr
        options = {"betas": BETAS} if optimizer == "adam" else {}
        self.optimizers = {name: OPTIMIZERS[optimizer]([p for n in members for p in nets[n].parameters()], lr=lr,
                                                       **options)
                           for name, members in groups.items()}
        self.start, self.history, self.failures, self.seed = 0, {}, 0, config["seed"]

    def set_lr(self, step: int) -> float:
        value = self.lr * lr_factor(step, self.steps, self.decay_steps)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = value
        return value

    def record(self, values: Dict[str, Tensor], world: int, lr: float) -> Dict[str, float]:
        """Append this step's values, each averaged over processes, and the learning rate."""
        row = {k: mean_over_processes(v.detach().float(), world) for k, v in values.items()}
        row["lr"] = lr
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)
        return row

    def state(self, step: int, process: Process, dataset) -> dict:
        main = self.groups["G"][0]
        return {
            "format": CHECKPOINT_FORMAT, "task": self.task, "step": step,
            "model": {"class": type(self.nets[main]).__name__, "config": dict(self.nets[main].config)},
            "state_dict": self.nets[main].state_dict(),
            "networks": {n: {"class": type(m).__name__, "config": dict(m.config), "state_dict": m.state_dict()}
                         for n, m in self.nets.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "pools": {n: p.state_dict() for n, p in self.pools.items()},
            "rng": rng_state(self.extra), "data_seed": self.seed,
            "global_batch": self.config["batch_size"] * process.world,
            "history": self.history, "failures": self.failures, "lr_schedule": {"steps": self.steps,
                                                                               "decay_steps": self.decay_steps},
            "skipped_files": [path for path, _ in dataset.skipped], "train_config": self.config,
        }

    def restore(self, path: str, process: Process) -> None:
        state = load_checkpoint(path, map_location=process.device)
        if state["task"] != self.task:
            raise ValueError(f"resume checkpoint {path} is a {state['task']!r} run, not {self.task!r}")
        missing = [k for k in ("networks", "optimizers", "pools", "rng", "history", "global_batch", "lr_schedule",
                               "data_seed", "failures") if k not in state]
        if missing:
            raise ValueError(f"resume checkpoint {path} has no {', '.join(map(repr, missing))} entry (damaged or "
                             "not written by the GAN trainers)")
        for name, net in self.nets.items():
            saved = state["networks"][name]
            if full_config(type(net), saved["config"]) != net.config or saved["class"] != type(net).__name__:
                raise ValueError(f"resume checkpoint {path} has {name} = {saved['class']}({saved['config']}), "
                                 f"this run builds {type(net).__name__}({net.config})")
        if state["global_batch"] != self.config["batch_size"] * process.world:
            warnings.warn(f"resuming with global batch {self.config['batch_size'] * process.world} instead of "
                          f"{state['global_batch']}: the data order will differ from an uninterrupted run",
                          RuntimeWarning, stacklevel=4)
        if state["step"] > self.steps:
            raise ValueError(f"resume checkpoint is at step {state['step']}, beyond steps={self.steps}")
        if state["lr_schedule"] != {"steps": self.steps, "decay_steps": self.decay_steps}:
            warnings.warn(f"resuming with the learning-rate schedule steps={self.steps}, "
                          f"decay_steps={self.decay_steps} "
                          f"instead of {state['lr_schedule']}: the run will differ from an uninterrupted one",
                          RuntimeWarning, stacklevel=4)
        for name, net in self.nets.items():
            net.load_state_dict(state["networks"][name]["state_dict"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, pool in self.pools.items():
            pool.load_state_dict(state["pools"][name])
        set_rng_state(state["rng"], self.extra)
        self.start, self.history, self.failures = state["step"], {k: list(v) for k, v in state["history"].items()}, \
            state["failures"]
        self.seed = state["data_seed"]


def _fit_gan(run: _Run, *, dataset, train_step, preview, out_dir: str, batch_size: int, device, num_workers: int,
             sample_every: int, checkpoint_every: int, resume: Optional[str], overwrite: bool, progress: bool) -> dict:
    checkpoint_path = refuse_overwrite(out_dir, resume, overwrite)
    with process_group(_checks.device(device)) as process:
        for net in run.nets.values():
            net.to(process.device)
        run.extra.to(process.device)
        if resume is not None:
            run.restore(resume, process)
        wrapped = train_step.wrap(process)
        batches = step_loader(dataset, batch_size, process, run.seed, run.start, num_workers)
        try:
            _gan_steps(run, wrapped, batches, train_step, preview, dataset, process, out_dir=out_dir,
                       sample_every=sample_every, checkpoint_every=checkpoint_every, checkpoint_path=checkpoint_path,
                       progress=progress)
        finally:
            # the DDP wrappers and the loader go before the process group does (a reducer that outlives
            # its group can hang the process at exit)
            del wrapped, batches
            gc.collect()
    if run.failures:
        warnings.warn(f"{run.failures} image loads failed and were replaced by other images", RuntimeWarning,
                      stacklevel=3)
    for net in run.nets.values():
        net.eval()
    return {"checkpoint": checkpoint_path if process.main else None, "steps": run.steps, "history": run.history,
            "skipped_files": len(dataset.skipped), "failed_loads": run.failures, "networks": run.nets,
            "model": run.nets[run.groups["G"][0]]}


def _gan_steps(run: _Run, wrapped, batches, train_step, preview, dataset, process: Process, *, out_dir: str,
               sample_every: int, checkpoint_every: int, checkpoint_path: str, progress: bool) -> None:
    """Steps ``run.start`` .. ``run.steps``: update, record, write samples and checkpoints (rank 0)."""
    from tqdm.auto import tqdm

    shown = preview_batch(dataset)
    all_nets = nn.ModuleDict(run.nets)  # samples are drawn with every network in eval mode
    with tqdm(total=run.steps, initial=run.start, desc=f"train-{run.task}", disable=not (progress and process.main),
              dynamic_ncols=True) as bar:
        for net in run.nets.values():
            net.train()
        for step in range(run.start, run.steps):
            batch = next(batches)
            run.failures += int(batch["failures"].sum())
            batch = {k: v.to(process.device, non_blocking=True) for k, v in batch.items() if isinstance(v, Tensor)}
            lr = run.set_lr(step)
            row = run.record(train_step(wrapped, batch), process.world, lr)
            bar.update(1)
            bar.set_postfix(D=f"{row['loss_D']:.3g}", G=f"{row['loss_G']:.3g}",
                            acc=f"{row['D_real_acc']:.2f}/{row['D_fake_acc']:.2f}")
            done = step + 1
            if process.main and sample_every and done % sample_every == 0:
                write_sample(all_nets, lambda _m, b: preview(run.nets, b), shown, process.device, out_dir, done)
            if process.main and ((checkpoint_every and done % checkpoint_every == 0) or done == run.steps):
                save_checkpoint(run.state(done, process, dataset), checkpoint_path)
        if process.main and run.start == run.steps:
            save_checkpoint(run.state(run.steps, process, dataset), checkpoint_path)


def _extra_terms(extra: nn.ModuleList, weights: Sequence[float], fake: Tensor, target: Tensor) -> Tensor:
    total = fake.new_zeros(())
    for loss, weight in zip(extra, weights):
        total = total + weight * loss(fake, target)
    return total


def _common_checks(steps, batch_size, lr, decay_steps, num_workers, sample_every, checkpoint_every, gan_mode,
                   optimizer) -> int:
    check_options(steps, batch_size, lr, num_workers, sample_every, checkpoint_every, optimizer)
    _checks.choice(gan_mode, "gan_mode", GAN_MODES)
    if decay_steps is None:
        return steps // 2
    _checks.positive_int(decay_steps, "decay_steps", minimum=0)
    if decay_steps > steps:
        raise ValueError(f"decay_steps must be <= steps, got decay_steps={decay_steps}, steps={steps}")
    return decay_steps


def _d_loss(pred_real: Tensor, pred_fake: Tensor, mode: str) -> Tensor:
    return 0.5 * (gan_loss(pred_real, True, mode, for_discriminator=True) +
                  gan_loss(pred_fake, False, mode, for_discriminator=True))


# --------------------------------------------------------------------------- pix2pix


def _batch_statistics(self, x: Tensor) -> Tensor:
    """A batch-norm layer's forward with the batch's own statistics; running averages untouched."""
    return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class PaperInference(nn.Module):
    """pix2pix's inference rule for batch norm: each image normalized with its own statistics.

    Isola et al. run G at test time "in exactly the same manner as during the training phase":
    batch norm with the statistics of the test batch, batch size 1 ("instance normalization"),
    not the running averages. This wrapper runs ``net`` in eval mode, image by image, with every
    batch-norm layer (SyncBatchNorm included, which then does not synchronize) computing its
    image's statistics and leaving its running averages untouched; dropout is off (a
    deterministic output; the paper keeps it on). Networks without batch norm run unchanged.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def forward(self, x: Tensor) -> Tensor:
        if not self.norms:
            return self.net(x)
        was_training = self.net.training
        self.net.eval()
        try:
            for m in self.norms:
                m.forward = types.MethodType(_batch_statistics, m)
            return torch.cat([self.net(image[None]) for image in x]) if len(x) else self.net(x)
        finally:
            for m in self.norms:
                m.__dict__.pop("forward", None)
            self.net.train(was_training)


__all__ = ["parse_extra_losses", "lr_factor", "PaperInference", "GAN_TASKS"]
