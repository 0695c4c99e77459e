"""Reductions and normalisations over axes: sum, mean, max, min, logsumexp, softmax, log_softmax.

``axis`` is ``None`` (all axes), an int or a tuple of ints; ``keepdims`` keeps the reduced axes
with size 1, as in NumPy. ``max``/``min`` send the gradient to the first arg-max/arg-min of
each reduced slice (one element per slice, as ``torch.max(x, dim)`` and ``np.argmax`` choose).
``logsumexp``, ``softmax`` and ``log_softmax`` subtract the maximum first, so they never
overflow; a slice of ``-inf`` only gives ``logsumexp = -inf``.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import kept_shape, lift_tensor, normalize_axes, record
from ..tensor import Tensor
from . import elementwise as ew
from . import shape as sh

__all__ = ["sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax"]


def _expand_back(g: Tensor, in_shape: tuple, axes: tuple, keepdims: bool) -> Tensor:
    """The gradient of a reduction broadcast back over the reduced axes (tape operations)."""
    if not keepdims:
        g = sh.reshape(g, kept_shape(in_shape, axes))
    return sh.broadcast_to(g, in_shape)


def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - the NumPy name
    """Sum over ``axis``. Gradient: ``g`` broadcast back over the reduced axes."""
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, "sum")
    out = np.sum(x._value, axis=axes, keepdims=keepdims)
    return record("sum", out, (x,), (lambda g: _expand_back(g, x.shape, axes, keepdims),), {"axis": axis})


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over ``axis``. Gradient: ``g / n`` broadcast back (``n`` reduced elements)."""
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, "mean")
    count = math.prod(x.shape[a] for a in axes)
    if count == 0:
        raise ValueError(f"mean: cannot average over an empty axis. Received: x.shape={x.shape}, axis={axis!r}")
    out = np.mean(x._value, axis=axes, keepdims=keepdims)
    scale = 1.0 / count
    return record("mean", out, (x,), (lambda g: ew.multiply(_expand_back(g, x.shape, axes, keepdims), scale),),
                  {"axis": axis})


def _arg_mask(v: np.ndarray, axes: tuple, largest: bool) -> np.ndarray:
    """Boolean mask of the first arg-max (arg-min) of every slice reduced over ``axes``."""
    k = len(axes)
    dest = tuple(range(v.ndim - k, v.ndim))
    moved = np.moveaxis(v, axes, dest)
    flat = moved.reshape(moved.shape[: v.ndim - k] + (-1,))
    idx = np.argmax(flat, axis=-1) if largest else np.argmin(flat, axis=-1)
    mask = np.arange(flat.shape[-1]) == idx[..., None]
    return np.moveaxis(mask.reshape(moved.shape), dest, axes)


def _extreme(name, fn, x, axis, keepdims, largest):
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, name)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"{name}: cannot reduce an empty axis. Received: x.shape={x.shape}, axis={axis!r}")
    out = fn(x._value, axis=axes, keepdims=keepdims)

    def vjp(g):
        mask = _arg_mask(x._value, axes, largest).astype(g.dtype)
        return ew.multiply(_expand_back(g, x.shape, axes, keepdims), mask)

    return record(name, out, (x,), (vjp,), {"axis": axis})


def max(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - the NumPy name
    """Maximum over ``axis``. Gradient: ``g`` to the first arg-max of each slice, 0 elsewhere."""
    return _extreme("max", np.max, x, axis, keepdims, True)


def min(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 - the NumPy name
    """Minimum over ``axis``. Gradient: ``g`` to the first arg-min of each slice, 0 elsewhere."""
    return _extreme("min", np.min, x, axis, keepdims, False)


def _stable_shift(v: np.ndarray, axes: tuple) -> np.ndarray:
    """The maximum over ``axes`` (kept dims), 0 where it is not finite."""
    m = np.max(v, axis=axes, keepdims=True)
    return np.where(np.isfinite(m), m, 0).astype(v.dtype, copy=False)


def logsumexp(x, axis=None, keepdims=False) -> Tensor:
    """``log(sum(exp(x), axis))``, computed as ``m + log(sum(exp(x - m)))`` with ``m = max(x)``.

    Gradient: ``g * softmax(x)`` over the reduced axes, i.e. ``g * exp(x - logsumexp(x))``.
    """
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, "logsumexp")
    v = x._value
    m = _stable_shift(v, axes)
    s = np.sum(np.exp(v - m), axis=axes, keepdims=True)
    with np.errstate(divide="ignore"):  # a slice of -inf gives log(0) = -inf, the right value
        out = np.log(s) + m
    if not keepdims:
        out = out.reshape(tuple(n for i, n in enumerate(v.shape) if i not in axes))

    def vjp(g):
        ok = sh.reshape(result, kept_shape(x.shape, axes))
        return ew.multiply(_expand_back(g, x.shape, axes, keepdims), ew.exp(ew.subtract(x, ok)))

    result = record("logsumexp", out, (x,), (vjp,), {"axis": axis})
    return result


def softmax(x, axis=-1) -> Tensor:
    """``exp(x) / sum(exp(x), axis)`` (max-shifted). Gradient: ``y * (g - sum(g * y, axis))``."""
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, "softmax")
    v = x._value
    e = np.exp(v - _stable_shift(v, axes))
    out = e / np.sum(e, axis=axes, keepdims=True)

    def vjp(g):
        return ew.multiply(y, ew.subtract(g, sum(ew.multiply(g, y), axis=axes, keepdims=True)))

    y = record("softmax", out, (x,), (vjp,), {"axis": axis})
    return y


def log_softmax(x, axis=-1) -> Tensor:
    """``x - logsumexp(x, axis)`` (max-shifted). Gradient: ``g - softmax(x) * sum(g, axis)``."""
    x = lift_tensor(x)
    axes = normalize_axes(axis, x.ndim, "log_softmax")
    v = x._value
    shifted = v - _stable_shift(v, axes)
    out = shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True))

    def vjp(g):
        return ew.subtract(g, ew.multiply(ew.exp(y), sum(g, axis=axes, keepdims=True)))

    y = record("log_softmax", out, (x,), (vjp,), {"axis": axis})
    return y
