"""Fixed feature extractors (no trainable parameters) that the losses use: the S-CNN of random
filters, and VGG16, AlexNet and SqueezeNet 1.1 features (random or loaded from a torchvision-layout
state dict)."""
from .alexnet import ALEXNET_LAYERS, AlexNetFeatures
from .scnn import SCNN
from .squeezenet import SQUEEZENET_LAYERS, SqueezeNet11Features
from .vgg import VGG16_LAYERS, VGG16Features

__all__ = ["ALEXNET_LAYERS", "AlexNetFeatures", "SCNN", "SQUEEZENET_LAYERS", "SqueezeNet11Features", "VGG16Features",
           "VGG16_LAYERS"]
