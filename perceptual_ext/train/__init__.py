"""Training and image optimization.

Feed-forward networks (fast style transfer, super-resolution, colorization) share :mod:`.checkpoint` (atomic
checkpoints, exact resume), :mod:`.distributed` (DDP under torchrun) and :mod:`.loop` (the fit loop);
:mod:`.style`, :mod:`.superres`, :mod:`.colorization` and :mod:`.apply` hold the tasks and inference.
:mod:`.optimize` and :mod:`.synthesis` optimize pixels: texture synthesis, style transfer by optimization,
the GIM experiment. :mod:`.gan` trains pix2pix and CycleGAN on the same machinery (:mod:`.image_pool`:
their image history).
"""
from .apply import load_transform_net, transform_files
from .colorization import colorize_files, load_colorization_net, train_colorization
from .checkpoint import load_checkpoint, save_checkpoint, write_json
from .cyclegan import train_cyclegan
from .gan_translate import load_gan_generator, translate_files
from .image_pool import ImagePool
from .optimize import OptimizeResult, optimize_image
from .pix2pix import train_pix2pix
from .style import train_style
from .superres import evaluate_sr, format_sr_table, train_sr
from .gim import GIMResult, gim_experiment
from .synthesis import StyleTransferObjective, style_transfer, synthesize_texture, synthesize_texture_in_phases

__all__ = ["evaluate_sr", "format_sr_table", "load_checkpoint", "load_transform_net", "save_checkpoint",
           "train_sr", "train_style", "transform_files", "write_json",
           "train_colorization", "load_colorization_net", "colorize_files",
           "optimize_image", "OptimizeResult", "synthesize_texture", "synthesize_texture_in_phases", "style_transfer",
           "StyleTransferObjective",
           "gim_experiment", "GIMResult",
           "ImagePool", "load_gan_generator", "train_cyclegan", "train_pix2pix", "translate_files"]
