"""Image loading and saving, bundled sample images (scikit-image, offline), crops, training datasets,
and the BAPPS perceptual-similarity dataset."""
from .bapps import BAPPS
from .datasets import ImageCrops, StepSampler, downsample, list_images, upsample_bicubic
from .images import SAMPLE_IMAGES, image_grid, load_image, sample_image, save_image

__all__ = ["BAPPS", "SAMPLE_IMAGES", "image_grid", "load_image", "sample_image", "save_image",
           "ImageCrops", "StepSampler", "downsample", "list_images", "upsample_bicubic"]
