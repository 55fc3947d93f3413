"""Drop-in ``nn.Module`` losses (and their functional forms) built on ``perceptual_ext.ops``."""
from .style import GramLoss, StyleLoss, gram_loss, style_loss

__all__ = ["GramLoss", "StyleLoss", "gram_loss", "style_loss"]
