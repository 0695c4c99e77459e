"""Probabilistic losses: KLDivergence, Poisson, PoissonNLL (torch), GaussianNLL (torch)."""

from __future__ import annotations

import math

import numpy as np

from .base import EPSILON, ElementwiseLoss, Loss, as_float, check_bool, check_number, register_loss

__all__ = ["KLDivergence", "Poisson", "PoissonNLL", "GaussianNLL"]


class KLDivergence(ElementwiseLoss):
    """Kullback-Leibler divergence (Keras ``KLDivergence``; torch ``KLDivLoss`` with ``log_input=True``).

    Default (Keras): ``l = sum(t * log(t / p), axis=-1)`` with ``t = clip(y_true, 1e-7, 1)`` and
    ``p = clip(y_pred, 1e-7, 1)`` probabilities (the gradient is 0 where ``y_pred`` is clipped).
    ``log_input=True`` (torch's convention): ``y_pred`` holds log-probabilities and
    ``l = sum(t * (log t - y_pred), axis=-1)`` with ``t = y_true`` unclipped (``0 log 0 = 0``),
    so ``"sum_over_batch_size"`` on ``(batch, C)`` inputs is torch's ``reduction="batchmean"``.
    Shapes: ``y_true`` and ``y_pred`` equal, ``(batch, ..., C)``; per-sample losses ``(batch, ...)``.
    """

    _default_name = "kl_divergence"
    _reduce_op = "sum"

    def __init__(self, log_input=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.log_input = check_bool(type(self).__name__, log_input, "log_input")

    def _elementwise(self, yt, yp):
        if self.log_input:
            positive = yt > 0
            t_log_t = np.where(positive, yt * np.log(np.where(positive, yt, 1.0)), 0.0)
            return t_log_t - yt * yp, -yt
        t = np.clip(yt, EPSILON, 1.0)
        p = np.clip(yp, EPSILON, 1.0)
        inside = (yp >= EPSILON) & (yp <= 1.0)
        return t * np.log(t / p), np.where(inside, -t / p, 0.0)

    def get_config(self):
        return {**super().get_config(), "log_input": self.log_input}


class Poisson(ElementwiseLoss):
    """Poisson loss (Keras ``Poisson``): ``l = mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1)``.

    ``y_pred`` is the (positive) rate; torch: ``PoissonNLLLoss(log_input=False, eps=1e-7)``.
    """

    _default_name = "poisson"

    def _elementwise(self, yt, yp):
        shifted = yp + EPSILON
        return yp - yt * np.log(shifted), 1.0 - yt / shifted


class PoissonNLL(ElementwiseLoss):
    """Poisson negative log-likelihood (torch ``PoissonNLLLoss``).

    ``log_input=True``: ``e = exp(y_pred) - y_true * y_pred`` (``y_pred`` is the log-rate);
    ``log_input=False``: ``e = y_pred - y_true * log(y_pred + eps)``.
    ``full=True`` adds Stirling's term ``t log t - t + 0.5 log(2 pi t)`` where ``t = y_true > 1``.
    ``l = mean(e, axis=-1)``. With ``log_input=True`` the loss grows as ``exp(y_pred)``:
    log-rates above ~88 (float32) or ~709 (float64) overflow to ``inf``.
    """

    _default_name = "poisson_nll"

    def __init__(self, log_input=True, full=False, eps=1e-8, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.log_input = check_bool(owner, log_input, "log_input")
        self.full = check_bool(owner, full, "full")
        self.eps = check_number(owner, eps, "eps", low=0, low_open=True)

    def _elementwise(self, yt, yp):
        if self.log_input:
            rate = np.exp(yp)
            e, de = rate - yt * yp, rate - yt
        else:
            shifted = yp + self.eps
            e, de = yp - yt * np.log(shifted), 1.0 - yt / shifted
        if self.full:
            big = yt > 1
            t = np.where(big, yt, 1.0)
            e = e + np.where(big, t * np.log(t) - t + 0.5 * np.log(2.0 * math.pi * t), 0.0)
        return e, de

    def get_config(self):
        return {**super().get_config(), "log_input": self.log_input, "full": self.full, "eps": self.eps}


class GaussianNLL(Loss):
    """Gaussian negative log-likelihood (torch ``GaussianNLLLoss``).

    Input convention (channels-last, the output of one ``Dense(2 * d)``): ``y_true`` has shape
    ``(batch, ..., d)`` and ``y_pred`` ``(batch, ..., 2 d)`` where ``y_pred[..., :d]`` is the
    mean and ``y_pred[..., d:]`` the variance; or ``y_pred`` ``(batch, ..., d + 1)`` with one
    variance ``y_pred[..., d]`` shared by the ``d`` targets (torch's ``var`` of shape
    ``(N, 1)``). ``y_true`` of shape ``(batch,)`` means ``d = 1``.

    ``e = 0.5 * (log(v) + (mean - y_true) ** 2 / v)`` (``+ 0.5 log(2 pi)`` when ``full``) with
    ``v = max(var, eps)``; ``l = mean(e, axis=-1)``, per-sample losses ``(batch, ...)``.
    Negative variances raise ``ValueError``. As torch, the clamp is not differentiated: the
    variance receives the gradient of ``e`` at ``v`` even where ``var < eps``.
    """

    _default_name = "gaussian_nll"

    def __init__(self, full=False, eps=1e-6, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.full = check_bool(owner, full, "full")
        self.eps = check_number(owner, eps, "eps", low=0, low_open=True)

    def _prepare(self, y_true, yp):
        yt = as_float(self, y_true, yp.dtype)
        if yt.ndim == yp.ndim - 1:
            yt = yt[..., None]
        d = yt.shape[-1] if yt.ndim else 0
        if yt.ndim == 0 or yt.shape[:-1] != yp.shape[:-1] or yp.shape[-1] not in (2 * d, d + 1):
            raise ValueError(
                f"{self.describe()}: expected y_pred of shape y_true.shape[:-1] + (2 * d,) (means, then variances) "
                f"or + (d + 1,) (means, then one shared variance) for y_true of shape (..., d). "
                f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={yp.shape}"
            )
        var = yp[..., d:]
        if np.any(var < 0):
            raise ValueError(
                f"{self.describe()}: expected non-negative variances y_pred[..., {d}:]. "
                f"Received: a variance of {float(var[var < 0].flat[0])}"
            )
        return yt, yp

    def _forward(self, yt, yp):
        d = yt.shape[-1]
        mean, var = yp[..., :d], yp[..., d:]
        v = np.maximum(var, self.eps)
        r = mean - yt
        e = 0.5 * (np.log(v) + r * r / v)
        if self.full:
            e = e + 0.5 * math.log(2.0 * math.pi)
        return np.mean(e, axis=-1), {"r": r, "v": v}

    def _backward(self, yt, yp, cache, dl):
        r, v = cache["r"], cache["v"]
        d = r.shape[-1]
        scale = dl[..., None] / d
        dmean = r / v * scale
        dvar = 0.5 * (1.0 / v - r * r / (v * v)) * scale
        if v.shape[-1] != d:  # one shared variance
            dvar = np.sum(dvar, axis=-1, keepdims=True)
        return np.concatenate([dmean, dvar], axis=-1)

    def get_config(self):
        return {**super().get_config(), "full": self.full, "eps": self.eps}


register_loss(KLDivergence, "kld", "KLD", "kullback_leibler_divergence")
register_loss(Poisson)
register_loss(PoissonNLL, "PoissonNLLLoss", "poisson_nll_loss")
register_loss(GaussianNLL, "GaussianNLLLoss", "gaussian_nll_loss")
