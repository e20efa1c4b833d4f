"""Uncertainty maps: softmax entropy H, softmax distance D (from segmentation logits) and perceptual
difference V (VGG19 features of image vs resynthesis). All return (B,1,H,W) in [0,1]."""

from .perceptual import ORIGINAL_WEIGHTS, PerceptualDifference
from .uncertainty import quantize_8bit, softmax_distance, softmax_entropy

__all__ = ["ORIGINAL_WEIGHTS", "PerceptualDifference", "quantize_8bit", "softmax_distance", "softmax_entropy"]
