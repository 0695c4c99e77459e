"""Helpers shared by the operation modules: operand lifting, broadcast reduction, axis checks."""

from __future__ import annotations

import numbers

import numpy as np

from ..tape import record
from ..tensor import Tensor

__all__ = ["lift", "lift_tensor", "value", "sum_to", "normalize_axes", "kept_shape", "binary_value", "record"]


def lift(x):
    """A Tensor stays; a Python number stays (a weakly-typed constant); anything else becomes a
    constant Tensor (ndarrays keep their dtype, lists become float32)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and not isinstance(x, np.generic):
        return x
    return Tensor(x)


def lift_tensor(x) -> Tensor:
    """Like :func:`lift`, but Python numbers become 0-d Tensors too (float32 for floats)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def value(x):
    """The array (or Python number) behind an operand."""
    return x._value if isinstance(x, Tensor) else x


def shape_of(x) -> tuple:
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def binary_value(name: str, fn, a, b):
    """``fn(a, b)`` on the plain values, with a clear message when the shapes do not broadcast."""
    try:
        return fn(value(a), value(b))
    except ValueError:
        raise ValueError(
            f"{name}: the operand shapes do not broadcast together. "
            f"Received: x.shape={shape_of(a)}, y.shape={shape_of(b)}"
        ) from None


def sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Sum the broadcast axes of ``g`` so that it has ``like``'s shape and dtype (tape operations)."""
    from . import reduction, shape

    target = like.shape
    if g.shape != target:
        lead = g.ndim - len(target)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(target) if n == 1 and g.shape[lead + i] != 1
        )
        if axes:
            g = reduction.sum(g, axis=axes)
        if g.shape != target:
            g = shape.reshape(g, target)
    if g.dtype != like.dtype and like.dtype.kind == "f":
        from .elementwise import cast

        g = cast(g, like.dtype)
    return g


def normalize_axes(axis, ndim: int, owner: str) -> tuple:
    """``axis`` (None, an int or a tuple of ints) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (numbers.Integral, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (numbers.Integral, np.integer)):
            raise TypeError(f"{owner}: expected axis to be None, an int or a tuple of ints. Received: axis={axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{owner}: axis {a} is out of range for a tensor of rank {ndim}. Received: axis={axis!r}")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: expected distinct axes. Received: axis={axis!r}")
    return tuple(sorted(out))


def kept_shape(shape: tuple, axes: tuple) -> tuple:
    """``shape`` with the reduced ``axes`` set to 1 (the ``keepdims=True`` shape)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))
