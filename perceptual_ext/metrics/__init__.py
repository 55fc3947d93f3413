"""Image metrics and exact references (no learnable parameters)."""
from .patch_mmd import exact_patch_mmd

__all__ = ["exact_patch_mmd"]
