"""Regression losses: MSE, MAE, MAPE, MSLE, Huber, SmoothL1, LogCosh, CosineSimilarity.

``y_true`` and ``y_pred`` have the same shape ``(batch, ..., d)``; the per-sample losses are
the mean over the last axis (shape ``(batch, ...)``), as Keras; 1-D inputs ``(batch,)`` give
one loss per element. ``e = y_pred - y_true`` below.
"""

from __future__ import annotations

import numpy as np

from ._math import softplus
from .base import (
    EPSILON,
    ElementwiseLoss,
    Loss,
    as_float,
    check_axis_arg,
    check_number,
    match_shapes,
    normalize_axis,
    register_loss,
)

__all__ = [
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "SmoothL1",
    "LogCosh",
    "CosineSimilarity",
]


class MeanSquaredError(ElementwiseLoss):
    """``l = mean(e ** 2, axis=-1)`` (Keras ``MeanSquaredError``, torch ``MSELoss``)."""

    _default_name = "mean_squared_error"

    def _elementwise(self, yt, yp):
        e = yp - yt
        return e * e, 2.0 * e


class MeanAbsoluteError(ElementwiseLoss):
    """``l = mean(|e|, axis=-1)`` (Keras ``MeanAbsoluteError``, torch ``L1Loss``); gradient ``sign(e)`` (0 at 0)."""

    _default_name = "mean_absolute_error"

    def _elementwise(self, yt, yp):
        e = yp - yt
        return np.abs(e), np.sign(e)


class MeanAbsolutePercentageError(ElementwiseLoss):
    """``l = 100 * mean(|e| / max(|y_true|, 1e-7), axis=-1)`` (Keras ``MeanAbsolutePercentageError``)."""

    _default_name = "mean_absolute_percentage_error"

    def _elementwise(self, yt, yp):
        e = yp - yt
        scale = 100.0 / np.maximum(np.abs(yt), EPSILON)
        return np.abs(e) * scale, np.sign(e) * scale


class MeanSquaredLogarithmicError(ElementwiseLoss):
    """``l = mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)) ** 2, axis=-1)``, ``eps = 1e-7`` (Keras)."""

    _default_name = "mean_squared_logarithmic_error"

    def _elementwise(self, yt, yp):
        p = np.maximum(yp, EPSILON)
        d = np.log1p(p) - np.log1p(np.maximum(yt, EPSILON))
        return d * d, np.where(yp >= EPSILON, 2.0 * d / (p + 1.0), 0.0)


class Huber(ElementwiseLoss):
    """Huber loss (Keras ``Huber``, torch ``HuberLoss``).

    ``h(e) = 0.5 * e**2`` where ``|e| <= delta``, else ``delta * |e| - 0.5 * delta**2``;
    ``l = mean(h, axis=-1)``. ``delta > 0``.
    """

    _default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.delta = check_number(type(self).__name__, delta, "delta", low=0, low_open=True)

    def _elementwise(self, yt, yp):
        e = yp - yt
        a = np.abs(e)
        small = a <= self.delta
        value = np.where(small, 0.5 * e * e, self.delta * a - 0.5 * self.delta**2)
        return value, np.where(small, e, self.delta * np.sign(e))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class SmoothL1(ElementwiseLoss):
    """Smooth L1 loss (torch ``SmoothL1Loss``).

    ``s(e) = 0.5 * e**2 / beta`` where ``|e| < beta``, else ``|e| - 0.5 * beta``;
    ``l = mean(s, axis=-1)``. ``beta >= 0`` (``beta = 0`` is the L1 loss). Equals
    ``Huber(delta=beta) / beta`` for ``beta > 0``.
    """

    _default_name = "smooth_l1"

    def __init__(self, beta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.beta = check_number(type(self).__name__, beta, "beta", low=0)

    def _elementwise(self, yt, yp):
        e = yp - yt
        a = np.abs(e)
        if self.beta == 0:
            return a, np.sign(e)
        small = a < self.beta
        value = np.where(small, 0.5 * e * e / self.beta, a - 0.5 * self.beta)
        return value, np.where(small, e / self.beta, np.sign(e))

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


class LogCosh(ElementwiseLoss):
    """``l = mean(log(cosh(e)), axis=-1)`` (Keras ``LogCosh``).

    Computed stably as ``e + softplus(-2 e) - log(2)``; the gradient is ``tanh(e)``.
    """

    _default_name = "log_cosh"

    def _elementwise(self, yt, yp):
        e = yp - yt
        return e + softplus(-2.0 * e) - np.log(2.0).astype(e.dtype), np.tanh(e)


class CosineSimilarity(Loss):
    """Negative cosine similarity (Keras ``CosineSimilarity``; the Keras sign: -1 is best).

    ``l = -sum(normalize(y_true) * normalize(y_pred), axis)`` with
    ``normalize(x) = x / max(||x||_2, 1e-7)`` along ``axis`` (so a zero vector gives 0).
    ``y_true`` and ``y_pred`` have the same shape; the per-sample losses drop ``axis``
    (shape ``(batch,)`` for 2-D inputs).
    """

    _default_name = "cosine_similarity"

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.axis = check_axis_arg(type(self).__name__, axis)

    def _prepare(self, y_true, yp):
        return match_shapes(self, as_float(self, y_true, yp.dtype), yp)

    def _forward(self, yt, yp):
        ax = normalize_axis(self, self.axis, yp.ndim)[0]
        t = yt / np.maximum(np.sqrt(np.sum(yt * yt, axis=ax, keepdims=True)), EPSILON)
        norm = np.sqrt(np.sum(yp * yp, axis=ax, keepdims=True))
        n = np.maximum(norm, EPSILON)
        dot = np.sum(t * yp, axis=ax, keepdims=True)
        losses = -np.squeeze(dot / n, axis=ax)
        return losses, {"ax": ax, "t": t, "n": n, "dot": dot, "big": norm > EPSILON}

    def _backward(self, yt, yp, cache, dl):
        ax, t, n, dot = cache["ax"], cache["t"], cache["n"], cache["dot"]
        g = -(t / n - np.where(cache["big"], dot * yp / n**3, 0.0))
        return g * np.expand_dims(dl, ax)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


register_loss(MeanSquaredError, "mse", "MSE", "MSELoss")
register_loss(MeanAbsoluteError, "mae", "MAE", "L1Loss", "l1")
register_loss(MeanAbsolutePercentageError, "mape", "MAPE")
register_loss(MeanSquaredLogarithmicError, "msle", "MSLE")
register_loss(Huber, "huber", "HuberLoss")
register_loss(SmoothL1, "SmoothL1Loss", "smooth_l1_loss")
register_loss(LogCosh, "logcosh")
register_loss(CosineSimilarity)
