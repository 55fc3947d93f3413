"""Image loading and saving, bundled sample images (scikit-image, offline), crops."""
from .images import SAMPLE_IMAGES, image_grid, load_image, sample_image, save_image

__all__ = ["SAMPLE_IMAGES", "image_grid", "load_image", "sample_image", "save_image"]
