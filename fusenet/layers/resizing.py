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


def _pad(x: np.ndarray, pairs) -> np.ndarray:
    return np.pad(x, ((0, 0),) + pairs + ((0, 0),))


def _crop(x: np.ndarray, pairs) -> np.ndarray:
    return x[(slice(None),) + tuple(slice(a, x.shape[i + 1] - b) for i, (a, b) in enumerate(pairs))]


class _Edges(Layer):
    """Adds (padding) or removes (cropping) ``(before, after)`` positions on each spatial axis; the
    backward of one is the other. Subclasses set ``_arg`` (the Keras argument's name) and ``_grows``."""

    _rank = 1
    _arg = "padding"
    _grows = True

    def __init__(self, amount, **kwargs):
        kwargs.pop("data_format", None)
        setattr(self, self._arg, _pairs(amount, self._rank, self._arg, type(self).__name__))
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=self._rank + 2)

    @property
    def _edges(self):
        return getattr(self, self._arg)

    def build(self, input_shape):
        if self._grows:
            return
        for d, (a, b) in zip(input_shape[1:-1], self._edges):
            if d is not None and a + b >= d:
                raise ValueError(
                    f"{self.describe()}: {self._arg} {self._edges} leaves nothing of input shape {tuple(input_shape)}."
                )

    def forward(self, x, training=False):
        self.build(x.shape)
        self._save_for_backward(training, True)
        return (_pad if self._grows else _crop)(x, self._edges)

    def backward(self, dy):
        self._saved()
        return (_crop if self._grows else _pad)(dy, self._edges)

    def compute_output_shape(self, input_shape):
        sign = 1 if self._grows else -1
        spatial = tuple(None if d is None else d + sign * (a + b) for d, (a, b) in zip(input_shape[1:-1], self._edges))
        return (input_shape[0],) + spatial + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config[self._arg] = [list(p) for p in self._edges]
        return config


class _ZeroPadding(_Edges):
    _arg, _grows = "padding", True

    def __init__(self, padding=1, **kwargs):
        super().__init__(padding, **kwargs)


class ZeroPadding1D(_ZeroPadding):
    """Pad the steps axis with zeros: ``padding`` int or ``(left, right)``."""

    _rank = 1


class ZeroPadding2D(_ZeroPadding):
    """Pad height and width with zeros: int, ``(h, w)`` or ``((top, bottom), (left, right))``."""

    _rank = 2


class ZeroPadding3D(_ZeroPadding):
    """Pad the three spatial axes with zeros."""

    _rank = 3


class _Cropping(_Edges):
    _arg, _grows = "cropping", False

    def __init__(self, cropping=1, **kwargs):
        super().__init__(cropping, **kwargs)


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
