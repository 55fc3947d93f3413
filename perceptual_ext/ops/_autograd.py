"""Autograd of every compiled op, registered in one place.

Each op's backward is an op of its own (``X_backward``); its autograd formula is registered here
with ``torch.library.register_autograd``, beside the others, so that all ops agree on what they
support. Where a backward op has no autograd formula of its own (second derivatives), it is
registered to raise a ``RuntimeError`` that says so, instead of torch's warning and silently
wrong second derivatives. The fake (meta) kernels stay beside each op in ``ops/X.py``.

==========================  ==================  =========================================
op                          first derivative    second derivative (double backward)
==========================  ==================  =========================================
gram                        features            supported (the backward is bilinear)
lpips_layer                 a, b, weight        RuntimeError
match_template              image, templ        RuntimeError
rff_patch_features          x                   RuntimeError
scnn_features               x                   RuntimeError
soft_encoded_cross_entropy  logits              RuntimeError
==========================  ==================  =========================================
"""
from __future__ import annotations

import torch

from .. import _C  # noqa: F401  (registers torch.ops.perceptual_ext)

_OPS = torch.ops.perceptual_ext


def _no_double_backward(op: str, backward_op: str) -> None:
    """Register ``backward_op``'s autograd as a clear error: ``op`` has no second derivatives."""

    def setup_context(ctx, inputs, output):
        pass

    def backward(ctx, *grads):
        raise RuntimeError(f"{op}: double backward (second derivatives) is not supported; differentiate "
                           f"{op} once (create_graph=False), or compose it from torch ops for higher derivatives")

    torch.library.register_autograd(f"perceptual_ext::{backward_op}", backward, setup_context=setup_context)


def _register(op: str, backward, args: str, save: str, keep: str = "", outputs=(), non_differentiable=(),
              double_backward: bool = False) -> None:
    """Register ``backward`` as the autograd formula of ``op`` whose arguments are named ``args``.

    Its setup_context saves the arguments named in ``save`` (then ``output[i]`` for ``i`` in
    ``outputs``) for ``ctx.saved_tensors``, keeps the non-tensor arguments named in ``keep`` as
    ``ctx.<name>``, and marks ``output[i]`` for ``i`` in ``non_differentiable``. Unless
    ``double_backward``, ``op``'s backward op is registered to raise (:func:`_no_double_backward`).
    """
    names = args.split()
    saved = [names.index(n) for n in save.split()]
    kept = [(n, names.index(n)) for n in keep.split()]

    def setup_context(ctx, inputs, output):
        for name, i in kept:
            setattr(ctx, name, inputs[i])
        if non_differentiable:
            ctx.mark_non_differentiable(*(output[i] for i in non_differentiable))
        ctx.save_for_backward(*(inputs[i] for i in saved), *(output[i] for i in outputs))

    torch.library.register_autograd(f"perceptual_ext::{op}", backward, setup_context=setup_context)
    if not double_backward:
        _no_double_backward(op, f"{op}_backward")


def _first_input_only(op: str, constants, why: str, first_grad):
    """The backward of an op that differentiates its first input only: ``first_grad(ctx, grad,
    *saved_tensors)`` when that input needs its gradient; a RuntimeError when one of the next
    ``len(constants)`` inputs (named in ``constants``; ``why`` they are constants) does."""
    names = ", ".join(constants[:-1]) + " and " + constants[-1] if len(constants) > 1 else constants[0]

    def backward(ctx, grad, *_output_grads):
        if any(ctx.needs_input_grad[1:1 + len(constants)]):
            raise RuntimeError(f"{op}: gradients with respect to {names} are not implemented ({why}); detach them")
        rest = (None,) * (len(ctx.needs_input_grad) - 1)
        if not ctx.needs_input_grad[0]:
            return (None,) + rest
        return (first_grad(ctx, grad.contiguous(), *ctx.saved_tensors),) + rest

    return backward


# gram ---------------------------------------------------------------------------------------

def _gram_scale(features, normalize: bool) -> float:
    c, length = features.shape[1], features.shape[2]
    return 1.0 / (c * length) if normalize and c * length > 0 else 1.0


def _gram_setup_context(ctx, inputs, output):
    features, normalize = inputs
    ctx.normalize = normalize
    ctx.save_for_backward(features if ctx.needs_input_grad[0] else None)


def _gram_backward(ctx, grad):
    (features,) = ctx.saved_tensors
    if features is None:
        return None, None
    return _OPS.gram_backward(grad.contiguous(), features, ctx.normalize), None


def _gram_double_backward(ctx, grad_out):
    # d features = s (dG + dG^T) psi is bilinear in (dG, psi); its adjoints are plain GEMMs.
    grad, features = ctx.saved_tensors
    s = _gram_scale(features, ctx.normalize)
    grad_grad = grad_features = None
    if ctx.needs_input_grad[0]:
        outer = grad_out @ features.mT
        grad_grad = s * (outer + outer.mT)
    if ctx.needs_input_grad[1]:
        grad_features = s * ((grad + grad.mT) @ grad_out)
    return grad_grad, grad_features, None


torch.library.register_autograd("perceptual_ext::gram", _gram_backward, setup_context=_gram_setup_context)
_register("gram_backward", _gram_double_backward, "grad features normalize", save="grad features", keep="normalize",
          double_backward=True)


# match_template -----------------------------------------------------------------------------

def _match_template_backward(ctx, grad):
    image, templ = ctx.saved_tensors
    if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
        return None, None, None
    grad_image, grad_templ = _OPS.match_template_backward(grad.contiguous(), image, templ, ctx.method)
    return (grad_image if ctx.needs_input_grad[0] else None,
            grad_templ if ctx.needs_input_grad[1] else None, None)


_register("match_template", _match_template_backward, "image templ method", save="image templ", keep="method")


# rff_patch_features -------------------------------------------------------------------------

_rff_backward = _first_input_only(
    "rff_patch_features", ("weight", "bias"), "they are fixed random features",
    lambda ctx, grad, x, weight, bias: _OPS.rff_patch_features_backward(grad, x, weight, bias, ctx.window,
                                                                       ctx.stride))
_register("rff_patch_features", _rff_backward, "x weight bias window stride", save="x weight bias",
          keep="window stride")


# scnn_features ------------------------------------------------------------------------------

def _scnn_first_grad(ctx, grad, x, first_weight, weights, masks):
    if masks.dim() != 4:
        raise RuntimeError("scnn_features: backward needs the ReLU masks; call the op with save_masks=True")
    return _OPS.scnn_features_backward(grad, x, first_weight, weights, masks, ctx.window, ctx.stride, ctx.patch_norm)


_scnn_backward = _first_input_only("scnn_features", ("first_weight", "first_bias", "weights", "biases"),
                                   "frozen random features", _scnn_first_grad)
_register("scnn_features", _scnn_backward,
          "x first_weight first_bias weights biases window stride patch_norm save_masks",
          save="x first_weight weights", outputs=(1,), keep="window stride patch_norm")  # output[1]: ReLU masks


# lpips_layer --------------------------------------------------------------------------------

def _lpips_layer_backward(ctx, grad):
    a, b, weight = ctx.saved_tensors
    need_a, need_b, need_weight = ctx.needs_input_grad[:3]
    grad_a = grad_b = grad_weight = None
    if need_a or need_b:
        grad_a, grad_b = _OPS.lpips_layer_backward(grad.contiguous(), a, b, weight, need_a, need_b)
        grad_a, grad_b = (grad_a if need_a else None), (grad_b if need_b else None)
    if need_weight:
        # sum over n, h, w of g d_c^2; composed (it needs the difference d), only when asked for.
        diff = (a / (a.square().sum(1, keepdim=True).sqrt() + 1e-10)
                - b / (b.square().sum(1, keepdim=True).sqrt() + 1e-10))
        grad_weight = (grad * diff.square()).sum(dim=(0, 2, 3))
    return grad_a, grad_b, grad_weight


# the inputs only: backward recomputes the norms
_register("lpips_layer", _lpips_layer_backward, "a b weight", save="a b weight")


# soft_encoded_cross_entropy ------------------------------------------------------------------

_sece_backward = _first_input_only(
    "soft_encoded_cross_entropy", ("ab", "bins", "weights"), "they are the target and its constants",
    lambda ctx, grad, logits, ab, bins, weights, lse: _OPS.soft_encoded_cross_entropy_backward(
        grad, logits, ab, bins, weights, lse, ctx.neighbors, ctx.sigma))
# output[1]: the per-pixel log-sum-exp of the logits, saved for the backward (not differentiable)
_register("soft_encoded_cross_entropy", _sece_backward, "logits ab bins weights neighbors sigma",
          save="logits ab bins weights", outputs=(1,), non_differentiable=(1,), keep="neighbors sigma")
