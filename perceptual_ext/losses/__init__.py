"""Drop-in ``nn.Module`` losses (and their functional forms) built on ``perceptual_ext.ops``."""
from .gan import GANLoss, gan_loss, gradient_penalty
from .colorization import (ColorizationLoss, ab_bins, annealed_mean, colorization_loss, estimate_ab_prior,
                           nearest_bin, rebalance_weights, soft_encode)
from .lpips import LPIPS, lpips_loss
from .ncc import NCCLoss, ncc_loss
from .patch_mmd import MMDPlusPlus, PatchMMDLoss, patch_mmd_loss
from .perceptual import PerceptualLoss, TVLoss, total_variation
from .scnn import SCNNLoss, scnn_loss
from .style import GramLoss, StyleLoss, gram_loss, style_loss

__all__ = ["ColorizationLoss", "ab_bins", "annealed_mean", "colorization_loss", "estimate_ab_prior", "nearest_bin",
           "rebalance_weights", "soft_encode",
           "GramLoss", "LPIPS", "MMDPlusPlus", "NCCLoss", "PatchMMDLoss", "PerceptualLoss", "SCNNLoss", "StyleLoss",
           "TVLoss",
           "gram_loss", "lpips_loss", "ncc_loss", "patch_mmd_loss", "scnn_loss", "style_loss", "total_variation",
           "GANLoss", "gan_loss", "gradient_penalty"]
