"""Layers: the base contract and every layer family."""

from .base import InputSpec, Layer, check_input, deserialize, get_layer_class, register_layer, serialize
from .core import Dense, Identity, Input, InputLayer
from .regularization import Dropout
from .reshaping import Flatten, Permute, RepeatVector, Reshape

__all__ = [
    "Layer", "InputSpec", "check_input", "register_layer", "get_layer_class", "serialize", "deserialize",
    "Input", "InputLayer", "Identity", "Dense", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector",
]
