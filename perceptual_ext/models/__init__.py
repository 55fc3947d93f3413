"""Networks: the fixed feature extractors of :mod:`perceptual_ext.features`, re-exported here
beside the trainable ones (transform nets, discriminators)."""
from ..features import SCNN, VGG16Features

__all__ = ["SCNN", "VGG16Features"]
