"""Connectionist temporal classification loss (Keras 3 ``CTC``, torch ``CTCLoss``)."""

from __future__ import annotations

import numpy as np

from ._math import log_softmax
from .base import Loss, as_labels, check_bool, check_label_range, register_loss

__all__ = ["CTC"]

_NEG = -1e30  # "log 0": finite, so no inf - inf ever occurs


def _logsumexp3(a, b, c):
    """Element-wise ``log(exp(a) + exp(b) + exp(c))`` (max-shifted)."""
    m = np.maximum(np.maximum(a, b), c)
    return m + np.log(np.exp(a - m) + np.exp(b - m) + np.exp(c - m))


class CTC(Loss):
    """CTC loss of logits against padded label sequences (Keras 3 ``CTC``).

    Shapes: ``y_true`` ``(batch, max_label_len)`` integer labels in ``[1, C)``, padded at the
    end with 0; ``y_pred`` ``(batch, time, C)`` logits (not softmaxed). As Keras, class 0 is the
    blank (``mask_index=0``), every sample uses all ``time`` steps and a label sequence's length
    is its number of non-zero entries. ``l = -log p(labels | y_pred)``, shape ``(batch,)``:
    torch's ``ctc_loss(log_softmax(y_pred).transpose(0, 1), y_true, time, lengths, blank=0,
    reduction="none")``.

    The forward (alpha) and backward (beta) recursions run in log space, vectorised over the
    batch and the extended label positions (the only Python loop is over time steps). The
    gradient with respect to the logits is exact:
    ``softmax(y_pred)[t, k] - sum_{s: l'_s = k} exp(alpha_t(s) + beta_t(s) - log p)``.

    A label sequence that cannot fit in ``time`` steps (length plus repeated neighbours
    exceeding ``time``) raises ``ValueError``; with ``zero_infinity=True`` (torch's option) its
    loss and gradient are 0 instead.
    """

    _default_name = "ctc"

    def __init__(self, reduction="sum_over_batch_size", name=None, zero_infinity=False):
        super().__init__(reduction=reduction, name=name)
        self.zero_infinity = check_bool(type(self).__name__, zero_infinity, "zero_infinity")

    def _prepare(self, y_true, yp):
        if yp.ndim != 3:
            raise ValueError(
                f"{self.describe()}: expected y_pred (logits) of shape (batch, time, classes). "
                f"Received: y_pred.shape={yp.shape}"
            )
        labels = as_labels(self, y_true)
        if labels.ndim != 2 or labels.shape[0] != yp.shape[0]:
            raise ValueError(
                f"{self.describe()}: expected y_true of shape (batch, max_label_len) with batch={yp.shape[0]}. "
                f"Received: y_true.shape={labels.shape}, y_pred.shape={yp.shape}"
            )
        check_label_range(self, labels, yp.shape[2])
        nonzero = labels != 0
        late = nonzero[:, 1:] & ~nonzero[:, :-1]
        if np.any(late):
            row = int(np.argmax(np.any(late, axis=1)))
            raise ValueError(
                f"{self.describe()}: expected each label sequence padded with 0 (the blank) at the end only. "
                f"Received: y_true[{row}]={labels[row].tolist()}"
            )
        return labels, yp

    def _forward(self, labels, yp):
        batch, steps, _ = yp.shape
        lengths = np.sum(labels != 0, axis=1)
        # feasibility: time >= length + number of equal neighbours
        repeats = np.sum((labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] != 0), axis=1)
        feasible = lengths + repeats <= steps
        if not self.zero_infinity and not np.all(feasible):
            row = int(np.argmin(feasible))
            raise ValueError(
                f"{self.describe()}: label sequence {row} of length {int(lengths[row])} (with "
                f"{int(repeats[row])} repeated neighbours) needs at least {int(lengths[row] + repeats[row])} time "
                f"steps. Received: y_pred with {steps} time steps (use zero_infinity=True to ignore such samples)"
            )
        max_len = labels.shape[1]
        width = 2 * max_len + 1
        ext = np.zeros((batch, width), dtype=np.int64)  # extended labels: blank, l1, blank, l2, ..., blank
        ext[:, 1::2] = labels
        valid = np.arange(width)[None, :] < (2 * lengths + 1)[:, None]
        # the skip s-2 -> s is allowed for a non-blank label differing from the one two before
        skip = np.zeros((batch, width), dtype=bool)
        skip[:, 3::2] = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] != 0)

        logp = log_softmax(yp)  # (batch, time, C)
        emit = np.take_along_axis(logp, np.broadcast_to(ext[:, None, :], (batch, steps, width)), axis=2)
        neg = np.asarray(_NEG, dtype=yp.dtype)
        emit = np.where(valid[:, None, :], emit, neg)

        alpha = np.full((steps, batch, width), neg, dtype=yp.dtype)
        alpha[0, :, :2] = emit[:, 0, :2]
        alpha[0] = np.where(valid, alpha[0], neg)
        for t in range(1, steps):
            prev = alpha[t - 1]
            shift1 = np.concatenate([np.full((batch, 1), neg), prev[:, :-1]], axis=1)
            shift2 = np.where(skip, np.concatenate([np.full((batch, 2), neg), prev[:, :-2]], axis=1), neg)
            alpha[t] = np.maximum(_logsumexp3(prev, shift1, shift2) + emit[:, t], neg)

        # beta_t(s): log-probability of emitting the rest after step t from state s (emission at t excluded)
        last = 2 * lengths
        end = (np.arange(width)[None, :] == last[:, None]) | (np.arange(width)[None, :] == (last - 1)[:, None])
        beta = np.full((steps, batch, width), neg, dtype=yp.dtype)
        beta[steps - 1] = np.where(end & valid, 0.0, neg)
        skip_from = np.concatenate([skip[:, 2:], np.zeros((batch, 2), dtype=bool)], axis=1)
        for t in range(steps - 2, -1, -1):
            nxt = beta[t + 1] + emit[:, t + 1]
            shift1 = np.concatenate([nxt[:, 1:], np.full((batch, 1), neg)], axis=1)
            shift2 = np.where(skip_from, np.concatenate([nxt[:, 2:], np.full((batch, 2), neg)], axis=1), neg)
            beta[t] = np.maximum(_logsumexp3(nxt, shift1, shift2), neg)

        rows = np.arange(batch)
        a_end = alpha[steps - 1, rows, last]
        a_prev = np.where(lengths > 0, alpha[steps - 1, rows, np.maximum(last - 1, 0)], neg)
        m = np.maximum(a_end, a_prev)
        loglik = m + np.log(np.exp(a_end - m) + np.exp(a_prev - m))
        losses = np.where(feasible, -loglik, 0.0)
        return losses, {"alpha": alpha, "beta": beta, "loglik": loglik, "logp": logp, "ext": ext,
                        "feasible": feasible}

    def _backward(self, labels, yp, cache, dl):
        batch, steps, num_classes = yp.shape
        loglik = np.where(cache["feasible"], cache["loglik"], 0.0)
        # occupancy gamma_t(s) = P(state s at time t | labels), shape (batch, time, width)
        occ = np.exp(np.transpose(cache["alpha"] + cache["beta"], (1, 0, 2)) - loglik[:, None, None])
        onehot = (cache["ext"][:, :, None] == np.arange(num_classes)).astype(yp.dtype)  # (batch, width, C)
        post = occ @ onehot  # (batch, time, C): sum over states carrying class k
        grad = np.exp(cache["logp"]) - post
        scale = np.where(cache["feasible"], dl, 0.0)
        return grad * scale[:, None, None]

    def get_config(self):
        return {**super().get_config(), "zero_infinity": self.zero_infinity}


register_loss(CTC)
