"""Element-wise activations (placeholder module: the activation issue fills it in)."""

from __future__ import annotations

import numpy as np

from .base import ActivationFunction, register_activation

__all__ = ["Linear", "ReLUFunction", "linear", "relu"]


class Linear(ActivationFunction):
    """``y = x``."""

    name = "linear"

    def forward(self, x):
        return x

    def backward(self, x, y, dy):
        return dy


class ReLUFunction(ActivationFunction):
    """``y = max(x, 0)``."""

    name = "relu"

    def forward(self, x):
        return np.maximum(x, 0)

    def backward(self, x, y, dy):
        return dy * (x > 0)


register_activation(Linear)
register_activation(ReLUFunction)


def linear(x):
    return Linear().forward(np.asarray(x))


def relu(x):
    return ReLUFunction().forward(np.asarray(x))
