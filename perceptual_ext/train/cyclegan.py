"""CycleGAN (Zhu et al.): two ResNet generators and two PatchGANs on unpaired images, least-squares
GAN loss, cycle-consistency and identity losses, image pools (see :mod:`.gan`)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from .. import _checks
from ..data.pairs import SAMPLE_PAIR_KINDS, UnpairedImages
from ..losses.gan import gan_loss, gradient_penalty
from ..models.gan import PatchDiscriminator, ResnetGenerator
from .distributed import Process, wrap
from .image_pool import ImagePool
from .loop import grid
from .gan import (_accuracy, _Apply, _common_checks, _d_loss, _distance, _extra_terms, _fit_gan, _nonnegative,
                  PaperInference, build_extra_losses, parse_extra_losses, _requires_grad, _Run)


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
                   vgg_weights: Optional[str] = None, lpips_weights: Optional[str] = None, ngf: int = 64,
                   ndf: int = 64, n_blocks: int = 9,
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
    extra = build_extra_losses(extras, vgg_weights, lpips_weights, seed)
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


__all__ = ["train_cyclegan"]
