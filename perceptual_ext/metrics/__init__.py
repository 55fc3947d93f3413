"""Image metrics and exact references (no learnable parameters): PSNR, SSIM (full-reference),
the sliced Wasserstein distance between image sets (Karras et al.), the exact patch MMD, and the
BAPPS protocol's 2AFC and JND scores (Zhang et al. 2018)."""
from .bapps import jnd_map, two_afc_score
from .patch_mmd import exact_patch_mmd
from .quality import psnr, ssim
from .swd import laplacian_pyramid, swd

__all__ = ["exact_patch_mmd", "jnd_map", "laplacian_pyramid", "psnr", "ssim", "swd", "two_afc_score"]
