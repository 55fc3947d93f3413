"""Training: feed-forward transformation networks (fast style transfer, super-resolution)."""
from .feedforward import (evaluate_sr, format_sr_table, load_checkpoint, load_transform_net, save_checkpoint,
                          train_sr, train_style, transform_files)

__all__ = ["evaluate_sr", "format_sr_table", "load_checkpoint", "load_transform_net", "save_checkpoint",
           "train_sr", "train_style", "transform_files"]
