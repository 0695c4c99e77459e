"""Weight constraints, as in Keras 3: applied to a weight after each optimizer step.

``constraint(w) -> new w``; the training loop writes the result back in place. Layers take
them as ``kernel_constraint=``/``bias_constraint=`` (names, config dicts or objects).
"""

from __future__ import annotations

import numpy as np

from .._registry import ObjectRegistry

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "serialize", "deserialize"]

_EPS = 1e-7


class Constraint:
    """Base class: ``__call__(w) -> array`` shaped like ``w``."""

    def __call__(self, w):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        if "axis" in config and isinstance(config["axis"], list):
            config = dict(config, axis=tuple(config["axis"]))
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


def _axis_config(axis):
    return list(axis) if isinstance(axis, tuple) else axis


class MaxNorm(Constraint):
    """Rescale so that the L2 norm along ``axis`` is at most ``max_value`` (Keras default axis 0)."""

    def __init__(self, max_value=2.0, axis=0):
        if max_value <= 0:
            raise ValueError(f"MaxNorm: expected max_value > 0. Received: max_value={max_value}")
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w):
        norms = np.sqrt(np.sum(np.square(w), axis=self.axis, keepdims=True))
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (_EPS + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": _axis_config(self.axis)}


class MinMaxNorm(Constraint):
    """Keep the L2 norm along ``axis`` in ``[min_value, max_value]``, moving a fraction ``rate`` of the way."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        if not 0 <= min_value <= max_value:
            raise ValueError(f"MinMaxNorm: expected 0 <= min_value <= max_value. Received: min_value={min_value}, max_value={max_value}")
        self.min_value, self.max_value, self.rate, self.axis = float(min_value), float(max_value), float(rate), axis

    def __call__(self, w):
        norms = np.sqrt(np.sum(np.square(w), axis=self.axis, keepdims=True))
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (_EPS + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": _axis_config(self.axis)}


class NonNeg(Constraint):
    """Zero out negative entries."""

    def __call__(self, w):
        return w * (w >= 0)


class UnitNorm(Constraint):
    """Divide by the L2 norm along ``axis``."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return w / (_EPS + np.sqrt(np.sum(np.square(w), axis=self.axis, keepdims=True)))

    def get_config(self):
        return {"axis": _axis_config(self.axis)}


_REGISTRY = ObjectRegistry("constraint", Constraint, {"max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm})
get = _REGISTRY.get
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize
