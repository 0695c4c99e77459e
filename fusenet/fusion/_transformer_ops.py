"""Array kernels of the fused transformer layers (private to :mod:`fusenet.fusion.transformer`).

Everything here works on 2-D row matrices ``(rows, features)`` (every leading axis of a layer's
input merged into ``rows``) or on the packed attention projections, and reuses the exact
operation order of the unfused layers where their numbers must be reproduced in training:

- layer normalisation over the last axis: :func:`standardize_rows` / :func:`standardize_rows_`
  (the same reductions as ``LayerNormalization``: a GEMV for the mean, one ``einsum`` for the
  variance), :func:`standardize_rows_backward`;
- a LayerNormalization feeding a GEMM: :func:`fold_layernorm_dense` (``W' = gamma[:, None] * W``,
  ``b' = beta @ W + b``, exact) for inference, and for training :func:`layernorm_output` and
  :func:`ln_gemm_backward` (the unfused operation order, so that training gives the unfused numbers);
- the attention core on the packed QKV projection ``(batch, T, h*(2k+v))``:
  :func:`attention_core` (softmax in place) and :func:`attention_core_backward` (writes the
  three projection gradients straight into one packed buffer); at inference
  :func:`attention_inference` on the projection of :func:`pack_qkv_inference`'s kernel, whose value
  heads carry a column of ones (so the softmax sums come out of the value matmul);
- element-wise activations applied in place on a GEMM output where the values stay the same
  (``fusenet.activations._smooth.gelu_float32_inplace``: the float32 GELU without temporaries).
"""

from __future__ import annotations

import numpy as np

from ..layers._attention_math import causal_bias_t
from ..layers.normalization import _reduce_sum, _reduce_sum_prod, _standardize, _standardize_backward
from ._activation import activation_backward, apply_activation_, is_plain_relu  # noqa: F401 (re-exported)

__all__ = ["standardize_rows", "standardize_rows_", "standardize_rows_backward", "fold_layernorm_dense",
           "layernorm_output",
           "ln_gemm_backward", "attention_core", "attention_core_backward", "attention_inference",
           "pack_qkv_inference", "apply_activation_", "activation_backward", "causal_bias"]


# ---------------------------------------------------------------- layer normalisation over rows
def standardize_rows(x2, epsilon, rms=False):
    """``(xhat, inv)`` of the rows of ``x2 (n, d)``: ``xhat = (x - mean) * inv`` (``x * inv`` with
    ``rms``), ``inv = 1 / sqrt(var + epsilon)`` ``(n, 1)``, biased variance (as LayerNormalization)."""
    xhat, inv, _, _ = _standardize(x2, (1,), x2.shape[1], epsilon)
    if rms:
        xhat = x2 * inv
    return xhat, inv


def standardize_rows_(z, epsilon):
    """:func:`standardize_rows` in place on ``z`` (``rms=False``): returns ``(z, inv)``.

    The same operations in the same order as ``_standardize``, only without the copy."""
    count = z.shape[1]
    mean = _reduce_sum(z, (1,))
    mean *= 1.0 / count
    z -= mean
    var = _reduce_sum_prod(z, z, (1,))
    var *= 1.0 / count
    inv = 1.0 / np.sqrt(var + epsilon)
    z *= inv
    return z, inv


def standardize_rows_backward(dxhat, x2, xhat, inv, rms=False):
    """Gradient with respect to ``x2`` through :func:`standardize_rows` (``dxhat`` may be overwritten).

    ``dx = inv * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``; with ``rms``
    (``xhat = x * inv``, ``var`` centred): ``dx = inv * (dxhat - (x - mean) * inv * mean(dxhat * xhat))``.
    """
    count = xhat.shape[1]
    if not rms:
        return _standardize_backward(dxhat, xhat, inv, (1,), count)
    m = _reduce_sum_prod(dxhat, xhat, (1,))
    m *= 1.0 / count
    xc = x2 - _reduce_sum(x2, (1,)) * (1.0 / count)
    xc *= inv
    xc *= m
    dx = dxhat - xc
    dx *= inv
    return dx


def fold_layernorm_dense(gamma, beta, kernel, bias):
    """Fold ``y = (xhat * gamma + beta) @ W + b`` into ``xhat @ W' + b'`` (exact in exact arithmetic).

    ``W' = gamma[:, None] * W`` and ``b' = beta @ W + b``; a missing ``gamma`` counts as ones, a
    missing ``beta`` or ``bias`` as zeros (``b'`` is ``None`` when both are missing). New arrays;
    the inputs are never changed.
    """
    folded_kernel = kernel if gamma is None else gamma.reshape(-1, 1) * kernel
    if beta is None:
        folded_bias = None if bias is None else bias.copy()
    else:
        folded_bias = beta.reshape(-1) @ kernel
        if bias is not None:
            folded_bias += bias
    return folded_kernel, folded_bias


def layernorm_output(xhat, gamma, beta):
    """``xhat * gamma + beta`` as LayerNormalization computes it (a new array)."""
    y = xhat * gamma if gamma is not None else xhat.copy()
    if beta is not None:
        y += beta
    return y


def ln_gemm_backward(dz, xhat, inv, x2, kernel, gamma, beta, rms=False):
    """Backward of ``z = LN(x) @ W (+ b)``, ``LN(x) = xhat * gamma + beta``, in the unfused layers'
    operation order (so the gradients are theirs to the last bit): ``LN(x)`` is recomputed from
    ``xhat`` rather than kept alive between forward and backward.

    Returns ``(dkernel, dbias, dgamma, dbeta, dx)``: ``dW = LN(x)^T dz``, ``db = sum(dz)``,
    ``dgamma = sum(dLN * xhat)``, ``dbeta = sum(dLN)`` with ``dLN = dz @ W^T`` (``None`` for a
    missing gamma/beta), and ``dx`` through the standardisation.
    """
    dkernel = layernorm_output(xhat, gamma, beta).T @ dz
    dbias = dz.sum(axis=0)
    dln = dz @ kernel.T
    dgamma = _reduce_sum_prod(dln, xhat, (0,))[0] if gamma is not None else None
    dbeta = _reduce_sum(dln, (0,))[0] if beta is not None else None
    if gamma is not None:
        dln = dln * gamma
    return dkernel, dbias, dgamma, dbeta, standardize_rows_backward(dln, x2, xhat, inv, rms)


# ---------------------------------------------------------------- attention on packed projections
_CAUSAL_CACHE: dict = {}


def causal_bias(t, s, dtype):
    """The keys-first ``(s, t)`` causal bias (0 or ``-inf``), cached per shape and dtype (read only)."""
    key = (t, s, np.dtype(dtype).str)
    bias = _CAUSAL_CACHE.get(key)
    if bias is None:
        if len(_CAUSAL_CACHE) > 32:
            _CAUSAL_CACHE.clear()
        bias = causal_bias_t(t, s, dtype)
        bias.setflags(write=False)
        _CAUSAL_CACHE[key] = bias
    return bias


def _heads(proj, num_heads, key_dim, value_dim):
    """Views ``q (B, h, T, k)``, ``k (B, h, T, k)``, ``v (B, h, T, v)`` of a packed ``(B, T, h*(2k+v))``."""
    batch, steps, _ = proj.shape
    hk = num_heads * key_dim
    q = proj[:, :, :hk].reshape(batch, steps, num_heads, key_dim).transpose(0, 2, 1, 3)
    k = proj[:, :, hk:2 * hk].reshape(batch, steps, num_heads, key_dim).transpose(0, 2, 1, 3)
    v = proj[:, :, 2 * hk:].reshape(batch, steps, num_heads, value_dim).transpose(0, 2, 1, 3)
    return q, k, v


def attention_core(proj, num_heads, key_dim, value_dim, causal=False, mask=None, training=False):
    """Scaled dot-product self-attention of the packed projection ``proj (B, T, h*(2k+v))``
    (columns ``[q | k | v]``, head-major, the query already scaled by ``1/sqrt(k)``).

    Scores are kept keys first, ``(B, h, S, T)`` (as ``MultiHeadAttention``); the softmax runs in
    place: the maximum over the keys is subtracted, ``exp`` overwrites the scores and the sums
    divide them. ``mask (B, h, S, T)`` (inverted dropout, training only) multiplies the
    probabilities. Returns ``(ctx (B*T, h*v), saved)``; at inference the division by the sums
    is applied to the ``(B, h, T, v)`` output instead of the ``(B, h, S, T)`` probabilities, and
    ``saved`` is ``None``.
    """
    batch, steps, _ = proj.shape
    q, k, v = _heads(proj, num_heads, key_dim, value_dim)
    scores = np.matmul(k, np.swapaxes(q, -1, -2))
    if causal:
        scores += causal_bias(steps, steps, scores.dtype)
    scores -= scores.max(axis=-2, keepdims=True)
    np.exp(scores, out=scores)
    sums = scores.sum(axis=-2, keepdims=True)
    ctx = np.empty((batch, steps, num_heads, value_dim), dtype=proj.dtype)
    out = ctx.transpose(0, 2, 1, 3)
    if not training:
        np.matmul(np.swapaxes(scores, -1, -2), v, out=out)
        out /= np.swapaxes(sums, -1, -2)
        return ctx.reshape(batch * steps, -1), None
    scores /= sums
    dropped = scores if mask is None else scores * mask
    np.matmul(np.swapaxes(dropped, -1, -2), v, out=out)
    return ctx.reshape(batch * steps, -1), (q, k, v, scores, dropped, mask)


def attention_core_backward(dctx, saved, num_heads, key_dim, value_dim):
    """Gradient of :func:`attention_core` (training) for ``dctx (B*T, h*v)``: the packed
    ``dproj (B*T, h*(2k+v))``, with ``dq``, ``dk``, ``dv`` written straight into their columns.

    ``dv = D^T dout``, ``dP = (dout v^T) * mask``, ``dS = P * (dP - sum_keys(dP * P))``,
    ``dq = dS k``, ``dk = dS^T q`` (``P`` probabilities, ``D`` after dropout, keys-first layout).
    """
    q, k, v, probs, dropped, mask = saved
    batch, _, steps, _ = q.shape
    dout = dctx.reshape(batch, steps, num_heads, value_dim).transpose(0, 2, 1, 3)
    dproj = np.empty((batch, steps, num_heads * (2 * key_dim + value_dim)), dtype=dctx.dtype)
    dq, dk, dv = _heads(dproj, num_heads, key_dim, value_dim)
    np.matmul(dropped, dout, out=dv)
    dp = np.matmul(v, np.swapaxes(dout, -1, -2))
    if mask is not None:
        dp *= mask
    dp -= np.einsum("...st,...st->...t", dp, probs)[..., None, :]
    dp *= probs
    np.matmul(np.swapaxes(dp, -1, -2), k, out=dq)
    np.matmul(dp, q, out=dk)
    return dproj.reshape(batch * steps, -1)




# ---------------------------------------------------------------- attention at inference
#: at inference the softmax skips subtracting the maximum over the keys when every score of the
#: chunk lies in [-SCORE_BOUND, SCORE_BOUND]: exp then neither overflows (a sum of n terms stays
#: below n * e**60, far from the float32 maximum for any practical n) nor underflows to 0 or to a
#: subnormal, and softmax is the same function with or without the shift
SCORE_BOUND = 60.0


def pack_qkv_inference(kernel, bias, num_heads, key_dim, value_dim):
    """The packed inference kernel ``(d, h*(2k+v+1))`` and bias: :func:`attention_core`'s packing
    with one more column after each value head whose kernel column is 0 and bias 1, so that the
    projection carries a column of ones per head. New arrays (``bias`` ``None`` counts as zeros)."""
    d = kernel.shape[0]
    hk, hv = num_heads * key_dim, num_heads * value_dim
    width = 2 * hk + num_heads * (value_dim + 1)
    packed = np.zeros((d, width), dtype=kernel.dtype)
    packed_bias = np.zeros(width, dtype=kernel.dtype)
    packed[:, :2 * hk] = kernel[:, :2 * hk]
    values = packed[:, 2 * hk:].reshape(d, num_heads, value_dim + 1)
    values[:, :, :value_dim] = kernel[:, 2 * hk:2 * hk + hv].reshape(d, num_heads, value_dim)
    value_bias = packed_bias[2 * hk:].reshape(num_heads, value_dim + 1)
    value_bias[:, value_dim] = 1
    if bias is not None:
        packed_bias[:2 * hk] = bias[:2 * hk]
        value_bias[:, :value_dim] = bias[2 * hk:].reshape(num_heads, value_dim)
    return packed, packed_bias


def attention_inference(proj, num_heads, key_dim, value_dim, causal=False, out=None):
    """Self-attention at inference on ``proj (B, T, h*(2k+v+1))``, the projection by
    :func:`pack_qkv_inference`'s kernel (query scaled, each value head followed by a column of ones).

    ``scores = K Q^T`` per head (keys first, ``(B, h, S, T)``), ``exp`` in place (after subtracting
    the maximum over the keys unless every score is within :data:`SCORE_BOUND`; always with a
    causal mask), then ONE matmul ``P^T [V | 1]`` gives the unnormalised context and, in its last
    column, the sums over the keys; the context is divided by them into ``out (B*T, h*v)``
    (allocated when ``None``), which is returned."""
    batch, steps, _ = proj.shape
    hk = num_heads * key_dim
    q = proj[:, :, :hk].reshape(batch, steps, num_heads, key_dim).transpose(0, 2, 1, 3)
    k = proj[:, :, hk:2 * hk].reshape(batch, steps, num_heads, key_dim).transpose(0, 2, 1, 3)
    v = proj[:, :, 2 * hk:].reshape(batch, steps, num_heads, value_dim + 1).transpose(0, 2, 1, 3)
    scores = np.matmul(k, np.swapaxes(q, -1, -2))
    if causal:
        scores += causal_bias(steps, steps, scores.dtype)
    bound = SCORE_BOUND
    if causal or not (scores.max() <= bound and scores.min() >= -bound):  # (NaN: the shifted path)
        scores -= scores.max(axis=-2, keepdims=True)
    np.exp(scores, out=scores)
    both = np.empty((batch, steps, num_heads, value_dim + 1), dtype=proj.dtype)
    np.matmul(np.swapaxes(scores, -1, -2), v, out=both.transpose(0, 2, 1, 3))
    if out is None:
        out = np.empty((batch * steps, num_heads * value_dim), dtype=proj.dtype)
    np.divide(both[..., :value_dim], both[..., value_dim:], out=out.reshape(batch, steps, num_heads, value_dim))
    return out
