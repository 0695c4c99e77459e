"""Regression metrics: MSE, RMSE, MAE, MAPE, MSLE, log-cosh, cosine similarity and R2Score.

The per-sample functions follow Keras's losses of the same names (``y_true`` and ``y_pred`` of one
shape ``(batch, ...)``, after Keras's squeeze/expand of a trailing size-1 axis) and average over the
last axis of rank >= 2 inputs; rank-1 inputs hold one value per sample and are not reduced.
They are re-implemented here because metrics may not import ``fusenet.losses``.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ..utils import result_dtype
from .base import EPSILON, FixedFunctionMetric, Mean, Metric, broadcast_weights, divide_no_nan, matched_pair, per_sample

__all__ = [
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "log_cosh",
    "cosine_similarity",
    "MeanSquaredError",
    "RootMeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "LogCoshError",
    "CosineSimilarity",
    "R2Score",
]


def _float_pair(y_true, y_pred, owner: str, dtype=None):
    t, p = matched_pair(y_true, y_pred, owner)
    dt = result_dtype(p, dtype)
    return t.astype(dt, copy=False), p.astype(dt, copy=False)


# ---------------------------------------------------------------- functions
def mean_squared_error(y_true, y_pred):
    """``mean((y_true - y_pred)**2, axis=-1)``."""
    t, p = _float_pair(y_true, y_pred, "mean_squared_error")
    return per_sample(np.square(t - p))


def mean_absolute_error(y_true, y_pred):
    """``mean(|y_true - y_pred|, axis=-1)``."""
    t, p = _float_pair(y_true, y_pred, "mean_absolute_error")
    return per_sample(np.abs(t - p))


def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7), axis=-1)``."""
    t, p = _float_pair(y_true, y_pred, "mean_absolute_percentage_error")
    return 100.0 * per_sample(np.abs(t - p) / np.maximum(np.abs(t), EPSILON))


def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2, axis=-1)``."""
    t, p = _float_pair(y_true, y_pred, "mean_squared_logarithmic_error")
    return per_sample(np.square(np.log1p(np.maximum(p, EPSILON)) - np.log1p(np.maximum(t, EPSILON))))


def log_cosh(y_true, y_pred):
    """``mean(log(cosh(y_pred - y_true)), axis=-1)``, computed as ``x + softplus(-2x) - log 2`` (no overflow)."""
    t, p = _float_pair(y_true, y_pred, "log_cosh")
    x = p - t
    return per_sample(x + np.logaddexp(0.0, -2.0 * x) - np.log(2.0).astype(x.dtype))


def cosine_similarity(y_true, y_pred, axis=-1):
    """``sum(l2_normalize(y_true) * l2_normalize(y_pred), axis)``, with ``x / sqrt(max(sum(x**2), 1e-12))``."""
    t, p = _float_pair(y_true, y_pred, "cosine_similarity")
    if t.ndim < 2:
        raise ValueError(
            f"cosine_similarity: expected inputs of shape (batch, ..., features). Received: y_pred.shape={p.shape}"
        )

    def normalize(x):
        return x / np.sqrt(np.maximum(np.sum(np.square(x), axis=axis, keepdims=True), 1e-12))

    return np.sum(normalize(t) * normalize(p), axis=axis)


# ---------------------------------------------------------------- metric classes
class MeanSquaredError(FixedFunctionMetric):
    """Mean of :func:`mean_squared_error` over the samples."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(FixedFunctionMetric):
    """Mean of :func:`mean_absolute_error` over the samples."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)


class MeanAbsolutePercentageError(FixedFunctionMetric):
    """Mean of :func:`mean_absolute_percentage_error` over the samples (in percent)."""

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(mean_absolute_percentage_error, name=name, dtype=dtype)


class MeanSquaredLogarithmicError(FixedFunctionMetric):
    """Mean of :func:`mean_squared_logarithmic_error` over the samples."""

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(mean_squared_logarithmic_error, name=name, dtype=dtype)


class LogCoshError(FixedFunctionMetric):
    """Mean of :func:`log_cosh` over the samples."""

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(log_cosh, name=name, dtype=dtype)


class CosineSimilarity(FixedFunctionMetric):
    """Mean of :func:`cosine_similarity` along ``axis`` over the samples."""

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"CosineSimilarity: expected axis to be an integer. Received: axis={axis!r}")
        super().__init__(cosine_similarity, name=name, dtype=dtype, axis=int(axis))
        self.axis = int(axis)

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}


class RootMeanSquaredError(Mean):
    """``sqrt(weighted mean over samples of mean((y_pred - y_true)**2))``."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        t, p = _float_pair(y_true, y_pred, self._owner, self.dtype)
        super().update_state(np.square(p - t), sample_weight=sample_weight)

    def result(self) -> float:
        return float(np.sqrt(max(super().result(), 0.0)))


class R2Score(Metric):
    """Coefficient of determination, ``R2 = 1 - SS_res / SS_tot`` per output column.

    Inputs ``(batch, outputs)`` (or ``(batch,)``, one output). With weights ``w``:
    ``SS_res = sum(w * (y_true - y_pred)**2)``, ``SS_tot = sum(w * (y_true - mean_w(y_true))**2)``.
    ``SS_tot`` is accumulated across batches with Chan's parallel update of the weighted mean and
    sum of squared deviations (Keras's ``sum(y**2) - sum(y)**2 / n`` loses precision).
    ``class_aggregation``: ``"uniform_average"`` (mean over outputs), ``"variance_weighted_average"``
    (weighted by ``SS_tot``) or ``None`` (a float64 array per output). A column with ``SS_tot = 0``
    scores 1.0 when predicted perfectly and 0.0 otherwise (scikit-learn's convention; Keras gives NaN
    or 0). ``num_regressors = p > 0`` gives the adjusted score ``1 - (1 - R2) (n - 1) / (n - p - 1)``
    with ``n`` the number of entries seen (Keras counts every entry of ``y_true``); when ``p >= n - 1``
    a warning is issued and the plain score is returned.
    """

    _AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in self._AGGREGATIONS:
            raise ValueError(
                f"R2Score: expected class_aggregation to be one of {list(self._AGGREGATIONS)}. "
                f"Received: class_aggregation={class_aggregation!r}"
            )
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, numbers.Integral):
            raise TypeError(f"R2Score: expected num_regressors to be an integer >= 0. Received: num_regressors={num_regressors!r}")
        if num_regressors < 0:
            raise ValueError(f"R2Score: expected num_regressors to be an integer >= 0. Received: num_regressors={num_regressors}")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        self.num_outputs = None
        self.add_state("num_samples")

    _STATES = ("count", "mean", "squared_deviations", "residual")

    def _build(self, num_outputs: int) -> None:
        for state in self._STATES:
            self.add_state(state, (num_outputs,))
        self.num_outputs = num_outputs

    def reset_state(self) -> None:
        """Zero the statistics and forget the number of outputs (the next update builds again)."""
        for state in self._STATES:
            self.remove_state(state)
        self.num_outputs = None
        super().reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        owner = self._owner
        t, p = _float_pair(y_true, y_pred, owner, self.dtype)
        if t.ndim == 1:
            t, p = t[:, None], p[:, None]
        if t.ndim != 2:
            raise ValueError(
                f"{owner}: expected inputs of shape (batch, outputs) or (batch,). "
                f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}"
            )
        if self.num_outputs is None:
            self._build(t.shape[1])
        elif t.shape[1] != self.num_outputs:
            raise ValueError(f"{owner}: was built for {self.num_outputs} outputs. Received: y_true.shape={t.shape}")
        t64, p64 = t.astype(np.float64), p.astype(np.float64)
        w = np.ones(t.shape) if sample_weight is None else broadcast_weights(sample_weight, t.shape, owner)
        batch_count = w.sum(axis=0)
        batch_mean = divide_no_nan(np.sum(w * t64, axis=0), batch_count)
        batch_m2 = np.sum(w * np.square(t64 - batch_mean), axis=0)
        new_count = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean += delta * divide_no_nan(batch_count, new_count)
        self.squared_deviations += batch_m2 + np.square(delta) * divide_no_nan(self.count * batch_count, new_count)
        self.count[...] = new_count
        self.residual += np.sum(w * np.square(t64 - p64), axis=0)
        self.num_samples += t.size

    def result(self):
        if self.num_outputs is None:
            return np.zeros(0) if self.class_aggregation is None else 0.0
        total, residual = self.squared_deviations, self.residual
        constant = np.where(residual == 0, 1.0, 0.0)
        raw = np.where(total == 0, constant, 1.0 - divide_no_nan(residual, total))
        raw = np.where(self.count == 0, 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = np.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            score = divide_no_nan(np.sum(total * raw), np.sum(total)) if np.sum(total) != 0 else np.mean(raw)
        else:
            score = raw
        if self.num_regressors:
            n, k = float(self.num_samples), float(self.num_regressors)
            if k >= n - 1:
                warnings.warn(
                    f"{self._owner}: num_regressors={self.num_regressors} needs more than "
                    f"{self.num_regressors + 1} samples for the adjusted R2 score (seen {int(n)}); "
                    "returning the plain R2 score.",
                    stacklevel=2,
                )
            else:
                score = 1.0 - (1.0 - score) * (n - 1.0) / (n - k - 1.0)
        return np.asarray(score, dtype=np.float64) if self.class_aggregation is None else float(score)

    def get_config(self) -> dict:
        return {**super().get_config(), "class_aggregation": self.class_aggregation, "num_regressors": self.num_regressors}
