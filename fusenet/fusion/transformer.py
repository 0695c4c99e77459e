"""Fused layers of the transformer family.

- :class:`FusedLayerNormDense`: ``LayerNormalization -> Dense [-> activation]``, the pre-norm entry
  of attention and feed-forward blocks. The LayerNorm's ``gamma``/``beta`` are folded into the
  kernel and bias (``W' = gamma[:, None] * W``, ``b' = beta @ W + b``), so only the standardisation
  runs before one GEMM; the normalised-and-scaled copy of the input is never materialised.
- :class:`FusedDenseResidualLayerNorm`: the "skip layer norm" ``y = LN(residual + x @ W + b)`` of
  two inputs ``[x, residual]``: the GEMM output receives the bias and the residual in place and is
  standardised in place.
- :class:`FusedMultiHeadAttention`: self-attention with ONE packed QKV GEMM (the three Keras
  kernels concatenated once into ``(d, h*(2k+v))`` with the ``1/sqrt(k)`` scale folded into the
  query part), batched matmuls over the heads, the softmax in place, and a fused backward that
  writes the three projection gradients into one packed buffer.
- :class:`FusedTransformerEncoderBlock`: a whole :class:`~fusenet.layers.TransformerEncoderBlock`
  (pre-norm: LN-folded QKV GEMM, fused attention, residual added in place on the output GEMM,
  LN-folded bias-GELU feed-forward, residual in place; post-norm: the skip layer norm twice).

Training mode runs on the replaced layers' own parameters (the same ``params``/``grads``/
``get_weights()``), draws every dropout mask from the generator of the layer that would have
drawn it, in the same shape, and performs the unfused layers' operations in their order (in place
where the values are the same), so it reproduces the unfused numbers. Only inference folds: it runs
on weights folded once and cached until the sources change (see :class:`~fusenet.fusion.FusedLayer`),
on chunks of whole sequences in turn (the GEMMs on NumPy's BLAS threads). Running the chunks side by
side on Python threads (:mod:`fusenet._parallel`, BLAS at one thread each) was measured slower
on a quiet machine: the GELU and softmax passes are many short NumPy calls, and the GIL changing
hands between two threads at every call cost more than the second core gave.
"""

from __future__ import annotations

import math

import numpy as np

from .._blas import GEMM_DTYPES, gemm
from ..layers.attention import MultiHeadAttention, TransformerEncoderBlock
from ..layers.base import check_input
from ..layers.core import Dense
from ..layers.normalization import LayerNormalization, _reduce_sum, _reduce_sum_prod
from ..utils import check_numeric, result_dtype
from . import _transformer_ops as ops
from .base import FusedLayer
from .dense import activation_of

__all__ = ["FusedLayerNormDense", "FusedDenseResidualLayerNorm", "FusedMultiHeadAttention",
           "FusedTransformerEncoderBlock", "layernorm_condition", "attention_condition"]


#: inference of the attention layers runs on chunks of whole sequences of about this many rows
#: (batch * time), so that the projections, scores and feed-forward activations of a chunk stay in
#: the cache (512 rows: the fastest of 128..2048 on the reference transformer, batch 32 x 64 steps)
INFERENCE_CHUNK_ROWS = 512


# ---------------------------------------------------------------- conditions (shared with the patterns)
def layernorm_condition(norm, position="the LayerNormalization"):
    """Why ``norm`` cannot be fused (or ``None``): it must normalise the last axis only."""
    axis = norm.axis
    if isinstance(axis, list):
        if len(axis) != 1:
            return f"{position} normalises several axes {axis}; only the last (features) axis can be fused"
        axis = axis[0]
    if norm.built:
        ndim = len(norm.build_input_shape)
        if axis % ndim != ndim - 1:
            return f"{position} normalises axis {norm.axis}, not the last (features) axis"
    elif axis != -1:
        return f"{position} normalises axis {norm.axis}, not -1 (the features axis)"
    return None


def attention_condition(mha):
    """Why ``mha`` cannot be fused as self-attention (or ``None``): built on a list of inputs with
    different widths (cross-attention)."""
    shape = mha.build_input_shape
    if mha.built and shape and isinstance(shape[0], (tuple, list)):
        widths = {s[-1] for s in shape}
        if len(widths) > 1:
            return (f"{mha.describe()} was built for cross-attention (query/value/key widths "
                    f"{[s[-1] for s in shape]}); only self-attention (one input) is fused")
    return None


# ---------------------------------------------------------------- shared pieces
def _affine(norm):
    """``(gamma (d,), beta (d,))`` of a LayerNormalization over the last axis (``None`` when absent)."""
    gamma = norm._params["gamma"].reshape(-1) if norm._has_gamma else None
    beta = norm._params["beta"].reshape(-1) if norm._has_beta else None
    return gamma, beta


def _add_norm_grads(norm, dgamma, dbeta):
    if dgamma is not None:
        norm._grads["gamma"] += dgamma.reshape(norm._grads["gamma"].shape)
    if dbeta is not None:
        norm._grads["beta"] += dbeta.reshape(norm._grads["beta"].shape)


def _add_dense_grads(dense, dkernel, dbias):
    dense._grads["kernel"] += dkernel
    if dense.use_bias:
        dense._grads["bias"] += dbias


def _dense_params(dense):
    return dense._params["kernel"], dense._params.get("bias") if dense.use_bias else None


def _gemm(x2, kernel, bias):
    z = x2 @ kernel
    if bias is not None:
        z += bias
    return z


def _accumulate(a, kernel, residual, bias, out=None):
    """``residual + bias + a @ kernel`` (``out`` or a new array): the residual and the bias written
    first, the GEMM accumulated onto them in place (BLAS ``beta = 1``) where the dtype allows."""
    out = np.empty(residual.shape, dtype=residual.dtype) if out is None else out
    if bias is None:
        np.copyto(out, residual)
    else:
        np.add(residual, bias, out=out)
    if out.dtype in GEMM_DTYPES and a.dtype == out.dtype and kernel.dtype == out.dtype:
        gemm(a, kernel, out, beta=1.0)
    else:
        out += a @ kernel
    return out


def _pack_qkv(mha):
    """``(kernel (d, h*(2k+v)), bias or None)``: query, key, value kernels side by side (query times
    ``1/sqrt(key_dim)``, as MultiHeadAttention scales it), and the scale."""
    scale = np.dtype(mha.dtype).type(1.0 / math.sqrt(mha.key_dim))
    p = mha._params
    d = p["query_kernel"].shape[0]
    kernel = np.concatenate([p["query_kernel"].reshape(d, -1) * scale, p["key_kernel"].reshape(d, -1),
                             p["value_kernel"].reshape(d, -1)], axis=1)
    bias = None
    if mha.use_bias:
        bias = np.concatenate([p["query_bias"].reshape(-1) * scale, p["key_bias"].reshape(-1),
                               p["value_bias"].reshape(-1)])
    return kernel, bias, scale


def _output_params(mha):
    w = mha._params["output_kernel"]
    return w.reshape(-1, w.shape[-1]), mha._params["output_bias"] if mha.use_bias else None


def _add_qkv_grads(mha, dkernel, dbias, scale):
    """Split the packed kernel/bias gradients into the query/key/value gradients (query times ``scale``)."""
    hk = mha.num_heads * mha.key_dim
    slices = {"query": slice(0, hk), "key": slice(hk, 2 * hk), "value": slice(2 * hk, None)}
    for role, cols in slices.items():
        g = mha._grads[f"{role}_kernel"]
        part = dkernel[:, cols].reshape(g.shape)
        g += part * scale if role == "query" else part
        if mha.use_bias:
            gb = mha._grads[f"{role}_bias"]
            part = dbias[cols].reshape(gb.shape)
            gb += part * scale if role == "query" else part


def _attention_mask(mha, batch, steps, training):
    """The attention-dropout mask ``(B, h, S, T)`` drawn exactly as MultiHeadAttention draws it."""
    if not training or mha.dropout <= 0.0:
        return None
    keep = 1.0 - mha.dropout
    dtype = np.dtype(mha.dtype)
    draw_dtype = np.float64 if dtype == np.float64 else np.float32
    draw = mha._rng.random((batch, mha.num_heads, steps, steps), dtype=draw_dtype)
    mask = (draw < keep).astype(dtype)
    mask *= dtype.type(1.0 / keep)
    return mask


def _dropout_mask(dropout, shape, dtype, training):
    if not training or dropout.rate <= 0.0:
        return None
    return dropout.draw_mask(shape, dtype)


def _standardize(z, norm, in_place):
    """``(xhat, inv)`` of the rows of ``z`` for ``norm``; in place on ``z`` when allowed (not rms)."""
    if in_place and not norm.rms_scaling:
        return ops.standardize_rows_(z, norm.epsilon)
    return ops.standardize_rows(z, norm.epsilon, norm.rms_scaling)


def _skip_ln_forward(x2, kernel, bias, residual2, mask, norm, training, out=None):
    """``LN(residual + mask * (x @ W + b))`` on rows; the sum is standardised in place (not for rms).
    At inference with ``out`` (C-contiguous rows), the GEMM writes there and the result stays there.

    Returns ``(y, saved)``; ``saved`` (training) holds what :func:`_skip_ln_backward` needs."""
    if out is None or training or norm.rms_scaling:
        z = _gemm(x2, kernel, bias)
    else:
        z = np.matmul(x2, kernel, out=out)
        if bias is not None:
            z += bias
    if mask is not None:
        z *= mask
    z += residual2
    gamma, beta = _affine(norm)
    pre = z if norm.rms_scaling else None
    xhat, inv = _standardize(z, norm, in_place=True)
    if training:
        y = xhat * gamma if gamma is not None else xhat.copy()
    else:
        y = xhat
        if gamma is not None:
            y *= gamma
    if beta is not None:
        y += beta
    return y, ((pre, xhat, inv, mask) if training else None)


def _skip_ln_backward(dy2, saved, norm):
    """Adds the LN gradients; returns ``(dz, ds)``: the gradient of the GEMM output (after the
    dropout mask) and of the residual."""
    pre, xhat, inv, mask = saved
    gamma, beta = _affine(norm)
    dgamma = _reduce_sum_prod(dy2, xhat, (0,))[0] if gamma is not None else None
    dbeta = _reduce_sum(dy2, (0,))[0] if beta is not None else None
    _add_norm_grads(norm, dgamma, dbeta)
    dxhat = dy2 * gamma if gamma is not None else dy2
    ds = ops.standardize_rows_backward(dxhat, pre, xhat, inv, norm.rms_scaling)
    dz = ds * mask if mask is not None else ds
    return dz, ds


def _check_layernorm(owner, norm):
    reason = layernorm_condition(norm)
    if reason:
        raise ValueError(f"{owner}: cannot fuse this LayerNormalization: {reason}. Received: axis={norm.axis!r}")


# ---------------------------------------------------------------- LayerNormalization -> Dense
class FusedLayerNormDense(FusedLayer):
    """Pattern ``LayerNormalization -> Dense [-> activation]`` (the LN over the last axis; ``center``,
    ``scale`` and ``rms_scaling`` as the source LN; any Dense activation and/or a trailing element-wise
    activation layer).

    Input ``(..., d)``, output ``(..., units)``. With ``xhat = (x - mean) / sqrt(var + eps)`` per row
    (``x / sqrt(var + eps)`` with ``rms_scaling``)::

        y = act((xhat * gamma + beta) @ W + b) = act(xhat @ W' + b'),  W' = gamma[:, None] * W,  b' = beta @ W + b

    Inference: ``W'``/``b'`` folded once (exact), then one GEMM on ``xhat`` with the bias and the
    activation applied in place where exact (ReLU): the scaled-and-shifted copy of the input is never
    formed. Training: the unfused operations on the current parameters (the LN output feeds the GEMM
    and is dropped; the backward recomputes it for ``dW = LN(x)^T dz`` instead of keeping it alive),
    ``dgamma = sum(dz W^T * xhat)``, ``dbeta = sum(dz W^T)``, through the standardisation to ``dx``.
    Weights: the LN's ``[gamma, beta]`` then the Dense's ``[kernel, bias]``.
    """

    pattern = "LayerNormalization -> Dense [-> activation]"

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        src = self.source_layers
        owner = type(self).__name__
        if len(src) not in (2, 3) or not isinstance(src[0], LayerNormalization) or not isinstance(src[1], Dense):
            raise TypeError(f"{owner}: expected [LayerNormalization, Dense] or [LayerNormalization, Dense, "
                            f"activation]. Received: {[type(layer).__name__ for layer in src]}")
        if len(src) == 3 and activation_of(src[2]) is None:
            raise TypeError(f"{owner}: the third layer must be an element-wise activation layer. "
                            f"Received: {type(src[2]).__name__}")
        _check_layernorm(owner, src[0])
        self.norm, self.dense = src[0], src[1]
        fns = [self.dense.activation] + ([activation_of(src[2])] if len(src) == 3 else [])
        self.activations = [fn for fn in fns if fn.name != "linear"]

    def _fold(self):
        gamma, beta = _affine(self.norm)
        kernel, bias = _dense_params(self.dense)
        return ops.fold_layernorm_dense(gamma, beta, kernel, bias)

    def forward(self, x, training=False):
        x2 = x.reshape(-1, x.shape[-1])
        xhat, inv = ops.standardize_rows(x2, self.norm.epsilon, self.norm.rms_scaling)
        if training:  # the unfused order of operations: LN(x) is formed (and dropped after the GEMM)
            z = _gemm(ops.layernorm_output(xhat, *_affine(self.norm)), *_dense_params(self.dense))
        else:
            z = _gemm(xhat, *self.folded())
        stages = []
        for fn in self.activations:
            post = ops.apply_activation_(fn, z, keep_input=training)
            stages.append((fn, z, post))
            z = post
        self._save_for_backward(training, x2, xhat, inv, stages)
        return z.reshape(x.shape[:-1] + (z.shape[-1],))

    def backward(self, dy):
        x2, xhat, inv, stages = self._saved()
        g = np.array(dy, dtype=xhat.dtype, copy=True).reshape(-1, self.dense.units)
        for fn, pre, post in reversed(stages):
            g = ops.activation_backward(fn, pre, post, g)
        gamma, beta = _affine(self.norm)
        kernel = self.dense._params["kernel"]
        dkernel, dbias, dgamma, dbeta, dx = ops.ln_gemm_backward(g, xhat, inv, x2, kernel, gamma, beta,
                                                                 self.norm.rms_scaling)
        _add_dense_grads(self.dense, dkernel, dbias)
        _add_norm_grads(self.norm, dgamma, dbeta)
        return dx.reshape(np.shape(dy)[:-1] + (x2.shape[-1],))


# ---------------------------------------------------------------- the skip layer norm
class FusedDenseResidualLayerNorm(FusedLayer):
    """Pattern ``[x, residual] -> LayerNormalization(residual + Dense(x))``: the transformer's "skip
    layer norm" (Dense without activation, LN over the last axis).

    Inputs ``[x (..., d_in), residual (..., units)]``, output ``(..., units)``::

        s = residual + x @ W + b,   y = gamma * (s - mean(s)) / sqrt(var(s) + eps) + beta

    One GEMM into a fresh array that receives the bias and the residual in place and is
    standardised in place (inference: scaled and shifted in place too, so the output is the GEMM's
    own buffer). ``backward(dy)`` returns ``[dx, dresidual]``. The fused encoder block uses the same
    kernel for its post-norm residual branches. Weights: the Dense's ``[kernel, bias]`` then the
    LN's ``[gamma, beta]``.
    """

    pattern = "[x, residual] -> Dense(x) + residual -> LayerNormalization"

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        src = self.source_layers
        owner = type(self).__name__
        if len(src) != 2 or not isinstance(src[0], Dense) or not isinstance(src[1], LayerNormalization):
            raise TypeError(f"{owner}: expected [Dense, LayerNormalization]. "
                            f"Received: {[type(layer).__name__ for layer in src]}")
        if src[0].activation.name != "linear":
            raise ValueError(f"{owner}: the Dense layer must have no activation (the residual is added to its "
                             f"linear output). Received: activation={src[0].activation.name!r}")
        _check_layernorm(owner, src[1])
        self.dense, self.norm = src
        if self.built:
            self.build_input_shape = [self.dense.build_input_shape, self.norm.build_input_shape]

    def _split(self, input_shape, what="input_shape"):
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else None
        if not shapes or len(shapes) != 2 or not all(isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(f"{self.describe()}: expected two inputs [x, residual]. Received: {what}={input_shape!r}")
        return tuple(shapes[0]), tuple(shapes[1])

    def build(self, input_shape):
        x_shape, _ = self._split(input_shape)
        self.dense._build_for(x_shape, self.dtype)
        self.norm._build_for(self.dense.compute_output_shape(x_shape), self.dtype)

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split(input_shape)
        return self.dense.compute_output_shape(x_shape)

    def _prepare_input(self, x):
        if not isinstance(x, (list, tuple)) or len(x) != 2:
            got = f"a list of {len(x)} inputs" if isinstance(x, (list, tuple)) else f"an array of shape {np.shape(x)}"
            raise ValueError(f"{self.describe()}: expected two inputs [x, residual]. Received: {got}")
        owner = f"Layer '{self.name}' ({type(self).__name__})"
        a, r = (check_numeric(v, owner) for v in x)
        if not self.built:
            self._build_for([a.shape, r.shape], result_dtype(a, self.dtype))
        check_input(self, a.shape, self.dense.input_spec, index=0)
        expected = tuple(a.shape[:-1]) + (self.dense.units,)
        if tuple(r.shape) != expected:
            raise ValueError(f"Input 1 of {self.describe()} is incompatible with the layer: expected the residual "
                             f"to have shape {expected} (x's leading axes, then units), but received input with "
                             f"shape {r.shape}")
        return [v if v.dtype == self.dtype else v.astype(self.dtype) for v in (a, r)]

    def forward(self, x, training=False):
        a, r = x
        a2 = a.reshape(-1, a.shape[-1])
        kernel, bias = _dense_params(self.dense)
        y, saved = _skip_ln_forward(a2, kernel, bias, r.reshape(-1, r.shape[-1]), None, self.norm, training)
        self._save_for_backward(training, a2, saved)
        return y.reshape(r.shape)

    def backward(self, dy):
        a2, saved = self._saved()
        shape = np.shape(dy)
        dz, ds = _skip_ln_backward(np.asarray(dy).reshape(-1, shape[-1]), saved, self.norm)
        _add_dense_grads(self.dense, a2.T @ dz, dz.sum(axis=0))
        dx = dz @ self.dense._params["kernel"].T
        return [dx.reshape(shape[:-1] + (a2.shape[-1],)), ds.reshape(shape)]


# ---------------------------------------------------------------- multi-head attention
class FusedMultiHeadAttention(FusedLayer):
    """Pattern ``MultiHeadAttention`` used as self-attention (one input ``(batch, T, d)``), any
    ``num_heads``/``key_dim``/``value_dim``/``output_shape``, bias on or off, causal mask, dropout.

    Inference: ONE GEMM ``x @ [Wq/sqrt(k) | Wk | Wv_1 0 | ... | Wv_h 0] + [bq/sqrt(k) | bk | bv_1 1 | ...]``
    (kernel packed once, ``(d, h*(2k+v+1))``, cached: each value head carries a column of ones), the
    scores ``K Q^T`` per ``(batch, head)`` as one batched matmul (keys first, as the source layer),
    ``exp`` in place (the maximum over the keys subtracted first only when a score of the chunk
    leaves ``[-60, 60]``), ONE batched matmul ``P^T [V | 1]`` giving the context and the softmax
    sums together, the division on the ``(B, T, h, v)`` context, and the output GEMM, on chunks of
    whole sequences of about ``INFERENCE_CHUNK_ROWS`` rows (the scores stay in the cache). Training: the
    same parameters, dropout masks drawn from the source layer's generator as it draws them, and a
    backward that writes ``dq``/``dk``/``dv`` into one packed buffer for one weight GEMM and one
    input GEMM.
    Weights: the MultiHeadAttention's, in Keras order. Cross-attention (a list input) is not fused.
    """

    pattern = "MultiHeadAttention (self-attention)"
    #: inference runs on chunks of whole sequences of about this many rows (batch * time)
    INFERENCE_CHUNK_ROWS = INFERENCE_CHUNK_ROWS

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        src = self.source_layers
        owner = type(self).__name__
        if len(src) != 1 or not isinstance(src[0], MultiHeadAttention):
            raise TypeError(f"{owner}: expected [MultiHeadAttention]. "
                            f"Received: {[type(layer).__name__ for layer in src]}")
        reason = attention_condition(src[0])
        if reason:
            raise ValueError(f"{owner}: {reason}. Received: input_shape={src[0].build_input_shape}")
        self.mha = src[0]

    def _prepare_input(self, x):
        if isinstance(x, (list, tuple)):
            raise ValueError(f"{self.describe()}: runs self-attention on one input (batch, T, d); use "
                             f"MultiHeadAttention for cross-attention. Received: a list of {len(x)} inputs")
        return super()._prepare_input(x)

    def _fold(self):
        mha = self.mha
        kernel, bias, _ = _pack_qkv(mha)
        kernel, bias = ops.pack_qkv_inference(kernel, bias, mha.num_heads, mha.key_dim, mha.value_dim)
        return kernel, bias, *_output_params(mha)

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        mha = self.mha
        batch, steps, d = x.shape
        x2 = x.reshape(-1, d)
        kernel, bias, scale = _pack_qkv(mha)
        w_out, b_out = _output_params(mha)
        proj = _gemm(x2, kernel, bias).reshape(batch, steps, -1)
        mask = _attention_mask(mha, batch, steps, training=True)
        ctx, saved = ops.attention_core(proj, mha.num_heads, mha.key_dim, mha.value_dim, mha.use_causal_mask,
                                        mask, training=True)
        y = _gemm(ctx, w_out, b_out)
        self._save_for_backward(True, x2, kernel, scale, ctx, saved)
        return y.reshape(batch, steps, -1)

    def _inference(self, x):
        """Chunks of whole sequences (about ``INFERENCE_CHUNK_ROWS`` rows): packed QKV GEMM, attention,
        output GEMM written into the chunk's rows of the output."""
        mha = self.mha
        kernel, bias, w_out, b_out = self.folded()
        batch, steps, d = x.shape
        x2 = x.reshape(-1, d)
        y = np.empty((batch * steps, w_out.shape[1]), dtype=x.dtype)
        per_chunk = max(1, self.INFERENCE_CHUNK_ROWS // max(steps, 1))

        def chunk(i):
            first = i * per_chunk
            n = min(per_chunk, batch - first)
            rows = slice(first * steps, (first + n) * steps)
            proj = _gemm(x2[rows], kernel, bias).reshape(n, steps, -1)
            ctx = ops.attention_inference(proj, mha.num_heads, mha.key_dim, mha.value_dim, mha.use_causal_mask)
            out = np.matmul(ctx, w_out, out=y[rows])
            if b_out is not None:
                out += b_out

        for i in range(-(-batch // per_chunk)):
            chunk(i)
        return y.reshape(batch, steps, -1)

    def backward(self, dy):
        x2, kernel, scale, ctx, saved = self._saved()
        mha = self.mha
        shape = np.shape(dy)
        dy2 = np.asarray(dy).reshape(-1, shape[-1])
        w_out, _ = _output_params(mha)
        mha._grads["output_kernel"] += (ctx.T @ dy2).reshape(mha._grads["output_kernel"].shape)
        if mha.use_bias:
            mha._grads["output_bias"] += dy2.sum(axis=0)
        dproj = ops.attention_core_backward(dy2 @ w_out.T, saved, mha.num_heads, mha.key_dim, mha.value_dim)
        _add_qkv_grads(mha, x2.T @ dproj, dproj.sum(axis=0) if mha.use_bias else None, scale)
        return (dproj @ kernel.T).reshape(shape[:-1] + (x2.shape[-1],))


# ---------------------------------------------------------------- the encoder block
class FusedTransformerEncoderBlock(FusedLayer):
    """Pattern ``TransformerEncoderBlock`` (one composite layer), pre-norm or post-norm, fused whole.

    Pre-norm (``norm_first=True``)::

        x1 = x + Dropout(MHA(LN1(x)))       LN1 folded into the packed QKV GEMM (FusedLayerNormDense style)
        y  = x1 + Dropout(FFN(LN2(x1)))     LN2 folded into the first FFN GEMM, bias + activation in place

    Post-norm (``norm_first=False``): ``x1 = LN1(x + Dropout(MHA(x)))`` and
    ``y = LN2(x1 + Dropout(FFN(x1)))``, each a skip layer norm (:class:`FusedDenseResidualLayerNorm`'s
    kernel, with the output projection resp. the second FFN GEMM).

    Inference: 5 GEMMs and the attention core (as :class:`FusedMultiHeadAttention`'s) per chunk of
    whole sequences (about ``INFERENCE_CHUNK_ROWS`` rows, so the intermediates stay in the cache);
    biases and the activation in place on the
    GEMM outputs (float32 exact GELU without temporaries, bitwise the activation's values), and in
    the pre-norm block the residual plus bias written first and the output/second FFN GEMMs
    accumulated onto it (BLAS ``beta = 1``); Dropout gone. Training: the block's own parameters (``get_weights()`` in
    the block's order), every dropout mask drawn from the sublayer generator that would draw it,
    the unfused operations in their order (so the same numbers), and one hand-written backward
    through the whole block.
    """

    pattern = "TransformerEncoderBlock"
    #: inference runs on chunks of whole sequences of about this many rows (batch * time)
    INFERENCE_CHUNK_ROWS = INFERENCE_CHUNK_ROWS

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        src = self.source_layers
        if len(src) != 1 or not isinstance(src[0], TransformerEncoderBlock):
            raise TypeError(f"{type(self).__name__}: expected [TransformerEncoderBlock]. "
                            f"Received: {[type(layer).__name__ for layer in src]}")
        self.block = src[0]

    def _parts(self):
        s = self.block._sublayers
        return (s["attention"], s["attention_norm"], s["attention_dropout"], s["feedforward_norm"],
                s["feedforward_intermediate"], s["feedforward_output"], s["feedforward_dropout"])

    def _fold(self):
        mha, norm1, _, norm2, dense1, dense2, _ = self._parts()
        kernel, bias, _ = _pack_qkv(mha)
        w1, b1 = _dense_params(dense1)
        kernel, bias = ops.pack_qkv_inference(kernel, bias, mha.num_heads, mha.key_dim, mha.value_dim)
        if self.block.norm_first:
            kernel, bias = ops.fold_layernorm_dense(*_affine(norm1), kernel, bias)
            w1, b1 = ops.fold_layernorm_dense(*_affine(norm2), w1, b1)
        return kernel, bias, *_output_params(mha), w1, b1, *_dense_params(dense2)

    @staticmethod
    def _attention(mha, proj_in, kernel, bias, batch, steps, mask=None, training=False):
        proj = _gemm(proj_in, kernel, bias).reshape(batch, steps, -1)
        return ops.attention_core(proj, mha.num_heads, mha.key_dim, mha.value_dim, mha.use_causal_mask, mask, training)

    @staticmethod
    def _attention_inference(mha, proj_in, kernel, bias, batch, steps):
        proj = _gemm(proj_in, kernel, bias).reshape(batch, steps, -1)
        return ops.attention_inference(proj, mha.num_heads, mha.key_dim, mha.value_dim, mha.use_causal_mask)

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        mha, norm1, drop1, norm2, dense1, dense2, drop2 = self._parts()
        batch, steps, d = x.shape
        x2 = x.reshape(-1, d)
        kernel, bias, scale = _pack_qkv(mha)
        w_out, b_out = _output_params(mha)
        w1, b1 = _dense_params(dense1)
        w2, b2 = _dense_params(dense2)
        fn = dense1.activation
        attention_mask = _attention_mask(mha, batch, steps, training=True)
        mask1 = _dropout_mask(drop1, x.shape, x.dtype, training=True)
        mask1 = None if mask1 is None else mask1.reshape(x2.shape)
        if self.block.norm_first:
            xhat1, inv1 = ops.standardize_rows(x2, norm1.epsilon, norm1.rms_scaling)
            ln1 = ops.layernorm_output(xhat1, *_affine(norm1))  # as the unfused block forms LN1(x)
            ctx, att = self._attention(mha, ln1, kernel, bias, batch, steps, attention_mask, training=True)
            del ln1
            x1 = _gemm(ctx, w_out, b_out)
            if mask1 is not None:
                x1 *= mask1
            x1 += x2
            xhat2, inv2 = ops.standardize_rows(x1, norm2.epsilon, norm2.rms_scaling)
            pre = _gemm(ops.layernorm_output(xhat2, *_affine(norm2)), w1, b1)
            post = ops.apply_activation_(fn, pre, keep_input=True)
            y = _gemm(post, w2, b2)
            mask2 = _dropout_mask(drop2, x.shape, x.dtype, training=True)
            if mask2 is not None:
                y *= mask2.reshape(y.shape)
            y += x1
            cache = (x2, kernel, scale, ctx, att, mask1, xhat1, inv1, x1, xhat2, inv2, pre, post, mask2)
        else:
            ctx, att = self._attention(mha, x2, kernel, bias, batch, steps, attention_mask, training=True)
            x1, skip1 = _skip_ln_forward(ctx, w_out, b_out, x2, mask1, norm1, training=True)
            pre = _gemm(x1, w1, b1)
            post = ops.apply_activation_(fn, pre, keep_input=True)
            mask2 = _dropout_mask(drop2, x.shape, x.dtype, training=True)
            y, skip2 = _skip_ln_forward(post, w2, b2, x1, None if mask2 is None else mask2.reshape(x2.shape),
                                        norm2, training=True)
            cache = (x2, kernel, scale, ctx, att, skip1, x1, pre, post, skip2)
        self._save_for_backward(True, *cache)
        return y.reshape(x.shape)

    def _inference(self, x):
        """The whole block on chunks of whole sequences (about :data:`INFERENCE_CHUNK_ROWS` rows each),
        so that every intermediate array of a chunk stays in the cache; each chunk is written into
        its rows of the output."""
        mha, norm1, _, norm2, dense1, _, _ = self._parts()
        kernel, bias, w_out, b_out, w1, b1, w2, b2 = self.folded()
        fn = dense1.activation
        batch, steps, d = x.shape
        x2 = x.reshape(-1, d)
        y = np.empty((batch * steps, w2.shape[1]), dtype=x.dtype)
        per_chunk = max(1, self.INFERENCE_CHUNK_ROWS // max(steps, 1))
        norm_first = self.block.norm_first

        def chunk(i):
            first = i * per_chunk
            n = min(per_chunk, batch - first)
            rows = slice(first * steps, (first + n) * steps)
            xc, out = x2[rows], y[rows]
            if norm_first:
                # LN1, LN2 folded into the QKV and first FFN kernels; the residuals and biases go in
                # first and the projection GEMMs accumulate onto them
                xhat1, _ = ops.standardize_rows(xc, norm1.epsilon, norm1.rms_scaling)
                ctx = self._attention_inference(mha, xhat1, kernel, bias, n, steps)
                x1 = _accumulate(ctx, w_out, xc, b_out)
                xhat2, _ = ops.standardize_rows(x1, norm2.epsilon, norm2.rms_scaling)
                hidden = ops.apply_activation_(fn, _gemm(xhat2, w1, b1))
                _accumulate(hidden, w2, x1, b2, out=out)
            else:
                ctx = self._attention_inference(mha, xc, kernel, bias, n, steps)
                x1, _ = _skip_ln_forward(ctx, w_out, b_out, xc, None, norm1, training=False)
                hidden = ops.apply_activation_(fn, _gemm(x1, w1, b1))
                y_chunk, _ = _skip_ln_forward(hidden, w2, b2, x1, None, norm2, training=False, out=out)
                if y_chunk is not out:  # rms_scaling: standardised out of place
                    out[...] = y_chunk

        for i in range(-(-batch // per_chunk)):
            chunk(i)
        return y.reshape(batch, steps, -1)

    def backward(self, dy):
        cache = self._saved()
        shape = np.shape(dy)
        dy2 = np.asarray(dy).reshape(-1, shape[-1])
        if self.block.norm_first:
            dx = self._backward_pre_norm(dy2, *cache)
        else:
            dx = self._backward_post_norm(dy2, *cache)
        return dx.reshape(shape)

    def _attention_backward(self, mha, dz, ctx, att):
        """Output projection and attention core backward: the packed ``dproj``."""
        w_out, _ = _output_params(mha)
        mha._grads["output_kernel"] += (ctx.T @ dz).reshape(mha._grads["output_kernel"].shape)
        if mha.use_bias:
            mha._grads["output_bias"] += dz.sum(axis=0)
        return ops.attention_core_backward(dz @ w_out.T, att, mha.num_heads, mha.key_dim, mha.value_dim)

    def _ffn_output_backward(self, dense2, dz, post):
        _add_dense_grads(dense2, post.T @ dz, dz.sum(axis=0))
        return dz @ dense2._params["kernel"].T

    def _backward_pre_norm(self, dy2, x2, kernel, scale, ctx, att, mask1, xhat1, inv1, x1, xhat2, inv2, pre, post,
                           mask2):
        mha, norm1, _, norm2, dense1, dense2, _ = self._parts()
        dz = dy2 * mask2.reshape(dy2.shape) if mask2 is not None else dy2
        dh = self._ffn_output_backward(dense2, dz, post)
        dpre = ops.activation_backward(dense1.activation, pre, post, dh)
        gamma2, beta2 = _affine(norm2)
        dw1, db1, dgamma2, dbeta2, dx1 = ops.ln_gemm_backward(dpre, xhat2, inv2, x1, dense1._params["kernel"],
                                                              gamma2, beta2, norm2.rms_scaling)
        _add_dense_grads(dense1, dw1, db1)
        _add_norm_grads(norm2, dgamma2, dbeta2)
        dx1 += dy2
        da = dx1 * mask1 if mask1 is not None else dx1
        dproj = self._attention_backward(mha, da, ctx, att)
        gamma1, beta1 = _affine(norm1)
        dkernel, dbias, dgamma1, dbeta1, dx = ops.ln_gemm_backward(dproj, xhat1, inv1, x2, kernel, gamma1, beta1,
                                                                   norm1.rms_scaling)
        _add_qkv_grads(mha, dkernel, dbias, scale)
        _add_norm_grads(norm1, dgamma1, dbeta1)
        dx += dx1
        return dx

    def _backward_post_norm(self, dy2, x2, kernel, scale, ctx, att, skip1, x1, pre, post, skip2):
        mha, norm1, _, norm2, dense1, dense2, _ = self._parts()
        dz2, dres2 = _skip_ln_backward(dy2, skip2, norm2)
        dh = self._ffn_output_backward(dense2, dz2, post)
        dpre = ops.activation_backward(dense1.activation, pre, post, dh)
        _add_dense_grads(dense1, x1.T @ dpre, dpre.sum(axis=0))
        dx1 = dpre @ dense1._params["kernel"].T
        dx1 += dres2
        dz1, dres1 = _skip_ln_backward(dx1, skip1, norm1)
        dproj = self._attention_backward(mha, dz1, ctx, att)
        _add_qkv_grads(mha, x2.T @ dproj, dproj.sum(axis=0) if mha.use_bias else None, scale)
        dx = dproj @ kernel.T
        dx += dres1
        return dx
