"""Image quality metrics: PSNR, SSIM (full-reference) and the sliced Wasserstein distance (SWD)
between sets of images (Karras et al.'s patch-statistics metric)."""
from .quality import psnr, ssim
from .swd import laplacian_pyramid, swd

__all__ = ["psnr", "ssim", "swd", "laplacian_pyramid"]
