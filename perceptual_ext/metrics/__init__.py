"""Image metrics and exact references (no learnable parameters): PSNR, SSIM (full-reference),
the sliced Wasserstein distance between image sets (Karras et al.), the exact patch MMD, and FID/KID
(streaming Inception feature statistics, the exact Fréchet distance)."""
from .fid import FeatureStatistics, compute_features, fid, frechet_distance, kid, trace_sqrt_product
from .patch_mmd import exact_patch_mmd
from .quality import psnr, ssim
from .swd import laplacian_pyramid, swd

__all__ = ["FeatureStatistics", "compute_features", "exact_patch_mmd", "fid", "frechet_distance", "kid",
           "trace_sqrt_product", "laplacian_pyramid", "psnr", "ssim", "swd"]
