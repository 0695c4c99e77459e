"""Every loss: float64 gradient checks under each reduction and with sample weights, parity with
torch (or with Keras's formula written out in torch where torch has no such loss), stability at
logits of magnitude 1000, and config round trips.

Each :class:`LossCase` makes a loss, draws float64 data away from the loss's kinks, and gives the
per-sample losses in torch (layouts translated to fusenet's channels-last packing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from fusenet import losses
from tests.gradcheck import check_loss_gradient
from tests.parity import assert_close, requires_torch, tensor, torch

if torch is not None:  # pragma: no branch
    F = torch.nn.functional

EPS = 1e-7
REDUCTIONS = ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"]


@dataclass
class LossCase:
    """``make(reduction)`` builds the loss; ``data(rng)`` gives float64 ``(y_true, y_pred)``;
    ``torch_fn(yt, yp)`` the per-sample losses in torch; ``torch_mean(yt, yp)`` (optional) the
    value of the torch module with its default ``"mean"`` reduction, equal to fusenet's default."""

    make: Callable
    data: Callable
    torch_fn: Callable | None = None
    id: str = ""
    logits: bool = False
    torch_mean: Callable | None = None
    masked: bool = False
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.id:
            self.id = type(self.make()).__name__

    def loss(self, reduction="sum_over_batch_size"):
        return self.make(reduction=reduction)


# ---------------------------------------------------------------- data helpers
def away(rng, shape, low=0.1, high=1.0):
    """Values with magnitude in [low, high] and a random sign."""
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def probs(rng, shape, low=0.05, high=0.95):
    return rng.uniform(low, high, size=shape)


def onehot(labels, num_classes):
    return np.eye(num_classes)[labels]


def regression(rng, shape=(3, 4)):
    yt = rng.normal(size=shape)
    return yt, yt + away(rng, shape, 0.1, 2.0)


def huber_data(delta):
    def data(rng, shape=(3, 4)):
        yt = rng.normal(size=shape)
        mag = np.where(rng.random(shape) < 0.5, rng.uniform(0.1, 0.8, shape), rng.uniform(1.2, 2.5, shape)) * delta
        return yt, yt + mag * rng.choice([-1.0, 1.0], size=shape)

    return data


def binary(rng, shape=(3, 4), logits=False):
    yt = rng.integers(0, 2, size=shape).astype(np.float64)
    return yt, (rng.normal(size=shape) * 2 if logits else probs(rng, shape))


def categorical(rng, shape=(3, 4), logits=False, soft=False):
    c = shape[-1]
    if soft:
        yt = rng.dirichlet(np.ones(c), size=shape[:-1])
    else:
        yt = onehot(rng.integers(0, c, size=shape[:-1]), c)
    yp = rng.normal(size=shape) * 2 if logits else rng.dirichlet(np.ones(c) * 3, size=shape[:-1])
    return yt, yp


def sparse(rng, shape=(3, 4), logits=False, ignore=None):
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    if ignore is not None:
        labels.flat[::3] = ignore
    yp = rng.normal(size=shape) * 2 if logits else rng.dirichlet(np.ones(shape[-1]) * 3, size=shape[:-1])
    return labels, yp


def hinge_data(rng, shape=(3, 4), binary_labels=False):
    t = rng.choice([-1.0, 1.0], size=shape)
    margin = away(rng, shape, 0.1, 1.0)  # 1 - t * y_pred
    yp = (1.0 - margin) * t
    return ((t + 1) / 2 if binary_labels else t), yp


def categorical_hinge_data(rng, shape=(4, 5)):
    yt = onehot(rng.integers(0, shape[-1], size=shape[0]), shape[-1])
    yp = rng.permuted(np.tile(np.linspace(-1.0, 1.0, shape[-1]), (shape[0], 1)), axis=1) + rng.uniform(0, 0.05, shape)
    return yt, yp


def multi_margin_data(rng, shape=(4, 5)):
    labels = rng.integers(0, shape[-1], size=shape[0])
    yp = rng.normal(size=shape)
    return labels, np.round(yp * 4) / 4 + 0.037 * np.arange(shape[-1])  # margins away from 0


def multilabel_margin_data(rng, shape=(4, 5)):
    c = shape[-1]
    labels = -np.ones(shape, dtype=np.int64)
    for i in range(shape[0]):
        k = i % (c - 1) + 1
        labels[i, :k] = rng.permutation(c)[:k]
    labels[0, 1] = labels[0, 0]  # a class listed twice counts twice, as torch
    return labels, np.round(rng.normal(size=shape) * 4) / 4 + 0.037 * np.arange(c)


def pair_data(rng, batch=4, dim=3, labels=(-1.0, 1.0)):
    return rng.choice(labels, size=batch).astype(np.float64), rng.normal(size=(batch, 2, dim))


def ranking_data(rng, batch=5, margin=0.3):
    """Pairs whose hinge argument ``-t (x1 - x2) + margin`` is at least 0.1 away from 0."""
    t = rng.choice([-1.0, 1.0], size=batch)
    m = away(rng, batch, 0.1, 1.0)
    x2 = rng.normal(size=batch)
    return t, np.stack([x2 + t * (margin - m), x2], axis=1)


def triplet_data(rng, batch=5, dim=3):
    return None, rng.normal(size=(batch, 3, dim))


def contrastive_data(rng, batch=6, dim=3):
    yt = rng.integers(0, 2, size=batch).astype(np.float64)
    yp = rng.normal(size=(batch, 2, dim)) * 0.4
    return yt, yp


def circle_data(rng, batch=6, dim=4):
    labels = np.array([0, 1, 0, 2, 1, 0])[:batch]
    e = rng.normal(size=(batch, dim))
    return labels, e / np.linalg.norm(e, axis=1, keepdims=True)


def segmentation(rng, shape=(2, 3, 3, 2)):
    return (rng.random(shape) < 0.5).astype(np.float64), probs(rng, shape)


def ctc_data(rng, batch=3, steps=6, classes=4):
    labels = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]])[:batch]
    return labels, rng.normal(size=(batch, steps, classes)) * 2


def gaussian_data(rng, shared=False, shape=(3, 4)):
    yt = rng.normal(size=shape)
    var = rng.uniform(0.2, 2.0, size=shape[:-1] + ((1,) if shared else shape[-1:]))
    return yt, np.concatenate([rng.normal(size=shape), var], axis=-1)


# ---------------------------------------------------------------- torch references (per-sample losses)
def t_bce_probs(ls=0.0):
    return lambda t, p: F.binary_cross_entropy(p, t * (1 - ls) + 0.5 * ls, reduction="none").mean(-1)


def t_focal_binary(gamma, alpha=None, logits=False, ls=0.0):
    def fn(t, yp):
        t = t * (1 - ls) + 0.5 * ls
        if logits:
            p = torch.sigmoid(yp)
            bce = F.binary_cross_entropy_with_logits(yp, t, reduction="none")
        else:
            p = yp
            pc = yp.clamp(EPS, 1 - EPS)
            bce = -(t * torch.log(pc) + (1 - t) * torch.log(1 - pc))
        p_t = t * p + (1 - t) * (1 - p)
        out = (1 - p_t) ** gamma * bce
        if alpha is not None:
            out = out * (t * alpha + (1 - t) * (1 - alpha))
        return out.mean(-1)

    return fn


def t_keras_cce(ls=0.0, axis=-1):
    def fn(t, p):
        t = t * (1 - ls) + ls / t.shape[axis]
        q = (p / p.sum(axis, keepdim=True)).clamp(EPS, 1 - EPS)
        return -(t * torch.log(q)).sum(axis)

    return fn


def t_cce_logits(ls=0.0):
    return lambda t, z: F.cross_entropy(z.movedim(-1, 1), t.movedim(-1, 1), label_smoothing=ls, reduction="none")


def t_sparse_logits(ignore=-100):
    return lambda y, z: F.cross_entropy(z.movedim(-1, 1), y, ignore_index=ignore, reduction="none")


def t_sparse_probs(ignore=-100):
    def fn(y, p):
        q = (p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
        return F.nll_loss(torch.log(q).movedim(-1, 1), y, ignore_index=ignore, reduction="none")

    return fn


def t_focal_categorical(gamma, alpha, logits=False, ls=0.0):
    def fn(t, z):
        t = t * (1 - ls) + ls / t.shape[-1]
        a = torch.as_tensor(alpha, dtype=z.dtype)
        if logits:
            logp = torch.log_softmax(z, -1)
            p = logp.exp()
        else:
            p = (z / z.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
            logp = torch.log(p)
        return (a * (1 - p) ** gamma * (-t * logp)).sum(-1)

    return fn


def t_hinge(squared=False):
    def fn(t, p):
        if bool(((t == 0) | (t == 1)).all()):
            t = 2 * t - 1
        h = torch.relu(1 - t * p)
        return (h * h if squared else h).mean(-1)

    return fn


def t_categorical_hinge(t, p):
    pos = (t * p).sum(-1)
    neg = ((1 - t) * p).max(-1).values
    return torch.relu(neg - pos + 1)


def t_circle(gamma, margin, remove_diagonal=True):
    def fn(y, e):
        same = y[:, None] == y[None, :]
        pos = same & ~torch.eye(len(y), dtype=torch.bool) if remove_diagonal else same
        neg = ~same
        d = torch.clamp(1 - e @ e.T, min=0.0)
        pw = torch.clamp((margin + d) * pos, min=0.0)
        nw = torch.clamp((1 + margin - d) * neg, min=0.0)
        p = torch.logsumexp(torch.where(pos, -gamma * pw * (margin - d), -torch.inf), dim=1)
        n = torch.logsumexp(torch.where(neg, gamma * nw * (1 - margin - d), -torch.inf), dim=1)
        return F.softplus(p + n)

    return fn


def t_tversky(alpha, beta, axis):
    def fn(t, p):
        inter = (t * p).sum(axis)
        fp = ((1 - p) * t).sum(axis)
        fn_ = (p * (1 - t)).sum(axis)
        return 1 - inter / (inter + alpha * fp + beta * fn_ + EPS)

    return fn


def t_dice(axis):
    return lambda t, p: 1 - 2 * (t * p).sum(axis) / (t.sum(axis) + p.sum(axis) + EPS)


def t_ctc(y, z):
    lengths = (y != 0).sum(1)
    steps = torch.full((z.shape[0],), z.shape[1], dtype=torch.long)
    logp = torch.log_softmax(z, -1).transpose(0, 1)
    return F.ctc_loss(logp, y, steps, lengths, blank=0, reduction="none", zero_infinity=False)


def t_gaussian(full=False, eps=1e-6):
    def fn(t, yp):
        d = t.shape[-1]
        return F.gaussian_nll_loss(yp[..., :d], t, yp[..., d:], full=full, eps=eps, reduction="none").mean(-1)

    return fn


AXIS_123 = (1, 2, 3)

CASES = [
    # regression
    LossCase(losses.MeanSquaredError, regression, lambda t, p: F.mse_loss(p, t, reduction="none").mean(-1),
             torch_mean=lambda t, p: torch.nn.MSELoss()(p, t)),
    LossCase(losses.MeanSquaredError, lambda r: regression(r, (3, 2, 4)),
             lambda t, p: F.mse_loss(p, t, reduction="none").mean(-1), id="MSE-3d"),
    LossCase(losses.MeanAbsoluteError, regression, lambda t, p: F.l1_loss(p, t, reduction="none").mean(-1),
             torch_mean=lambda t, p: torch.nn.L1Loss()(p, t)),
    LossCase(losses.MeanAbsolutePercentageError, regression,
             lambda t, p: 100 * ((t - p).abs() / t.abs().clamp(min=EPS)).mean(-1)),
    LossCase(losses.MeanSquaredLogarithmicError, lambda r: (probs(r, (3, 4), 0.0, 3.0), probs(r, (3, 4), 0.1, 3.0)),
             lambda t, p: ((torch.log1p(p.clamp(min=EPS)) - torch.log1p(t.clamp(min=EPS))) ** 2).mean(-1)),
    LossCase(losses.Huber, huber_data(1.0), lambda t, p: F.huber_loss(p, t, reduction="none").mean(-1),
             torch_mean=lambda t, p: torch.nn.HuberLoss()(p, t)),
    LossCase(lambda **kw: losses.Huber(delta=0.5, **kw), huber_data(0.5),
             lambda t, p: F.huber_loss(p, t, delta=0.5, reduction="none").mean(-1), id="Huber-0.5"),
    LossCase(lambda **kw: losses.SmoothL1(beta=0.5, **kw), huber_data(0.5),
             lambda t, p: F.smooth_l1_loss(p, t, beta=0.5, reduction="none").mean(-1),
             torch_mean=lambda t, p: torch.nn.SmoothL1Loss(beta=0.5)(p, t)),
    LossCase(lambda **kw: losses.SmoothL1(beta=0.0, **kw), regression,
             lambda t, p: F.smooth_l1_loss(p, t, beta=0.0, reduction="none").mean(-1), id="SmoothL1-beta0"),
    LossCase(losses.LogCosh, regression, lambda t, p: torch.log(torch.cosh(p - t)).mean(-1)),
    LossCase(losses.CosineSimilarity, regression,
             lambda t, p: -(F.normalize(t, dim=-1, eps=EPS) * F.normalize(p, dim=-1, eps=EPS)).sum(-1)),
    LossCase(lambda **kw: losses.CosineSimilarity(axis=1, **kw), lambda r: regression(r, (3, 4, 2)),
             lambda t, p: -(F.normalize(t, dim=1, eps=EPS) * F.normalize(p, dim=1, eps=EPS)).sum(1), id="Cosine-axis1"),
    # cross-entropy
    LossCase(losses.BinaryCrossentropy, binary, t_bce_probs(), torch_mean=lambda t, p: torch.nn.BCELoss()(p, t)),
    LossCase(lambda **kw: losses.BinaryCrossentropy(label_smoothing=0.2, **kw), binary, t_bce_probs(0.2),
             id="BCE-smoothing"),
    LossCase(lambda **kw: losses.BinaryCrossentropy(from_logits=True, **kw), lambda r: binary(r, logits=True),
             lambda t, z: F.binary_cross_entropy_with_logits(z, t, reduction="none").mean(-1), id="BCE-logits",
             logits=True, torch_mean=lambda t, z: torch.nn.BCEWithLogitsLoss()(z, t)),
    LossCase(losses.BinaryFocalCrossentropy, binary, t_focal_binary(2.0)),
    LossCase(lambda **kw: losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=3.0, from_logits=True,
                                                         label_smoothing=0.1, **kw),
             lambda r: binary(r, logits=True), t_focal_binary(3.0, 0.25, logits=True, ls=0.1), id="BinaryFocal-logits",
             logits=True),
    LossCase(losses.CategoricalCrossentropy, categorical, t_keras_cce()),
    LossCase(lambda **kw: losses.CategoricalCrossentropy(label_smoothing=0.1, axis=1, **kw),
             lambda r: tuple(np.moveaxis(a, -1, 1) for a in categorical(r, (2, 3, 4))), t_keras_cce(0.1, axis=1),
             id="CCE-axis1"),
    LossCase(lambda **kw: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **kw),
             lambda r: categorical(r, (2, 3, 4), logits=True, soft=True), t_cce_logits(0.1), id="CCE-logits", logits=True),
    LossCase(losses.SparseCategoricalCrossentropy, sparse, t_sparse_probs()),
    LossCase(lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=True, **kw),
             lambda r: sparse(r, (2, 3, 4), logits=True), t_sparse_logits(), id="SCCE-logits-3d", logits=True,
             torch_mean=lambda y, z: torch.nn.CrossEntropyLoss()(z.movedim(-1, 1), y)),
    LossCase(lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=-1, **kw),
             lambda r: sparse(r, (6, 4), logits=True, ignore=-1), t_sparse_logits(-1), id="SCCE-ignore", logits=True,
             masked=True, torch_mean=lambda y, z: torch.nn.CrossEntropyLoss(ignore_index=-1)(z, y)),
    LossCase(lambda **kw: losses.SparseCategoricalCrossentropy(ignore_class=3, **kw),
             lambda r: sparse(r, (6, 4), ignore=3), t_sparse_probs(3), id="SCCE-probs-ignore", masked=True),
    LossCase(losses.CategoricalFocalCrossentropy, categorical, t_focal_categorical(2.0, 0.25)),
    LossCase(lambda **kw: losses.CategoricalFocalCrossentropy(alpha=[0.1, 0.2, 0.3, 0.4], gamma=1.5, from_logits=True,
                                                              label_smoothing=0.1, **kw),
             lambda r: categorical(r, logits=True), t_focal_categorical(1.5, [0.1, 0.2, 0.3, 0.4], True, 0.1),
             id="CategoricalFocal-logits", logits=True),
    LossCase(lambda **kw: losses.CategoricalGeneralizedCrossEntropy(q=0.3, **kw), sparse,
             lambda y, p: (1 - p.gather(-1, y[..., None])[..., 0] ** 0.3) / 0.3, id="GCE"),
    LossCase(losses.NLL, lambda r: (lambda y, z: (y, np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True))))(
        *sparse(r, (2, 3, 4), logits=True, ignore=-100)),
             lambda y, p: F.nll_loss(p.movedim(-1, 1), y, reduction="none"), masked=True, logits=True,
             torch_mean=lambda y, p: torch.nn.NLLLoss()(p.movedim(-1, 1), y)),
    # probabilistic
    LossCase(losses.KLDivergence, lambda r: (probs(r, (3, 4)), probs(r, (3, 4))),
             lambda t, p: F.kl_div(torch.log(p.clamp(EPS, 1)), t.clamp(EPS, 1), reduction="none").sum(-1)),
    LossCase(lambda **kw: losses.KLDivergence(log_input=True, **kw),
             lambda r: (np.where(r.random((3, 4)) < 0.2, 0.0, probs(r, (3, 4))), np.log(probs(r, (3, 4)))),
             lambda t, p: F.kl_div(p, t, reduction="none").sum(-1), id="KLDivergence-log-input",
             torch_mean=lambda t, p: torch.nn.KLDivLoss(reduction="batchmean")(p, t)),
    LossCase(losses.Poisson, lambda r: (r.poisson(2.0, (3, 4)).astype(float), probs(r, (3, 4), 0.5, 4.0)),
             lambda t, p: F.poisson_nll_loss(p, t, log_input=False, eps=EPS, reduction="none").mean(-1)),
    LossCase(losses.PoissonNLL, lambda r: (r.poisson(2.0, (3, 4)).astype(float), r.normal(size=(3, 4))),
             lambda t, p: F.poisson_nll_loss(p, t, reduction="none").mean(-1), logits=False,
             torch_mean=lambda t, p: torch.nn.PoissonNLLLoss()(p, t)),
    LossCase(lambda **kw: losses.PoissonNLL(log_input=False, full=True, **kw),
             lambda r: (r.poisson(3.0, (3, 4)).astype(float), probs(r, (3, 4), 0.5, 4.0)),
             lambda t, p: F.poisson_nll_loss(p, t, log_input=False, full=True, reduction="none").mean(-1),
             id="PoissonNLL-full"),
    LossCase(losses.GaussianNLL, gaussian_data, t_gaussian(),
             torch_mean=lambda t, p: torch.nn.GaussianNLLLoss()(p[..., :4], t, p[..., 4:])),
    LossCase(lambda **kw: losses.GaussianNLL(full=True, **kw), lambda r: gaussian_data(r, shared=True),
             t_gaussian(full=True), id="GaussianNLL-shared-var"),
    # hinge and margin
    LossCase(losses.Hinge, hinge_data, t_hinge()),
    LossCase(losses.Hinge, lambda r: hinge_data(r, binary_labels=True), t_hinge(), id="Hinge-01-labels"),
    LossCase(losses.SquaredHinge, hinge_data, t_hinge(squared=True)),
    LossCase(losses.CategoricalHinge, categorical_hinge_data, t_categorical_hinge),
    LossCase(losses.MultiMargin, multi_margin_data,
             lambda y, p: F.multi_margin_loss(p, y, reduction="none"),
             torch_mean=lambda y, p: torch.nn.MultiMarginLoss()(p, y)),
    LossCase(lambda **kw: losses.MultiMargin(p=2, margin=0.7, weight=[1.0, 2.0, 0.5, 1.5, 1.0], **kw),
             multi_margin_data,
             lambda y, p: F.multi_margin_loss(p, y, p=2, margin=0.7, weight=torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0], dtype=p.dtype),
                                              reduction="none"), id="MultiMargin-p2-weight"),
    LossCase(losses.MultiLabelMargin, multilabel_margin_data,
             lambda y, p: F.multilabel_margin_loss(p, y, reduction="none"),
             torch_mean=lambda y, p: torch.nn.MultiLabelMarginLoss()(p, y)),
    LossCase(losses.MultiLabelSoftMargin, lambda r: binary(r, logits=True),
             lambda t, p: F.multilabel_soft_margin_loss(p, t, reduction="none"), logits=True,
             torch_mean=lambda t, p: torch.nn.MultiLabelSoftMarginLoss()(p, t)),
    LossCase(lambda **kw: losses.MultiLabelSoftMargin(weight=[0.5, 1.0, 2.0, 1.5], **kw), lambda r: binary(r, logits=True),
             lambda t, p: F.multilabel_soft_margin_loss(p, t, weight=torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=p.dtype),
                                                        reduction="none"), id="MultiLabelSoftMargin-weight", logits=True),
    LossCase(losses.SoftMargin, lambda r: (r.choice([-1.0, 1.0], (3, 4)), r.normal(size=(3, 4)) * 2),
             lambda t, p: F.soft_margin_loss(p, t, reduction="none").mean(-1), logits=True,
             torch_mean=lambda t, p: torch.nn.SoftMarginLoss()(p, t)),
    LossCase(lambda **kw: losses.HingeEmbedding(margin=1.5, **kw),
             lambda r: (r.choice([-1.0, 1.0], (3, 4)), 1.5 + away(r, (3, 4), 0.1, 1.0)),
             lambda t, p: F.hinge_embedding_loss(p, t, margin=1.5, reduction="none").mean(-1),
             torch_mean=lambda t, p: torch.nn.HingeEmbeddingLoss(margin=1.5)(p, t)),
    LossCase(lambda **kw: losses.MarginRanking(margin=0.3, **kw),
             ranking_data,
             lambda t, p: F.margin_ranking_loss(p[:, 0], p[:, 1], t, margin=0.3, reduction="none"),
             torch_mean=lambda t, p: torch.nn.MarginRankingLoss(margin=0.3)(p[:, 0], p[:, 1], t)),
    LossCase(losses.MarginRanking,
             lambda r: (r.choice([-1.0, 1.0], (3, 4)), r.normal(size=(3, 2, 4))),
             lambda t, p: F.margin_ranking_loss(p[:, 0], p[:, 1], t, reduction="none").mean(-1), id="MarginRanking-vec"),
    # embedding
    LossCase(lambda **kw: losses.CosineEmbedding(margin=0.1, **kw), pair_data,
             lambda t, p: F.cosine_embedding_loss(p[:, 0], p[:, 1], t, margin=0.1, reduction="none"),
             torch_mean=lambda t, p: torch.nn.CosineEmbeddingLoss(margin=0.1)(p[:, 0], p[:, 1], t)),
    LossCase(losses.TripletMargin, triplet_data,
             lambda t, p: F.triplet_margin_loss(p[:, 0], p[:, 1], p[:, 2], reduction="none"),
             torch_mean=lambda t, p: torch.nn.TripletMarginLoss()(p[:, 0], p[:, 1], p[:, 2])),
    LossCase(lambda **kw: losses.TripletMargin(margin=0.5, p=1.0, swap=True, **kw), triplet_data,
             lambda t, p: F.triplet_margin_loss(p[:, 0], p[:, 1], p[:, 2], margin=0.5, p=1, swap=True, reduction="none"),
             id="TripletMargin-p1-swap"),
    LossCase(losses.Contrastive, contrastive_data,
             lambda t, p: t * ((p[:, 0] - p[:, 1]) ** 2).sum(-1)
             + (1 - t) * torch.relu(1 - (p[:, 0] - p[:, 1]).norm(dim=-1)) ** 2),
    LossCase(lambda **kw: losses.Circle(gamma=8.0, **kw), circle_data, t_circle(8.0, 0.4), masked=True,
             id="Circle-gamma8"),
    LossCase(losses.Circle, lambda r: circle_data(r, 6, 5), t_circle(80.0, 0.4), masked=True),
    LossCase(lambda **kw: losses.Circle(gamma=4.0, margin=0.25, remove_diagonal=False, **kw),
             lambda r: (np.array([0, 1, 1, 2]), r.normal(size=(4, 3)) * 0.5), t_circle(4.0, 0.25, False), masked=True,
             id="Circle-diagonal"),
    # segmentation
    LossCase(losses.Dice, segmentation, t_dice(None)),
    LossCase(lambda **kw: losses.Dice(axis=AXIS_123, **kw), segmentation, t_dice(AXIS_123), id="Dice-per-sample"),
    LossCase(lambda **kw: losses.Tversky(alpha=0.3, beta=0.7, axis=AXIS_123, **kw), segmentation,
             t_tversky(0.3, 0.7, AXIS_123)),
    LossCase(lambda **kw: losses.IoU(axis=AXIS_123, **kw), segmentation, t_tversky(1.0, 1.0, AXIS_123)),
    # sequence
    LossCase(losses.CTC, ctc_data, t_ctc, logits=True),
]

IDS = [c.id for c in CASES]
ALL_CLASSES = sorted({type(c.make()).__name__ for c in CASES})


def case_data(case, rng, dtype=np.float64):
    yt, yp = case.data(rng)
    yp = np.asarray(yp, dtype=dtype)
    if yt is not None and np.asarray(yt).dtype.kind == "f":
        yt = np.asarray(yt, dtype=dtype)
    return yt, yp


def per_sample_shape(case, rng):
    yt, yp = case_data(case, rng)
    return np.shape(case.loss("none")(yt, yp))


def test_every_loss_class_has_a_case():
    exported = {name for name in losses.__all__ if isinstance(getattr(losses, name), type)
                and issubclass(getattr(losses, name), losses.Loss) and name not in ("Loss", "ElementwiseLoss")}
    assert exported == set(ALL_CLASSES)
    assert len(exported) > 30


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_float64(case, reduction, rng):
    yt, yp = case_data(case, rng)
    loss = case.loss(reduction)
    check_loss_gradient(loss, yt, yp)
    shape = np.shape(case.loss("none")(yt, yp))
    weights = rng.uniform(0.2, 2.0, size=shape[:1]) if shape else np.float64(0.7)
    check_loss_gradient(loss, yt, yp, sample_weight=weights)
    if len(shape) > 1:  # full per-sample weights too
        check_loss_gradient(loss, yt, yp, sample_weight=rng.uniform(0.2, 2.0, size=shape))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_gradient_in_one_pass(case, rng):
    yt, yp = case_data(case, rng)
    w = rng.uniform(0.5, 1.5, size=np.shape(case.loss("none")(yt, yp)))
    for reduction in ("sum_over_batch_size", "none"):
        loss = case.loss(reduction)
        value, grad = loss.value_and_gradient(yt, yp, sample_weight=w)
        np.testing.assert_array_equal(value, loss(yt, yp, sample_weight=w))
        np.testing.assert_array_equal(grad, loss.gradient(yt, yp, sample_weight=w))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_none_gradient_is_gradient_of_sum(case, rng):
    yt, yp = case_data(case, rng)
    g_none = case.loss("none").gradient(yt, yp)
    g_sum = case.loss("sum").gradient(yt, yp)
    np.testing.assert_allclose(g_none, g_sum, rtol=1e-12, atol=1e-12)
    assert g_none.shape == yp.shape and g_none.dtype == np.float64


# ---------------------------------------------------------------- reductions
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reductions_are_keras(case, rng):
    """Keras ``reduce_weighted_values``: "none" is w*l; "sum" its sum; the means divide by the size (or sum(w))."""
    yt, yp = case_data(case, rng)
    per_sample = case.loss("none")(yt, yp)
    mask = np.ones(np.shape(per_sample), bool)
    if case.masked:  # masked entries: zero and excluded from the means
        mask = per_sample != 0
    w = rng.uniform(0.2, 2.0, size=np.shape(per_sample))
    weighted = case.loss("none")(yt, yp, sample_weight=w)
    np.testing.assert_allclose(weighted, w * per_sample, rtol=1e-12)
    assert case.loss("sum")(yt, yp, sample_weight=w) == pytest.approx(np.sum(w * per_sample), rel=1e-12)
    assert case.loss()(yt, yp, sample_weight=w) == pytest.approx(np.sum(w * per_sample) / mask.sum(), rel=1e-12)
    assert case.loss("mean")(yt, yp) == pytest.approx(np.sum(per_sample) / mask.sum(), rel=1e-12)
    assert case.loss("mean_with_sample_weight")(yt, yp, sample_weight=w) == pytest.approx(
        np.sum(w * per_sample) / np.sum(w * mask), rel=1e-12)
    assert isinstance(case.loss()(yt, yp), float)


# ---------------------------------------------------------------- torch parity
def _torch_inputs(yt, yp):
    yt_t = None if yt is None else tensor(yt)
    return yt_t, tensor(yp, requires_grad=True)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in CASES if c.torch_fn is not None], ids=lambda c: c.id)
def test_torch_parity(case, dtype, rng):
    """Per-sample values and the gradient of their weighted sum, against torch."""
    yt, yp = case_data(case, rng, dtype)
    ours = case.loss("none")(yt, yp)
    yt_t, yp_t = _torch_inputs(yt, yp)
    ref = case.torch_fn(yt_t, yp_t)
    assert_close(ours, ref, dtype, f"{case.id} per-sample losses")
    w = rng.uniform(0.2, 2.0, size=np.shape(ours)).astype(dtype)
    (ref * tensor(w)).sum().backward()
    grad = case.loss("sum").gradient(yt, yp, sample_weight=w)
    assert grad.dtype == dtype
    assert_close(grad, yp_t.grad, dtype, f"{case.id} gradient")


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in CASES if c.torch_mean is not None], ids=lambda c: c.id)
def test_torch_module_mean_parity(case, dtype, rng):
    """The torch module with its default ``"mean"`` reduction equals fusenet's default, value and gradient."""
    yt, yp = case_data(case, rng, dtype)
    yt_t, yp_t = _torch_inputs(yt, yp)
    ref = case.torch_mean(yt_t, yp_t)
    ref.backward()
    loss = case.loss()
    assert_close(np.asarray(loss(yt, yp)), ref, dtype, f"{case.id} mean value")
    assert_close(loss.gradient(yt, yp), yp_t.grad, dtype, f"{case.id} mean gradient")


# ---------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in CASES if c.logits], ids=lambda c: c.id)
def test_logits_of_magnitude_1000_are_stable(case, dtype, rng):
    yt, yp = case_data(case, rng, dtype)
    yp = (np.sign(yp) * 1000.0 + yp).astype(dtype)
    for reduction in ("sum_over_batch_size", "none"):
        loss = case.loss(reduction)
        value = loss(yt, yp)
        grad = loss.gradient(yt, yp)
        assert np.all(np.isfinite(value)), f"{case.id}: loss {value}"
        assert np.all(np.isfinite(grad)) and grad.dtype == dtype, f"{case.id}: gradient"


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtypes(case, rng):
    yt, yp = case_data(case, rng, np.float32)
    loss = case.loss("none")
    assert loss(yt, yp).dtype == np.float32
    assert case.loss().gradient(yt, yp).dtype == np.float32
    assert isinstance(case.loss()(yt, yp), float)
    yt64, yp64 = case_data(case, np.random.default_rng(1234), np.float64)
    assert case.loss().gradient(yt64, yp64).dtype == np.float64
    g16 = case.loss().gradient(yt, yp.astype(np.float16))
    assert g16.dtype == np.float16 and g16.shape == yp.shape


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_roundtrip(case, rng):
    loss = case.make(reduction="sum", name="my_loss")
    config = loss.get_config()
    assert config["name"] == "my_loss" and config["reduction"] == "sum"
    json.dumps(config)
    spec = json.loads(json.dumps(losses.serialize(loss)))
    clone = losses.deserialize(spec)
    assert type(clone) is type(loss) and clone.get_config() == config and clone == loss
    assert losses.get(spec) == loss
    assert type(loss).from_config(config) == loss
    assert losses.get(loss) is loss
    assert type(losses.get(type(loss).__name__)) is type(loss)
    yt, yp = case_data(case, rng)
    assert clone(yt, yp) == loss(yt, yp)


KERAS_NAMES = {
    "mse": "MeanSquaredError", "MSE": "MeanSquaredError", "mean_squared_error": "MeanSquaredError",
    "mae": "MeanAbsoluteError", "MAE": "MeanAbsoluteError", "mean_absolute_error": "MeanAbsoluteError",
    "mape": "MeanAbsolutePercentageError", "MAPE": "MeanAbsolutePercentageError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
    "msle": "MeanSquaredLogarithmicError", "MSLE": "MeanSquaredLogarithmicError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "binary_crossentropy": "BinaryCrossentropy", "bce": "BinaryCrossentropy", "BCE": "BinaryCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "categorical_generalized_cross_entropy": "CategoricalGeneralizedCrossEntropy",
    "huber": "Huber", "huber_loss": "Huber", "log_cosh": "LogCosh", "logcosh": "LogCosh",
    "kld": "KLDivergence", "KLD": "KLDivergence", "kl_divergence": "KLDivergence",
    "kullback_leibler_divergence": "KLDivergence", "poisson": "Poisson",
    "hinge": "Hinge", "squared_hinge": "SquaredHinge", "categorical_hinge": "CategoricalHinge",
    "cosine_similarity": "CosineSimilarity", "dice": "Dice", "tversky": "Tversky", "iou": "IoU",
    "circle": "Circle", "ctc": "CTC",
    # torch-flavoured names
    "smooth_l1": "SmoothL1", "SmoothL1Loss": "SmoothL1", "nll": "NLL", "NLLLoss": "NLL", "L1Loss": "MeanAbsoluteError",
    "poisson_nll": "PoissonNLL", "gaussian_nll": "GaussianNLL", "multi_margin": "MultiMargin",
    "multilabel_margin": "MultiLabelMargin", "multilabel_soft_margin": "MultiLabelSoftMargin",
    "soft_margin": "SoftMargin", "margin_ranking": "MarginRanking", "hinge_embedding": "HingeEmbedding",
    "cosine_embedding": "CosineEmbedding", "triplet_margin": "TripletMargin", "contrastive": "Contrastive",
    "TripletMarginLoss": "TripletMargin",
}


@pytest.mark.parametrize("name", sorted(KERAS_NAMES))
def test_get_by_name(name):
    loss = losses.get(name)
    assert type(loss).__name__ == KERAS_NAMES[name]
    assert loss.reduction == "sum_over_batch_size"
    assert losses.deserialize(name) == loss


def test_every_class_name_is_registered():
    for name in ALL_CLASSES:
        assert type(losses.get(name)).__name__ == name
    assert set(ALL_CLASSES) <= set(losses.available())


def test_keras_default_names():
    assert losses.Huber().name == "huber_loss"
    assert losses.MeanSquaredError().name == "mean_squared_error"
    assert losses.KLDivergence().name == "kl_divergence"
    assert losses.LogCosh(name="lc").name == "lc"
    assert math.isclose(losses.get("mse")(np.zeros((2, 2)), np.ones((2, 2))), 1.0)
