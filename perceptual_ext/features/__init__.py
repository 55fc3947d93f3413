"""Fixed feature extractors (no trainable parameters) that the losses use: the S-CNN of random
filters, VGG16 features (random or loaded from a torchvision-layout state dict) and the FID
Inception v3 (loaded from pytorch-fid's weight file)."""
from .inception import FIDInceptionV3
from .scnn import SCNN
from .vgg import VGG16_LAYERS, VGG16Features

__all__ = ["FIDInceptionV3", "SCNN", "VGG16Features", "VGG16_LAYERS"]
