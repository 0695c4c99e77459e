"""Shared pieces of the activation functions: the template base class and argument checks.

Every concrete activation derives from :class:`_Activation`, which turns the input into a
float array (float16/32/64 kept, integers and booleans cast to :func:`fusenet.utils.floatx`)
before ``_forward`` and casts the gradient back to the input's dtype after ``_backward``.
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np

from ..utils import as_float_array
from .base import ActivationFunction

__all__ = []  # private module: the public names are re-exported by functions.py


class _Activation(ActivationFunction):
    """Template: subclasses implement ``_forward(x)`` and ``_backward(x, y, dy)`` on float arrays.

    ``_owner`` (keyword only, never part of the config) is the name used in error messages;
    a layer that wraps the function passes its own description so that messages name it.
    """

    def __init__(self, *, _owner=None):
        self._owner = _owner or f"activations.{self.name}"

    def forward(self, x):
        """``y = f(x)``, same shape (except GLU) and same float dtype as ``x``."""
        x = as_float_array(x, owner=self._owner)
        return self._forward(x).astype(x.dtype, copy=False)

    def backward(self, x, y, dy):
        """``dx = dy * f'(x)`` (a vector-Jacobian product for the non-element-wise ones)."""
        x = as_float_array(x, owner=self._owner)
        dx = self._backward(x, y, np.asarray(dy))
        return dx.astype(x.dtype, copy=False)

    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape``: unchanged for every activation but GLU."""
        return tuple(input_shape)

    def _config(self, **values) -> dict:
        """The hyper-parameters in ``values`` that differ from the constructor's defaults.

        So an activation at its defaults has an empty config and :func:`serialize` writes its
        bare name (``"relu"``), as Keras does; the constructor restores the omitted defaults.
        """
        params = inspect.signature(type(self).__init__).parameters
        return {k: v for k, v in values.items() if k not in params or params[k].default != v}

    def _forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, x, y, dy):  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- branch-free helpers
# ``np.where`` on a data-dependent mask runs several times slower than plain arithmetic, so the
# hot paths select with masks instead: ``a * m + b * ~m`` is exactly ``np.where(m, a, b)`` while
# ``a`` and ``b`` are finite (every branch below is finite for finite input).
def blend(mask, a, b):
    """``np.where(mask, a, b)`` for finite float arrays ``a`` and ``b``, computed as ``a * mask + b * ~mask``."""
    return a * mask + b * ~mask


def softplus0(x):
    """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: exact in both tails, never overflows."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# ---------------------------------------------------------------- argument checks
def check_real(value, name: str, owner: str, *, low=None, low_open: bool = False, allow_none: bool = False):
    """``value`` as a finite Python float (``None`` passes when ``allow_none``).

    ``TypeError`` for non-numbers (booleans included), ``ValueError`` for NaN/inf and for values
    below ``low`` (or equal to it when ``low_open``).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a number or None" if allow_none else "a number"
        raise TypeError(f"{owner}: expected {name} to be {expected}. Received: {name}={value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{owner}: expected {name} to be a finite number. Received: {name}={value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        relation = ">" if low_open else ">="
        raise ValueError(f"{owner}: expected {name} {relation} {low}. Received: {name}={value!r}")
    return number


def check_axis_arg(axis, owner: str, *, allow_tuple: bool = False):
    """Validate the type of an ``axis`` argument: an int, or (``allow_tuple``) a non-empty sequence of ints.

    Returns an int or a tuple of ints; the range is checked against the input by :func:`resolve_axes`.
    """
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return int(axis)
    if allow_tuple and isinstance(axis, (list, tuple)):
        if not axis:
            raise ValueError(f"{owner}: expected axis to be an int or a non-empty list of ints. Received: axis={axis!r}")
        if all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
            return tuple(int(a) for a in axis)
    expected = "an int or a list of ints" if allow_tuple else "an int"
    raise TypeError(f"{owner}: expected axis to be {expected}. Received: axis={axis!r}")


def resolve_axes(axis, shape, owner: str) -> tuple[int, ...]:
    """The non-negative axes of ``axis`` (an int or a tuple) for an input of ``shape``.

    ``ValueError`` naming ``owner`` when an axis is out of range or repeated.
    """
    shape = tuple(shape)
    ndim = len(shape)
    axes = axis if isinstance(axis, tuple) else (axis,)
    resolved = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{owner}: axis {a} is out of range for an input of rank {ndim} (shape {shape}). Received: axis={axis!r}"
            )
        resolved.append(a % ndim)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{owner}: expected distinct axes, but they repeat for an input of rank {ndim}. Received: axis={axis!r}")
    return tuple(resolved)


def config_axis(axis):
    """JSON-safe form of an axis argument (tuples become lists)."""
    return list(axis) if isinstance(axis, tuple) else axis
