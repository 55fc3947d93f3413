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


def _gram_backward_setup_context(ctx, inputs, output):
    grad, features, normalize = inputs
    ctx.normalize = normalize
    ctx.save_for_backward(grad, features)


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
torch.library.register_autograd(
    "perceptual_ext::gram_backward", _gram_double_backward, setup_context=_gram_backward_setup_context)


# match_template -----------------------------------------------------------------------------

def _match_template_setup_context(ctx, inputs, output):
    image, templ, method = inputs
    ctx.method = method
    ctx.save_for_backward(image, templ)


def _match_template_backward(ctx, grad):
    image, templ = ctx.saved_tensors
    if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
        return None, None, None
    grad_image, grad_templ = _OPS.match_template_backward(grad.contiguous(), image, templ, ctx.method)
    return (grad_image if ctx.needs_input_grad[0] else None,
            grad_templ if ctx.needs_input_grad[1] else None, None)


torch.library.register_autograd("perceptual_ext::match_template", _match_template_backward,
                                setup_context=_match_template_setup_context)
_no_double_backward("match_template", "match_template_backward")


# rff_patch_features -------------------------------------------------------------------------

def _rff_setup_context(ctx, inputs, output):
    x, weight, bias, window, stride = inputs
    ctx.window, ctx.stride = window, stride
    ctx.save_for_backward(x, weight, bias)


def _rff_backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        raise RuntimeError("rff_patch_features: gradients with respect to weight and bias are not implemented "
                           "(they are fixed random features)")
    grad_x = None
    if ctx.needs_input_grad[0]:
        grad_x = _OPS.rff_patch_features_backward(grad.contiguous(), x, weight, bias, ctx.window, ctx.stride)
    return grad_x, None, None, None, None


torch.library.register_autograd("perceptual_ext::rff_patch_features", _rff_backward, setup_context=_rff_setup_context)
_no_double_backward("rff_patch_features", "rff_patch_features_backward")


# scnn_features ------------------------------------------------------------------------------

def _scnn_setup_context(ctx, inputs, output):
    x, first_weight, _, weights, _, window, stride, patch_norm, _ = inputs
    ctx.window, ctx.stride, ctx.patch_norm = window, stride, patch_norm
    ctx.save_for_backward(x, first_weight, weights, output[1])


def _scnn_backward(ctx, grad, _grad_masks):
    if any(ctx.needs_input_grad[1:5]):
        raise RuntimeError("scnn_features: gradients w.r.t. the weights are not supported (frozen random "
                           "features); detach first_weight, first_bias, weights and biases")
    if not ctx.needs_input_grad[0]:
        return (None,) * 9
    x, first_weight, weights, masks = ctx.saved_tensors
    if masks.dim() != 4:
        raise RuntimeError("scnn_features: backward needs the ReLU masks; call the op with save_masks=True")
    dx = _OPS.scnn_features_backward(grad.contiguous(), x, first_weight, weights, masks, ctx.window, ctx.stride,
                                     ctx.patch_norm)
    return (dx,) + (None,) * 8


torch.library.register_autograd("perceptual_ext::scnn_features", _scnn_backward, setup_context=_scnn_setup_context)
_no_double_backward("scnn_features", "scnn_features_backward")


# lpips_layer --------------------------------------------------------------------------------

def _lpips_layer_setup_context(ctx, inputs, output):
    a, b, weight = inputs
    ctx.save_for_backward(a, b, weight)  # the inputs only: backward recomputes the norms


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


torch.library.register_autograd("perceptual_ext::lpips_layer", _lpips_layer_backward,
                                setup_context=_lpips_layer_setup_context)
_no_double_backward("lpips_layer", "lpips_layer_backward")


# soft_encoded_cross_entropy ------------------------------------------------------------------

def _sece_setup_context(ctx, inputs, output):
    logits, ab, bins, weights, neighbors, sigma = inputs
    ctx.neighbors, ctx.sigma = neighbors, sigma
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(logits, ab, bins, weights, output[1])


def _sece_backward(ctx, grad, _grad_lse):
    if any(ctx.needs_input_grad[1:4]):
        raise RuntimeError("soft_encoded_cross_entropy: gradients with respect to ab, bins and weights are not "
                           "implemented (they are the target and its constants); detach them")
    if not ctx.needs_input_grad[0]:
        return (None,) * 6
    logits, ab, bins, weights, lse = ctx.saved_tensors
    grad_logits = _OPS.soft_encoded_cross_entropy_backward(grad.contiguous(), logits, ab, bins, weights, lse,
                                                           ctx.neighbors, ctx.sigma)
    return (grad_logits,) + (None,) * 5


torch.library.register_autograd("perceptual_ext::soft_encoded_cross_entropy", _sece_backward,
                                setup_context=_sece_setup_context)
_no_double_backward("soft_encoded_cross_entropy", "soft_encoded_cross_entropy_backward")
