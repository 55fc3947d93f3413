"""The one pixel-optimization loop: texture synthesis, style transfer and GIM all run through it."""
from __future__ import annotations

import contextlib
import math
from typing import Callable, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import _checks

OPTIMIZERS = ("adam", "lbfgs")


class OptimizeResult(NamedTuple):
    """What :func:`optimize_image` returns; unpacks as ``image, history = ...``."""

    image: Tensor
    """The optimized image, detached, same shape/dtype/device as ``init``."""
    history: List[float]
    """``history[t]`` is the loss at the image before step ``t`` (one entry per step taken)."""


def _lr_lambda(lr_decay, steps: int) -> Optional[Callable[[int], float]]:
    """Multiplicative lr factor per step from ``lr_decay`` (None, a float gamma, "cosine", a callable)."""
    if lr_decay is None:
        return None
    if callable(lr_decay):
        return lr_decay
    if lr_decay == "cosine":
        return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps))
    if isinstance(lr_decay, (int, float)) and not isinstance(lr_decay, bool):
        gamma = float(lr_decay)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"lr_decay as a float is the per-step factor gamma in (0, 1], got {gamma}")
        return lambda t: gamma ** t
    raise TypeError(f"lr_decay must be None, a float in (0, 1], 'cosine' or a callable step -> factor, "
                    f"got {lr_decay!r}")


def _clamp_range(clamp) -> Optional[tuple]:
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2 or not clamp[0] < clamp[1]:
        raise ValueError(f"clamp must be None or a pair (low, high) with low < high, got {clamp!r}")
    return float(clamp[0]), float(clamp[1])


@contextlib.contextmanager
def _seeded(seed: Optional[int], device: torch.device):
    """Seed torch's global RNGs inside the block and restore them after (the caller's stream is untouched)."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def optimize_image(loss_fn: Callable[[Tensor], Tensor], init: Tensor, steps: int, lr: float,
                   optimizer: str = "adam", callback: Optional[Callable[[int, float, Tensor], Optional[bool]]] = None,
                   progress: Union[bool, str] = True, lr_decay=None, seed: Optional[int] = None,
                   clamp: Optional[Sequence[float]] = (0.0, 1.0)) -> OptimizeResult:
    r"""Optimize the pixels of an image to minimize ``loss_fn(image)``.

    .. math::
        \hat x = \arg\min_{x \in [\text{low}, \text{high}]^{C \times H \times W}} \mathcal L(x),
        \quad \text{from } x_0 = \text{init}

    Each step evaluates the loss, back-propagates to the pixels and updates them with Adam (one
    update per step, then the pixels are clamped into ``clamp``: projected gradient descent) or
    L-BFGS (one iteration per step, strong-Wolfe line search, so one or more loss evaluations; the
    pixels are clamped once, after the last step, as in Gatys et al.'s and Johnson et al.'s code,
    because clamping between L-BFGS iterations stalls it at the bounds). ``init`` is never modified.

    Args:
        loss_fn: maps the image (same shape as ``init``, requires grad) to a scalar tensor.
            Losses with random draws per call (PatchMMDLoss with ``resample=True``) are
            reproducible when ``seed`` is given.
        init (Tensor[N, C, H, W] or any shape ``loss_fn`` accepts): the starting image.
        steps: number of optimizer steps (0 returns ``init`` unchanged).
        lr: learning rate (Adam) or initial step length (L-BFGS).
        optimizer: ``'adam'`` or ``'lbfgs'``.
        callback: called after each step as ``callback(step, loss, image)``; return ``True`` to
            stop early. ``image`` is the live tensor: do not modify it.
        progress: show a tqdm progress bar with the loss (to stderr); a string is its label.
        lr_decay: ``None`` (constant), a float ``gamma`` (lr·gammaᵗ), ``'cosine'`` (to 0 at the last
            step), or a callable ``step -> factor`` (as ``torch.optim.lr_scheduler.LambdaLR``).
        seed: if given, torch's global RNGs are seeded with it for the run and restored after, so
            the same call gives the same image.
        clamp: ``(low, high)`` pixel range enforced after each Adam step and at the end of an L-BFGS
            run (the callback may see L-BFGS iterates outside it), or ``None``.

    Returns:
        :class:`OptimizeResult` ``(image, history)``.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the step it happened is named).

    Example:
        >>> target = torch.rand(1, 3, 32, 32)
        >>> image, history = optimize_image(lambda x: (x - target).square().mean(), torch.zeros_like(target),
        ...                                 steps=50, lr=0.05, progress=False)
        >>> history[-1] < history[0]
        True
    """
    _checks.floating(init, "init")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    _checks.positive_int(steps, "steps", minimum=0)
    lr = _checks.positive_float(lr, "lr")
    _checks.choice(optimizer, "optimizer", OPTIMIZERS)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    factor = _lr_lambda(lr_decay, steps)
    bounds = _clamp_range(clamp)

    image = init.detach().clone()
    if bounds is not None:
        image.clamp_(*bounds)
    image.requires_grad_(True)
    if optimizer == "adam":
        opt = torch.optim.Adam([image], lr=lr)
    else:
        opt = torch.optim.LBFGS([image], lr=lr, max_iter=1, history_size=50, line_search_fn="strong_wolfe")
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor) if factor is not None else None
    with _seeded(seed, init.device):
        # L-BFGS's curvature pairs describe the iterates it chose: clamping between its steps moves
        # the point under it, and once a direction leans out of the box every step is pulled back to
        # the same pixels (measured: style transfer froze after ~20 steps). It is clamped at the end,
        # as Gatys et al. and Johnson et al. do; Adam is projected after every step.
        per_step = bounds if optimizer == "adam" else None
        history = _run_steps(loss_fn, image, opt, scheduler, steps, per_step, callback, progress)
        if bounds is not None:
            with torch.no_grad():
                image.clamp_(*bounds)
    return OptimizeResult(image.detach(), history)


def _loss_closure(loss_fn: Callable[[Tensor], Tensor], image: Tensor, opt, first: List[float]):
    """The closure each optimizer step calls; the first evaluation of a step lands in ``first``.

    L-BFGS runs one iteration per step, and each iteration starts by evaluating the loss at the
    point where the previous line search ended, which that search has usually evaluated already.
    The closure keeps its last evaluation (pixels, loss, gradient) and answers a repeat from it:
    the same numbers, one evaluation fewer for every step whose clamp moved no pixel.
    """
    last: dict = {}

    def closure() -> Tensor:
        if last and torch.equal(last["image"], image):
            image.grad = last["grad"].clone()
            loss = last["loss"]
        else:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(image)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
                                 f"{' of shape ' + str(tuple(loss.shape)) if isinstance(loss, Tensor) else ''}")
            loss.backward()
            if image.grad is not None:
                last.update(image=image.detach().clone(), grad=image.grad.detach().clone(), loss=loss.detach())
        if not first:  # the first evaluation of a step is the loss at the current image
            first.append(loss.item())
        return loss

    return closure


def _run_steps(loss_fn, image: Tensor, opt, scheduler, steps: int, bounds, callback, progress) -> List[float]:
    """The optimization steps of :func:`optimize_image`; returns the loss history."""
    from tqdm.auto import tqdm

    history: List[float] = []
    step_loss: List[float] = []
    closure = _loss_closure(loss_fn, image, opt, step_loss)
    label = progress if isinstance(progress, str) else "optimize"
    with tqdm(range(steps), desc=label, disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for t in bar:
            step_loss.clear()
            opt.step(closure)
            loss = step_loss[0]
            if not math.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} at step {t}; try a smaller lr")
            history.append(loss)
            if bounds is not None:
                with torch.no_grad():
                    image.clamp_(*bounds)
            if scheduler is not None:
                scheduler.step()
            if t % 10 == 0 or t == steps - 1:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            if callback is not None and callback(t, loss, image):
                break
    return history


__all__ = ["optimize_image", "OptimizeResult", "OPTIMIZERS"]
