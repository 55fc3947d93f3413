"""Image synthesis by pixel optimization: texture synthesis, style transfer (Gatys/Johnson losses)
and the GIM ("generalized image mean") experiment of Amir & Weiss.

Every function here builds an objective from the library's losses and hands it to
:func:`perceptual_ext.train.optimize_image`. The losses are looked up by name through
:func:`perceptual_ext.losses.factory.build_loss` (or given as modules), so any image loss of the
library — pixel MSE, random/trained VGG features or Gram matrices, S-CNN, patch MMD, MMD++ —
drives any of these tasks.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _checks
from ..data.images import center_resize
from ..losses.factory import LOSSES, build_loss
from ..ops import gram
from .optimize import OptimizeResult, optimize_image

#: Losses whose features are average-pooled over windows; texture synthesis pools them globally.
POOLED_LOSSES = ("scnn", "mmd", "mmdpp")
#: ``vgg_random`` is the VGG16 feature loss with random weights even when ``vgg_weights`` is given
#: (the GIM comparison of trained vs random VGG).
LOSS_NAMES = tuple(LOSSES) + ("vgg_random",)
#: Kernel width (per pixel) of the patch-MMD losses in texture synthesis (the paper's 0.06 sees
#: nothing between noise and a texture).
TEXTURE_MMD_SIGMA = 0.15
#: Layers and weights of the ``"gram"`` texture loss in :func:`texture_loss` (Gatys et al.'s texture
#: layers up to relu3_1, the shallow ones weighted up): with a *random* VGG16, Johnson's
#: relu1_2..relu4_3 with equal weights turn noise into noise on ``gravel``, these into pebble-sized
#: light and dark grains (measured: README, "make demo").
GRAM_TEXTURE_LAYERS = ("relu1_1", "relu2_1", "relu3_1")
GRAM_TEXTURE_WEIGHTS = (100.0, 10.0, 1.0)
#: Johnson et al.'s layers for style transfer: l_feat at relu2_2, l_style at four layers.
CONTENT_LAYERS = ("relu2_2",)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

LossSpec = Union[str, Callable[[Tensor, Tensor], Tensor]]


def make_loss(name: str, *, vgg_weights: Optional[str] = None, seed: int = 0, **kwargs) -> nn.Module:
    """:func:`~perceptual_ext.losses.factory.build_loss` plus the alias ``vgg_random``."""
    _checks.choice(name, "loss", LOSS_NAMES)
    if name == "vgg_random":
        return build_loss("vgg", vgg_weights=None, seed=seed, **kwargs)
    return build_loss(name, vgg_weights=vgg_weights, seed=seed, **kwargs)


def _one_image(image, name: str) -> Tensor:
    """[C, H, W] or [1, C, H, W] float image -> [1, C, H, W]."""
    _checks.floating(image, name)
    _checks.rank(image, name, (3, 4), "[C, H, W] or [1, C, H, W]")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"{name} must be one image, got a batch of {image.shape[0]}")
        return image
    return image[None]


def _device(device, fallback: torch.device) -> torch.device:
    """``device`` as :func:`perceptual_ext._checks.device` reads it; None keeps the input's device."""
    return fallback if device is None else _checks.device(device)


def _loss_module(spec: LossSpec, vgg_weights, seed: int, kwargs: Optional[dict], device) -> Callable:
    if isinstance(spec, str):
        module = make_loss(spec, vgg_weights=vgg_weights, seed=seed, **(kwargs or {}))
    elif callable(spec):
        module = spec
    else:
        raise TypeError(f"loss must be a name {LOSS_NAMES} or a callable (input, target) -> scalar, "
                        f"got {type(spec).__name__}")
    return module.to(device) if isinstance(module, nn.Module) else module


def _noise_like(image: Tensor, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(image.shape, generator=g, dtype=image.dtype).to(image.device)


def texture_target(texture: Tensor, size: int) -> Tensor:
    """The ``size x size`` target of texture synthesis: a centre crop at the texture's own scale,
    or (texture smaller than ``size``) the centre square upscaled."""
    texture = _one_image(texture, "texture")
    _, _, h, w = texture.shape
    if min(h, w) >= size:
        top, left = (h - size) // 2, (w - size) // 2
        return texture[:, :, top:top + size, left:left + size]
    return center_resize(texture[0], size)[None]


def texture_init(target: Tensor, seed: int, noise: float = 0.1) -> Tensor:
    """The start of texture synthesis: ``target``'s mean colour + Gaussian noise (std ``noise``)."""
    g = torch.Generator().manual_seed(seed)
    jitter = torch.randn(target.shape, generator=g, dtype=target.dtype).to(target.device)
    return (target.mean(dim=(2, 3), keepdim=True) + noise * jitter).clamp(0, 1)


def texture_loss(name: str, size: int, window: Optional[int] = None, *, vgg_weights: Optional[str] = None,
                 seed: int = 0, loss_kwargs: Optional[dict] = None) -> nn.Module:
    """The loss ``name`` as :func:`synthesize_texture` uses it: pooled losses pool over the whole
    ``size x size`` image unless ``window`` is given (then stride ``window // 2``); the patch-MMD
    losses get σ = :data:`TEXTURE_MMD_SIGMA` unless ``loss_kwargs`` sets ``sigma``; ``"gram"`` gets
    :data:`GRAM_TEXTURE_LAYERS` and :data:`GRAM_TEXTURE_WEIGHTS` unless ``loss_kwargs`` sets
    ``layers``."""
    kwargs = dict(loss_kwargs or {})
    if name == "gram" and "layers" not in kwargs:
        kwargs["layers"] = GRAM_TEXTURE_LAYERS
        kwargs.setdefault("layer_weights", GRAM_TEXTURE_WEIGHTS)
    if name in ("mmd", "mmdpp"):
        kwargs.setdefault("sigma", TEXTURE_MMD_SIGMA)
    if name in POOLED_LOSSES:
        pool = size if window is None else _checks.positive_int(window, "window")
        kwargs.setdefault("window", pool)
        kwargs.setdefault("stride", pool if window is None else max(1, pool // 2))
    return make_loss(name, vgg_weights=vgg_weights, seed=seed, **kwargs)


def synthesize_texture(texture: Tensor, loss: LossSpec = "mmd", size: int = 256, steps: int = 500,
                       lr: float = 0.02, optimizer: str = "adam", window: Optional[int] = None,
                       vgg_weights: Optional[str] = None, seed: int = 0, device=None, init: Optional[Tensor] = None,
                       loss_kwargs: Optional[dict] = None, lr_decay=None, progress: Union[bool, str] = True,
                       callback=None) -> OptimizeResult:
    r"""Synthesize a new texture that matches the statistics of ``texture`` under ``loss``.

    Starts from noise and minimizes :math:`\mathcal L(x, t)` where ``t`` is a
    ``size x size`` centre crop of the texture (Gatys et al. with ``loss="gram"``; seed 004's
    distribution losses with ``"mmd"``, ``"mmdpp"``, ``"scnn"``).

    Texture statistics are stationary, so the pooled losses (``scnn``, ``mmd``, ``mmdpp``) pool
    over the whole image by default (``window=size, stride=size``): the patch distribution of
    the whole output is matched to that of the whole target. Pass ``window`` for local windows
    (stride ``window // 2``), which also ties the output's layout to the target's.

    The start is the texture's mean colour plus Gaussian noise of std 0.1 (from uniform noise
    in [0, 1], every loss we tried kept most of the colour noise). The patch-MMD losses use a
    kernel of σ = 0.15 per pixel here unless ``loss_kwargs`` says otherwise: with the paper's
    σ = 0.06 (meant for comparing an image with one that is already close, as in GIM or
    super-resolution) the Gaussian kernel between a noise patch and a texture patch is ~1e-8 and
    the loss does not move (measured).

    Args:
        texture (Tensor[C, H, W] or Tensor[1, C, H, W]): the example texture in [0, 1].
        loss: a name of :data:`LOSS_NAMES` or a callable ``(input, target) -> scalar``.
        size: side of the synthesized square image.
        steps, lr, optimizer, lr_decay, progress, callback: see :func:`optimize_image`.
        window: pooling window of the pooled losses (``None``: the whole image).
        vgg_weights: torchvision-layout VGG16 weights for ``vgg``/``gram`` (random VGG if None).
        seed: seeds the initial noise, the random filters and the optimization.
        device: where to optimize (default: the texture's device).
        init (Tensor[1, C, size, size], optional): starting image instead of :func:`texture_init`.
        loss_kwargs: extra keyword arguments of the loss class.

    Returns:
        :class:`OptimizeResult` with the image [1, C, size, size].

    Example:
        >>> from perceptual_ext.data import sample_image
        >>> result = synthesize_texture(sample_image("gravel", channels=3), loss="mmd", size=128, steps=200)
    """
    _checks.positive_int(size, "size")
    target = texture_target(texture, size)
    dev = _device(device, target.device)
    target = target.to(dev)
    if isinstance(loss, str):
        loss = texture_loss(loss, size, window, vgg_weights=vgg_weights, seed=seed, loss_kwargs=loss_kwargs)
    loss_fn = _loss_module(loss, vgg_weights, seed, None, dev)
    start = texture_init(target, seed) if init is None else _one_image(init, "init").to(dev, target.dtype)
    if start.shape != target.shape:
        raise ValueError(f"init must have shape {tuple(target.shape)}, got {tuple(start.shape)}")
    label = progress if isinstance(progress, str) else ("synthesize" if progress else False)
    return optimize_image(lambda x: loss_fn(x, target), start, steps, lr, optimizer=optimizer, callback=callback,
                          progress=label, lr_decay=lr_decay, seed=seed)


def synthesize_texture_in_phases(texture: Tensor, phases: Sequence[tuple], loss_at: Callable[[int, dict], LossSpec],
                                 lr: float = 0.05, *, lr_decay=None, seed: int = 0, device=None,
                                 progress: Union[bool, str] = True) -> OptimizeResult:
    r"""Coarse-to-fine texture synthesis: :func:`synthesize_texture` once per phase ``(size, steps, options)``.

    Every phase matches the centre square of ``texture`` resized to its ``size`` (so each phase sees
    the same texture, at its resolution) under the loss ``loss_at(size, options)``, and starts from
    the previous phase's result, upscaled (bicubic) when the size grows; the first starts from
    :func:`texture_init`. Coarse phases are cheap and settle the large structure; the last refines.

    Args:
        texture (Tensor[C, H, W] or Tensor[1, C, H, W]): the exemplar in [0, 1].
        phases: ``(size, steps, options)`` per phase; ``options`` is handed to ``loss_at``.
        loss_at: ``(size, options) ->`` a loss name or callable, as :func:`synthesize_texture` takes
            (e.g. ``lambda size, options: texture_loss("mmd", size, loss_kwargs=options)``).
        lr, lr_decay, seed, device: as :func:`synthesize_texture`, for every phase.
        progress: a progress bar per phase (a string labels them, followed by the phase's size).

    Returns:
        :class:`OptimizeResult`: the last phase's image [1, C, size, size] and every phase's losses in order.

    Example:
        >>> from perceptual_ext.data import sample_image
        >>> result = synthesize_texture_in_phases(
        ...     sample_image("gravel", channels=3), [(64, 100, {}), (128, 50, {})],
        ...     lambda size, options: texture_loss("mmd", size, loss_kwargs=options), progress=False)
    """
    texture = _one_image(texture, "texture")[0]
    if not phases:
        raise ValueError("phases must hold at least one (size, steps, options)")
    label = progress if isinstance(progress, str) else "synthesize"
    image, history = None, []
    for size, steps, options in phases:
        if image is not None and image.shape[-1] != size:
            image = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        result = synthesize_texture(center_resize(texture, size), loss=loss_at(size, options), size=size, steps=steps,
                                    lr=lr, init=image, lr_decay=lr_decay, seed=seed, device=device,
                                    progress=f"{label} {size}²" if progress else False)
        image = result.image
        history += result.history
    return OptimizeResult(image, history)


def fit_to(image: Tensor, height: int, width: int) -> Tensor:
    """Scale ``image`` [1, C, h, w] to cover ``height x width`` (aspect kept), then centre-crop."""
    _, _, h, w = image.shape
    scale = max(height / h, width / w)
    if scale != 1.0:
        new = (max(height, round(h * scale)), max(width, round(w * scale)))
        image = F.interpolate(image, size=new, mode="bicubic", antialias=scale < 1, align_corners=False).clamp(0, 1)
    _, _, h, w = image.shape
    top, left = (h - height) // 2, (w - width) // 2
    return image[:, :, top:top + height, left:left + width]


def resize_short_side(image: Tensor, size: int) -> Tensor:
    """Resize [1, C, H, W] so that min(H, W) == size, keeping the aspect ratio (bicubic)."""
    _, _, h, w = image.shape
    if min(h, w) == size:
        return image
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return F.interpolate(image, size=new, mode="bicubic", antialias=scale < 1, align_corners=False).clamp(0, 1)


class StyleTransferObjective(nn.Module):
    r"""Johnson et al.'s style-transfer objective for a fixed content and style image.

    .. math::
        \mathcal L(x) = \lambda_c\, \ell_{feat}^{relu2\_2}(x, y_c)
        + \lambda_s \sum_{j \in \text{style layers}} \ell_{style}^{j}(x, y_s) + \lambda_{TV}\, \ell_{TV}(x)

    with :math:`\ell_{feat} = \frac{1}{C_j H_j W_j}\|\phi_j(x) - \phi_j(y)\|_2^2` and
    :math:`\ell_{style} = \|G_j(x) - G_j(y)\|_F^2`, :math:`G_j = \phi_j\phi_j^\top / (C_j H_j W_j)`,
    over VGG16 (trained weights from ``vgg_weights``, else a random VGG seeded by ``seed``).

    ``style_loss`` other than ``"gram"`` replaces the Gram sum by another texture loss of the
    library between x and y_s, pooled over the whole image as :func:`texture_loss` pools it (a
    non-square image: windows of its short side, half a window apart): with a *random* VGG the Gram
    term barely moves the content image, while ``"mmd"`` (patch MMD, σ = :data:`TEXTURE_MMD_SIGMA`)
    or ``"scnn"`` transfer the style's local patches visibly (measured on ``chelsea`` / ``gravel``:
    README). Their scale differs from the Gram term's, so pick ``style_weight`` for the loss.

    The content and style targets (features and Gram matrices) are computed once, and one VGG pass
    of ``x`` serves the content and the Gram terms.

    Args:
        content (Tensor[1, C, H, W]): the content image y_c.
        style (Tensor[1, C, H, W]): the style image y_s, same size as the content.
        content_weight, style_weight, tv_weight: λ_c, λ_s, λ_TV.
        content_layers, style_layers: VGG16 layer names (``style_layers``: of the Gram term).
        vgg_weights: path of torchvision-layout VGG16 weights, or None.
        seed: seed of the random VGG (and of a named ``style_loss``'s random filters).
        style_loss: ``"gram"``, another name of :data:`LOSS_NAMES` (``"mmd"``, ``"mmdpp"``,
            ``"scnn"``, ...) or a callable ``(input, target) -> scalar``.
        style_loss_kwargs: extra keyword arguments of a named ``style_loss``'s class.

    Example:
        >>> content, style = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
        >>> objective = StyleTransferObjective(content, style, style_loss="mmd", style_weight=100.0)
        >>> sorted(objective.terms(content))
        ['content', 'style', 'tv']
    """

    def __init__(self, content: Tensor, style: Tensor, content_weight: float = 1.0, style_weight: float = 5.0,
                 tv_weight: float = 1e-6, content_layers: Sequence[str] = CONTENT_LAYERS,
                 style_layers: Sequence[str] = STYLE_LAYERS, vgg_weights: Optional[str] = None, seed: int = 0,
                 style_loss: LossSpec = "gram", style_loss_kwargs: Optional[dict] = None) -> None:
        super().__init__()
        from ..features.vgg import VGG16Features
        from ..losses.perceptual import TVLoss

        for value, name in ((content_weight, "content_weight"), (style_weight, "style_weight"),
                            (tv_weight, "tv_weight")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if content.shape != style.shape:
            raise ValueError(f"content and style must have the same shape, got {tuple(content.shape)} and "
                             f"{tuple(style.shape)}")
        self.weights = {"content": float(content_weight), "style": float(style_weight), "tv": float(tv_weight)}
        self.gram_style = isinstance(style_loss, str) and style_loss == "gram"
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers) if self.gram_style else ()
        layers = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        self.vgg = VGG16Features(layers=layers, weights=vgg_weights, seed=seed)
        self.register_buffer("content", content.detach())
        self.register_buffer("style", style.detach())
        with torch.no_grad():
            content_features = self.vgg(self.content)
            style_features = self.vgg(self.style) if self.style_layers else {}
        for name in self.content_layers:
            self.register_buffer(f"content_{name}", content_features[name])
        for name in self.style_layers:
            self.register_buffer(f"gram_{name}", gram(style_features[name]))
        self.style_loss = None
        if not self.gram_style:
            if isinstance(style_loss, str):
                _checks.choice(style_loss, "style_loss", LOSS_NAMES)
                h, w = content.shape[-2:]
                window = None if h == w else min(h, w)
                style_loss = texture_loss(style_loss, min(h, w), window, vgg_weights=vgg_weights, seed=seed,
                                          loss_kwargs={"channels": content.shape[1], **(style_loss_kwargs or {})}
                                          if style_loss in ("mmd", "mmdpp") else style_loss_kwargs)
            elif not callable(style_loss):
                raise TypeError(f"style_loss must be 'gram', a name {LOSS_NAMES} or a callable (input, target) -> "
                                f"scalar, got {type(style_loss).__name__}")
            self.style_loss = style_loss
        self.tv_loss = TVLoss()

    def terms(self, x: Tensor) -> Dict[str, Tensor]:
        """The weighted terms ``{"content", "style", "tv"}`` at image ``x`` (zero weights skipped)."""
        out = {}
        need_vgg = bool(self.weights["content"]) or (self.gram_style and bool(self.weights["style"]))
        features = self.vgg(x) if need_vgg else {}
        if self.weights["content"]:
            content = sum((features[n] - getattr(self, f"content_{n}")).square().flatten(1).mean(dim=1)
                          for n in self.content_layers)
            out["content"] = self.weights["content"] * content.mean()
        if self.weights["style"]:
            if self.gram_style:
                style = sum((gram(features[n]) - getattr(self, f"gram_{n}")).square().sum(dim=(1, 2))
                            for n in self.style_layers)
                out["style"] = self.weights["style"] * style.mean()
            else:
                out["style"] = self.weights["style"] * self.style_loss(x, self.style.expand_as(x))
        if self.weights["tv"]:
            out["tv"] = self.weights["tv"] * self.tv_loss(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        terms = self.terms(x)
        if not terms:
            raise ValueError("content_weight, style_weight and tv_weight are all 0: nothing to optimize")
        return sum(terms.values())


def style_transfer(content: Tensor, style: Tensor, content_weight: float = 1.0, style_weight: float = 5.0,
                   tv_weight: float = 1e-6, steps: int = 300, lr: float = 1.0, optimizer: str = "lbfgs",
                   size: Optional[int] = None, init: str = "content", vgg_weights: Optional[str] = None,
                   content_layers: Sequence[str] = CONTENT_LAYERS, style_layers: Sequence[str] = STYLE_LAYERS,
                   seed: int = 0, device=None, lr_decay=None, progress: Union[bool, str] = True,
                   callback=None, style_loss: LossSpec = "gram",
                   style_loss_kwargs: Optional[dict] = None) -> OptimizeResult:
    r"""Style transfer by optimization (Gatys et al.) with Johnson et al.'s loss weights.

    Minimizes :class:`StyleTransferObjective` over the pixels, from the content image (or noise).
    The style image is scaled to cover the content's size and centre-cropped to it.

    Args:
        content (Tensor[C, H, W] or Tensor[1, C, H, W]): content image in [0, 1].
        style (Tensor[C, H', W'] or Tensor[1, C, H', W']): style image in [0, 1].
        content_weight, style_weight, tv_weight: λ_c, λ_s, λ_TV (Johnson et al.'s defaults).
        steps, lr, optimizer, lr_decay, progress, callback: see :func:`optimize_image`
            (L-BFGS by default, as Gatys et al.; ``optimizer="adam"`` with ``lr≈0.02``).
        size: resize the content so its short side is ``size`` first (None keeps it).
        init: ``"content"`` or ``"noise"``.
        vgg_weights: torchvision-layout VGG16 weights (a random VGG seeded by ``seed`` if None).
        content_layers, style_layers: VGG16 layers of ℓ_feat and ℓ_style.
        seed: seeds the random VGG, the noise init and the optimization.
        device: where to optimize (default: the content's device).
        style_loss, style_loss_kwargs: the style term, see :class:`StyleTransferObjective`
            (``"gram"``: Gatys/Johnson; ``"mmd"`` with ``style_weight≈100``, Adam ``lr≈0.02``:
            what ``make demo`` shows with a random VGG).

    Returns:
        :class:`OptimizeResult` with the stylized image, the content's shape.

    Example:
        >>> from perceptual_ext.data import sample_image
        >>> result = style_transfer(sample_image("chelsea", channels=3), sample_image("gravel", channels=3),
        ...                         size=128, steps=100)
    """
    content = _one_image(content, "content")
    style = _one_image(style, "style")
    if content.shape[1] != style.shape[1]:
        raise ValueError(f"content and style must have the same channels, got {content.shape[1]} and {style.shape[1]}")
    _checks.choice(init, "init", ("content", "noise"))
    dev = _device(device, content.device)
    content = content.to(dev)
    if size is not None:
        content = resize_short_side(content, _checks.positive_int(size, "size"))
    style = fit_to(style.to(dev, content.dtype), *content.shape[-2:])
    objective = StyleTransferObjective(content, style, content_weight, style_weight, tv_weight, content_layers,
                                       style_layers, vgg_weights, seed, style_loss, style_loss_kwargs).to(dev)
    start = content if init == "content" else _noise_like(content, seed)
    label = progress if isinstance(progress, str) else ("stylize" if progress else False)
    return optimize_image(objective, start, steps, lr, optimizer=optimizer, callback=callback, progress=label,
                          lr_decay=lr_decay, seed=seed)


__all__ = ["synthesize_texture", "texture_loss", "texture_init", "style_transfer", "StyleTransferObjective",
           "texture_target", "make_loss", "LOSS_NAMES", "POOLED_LOSSES", "GRAM_TEXTURE_LAYERS",
           "GRAM_TEXTURE_WEIGHTS"]
