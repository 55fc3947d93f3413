"""Fixed feature extractors (no trainable parameters) that the losses use: the S-CNN of random
filters and VGG16 features (random or loaded from a torchvision-layout state dict)."""
from .scnn import SCNN
from .vgg import VGG16_LAYERS, VGG16Features

__all__ = ["SCNN", "VGG16Features", "VGG16_LAYERS"]
