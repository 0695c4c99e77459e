"""Activations along an axis (not element-wise): softmax, softmin, log_softmax, sparsemax, glu.

``axis`` may be negative; softmax, softmin and log_softmax also take a list of axes (as the
Keras ``Softmax`` layer) and normalise over all of them at once. The exponentials only see
``x - max(x)`` <= 0, so no input overflows.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ._common import _Activation, check_axis_arg, config_axis, resolve_axes
from .base import register_activation

__all__ = [
    "Softmax", "Softmin", "LogSoftmax", "Sparsemax", "GLU",
    "softmax", "softmin", "log_softmax", "sparsemax", "glu",
]


def _shifted(x, axes):
    """``x - max(x)`` over ``axes`` (a row that is entirely ``-inf`` is left unshifted)."""
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return x - m


def _softmax(x, axes):
    e = np.exp(_shifted(x, axes))
    return e / np.sum(e, axis=axes, keepdims=True)


def _softmax_vjp(y, dy, axes):
    """``y * (dy - sum(dy * y))``: the softmax Jacobian ``diag(y) - y y^T`` applied to ``dy``."""
    return y * (dy - np.sum(dy * y, axis=axes, keepdims=True))


class _AlongAxis(_Activation):
    """An activation normalising along ``axis``."""

    elementwise = False
    _allow_tuple = True

    def __init__(self, axis=-1, *, _owner=None):
        super().__init__(_owner=_owner)
        self.axis = check_axis_arg(axis, self._owner, allow_tuple=self._allow_tuple)

    def _axes(self, x):
        return resolve_axes(self.axis, x.shape, self._owner)

    def get_config(self):
        return self._config(axis=config_axis(self.axis))


class Softmax(_AlongAxis):
    """``y = exp(x - m) / sum(exp(x - m))`` over ``axis`` (``m`` the max); VJP ``y (dy - sum(dy y))``."""

    name = "softmax"

    def _forward(self, x):
        return _softmax(x, self._axes(x))

    def _backward(self, x, y, dy):
        axes = self._axes(x)
        y = _softmax(x, axes) if y is None else y
        return _softmax_vjp(y, dy, axes)


class Softmin(_AlongAxis):
    """``y = softmax(-x)`` over ``axis``; VJP ``-y (dy - sum(dy y))``."""

    name = "softmin"

    def _forward(self, x):
        return _softmax(-x, self._axes(x))

    def _backward(self, x, y, dy):
        axes = self._axes(x)
        y = _softmax(-x, axes) if y is None else y
        return -_softmax_vjp(y, dy, axes)


class LogSoftmax(_AlongAxis):
    """``y = x - m - log(sum(exp(x - m)))`` over ``axis``; VJP ``dy - exp(y) sum(dy)``."""

    name = "log_softmax"

    def _forward(self, x):
        axes = self._axes(x)
        s = _shifted(x, axes)
        return s - np.log(np.sum(np.exp(s), axis=axes, keepdims=True))

    def _backward(self, x, y, dy):
        axes = self._axes(x)
        y = self._forward(x) if y is None else y
        return dy - np.exp(y) * np.sum(dy, axis=axes, keepdims=True)


class Sparsemax(_AlongAxis):
    """Euclidean projection onto the simplex along one ``axis`` (Martins & Astudillo, 2016).

    ``y = max(x - tau, 0)`` where, with ``z`` sorted in decreasing order and ``k(x)`` the largest
    ``k`` with ``1 + k z_k > sum_{j<=k} z_j``, ``tau = (sum_{j<=k(x)} z_j - 1) / k(x)``.
    VJP on the support ``S = {y > 0}``: ``dx = s * (dy - sum(dy s) / |S|)``, ``s = [y > 0]``.
    """

    name = "sparsemax"
    _allow_tuple = False

    def _forward(self, x):
        (axis,) = self._axes(x)
        z = np.moveaxis(x, axis, -1)
        z = z - np.max(z, axis=-1, keepdims=True)
        zs = -np.sort(-z, axis=-1)
        k = np.arange(1, z.shape[-1] + 1, dtype=x.dtype)
        cs = np.cumsum(zs, axis=-1)
        support = 1 + k * zs > cs
        size = np.sum(support, axis=-1, keepdims=True)
        tau = (np.take_along_axis(cs, size - 1, axis=-1) - 1) / size.astype(x.dtype)
        return np.moveaxis(np.maximum(z - tau, 0), -1, axis)

    def _backward(self, x, y, dy):
        (axis,) = self._axes(x)
        y = self._forward(x) if y is None else y
        s = (y > 0).astype(dy.dtype)
        mean = np.sum(dy * s, axis=axis, keepdims=True) / np.sum(s, axis=axis, keepdims=True)
        return s * (dy - mean)


class GLU(_AlongAxis):
    """Gated linear unit: ``x`` split in halves ``a, b`` along ``axis``, ``y = a * sigmoid(b)``.

    The size of ``axis`` must be even; the output has half of it. VJP:
    ``da = dy * sigmoid(b)``, ``db = dy * a * sigmoid(b) * (1 - sigmoid(b))``.
    """

    name = "glu"
    _allow_tuple = False

    def _halves(self, x):
        (axis,) = self._axes(x)
        if x.shape[axis] % 2:
            raise ValueError(
                f"{self._owner}: expected the size of axis {self.axis} to be even, to split it in halves. "
                f"Received: input of shape {x.shape}"
            )
        a, b = np.split(x, 2, axis=axis)
        return axis, a, b

    def _forward(self, x):
        _, a, b = self._halves(x)
        return a * special.expit(b)

    def _backward(self, x, y, dy):
        axis, a, b = self._halves(x)
        s = special.expit(b)
        return np.concatenate([dy * s, dy * a * s * (1 - s)], axis=axis)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axes = resolve_axes(self.axis, shape, self._owner)
        if shape[axes[0]] is not None:
            shape[axes[0]] //= 2
        return tuple(shape)


register_activation(Softmax)
register_activation(Softmin)
register_activation(LogSoftmax)
register_activation(Sparsemax)
register_activation(GLU)


# ---------------------------------------------------------------- plain functions (Keras signatures)
def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along ``axis`` (an int or a list of ints)."""
    return Softmax(axis).forward(x)


def softmin(x, axis=-1):
    """``softmax(-x)`` along ``axis``."""
    return Softmin(axis).forward(x)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``."""
    return LogSoftmax(axis).forward(x)


def sparsemax(x, axis=-1):
    """The projection of ``x`` onto the probability simplex along ``axis``."""
    return Sparsemax(axis).forward(x)


def glu(x, axis=-1):
    """``a * sigmoid(b)`` with ``a, b`` the halves of ``x`` along ``axis``."""
    return GLU(axis).forward(x)
