"""Piecewise-linear (and piecewise-quadratic) element-wise activations.

linear, relu, relu6, leaky_relu, rrelu, hard_sigmoid, hard_silu, hard_tanh, hard_shrink,
soft_shrink, threshold, sparse_plus, sparse_sigmoid. All keep the shape and dtype of ``x``.
At a kink the derivative takes the value PyTorch uses (the one-sided derivative of the
branch that owns the point), except where noted.
"""

from __future__ import annotations

import numpy as np

from ._common import _Activation, blend, check_real
from .base import register_activation

__all__ = [
    "Linear", "ReLU", "ReLU6", "LeakyReLU", "RReLU", "HardSigmoid", "HardSiLU", "HardTanh", "HardShrink",
    "SoftShrink", "Threshold", "SparsePlus", "SparseSigmoid",
    "linear", "relu", "relu6", "leaky_relu", "rrelu", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh",
    "hard_shrink", "soft_shrink", "threshold", "sparse_plus", "sparse_sigmoid",
]


class Linear(_Activation):
    """``y = x`` (the identity; ``get(None)`` returns it)."""

    name = "linear"

    def _forward(self, x):
        return x

    def _backward(self, x, y, dy):
        return dy


class ReLU(_Activation):
    """Keras' rectified linear unit with its three options.

    ``y = clip(x if x > threshold else 0, 0, max_value) - negative_slope * max(threshold - x, 0)``;
    with ``threshold == 0`` the first term is ``max(x, 0)``, and the clip is skipped when
    ``max_value is None``. Defaults give ``max(x, 0)``. Derivative: ``1`` where the first term
    passes ``x`` through unclipped, plus ``negative_slope`` where ``x < threshold``.
    """

    name = "relu"

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.negative_slope = check_real(negative_slope, "negative_slope", self._owner)
        self.max_value = check_real(max_value, "max_value", self._owner, allow_none=True)
        self.threshold = check_real(threshold, "threshold", self._owner)

    def _pass_mask(self, x):
        mask = x > self.threshold if self.threshold != 0 else x > 0
        if self.max_value is not None:
            mask &= (x > 0) & (x < self.max_value)
        return mask

    def _forward(self, x):
        y = x * (x > self.threshold) if self.threshold != 0 else np.maximum(x, 0)
        if self.max_value is not None:
            y = np.clip(y, 0, self.max_value)
        if self.negative_slope != 0:
            y = y - self.negative_slope * np.maximum(self.threshold - x, 0)
        return y

    def _backward(self, x, y, dy):
        dx = dy * self._pass_mask(x)
        if self.negative_slope != 0:
            dx = dx + (self.negative_slope * dy) * (x < self.threshold)
        return dx

    def get_config(self):
        return self._config(negative_slope=self.negative_slope, max_value=self.max_value, threshold=self.threshold)


class ReLU6(_Activation):
    """``y = min(max(x, 0), 6)``; derivative 1 on ``0 < x < 6``."""

    name = "relu6"

    def _forward(self, x):
        return np.clip(x, 0, 6)

    def _backward(self, x, y, dy):
        return dy * ((x > 0) & (x < 6))


class LeakyReLU(_Activation):
    """``y = x if x > 0 else negative_slope * x``. Keras' function default ``negative_slope=0.2``."""

    name = "leaky_relu"

    def __init__(self, negative_slope=0.2, *, _owner=None):
        super().__init__(_owner=_owner)
        self.negative_slope = check_real(negative_slope, "negative_slope", self._owner)

    def _forward(self, x):
        return np.maximum(x, 0) + self.negative_slope * np.minimum(x, 0)

    def _backward(self, x, y, dy):
        return blend(x > 0, dy, self.negative_slope * dy)

    def get_config(self):
        return self._config(negative_slope=self.negative_slope)


class RReLU(_Activation):
    """Randomized leaky ReLU at inference: ``y = x if x > 0 else a * x`` with ``a = (lower + upper) / 2``.

    The random slope per element, drawn from ``U(lower, upper)`` in training, belongs to the
    ``layers.RReLU`` layer; as a function it is the deterministic inference form (as
    ``torch.nn.functional.rrelu(training=False)``).
    """

    name = "rrelu"

    def __init__(self, lower=1.0 / 8.0, upper=1.0 / 3.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.lower = check_real(lower, "lower", self._owner)
        self.upper = check_real(upper, "upper", self._owner)
        if self.lower > self.upper:
            raise ValueError(f"{self._owner}: expected lower <= upper. Received: lower={lower!r}, upper={upper!r}")

    @property
    def slope(self) -> float:
        """The inference slope ``(lower + upper) / 2``."""
        return (self.lower + self.upper) / 2.0

    def _forward(self, x):
        return np.maximum(x, 0) + self.slope * np.minimum(x, 0)

    def _backward(self, x, y, dy):
        return blend(x > 0, dy, self.slope * dy)

    def get_config(self):
        return self._config(lower=self.lower, upper=self.upper)


class HardSigmoid(_Activation):
    """Keras 3 (and PyTorch) hard sigmoid: ``y = relu6(x + 3) / 6``; derivative 1/6 on ``-3 < x < 3``.

    (Keras 2 used ``clip(0.2 x + 0.5, 0, 1)``; Keras 3 and ``torch.nn.Hardsigmoid`` agree on this one.)
    """

    name = "hard_sigmoid"

    def _forward(self, x):
        return np.clip(x + 3, 0, 6) / 6

    def _backward(self, x, y, dy):
        return (dy / 6) * ((x > -3) & (x < 3))


class HardSiLU(_Activation):
    """Hard SiLU / hard swish: ``y = x * relu6(x + 3) / 6``.

    Derivative: 0 for ``x < -3``, ``x / 3 + 1/2`` for ``-3 <= x <= 3``, 1 for ``x > 3``.
    """

    name = "hard_silu"

    def _forward(self, x):
        return x * np.clip(x + 3, 0, 6) / 6

    def _backward(self, x, y, dy):
        return dy * ((x / 3 + 0.5) * ((x >= -3) & (x <= 3)) + (x > 3))


class HardTanh(_Activation):
    """``y = clip(x, min_val, max_val)`` (Keras ``hard_tanh`` is the default ``[-1, 1]``).

    Derivative 1 on ``min_val < x < max_val``.
    """

    name = "hard_tanh"

    def __init__(self, min_val=-1.0, max_val=1.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.min_val = check_real(min_val, "min_val", self._owner)
        self.max_val = check_real(max_val, "max_val", self._owner)
        if self.min_val > self.max_val:
            raise ValueError(f"{self._owner}: expected min_val <= max_val. Received: min_val={min_val!r}, max_val={max_val!r}")

    def _forward(self, x):
        return np.clip(x, self.min_val, self.max_val)

    def _backward(self, x, y, dy):
        return dy * ((x > self.min_val) & (x < self.max_val))

    def get_config(self):
        return self._config(min_val=self.min_val, max_val=self.max_val)


class HardShrink(_Activation):
    """``y = x if |x| > threshold else 0`` (torch's ``lambd`` is Keras' ``threshold``, >= 0)."""

    name = "hard_shrink"

    def __init__(self, threshold=0.5, *, _owner=None):
        super().__init__(_owner=_owner)
        self.threshold = check_real(threshold, "threshold", self._owner, low=0.0)

    def _forward(self, x):
        return x * (np.abs(x) > self.threshold)

    def _backward(self, x, y, dy):
        return dy * (np.abs(x) > self.threshold)

    def get_config(self):
        return self._config(threshold=self.threshold)


class SoftShrink(_Activation):
    """``y = x - threshold`` if ``x > threshold``, ``x + threshold`` if ``x < -threshold``, else 0.

    Derivative 1 on ``|x| > threshold``; ``threshold >= 0`` (torch's ``lambd``).
    """

    name = "soft_shrink"

    def __init__(self, threshold=0.5, *, _owner=None):
        super().__init__(_owner=_owner)
        self.threshold = check_real(threshold, "threshold", self._owner, low=0.0)

    def _forward(self, x):
        return x - np.clip(x, -self.threshold, self.threshold)

    def _backward(self, x, y, dy):
        return dy * (np.abs(x) > self.threshold)

    def get_config(self):
        return self._config(threshold=self.threshold)


class Threshold(_Activation):
    """``y = x if x > threshold else default_value`` (torch ``Threshold(threshold, value)``).

    Keras' function requires both arguments; the class defaults (0, 0) make ``get("threshold")``
    the plain ReLU. Derivative 1 where ``x > threshold``.
    """

    name = "threshold"

    def __init__(self, threshold=0.0, default_value=0.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.threshold = check_real(threshold, "threshold", self._owner)
        self.default_value = check_real(default_value, "default_value", self._owner)

    def _forward(self, x):
        return np.where(x > self.threshold, x, self.default_value).astype(x.dtype, copy=False)

    def _backward(self, x, y, dy):
        return dy * (x > self.threshold)

    def get_config(self):
        return self._config(threshold=self.threshold, default_value=self.default_value)


class SparsePlus(_Activation):
    """``y = 0`` for ``x <= -1``, ``(x + 1)^2 / 4`` for ``-1 < x < 1``, ``x`` for ``x >= 1``.

    Derivative: 0, ``(x + 1) / 2``, 1 (continuous).
    """

    name = "sparse_plus"

    def _forward(self, x):
        q = np.clip(x, -1, 1) + 1
        return blend(x >= 1, x, q * q / 4)

    def _backward(self, x, y, dy):
        return dy * ((np.clip(x, -1, 1) + 1) / 2)


class SparseSigmoid(_Activation):
    """``y = clip((x + 1) / 2, 0, 1)``; derivative 1/2 on ``-1 < x < 1``."""

    name = "sparse_sigmoid"

    def _forward(self, x):
        return np.clip((x + 1) / 2, 0, 1)

    def _backward(self, x, y, dy):
        return (dy / 2) * ((x > -1) & (x < 1))


register_activation(Linear)
register_activation(ReLU)
register_activation(ReLU6)
register_activation(LeakyReLU)
register_activation(RReLU)
register_activation(HardSigmoid, "hardsigmoid")
register_activation(HardSiLU, "hard_swish", "hardswish")
register_activation(HardTanh, "hardtanh")
register_activation(HardShrink, "hardshrink")
register_activation(SoftShrink, "softshrink")
register_activation(Threshold)
register_activation(SparsePlus)
register_activation(SparseSigmoid)


# ---------------------------------------------------------------- plain functions (Keras signatures)
def linear(x):
    """``x`` as a float array, unchanged."""
    return Linear().forward(x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras ``relu``; see :class:`ReLU`."""
    return ReLU(negative_slope, max_value, threshold).forward(x)


def relu6(x):
    """``min(max(x, 0), 6)``."""
    return ReLU6().forward(x)


def leaky_relu(x, negative_slope=0.2):
    """``x if x > 0 else negative_slope * x``."""
    return LeakyReLU(negative_slope).forward(x)


def rrelu(x, lower=1.0 / 8.0, upper=1.0 / 3.0):
    """Inference-mode randomized leaky ReLU: the slope ``(lower + upper) / 2`` for ``x <= 0``."""
    return RReLU(lower, upper).forward(x)


def hard_sigmoid(x):
    """``relu6(x + 3) / 6``."""
    return HardSigmoid().forward(x)


def hard_silu(x):
    """``x * relu6(x + 3) / 6``."""
    return HardSiLU().forward(x)


hard_swish = hard_silu


def hard_tanh(x, min_val=-1.0, max_val=1.0):
    """``clip(x, min_val, max_val)``."""
    return HardTanh(min_val, max_val).forward(x)


def hard_shrink(x, threshold=0.5):
    """``x if |x| > threshold else 0``."""
    return HardShrink(threshold).forward(x)


def soft_shrink(x, threshold=0.5):
    """``sign(x) * max(|x| - threshold, 0)``."""
    return SoftShrink(threshold).forward(x)


def threshold(x, threshold, default_value):
    """``x if x > threshold else default_value``."""
    return Threshold(threshold, default_value).forward(x)


def sparse_plus(x):
    """0, ``(x + 1)^2 / 4``, ``x`` on ``x <= -1``, ``-1 < x < 1``, ``x >= 1``."""
    return SparsePlus().forward(x)


def sparse_sigmoid(x):
    """``clip((x + 1) / 2, 0, 1)``."""
    return SparseSigmoid().forward(x)
