"""Layers that only move data: Flatten, Reshape, Permute, RepeatVector."""

from __future__ import annotations

import math

import numpy as np

from ..utils import check_positive_int
from .base import InputSpec, Layer

__all__ = ["Flatten", "Reshape", "Permute", "RepeatVector"]


class Flatten(Layer):
    """``(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)`` in C order (channels-last, as Keras)."""

    def __init__(self, **kwargs):
        kwargs.pop("data_format", None)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(min_ndim=1)

    def forward(self, x, training=False):
        self._save_for_backward(training, x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        (shape,) = self._saved()
        return dy.reshape(shape)

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (batch dimension kept; one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        try:
            target_shape = tuple(int(d) for d in target_shape)
        except TypeError as exc:
            raise TypeError(f"Reshape: expected target_shape to be a tuple of ints. Received: target_shape={target_shape!r}") from exc
        if sum(d == -1 for d in target_shape) > 1 or any(d == 0 or d < -1 for d in target_shape):
            raise ValueError(
                f"Reshape: expected target_shape of positive ints with at most one -1. Received: target_shape={target_shape}"
            )
        super().__init__(**kwargs)
        self.target_shape = target_shape

    def _resolve(self, input_shape):
        rest = input_shape[1:]
        known = math.prod(d for d in self.target_shape if d != -1)
        if any(d is None for d in rest):
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(rest)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(
                    f"{self.describe()}: cannot reshape input of shape {tuple(input_shape)} to {self.target_shape}: "
                    f"{size} values per sample are not divisible by {known}."
                )
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise ValueError(
                f"{self.describe()}: cannot reshape input of shape {tuple(input_shape)} to {self.target_shape}: "
                f"{size} values per sample, {known} expected."
            )
        return self.target_shape

    def build(self, input_shape):
        self._resolve(input_shape)

    def forward(self, x, training=False):
        target = self._resolve(x.shape)
        self._save_for_backward(training, x.shape)
        return x.reshape((x.shape[0],) + target)

    def backward(self, dy):
        (shape,) = self._saved()
        return dy.reshape(shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._resolve(input_shape)

    def get_config(self):
        config = super().get_config()
        config["target_shape"] = list(self.target_shape)
        return config


class Permute(Layer):
    """Permute the non-batch axes: ``dims`` is a permutation of ``1..rank-1`` (1-indexed, as Keras)."""

    def __init__(self, dims, **kwargs):
        try:
            dims = tuple(int(d) for d in dims)
        except TypeError as exc:
            raise TypeError(f"Permute: expected dims to be a tuple of ints. Received: dims={dims!r}") from exc
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"Permute: expected dims to be a permutation of 1..{len(dims)} (the batch axis 0 is never moved). "
                f"Received: dims={dims}"
            )
        super().__init__(**kwargs)
        self.dims = dims
        self.input_spec = InputSpec(ndim=len(dims) + 1)
        self._perm = (0,) + dims
        self._inverse = tuple(int(i) for i in np.argsort(self._perm))

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return x.transpose(self._perm)

    def backward(self, dy):
        self._saved()
        return dy.transpose(self._inverse)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[i] for i in self._perm)

    def get_config(self):
        config = super().get_config()
        config["dims"] = list(self.dims)
        return config


class RepeatVector(Layer):
    """``(batch, features) -> (batch, n, features)``: repeat each sample ``n`` times."""

    def __init__(self, n, **kwargs):
        self.n = check_positive_int(n, "n", "RepeatVector")
        super().__init__(**kwargs)
        self.input_spec = InputSpec(ndim=2)

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, dy):
        self._saved()
        return dy.sum(axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, input_shape[1])

    def get_config(self):
        config = super().get_config()
        config["n"] = self.n
        return config
