"""Typed wrappers over the compiled operators ``torch.ops.perceptual_ext.*``.

Each wrapper validates its arguments, reshapes convenience layouts, and calls the operator;
autograd and fake (meta) kernels are registered beside it so the ops work with
``torch.autograd``, ``torch.compile`` and ``torch.library.opcheck``.
"""
from . import _autograd  # noqa: F401  (every op's backward and double backward)
from .gram import gram
from .lpips_layer import lpips_layer
from .match_template import METHODS, find_peaks, match_template, release_fft_workspace
from .rff_patch import rff_patch_features
from .scnn import scnn_features
from .soft_encoded_cross_entropy import soft_encoded_cross_entropy

__all__ = ["METHODS", "find_peaks", "gram", "lpips_layer", "match_template", "release_fft_workspace",
           "rff_patch_features", "scnn_features", "soft_encoded_cross_entropy"]
