"""Drop-in ``nn.Module`` losses (and their functional forms) built on ``perceptual_ext.ops``."""
from .ncc import NCCLoss, ncc_loss
from .style import GramLoss, StyleLoss, gram_loss, style_loss

__all__ = ["NCCLoss", "ncc_loss", "GramLoss", "StyleLoss", "gram_loss", "style_loss"]
