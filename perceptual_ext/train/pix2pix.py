"""pix2pix (Isola et al.): a U-Net generator against a conditional 70x70 PatchGAN on paired images,
cGAN + lambda L1 (see :mod:`.gan` for the objective and the shared GAN machinery)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from .. import _checks
from ..data.pairs import DIRECTIONS, SAMPLE_PAIR_KINDS, PairedImages
from ..losses.gan import gan_loss, gradient_penalty
from ..models.gan import PatchDiscriminator, UNetGenerator
from .distributed import Process, wrap
from .loop import grid
from .gan import (_accuracy, _Apply, _common_checks, _d_loss, _distance, _extra_terms, _fit_gan, _nonnegative,
                  PaperInference, build_extra_losses, parse_extra_losses, _requires_grad, _Run)


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
                  vgg_weights: Optional[str] = None, lpips_weights: Optional[str] = None, ngf: int = 64,
                  ndf: int = 64, num_downs: Optional[int] = None, n_layers_d: int = 3, norm: str = "batch",
                  dropout: bool = True, seed: int = 0, device: Optional[str] = None, num_workers: int = 0,
                  sample_every: int = 500, checkpoint_every: int = 500, resume: Optional[str] = None,
                  overwrite: bool = False, progress: bool = True, optimizer: str = "adam") -> dict:
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
            ``"vgg:1.0"`` or a list of ``NAME:WEIGHT`` (files: ``vgg_weights`` VGG16's, ``lpips_weights`` lpips' lin).
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
    extra = build_extra_losses(extras, vgg_weights, lpips_weights, seed)
    run = _Run(task="pix2pix", nets={"G": G, "D": D}, groups={"G": ["G"], "D": ["D"]}, lr=lr, pools={}, extra=extra,
               config=config, steps=steps, decay_steps=decay_steps, optimizer=optimizer)
    step = _Pix2PixStep(G, D, run, gan_mode, lambda_l1, [w for _, w in extras], gp_weight)

    def preview(nets, batch):
        return grid([batch["A"], PaperInference(nets["G"])(batch["A"]), batch["B"]])

    return _fit_gan(run, dataset=dataset, train_step=step, preview=preview, out_dir=out_dir, batch_size=batch_size,
                    device=device, num_workers=num_workers, sample_every=sample_every,
                    checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=progress)


# --------------------------------------------------------------------------- CycleGAN


__all__ = ["train_pix2pix"]
