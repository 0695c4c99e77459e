"""Activation functions: forward/derivative pairs, ``get(name)``.

The activation layers (``layers.Activation``, ``layers.ReLU``, ...) live in
``fusenet.layers.activation``.
"""

from .base import ActivationFunction, available, deserialize, get, register_activation, serialize
from .functions import *  # noqa: F401,F403
from .functions import __all__ as _functions_all

__all__ = ["ActivationFunction", "available", "deserialize", "get", "register_activation", "serialize", *_functions_all]
