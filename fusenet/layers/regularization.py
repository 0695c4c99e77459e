"""Regularisation layers: Dropout (inverted, seeded), spatial dropout, Gaussian noise and dropout,
AlphaDropout, ActivityRegularization."""

from __future__ import annotations

import numpy as np

from .. import regularizers
from ..utils import check_rate, make_rng
from .base import InputSpec, Layer

__all__ = ["Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
           "AlphaDropout", "ActivityRegularization"]


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
        mask = self.draw_mask(x.shape, x.dtype)
        self._save_for_backward(training, mask)
        return x * mask

    def draw_mask(self, shape, dtype) -> np.ndarray:
        """The next training mask for an input of ``shape``: 0 with probability ``rate``, else
        ``1 / (1 - rate)`` (broadcastable to ``shape`` when ``noise_shape`` is set). Fused layers
        call this too, so that they draw exactly the masks the unfused layer would."""
        keep = 1.0 - self.rate
        dtype = np.dtype(dtype)
        mask = self._rng.random(self._mask_shape(tuple(shape)), dtype=np.float64 if dtype == np.float64 else np.float32)
        mask = (mask < keep).astype(dtype)
        mask *= dtype.type(1.0 / keep)
        return mask

    def backward(self, dy):
        (mask,) = self._saved()
        return dy if mask is None else dy * mask

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                       "seed": self.seed})
        return config


class _SpatialDropout(Dropout):
    """Dropout of whole feature maps: one draw per (sample, channel), shared over the spatial axes."""

    _rank = 1

    def __init__(self, rate, seed=None, **kwargs):
        kwargs.pop("data_format", None)
        super().__init__(rate, seed=seed, **kwargs)
        self.input_spec = InputSpec(ndim=self._rank + 2)

    def _mask_shape(self, shape):
        return (shape[0],) + (1,) * self._rank + (shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.pop("noise_shape")
        return config


class SpatialDropout1D(_SpatialDropout):
    """Drop whole channels of ``(batch, steps, channels)`` inputs."""

    _rank = 1


class SpatialDropout2D(_SpatialDropout):
    """Drop whole channels of ``(batch, height, width, channels)`` inputs."""

    _rank = 2


class SpatialDropout3D(_SpatialDropout):
    """Drop whole channels of ``(batch, d1, d2, d3, channels)`` inputs."""

    _rank = 3


class GaussianNoise(Layer):
    """Add ``N(0, stddev**2)`` noise in training; the identity at inference."""

    def __init__(self, stddev, seed=None, **kwargs):
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) or stddev < 0:
            raise ValueError(f"GaussianNoise: expected stddev to be a non-negative number. Received: stddev={stddev!r}")
        super().__init__(**kwargs)
        self.stddev = float(stddev)
        self.seed = seed
        self._rng = make_rng(seed)

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        if not training or self.stddev == 0.0:
            return x
        return x + self._rng.normal(0.0, self.stddev, size=x.shape).astype(x.dtype)

    def backward(self, dy):
        self._saved()
        return dy

    def get_config(self):
        config = super().get_config()
        config.update({"stddev": self.stddev, "seed": self.seed})
        return config


class GaussianDropout(Layer):
    """Multiply by ``N(1, rate / (1 - rate))`` noise in training; the identity at inference."""

    def __init__(self, rate, seed=None, **kwargs):
        self.rate = check_rate(rate, "rate", "GaussianDropout")
        super().__init__(**kwargs)
        self.seed = seed
        self._rng = make_rng(seed)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._save_for_backward(training, None)
            return x
        stddev = np.sqrt(self.rate / (1.0 - self.rate))
        noise = self._rng.normal(1.0, stddev, size=x.shape).astype(x.dtype)
        self._save_for_backward(training, noise)
        return x * noise

    def backward(self, dy):
        (noise,) = self._saved()
        return dy if noise is None else dy * noise

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


class AlphaDropout(Dropout):
    """Dropout that keeps the mean and variance of SELU activations (Keras/PyTorch AlphaDropout).

    Dropped entries are set to ``alpha' = -scale * alpha`` of SELU, then ``y = a * x' + b`` with
    ``a = ((1 - rate) * (1 + rate * alpha'**2)) ** -0.5`` and ``b = -a * alpha' * rate``.
    """

    _ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._save_for_backward(training, None)
            return x
        rate = self.rate
        keep = self._rng.random(self._mask_shape(x.shape)) >= rate
        a = ((1.0 - rate) * (1.0 + rate * self._ALPHA_P**2)) ** -0.5
        b = -a * self._ALPHA_P * rate
        scale = (a * keep).astype(x.dtype)
        shift = ((a * self._ALPHA_P) * (~keep) + b).astype(x.dtype)
        self._save_for_backward(training, scale)
        return x * scale + shift

    def backward(self, dy):
        (scale,) = self._saved()
        return dy if scale is None else dy * scale


class ActivityRegularization(Layer):
    """The identity, with an ``L1L2(l1, l2)`` activity penalty on its output (Keras)."""

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        kwargs.pop("activity_regularizer", None)
        super().__init__(activity_regularizer=regularizers.L1L2(l1=l1, l2=l2), **kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return x

    def backward(self, dy):
        self._saved()
        return dy

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        config.update({"l1": self.l1, "l2": self.l2})
        return config
