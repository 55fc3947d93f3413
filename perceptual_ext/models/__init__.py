"""Networks: fixed feature extractors (re-exported) and trainable image transformation networks."""
from .transform import MODELS, SRCNN, StyleTransformNet, SuperResolutionNet, build_model

__all__ = ["MODELS", "SRCNN", "StyleTransformNet", "SuperResolutionNet", "build_model"]
