"""Static layer fusion: pure folding math, fused layers, the pattern registry and LayerBuilder."""

from . import folding
from .base import FusedLayer
from .builder import LayerBuilder, report
from .dense import FusedAffineDense, FusedDenseActivation, FusedDenseBNActivation, FusedDenseDropoutActivation
from .engine import FusionReport, LayerSpec, Pattern, register_composite, register_pattern, registered_patterns, unregister_pattern
from . import conv, transformer
from .conv import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
from . import patterns, patterns_conv, patterns_transformer  # noqa: F401,E402  (register the default patterns)

__all__ = [
    "folding", "FusedLayer", "LayerBuilder", "report", "FusionReport", "LayerSpec", "Pattern", "register_pattern",
    "unregister_pattern", "registered_patterns", "register_composite",
    "FusedDenseBNActivation", "FusedDenseDropoutActivation", "FusedDenseActivation", "FusedAffineDense",
    *conv.__all__, *transformer.__all__,
]
