"""Element-wise operations with NumPy broadcasting, and their gradients.

Binary operations accept Tensors, ndarrays and Python numbers in either position and broadcast
as NumPy does; the gradient of an operand sums the broadcast axes back to its shape. Every VJP
is written with tape operations, so each is differentiable again (second order and beyond).

Conventions at kinks (the same as PyTorch): ``relu'(0) = 0``, ``abs'(0) = 0``; ``maximum`` and
``minimum`` split the gradient equally between equal operands; ``clip`` passes the gradient
where ``lo <= x <= hi`` (bounds included).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import binary_value, lift, lift_tensor, record, sum_to, value
from ..tensor import Tensor

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "square",
    "exp", "log", "log1p", "sqrt", "abs", "sin", "cos",
    "maximum", "minimum", "where", "clip",
    "relu", "sigmoid", "tanh", "softplus", "cast",
]


def _is_tensor(x) -> bool:
    return isinstance(x, Tensor)


# ---------------------------------------------------------------- arithmetic
def add(x, y) -> Tensor:
    """``x + y`` (broadcasting). Gradients: ``g`` to both, summed to each shape."""
    x, y = lift(x), lift(y)
    out = binary_value("add", np.add, x, y)
    return record("add", out, (x, y), (lambda g: sum_to(g, x), lambda g: sum_to(g, y)))


def subtract(x, y) -> Tensor:
    """``x - y`` (broadcasting). Gradients: ``g`` and ``-g``."""
    x, y = lift(x), lift(y)
    out = binary_value("subtract", np.subtract, x, y)
    return record("subtract", out, (x, y), (lambda g: sum_to(g, x), lambda g: sum_to(negative(g), y)))


def multiply(x, y) -> Tensor:
    """``x * y`` (broadcasting). Gradients: ``g * y`` and ``g * x``."""
    x, y = lift(x), lift(y)
    out = binary_value("multiply", np.multiply, x, y)
    return record("multiply", out, (x, y), (lambda g: sum_to(multiply(g, y), x), lambda g: sum_to(multiply(g, x), y)))


def divide(x, y) -> Tensor:
    """``x / y`` (broadcasting). Gradients: ``g / y`` and ``-g * x / y**2``."""
    x, y = lift(x), lift(y)
    out = binary_value("divide", np.true_divide, x, y)
    return record("divide", out, (x, y), (
        lambda g: sum_to(divide(g, y), x),
        lambda g: sum_to(negative(divide(multiply(g, x), multiply(y, y))), y),
    ))


def negative(x) -> Tensor:
    """``-x``. Gradient: ``-g``."""
    x = lift_tensor(x)
    return record("negative", np.negative(x._value), (x,), (lambda g: negative(g),))


def _safe_log(x):
    """``log(x)`` where ``x > 0`` and 0 elsewhere (the exponent's gradient of ``x ** y`` at ``x <= 0``)."""
    if not _is_tensor(x):
        return math.log(x) if x > 0 else 0.0
    positive = x._value > 0
    if positive.all():
        return log(x)
    return where(positive, log(where(positive, x, 1.0)), 0.0)


def power(x, y) -> Tensor:
    """``x ** y`` (broadcasting).

    Gradients: ``g * y * x ** (y - 1)`` for the base and ``g * x ** y * log(x)`` for the
    exponent (taken as 0 where ``x <= 0``, where the real power has no derivative in ``y``).
    """
    x, y = lift(x), lift(y)
    out = binary_value("power", np.power, x, y)

    def d_base(g):
        if not _is_tensor(y) and y == 2:
            return sum_to(multiply(g, multiply(x, 2)), x)
        return sum_to(multiply(g, multiply(y, power(x, subtract(y, 1) if _is_tensor(y) else y - 1))), x)

    def d_exponent(g):
        return sum_to(multiply(g, multiply(result, _safe_log(x))), y)

    result = record("power", out, (x, y), (d_base, d_exponent))
    return result


def square(x) -> Tensor:
    """``x ** 2``. Gradient: ``2 * x * g``."""
    x = lift_tensor(x)
    return record("square", np.square(x._value), (x,), (lambda g: multiply(g, multiply(x, 2)),))


# ---------------------------------------------------------------- transcendental
def exp(x) -> Tensor:
    """``exp(x)``. Gradient: ``g * exp(x)``."""
    x = lift_tensor(x)
    out = record("exp", np.exp(x._value), (x,), (lambda g: multiply(g, out),))
    return out


def log(x) -> Tensor:
    """Natural logarithm. Gradient: ``g / x``."""
    x = lift_tensor(x)
    return record("log", np.log(x._value), (x,), (lambda g: divide(g, x),))


def log1p(x) -> Tensor:
    """``log(1 + x)``, accurate near 0. Gradient: ``g / (1 + x)``."""
    x = lift_tensor(x)
    return record("log1p", np.log1p(x._value), (x,), (lambda g: divide(g, add(x, 1)),))


def sqrt(x) -> Tensor:
    """Square root. Gradient: ``g / (2 sqrt(x))``."""
    x = lift_tensor(x)
    out = record("sqrt", np.sqrt(x._value), (x,), (lambda g: divide(g, multiply(out, 2)),))
    return out


def abs(x) -> Tensor:  # noqa: A001 - the NumPy name
    """``|x|``. Gradient: ``g * sign(x)`` (0 at 0)."""
    x = lift_tensor(x)
    return record("abs", np.abs(x._value), (x,), (lambda g: multiply(g, np.sign(x._value).astype(g.dtype)),))


def sin(x) -> Tensor:
    """Sine. Gradient: ``g * cos(x)``."""
    x = lift_tensor(x)
    return record("sin", np.sin(x._value), (x,), (lambda g: multiply(g, cos(x)),))


def cos(x) -> Tensor:
    """Cosine. Gradient: ``-g * sin(x)``."""
    x = lift_tensor(x)
    return record("cos", np.cos(x._value), (x,), (lambda g: negative(multiply(g, sin(x))),))


# ---------------------------------------------------------------- selection
def _split_mask(a, b, upper: bool):
    """Share of the gradient that goes to ``a`` in ``maximum`` (``upper``) or ``minimum``: 1 where it
    wins, 1/2 on ties, 0 where it loses."""
    va, vb = value(a), value(b)
    wins = (va > vb) if upper else (va < vb)
    ties = va == vb
    return wins, ties


def _extremum(name, fn, x, y, upper):
    x, y = lift(x), lift(y)
    out = binary_value(name, fn, x, y)

    def share(g, first):
        wins, ties = _split_mask(x, y, upper) if first else _split_mask(y, x, upper)
        w = wins.astype(g.dtype) + 0.5 * ties.astype(g.dtype) if ties.any() else wins.astype(g.dtype)
        return sum_to(multiply(g, w), x if first else y)

    return record(name, out, (x, y), (lambda g: share(g, True), lambda g: share(g, False)))


def maximum(x, y) -> Tensor:
    """Element-wise maximum (broadcasting). The gradient goes to the larger operand (half each on ties)."""
    return _extremum("maximum", np.maximum, x, y, True)


def minimum(x, y) -> Tensor:
    """Element-wise minimum (broadcasting). The gradient goes to the smaller operand (half each on ties)."""
    return _extremum("minimum", np.minimum, x, y, False)


def where(condition, x, y) -> Tensor:
    """``x`` where ``condition`` holds, else ``y`` (all three broadcast). ``condition`` is a
    constant (a boolean array; a Tensor's value is used). Gradients: ``g`` masked to each side."""
    cond = np.asarray(value(condition)).astype(bool, copy=False)
    x, y = lift(x), lift(y)
    try:
        out = np.where(cond, value(x), value(y))
    except ValueError:
        raise ValueError(
            "where: condition, x and y do not broadcast together. "
            f"Received: condition.shape={cond.shape}, x.shape={np.shape(value(x))}, y.shape={np.shape(value(y))}"
        ) from None
    return record("where", out, (x, y), (
        lambda g: sum_to(where(cond, g, 0.0), x),
        lambda g: sum_to(where(cond, 0.0, g), y),
    ))


def clip(x, lo=None, hi=None) -> Tensor:
    """``min(max(x, lo), hi)``; ``lo``/``hi`` are constants (numbers or arrays, ``None`` for no bound).

    Gradient: ``g`` where ``lo <= x <= hi``, 0 elsewhere. Tensor bounds are differentiated too
    (through :func:`maximum`/:func:`minimum`).
    """
    if lo is None and hi is None:
        raise ValueError("clip: expected at least one of lo and hi. Received: lo=None, hi=None")
    if _is_tensor(lo) or _is_tensor(hi):
        out = lift_tensor(x)
        if lo is not None:
            out = maximum(out, lo)
        if hi is not None:
            out = minimum(out, hi)
        return out
    x = lift_tensor(x)
    vx = x._value
    lo_v = None if lo is None else np.asarray(lo, dtype=vx.dtype) if vx.dtype.kind == "f" else lo
    hi_v = None if hi is None else np.asarray(hi, dtype=vx.dtype) if vx.dtype.kind == "f" else hi
    if lo_v is not None and hi_v is not None and np.any(np.asarray(lo_v) > np.asarray(hi_v)):
        raise ValueError(f"clip: expected lo <= hi. Received: lo={lo!r}, hi={hi!r}")
    out = np.clip(vx, lo_v, hi_v)

    def vjp(g):
        inside = np.ones(vx.shape, dtype=bool)
        if lo_v is not None:
            inside &= vx >= lo_v
        if hi_v is not None:
            inside &= vx <= hi_v
        return multiply(g, inside.astype(g.dtype))

    return record("clip", out, (x,), (vjp,), {"lo": lo if np.ndim(lo) == 0 else "array", "hi": hi if np.ndim(hi) == 0 else "array"})


# ---------------------------------------------------------------- activations
def relu(x) -> Tensor:
    """``max(x, 0)``. Gradient: ``g`` where ``x > 0``."""
    x = lift_tensor(x)
    vx = x._value
    return record("relu", np.maximum(vx, 0), (x,), (lambda g: multiply(g, (vx > 0).astype(g.dtype)),))


def _sigmoid_value(v: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-v))`` without overflow: ``exp(-|v|)`` is always in ``(0, 1]``."""
    z = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(v.dtype, copy=False)


def sigmoid(x) -> Tensor:
    """Logistic sigmoid, stable for any input. Gradient: ``g * s * (1 - s)``."""
    x = lift_tensor(x)
    out = record("sigmoid", _sigmoid_value(x._value), (x,), (lambda g: multiply(g, multiply(out, subtract(1.0, out))),))
    return out


def tanh(x) -> Tensor:
    """Hyperbolic tangent. Gradient: ``g * (1 - tanh(x)**2)``."""
    x = lift_tensor(x)
    out = record("tanh", np.tanh(x._value), (x,), (lambda g: multiply(g, subtract(1.0, multiply(out, out))),))
    return out


def softplus(x) -> Tensor:
    """``log(1 + exp(x))`` (stable: ``logaddexp(0, x)``). Gradient: ``g * sigmoid(x)``."""
    x = lift_tensor(x)
    return record("softplus", np.logaddexp(0, x._value).astype(x.dtype, copy=False), (x,),
                  (lambda g: multiply(g, sigmoid(x)),))


def cast(x, dtype) -> Tensor:
    """``x`` converted to ``dtype``. Gradient: ``g`` converted back to ``x``'s dtype."""
    x = lift_tensor(x)
    dt = np.dtype(dtype)
    if x.dtype == dt:
        return x
    return record("cast", x._value.astype(dt), (x,), (lambda g: cast(g, x.dtype),), {"dtype": dt.name})
