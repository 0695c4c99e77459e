"""Layers: the base contract and every layer family (one module per family)."""

from . import (activation, attention, composite, convolution, embedding, merging, normalization, pooling, preprocessing,
               recurrent, regularization, resizing)
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .base import InputSpec, Layer, check_input, deserialize, get_layer_class, register_layer, serialize
from .composite import *  # noqa: F401,F403
from .convolution import *  # noqa: F401,F403
from .core import Dense, Identity, Input, InputLayer
from .embedding import *  # noqa: F401,F403
from .merging import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .preprocessing import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .regularization import *  # noqa: F401,F403
from .resizing import *  # noqa: F401,F403
from .reshaping import Flatten, Permute, RepeatVector, Reshape

__all__ = [
    "Layer", "InputSpec", "check_input", "register_layer", "get_layer_class", "serialize", "deserialize",
    "Input", "InputLayer", "Identity", "Dense", "Flatten", "Reshape", "Permute", "RepeatVector",
    *activation.__all__, *attention.__all__, *composite.__all__, *convolution.__all__, *embedding.__all__,
    *merging.__all__, *normalization.__all__, *pooling.__all__, *preprocessing.__all__, *recurrent.__all__,
    *resizing.__all__,
    *regularization.__all__,
]
