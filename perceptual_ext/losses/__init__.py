"""Drop-in ``nn.Module`` losses (and their functional forms) built on ``perceptual_ext.ops``."""
from .patch_mmd import MMDPlusPlus, PatchMMDLoss, patch_mmd_loss
from .style import GramLoss, StyleLoss, gram_loss, style_loss

__all__ = ["GramLoss", "StyleLoss", "gram_loss", "style_loss", "PatchMMDLoss", "MMDPlusPlus", "patch_mmd_loss"]
