"""Scaled dot-product attention on ``(batch, heads, time, dim)`` arrays: forward and hand-written backward.

Private helper of :mod:`fusenet.layers.attention`. Every product is one batched ``np.matmul``
over ``(batch, heads)``; there is no Python loop over samples or heads.

Layout: the scores and probabilities are kept *keys first*, ``(B, H, S, T)`` (key ``j`` on axis -2,
query ``i`` on axis -1), the transpose of the textbook ``(B, H, T, S)``. The softmax then reduces
over axis -2, which NumPy vectorises along the contiguous last axis; a reduction over a short last
axis (``max(axis=-1)`` on rows of 64) runs several times slower. ``np.matmul`` reads the
transposed operands through BLAS's transpose flags, so the layout costs no copies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["causal_bias_t", "attention_forward", "attention_backward"]


def causal_bias_t(t: int, s: int, dtype) -> np.ndarray:
    """Keys-first ``(s, t)`` additive causal mask: ``0`` where key ``j <= i`` (query ``i`` may attend), else ``-inf``.

    Keras's causal mask: query ``i`` sees keys ``0..i`` (the lower triangle of the ``(t, s)``
    matrix, also when ``t != s``), so every query keeps key 0 and no row is empty.
    """
    bias = np.zeros((s, t), dtype=dtype)
    bias[np.tril_indices(s, k=-1, m=t)] = -np.inf
    return bias


def attention_forward(q, k, v, bias_t=None, dropout_mask=None):
    """``out = dropout(softmax(q k^T + bias)) v``, the softmax over the keys.

    Shapes: ``q (B, H, T, dk)`` (already scaled by ``1/sqrt(dk)``), ``k (B, H, S, dk)``,
    ``v (B, H, S, dv)``, ``bias_t (S, T)`` (keys first) or None, ``dropout_mask (B, H, S, T)``
    holding 0 or ``1/keep`` (inverted dropout) or None.

    The softmax is stable: ``p = exp(s - max_j s) / sum_j exp(s - max_j s)``; ``-inf`` (masked)
    scores give exactly 0. Returns ``(out (B, H, T, dv), probs_t, dropped_t)``: the keys-first
    probabilities ``(B, H, S, T)`` and the same after dropout (the same object without dropout).
    """
    scores = np.matmul(k, np.swapaxes(q, -1, -2))
    if bias_t is not None:
        scores += bias_t
    scores -= scores.max(axis=-2, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-2, keepdims=True)
    dropped = scores if dropout_mask is None else scores * dropout_mask
    return np.matmul(np.swapaxes(dropped, -1, -2), v), scores, dropped


def attention_backward(dout, q, k, v, probs_t, dropped_t, dropout_mask=None):
    """Gradients ``(dq, dk, dv)`` of :func:`attention_forward` for the upstream ``dout (B, H, T, dv)``.

    With ``P`` the probabilities and ``D`` the dropped probabilities (textbook ``(T, S)`` layout):
    ``dv = D^T dout``; ``dP = (dout v^T) * mask``; the softmax Jacobian-vector product
    ``dS = P * (dP - sum_j(dP * P))``; ``dq = dS k``; ``dk = dS^T q``.
    """
    dv = np.matmul(dropped_t, dout)
    dp = np.matmul(v, np.swapaxes(dout, -1, -2))
    if dropout_mask is not None:
        dp *= dropout_mask
    dp -= np.einsum("...st,...st->...t", dp, probs_t)[..., None, :]
    dp *= probs_t
    dq = np.matmul(np.swapaxes(dp, -1, -2), k)
    dk = np.matmul(dp, q)
    return dq, dk, dv
