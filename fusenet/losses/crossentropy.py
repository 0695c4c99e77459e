"""Cross-entropy losses: binary, categorical, sparse categorical, their focal variants,
generalized cross-entropy and the negative log-likelihood.

Probabilities (``from_logits=False``) are clipped to ``[1e-7, 1 - 1e-7]`` as Keras does (the
gradient is 0 where the clip is active); categorical probabilities are first divided by their
sum over the class axis, as Keras does. With ``from_logits=True`` every loss goes through
``log_sigmoid``/``log_softmax`` (max-shifted, no clipping), so logits of magnitude 1000 give
finite losses and gradients.

Class axis: fusenet is channels-last, so classes are the last axis of ``y_pred``
(``(batch, classes)``, ``(batch, time, classes)``, ``(batch, height, width, classes)``);
categorical losses accept ``axis=`` to name another one, as Keras.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._math import log_softmax, pow_and_grad, sigmoid, softplus
from .base import (
    EPSILON,
    ElementwiseLoss,
    Loss,
    as_float,
    as_labels,
    check_axis_arg,
    check_bool,
    check_label_range,
    check_number,
    match_shapes,
    normalize_axis,
    register_loss,
)

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalGeneralizedCrossEntropy",
    "NLL",
]


def _clip_probs(p):
    """``clip(p, eps, 1 - eps)`` and the mask where the clip is inactive (gradient passes)."""
    hi = 1.0 - EPSILON
    return np.clip(p, EPSILON, hi), (p >= EPSILON) & (p <= hi)


# ---------------------------------------------------------------- binary
class BinaryCrossentropy(ElementwiseLoss):
    """Binary cross-entropy (Keras ``BinaryCrossentropy``; torch ``BCELoss``/``BCEWithLogitsLoss``).

    ``t = y_true * (1 - label_smoothing) + 0.5 * label_smoothing``;
    probabilities: ``p = clip(y_pred, 1e-7, 1 - 1e-7)``, ``e = -(t log p + (1 - t) log(1 - p))``;
    logits ``z``: ``e = softplus(z) - t z`` (gradient ``sigmoid(z) - t``).
    ``l = mean(e, axis)``. Shapes: ``y_true`` and ``y_pred`` equal, ``(batch, ..., d)``;
    per-sample losses ``(batch, ...)``.
    """

    _default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.from_logits = check_bool(owner, from_logits, "from_logits")
        self.label_smoothing = check_number(owner, label_smoothing, "label_smoothing", low=0, high=1)
        self.axis = check_axis_arg(owner, axis)

    def _targets(self, yt):
        if self.label_smoothing:
            return yt * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return yt

    def _elementwise(self, yt, yp):
        t = self._targets(yt)
        if self.from_logits:
            return softplus(yp) - t * yp, sigmoid(yp) - t
        p, inside = _clip_probs(yp)
        e = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
        return e, np.where(inside, (1.0 - t) / (1.0 - p) - t / p, 0.0)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """Binary focal cross-entropy (Keras ``BinaryFocalCrossentropy``; torchvision ``sigmoid_focal_loss``).

    With ``t`` the smoothed labels and ``p`` the probability (``sigmoid(z)`` for logits):
    ``p_t = t p + (1 - t)(1 - p)``, ``e = (1 - p_t) ** gamma * bce`` where ``bce`` is the binary
    cross-entropy above, times ``alpha t + (1 - alpha)(1 - t)`` when
    ``apply_class_balancing``. ``l = mean(e, axis)``.

    With probabilities this is Keras's formula exactly (``bce`` on clipped ``p``, ``p_t`` on
    ``p``). With logits ``bce`` is the exact ``softplus(z) - t z`` and ``1 - p_t`` is computed
    from ``sigmoid(+-z)``, so it differs from Keras (which clips ``sigmoid(z)``) only for
    ``|z| > ~16`` and stays finite with a non-zero gradient at ``|z| = 1000``.
    """

    _default_name = "binary_focal_crossentropy"

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         reduction=reduction, name=name)
        owner = type(self).__name__
        self.apply_class_balancing = check_bool(owner, apply_class_balancing, "apply_class_balancing")
        self.alpha = check_number(owner, alpha, "alpha", low=0, high=1)
        self.gamma = check_number(owner, gamma, "gamma", low=0)

    def _elementwise(self, yt, yp):
        t = self._targets(yt)
        if self.from_logits:
            s = sigmoid(yp)
            bce, dbce = softplus(yp) - t * yp, s - t
            one_minus_pt = t * sigmoid(-yp) + (1.0 - t) * s
            d_one_minus_pt = (1.0 - 2.0 * t) * s * (1.0 - s)
        else:
            p, inside = _clip_probs(yp)
            bce = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
            dbce = np.where(inside, (1.0 - t) / (1.0 - p) - t / p, 0.0)
            one_minus_pt = 1.0 - (t * yp + (1.0 - t) * (1.0 - yp))
            d_one_minus_pt = 1.0 - 2.0 * t
        focal, dfocal = pow_and_grad(np.maximum(one_minus_pt, 0.0), self.gamma)
        dfocal = np.where(one_minus_pt >= 0, dfocal, 0.0)
        e = focal * bce
        de = dfocal * d_one_minus_pt * bce + focal * dbce
        if self.apply_class_balancing:
            weight = t * self.alpha + (1.0 - t) * (1.0 - self.alpha)
            e, de = weight * e, weight * de
        return e, de

    def get_config(self):
        return {**super().get_config(), "apply_class_balancing": self.apply_class_balancing,
                "alpha": self.alpha, "gamma": self.gamma}


# ---------------------------------------------------------------- categorical
def _normalized_probs(yp):
    """Keras's categorical preprocessing of probabilities: ``q = y_pred / sum(y_pred)``, clipped."""
    total = np.sum(yp, axis=-1, keepdims=True)
    q = yp / total
    c, inside = _clip_probs(q)
    return total, q, c, inside


def _normalized_probs_backward(dc, total, q, inside):
    """Gradient with respect to ``y_pred`` from the gradient with respect to the clipped ``c``."""
    dq = np.where(inside, dc, 0.0)
    return (dq - np.sum(dq * q, axis=-1, keepdims=True)) / total


def _crossentropy(t, yp, from_logits):
    """``l = -sum(t log p)`` over the last axis and a closure giving ``dl/dyp`` from ``dl``."""
    if from_logits:
        lsm = log_softmax(yp)
        losses = -np.sum(t * lsm, axis=-1)

        def backward(dl):
            sm = np.exp(lsm)
            return (sm * np.sum(t, axis=-1, keepdims=True) - t) * dl[..., None]

        return losses, backward
    total, q, c, inside = _normalized_probs(yp)
    losses = -np.sum(t * np.log(c), axis=-1)

    def backward(dl):
        return _normalized_probs_backward(-t / c * dl[..., None], total, q, inside)

    return losses, backward


class _ClassAxisLoss(Loss):
    """A loss over a class axis of ``y_pred``: moved last for the computation, moved back for the gradient."""

    def _class_axis(self, yp):
        if yp.ndim == 0:
            raise ValueError(f"{self.describe()}: expected y_pred with a class axis. Received: y_pred.shape={yp.shape}")
        return normalize_axis(self, getattr(self, "axis", -1), yp.ndim)[0]

    def _backward(self, yt, yp, cache, dl):
        return np.moveaxis(cache["backward"](dl), -1, cache["ax"])


class CategoricalCrossentropy(_ClassAxisLoss):
    """Categorical cross-entropy on one-hot (or soft) labels (Keras ``CategoricalCrossentropy``;
    torch ``CrossEntropyLoss`` with probability targets and ``from_logits=True``).

    ``t = y_true * (1 - label_smoothing) + label_smoothing / C``;
    logits: ``l = -sum(t * log_softmax(z), axis)``;
    probabilities: ``q = y_pred / sum(y_pred, axis)``, ``l = -sum(t * log(clip(q, 1e-7, 1 - 1e-7)), axis)``.
    Shapes: ``y_true`` and ``y_pred`` equal, ``(batch, ..., C)`` (classes on ``axis``, default
    last); per-sample losses drop the class axis.
    """

    _default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.from_logits = check_bool(owner, from_logits, "from_logits")
        self.label_smoothing = check_number(owner, label_smoothing, "label_smoothing", low=0, high=1)
        self.axis = check_axis_arg(owner, axis)

    def _prepare(self, y_true, yp):
        return match_shapes(self, as_float(self, y_true, yp.dtype), yp)

    def _smooth(self, t):
        if self.label_smoothing:
            return t * (1.0 - self.label_smoothing) + self.label_smoothing / t.shape[-1]
        return t

    def _forward(self, yt, yp):
        ax = self._class_axis(yp)
        t = self._smooth(np.moveaxis(yt, ax, -1))
        losses, backward = _crossentropy(t, np.moveaxis(yp, ax, -1), self.from_logits)
        return losses, {"ax": ax, "backward": backward}

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


def _sparse_labels(loss, y_true, yp, ax):
    """Integer labels shaped like ``y_pred`` without its class axis (a trailing 1 is squeezed)."""
    labels = as_labels(loss, y_true)
    expected = yp.shape[:ax] + yp.shape[ax + 1:]
    if labels.shape != expected and labels.ndim == yp.ndim and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != expected:
        raise ValueError(
            f"{loss.describe()}: expected y_true of shape {expected} (y_pred's shape without the class axis "
            f"{ax}). Received: y_true.shape={np.shape(y_true)}, y_pred.shape={yp.shape}"
        )
    return labels


def _check_ignore_index(owner, ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{owner}: expected ignore_index to be an int or None. Received: ignore_index={ignore_index!r}")
    return int(ignore_index)


class SparseCategoricalCrossentropy(_ClassAxisLoss):
    """Categorical cross-entropy on integer labels (Keras ``SparseCategoricalCrossentropy``;
    torch ``CrossEntropyLoss`` with class-index targets and ``from_logits=True``).

    ``l = -log_softmax(z)[label]`` (logits) or ``-log(clip(q, 1e-7, 1 - 1e-7))[label]`` with
    ``q = y_pred / sum(y_pred, axis)`` (probabilities). Shapes: ``y_pred`` ``(batch, ..., C)``
    (classes on ``axis``, default last), ``y_true`` ``(batch, ...)`` (or with a trailing 1) of
    labels in ``[0, C)``; per-sample losses ``(batch, ...)``.

    ``ignore_index`` (torch's name; Keras's ``ignore_class`` is accepted as an alias): entries
    with that label give 0 and are masked, so ``"sum_over_batch_size"`` averages over the other
    entries only (as both Keras and torch's ``"mean"``).
    """

    _default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_index=None, axis=-1, reduction="sum_over_batch_size", name=None,
                 ignore_class=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.from_logits = check_bool(owner, from_logits, "from_logits")
        ignore_index = _check_ignore_index(owner, ignore_index)
        ignore_class = _check_ignore_index(owner, ignore_class)
        if ignore_class is not None and ignore_index is not None and ignore_class != ignore_index:
            raise ValueError(
                f"{owner}: ignore_class is an alias of ignore_index; they differ. "
                f"Received: ignore_index={ignore_index}, ignore_class={ignore_class}"
            )
        self.ignore_index = ignore_index if ignore_index is not None else ignore_class
        self.axis = check_axis_arg(owner, axis)

    def _prepare(self, y_true, yp):
        return _sparse_labels(self, y_true, yp, self._class_axis(yp)), yp

    def _forward(self, labels, yp):
        ax = self._class_axis(yp)
        z = np.moveaxis(yp, ax, -1)
        num_classes = z.shape[-1]
        valid = None if self.ignore_index is None else labels != self.ignore_index
        check_label_range(self, labels, num_classes, valid)
        lab = labels if valid is None else np.where(valid, labels, 0)
        onehot = (lab[..., None] == np.arange(num_classes)).astype(z.dtype)
        if valid is not None and not self.from_logits:
            z = np.where(valid[..., None], z, 1.0)  # ignored rows: any valid distribution (no 0/0)
        losses, backward = _crossentropy(onehot, z, self.from_logits)
        cache = {"ax": ax, "backward": backward}
        if valid is not None:
            losses = np.where(valid, losses, 0.0)
            cache["mask"] = valid
            cache["backward"] = lambda dl: backward(np.where(valid, dl, 0.0))
        return losses, cache

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_index": self.ignore_index, "axis": self.axis}


class CategoricalFocalCrossentropy(CategoricalCrossentropy):
    """Categorical focal cross-entropy (Keras ``CategoricalFocalCrossentropy``).

    With ``t`` the (smoothed) one-hot labels and ``p`` the class probabilities along ``axis``:
    ``l = sum(alpha * (1 - p) ** gamma * (-t log p), axis)``. ``alpha`` is a scalar or one
    weight per class. Probabilities: ``p = clip(y_pred / sum(y_pred), 1e-7, 1 - 1e-7)``
    (Keras's formula exactly). Logits: ``log p = log_softmax(z)`` and ``p = softmax(z)``, exact
    (Keras clips ``softmax(z)``; the two agree wherever no probability leaves
    ``[1e-7, 1 - 1e-7]``). Shapes as :class:`CategoricalCrossentropy`.
    """

    _default_name = "categorical_focal_crossentropy"

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         reduction=reduction, name=name)
        owner = type(self).__name__
        if isinstance(alpha, (list, tuple, np.ndarray)):
            alpha = [check_number(owner, a, "alpha", low=0) for a in np.asarray(alpha, dtype=object).ravel()]
            if not alpha:
                raise ValueError(f"{owner}: expected alpha to be a number or a non-empty list. Received: alpha=[]")
        else:
            alpha = check_number(owner, alpha, "alpha", low=0)
        self.alpha = alpha
        self.gamma = check_number(owner, gamma, "gamma", low=0)

    def _alpha(self, num_classes, dtype):
        if isinstance(self.alpha, list):
            if len(self.alpha) != num_classes:
                raise ValueError(
                    f"{self.describe()}: expected one alpha per class ({num_classes} classes). "
                    f"Received: alpha of length {len(self.alpha)}"
                )
        return np.asarray(self.alpha, dtype=dtype)

    def _forward(self, yt, yp):
        ax = self._class_axis(yp)
        t = self._smooth(np.moveaxis(yt, ax, -1))
        z = np.moveaxis(yp, ax, -1)
        alpha = self._alpha(z.shape[-1], z.dtype)
        if self.from_logits:
            logp = log_softmax(z)
            p = np.exp(logp)
        else:
            total, q, p, inside = _normalized_probs(z)
            logp = np.log(p)
        mod, dmod = pow_and_grad(1.0 - p, self.gamma)
        losses = np.sum(alpha * mod * (-t * logp), axis=-1)
        # dl/dp_k = alpha_k (-t_k) [-dmod_k log p_k];  dl/dlogp_k = alpha_k (-t_k) mod_k
        coef_p = alpha * t * dmod * logp
        coef_logp = -alpha * t * mod

        def backward(dl):
            d = dl[..., None]
            if self.from_logits:
                a = coef_p * p  # d/dz through p = softmax: p_j (A_j - sum_k A_k p_k)
                g = a - p * np.sum(a, axis=-1, keepdims=True)
                g += coef_logp - p * np.sum(coef_logp, axis=-1, keepdims=True)
                return g * d
            dc = (coef_p + coef_logp / p) * d
            return _normalized_probs_backward(dc, total, q, inside)

        return losses, {"ax": ax, "backward": backward}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


class CategoricalGeneralizedCrossEntropy(_ClassAxisLoss):
    """Generalized cross-entropy (Keras ``CategoricalGeneralizedCrossEntropy``, Zhang et al. 2018).

    ``l = (1 - p ** q) / q`` with ``p = y_pred[label]`` the predicted probability of the true
    class, ``0 < q < 1``. Shapes: ``y_pred`` ``(batch, ..., C)`` probabilities,
    ``y_true`` ``(batch, ...)`` (or with a trailing 1) integer labels; per-sample losses
    ``(batch, ...)``. Where ``p = 0`` the (unbounded) gradient is taken as 0.
    """

    _default_name = "categorical_generalized_cross_entropy"

    def __init__(self, q=0.5, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.q = check_number(type(self).__name__, q, "q", low=0, high=1, low_open=True, high_open=True)

    def _prepare(self, y_true, yp):
        return _sparse_labels(self, y_true, yp, self._class_axis(yp)), yp

    def _forward(self, labels, yp):
        num_classes = yp.shape[-1]
        check_label_range(self, labels, num_classes)
        onehot = labels[..., None] == np.arange(num_classes)
        p = np.sum(np.where(onehot, yp, 0.0), axis=-1)
        pq, dpq = pow_and_grad(np.maximum(p, 0.0), self.q)
        losses = (1.0 - pq) / self.q
        return losses, {"ax": yp.ndim - 1, "backward": lambda dl: np.where(onehot, (-dpq / self.q * dl)[..., None], 0.0)}

    def get_config(self):
        return {**super().get_config(), "q": self.q}


class NLL(_ClassAxisLoss):
    """Negative log-likelihood on log-probabilities (torch ``NLLLoss``, channels-last).

    ``l = -y_pred[label]``. Shapes: ``y_pred`` ``(batch, ..., C)`` log-probabilities with the
    classes on the LAST axis (fusenet is channels-last: torch's ``(N, C, d1, ...)`` is fusenet's
    ``(N, d1, ..., C)``), ``y_true`` ``(batch, ...)`` integer labels in ``[0, C)``; per-sample
    losses ``(batch, ...)``. Labels equal to ``ignore_index`` (default -100, as torch) give 0 and
    are masked, so ``"sum_over_batch_size"`` is torch's ``"mean"``. torch's class ``weight`` is
    ``sample_weight=weight[y_true]`` with ``reduction="mean_with_sample_weight"``.
    """

    _default_name = "nll"

    def __init__(self, ignore_index=-100, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.ignore_index = _check_ignore_index(type(self).__name__, ignore_index)

    def _prepare(self, y_true, yp):
        return _sparse_labels(self, y_true, yp, self._class_axis(yp)), yp

    def _forward(self, labels, yp):
        num_classes = yp.shape[-1]
        valid = None if self.ignore_index is None else labels != self.ignore_index
        check_label_range(self, labels, num_classes, valid)
        onehot = labels[..., None] == np.arange(num_classes)
        losses = -np.sum(np.where(onehot, yp, 0.0), axis=-1)
        cache = {"ax": yp.ndim - 1, "backward": lambda dl: np.where(onehot, -dl[..., None], 0.0)}
        if valid is not None:
            losses = np.where(valid, losses, 0.0)
            cache["mask"] = valid
        return losses, cache

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}


register_loss(BinaryCrossentropy, "bce", "BCE", "BCELoss")
register_loss(BinaryFocalCrossentropy)
register_loss(CategoricalCrossentropy, "cce")
register_loss(SparseCategoricalCrossentropy)
register_loss(CategoricalFocalCrossentropy)
register_loss(CategoricalGeneralizedCrossEntropy)
register_loss(NLL, "nll_loss", "NLLLoss", "negative_log_likelihood")
