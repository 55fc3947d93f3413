"""Image loading and saving, bundled sample images (scikit-image, offline), crops, training datasets,
the BAPPS perceptual-similarity dataset, and sRGB <-> Lab."""
from .bapps import BAPPS
from .color import lab_to_rgb, rgb_to_lab
from .datasets import ImageCrops, StepSampler, downsample, list_images, upsample_bicubic
from .pairs import PairedImages, UnpairedImages, sample_pairs, split_aligned, write_sample_pairs
from .images import COLOUR_SAMPLES, SAMPLE_IMAGES, image_grid, labelled_grid, load_image, sample_image, save_image

__all__ = ["BAPPS", "COLOUR_SAMPLES", "SAMPLE_IMAGES", "image_grid", "labelled_grid", "load_image", "sample_image",
           "save_image",
           "ImageCrops", "StepSampler", "downsample", "list_images", "upsample_bicubic",
           "PairedImages", "UnpairedImages", "sample_pairs", "split_aligned", "write_sample_pairs",
           "lab_to_rgb", "rgb_to_lab"]
