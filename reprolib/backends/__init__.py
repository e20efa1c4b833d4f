"""Segmentation and resynthesis backends: interfaces, the embedded trainable nets, and the name registry.

Real architectures (``deepwv3plus``, ``icnet``, ``ccfpse``, ``spade``) live in their own sub-modules and
are imported lazily by the registry, so importing this package stays cheap.
"""

from reprolib.backends.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResynthesisBackend,
    SegmentationBackend,
    imagenet_denormalize,
    imagenet_normalize,
)
from reprolib.backends.embedded import (
    EmbeddedGenerator,
    EmbeddedSegmentation,
    build_generator,
    build_segmentation,
    load_embedded_resynthesis,
    load_embedded_segmentation,
    module_fingerprint,
    save_embedded,
)
from reprolib.backends.registry import (
    CHECKPOINT_ENV,
    COMBOS,
    EMBEDDED_DIR_ENV,
    ORIGINAL_STATE_DICT_NAMES,
    RESYNTHESIS_NAMES,
    SEGMENTATION_NAMES,
    from_original_state_dict,
    get_combo,
    get_resynthesis,
    get_segmentation,
)

__all__ = [
    "CHECKPOINT_ENV",
    "COMBOS",
    "EMBEDDED_DIR_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ORIGINAL_STATE_DICT_NAMES",
    "RESYNTHESIS_NAMES",
    "SEGMENTATION_NAMES",
    "EmbeddedGenerator",
    "EmbeddedSegmentation",
    "ResynthesisBackend",
    "SegmentationBackend",
    "build_generator",
    "build_segmentation",
    "from_original_state_dict",
    "get_combo",
    "get_resynthesis",
    "get_segmentation",
    "imagenet_denormalize",
    "imagenet_normalize",
    "load_embedded_resynthesis",
    "load_embedded_segmentation",
    "module_fingerprint",
    "save_embedded",
]
