"""Image optimization and training: the pixel-optimization loop, texture synthesis, style
transfer by optimization and the GIM experiment."""
from .optimize import OptimizeResult, optimize_image
from .synthesis import GIMResult, StyleTransferObjective, gim_experiment, style_transfer, synthesize_texture

__all__ = ["optimize_image", "OptimizeResult", "synthesize_texture", "style_transfer", "StyleTransferObjective",
           "gim_experiment", "GIMResult"]
