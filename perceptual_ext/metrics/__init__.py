"""Image metrics and exact references (no learnable parameters): PSNR, SSIM (full-reference),
the sliced Wasserstein distance between image sets (Karras et al.) and the exact patch MMD."""
from .patch_mmd import exact_patch_mmd
from .quality import psnr, ssim
from .swd import laplacian_pyramid, swd

__all__ = ["exact_patch_mmd", "laplacian_pyramid", "psnr", "ssim", "swd"]
