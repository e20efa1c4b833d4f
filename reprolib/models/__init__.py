"""The spatial-aware dissimilarity network, its building blocks and original-checkpoint loading."""

from .dissimilarity import UNCERTAINTY_MAPS, DissimilarityConfig, DissimilarityNet, count_parameters
from .encoders import ResNetPyramid, VGGPyramid, build_encoder
from .original import from_original_state_dict, to_original_state_dict, variant_config
from .pretrained import find_imagenet_checkpoint, load_imagenet_state_dict

__all__ = [
    "UNCERTAINTY_MAPS",
    "DissimilarityConfig",
    "DissimilarityNet",
    "ResNetPyramid",
    "VGGPyramid",
    "build_encoder",
    "count_parameters",
    "find_imagenet_checkpoint",
    "from_original_state_dict",
    "load_imagenet_state_dict",
    "to_original_state_dict",
    "variant_config",
]
