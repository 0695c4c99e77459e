"""Embedding losses: CosineEmbedding, TripletMargin (torch), Contrastive (Hadsell et al.),
Circle (Keras 3).

Losses of several prediction inputs take them packed channels-last in one ``y_pred``,
stacked along axis 1: ``(batch, 2, dim)`` for pairs, ``(batch, 3, dim)`` for triplets. The
gradient is with respect to that packed ``y_pred``.
"""

from __future__ import annotations

import numpy as np

from ._math import pnorm_and_grad, sigmoid, softplus
from .base import Loss, as_float, as_labels, check_bool, check_number, register_loss
from .hinge import unpack_inputs

__all__ = ["CosineEmbedding", "TripletMargin", "Contrastive", "Circle"]


def _pair_labels(loss: Loss, y_true, yp: np.ndarray) -> np.ndarray:
    """Per-pair labels of shape ``(batch,)`` (``(batch, 1)`` is squeezed) for a packed ``(batch, k, dim)`` ``y_pred``."""
    yt = as_float(loss, y_true, yp.dtype)
    if yt.ndim == 2 and yt.shape[-1] == 1:
        yt = yt[:, 0]
    if yt.shape != yp.shape[:1]:
        raise ValueError(
            f"{loss.describe()}: expected y_true of shape ({yp.shape[0]},), one label per pair. "
            f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={yp.shape}"
        )
    return yt


def _check_packed(loss: Loss, yp: np.ndarray, k: int, what: str):
    if yp.ndim != 3 or yp.shape[1] != k:
        raise ValueError(
            f"{loss.describe()}: expected y_pred of shape (batch, {k}, dim) holding {what} stacked along axis 1. "
            f"Received: y_pred.shape={yp.shape}"
        )
    return unpack_inputs(loss, yp, k, what)


class CosineEmbedding(Loss):
    """Cosine embedding loss (torch ``CosineEmbeddingLoss``).

    Packing: ``y_pred`` ``(batch, 2, dim)`` holds ``x1 = y_pred[:, 0]`` and ``x2 = y_pred[:, 1]``;
    ``y_true`` ``(batch,)`` holds 1 (similar) or -1 (dissimilar).
    ``cos = sum(x1 x2) / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))`` (torch's formula);
    ``l = 1 - cos`` where ``y_true == 1``, ``max(0, cos - margin)`` where ``y_true == -1``
    (0 for other labels). Per-sample losses ``(batch,)``.
    """

    _default_name = "cosine_embedding"
    _EPS = 1e-12

    def __init__(self, margin=0.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.margin = check_number(type(self).__name__, margin, "margin", low=-1, high=1)

    def _prepare(self, y_true, yp):
        _check_packed(self, yp, 2, "(x1, x2)")
        return _pair_labels(self, y_true, yp), yp

    def _forward(self, yt, yp):
        x1, x2 = yp[:, 0], yp[:, 1]
        a = np.sum(x1 * x1, axis=-1) + self._EPS
        b = np.sum(x2 * x2, axis=-1) + self._EPS
        den = np.sqrt(a * b)
        cos = np.sum(x1 * x2, axis=-1) / den
        pos, neg = yt == 1, yt == -1
        losses = np.where(pos, 1.0 - cos, 0.0) + np.where(neg, np.maximum(cos - self.margin, 0.0), 0.0)
        coef = np.where(pos, -1.0, 0.0) + np.where(neg & (cos - self.margin > 0), 1.0, 0.0)
        return losses, {"a": a, "b": b, "den": den, "cos": cos, "coef": coef}

    def _backward(self, yt, yp, cache, dl):
        x1, x2 = yp[:, 0], yp[:, 1]
        c = (cache["coef"] * dl)[:, None]
        cos, den = cache["cos"][:, None], cache["den"][:, None]
        d1 = x2 / den - cos * x1 / cache["a"][:, None]
        d2 = x1 / den - cos * x2 / cache["b"][:, None]
        return np.stack([c * d1, c * d2], axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


class TripletMargin(Loss):
    """Triplet margin loss (torch ``TripletMarginLoss``).

    Packing: ``y_pred`` ``(batch, 3, dim)`` holds anchor ``a = y_pred[:, 0]``, positive
    ``p = y_pred[:, 1]`` and negative ``n = y_pred[:, 2]``; ``y_true`` is not used (pass
    ``None`` or any array with ``batch`` rows). ``d(u, v) = ||u - v + eps||_p`` (torch's
    ``pairwise_distance``), ``p >= 1``; with ``swap`` the negative distance is
    ``min(d(a, n), d(p, n))``. ``l = max(d(a, p) - d(a, n) + margin, 0)``, shape ``(batch,)``.
    """

    _default_name = "triplet_margin"

    def __init__(self, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.margin = check_number(owner, margin, "margin")
        self.p = check_number(owner, p, "p", low=1)
        self.eps = check_number(owner, eps, "eps", low=0)
        self.swap = check_bool(owner, swap, "swap")

    def _prepare(self, y_true, yp):
        _check_packed(self, yp, 3, "(anchor, positive, negative)")
        if y_true is not None:
            yt = as_float(self, y_true, yp.dtype)
            if yt.ndim == 0 or yt.shape[0] != yp.shape[0]:
                raise ValueError(
                    f"{self.describe()}: y_true is not used, but when given it must have {yp.shape[0]} rows. "
                    f"Received: y_true.shape={yt.shape}, y_pred.shape={yp.shape}"
                )
        return None, yp

    def _dist(self, u, v):
        return pnorm_and_grad(u - v + self.eps, self.p)

    def _forward(self, yt, yp):
        a, p, n = yp[:, 0], yp[:, 1], yp[:, 2]
        d_ap, g_ap = self._dist(a, p)
        d_an, g_an = self._dist(a, n)
        use_swap = np.zeros(d_an.shape, dtype=bool)
        g_pn = None
        d_neg = d_an
        if self.swap:
            d_pn, g_pn = self._dist(p, n)
            use_swap = d_pn < d_an
            d_neg = np.where(use_swap, d_pn, d_an)
        m = self.margin + d_ap - d_neg
        return np.maximum(m, 0.0), {"g": (g_ap, g_an, g_pn), "swap": use_swap, "active": m > 0}

    def _backward(self, yt, yp, cache, dl):
        g_ap, g_an, g_pn = cache["g"]
        c = np.where(cache["active"], dl, 0.0)[:, None]
        s = cache["swap"][:, None]
        da = c * (g_ap - np.where(s, 0.0, g_an))
        dp = c * (-g_ap - (np.where(s, g_pn, 0.0) if g_pn is not None else 0.0))
        dn = c * (np.where(s, g_pn, g_an) if g_pn is not None else g_an)
        return np.stack([da, dp, dn], axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "p": self.p, "eps": self.eps, "swap": self.swap}


class Contrastive(Loss):
    """Contrastive loss of pairs (Hadsell, Chopra and LeCun 2006; the formula of TF-Addons' ``contrastive_loss``).

    Packing: ``y_pred`` ``(batch, 2, dim)`` holds the two embeddings of each pair; ``y_true``
    ``(batch,)`` is 1 for a similar pair, 0 for a dissimilar one (values in between weigh the
    two terms). With ``d = ||x1 - x2||_2``:
    ``l = y_true * d**2 + (1 - y_true) * max(margin - d, 0) ** 2``, shape ``(batch,)``.
    For a dissimilar pair at ``d = 0`` the (direction-less) gradient is taken as 0.
    """

    _default_name = "contrastive"

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        self.margin = check_number(type(self).__name__, margin, "margin", low=0)

    def _prepare(self, y_true, yp):
        _check_packed(self, yp, 2, "(x1, x2)")
        return _pair_labels(self, y_true, yp), yp

    def _forward(self, yt, yp):
        v = yp[:, 0] - yp[:, 1]
        d, g = pnorm_and_grad(v, 2)
        gap = np.maximum(self.margin - d, 0.0)
        losses = yt * np.sum(v * v, axis=-1) + (1.0 - yt) * gap * gap
        return losses, {"v": v, "g": g, "gap": gap}

    def _backward(self, yt, yp, cache, dl):
        dv = (2.0 * yt * dl)[:, None] * cache["v"] - (2.0 * (1.0 - yt) * cache["gap"] * dl)[:, None] * cache["g"]
        return np.stack([dv, -dv], axis=1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def _masked_logsumexp(x, mask):
    """Row-wise ``logsumexp`` of ``x`` over ``mask`` (``-inf`` for empty rows) and its softmax weights."""
    m = np.max(np.where(mask, x, -np.inf), axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(np.where(mask, x - m, -np.inf))
    s = np.sum(e, axis=1, keepdims=True)
    nonempty = s > 0
    s_safe = np.where(nonempty, s, 1.0)
    lse = np.where(nonempty, m + np.log(s_safe), -np.inf)[:, 0]
    return lse, e / s_safe


class Circle(Loss):
    """Circle loss (Keras 3 ``Circle``; Sun et al. 2020) on L2-normalised embeddings.

    ``y_true`` ``(batch,)`` integer labels (``(batch, 1)`` is squeezed), ``y_pred``
    ``(batch, dim)`` embeddings (normalise them first, e.g. ``UnitNormalization``).
    ``D = max(1 - y_pred y_pred^T, 0)`` (pairwise cosine distances); positives are pairs of
    equal labels (without the diagonal when ``remove_diagonal``), negatives the others.
    ``w_p = max(margin + D, 0)``, ``w_n = max(1 + margin - D, 0)``;
    ``l_i = softplus(logsumexp_{j pos}(-gamma w_p (margin - D)) + logsumexp_{j neg}(gamma w_n (1 - margin - D)))``,
    shape ``(batch,)``. As Keras, samples whose loss is 0 (no positive or no negative) are
    masked: ``"sum_over_batch_size"`` averages over the others. The weights are differentiated
    too (Keras has no stop-gradient).
    """

    _default_name = "circle"

    def __init__(self, gamma=80.0, margin=0.4, remove_diagonal=True, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction=reduction, name=name)
        owner = type(self).__name__
        self.gamma = check_number(owner, gamma, "gamma", low=0, low_open=True)
        self.margin = check_number(owner, margin, "margin")
        self.remove_diagonal = check_bool(owner, remove_diagonal, "remove_diagonal")

    def _prepare(self, y_true, yp):
        if yp.ndim != 2:
            raise ValueError(
                f"{self.describe()}: expected y_pred of shape (batch, dim). Received: y_pred.shape={yp.shape}"
            )
        labels = as_labels(self, y_true)
        if labels.ndim == 2 and labels.shape[-1] == 1:
            labels = labels[:, 0]
        if labels.shape != yp.shape[:1]:
            raise ValueError(
                f"{self.describe()}: expected y_true of shape ({yp.shape[0]},), one label per embedding. "
                f"Received: y_true.shape={np.shape(y_true)}, y_pred.shape={yp.shape}"
            )
        return labels, yp

    def _forward(self, labels, yp):
        g, m = self.gamma, self.margin
        same = labels[:, None] == labels[None, :]
        pos = same & ~np.eye(len(labels), dtype=bool) if self.remove_diagonal else same
        neg = ~same
        pf, nf = pos.astype(yp.dtype), neg.astype(yp.dtype)
        raw = 1.0 - yp @ yp.T
        dist = np.maximum(raw, 0.0)
        pw_arg, nw_arg = (m + dist) * pf, (1.0 + m - dist) * nf
        pw, nw = np.maximum(pw_arg, 0.0), np.maximum(nw_arg, 0.0)
        pd, nd = m - dist, (1.0 - m) - dist
        p_lse, p_soft = _masked_logsumexp(-g * pw * pd, pos)
        n_lse, n_soft = _masked_logsumexp(g * nw * nd, neg)
        z = p_lse + n_lse
        losses = softplus(z)
        cache = {"z": z, "p_soft": p_soft, "n_soft": n_soft, "pw": pw, "nw": nw, "pd": pd, "nd": nd,
                 "pw_on": pw_arg > 0, "nw_on": nw_arg > 0, "raw_on": raw > 0, "pf": pf, "nf": nf,
                 "mask": losses > 0}
        return losses, cache

    def _backward(self, labels, yp, c, dl):
        g = self.gamma
        dz = (dl * sigmoid(c["z"]))[:, None]
        dpwd, dnwd = dz * c["p_soft"], dz * c["n_soft"]
        dpw, dpd = -g * c["pd"] * dpwd, -g * c["pw"] * dpwd
        dnw, dnd = g * c["nd"] * dnwd, g * c["nw"] * dnwd
        ddist = -dpd - dnd + dpw * c["pf"] * c["pw_on"] - dnw * c["nf"] * c["nw_on"]
        dsim = -ddist * c["raw_on"]
        return (dsim + dsim.T) @ yp

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "margin": self.margin,
                "remove_diagonal": self.remove_diagonal}


register_loss(CosineEmbedding, "CosineEmbeddingLoss", "cosine_embedding_loss")
register_loss(TripletMargin, "TripletMarginLoss", "triplet_margin_loss")
register_loss(Contrastive, "contrastive_loss")
register_loss(Circle)
