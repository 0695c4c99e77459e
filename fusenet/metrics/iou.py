"""Intersection-over-union metrics: IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU (Keras 3 semantics).

Every update adds a weighted confusion matrix ``cm`` of shape ``(num_classes, num_classes)``
(rows: true class, columns: predicted class), built with one ``np.bincount`` over
``true * num_classes + predicted``. Per class ``c``::

    iou_c = cm[c, c] / (sum(cm[c, :]) + sum(cm[:, c]) - cm[c, c])   # TP / (TP + FP + FN)

and the result is the mean of ``iou_c`` over the target classes whose denominator is non-zero
(classes absent from both labels and predictions are skipped, like scikit-learn's ``jaccard_score``
with ``average="macro"``). Keras adds ``epsilon() = 1e-7`` to both denominators; fusenet divides
exactly, which agrees with Keras to ~1e-7.

Labels and predictions of any shape ``(batch, ...)`` are flattened (segmentation maps included);
``sample_weight`` broadcasts against the labels (a ``(batch,)`` weight covers every pixel of its sample).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..utils import check_positive_int
from .base import Metric, as_array, broadcast_weights, divide_no_nan, squeeze_or_expand_to_same_rank

__all__ = ["IoU", "MeanIoU", "BinaryIoU", "OneHotIoU", "OneHotMeanIoU"]


def _class_ids(values: np.ndarray, num_classes: int, owner: str, what: str, hint: str = "") -> np.ndarray:
    """Integer ids in ``[0, num_classes)`` as int64, else ``ValueError``."""
    if values.size == 0:
        return values.astype(np.int64)
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise ValueError(
            f"{owner}: expected {what} to hold integer class ids{hint}. "
            f"Received non-integer values such as {values[values != np.round(values)].flat[0]!r}"
        )
    ids = values.astype(np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{owner}: expected {what} to hold class ids in [0, {num_classes}) (num_classes={num_classes}). "
            f"Received: {what} in [{lo}, {hi}]"
        )
    return ids


class _IoUBase(Metric):
    """Accumulates the confusion matrix; subclasses choose the target classes."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.num_classes = check_positive_int(num_classes, "num_classes", owner)
        if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class, numbers.Integral)):
            raise TypeError(f"{owner}: expected ignore_class to be None or an integer. Received: ignore_class={ignore_class!r}")
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{owner}: expected axis to be an integer. Received: axis={axis!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.sparse_y_true = bool(sparse_y_true)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.axis = int(axis)
        self.add_state("total_cm", (self.num_classes, self.num_classes))

    def _predicted_ids(self, y_pred: np.ndarray) -> np.ndarray:
        return np.argmax(y_pred, axis=self.axis) if not self.sparse_y_pred else y_pred

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        owner = self._owner
        t = as_array(y_true, owner, "y_true")
        p = as_array(y_pred, owner, "y_pred")
        if not self.sparse_y_true:
            t = np.argmax(t, axis=self.axis)
        p = self._predicted_ids(p)
        t2, p2 = squeeze_or_expand_to_same_rank(t, p)
        if t2.shape != p2.shape:
            raise ValueError(
                f"{owner}: expected class ids y_true and y_pred of the same shape "
                f"(after argmax for one-hot inputs). Received: y_true.shape={np.shape(y_true)}, y_pred.shape={np.shape(y_pred)}"
            )
        w = np.ones(t2.shape) if sample_weight is None else broadcast_weights(sample_weight, t2.shape, owner)
        t, p, w = t2.ravel(), p2.ravel(), w.ravel()
        if self.ignore_class is not None:
            keep = t != self.ignore_class
            t, p, w = t[keep], p[keep], w[keep]
        hint = "; pass sparse_y_pred=False for scores or probabilities" if self.sparse_y_pred else ""
        t = _class_ids(t, self.num_classes, owner, "y_true")
        p = _class_ids(p, self.num_classes, owner, "y_pred", hint)
        c = self.num_classes
        self.total_cm += np.bincount(t * c + p, weights=w, minlength=c * c).reshape(c, c)

    def _mean_iou(self, target_class_ids) -> float:
        cm = self.total_cm
        tp = np.diag(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - tp
        tp, denominator = tp[target_class_ids], denominator[target_class_ids]
        valid = denominator > 1e-9
        iou = divide_no_nan(np.where(valid, tp, 0.0), np.where(valid, denominator, 0.0))
        return float(divide_no_nan(np.sum(iou), np.count_nonzero(valid)))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


def _check_targets(target_class_ids, num_classes: int, owner: str) -> list[int]:
    try:
        ids = list(target_class_ids)
    except TypeError as exc:
        raise TypeError(
            f"{owner}: expected target_class_ids to be a list of class ids. Received: target_class_ids={target_class_ids!r}"
        ) from exc
    if not ids or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in ids):
        raise ValueError(
            f"{owner}: expected target_class_ids to be a non-empty list of integers. Received: target_class_ids={target_class_ids!r}"
        )
    if min(ids) < 0 or max(ids) >= num_classes:
        raise ValueError(
            f"{owner}: expected target_class_ids in [0, {num_classes}) (num_classes={num_classes}). "
            f"Received: target_class_ids={ids}"
        )
    return [int(i) for i in ids]


class IoU(_IoUBase):
    """IoU of the classes ``target_class_ids`` (their mean when several), from integer labels and
    predictions (``sparse_y_true`` / ``sparse_y_pred`` False: one-hot or scores, argmax along ``axis``).
    ``ignore_class``: a label id (e.g. 255 or -1) whose pixels are left out."""

    def __init__(
        self,
        num_classes,
        target_class_ids,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_true=True,
        sparse_y_pred=True,
        axis=-1,
    ):
        super().__init__(num_classes, name, dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)
        self.target_class_ids = _check_targets(target_class_ids, self.num_classes, type(self).__name__)

    def result(self) -> float:
        return self._mean_iou(self.target_class_ids)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_class_ids": list(self.target_class_ids)}


class MeanIoU(_IoUBase):
    """Mean IoU over all ``num_classes`` classes (those present in labels or predictions)."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, sparse_y_true, sparse_y_pred, axis)

    def result(self) -> float:
        return self._mean_iou(list(range(self.num_classes)))


class BinaryIoU(IoU):
    """IoU of a binary task: predictions ``>= threshold`` are class 1, the rest class 0; labels are 0/1.
    ``target_class_ids``: ``[0]``, ``[1]`` or ``[0, 1]`` (their mean)."""

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"BinaryIoU: expected threshold to be a number. Received: threshold={threshold!r}")
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name, dtype=dtype)
        self.threshold = float(threshold)

    def _predicted_ids(self, y_pred: np.ndarray) -> np.ndarray:
        return (y_pred >= self.threshold).astype(np.int64)

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "target_class_ids": list(self.target_class_ids), "threshold": self.threshold}


class OneHotIoU(IoU):
    """:class:`IoU` with one-hot labels (``sparse_y_true=False``) and, by default, score predictions."""

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, target_class_ids, name, dtype, ignore_class, False, sparse_y_pred, axis)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """:class:`MeanIoU` with one-hot labels (``sparse_y_true=False``) and, by default, score predictions."""

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name, dtype, ignore_class, False, sparse_y_pred, axis)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["sparse_y_true"]
        return config
