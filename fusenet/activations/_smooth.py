"""Smooth element-wise activations, written to be stable for any finite input.

elu, selu, celu, gelu, sigmoid, log_sigmoid, tanh, tanh_shrink, softplus, squareplus,
softsign, silu, mish, exponential. Exponentials only ever see non-positive arguments
(``expm1(min(x, 0))``, ``scipy.special.expit``, ``log1p(exp(-|x|))``), so nothing overflows at
``|x| = 1000`` in float32 or float64. The one exception is ``exponential`` itself, whose value
exceeds the float range for ``x > log(finfo.max)``: it returns ``+inf`` there, as IEEE ``exp``
does, without a warning.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._common import _Activation, blend, check_real, softplus0
from .base import register_activation

__all__ = [
    "ELU", "SELU", "CELU", "GELU", "GELUTanh", "Sigmoid", "LogSigmoid", "Tanh", "TanhShrink", "Softplus",
    "Squareplus", "Softsign", "SiLU", "Mish", "Exponential",
    "elu", "selu", "celu", "gelu", "sigmoid", "log_sigmoid", "tanh", "tanh_shrink", "softplus", "squareplus",
    "softsign", "silu", "swish", "mish", "exponential",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_K = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715
# beyond these magnitudes the Gaussian density / the tanh of the cubic are exactly 0 / +-1 in
# float64, so clipping before squaring or cubing changes nothing but avoids overflow
_GELU_CLIP = 40.0

# float32 erf as a rational function on [-4, 4] (the polynomial of Eigen's/XLA's fast float32
# erf; |error| < 5e-7 against the float64 erf, erf(+-4) rounds to +-1 in float32). SciPy's erf
# computes in float64 and is ~4.5x slower on float32 arrays: GELU is the hot spot of a transformer.
_ERF_NUM = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
            -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_DEN = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
            -1.42647390514189e-02)
_ERF_BLOCK = 16384  # elements per block: the temporaries stay in the L1/L2 cache


def erf_float32(x: np.ndarray) -> np.ndarray:
    """``erf(x)`` for a float32 array, in cache-sized blocks with preallocated temporaries."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty_like(flat)
    n = min(_ERF_BLOCK, flat.size)
    x2, p, q = (np.empty(n, dtype=np.float32) for _ in range(3))
    for start in range(0, flat.size, _ERF_BLOCK):
        xb = out[start:start + _ERF_BLOCK]
        m = xb.size
        np.clip(flat[start:start + m], -4.0, 4.0, out=xb)
        xx, pp, qq = x2[:m], p[:m], q[:m]
        np.multiply(xb, xb, out=xx)
        pp.fill(_ERF_NUM[0])
        for a in _ERF_NUM[1:]:
            pp *= xx
            pp += a
        qq.fill(_ERF_DEN[0])
        for b in _ERF_DEN[1:]:
            qq *= xx
            qq += b
        pp *= xb
        np.divide(pp, qq, out=xb)
    return out.reshape(np.shape(x))


_GELU_BLOCK = 32768  # elements: the four float32 temporaries (512 KiB) stay in the L2 cache
# the erf rational above rewritten for gelu(z) = z * (1/2 + erf(z / sqrt(2)) / 2) directly in z:
# numerator times sqrt(1/2) / 2 and both polynomials' x^(2j) coefficients times 2^-j, so that
# p(z^2) / q(z^2) * z = erf(z / sqrt(2)) / 2 with no separate scaling pass; same accuracy
_GELU_NUM = tuple(np.float32(c * 0.5 * _SQRT_HALF * 0.5 ** (len(_ERF_NUM) - 1 - i)) for i, c in enumerate(_ERF_NUM))
_GELU_DEN = tuple(np.float32(c * 0.5 ** (len(_ERF_DEN) - 1 - i)) for i, c in enumerate(_ERF_DEN))
# z is clipped to +-5.65625 (just below 4 sqrt(2), where erf(z / sqrt(2)) = 1 - 1.5e-8 rounds to 1): the
# rescaled rational evaluates to exactly +-1/2 there in float32, so gelu(-1000) is exactly 0
_GELU_ERF_CLIP = np.float32(5.65625)


def _phi_block(zb: np.ndarray, t: np.ndarray, xx: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
    """``p <- Phi(zb)`` (float32, one block; ``t``, ``xx``, ``q``: scratch of the block's size): the
    rational erf of :func:`erf_float32` with its coefficients rescaled for the argument ``z`` and the
    factor 1/2, ``z`` clipped to ``+-5.65625`` (where the rational is exactly ``+-1/2``)."""
    num, den = _GELU_NUM, _GELU_DEN
    np.clip(zb, -_GELU_ERF_CLIP, _GELU_ERF_CLIP, out=t)
    np.multiply(t, t, out=xx)
    np.multiply(xx, num[0], out=p)
    p += num[1]
    for c in num[2:]:
        p *= xx
        p += c
    np.multiply(xx, den[0], out=q)
    q += den[1]
    for c in den[2:]:
        q *= xx
        q += c
    p *= t
    p /= q  # erf(z / sqrt(2)) / 2
    p += np.float32(0.5)  # Phi(z)


def _phi_blocks(flat: np.ndarray):
    """For each cache-sized block of the 1-D float32 ``flat``: ``(start, block, p, t, q)`` with
    ``p = Phi(block)`` (:func:`_phi_block`) and ``t``, ``q`` scratch of the block's size, the four
    temporaries allocated once and reused."""
    size = min(_GELU_BLOCK, flat.size)
    t_buf, xx_buf, p_buf, q_buf = (np.empty(size, dtype=np.float32) for _ in range(4))
    for start in range(0, flat.size, _GELU_BLOCK):
        block = flat[start:start + _GELU_BLOCK]
        m = block.size
        t, p, q = t_buf[:m], p_buf[:m], q_buf[:m]
        _phi_block(block, t, xx_buf[:m], p, q)
        yield start, block, p, t, q


def gelu_float32_inplace(z: np.ndarray) -> np.ndarray:
    """``z <- gelu(z)`` for a C-contiguous float32 array, in place: ``z * (1/2 + erf(z / sqrt(2)) / 2)``
    with :func:`erf_float32`'s rational erf (its coefficients rescaled for the argument ``z`` and the
    factor 1/2), ``z`` clipped to ``+-5.65625`` inside the erf, in cache-sized blocks with reused
    temporaries: 26 passes over each block. ``|error| < 1.3e-6`` and ``< 2.7e-7 * max(1, |z|)``
    against the exact GELU. This is exactly (bit for bit) how :class:`GELU` computes float32, so
    fused layers may call it on a GEMM output without changing a number."""
    for _, zb, p, _, _ in _phi_blocks(z.reshape(-1)):
        zb *= p
    return z


def gelu_grad_float32(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy * (Phi(x) + x * exp(-x^2 / 2) / sqrt(2 pi))`` for float32 arrays of one shape (a new
    C-contiguous array): ``Phi`` exactly as :func:`gelu_float32_inplace` forms it, the density on
    ``x`` clipped to ``+-40`` (where it is 0 anyway), in the same cache-sized blocks with reused
    temporaries instead of whole-array temporaries (the derivative of the exact GELU in training)."""
    f32 = np.float32
    flat = np.ascontiguousarray(x, dtype=f32).reshape(-1)
    dflat = np.ascontiguousarray(dy, dtype=f32).reshape(-1)
    out = np.empty(flat.size, dtype=f32)
    for start, xb, p, t, q in _phi_blocks(flat):
        m = xb.size
        np.clip(xb, f32(-_GELU_CLIP), f32(_GELU_CLIP), out=t)
        np.multiply(t, f32(-0.5), out=q)
        q *= t
        np.exp(q, out=q)
        q *= t
        q *= f32(_INV_SQRT_2PI)  # x * pdf(x)
        p += q
        np.multiply(dflat[start:start + m], p, out=out[start:start + m])
    return out.reshape(np.shape(x))


def _normal_cdf(x):
    """``Phi(x) = erfc(-x / sqrt(2)) / 2``: the fast erf in float32, SciPy's erfc otherwise."""
    if x.dtype == np.float32:
        cdf = erf_float32(x * np.float32(_SQRT_HALF))
        cdf += 1.0
        cdf *= 0.5
        return cdf
    return 0.5 * special.erfc(-_SQRT_HALF * x)
_GELU_TANH_CLIP = 1e4


class ELU(_Activation):
    """``y = x if x > 0 else alpha * (exp(x) - 1)``; derivative ``alpha * exp(x)`` for ``x <= 0``."""

    name = "elu"

    def __init__(self, alpha=1.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.alpha = check_real(alpha, "alpha", self._owner)

    def _forward(self, x):
        return np.maximum(x, 0) + self.alpha * np.expm1(np.minimum(x, 0))

    def _backward(self, x, y, dy):
        pos = x > 0
        return dy * (pos + ~pos * (self.alpha * np.exp(np.minimum(x, 0))))

    def get_config(self):
        return self._config(alpha=self.alpha)


class SELU(_Activation):
    """``y = scale * elu(x, alpha)`` with ``alpha = 1.67326324...``, ``scale = 1.05070098...``."""

    name = "selu"

    def _forward(self, x):
        return SELU_SCALE * (np.maximum(x, 0) + SELU_ALPHA * np.expm1(np.minimum(x, 0)))

    def _backward(self, x, y, dy):
        pos = x > 0
        return (SELU_SCALE * dy) * (pos + ~pos * (SELU_ALPHA * np.exp(np.minimum(x, 0))))


class CELU(_Activation):
    """``y = max(x, 0) + min(0, alpha * (exp(x / alpha) - 1))``, ``alpha > 0``.

    Derivative ``exp(x / alpha)`` for ``x <= 0``, 1 above.
    """

    name = "celu"

    def __init__(self, alpha=1.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.alpha = check_real(alpha, "alpha", self._owner, low=0.0, low_open=True)

    def _forward(self, x):
        return np.maximum(x, 0) + self.alpha * np.expm1(np.minimum(x, 0) / self.alpha)

    def _backward(self, x, y, dy):
        pos = x > 0
        return dy * (pos + ~pos * np.exp(np.minimum(x, 0) / self.alpha))

    def get_config(self):
        return self._config(alpha=self.alpha)


class GELU(_Activation):
    """Gaussian error linear unit.

    Exact (default, as Keras): ``y = x * Phi(x)``, ``Phi(x) = erfc(-x / sqrt(2)) / 2``;
    derivative ``Phi(x) + x * exp(-x^2 / 2) / sqrt(2 pi)``.
    ``approximate=True``: ``y = x / 2 * (1 + tanh(k (x + 0.044715 x^3)))``, ``k = sqrt(2 / pi)``
    (torch's ``approximate="tanh"``).
    """

    name = "gelu"

    def __init__(self, approximate=False, *, _owner=None):
        super().__init__(_owner=_owner)
        if not isinstance(approximate, (bool, np.bool_)):
            raise TypeError(f"{self._owner}: expected approximate to be a bool. Received: approximate={approximate!r}")
        self.approximate = bool(approximate)

    def _tanh_inner(self, x):
        xc = np.clip(x, -_GELU_TANH_CLIP, _GELU_TANH_CLIP)
        return xc, np.tanh(_GELU_TANH_K * (xc + _GELU_TANH_C * xc * xc * xc))

    def _forward(self, x):
        if self.approximate:
            _, t = self._tanh_inner(x)
            return 0.5 * x * (1 + t)
        if x.dtype == np.float32:
            return gelu_float32_inplace(np.array(x, dtype=np.float32, order="C", copy=True))
        return x * _normal_cdf(x)

    def _backward(self, x, y, dy):
        if self.approximate:
            xc, t = self._tanh_inner(x)
            d = 0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * _GELU_TANH_K * (1 + 3 * _GELU_TANH_C * xc * xc)
            return dy * d
        if x.dtype == np.float32 and np.shape(dy) == x.shape and np.result_type(dy) == np.float32:
            return gelu_grad_float32(x, dy)
        xc = np.clip(x, -_GELU_CLIP, _GELU_CLIP)
        cdf = _normal_cdf(x)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * xc * xc)
        return dy * (cdf + xc * pdf)

    def get_config(self):
        return self._config(approximate=self.approximate)


class GELUTanh(GELU):
    """The name ``"gelu_tanh"``: :class:`GELU` with ``approximate=True``."""

    name = "gelu_tanh"

    def __init__(self, *, _owner=None):
        super().__init__(approximate=True, _owner=_owner)

    def get_config(self):
        return {}


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))`` (``scipy.special.expit``); derivative ``y (1 - y)``."""

    name = "sigmoid"

    def _forward(self, x):
        return special.expit(x)

    def _backward(self, x, y, dy):
        y = special.expit(x) if y is None else y
        return dy * y * (1 - y)


class LogSigmoid(_Activation):
    """``y = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))``; derivative ``sigmoid(-x)``."""

    name = "log_sigmoid"

    def _forward(self, x):
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))

    def _backward(self, x, y, dy):
        return dy * special.expit(-x)


class Tanh(_Activation):
    """``y = tanh(x)``; derivative ``1 - y^2``."""

    name = "tanh"

    def _forward(self, x):
        return np.tanh(x)

    def _backward(self, x, y, dy):
        y = np.tanh(x) if y is None else y
        return dy * (1 - y * y)


class TanhShrink(_Activation):
    """``y = x - tanh(x)``; derivative ``tanh(x)^2``."""

    name = "tanh_shrink"

    def _forward(self, x):
        return x - np.tanh(x)

    def _backward(self, x, y, dy):
        t = np.tanh(x)
        return dy * t * t


class Softplus(_Activation):
    """``y = log(1 + exp(beta x)) / beta`` (as ``max(z, 0) + log1p(exp(-|z|))``, ``z = beta x``); derivative ``sigmoid(beta x)``.

    Keras' softplus is ``beta=1``; ``threshold`` (torch's option, ``None`` here by default)
    makes ``y = x`` where ``beta * x > threshold``.
    """

    name = "softplus"

    def __init__(self, beta=1.0, threshold=None, *, _owner=None):
        super().__init__(_owner=_owner)
        self.beta = check_real(beta, "beta", self._owner, low=0.0, low_open=True)
        self.threshold = check_real(threshold, "threshold", self._owner, allow_none=True)

    def _forward(self, x):
        bx = self.beta * x if self.beta != 1 else x
        y = softplus0(bx)
        if self.beta != 1:
            y = y / self.beta
        if self.threshold is not None:
            y = blend(bx > self.threshold, x, y)
        return y

    def _backward(self, x, y, dy):
        bx = self.beta * x if self.beta != 1 else x
        d = special.expit(bx)
        if self.threshold is not None:
            linear = bx > self.threshold
            d = linear + ~linear * d
        return dy * d

    def get_config(self):
        return self._config(beta=self.beta, threshold=self.threshold)


class Squareplus(_Activation):
    """``y = (x + sqrt(x^2 + b)) / 2``, ``b >= 0``; derivative ``y / sqrt(x^2 + b)``.

    ``sqrt(x^2 + b)`` is ``hypot(x, sqrt(b))`` (no overflow), and for ``x < 0`` the sum is
    formed as ``b / (sqrt(x^2 + b) - x)`` (no cancellation).
    """

    name = "squareplus"

    def __init__(self, b=4.0, *, _owner=None):
        super().__init__(_owner=_owner)
        self.b = check_real(b, "b", self._owner, low=0.0)

    def _twice(self, x):
        """``(x + h, h)`` with ``h = sqrt(x^2 + b)``."""
        h = np.hypot(x, math.sqrt(self.b))
        neg = x < 0
        stable = np.divide(self.b, h - x, out=np.zeros_like(h), where=neg)
        return stable + (x + h) * ~neg, h

    def _forward(self, x):
        return self._twice(x)[0] / 2

    def _backward(self, x, y, dy):
        s, h = self._twice(x)
        return dy * np.divide(s, 2 * h, out=np.full_like(h, 0.5), where=h > 0)

    def get_config(self):
        return self._config(b=self.b)


class Softsign(_Activation):
    """``y = x / (1 + |x|)``; derivative ``1 / (1 + |x|)^2``."""

    name = "softsign"

    def _forward(self, x):
        return x / (1 + np.abs(x))

    def _backward(self, x, y, dy):
        d = 1 + np.abs(x)
        return dy / (d * d)


class SiLU(_Activation):
    """SiLU / swish: ``y = x * sigmoid(x)``; derivative ``s (1 + x (1 - s))``, ``s = sigmoid(x)``."""

    name = "silu"

    def _forward(self, x):
        return x * special.expit(x)

    def _backward(self, x, y, dy):
        s = special.expit(x)
        return dy * s * (1 + x * (1 - s))


class Mish(_Activation):
    """``y = x * tanh(softplus(x))``; derivative ``t + x (1 - t^2) sigmoid(x)``, ``t = tanh(softplus(x))``."""

    name = "mish"

    def _forward(self, x):
        return x * np.tanh(softplus0(x))

    def _backward(self, x, y, dy):
        t = np.tanh(softplus0(x))
        return dy * (t + x * (1 - t * t) * special.expit(x))


class Exponential(_Activation):
    """``y = exp(x)``; derivative ``y``. ``+inf`` (no warning) where ``exp(x)`` exceeds the float range."""

    name = "exponential"

    def _forward(self, x):
        with np.errstate(over="ignore"):
            return np.exp(x)

    def _backward(self, x, y, dy):
        with np.errstate(over="ignore"):
            y = np.exp(x) if y is None else y
            return dy * y


register_activation(ELU)
register_activation(SELU)
register_activation(CELU)
register_activation(GELU)
register_activation(GELUTanh)
register_activation(Sigmoid)
register_activation(LogSigmoid, "logsigmoid")
register_activation(Tanh)
register_activation(TanhShrink, "tanhshrink")
register_activation(Softplus)
register_activation(Squareplus)
register_activation(Softsign)
register_activation(SiLU, "swish")
register_activation(Mish)
register_activation(Exponential)


# ---------------------------------------------------------------- plain functions (Keras signatures)
def elu(x, alpha=1.0):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""
    return ELU(alpha).forward(x)


def selu(x):
    """``scale * elu(x, alpha)`` with the SELU constants."""
    return SELU().forward(x)


def celu(x, alpha=1.0):
    """``max(x, 0) + min(0, alpha * (exp(x / alpha) - 1))``."""
    return CELU(alpha).forward(x)


def gelu(x, approximate=False):
    """``x * Phi(x)`` (exact) or its tanh approximation."""
    return GELU(approximate).forward(x)


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return Sigmoid().forward(x)


def log_sigmoid(x):
    """``log(sigmoid(x))``."""
    return LogSigmoid().forward(x)


def tanh(x):
    """``tanh(x)``."""
    return Tanh().forward(x)


def tanh_shrink(x):
    """``x - tanh(x)``."""
    return TanhShrink().forward(x)


def softplus(x, beta=1.0, threshold=None):
    """``log(1 + exp(beta x)) / beta`` (Keras: ``beta=1``)."""
    return Softplus(beta, threshold).forward(x)


def squareplus(x, b=4.0):
    """``(x + sqrt(x^2 + b)) / 2``."""
    return Squareplus(b).forward(x)


def softsign(x):
    """``x / (1 + |x|)``."""
    return Softsign().forward(x)


def silu(x):
    """``x * sigmoid(x)``."""
    return SiLU().forward(x)


swish = silu


def mish(x):
    """``x * tanh(softplus(x))``."""
    return Mish().forward(x)


def exponential(x):
    """``exp(x)``."""
    return Exponential().forward(x)
