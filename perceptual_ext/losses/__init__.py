"""Drop-in ``nn.Module`` losses (and their functional forms) built on ``perceptual_ext.ops``."""
from .perceptual import PerceptualLoss, TVLoss, total_variation
from .scnn import SCNNLoss, scnn_loss
from .style import GramLoss, StyleLoss, gram_loss, style_loss

__all__ = ["GramLoss", "PerceptualLoss", "SCNNLoss", "StyleLoss", "TVLoss", "gram_loss", "scnn_loss", "style_loss",
           "total_variation"]
