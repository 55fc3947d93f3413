"""Training and image optimization: feed-forward transformation networks (fast style transfer,
super-resolution); the pixel-optimization loop, texture synthesis, style transfer by optimization
and the GIM experiment."""
from .feedforward import (evaluate_sr, format_sr_table, load_checkpoint, load_transform_net, save_checkpoint,
                          train_sr, train_style, transform_files)
from .image_pool import ImagePool
from .optimize import OptimizeResult, optimize_image
from .synthesis import GIMResult, StyleTransferObjective, gim_experiment, style_transfer, synthesize_texture

__all__ = ["evaluate_sr", "format_sr_table", "load_checkpoint", "load_transform_net", "save_checkpoint",
           "train_sr", "train_style", "transform_files",
           "optimize_image", "OptimizeResult", "synthesize_texture", "style_transfer", "StyleTransferObjective",
           "gim_experiment", "GIMResult", "ImagePool"]
