"""Padding, cropping and up-sampling of sequences and images (channels-last), as in Keras 3.

1-D layers take ``(batch, steps, channels)``, 2-D layers ``(batch, height, width, channels)``,
3-D layers ``(batch, d1, d2, d3, channels)``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .base import InputSpec, Layer

__all__ = ["ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
           "UpSampling1D", "UpSampling2D", "UpSampling3D"]


def _pairs(value, n, name, owner):
    """Keras padding/cropping argument -> ``((before, after),) * n`` of non-negative ints."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        out = ((int(value), int(value)),) * n
    else:
        try:
            items = list(value)
        except TypeError as exc:
            raise TypeError(f"{owner}: expected {name} to be an int or a tuple. Received: {name}={value!r}") from exc
        if n == 1 and len(items) == 2 and all(is_int(v) for v in items):
            out = ((int(items[0]), int(items[1])),)
        elif len(items) == n and all(is_int(v) for v in items):
            out = tuple((int(v), int(v)) for v in items)
        elif len(items) == n and all(not is_int(v) and len(list(v)) == 2 and all(is_int(u) for u in v) for v in items):
            out = tuple((int(a), int(b)) for a, b in items)
        else:
            raise ValueError(f"{owner}: expected {name} as an int, {n} ints or {n} pairs of ints. Received: {name}={value!r}")
    if any(v < 0 for pair in out for v in pair):
        raise ValueError(f"{owner}: expected non-negative values in {name}. Received: {name}={value!r}")
    return out


class _ZeroPadding(Layer):
    _rank = 1

    def __init__(self, padding=1, **kwargs):
        kwargs.pop("data_format", None)
        self.padding = _pairs(padding, self._rank, "padding", type(self).__name__)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self._rank + 2)

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return np.pad(x, ((0, 0),) + self.padding + ((0, 0),))

    def backward(self, dy):
        self._saved()
        index = (slice(None),) + tuple(slice(a, dy.shape[i + 1] - b) for i, (a, b) in enumerate(self.padding))
        return dy[index]

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if d is None else d + a + b for d, (a, b) in zip(input_shape[1:-1], self.padding))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config["padding"] = [list(p) for p in self.padding]
        return config


class ZeroPadding1D(_ZeroPadding):
    """Pad the steps axis with zeros: ``padding`` int or ``(left, right)``."""

    _rank = 1


class ZeroPadding2D(_ZeroPadding):
    """Pad height and width with zeros: int, ``(h, w)`` or ``((top, bottom), (left, right))``."""

    _rank = 2


class ZeroPadding3D(_ZeroPadding):
    """Pad the three spatial axes with zeros."""

    _rank = 3


class _Cropping(Layer):
    _rank = 1

    def __init__(self, cropping=1, **kwargs):
        kwargs.pop("data_format", None)
        self.cropping = _pairs(cropping, self._rank, "cropping", type(self).__name__)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self._rank + 2)

    def build(self, input_shape):
        for d, (a, b) in zip(input_shape[1:-1], self.cropping):
            if d is not None and a + b >= d:
                raise ValueError(
                    f"{self.describe()}: cropping {self.cropping} leaves nothing of input shape {tuple(input_shape)}."
                )

    def forward(self, x, training=False):
        self.build(x.shape)
        self._save_for_backward(training, x.shape)
        index = (slice(None),) + tuple(slice(a, x.shape[i + 1] - b) for i, (a, b) in enumerate(self.cropping))
        return x[index]

    def backward(self, dy):
        (shape,) = self._saved()
        return np.pad(dy, ((0, 0),) + self.cropping + ((0, 0),))

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if d is None else d - a - b for d, (a, b) in zip(input_shape[1:-1], self.cropping))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config["cropping"] = [list(p) for p in self.cropping]
        return config


class Cropping1D(_Cropping):
    """Crop the steps axis: ``cropping`` int or ``(left, right)``."""

    _rank = 1


class Cropping2D(_Cropping):
    """Crop height and width: int, ``(h, w)`` or ``((top, bottom), (left, right))``."""

    _rank = 2


class Cropping3D(_Cropping):
    """Crop the three spatial axes."""

    _rank = 3


class _UpSampling(Layer):
    _rank = 1

    def __init__(self, size=2, interpolation="nearest", **kwargs):
        kwargs.pop("data_format", None)
        owner = type(self).__name__
        if isinstance(size, numbers.Integral) and not isinstance(size, bool):
            size = (int(size),) * self._rank
        try:
            size = tuple(int(s) for s in size)
        except TypeError as exc:
            raise TypeError(f"{owner}: expected size to be an int or a tuple of {self._rank} ints. Received: size={size!r}") from exc
        if len(size) != self._rank or any(s <= 0 for s in size):
            raise ValueError(f"{owner}: expected size as {self._rank} positive ints. Received: size={size}")
        if interpolation != "nearest":
            raise ValueError(
                f"{owner}: only interpolation='nearest' is implemented. Received: interpolation={interpolation!r}"
            )
        super().__init__(**kwargs)
        self.size = size
        self.interpolation = interpolation
        self.input_spec = InputSpec(ndim=self._rank + 2)

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        y = x
        for axis, s in enumerate(self.size, start=1):
            if s > 1:
                y = np.repeat(y, s, axis=axis)
        return y

    def backward(self, dy):
        self._saved()
        # every input cell received `prod(size)` copies: sum each block
        shape = [dy.shape[0]]
        for d, s in zip(dy.shape[1:-1], self.size):
            shape += [d // s, s]
        shape.append(dy.shape[-1])
        blocks = dy.reshape(shape)
        return blocks.sum(axis=tuple(range(2, 2 * self._rank + 1, 2)))

    def compute_output_shape(self, input_shape):
        spatial = tuple(None if d is None else d * s for d, s in zip(input_shape[1:-1], self.size))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"size": list(self.size), "interpolation": self.interpolation})
        return config


class UpSampling1D(_UpSampling):
    """Repeat each step ``size`` times."""

    _rank = 1

    def __init__(self, size=2, **kwargs):
        super().__init__(size=size, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size[0]
        config.pop("interpolation")
        return config


class UpSampling2D(_UpSampling):
    """Repeat rows and columns ``size = (sh, sw)`` times (nearest neighbour)."""

    _rank = 2


class UpSampling3D(_UpSampling):
    """Repeat along the three spatial axes."""

    _rank = 3

    def __init__(self, size=2, **kwargs):
        super().__init__(size=size, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("interpolation")
        return config
