r"""Adversarial losses: the GAN objective in its usual forms, and the WGAN-GP gradient penalty.

Seed 000/001: :math:`\min_G \max_D \; E_x[\log D(x)] + E_z[\log(1 - D(G(z)))]`. The
discriminator's logits ``prediction`` (any shape: one per image, or a PatchGAN map) are scored
against "real" or "fake":

======== ======================================= =========================================
mode     target real                             target fake
======== ======================================= =========================================
vanilla  BCE-with-logits(D, 1) = softplus(−D)    BCE-with-logits(D, 0) = softplus(D)
lsgan    (D − 1)²                                D²
wgangp   −D                                      +D
hinge    D: relu(1 − D); G: −D                   D: relu(1 + D)
======== ======================================= =========================================

The generator calls the loss with ``target_is_real=True`` on ``D(G(z))`` (the non-saturating
form of the vanilla GAN, as pix2pix and CycleGAN do); the discriminator calls it on real data with
``True`` and on generated data with ``False``. Only the hinge loss differs between the two
players, hence ``for_discriminator``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import _checks

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")


def gan_loss(prediction: Tensor, target_is_real: bool, mode: str = "vanilla", *, for_discriminator: bool = False,
             reduction: str = "mean") -> Tensor:
    r"""Functional form of :class:`GANLoss`."""
    _checks.choice(mode, "mode", GAN_MODES)
    reduction = _checks.reduction(reduction)
    _checks.floating(prediction, "prediction")
    if not isinstance(target_is_real, bool):
        raise TypeError(f"target_is_real must be a bool, got {type(target_is_real).__name__}")
    if not isinstance(for_discriminator, bool):
        raise TypeError(f"for_discriminator must be a bool, got {type(for_discriminator).__name__}")
    dtype = prediction.dtype
    d = prediction.float() if dtype in (torch.float16, torch.bfloat16) else prediction
    if mode == "vanilla":
        value = F.softplus(-d) if target_is_real else F.softplus(d)  # = BCE with logits against 1 / 0
    elif mode == "lsgan":
        value = (d - 1.0).square() if target_is_real else d.square()
    elif mode == "wgangp":
        value = -d if target_is_real else d
    elif for_discriminator:
        value = F.relu(1.0 - d) if target_is_real else F.relu(1.0 + d)
    else:
        if not target_is_real:
            raise ValueError("the generator's hinge loss is -mean(D(G(z))) with target_is_real=True; "
                             "pass for_discriminator=True to score generated data for the discriminator")
        value = -d
    return _checks.reduce(value, reduction).to(dtype)


class GANLoss(nn.Module):
    r"""The adversarial loss of a discriminator's logits against "real" or "fake".

    .. math::
        \ell_{\text{vanilla}} = -\log\sigma(D) \text{ (real)}, \; -\log(1 - \sigma(D)) \text{ (fake)};\quad
        \ell_{\text{lsgan}} = (D - 1)^2, \; D^2;\quad
        \ell_{\text{wgangp}} = -D, \; D;\quad
        \ell_{\text{hinge}} = \max(0, 1 - D), \; \max(0, 1 + D) \text{ (discriminator)}, \; -D \text{ (generator)}

    ``vanilla`` is the GAN of Goodfellow et al. (binary cross-entropy with logits against 1/0,
    pix2pix's default); ``lsgan`` the least-squares GAN of Mao et al. (MSE against 1/0, CycleGAN's
    default); ``wgangp`` the Wasserstein critic loss (pair it with :func:`gradient_penalty`);
    ``hinge`` the hinge loss of Lim & Ye / Miyato et al. The discriminator ends its network with
    no sigmoid: every mode takes logits (raw scores).

    Args:
        mode: ``"vanilla"``, ``"lsgan"``, ``"hinge"`` or ``"wgangp"``.
        reduction: ``'mean'`` over every element (default), ``'sum'``, or ``'none'`` (the
            elementwise loss, shaped like ``prediction``).

    Call:
        ``loss(prediction, target_is_real, for_discriminator=False)``: ``prediction`` is
        D's output (Tensor of any shape, e.g. [N, 1, 30, 30] for a PatchGAN);
        ``for_discriminator`` only matters for ``hinge``.

    Example:
        >>> criterion = GANLoss("lsgan")
        >>> d_real, d_fake = torch.full((2, 1, 30, 30), 0.9), torch.full((2, 1, 30, 30), 0.1)
        >>> loss_d = 0.5 * (criterion(d_real, True) + criterion(d_fake, False))  # (0.01 + 0.01) / 2
        >>> round(loss_d.item(), 6)
        0.01
    """

    def __init__(self, mode: str = "vanilla", reduction: str = "mean") -> None:
        super().__init__()
        self.mode = _checks.choice(mode, "mode", GAN_MODES)
        self.reduction = _checks.reduction(reduction)

    def forward(self, prediction: Tensor, target_is_real: bool, for_discriminator: bool = False) -> Tensor:
        return gan_loss(prediction, target_is_real, self.mode, for_discriminator=for_discriminator,
                        reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, reduction={self.reduction!r}"


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weight: float = 10.0, *,
                     generator: Optional[torch.Generator] = None) -> Tensor:
    r"""WGAN-GP's gradient penalty (Gulrajani et al. 2017) at random interpolates of real and fake.

    .. math::
        \text{GP} = \lambda \, E_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2\big],
        \quad \hat x = \alpha x_{\text{real}} + (1 - \alpha) x_{\text{fake}}, \; \alpha \sim U(0, 1)

    One α per sample; the gradient of ``D(x̂).sum()`` (a PatchGAN's logits summed, as the
    reference does) is taken per sample over all its elements, with ``create_graph=True`` so
    the penalty back-propagates into D. ``fake`` is detached.

    Args:
        discriminator: D, or any callable of the image (a conditional D as
            ``lambda y: D(torch.cat([x, y], 1))``).
        real, fake: Tensor[N, ...] of equal shape (``fake`` may be the generator's output).
        weight: λ (10 in the paper).
        generator: a torch.Generator for α (default: the global generator).

    Returns:
        a scalar tensor.

    Example:
        >>> w = torch.randn(1, 3, 8, 8)
        >>> critic = lambda x: (x * w).flatten(1).sum(1)  # linear: the gradient is w everywhere
        >>> gp = gradient_penalty(critic, torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8), weight=1.0)
        >>> torch.allclose(gp, (w.norm() - 1) ** 2)
        True
    """
    if not callable(discriminator):
        raise TypeError("discriminator must be callable (an nn.Module or a function), "
                        f"got {type(discriminator).__name__}")
    _checks.floating(real, "real")
    _checks.floating(fake, "fake")
    _checks.same_device(real, fake, "real", "fake")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.dim() < 2 or real.shape[0] == 0:
        raise ValueError(f"real must be a non-empty batch [N, ...], got shape {tuple(real.shape)}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"weight must be a number >= 0, got {weight!r}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, dtype=real.dtype,
                       device=real.device if generator is None else generator.device).to(real.device)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    with torch.enable_grad():
        score = discriminator(mixed)
        if not isinstance(score, Tensor):
            raise TypeError(f"discriminator must return a Tensor, got {type(score).__name__}")
        if not score.requires_grad:
            raise ValueError("discriminator's output does not depend on its input (no gradient to penalize)")
        (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    norm = grad.flatten(1).square().sum(1).add(1e-16).sqrt()
    return weight * (norm - 1.0).square().mean()
