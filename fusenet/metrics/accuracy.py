"""Accuracy metrics: exact, binary, categorical, sparse categorical, and their top-k variants.

Each metric is a :class:`~fusenet.metrics.base.MeanMetricWrapper` of a per-sample function of the same
(snake_case) name, exported too. Shapes: ``y_pred`` is ``(batch, ...)``; the functions return one
value per sample, ``(batch,)``, or ``(batch, ...)`` for sequence outputs (averaged per sample by the
metric). As in Keras, elementwise functions (``accuracy``, ``binary_accuracy``) average over the last
axis of rank >= 2 inputs; rank-1 inputs hold one value per sample and are not reduced (Keras would
average a rank-1 batch into one value, which makes the result depend on the batch size).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..utils import check_positive_int, result_dtype
from .base import FixedFunctionMetric, as_array, matched_pair, per_sample

__all__ = [
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
]


# ---------------------------------------------------------------- helpers
def _as_float(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.astype(result_dtype(like))


def _checked_labels(labels: np.ndarray, num_classes: int, owner: str) -> np.ndarray:
    """Integer class ids in ``[0, num_classes)`` as int64, else ``ValueError``."""
    if labels.size == 0:
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(
            f"{owner}: expected y_true to hold integer class ids. "
            f"Received non-integer values such as {labels[labels != np.round(labels)].flat[0]!r}"
        )
    ints = labels.astype(np.int64)
    lo, hi = int(ints.min()), int(ints.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{owner}: expected class ids in [0, {num_classes}) for y_pred with {num_classes} classes. "
            f"Received: labels in [{lo}, {hi}]"
        )
    return ints


def _sparse_pair(y_true, y_pred, owner: str):
    """Integer labels ``(batch, ...)`` (or with a trailing axis of 1) and scores ``(batch, ..., classes)``."""
    t = as_array(y_true, owner, "y_true")
    p = as_array(y_pred, owner, "y_pred")
    if p.ndim == 0:
        raise ValueError(f"{owner}: expected y_pred of shape (batch, ..., classes). Received: y_pred.shape={p.shape}")
    if t.ndim == p.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    if t.shape != p.shape[:-1]:
        raise ValueError(
            f"{owner}: expected integer labels y_true of shape y_pred.shape[:-1]={p.shape[:-1]} "
            f"(or with a trailing axis of 1). Received: y_true.shape={np.shape(y_true)}, y_pred.shape={p.shape}"
        )
    return _checked_labels(t, p.shape[-1], owner), p


def _dense_pair(y_true, y_pred, owner: str, sparse_name: str):
    """One-hot (or score) ``y_true`` and ``y_pred`` of the same shape ``(batch, ..., classes)``."""
    t = as_array(y_true, owner, "y_true")
    p = as_array(y_pred, owner, "y_pred")
    if t.shape != p.shape or p.ndim == 0:
        raise ValueError(
            f"{owner}: expected one-hot y_true with the shape of y_pred (batch, ..., classes); "
            f"for integer labels use {sparse_name}. Received: y_true.shape={t.shape}, y_pred.shape={p.shape}"
        )
    return t, p


def _in_top_k(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """True where the label's score is among the ``k`` largest of its row (ties count as inside,
    like Keras's ``in_top_k``): fewer than ``k`` scores are strictly greater than the label's."""
    target = np.take_along_axis(scores, labels[..., None], axis=-1)
    return np.count_nonzero(scores > target, axis=-1) < k


# ---------------------------------------------------------------- functions
def accuracy(y_true, y_pred):
    """``mean(y_true == y_pred, axis=-1)`` (``y_true`` cast to ``y_pred``'s dtype); shapes must match."""
    t, p = matched_pair(y_true, y_pred, "accuracy")
    return per_sample(_as_float(t.astype(p.dtype) == p, p))


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """``mean(y_true == (y_pred > threshold), axis=-1)``; ``y_true`` holds 0/1, shapes must match."""
    t, p = matched_pair(y_true, y_pred, "binary_accuracy")
    predicted = p > np.asarray(threshold, dtype=p.dtype if p.dtype.kind == "f" else np.float64)
    return per_sample(_as_float(t == predicted.astype(t.dtype), p))


def categorical_accuracy(y_true, y_pred):
    """``argmax(y_true, -1) == argmax(y_pred, -1)`` for one-hot ``y_true`` of ``y_pred``'s shape;
    returns shape ``y_pred.shape[:-1]``."""
    t, p = _dense_pair(y_true, y_pred, "categorical_accuracy", "sparse_categorical_accuracy")
    return _as_float(np.argmax(t, axis=-1) == np.argmax(p, axis=-1), p)


def sparse_categorical_accuracy(y_true, y_pred):
    """``y_true == argmax(y_pred, -1)`` for integer labels ``y_true`` of shape ``y_pred.shape[:-1]``."""
    labels, p = _sparse_pair(y_true, y_pred, "sparse_categorical_accuracy")
    return _as_float(labels == np.argmax(p, axis=-1), p)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Whether ``argmax(y_true)`` is among the ``k`` highest scores of ``y_pred`` (one-hot ``y_true``)."""
    k = check_positive_int(k, "k", "top_k_categorical_accuracy")
    t, p = _dense_pair(y_true, y_pred, "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy")
    return _as_float(_in_top_k(np.argmax(t, axis=-1), p, k), p)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Whether the integer label is among the ``k`` highest scores of ``y_pred``."""
    k = check_positive_int(k, "k", "sparse_top_k_categorical_accuracy")
    labels, p = _sparse_pair(y_true, y_pred, "sparse_top_k_categorical_accuracy")
    return _as_float(_in_top_k(labels, p, k), p)


# ---------------------------------------------------------------- metric classes
class Accuracy(FixedFunctionMetric):
    """How often ``y_pred`` equals ``y_true`` exactly (:func:`accuracy`)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)


class BinaryAccuracy(FixedFunctionMetric):
    """How often ``y_pred > threshold`` matches the 0/1 labels (:func:`binary_accuracy`);
    ``threshold`` in the open interval ``(0, 1)``."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"BinaryAccuracy: expected threshold to be a float in (0, 1). Received: threshold={threshold!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"BinaryAccuracy: expected threshold in the interval (0, 1). Received: threshold={threshold}")
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=float(threshold))
        self.threshold = float(threshold)

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(FixedFunctionMetric):
    """How often the argmax of ``y_pred`` matches the argmax of one-hot ``y_true`` (:func:`categorical_accuracy`)."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(FixedFunctionMetric):
    """How often the argmax of ``y_pred`` matches the integer labels (:func:`sparse_categorical_accuracy`)."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


class TopKCategoricalAccuracy(FixedFunctionMetric):
    """How often the one-hot target is among the ``k`` highest predictions (:func:`top_k_categorical_accuracy`)."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        k = check_positive_int(k, "k", "TopKCategoricalAccuracy")
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(FixedFunctionMetric):
    """How often the integer target is among the ``k`` highest predictions (:func:`sparse_top_k_categorical_accuracy`)."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None):
        k = check_positive_int(k, "k", "SparseTopKCategoricalAccuracy")
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k

    def get_config(self) -> dict:
        return {**super().get_config(), "k": self.k}
