"""Affine preprocessing layers: Rescaling and Normalization (Keras 3).

Both are per-feature affine maps ``y = x * scale + offset``; fusion folds them into the first
weighted layer that follows.
"""

from __future__ import annotations

import numpy as np

from ..utils import check_numeric
from .base import Layer

__all__ = ["Rescaling", "Normalization"]


class Rescaling(Layer):
    """``y = x * scale + offset`` (scalars or arrays broadcastable to the input, e.g. per channel)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        scale_arr, offset_arr = np.asarray(scale, dtype=np.float64), np.asarray(offset, dtype=np.float64)
        if not (np.all(np.isfinite(scale_arr)) and np.all(np.isfinite(offset_arr))):
            raise ValueError(f"Rescaling: expected finite scale and offset. Received: scale={scale!r}, offset={offset!r}")
        super().__init__(**kwargs)
        self.scale = float(scale_arr) if scale_arr.ndim == 0 else scale_arr.tolist()
        self.offset = float(offset_arr) if offset_arr.ndim == 0 else offset_arr.tolist()

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return (x * np.asarray(self.scale, dtype=x.dtype) + np.asarray(self.offset, dtype=x.dtype)).astype(x.dtype, copy=False)

    def backward(self, dy):
        self._saved()
        return dy * np.asarray(self.scale, dtype=dy.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "offset": self.offset})
        return config


class Normalization(Layer):
    """Feature-wise standardisation ``y = (x - mean) / sqrt(max(variance, 1e-7))`` (Keras 3).

    ``axis`` (int or tuple, default -1) are the axes that keep separate statistics. ``mean`` and
    ``variance`` may be given, or computed from data with :meth:`adapt`. ``invert=True`` maps
    back: ``y = mean + x * sqrt(variance)``. Weights (non-trainable): ``[mean, variance]``, of the
    input's size along ``axis`` (1 elsewhere).
    """

    _EPSILON = 1e-7

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        if (mean is None) != (variance is None):
            raise ValueError("Normalization: pass both mean and variance, or neither (then call adapt()).")
        if axis is None:
            axis = ()
        self.axis = (axis,) if isinstance(axis, int) else tuple(int(a) for a in axis)
        super().__init__(**kwargs)
        self.invert = bool(invert)
        self.init_mean = None if mean is None else np.asarray(mean, dtype=np.float64).tolist()
        self.init_variance = None if variance is None else np.asarray(variance, dtype=np.float64).tolist()
        if self.init_variance is not None and np.any(np.asarray(self.init_variance) < 0):
            raise ValueError(f"Normalization: expected a non-negative variance. Received: variance={variance!r}")
        self.adapted = mean is not None

    def _stat_shape(self, input_shape):
        rank = len(input_shape)
        keep = {a % rank for a in self.axis}
        for a in self.axis:
            if not -rank <= a < rank or a % rank == 0:
                raise ValueError(f"{self.describe()}: axis {a} is out of range (or the batch axis) for input shape {tuple(input_shape)}.")
        shape = tuple(input_shape[i] if i in keep else 1 for i in range(1, rank))
        if any(d is None for d in shape):
            raise ValueError(f"{self.describe()}: the size along axis {self.axis} must be known. Received input_shape={tuple(input_shape)}")
        return shape

    def build(self, input_shape):
        shape = self._stat_shape(input_shape)
        self.add_weight("mean", shape, "zeros", trainable=False)
        self.add_weight("variance", shape, "ones", trainable=False)
        if self.init_mean is not None:
            self._state["mean"][...] = self._fit(self.init_mean, shape, "mean")
            self._state["variance"][...] = self._fit(self.init_variance, shape, "variance")

    def _fit(self, value, shape, name):
        """A given mean/variance as an array of the statistics' shape (same size: reshaped; else broadcast)."""
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == int(np.prod(shape)):
            return arr.reshape(shape)
        try:
            return np.broadcast_to(arr, shape)
        except ValueError as exc:
            raise ValueError(f"{self.describe()}: {name} of shape {arr.shape} does not fit the statistics shape {shape}.") from exc

    def adapt(self, data) -> None:
        """Compute mean and variance of ``data`` (an array, batch first) over the non-kept axes."""
        data = check_numeric(data, f"Layer '{self.name}' (Normalization).adapt")
        if data.ndim < 2 or data.shape[0] == 0:
            raise ValueError(f"{self.describe()}.adapt expects a non-empty array with a batch axis. Received shape {data.shape}.")
        if not self.built:
            self._build_for((None,) + data.shape[1:], np.float64 if data.dtype == np.float64 else None)
        shape = self._stat_shape(data.shape)
        reduce = tuple(i for i in range(data.ndim) if i == 0 or shape[i - 1] == 1)
        d = data.astype(np.float64)
        self._state["mean"][...] = d.mean(axis=reduce).reshape(shape)
        self._state["variance"][...] = d.var(axis=reduce).reshape(shape)
        self.adapted = True

    def _scale_offset(self, dtype):
        std = np.sqrt(np.maximum(self._state["variance"], self._EPSILON)).astype(dtype)
        mean = self._state["mean"].astype(dtype)
        return std, mean

    def forward(self, x, training=False):
        std, mean = self._scale_offset(x.dtype)
        self._save_for_backward(training, std)
        if self.invert:
            return mean + x * std
        return (x - mean) / std

    def backward(self, dy):
        (std,) = self._saved()
        return dy * std if self.invert else dy / std

    def get_config(self):
        config = super().get_config()
        config.update({"axis": list(self.axis), "mean": self.init_mean, "variance": self.init_variance, "invert": self.invert})
        return config
