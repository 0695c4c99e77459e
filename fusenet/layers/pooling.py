"""Pooling layers: MaxPooling1D/2D/3D, AveragePooling1D/2D/3D, GlobalMax/GlobalAveragePooling1D/2D/3D.

Channels-last: inputs ``(batch, *spatial, channels)``; no weights. Window pooling takes
``pool_size``, ``strides`` (default ``pool_size``) and ``padding``; output size per spatial axis:
``"valid"``: ``ceil((in - pool + 1) / strides)``, ``"same"``: ``ceil(in / strides)`` with
``max((out - 1) * strides + pool - in, 0)`` padding positions, the extra one at the end (Keras).
Padding positions never win a max and are not counted in an average (the divisor counts only the
valid elements, as TensorFlow/Keras). Max pooling routes the gradient to the arg-max as PyTorch
does (the first maximal element of the window in row-major order; overlapping windows add up).
The arithmetic is in :mod:`fusenet.layers._pool_ops` (one strided-slice operation per window tap).

Global pooling reduces all spatial axes: ``(batch, *spatial, C)`` -> ``(batch, C)``, or
``(batch, 1, ..., 1, C)`` with ``keepdims=True``.
"""

from __future__ import annotations

import math

import numpy as np

from . import _pool_ops as pool_ops
from ._conv_args import (checked_geometry, normalize_data_format, normalize_padding, normalize_sizes, owner_name,
                         spatial_output_sizes)
from .base import InputSpec, Layer, check_input

__all__ = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
]


class _Pooling(Layer):
    """Window pooling over ``rank`` spatial axes; subclasses set ``rank`` and ``mode`` (``"max"``/``"average"``)."""

    rank = 2
    mode = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.pool_size = normalize_sizes(pool_size, self.rank, "pool_size", owner)
        self.strides = self.pool_size if strides is None else normalize_sizes(strides, self.rank, "strides", owner)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.data_format = normalize_data_format(data_format, owner)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def build(self, input_shape):
        check_input(self, input_shape, self.input_spec)
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        ones = (1,) * self.rank
        outs = spatial_output_sizes(self, input_shape, self.pool_size, self.strides, ones, self.padding, what="pool")
        return (input_shape[0],) + outs + (input_shape[-1],)

    def forward(self, x, training=False):
        geom = checked_geometry(self, x.shape, self.pool_size, self.strides, (1,) * self.rank, self.padding, what="pool")
        if self.mode == "max":
            y = pool_ops.max_pool_forward(x, geom)
            self._save_for_backward(training, geom, x, y)
        else:
            y = pool_ops.avg_pool_forward(x, geom)
            self._save_for_backward(training, geom, None, None)
        return y

    def backward(self, dy):
        geom, x, y = self._saved()
        dy = np.asarray(dy, dtype=self.dtype)
        if self.mode == "max":
            return pool_ops.max_pool_backward(dy, x, y, geom)
        return pool_ops.avg_pool_backward(dy, geom)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
        })
        return config


class MaxPooling1D(_Pooling):
    """Max over windows of ``pool_size`` steps: ``(batch, steps, C)`` -> ``(batch, out_steps, C)``."""

    rank, mode = 1, "max"


class MaxPooling2D(_Pooling):
    """Max over ``pool_size`` windows: ``(batch, h, w, C)`` -> ``(batch, oh, ow, C)``."""

    rank, mode = 2, "max"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(_Pooling):
    """Max over ``pool_size`` windows: ``(batch, d, h, w, C)`` -> ``(batch, od, oh, ow, C)``."""

    rank, mode = 3, "max"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_Pooling):
    """Mean over windows of ``pool_size`` steps (``"same"``: divisor = valid elements only)."""

    rank, mode = 1, "average"


class AveragePooling2D(_Pooling):
    """Mean over ``pool_size`` windows (``"same"``: divisor = valid elements only)."""

    rank, mode = 2, "average"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class AveragePooling3D(_Pooling):
    """Mean over ``pool_size`` windows (``"same"``: divisor = valid elements only)."""

    rank, mode = 3, "average"

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size, strides, padding, data_format, **kwargs)


class _GlobalPooling(Layer):
    """Reduce all ``rank`` spatial axes by max or mean; ``keepdims`` keeps them as size 1."""

    rank = 2
    mode = "max"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.data_format = normalize_data_format(data_format, owner)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{owner}: expected keepdims to be a bool. Received: keepdims={keepdims!r}")
        self.keepdims = bool(keepdims)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def build(self, input_shape):
        check_input(self, input_shape, self.input_spec)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.keepdims:
            return (input_shape[0],) + (1,) * self.rank + (input_shape[-1],)
        return (input_shape[0], input_shape[-1])

    def forward(self, x, training=False):
        n, c = x.shape[0], x.shape[-1]
        flat = x.reshape(n, -1, c)
        if self.mode == "max":
            if training:
                argmax = flat.argmax(axis=1)
                y = np.take_along_axis(flat, argmax[:, None, :], axis=1)[:, 0, :]
                self._save_for_backward(training, x.shape, argmax)
            else:
                y = flat.max(axis=1)
                self._save_for_backward(training)
        else:
            y = flat.mean(axis=1)
            self._save_for_backward(training, x.shape, None)
        return y.reshape(self.compute_output_shape(x.shape))

    def backward(self, dy):
        shape, argmax = self._saved()
        n, c = shape[0], shape[-1]
        dy = np.asarray(dy, dtype=self.dtype).reshape(n, c)
        size = math.prod(shape[1:-1])
        if self.mode == "max":
            dx = np.zeros((n, size, c), dtype=dy.dtype)
            np.put_along_axis(dx, argmax[:, None, :], dy[:, None, :], axis=1)
        else:
            dx = np.broadcast_to((dy / size)[:, None, :], (n, size, c)).copy()
        return dx.reshape(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over time: ``(batch, steps, C)`` -> ``(batch, C)``; the gradient goes to the first maximal step."""

    rank, mode = 1, "max"


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over height and width: ``(batch, h, w, C)`` -> ``(batch, C)``; gradient to the first (row-major) maximum."""

    rank, mode = 2, "max"


class GlobalMaxPooling3D(_GlobalPooling):
    """Max over the three spatial axes: ``(batch, d, h, w, C)`` -> ``(batch, C)``."""

    rank, mode = 3, "max"


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over time: ``(batch, steps, C)`` -> ``(batch, C)``."""

    rank, mode = 1, "average"


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width: ``(batch, h, w, C)`` -> ``(batch, C)``."""

    rank, mode = 2, "average"


class GlobalAveragePooling3D(_GlobalPooling):
    """Mean over the three spatial axes: ``(batch, d, h, w, C)`` -> ``(batch, C)``."""

    rank, mode = 3, "average"
