"""Dropout (inverted, seeded)."""

from __future__ import annotations

import numpy as np

from ..utils import check_rate, make_rng
from .base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Inverted dropout: in training, zero each entry with probability ``rate`` and scale the
    rest by ``1 / (1 - rate)``; at inference, the identity. ``noise_shape`` broadcasts the mask
    (``None`` entries take the input's size), as in Keras. Draws come from ``seed`` or, without
    one, from a generator seeded by :func:`fusenet.set_random_seed`.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        self.rate = check_rate(rate, "rate", "Dropout")
        super().__init__(**kwargs)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self.seed = seed
        self._rng = make_rng(seed)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(
                f"{self.describe()}: noise_shape {self.noise_shape} must have the rank of the input, "
                f"but received input with shape {shape}"
            )
        return tuple(s if n is None else n for n, s in zip(self.noise_shape, shape))

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._save_for_backward(training, None)
            return x
        keep = 1.0 - self.rate
        mask = self._rng.random(self._mask_shape(x.shape), dtype=np.float64 if x.dtype == np.float64 else np.float32)
        mask = (mask < keep).astype(x.dtype)
        mask *= x.dtype.type(1.0 / keep)
        self._save_for_backward(training, mask)
        return x * mask

    def backward(self, dy):
        (mask,) = self._saved()
        return dy if mask is None else dy * mask

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                       "seed": self.seed})
        return config
