"""Networks: the fixed feature extractors of :mod:`perceptual_ext.features`, re-exported here
beside the trainable image transformation networks and the colorization network."""
from ..features import SCNN, AlexNetFeatures, SqueezeNet11Features, VGG16Features
from .colorization import ColorizationNet
from .gan import GAN_MODELS, PatchDiscriminator, ResnetGenerator, UNetGenerator, build_gan_model
from .transform import MODELS, SRCNN, StyleTransformNet, SuperResolutionNet, build_model

__all__ = ["AlexNetFeatures", "ColorizationNet", "MODELS", "SCNN", "SRCNN", "SqueezeNet11Features",
           "StyleTransformNet", "SuperResolutionNet", "VGG16Features", "build_model",
           "GAN_MODELS", "PatchDiscriminator", "ResnetGenerator", "UNetGenerator", "build_gan_model"]
