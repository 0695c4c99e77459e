"""Overlap losses for segmentation: Dice, Tversky, IoU (Keras 3).

``y_true`` (masks) and ``y_pred`` (probabilities) have the same shape, e.g.
``(batch, height, width, classes)``. The sums run over ``axis``: ``None`` (the Keras default)
sums over every axis, batch included, so the loss is ONE value for the whole batch (shape
``()``; ``sample_weight`` must then be a scalar); ``axis=(1, 2, 3)`` gives one loss per
sample, shape ``(batch,)``.
"""

from __future__ import annotations

import numpy as np

from .base import (
    EPSILON,
    Loss,
    as_float,
    check_axis_arg,
    check_number,
    match_shapes,
    normalize_axis,
    register_loss,
)

__all__ = ["Dice", "Tversky", "IoU"]


class _OverlapLoss(Loss):
    """Shared machinery: sums over ``axis`` and their gradient."""

    def __init__(self, axis=None, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.axis = check_axis_arg(type(self).__name__, axis, allow_none=True, allow_tuple=True)

    def _prepare(self, y_true, yp):
        return match_shapes(self, as_float(self, y_true, yp.dtype), yp)

    def _axes(self, yp):
        return normalize_axis(self, self.axis, yp.ndim)

    def _expand(self, x, axes):
        return np.expand_dims(x, axes) if axes else x

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Tversky(_OverlapLoss):
    """Tversky loss (Keras ``Tversky``; Salehi et al. 2017).

    ``I = sum(y_true * y_pred)``, ``FP = sum((1 - y_pred) * y_true)``,
    ``FN = sum(y_pred * (1 - y_true))`` (Keras's naming), all over ``axis``;
    ``l = 1 - I / (I + alpha FP + beta FN + 1e-7)``. ``alpha = beta = 0.5`` is the Dice loss,
    ``alpha = beta = 1`` the IoU (Jaccard) loss.
    """

    _default_name = "tversky"

    def __init__(self, alpha=0.5, beta=0.5, reduction="sum_over_batch_size", name=None, axis=None):
        super().__init__(axis=axis, reduction=reduction, name=name)
        owner = type(self).__name__
        self.alpha = check_number(owner, alpha, "alpha", low=0)
        self.beta = check_number(owner, beta, "beta", low=0)

    def _forward(self, yt, yp):
        axes = self._axes(yp)
        inter = np.sum(yt * yp, axis=axes)
        fp = np.sum((1.0 - yp) * yt, axis=axes)
        fn = np.sum(yp * (1.0 - yt), axis=axes)
        den = inter + self.alpha * fp + self.beta * fn + EPSILON
        return 1.0 - inter / den, {"axes": axes, "inter": inter, "den": den}

    def _backward(self, yt, yp, cache, dl):
        axes = cache["axes"]
        inter, den = self._expand(cache["inter"], axes), self._expand(cache["den"], axes)
        dden = yt * (1.0 - self.alpha) + self.beta * (1.0 - yt)
        dratio = (yt * den - inter * dden) / (den * den)
        return -dratio * self._expand(dl, axes)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


class Dice(_OverlapLoss):
    """Dice loss (Keras ``Dice``): ``l = 1 - 2 sum(y_true y_pred) / (sum(y_true) + sum(y_pred) + 1e-7)`` over ``axis``."""

    _default_name = "dice"

    def _forward(self, yt, yp):
        axes = self._axes(yp)
        inter = np.sum(yt * yp, axis=axes)
        den = np.sum(yt, axis=axes) + np.sum(yp, axis=axes) + EPSILON
        return 1.0 - 2.0 * inter / den, {"axes": axes, "inter": inter, "den": den}

    def _backward(self, yt, yp, cache, dl):
        axes = cache["axes"]
        inter, den = self._expand(cache["inter"], axes), self._expand(cache["den"], axes)
        return -2.0 * (yt * den - inter) / (den * den) * self._expand(dl, axes)


class IoU(Tversky):
    """IoU (Jaccard) loss (Keras ``IoU``): ``l = 1 - I / (sum(y_true) + sum(y_pred) - I + 1e-7)``,
    ``I = sum(y_true * y_pred)`` over ``axis``; the Tversky loss with ``alpha = beta = 1``.
    """

    _default_name = "iou"

    def __init__(self, reduction="sum_over_batch_size", name=None, axis=None):
        super().__init__(alpha=1.0, beta=1.0, reduction=reduction, name=name, axis=axis)

    def get_config(self):
        config = super().get_config()
        del config["alpha"], config["beta"]
        return config


register_loss(Dice, "dice_loss")
register_loss(Tversky, "tversky_loss")
register_loss(IoU, "iou_loss", "jaccard")
