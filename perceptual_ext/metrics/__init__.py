"""Image metrics and exact references (no learnable parameters): PSNR, SSIM (full-reference),
the sliced Wasserstein distance between image sets (Karras et al.), the exact patch MMD, the
BAPPS protocol's 2AFC and JND scores (Zhang et al. 2018), and FID/KID (streaming Inception feature
statistics, the exact Fréchet distance)."""
from .bapps import jnd_map, two_afc_score
from .fid import FeatureStatistics, frechet_distance, kid, trace_sqrt_product
from .fid_images import compute_features, fid
from .patch_mmd import exact_patch_mmd
from .quality import psnr, ssim
from .swd import laplacian_pyramid, swd

__all__ = ["FeatureStatistics", "compute_features", "exact_patch_mmd", "fid", "frechet_distance", "jnd_map", "kid",
           "laplacian_pyramid", "psnr", "ssim", "swd", "trace_sqrt_product", "two_afc_score"]
