"""Hinge and margin losses: Hinge, SquaredHinge, CategoricalHinge (Keras); MultiMargin,
MultiLabelMargin, MultiLabelSoftMargin, SoftMargin, HingeEmbedding, MarginRanking (torch).

Where torch reduces with ``"mean"`` over every element, fusenet's per-sample losses are the
mean over the last axis (Keras layout), so ``"sum_over_batch_size"`` equals torch's ``"mean"``.
"""

from __future__ import annotations

import numpy as np

from ._math import sigmoid, softplus
from .base import (
    ElementwiseLoss,
    Loss,
    as_float,
    as_labels,
    check_label_range,
    check_number,
    match_shapes,
    register_loss,
)

__all__ = [
    "Hinge",
    "SquaredHinge",
    "CategoricalHinge",
    "MultiMargin",
    "MultiLabelMargin",
    "MultiLabelSoftMargin",
    "SoftMargin",
    "HingeEmbedding",
    "MarginRanking",
]


def _hinge_labels(yt):
    """Keras: labels that are all 0 or 1 become -1 or 1; others are kept."""
    if np.all((yt == 0) | (yt == 1)):
        return 2.0 * yt - 1.0
    return yt


class Hinge(ElementwiseLoss):
    """``l = mean(max(1 - y_true * y_pred, 0), axis=-1)`` (Keras ``Hinge``).

    ``y_true`` holds -1/1 (0/1 labels are converted, as Keras). Shapes equal; per-sample
    losses drop the last axis.
    """

    _default_name = "hinge"

    def _elementwise(self, yt, yp):
        t = _hinge_labels(yt)
        m = 1.0 - t * yp
        return np.maximum(m, 0.0), np.where(m > 0, -t, 0.0)


class SquaredHinge(ElementwiseLoss):
    """``l = mean(max(1 - y_true * y_pred, 0) ** 2, axis=-1)`` (Keras ``SquaredHinge``; labels as :class:`Hinge`)."""

    _default_name = "squared_hinge"

    def _elementwise(self, yt, yp):
        t = _hinge_labels(yt)
        m = np.maximum(1.0 - t * yp, 0.0)
        return m * m, -2.0 * t * m


class CategoricalHinge(Loss):
    """Categorical hinge (Keras ``CategoricalHinge``).

    ``pos = sum(y_true * y_pred, -1)``, ``neg = max((1 - y_true) * y_pred, -1)``,
    ``l = max(neg - pos + 1, 0)``. Shapes: ``y_true`` (one-hot) and ``y_pred`` equal,
    ``(batch, ..., C)``; per-sample losses ``(batch, ...)``. The gradient of the max goes to the
    first maximal entry.
    """

    _default_name = "categorical_hinge"

    def _prepare(self, y_true, yp):
        return match_shapes(self, as_float(self, y_true, yp.dtype), yp)

    def _forward(self, yt, yp):
        pos = np.sum(yt * yp, axis=-1)
        scaled = (1.0 - yt) * yp
        arg = np.argmax(scaled, axis=-1)
        neg = np.take_along_axis(scaled, arg[..., None], axis=-1)[..., 0]
        m = neg - pos + 1.0
        return np.maximum(m, 0.0), {"arg": arg, "active": m > 0}

    def _backward(self, yt, yp, cache, dl):
        first = (cache["arg"][..., None] == np.arange(yp.shape[-1])).astype(yp.dtype)
        coef = np.where(cache["active"], dl, 0.0)[..., None]
        return ((1.0 - yt) * first - yt) * coef


class MultiMargin(Loss):
    """Multi-class margin loss (torch ``MultiMarginLoss``).

    ``l = sum_{i != y} w[y] * max(0, margin - x[y] + x[i]) ** p / C`` with ``x = y_pred``
    ``(batch, ..., C)`` scores, ``y = y_true`` ``(batch, ...)`` integer labels, ``p`` 1 or 2 and
    ``weight`` an optional list of ``C`` class weights. Per-sample losses ``(batch, ...)``.
    """

    _default_name = "multi_margin"

    def __init__(self, p=1, margin=1.0, weight=None, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        if isinstance(p, bool) or p not in (1, 2):
            raise ValueError(f"{owner}: expected p to be 1 or 2. Received: p={p!r}")
        self.p = int(p)
        self.margin = check_number(owner, margin, "margin")
        if weight is not None:
            weight = [check_number(owner, w, "weight") for w in np.asarray(weight, dtype=object).ravel()]
        self.weight = weight

    def _prepare(self, y_true, yp):
        labels = as_labels(self, y_true)
        if yp.ndim == 0 or labels.shape != yp.shape[:-1]:
            raise ValueError(
                f"{self.describe()}: expected y_true of shape y_pred.shape[:-1]. "
                f"Received: y_true.shape={labels.shape}, y_pred.shape={yp.shape}"
            )
        return labels, yp

    def _forward(self, labels, yp):
        num_classes = yp.shape[-1]
        check_label_range(self, labels, num_classes)
        onehot = labels[..., None] == np.arange(num_classes)
        xy = np.sum(np.where(onehot, yp, 0.0), axis=-1, keepdims=True)
        z = self.margin - xy + yp
        active = (~onehot) & (z > 0)
        zp = np.where(active, z, 0.0)
        h, dh = (zp, active.astype(yp.dtype)) if self.p == 1 else (zp * zp, 2.0 * zp)
        if self.weight is not None:
            if len(self.weight) != num_classes:
                raise ValueError(
                    f"{self.describe()}: expected one weight per class ({num_classes} classes). "
                    f"Received: weight of length {len(self.weight)}"
                )
            wy = np.asarray(self.weight, dtype=yp.dtype)[labels][..., None]
        else:
            wy = np.ones((), dtype=yp.dtype)
        losses = np.sum(wy * h, axis=-1) / num_classes
        return losses, {"dh": wy * dh / num_classes, "onehot": onehot}

    def _backward(self, labels, yp, cache, dl):
        g = cache["dh"] * dl[..., None]
        return g - cache["onehot"] * np.sum(g, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "p": self.p, "margin": self.margin, "weight": self.weight}


class MultiLabelMargin(Loss):
    """Multi-label margin loss (torch ``MultiLabelMarginLoss``).

    ``y_true`` ``(batch, ..., C)`` holds the indices of the target classes, padded with -1 (the
    first negative value ends the list, as torch); ``y_pred`` ``(batch, ..., C)`` scores.
    ``l = sum_{j in targets} sum_{k not in targets} max(0, 1 - (x[j] - x[k])) / C``
    (a class listed twice counts twice, as torch). Per-sample losses ``(batch, ...)``.
    """

    _default_name = "multilabel_margin"

    def _prepare(self, y_true, yp):
        labels = as_labels(self, y_true)
        if yp.ndim == 0 or labels.shape != yp.shape:
            raise ValueError(
                f"{self.describe()}: expected y_true and y_pred to have the same shape. "
                f"Received: y_true.shape={labels.shape}, y_pred.shape={yp.shape}"
            )
        return labels, yp

    def _forward(self, labels, yp):
        num_classes = yp.shape[-1]
        valid = np.cumprod(labels >= 0, axis=-1).astype(bool)
        check_label_range(self, labels, num_classes, valid)
        # counts[..., j]: how many times class j is listed as a target
        onehot = (labels[..., :, None] == np.arange(num_classes)) & valid[..., None]
        counts = np.sum(onehot, axis=-2).astype(yp.dtype)
        non_target = (counts == 0).astype(yp.dtype)
        z = 1.0 - yp[..., :, None] + yp[..., None, :]  # z[..., j, k] = 1 - x[j] + x[k]
        pair = counts[..., :, None] * non_target[..., None, :]
        active = pair * (z > 0)
        losses = np.sum(active * z, axis=(-2, -1)) / num_classes
        return losses, {"active": active}

    def _backward(self, labels, yp, cache, dl):
        a = cache["active"] * (dl[..., None, None] / yp.shape[-1])
        return np.sum(a, axis=-2) - np.sum(a, axis=-1)


class MultiLabelSoftMargin(ElementwiseLoss):
    """Multi-label soft-margin loss (torch ``MultiLabelSoftMarginLoss``) on logits.

    ``l = -mean(w * (t log sigmoid(x) + (1 - t) log sigmoid(-x)), axis=-1)``, computed as
    ``mean(w * (softplus(x) - t x))`` (stable). ``y_true`` multi-hot ``(batch, C)`` like
    ``y_pred``; ``weight`` an optional list of ``C`` class weights.
    """

    _default_name = "multilabel_soft_margin"

    def __init__(self, weight=None, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        if weight is not None:
            weight = [check_number(type(self).__name__, w, "weight") for w in np.asarray(weight, dtype=object).ravel()]
        self.weight = weight

    def _elementwise(self, yt, yp):
        e, de = softplus(yp) - yt * yp, sigmoid(yp) - yt
        if self.weight is not None:
            if yp.ndim == 0 or len(self.weight) != yp.shape[-1]:
                raise ValueError(
                    f"{self.describe()}: expected one weight per class (y_pred.shape={yp.shape}). "
                    f"Received: weight of length {len(self.weight)}"
                )
            w = np.asarray(self.weight, dtype=yp.dtype)
            e, de = e * w, de * w
        return e, de

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


class SoftMargin(ElementwiseLoss):
    """Two-class soft-margin loss (torch ``SoftMarginLoss``): ``l = mean(log(1 + exp(-y_true * y_pred)), axis=-1)``.

    ``y_true`` holds -1/1; computed as ``softplus(-y_true * y_pred)`` (stable).
    """

    _default_name = "soft_margin"

    def _elementwise(self, yt, yp):
        m = -yt * yp
        return softplus(m), -yt * sigmoid(m)


class HingeEmbedding(ElementwiseLoss):
    """Hinge embedding loss (torch ``HingeEmbeddingLoss``) on distances ``x = y_pred``.

    ``e = x`` where ``y_true == 1`` and ``max(0, margin - x)`` where ``y_true == -1`` (as torch,
    other label values get both terms); ``l = mean(e, axis=-1)``.
    """

    _default_name = "hinge_embedding"

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.margin = check_number(type(self).__name__, margin, "margin")

    def _elementwise(self, yt, yp):
        m = self.margin - yp
        not_pos, not_neg = yt != 1, yt != -1
        e = np.where(not_pos, np.maximum(m, 0.0), 0.0) + np.where(not_neg, yp, 0.0)
        de = np.where(not_pos & (m > 0), -1.0, 0.0) + np.where(not_neg, 1.0, 0.0)
        return e, de

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def unpack_inputs(loss: Loss, yp: np.ndarray, k: int, what: str):
    """Check a packed ``y_pred`` of shape ``(batch, k, ...)`` (the inputs stacked along axis 1)."""
    if yp.ndim < 2 or yp.shape[1] != k:
        raise ValueError(
            f"{loss.describe()}: expected y_pred of shape (batch, {k}, ...) holding {what} stacked along axis 1. "
            f"Received: y_pred.shape={yp.shape}"
        )
    return [yp[:, i] for i in range(k)]


class MarginRanking(Loss):
    """Margin ranking loss (torch ``MarginRankingLoss``).

    Packing: ``y_pred`` of shape ``(batch, 2, ...)`` holds ``x1 = y_pred[:, 0]`` and
    ``x2 = y_pred[:, 1]`` stacked along axis 1 (``(batch, 2)`` for one score each);
    ``y_true`` of shape ``(batch, ...)`` holds 1 (``x1`` should rank higher) or -1.
    ``e = max(0, -y_true * (x1 - x2) + margin)``; per-sample losses are ``e`` for
    ``(batch,)`` labels, else its mean over the last axis. The gradient is with respect to the
    packed ``y_pred``.
    """

    _default_name = "margin_ranking"

    def __init__(self, margin=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.margin = check_number(type(self).__name__, margin, "margin")

    def _prepare(self, y_true, yp):
        unpack_inputs(self, yp, 2, "(x1, x2)")
        yt = as_float(self, y_true, yp.dtype)
        expected = yp.shape[:1] + yp.shape[2:]
        if yt.shape != expected and yt.shape == expected + (1,):
            yt = yt[..., 0]
        if yt.shape != expected:
            raise ValueError(
                f"{self.describe()}: expected y_true of shape {expected} for y_pred of shape {yp.shape}. "
                f"Received: y_true.shape={yt.shape}, y_pred.shape={yp.shape}"
            )
        return yt, yp

    def _forward(self, yt, yp):
        x1, x2 = unpack_inputs(self, yp, 2, "(x1, x2)")
        m = -yt * (x1 - x2) + self.margin
        e = np.maximum(m, 0.0)
        de1 = np.where(m > 0, -yt, 0.0)
        if e.ndim >= 2:
            return np.mean(e, axis=-1), {"de1": de1, "n": e.shape[-1]}
        return e, {"de1": de1, "n": None}

    def _backward(self, yt, yp, cache, dl):
        de1 = cache["de1"] * (dl if cache["n"] is None else dl[..., None] / cache["n"])
        return np.stack([de1, -de1], axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


register_loss(Hinge)
register_loss(SquaredHinge)
register_loss(CategoricalHinge)
register_loss(MultiMargin, "MultiMarginLoss", "multi_margin_loss")
register_loss(MultiLabelMargin, "MultiLabelMarginLoss", "multilabel_margin_loss")
register_loss(MultiLabelSoftMargin, "MultiLabelSoftMarginLoss", "multilabel_soft_margin_loss")
register_loss(SoftMargin, "SoftMarginLoss", "soft_margin_loss")
register_loss(HingeEmbedding, "HingeEmbeddingLoss", "hinge_embedding_loss")
register_loss(MarginRanking, "MarginRankingLoss", "margin_ranking_loss")
