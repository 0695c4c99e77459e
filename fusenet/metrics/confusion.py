"""Confusion-matrix metrics: TruePositives/FalsePositives/TrueNegatives/FalseNegatives, Precision,
Recall, FBetaScore/F1Score and AUC (ROC and PR), with Keras 3 semantics.

Thresholded counts: a prediction is positive at threshold ``t`` when ``y_pred > t``; ``y_true`` is
cast to bool (non-zero is positive). Inputs of any shape ``(batch, ...)`` are flattened into one
list of binary decisions (AUC with ``multi_label=True`` keeps one curve per label column instead).
All thresholds are evaluated at once by sorting: ``np.searchsorted`` gives, for every prediction,
how many thresholds lie strictly below it, and a weighted ``np.bincount`` followed by cumulative
sums gives the counts at every threshold, ``O(n log T + T)`` with no loop over samples.

Divisions by zero give 0 (Keras ``divide_no_nan``). Where Keras adds ``epsilon() = 1e-7`` to a
denominator only to avoid 0/0 (F-scores), fusenet divides exactly with the same 0 convention,
so results agree with scikit-learn exactly and with Keras to ~1e-7.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import expit

from ..utils import check_non_negative_int, check_positive_int, result_dtype
from .base import (
    EPSILON,
    NEG_INF,
    Metric,
    as_array,
    broadcast_weights,
    check_threshold_list,
    divide_no_nan,
    squeeze_or_expand_to_same_rank,
)

__all__ = [
    "TruePositives",
    "FalsePositives",
    "TrueNegatives",
    "FalseNegatives",
    "Precision",
    "Recall",
    "FBetaScore",
    "F1Score",
    "AUC",
]


# ---------------------------------------------------------------- shared machinery
def _filter_top_k(p: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest values of the last axis (ties: lower index first, as ``top_k``), set the rest to NEG_INF."""
    order = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return np.where(keep, p, np.asarray(NEG_INF, dtype=p.dtype))


def _prepare(y_true, y_pred, sample_weight, owner, dtype, *, top_k=None, class_id=None, label_weights=None):
    """``(labels: bool, predictions: float, weights: float64 or None)`` of one shape, after Keras's
    squeeze/expand, the top-k filter, the class_id slice and the per-label weights."""
    t = as_array(y_true, owner, "y_true")
    p = as_array(y_pred, owner, "y_pred")
    p2, t2 = squeeze_or_expand_to_same_rank(p, t)
    if p2.shape != t2.shape:
        raise ValueError(
            f"{owner}: expected y_true and y_pred to have the same shape. "
            f"Received: y_true.shape={t.shape}, y_pred.shape={p.shape}"
        )
    p = p2.astype(result_dtype(p2, dtype), copy=False)
    t = t2 != 0
    w = None if sample_weight is None else broadcast_weights(sample_weight, p.shape, owner)
    if top_k is not None:
        if p.ndim == 0 or p.shape[-1] < top_k:
            raise ValueError(
                f"{owner}: top_k={top_k} needs y_pred with at least {top_k} classes on its last axis. "
                f"Received: y_pred.shape={p.shape}"
            )
        p = _filter_top_k(p, top_k)
    if class_id is not None:
        if p.ndim < 2:
            raise ValueError(
                f"{owner}: with class_id, y_pred must have shape (batch, ..., classes). Received: y_pred.shape={p.shape}"
            )
        if class_id >= p.shape[-1]:
            raise ValueError(
                f"{owner}: expected class_id in [0, {p.shape[-1]}) for y_pred with {p.shape[-1]} classes. "
                f"Received: class_id={class_id}"
            )
        p, t = p[..., class_id], t[..., class_id]
        w = None if w is None else w[..., class_id]
    if label_weights is not None:
        if p.ndim == 0 or p.shape[-1] != label_weights.shape[0]:
            raise ValueError(
                f"{owner}: label_weights has {label_weights.shape[0]} entries but y_pred has shape {p.shape}."
            )
        w = label_weights if w is None else w * label_weights
        w = np.broadcast_to(w, p.shape)
    return t, p, w


def _threshold_counts(t, p, w, thresholds, multi_label=False):
    """``tp, fp, tn, fn`` at every threshold of the ascending ``thresholds`` (``p > threshold`` is positive).

    Without ``multi_label`` everything is flattened and each count has shape ``(T,)``; with it,
    ``t, p, w`` are ``(batch, labels)`` and each count is ``(T, labels)``.
    """
    thr = np.asarray(thresholds, dtype=p.dtype)
    n_thr = thr.shape[0]
    if not multi_label:
        t, p = t.reshape(-1, 1), p.reshape(-1, 1)
        w = None if w is None else w.reshape(-1, 1)
    n_labels = p.shape[1]
    # Number of thresholds strictly below each prediction: the prediction is positive at thresholds[:idx].
    idx = np.searchsorted(thr, p, side="left")
    idx[np.isnan(p)] = 0  # NaN > t is False for every t
    flat = (idx + (n_thr + 1) * np.arange(n_labels)).ravel()
    weights = np.ones(p.shape) if w is None else np.asarray(w, dtype=np.float64)
    size = n_labels * (n_thr + 1)
    pos = np.bincount(flat, weights=(weights * t).ravel(), minlength=size).reshape(n_labels, n_thr + 1)
    neg = np.bincount(flat, weights=(weights * ~t).ravel(), minlength=size).reshape(n_labels, n_thr + 1)
    # Positive at threshold j <=> idx > j: a reversed cumulative sum from j + 1; negative <=> idx <= j.
    tp = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fp = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fn = np.cumsum(pos, axis=1)[:, :-1]
    tn = np.cumsum(neg, axis=1)[:, :-1]
    counts = (tp, fp, tn, fn)
    if multi_label:
        return tuple(c.T for c in counts)
    return tuple(c[0] for c in counts)


def _check_optional(value, name, owner, check):
    return None if value is None else check(value, name, owner)


class _ThresholdMetric(Metric):
    """Counts at a list of thresholds (default 0.5; NEG_INF with ``top_k``), optional ``top_k`` and ``class_id``.

    ``result()`` is a float for one threshold, a float64 array (in the given order) for several.
    """

    _counts: tuple[str, ...] = ()

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.top_k = _check_optional(top_k, "top_k", owner, check_positive_int)
        self.class_id = _check_optional(class_id, "class_id", owner, check_non_negative_int)
        if thresholds is None:
            self.init_thresholds = None
            self.thresholds = [0.5 if self.top_k is None else NEG_INF]
        else:
            self.thresholds = check_threshold_list(thresholds, owner)
            scalar = not isinstance(thresholds, (list, tuple, np.ndarray))
            self.init_thresholds = self.thresholds[0] if scalar else list(self.thresholds)
        self._order = np.argsort(self.thresholds, kind="stable")
        self._sorted_thresholds = np.asarray(self.thresholds, dtype=np.float64)[self._order]
        for state in self._counts:
            self.add_state(state, (len(self.thresholds),))

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        t, p, w = _prepare(
            y_true, y_pred, sample_weight, self._owner, self.dtype, top_k=self.top_k, class_id=self.class_id
        )
        tp, fp, tn, fn = _threshold_counts(t, p, w, self._sorted_thresholds)
        computed = {"true_positives": tp, "false_positives": fp, "true_negatives": tn, "false_negatives": fn}
        for state in self._counts:
            getattr(self, state)[self._order] += computed[state]

    def _finish(self, values: np.ndarray):
        return float(values[0]) if len(self.thresholds) == 1 else np.array(values, dtype=np.float64)

    def get_config(self) -> dict:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class _ConditionCount(_ThresholdMetric):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds=thresholds, name=name, dtype=dtype)

    def result(self):
        return self._finish(getattr(self, self._counts[0]))


class TruePositives(_ConditionCount):
    """The (weighted) number of true positives: ``y_true`` and ``y_pred > threshold``."""

    _counts = ("true_positives",)


class FalsePositives(_ConditionCount):
    """The (weighted) number of false positives: not ``y_true`` and ``y_pred > threshold``."""

    _counts = ("false_positives",)


class TrueNegatives(_ConditionCount):
    """The (weighted) number of true negatives: not ``y_true`` and ``y_pred <= threshold``."""

    _counts = ("true_negatives",)


class FalseNegatives(_ConditionCount):
    """The (weighted) number of false negatives: ``y_true`` and ``y_pred <= threshold``."""

    _counts = ("false_negatives",)


class Precision(_ThresholdMetric):
    """``TP / (TP + FP)`` (0 when nothing is predicted positive).

    ``thresholds``: a float or list of floats in ``[0, 1]`` (default 0.5; ``y_pred > t`` is positive).
    ``top_k``: only the ``k`` highest scores of each row count as positive (threshold defaults to none).
    ``class_id``: only column ``class_id`` of ``(batch, ..., classes)`` inputs is scored.
    """

    _counts = ("true_positives", "false_positives")

    def result(self):
        return self._finish(divide_no_nan(self.true_positives, self.true_positives + self.false_positives))

    def get_config(self) -> dict:
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


class Recall(_ThresholdMetric):
    """``TP / (TP + FN)`` (0 without positive labels); arguments as :class:`Precision`."""

    _counts = ("true_positives", "false_negatives")

    def result(self):
        return self._finish(divide_no_nan(self.true_positives, self.true_positives + self.false_negatives))

    def get_config(self) -> dict:
        return {**super().get_config(), "top_k": self.top_k, "class_id": self.class_id}


# ---------------------------------------------------------------- F-scores
class FBetaScore(Metric):
    """F-beta score of multi-class / multi-label predictions, shapes ``(batch, classes)``.

    ``F = (1 + b^2) * P * R / (b^2 * P + R)`` with per-class precision ``P`` and recall ``R``.
    Predictions are binarised with ``y_pred > threshold``, or, with ``threshold=None``, as the row
    maximum (``y_pred >= max(y_pred)`` and non-zero). ``average``: ``None`` returns the per-class scores
    (a float64 array of shape ``(classes,)``); ``"micro"`` pools the counts of every class; ``"macro"``
    is the unweighted mean of the class scores; ``"weighted"`` weights them by support (the weighted
    number of true instances of each class).
    """

    _AVERAGES = (None, "micro", "macro", "weighted")

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        if average not in self._AVERAGES:
            raise ValueError(f"{owner}: expected average to be one of {list(self._AVERAGES)}. Received: average={average!r}")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"{owner}: expected beta to be a float > 0. Received: beta={beta!r}")
        if not beta > 0:
            raise ValueError(f"{owner}: expected beta to be a float > 0. Received: beta={beta}")
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
                raise TypeError(f"{owner}: expected threshold to be a float in (0, 1]. Received: threshold={threshold!r}")
            if not 0.0 < threshold <= 1.0:
                raise ValueError(f"{owner}: expected threshold in the interval (0, 1]. Received: threshold={threshold}")
            threshold = float(threshold)
        self.average = average
        self.beta = float(beta)
        self.threshold = threshold
        self.num_classes = None

    _STATES = ("true_positives", "false_positives", "false_negatives", "intermediate_weights")

    def _build(self, num_classes: int) -> None:
        shape = () if self.average == "micro" else (num_classes,)
        for state in self._STATES:
            self.add_state(state, shape)
        self.num_classes = num_classes

    def reset_state(self) -> None:
        """Forget the statistics and the number of classes (the next update builds again)."""
        for state in self._STATES:
            self.remove_state(state)
        self.num_classes = None

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        owner = self._owner
        t = as_array(y_true, owner, "y_true")
        p = as_array(y_pred, owner, "y_pred")
        if t.ndim != 2 or p.ndim != 2 or t.shape != p.shape or p.shape[1] == 0:
            raise ValueError(
                f"{owner}: expected y_true and y_pred of the same shape (batch, classes). "
                f"Received: y_true.shape={t.shape}, y_pred.shape={p.shape}"
            )
        if self.num_classes is None:
            self._build(p.shape[1])
        elif p.shape[1] != self.num_classes:
            raise ValueError(
                f"{owner}: was built for {self.num_classes} classes. Received: y_pred.shape={p.shape}"
            )
        p = p.astype(result_dtype(p, self.dtype), copy=False)
        if self.threshold is None:
            predicted = (p >= p.max(axis=-1, keepdims=True)) & (np.abs(p) > 1e-9)
        else:
            predicted = p > self.threshold
        predicted = predicted.astype(np.float64)
        truth = t.astype(np.float64)
        w = None if sample_weight is None else broadcast_weights(sample_weight, p.shape, owner)
        axis = None if self.average == "micro" else 0

        def weighted_sum(v):
            return np.sum(v if w is None else v * w, axis=axis)

        self.true_positives += weighted_sum(predicted * truth)
        self.false_positives += weighted_sum(predicted * (1.0 - truth))
        self.false_negatives += weighted_sum((1.0 - predicted) * truth)
        self.intermediate_weights += weighted_sum(truth)

    def result(self):
        if self.num_classes is None:
            return np.zeros(0) if self.average is None else 0.0
        precision = divide_no_nan(self.true_positives, self.true_positives + self.false_positives)
        recall = divide_no_nan(self.true_positives, self.true_positives + self.false_negatives)
        b2 = self.beta**2
        score = divide_no_nan((1.0 + b2) * precision * recall, b2 * precision + recall)
        if self.average is None:
            return np.asarray(score, dtype=np.float64)
        if self.average == "weighted":
            weights = divide_no_nan(self.intermediate_weights, np.sum(self.intermediate_weights))
            return float(np.sum(score * weights))
        return float(np.mean(score))

    def get_config(self) -> dict:
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 score, ``2 * P * R / (P + R)``: :class:`FBetaScore` with ``beta=1``."""

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        del config["beta"]
        return config


# ---------------------------------------------------------------- AUC
class AUC(Metric):
    """Area under the ROC or precision-recall curve, approximated on a grid of thresholds (Keras ``AUC``).

    Thresholds: ``num_thresholds`` points, ``[-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps]`` with
    ``eps = 1e-7`` (or the given ``thresholds`` plus the two endpoints). Predictions are clipped to
    ``[0, 1]`` (after a sigmoid when ``from_logits``). From the counts at each threshold:

    - ``curve="ROC"``: ``x = FP / (FP + TN)``, ``y = TP / (TP + FN)``; ``"PR"``: ``x = recall``, ``y = precision``.
    - ``summation_method="interpolation"``: trapezoids ``sum((x_i - x_{i+1}) * (y_i + y_{i+1}) / 2)``; for PR,
      the Davis & Goadrich (2006) interpolation: TP and ``P = TP + FP`` vary linearly between thresholds, so
      each interval adds ``slope * (dTP + intercept * log(P_i / P_{i+1})) / (TP_{i+1} + FN_{i+1})``
      with ``slope = dTP / dP`` and ``intercept = TP_{i+1} - slope * P_{i+1}``.
      ``"minoring"`` / ``"majoring"``: rectangles of height ``min`` / ``max`` of the two ends.

    ``multi_label=True`` takes ``(batch, labels)`` inputs, computes one AUC per label column and averages
    them (weighted by ``label_weights`` when given); with ``multi_label=False`` every entry is one
    binary decision and ``label_weights`` weights the entries of each column.
    """

    _CURVES = {"ROC": "ROC", "roc": "ROC", "PR": "PR", "pr": "PR"}
    _SUMMATIONS = {
        "interpolation": "interpolation",
        "Interpolation": "interpolation",
        "majoring": "majoring",
        "Majoring": "majoring",
        "minoring": "minoring",
        "Minoring": "minoring",
    }

    def __init__(
        self,
        num_thresholds=200,
        curve="ROC",
        summation_method="interpolation",
        name=None,
        dtype=None,
        thresholds=None,
        multi_label=False,
        num_labels=None,
        label_weights=None,
        from_logits=False,
    ):
        super().__init__(name=name, dtype=dtype)
        owner = "AUC"
        if curve not in self._CURVES:
            raise ValueError(f"{owner}: expected curve to be one of ['ROC', 'PR']. Received: curve={curve!r}")
        if summation_method not in self._SUMMATIONS:
            raise ValueError(
                f"{owner}: expected summation_method to be one of ['interpolation', 'majoring', 'minoring']. "
                f"Received: summation_method={summation_method!r}"
            )
        self.curve = self._CURVES[curve]
        self.summation_method = self._SUMMATIONS[summation_method]
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(check_threshold_list(thresholds, owner))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral):
                raise TypeError(f"{owner}: expected num_thresholds to be an integer > 1. Received: num_thresholds={num_thresholds!r}")
            if num_thresholds <= 1:
                raise ValueError(f"{owner}: expected num_thresholds to be an integer > 1. Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1) for i in range(self.num_thresholds - 2)]
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON], dtype=np.float64)
        self.multi_label = bool(multi_label)
        if num_labels is not None:
            if not self.multi_label:
                raise ValueError(f"{owner}: num_labels is needed only when multi_label=True. Received: num_labels={num_labels}")
            num_labels = check_positive_int(num_labels, "num_labels", owner)
        self.num_labels = num_labels
        if label_weights is not None:
            label_weights = np.asarray(as_array(label_weights, owner, "label_weights"), dtype=np.float64)
            if label_weights.ndim != 1 or np.any(label_weights < 0):
                raise ValueError(
                    f"{owner}: expected label_weights to be a 1-D list of non-negative weights. "
                    f"Received: label_weights={label_weights.tolist()}"
                )
            if num_labels is not None and label_weights.shape[0] != num_labels:
                raise ValueError(
                    f"{owner}: expected {num_labels} label_weights (num_labels={num_labels}). "
                    f"Received: {label_weights.shape[0]} weights"
                )
        self.label_weights = label_weights
        self.from_logits = bool(from_logits)
        self._num_labels = None
        if not self.multi_label:
            self._build(None)
        elif num_labels is not None:
            self._build(num_labels)

    @property
    def thresholds(self) -> list[float]:
        """The thresholds, endpoints included."""
        return self._thresholds.tolist()

    def _build(self, num_labels) -> None:
        shape = (self.num_thresholds,) if num_labels is None else (self.num_thresholds, num_labels)
        for state in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            self.add_state(state, shape)
        self._num_labels = num_labels

    @property
    def built(self) -> bool:
        return bool(self._state_names)

    def reset_state(self) -> None:
        """Zero the counts; a multi-label AUC built from data (no ``num_labels``) forgets its label count."""
        if self.multi_label and self.num_labels is None:
            for state in list(self._state_names):
                self.remove_state(state)
            self._num_labels = None
        else:
            super().reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        owner = self._owner
        label_weights = None if self.multi_label else self.label_weights
        t, p, w = _prepare(y_true, y_pred, sample_weight, owner, self.dtype, label_weights=label_weights)
        if self.multi_label:
            if p.ndim != 2:
                raise ValueError(
                    f"{owner}: with multi_label=True, y_pred must have shape (batch, labels). Received: y_pred.shape={p.shape}"
                )
            if not self.built:
                if self.label_weights is not None and self.label_weights.shape[0] != p.shape[1]:
                    raise ValueError(
                        f"{owner}: label_weights has {self.label_weights.shape[0]} entries but y_pred has "
                        f"{p.shape[1]} labels. Received: y_pred.shape={p.shape}"
                    )
                self._build(p.shape[1])
            elif p.shape[1] != self._num_labels:
                raise ValueError(f"{owner}: was built for {self._num_labels} labels. Received: y_pred.shape={p.shape}")
        if self.from_logits:
            p = expit(p)
        p = np.clip(p, 0.0, 1.0)
        tp, fp, tn, fn = _threshold_counts(t, p, w, self._thresholds, multi_label=self.multi_label)
        self.true_positives += tp
        self.false_positives += fp
        self.true_negatives += tn
        self.false_negatives += fn

    def _average_labels(self, per_threshold_terms: np.ndarray) -> float:
        by_label = np.sum(per_threshold_terms, axis=0)
        if not self.multi_label:
            return float(by_label)
        if self.label_weights is None:
            return float(np.mean(by_label))
        return float(divide_no_nan(np.sum(by_label * self.label_weights), np.sum(self.label_weights)))

    def interpolate_pr_auc(self) -> float:
        """PR-AUC with the Davis & Goadrich interpolation (see the class docstring)."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = divide_no_nan(dtp, np.maximum(dp, 0.0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, divide_no_nan(p[:-1], np.maximum(p[1:], 0.0)), 1.0)
        log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
        increments = divide_no_nan(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0.0))
        return self._average_labels(increments)

    def result(self) -> float:
        if not self.built:
            return 0.0
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._average_labels((x[:-1] - x[1:]) * heights)

    def get_config(self) -> dict:
        config = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self.from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
