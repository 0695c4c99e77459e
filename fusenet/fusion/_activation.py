"""Element-wise activations inside fused layers: which layers count as one, and applying them in
place on a fresh GEMM/conv output (shared by the Dense, conv and transformer families)."""

from __future__ import annotations

import numpy as np

from ..activations._smooth import gelu_float32_inplace
from ..layers.activation import _FunctionLayer

__all__ = ["activation_of", "is_plain_relu", "apply_activation_", "activation_backward"]


def activation_of(layer):
    """The element-wise ActivationFunction applied by an activation layer, or ``None``."""
    if isinstance(layer, _FunctionLayer) and getattr(layer.function, "elementwise", False):
        return layer.function
    return None


def is_plain_relu(fn) -> bool:
    """``max(x, 0)`` exactly (so it can run in place with ``np.maximum(..., out=)``)."""
    if fn is None or fn.name != "relu":
        return False
    config = fn.get_config()
    return not any(config.get(k) for k in ("negative_slope", "max_value", "threshold"))


def _is_exact_gelu_float32(fn, z) -> bool:
    return (fn.name == "gelu" and not getattr(fn, "approximate", True) and z.dtype == np.float32
            and z.flags.c_contiguous)


def apply_activation_(fn, z, keep_input: bool = False):
    """``fn(z)``, in place into ``z`` for linear and ReLU (whose backward reads only the output) and,
    unless ``keep_input`` (training: the backward needs ``z``), the float32 exact GELU (bit for bit
    the activation's own values); otherwise the activation's own forward. Returns the output."""
    if fn is None or fn.name == "linear":
        return z
    if is_plain_relu(fn):
        return np.maximum(z, 0, out=z)
    if not keep_input and _is_exact_gelu_float32(fn, z):
        return gelu_float32_inplace(z)
    return fn.forward(z)


def activation_backward(fn, pre, post, g):
    """The activation's derivative applied to the gradient ``g`` (which may be overwritten)."""
    if fn is None or fn.name == "linear":
        return g
    if is_plain_relu(fn):
        g *= post > 0
        return g
    return fn.backward(pre, post, g)
