"""Weight regularizers, as in Keras 3: a penalty added to the training loss, and its gradient.

A regularizer is called on a weight (or, as an activity regularizer, on a layer's output):
``reg(w) -> float`` is the penalty and ``reg.gradient(w) -> array`` its gradient. Layers take
them as ``kernel_regularizer=``, ``bias_regularizer=``, ``activity_regularizer=`` (names,
config dicts or objects); the training loop adds the penalties to the loss and their
gradients to the layers' gradients.
"""

from __future__ import annotations

import numpy as np

from .._registry import ObjectRegistry

__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "get", "serialize", "deserialize"]


def _check_factor(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not np.isfinite(value):
        raise ValueError(f"{owner}: expected {name} to be a non-negative finite number. Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: ``__call__(w) -> float`` and ``gradient(w) -> array`` shaped like ``w``."""

    def __call__(self, w) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient(self, w) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w**2)`` (Keras: no factor 1/2)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_factor(l1, "l1", type(self).__name__)
        self.l2 = _check_factor(l2, "l2", type(self).__name__)

    def __call__(self, w):
        w = np.asarray(w)
        out = 0.0
        if self.l1:
            out += self.l1 * float(np.sum(np.abs(w)))
        if self.l2:
            out += self.l2 * float(np.sum(np.square(w)))
        return out

    def gradient(self, w):
        w = np.asarray(w)
        g = np.zeros_like(w)
        if self.l1:
            g += self.l1 * np.sign(w)
        if self.l2:
            g += (2.0 * self.l2) * w
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``l1 * sum(|w|)`` (default 0.01); the gradient at 0 is taken as 0."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``l2 * sum(w**2)`` (default 0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Keras 3's orthogonality penalty on a 2-D kernel.

    ``mode="rows"``: normalise each row to unit L2 norm, ``P = N @ N.T``; ``"columns"``: the same on
    columns. Penalty: ``factor * 0.5 * sum(|P - diag(P)|) / (n * (n - 1) / 2)`` with ``n`` rows of ``P``.
    """

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _check_factor(factor, "factor", "OrthogonalRegularizer")
        if mode not in ("rows", "columns"):
            raise ValueError(f"OrthogonalRegularizer: expected mode to be 'rows' or 'columns'. Received: mode={mode!r}")
        self.mode = mode

    def _prepare(self, w):
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer: expected a 2-D weight. Received: shape={w.shape}")
        a = w if self.mode == "rows" else w.T
        norms = np.sqrt(np.maximum(np.sum(a * a, axis=1, keepdims=True), 1e-12))
        n = a / norms
        p = n @ n.T
        size = p.shape[0]
        off = 1.0 - np.eye(size, dtype=w.dtype)
        pairs = max(size * (size - 1) / 2.0, 1.0)
        return a, norms, n, p, off, pairs

    def __call__(self, w):
        _, _, _, p, off, pairs = self._prepare(w)
        return float(self.factor * 0.5 * np.sum(np.abs(p * off)) / pairs)

    def gradient(self, w):
        a, norms, n, p, off, pairs = self._prepare(w)
        dp = (self.factor * 0.5 / pairs) * np.sign(p) * off
        dn = (dp + dp.T) @ n
        # n = a / norm(a) row-wise (squared norm clamped at 1e-12, as Keras l2_normalize): dn -> da
        da = (dn - n * np.sum(dn * n, axis=1, keepdims=True)) / norms
        return da if self.mode == "rows" else da.T

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


_REGISTRY = ObjectRegistry("regularizer", Regularizer, {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2, "orthogonal_regularizer": OrthogonalRegularizer})
get = _REGISTRY.get
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize
