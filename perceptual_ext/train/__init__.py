"""Training and image optimization.

Feed-forward networks (fast style transfer, super-resolution) share :mod:`.checkpoint` (atomic
checkpoints, exact resume), :mod:`.distributed` (DDP under torchrun) and :mod:`.loop` (the fit loop);
:mod:`.style`, :mod:`.superres` and :mod:`.apply` hold the tasks and inference. :mod:`.optimize` and
:mod:`.synthesis` optimize pixels: texture synthesis, style transfer by optimization, the GIM experiment.
"""
from .apply import load_transform_net, transform_files
from .checkpoint import load_checkpoint, save_checkpoint, write_json
from .optimize import OptimizeResult, optimize_image
from .style import train_style
from .superres import evaluate_sr, format_sr_table, train_sr
from .gim import GIMResult, gim_experiment
from .synthesis import StyleTransferObjective, style_transfer, synthesize_texture

__all__ = ["evaluate_sr", "format_sr_table", "load_checkpoint", "load_transform_net", "save_checkpoint",
           "train_sr", "train_style", "transform_files", "write_json",
           "optimize_image", "OptimizeResult", "synthesize_texture", "style_transfer", "StyleTransferObjective",
           "gim_experiment", "GIMResult"]
