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
from ..data.pairs import DIRECTIONS, SAMPLE_PAIR_KINDS, PairedImages, UnpairedImages, split_aligned
from ..losses.factory import LOSSES, build_loss
from ..losses.gan import GAN_MODES, gan_loss, gradient_penalty
from ..models.gan import GAN_MODELS, PatchDiscriminator, ResnetGenerator, UNetGenerator
from .checkpoint import CHECKPOINT_FORMAT, full_config, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import Process, mean_over_processes, process_group, wrap
from .image_pool import ImagePool
from .loop import OPTIMIZERS, grid, preview_batch, refuse_overwrite, step_loader, write_sample

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
    _checks.choice(optimizer, "optimizer", OPTIMIZERS)
    _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    _checks.positive_float(lr, "lr")
    _checks.positive_int(num_workers, "num_workers", minimum=0)
    _checks.positive_int(sample_every, "sample_every", minimum=0)
    _checks.positive_int(checkpoint_every, "checkpoint_every", minimum=0)
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

class _Pix2PixStep:
    def __init__(self, G, D, run: _Run, mode: str, lambda_l1: float, extra_weights, gp_weight: float):
        self.G, self.D, self.run, self.mode = G, D, run, mode
        self.lambda_l1, self.extra_weights, self.gp_weight = lambda_l1, extra_weights, gp_weight

    def wrap(self, process: Process):
        mode, gp_weight = self.mode, self.gp_weight

        def d_scores(nets, real_ab, fake_ab):
            d = nets["D"]
            pred_real, pred_fake = d(real_ab), d(fake_ab)
            gp = gradient_penalty(d, real_ab, fake_ab, gp_weight) if mode == "wgangp" else pred_real.new_zeros(())
            return pred_real, pred_fake, gp

        return {"G": wrap(self.G, process), "D": wrap(_Apply(d_scores, D=self.D), process)}

    def __call__(self, wrapped, batch) -> Dict[str, Tensor]:
        real_a, real_b = batch["A"], batch["B"]
        opt_g, opt_d = self.run.optimizers["G"], self.run.optimizers["D"]
        fake_b = wrapped["G"](real_a)
        # D: real pairs vs generated pairs (the generator's output detached)
        _requires_grad([self.D], True)
        opt_d.zero_grad(set_to_none=True)
        real_ab = torch.cat([real_a, real_b], 1)
        pred_real, pred_fake, gp = wrapped["D"](real_ab, torch.cat([real_a, fake_b.detach()], 1))
        loss_d = _d_loss(pred_real, pred_fake, self.mode) + gp
        loss_d.backward()
        opt_d.step()
        # G: fool D (D frozen, called without its DDP wrapper) + λ·L1 (+ extra losses)
        _requires_grad([self.D], False)
        opt_g.zero_grad(set_to_none=True)
        loss_gan = gan_loss(self.D(torch.cat([real_a, fake_b], 1)), True, self.mode)
        loss_l1 = _distance(fake_b, real_b)
        loss_extra = _extra_terms(self.run.extra, self.extra_weights, fake_b, real_b)
        loss_g = loss_gan + self.lambda_l1 * loss_l1 + loss_extra
        loss_g.backward()
        opt_g.step()
        _requires_grad([self.D], True)
        return {"loss_D": loss_d, "loss_G": loss_g, "loss_G_GAN": loss_gan, "loss_G_L1": loss_l1 / 2,
                "loss_G_extra": loss_extra, "loss_D_GP": gp, "D_real_acc": _accuracy(pred_real, True, self.mode),
                "D_fake_acc": _accuracy(pred_fake, False, self.mode)}


def train_pix2pix(data_dir: Optional[str] = None, data_dir_b: Optional[str] = None, *, direction: str = "AtoB",
                  builtin: str = "edges", out_dir: str = "runs/pix2pix", steps: int = 2000,
                  decay_steps: Optional[int] = None, batch_size: int = 1, load_size: Optional[int] = 286,
                  crop_size: int = 256, flip: bool = True, lr: float = 2e-4, lambda_l1: float = 100.0,
                  gan_mode: str = "vanilla", gp_weight: float = 10.0, extra_loss=None,
                  vgg_weights: Optional[str] = None, ngf: int = 64, ndf: int = 64, num_downs: Optional[int] = None,
                  n_layers_d: int = 3, norm: str = "batch", dropout: bool = True, seed: int = 0,
                  device: Optional[str] = None, num_workers: int = 0, sample_every: int = 500,
                  checkpoint_every: int = 500, resume: Optional[str] = None, overwrite: bool = False,
                  progress: bool = True, optimizer: str = "adam") -> dict:
    r"""Train pix2pix (Isola et al. 2017): a U-Net G and a 70×70 PatchGAN D on paired images.

    Args:
        data_dir: aligned A|B images, or the A folder with ``data_dir_b``; ``None`` uses the
            built-in set (:func:`~perceptual_ext.data.sample_pairs` of kind ``builtin``: ``"edges"``
            → photo or ``"grey"`` → colour), offline.
        data_dir_b: the B folder (files pair with ``data_dir``'s by name).
        direction: ``"AtoB"`` (translate A into B) or ``"BtoA"``.
        out_dir: ``checkpoint.pt`` and ``samples/step_*.png`` (rows: input, G(input), target) go here.
        steps: total steps; decay_steps: the last steps over which the learning rate decays
            linearly (default ``steps // 2``, the reference's 100 + 100 epochs).
        batch_size: pairs per step and process (pix2pix: 1).
        load_size, crop_size, flip: random jitter (resize to load_size², random crop_size² crop,
            flip); ``load_size=None`` crops the images at their size.
        lr: Adam's learning rate for G and D (betas (0.5, 0.999)).
        lambda_l1: λ of the L1 term (100).
        gan_mode: ``"vanilla"`` (pix2pix), ``"lsgan"``, ``"hinge"`` or ``"wgangp"`` (adds the gradient
            penalty with weight ``gp_weight`` to D's loss).
        extra_loss: losses of :data:`~perceptual_ext.losses.factory.LOSSES` added to G's objective,
            ``"vgg:1.0"`` or a list of ``NAME:WEIGHT`` (``vgg_weights``: a VGG16 file for vgg/gram).
        ngf, ndf, num_downs, n_layers_d, norm, dropout: the networks' options; ``num_downs``
            defaults to ``log2(crop_size)`` (8 for 256², the U-Net's 1×1 bottleneck).
        seed: initialisation, data order and jitter, extra losses' random features.
        device, num_workers, sample_every, checkpoint_every, resume, overwrite, progress: as
            :func:`~perceptual_ext.train.train_sr`.
        optimizer: ``"adam"`` (pix2pix's, betas (0.5, 0.999)) or ``"sgd"`` (plain SGD, for exact
            comparisons such as DDP against one process).

    Returns:
        dict with ``checkpoint`` (path, rank 0), ``history`` (dict of per-step lists: ``loss_D``,
        ``loss_G``, ``loss_G_GAN``, ``loss_G_L1`` (mean |G(x) − y| on [0, 1]), ``loss_G_extra``,
        ``loss_D_GP``, ``D_real_acc``, ``D_fake_acc``, ``lr``), ``networks`` ({"G", "D"}, eval
        mode), ``model`` (G), ``skipped_files``, ``failed_loads``.

    Example:
        >>> result = train_pix2pix(steps=2, crop_size=64, load_size=72, ngf=8, ndf=8, builtin="grey",
        ...                        out_dir="/tmp/p2p-doc", overwrite=True, progress=False, device="cpu")
    """
    decay_steps = _common_checks(steps, batch_size, lr, decay_steps, num_workers, sample_every, checkpoint_every,
                                 gan_mode, optimizer)
    _nonnegative(lambda_l1, "lambda_l1")
    _nonnegative(gp_weight, "gp_weight")
    _checks.choice(direction, "direction", DIRECTIONS)
    _checks.choice(builtin, "builtin", SAMPLE_PAIR_KINDS)
    extras = parse_extra_losses(extra_loss)
    _checks.positive_int(crop_size, "crop_size", minimum=32)
    if num_downs is None:  # the deepest U-Net the crop allows, up to pix2pix's 8 (256² → 1×1)
        num_downs = min(8, (crop_size & -crop_size).bit_length() - 1)
    _checks.positive_int(num_downs, "num_downs", minimum=5)
    if crop_size % 2 ** num_downs:
        raise ValueError(f"crop_size must be a multiple of 2**num_downs = {2 ** num_downs} (32 at least), "
                         f"got {crop_size}")
    config = {k: v for k, v in locals().items() if isinstance(v, (str, int, float, bool, type(None)))}
    config["extra_loss"] = [f"{n}:{w}" for n, w in extras]
    torch.manual_seed(seed)
    G = UNetGenerator(3, 3, num_downs=num_downs, ngf=ngf, norm=norm, dropout=dropout)
    D = PatchDiscriminator(6, ndf=ndf, n_layers=n_layers_d, norm=norm)
    dataset = PairedImages(data_dir, data_dir_b, load_size=load_size, crop_size=crop_size, flip=flip,
                           direction=direction, seed=seed, builtin=builtin)
    extra = nn.ModuleList([build_loss(n, vgg_weights=vgg_weights, seed=seed) for n, _ in extras])
    run = _Run(task="pix2pix", nets={"G": G, "D": D}, groups={"G": ["G"], "D": ["D"]}, lr=lr, pools={}, extra=extra,
               config=config, steps=steps, decay_steps=decay_steps, optimizer=optimizer)
    step = _Pix2PixStep(G, D, run, gan_mode, lambda_l1, [w for _, w in extras], gp_weight)

    def preview(nets, batch):
        return grid([batch["A"], PaperInference(nets["G"])(batch["A"]), batch["B"]])

    return _fit_gan(run, dataset=dataset, train_step=step, preview=preview, out_dir=out_dir, batch_size=batch_size,
                    device=device, num_workers=num_workers, sample_every=sample_every,
                    checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=progress)


# --------------------------------------------------------------------------- CycleGAN

def _generators(nets, real_a, real_b, identity: bool):
    fake_b = nets["G_A"](real_a)
    fake_a = nets["G_B"](real_b)
    rec_a, rec_b = nets["G_B"](fake_b), nets["G_A"](fake_a)
    idt_a = nets["G_A"](real_b) if identity else None
    idt_b = nets["G_B"](real_a) if identity else None
    return fake_a, fake_b, rec_a, rec_b, idt_a, idt_b


class _CycleStep:
    def __init__(self, run: _Run, mode: str, lambda_cycle: float, lambda_identity: float, extra_weights,
                 gp_weight: float):
        self.run, self.mode, self.lambda_cycle, self.lambda_identity = run, mode, lambda_cycle, lambda_identity
        self.extra_weights, self.gp_weight = extra_weights, gp_weight

    def wrap(self, process: Process):
        nets, mode, gp_weight, identity = self.run.nets, self.mode, self.gp_weight, self.lambda_identity > 0

        def generators(n, real_a, real_b):
            return _generators(n, real_a, real_b, identity)

        def discriminators(n, real_a, real_b, fake_a, fake_b):
            scores = (n["D_A"](real_b), n["D_A"](fake_b), n["D_B"](real_a), n["D_B"](fake_a))
            if mode == "wgangp":
                gp = gradient_penalty(n["D_A"], real_b, fake_b, gp_weight) + gradient_penalty(n["D_B"], real_a, fake_a,
                                                                                            gp_weight)
            else:
                gp = real_a.new_zeros(())
            return scores + (gp,)

        return {"G": wrap(_Apply(generators, G_A=nets["G_A"], G_B=nets["G_B"]), process),
                "D": wrap(_Apply(discriminators, D_A=nets["D_A"], D_B=nets["D_B"]), process)}

    def __call__(self, wrapped, batch) -> Dict[str, Tensor]:
        nets, run, mode = self.run.nets, self.run, self.mode
        real_a, real_b = batch["A"], batch["B"]
        ds = [nets["D_A"], nets["D_B"]]
        # G_A and G_B: fool both Ds (frozen), cycle consistency, identity
        _requires_grad(ds, False)
        run.optimizers["G"].zero_grad(set_to_none=True)
        fake_a, fake_b, rec_a, rec_b, idt_a, idt_b = wrapped["G"](real_a, real_b)
        loss_gan = gan_loss(nets["D_A"](fake_b), True, mode) + gan_loss(nets["D_B"](fake_a), True, mode)
        loss_cycle = _distance(rec_a, real_a) + _distance(rec_b, real_b)
        loss_idt = (_distance(idt_a, real_b) + _distance(idt_b, real_a)) if idt_a is not None else real_a.new_zeros(())
        loss_extra = (_extra_terms(run.extra, self.extra_weights, rec_a, real_a) +
                      _extra_terms(run.extra, self.extra_weights, rec_b, real_b))
        loss_g = (loss_gan + self.lambda_cycle * loss_cycle + self.lambda_cycle * self.lambda_identity * loss_idt +
                  loss_extra)
        loss_g.backward()
        run.optimizers["G"].step()
        # D_A (domain B) and D_B (domain A) on real images and on pooled generated ones
        _requires_grad(ds, True)
        run.optimizers["D"].zero_grad(set_to_none=True)
        pooled_b, pooled_a = run.pools["B"].query(fake_b.detach()), run.pools["A"].query(fake_a.detach())
        real_b_score, fake_b_score, real_a_score, fake_a_score, gp = wrapped["D"](real_a, real_b, pooled_a, pooled_b)
        loss_d_a = _d_loss(real_b_score, fake_b_score, mode)
        loss_d_b = _d_loss(real_a_score, fake_a_score, mode)
        loss_d = loss_d_a + loss_d_b + gp
        loss_d.backward()
        run.optimizers["D"].step()
        acc_real = 0.5 * (_accuracy(real_b_score, True, mode) + _accuracy(real_a_score, True, mode))
        acc_fake = 0.5 * (_accuracy(fake_b_score, False, mode) + _accuracy(fake_a_score, False, mode))
        return {"loss_D": loss_d, "loss_D_A": loss_d_a, "loss_D_B": loss_d_b, "loss_D_GP": gp, "loss_G": loss_g,
                "loss_G_GAN": loss_gan, "loss_cycle": loss_cycle / 2, "loss_idt": loss_idt / 2,
                "loss_G_extra": loss_extra, "D_real_acc": acc_real, "D_fake_acc": acc_fake}


def train_cyclegan(data_dir_a: Optional[str] = None, data_dir_b: Optional[str] = None, *, builtin: str = "edges",
                   out_dir: str = "runs/cyclegan", steps: int = 2000, decay_steps: Optional[int] = None,
                   batch_size: int = 1, load_size: Optional[int] = 286, crop_size: int = 256, flip: bool = True,
                   lr: float = 2e-4, lambda_cycle: float = 10.0, lambda_identity: float = 0.5,
                   gan_mode: str = "lsgan", gp_weight: float = 10.0, pool_size: int = 50, extra_loss=None,
                   vgg_weights: Optional[str] = None, ngf: int = 64, ndf: int = 64, n_blocks: int = 9,
                   n_layers_d: int = 3, norm: str = "instance", seed: int = 0, device: Optional[str] = None,
                   num_workers: int = 0, sample_every: int = 500, checkpoint_every: int = 500,
                   resume: Optional[str] = None, overwrite: bool = False, progress: bool = True,
                   optimizer: str = "adam") -> dict:
    r"""Train CycleGAN (Zhu et al. 2017): G_A: A→B, G_B: B→A (ResNet generators) and two PatchGANs.

    G's objective: LSGAN losses against D_A(G_A(a)) and D_B(G_B(b)) +
    λ_cycle (‖G_B(G_A(a)) − a‖₁ + ‖G_A(G_B(b)) − b‖₁) + λ_cycle·λ_identity (‖G_A(b) − b‖₁ + ‖G_B(a) − a‖₁)
    (+ extra losses on the reconstructions vs the inputs); each D is trained on real images and on
    generated ones drawn through an :class:`~perceptual_ext.train.ImagePool` of ``pool_size``.

    Args:
        data_dir_a, data_dir_b: the two domains' folders (unpaired); both ``None`` uses the
            built-in set (``builtin`` kind) with its pairing ignored.
        lambda_cycle: λ of the cycle loss (10); lambda_identity: the identity loss's weight
            relative to it (0.5; 0 turns it off).
        gan_mode: ``"lsgan"`` (CycleGAN), ``"vanilla"``, ``"hinge"`` or ``"wgangp"``.
        pool_size: generated images kept per D (50; 0: none).
        ngf, ndf, n_blocks, n_layers_d, norm: the networks' options (9 residual blocks for 256²).
        extra_loss: as :func:`train_pix2pix`, applied to the reconstructions (rec_A vs A, rec_B vs B).
        Other arguments: as :func:`train_pix2pix`.

    Returns:
        as :func:`train_pix2pix`, with ``networks`` {"G_A", "G_B", "D_A", "D_B"}, ``model`` G_A and
        the history's ``loss_D_A``, ``loss_D_B``, ``loss_cycle``, ``loss_idt`` (mean L1 on [0, 1]).
    """
    decay_steps = _common_checks(steps, batch_size, lr, decay_steps, num_workers, sample_every, checkpoint_every,
                                 gan_mode, optimizer)
    _nonnegative(lambda_cycle, "lambda_cycle")
    _nonnegative(lambda_identity, "lambda_identity")
    _nonnegative(gp_weight, "gp_weight")
    _checks.positive_int(pool_size, "pool_size", minimum=0)
    _checks.choice(builtin, "builtin", SAMPLE_PAIR_KINDS)
    if isinstance(crop_size, int) and crop_size % 4:
        raise ValueError("crop_size must be a multiple of 4 (the ResNet generator's two downsamplings), "
                         f"got {crop_size}")
    extras = parse_extra_losses(extra_loss)
    config = {k: v for k, v in locals().items() if isinstance(v, (str, int, float, bool, type(None)))}
    config["extra_loss"] = [f"{n}:{w}" for n, w in extras]
    torch.manual_seed(seed)
    nets = {"G_A": ResnetGenerator(3, 3, ngf=ngf, n_blocks=n_blocks, norm=norm),
            "G_B": ResnetGenerator(3, 3, ngf=ngf, n_blocks=n_blocks, norm=norm),
            "D_A": PatchDiscriminator(3, ndf=ndf, n_layers=n_layers_d, norm=norm),
            "D_B": PatchDiscriminator(3, ndf=ndf, n_layers=n_layers_d, norm=norm)}
    dataset = UnpairedImages(data_dir_a, data_dir_b, load_size=load_size, crop_size=crop_size, flip=flip, seed=seed,
                             builtin=builtin)
    extra = nn.ModuleList([build_loss(n, vgg_weights=vgg_weights, seed=seed) for n, _ in extras])
    pools = {"A": ImagePool(pool_size, seed=seed), "B": ImagePool(pool_size, seed=seed + 1)}
    run = _Run(task="cyclegan", nets=nets, groups={"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}, lr=lr, pools=pools,
               extra=extra, config=config, steps=steps, decay_steps=decay_steps, optimizer=optimizer)
    step = _CycleStep(run, gan_mode, lambda_cycle, lambda_identity, [w for _, w in extras], gp_weight)

    def preview(n, batch):
        g_a, g_b = PaperInference(n["G_A"]), PaperInference(n["G_B"])
        fake_b, fake_a = g_a(batch["A"]), g_b(batch["B"])
        return grid([batch["A"], fake_b, g_b(fake_b), batch["B"], fake_a, g_a(fake_a)])

    return _fit_gan(run, dataset=dataset, train_step=step, preview=preview, out_dir=out_dir, batch_size=batch_size,
                    device=device, num_workers=num_workers, sample_every=sample_every,
                    checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=progress)


# --------------------------------------------------------------------------- inference

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


__all__ = ["train_pix2pix", "train_cyclegan", "load_gan_generator", "translate_files", "parse_extra_losses",
           "lr_factor", "PadToMultiple", "PaperInference", "GAN_TASKS"]
