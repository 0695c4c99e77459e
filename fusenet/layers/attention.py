"""Attention layers: MultiHeadAttention (Keras 3 layout) and the TransformerEncoderBlock composite."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from ..utils import check_numeric, check_positive_int, check_rate, make_rng, result_dtype
from ._attention_math import attention_backward, attention_forward, causal_bias_t
from .base import InputSpec, Layer, check_input
from .core import Dense
from .normalization import LayerNormalization
from .regularization import Dropout

__all__ = ["MultiHeadAttention", "TransformerEncoderBlock"]

_ROLES = ("query", "key", "value")


def _split_shapes(input_shape) -> list:
    """One shape, or a list/tuple of 2-3 shapes, as a list of shape tuples."""
    input_shape = tuple(input_shape)
    if input_shape and isinstance(input_shape[0], (tuple, list)):
        return [tuple(s) for s in input_shape]
    return [input_shape]


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention, with Keras 3's arguments and weight layout.

    Call it on one array ``x (batch, T, d)`` for self-attention (query = value = key = x), or on
    a list ``[query, value]`` (key = value) or ``[query, value, key]`` for cross-attention:
    ``query (batch, T, d_q)``, ``value (batch, S, d_v)``, ``key (batch, S, d_k)``. Output
    ``(batch, T, d_out)`` with ``d_out = output_shape`` or, by default, ``d_q``. With a list,
    ``backward`` returns the list of input gradients in the same order.

    Weights, in Keras order (``get_weights()``): query kernel ``(d_q, heads, key_dim)``, query
    bias ``(heads, key_dim)``, key kernel ``(d_k, heads, key_dim)``, key bias, value kernel
    ``(d_v, heads, value_dim)``, value bias ``(heads, value_dim)``, output kernel
    ``(heads, value_dim, d_out)``, output bias ``(d_out,)`` (no biases when ``use_bias=False``).

    Per head ``h``: ``Q_h = (query @ Wq[:, h] + bq[h]) / sqrt(key_dim)``, ``K_h``, ``V_h`` likewise
    (unscaled), ``A_h = softmax(Q_h K_h^T + mask)`` over the keys (stable: the row maximum is
    subtracted), ``O_h = dropout(A_h) V_h``, and ``y = sum_h O_h @ Wo[h] + bo``. Attention dropout
    (on ``A``, inverted, drawn from ``seed``) acts only in training.

    ``use_causal_mask`` is a constructor argument here (Keras passes it at call time, but a fusenet
    layer's ``__call__`` takes only ``x`` and ``training``): query ``i`` attends to keys ``0..i``.
    Inputs must have rank 3 (Keras's ``attention_axes`` is not supported: attention runs over axis 1).

    The projections of inputs that are the same array (self-attention: all three; ``[query, value]``:
    key and value) run as one GEMM on the concatenated kernels; the attention itself is batched
    ``np.matmul`` over ``(batch, heads)``.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 use_causal_mask=False, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 seed=None, **kwargs):
        owner = f"MultiHeadAttention(name={kwargs.get('name')!r})" if kwargs.get("name") else "MultiHeadAttention"
        self.num_heads = check_positive_int(num_heads, "num_heads", owner)
        self.key_dim = check_positive_int(key_dim, "key_dim", owner)
        self.value_dim = self.key_dim if value_dim is None else check_positive_int(value_dim, "value_dim", owner)
        self.dropout = check_rate(dropout, "dropout", owner)
        self.output_shape = None if output_shape is None else check_positive_int(output_shape, "output_shape", owner)
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.use_causal_mask = bool(use_causal_mask)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self._specs = None
        self.input_spec = InputSpec(ndim=3)

    # ------------------------------------------------------------ build
    def _dims_of(self, shapes):
        query = shapes[0]
        value = shapes[1] if len(shapes) > 1 else query
        key = shapes[2] if len(shapes) > 2 else value
        return query[-1], value[-1], key[-1]

    def build(self, input_shape):
        shapes = _split_shapes(input_shape)
        if len(shapes) not in (1, 2, 3):
            raise ValueError(f"{self.describe()}: expected 1 to 3 input shapes. Received: input_shape={input_shape}")
        for i, shape in enumerate(shapes):
            check_input(self, shape, InputSpec(ndim=3), index=i)
        d_q, d_v, d_k = self._dims_of(shapes)
        if None in (d_q, d_v, d_k):
            raise ValueError(f"{self.describe()}: the last axis of every input must be known. Received: input_shape={input_shape}")
        h, k, v = self.num_heads, self.key_dim, self.value_dim
        d_out = self.output_shape or d_q
        shapes_and_roles = [("query", d_q, k), ("key", d_k, k), ("value", d_v, v)]
        for role, d, width in shapes_and_roles:
            self.add_weight(f"{role}_kernel", (d, h, width), self.kernel_initializer, rng=self._rng,
                            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
            if self.use_bias:
                self.add_weight(f"{role}_bias", (h, width), self.bias_initializer, rng=self._rng,
                                regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.add_weight("output_kernel", (h, v, d_out), self.kernel_initializer, rng=self._rng,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("output_bias", (d_out,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self._specs = [InputSpec(ndim=3, axes={-1: d}) for d in (d_q, d_v, d_k)]
        self.input_spec = self._specs[0]

    # ------------------------------------------------------------ inputs
    def _prepare_input(self, x):
        owner = f"Layer '{self.name}' ({type(self).__name__})"
        multi = isinstance(x, (list, tuple))
        if multi and len(x) not in (2, 3):
            raise ValueError(
                f"{self.describe()}: expected one array (self-attention) or a list [query, value] or "
                f"[query, value, key]. Received: a list of {len(x)} inputs"
            )
        xs = [check_numeric(a, owner) for a in (x if multi else [x])]
        for i, a in enumerate(xs):
            check_input(self, a.shape, InputSpec(ndim=3), index=i)
        if not self.built:
            self._build_for([a.shape for a in xs] if multi else xs[0].shape, result_dtype(xs[0], self.dtype))
        if multi:
            for i, a in enumerate(xs):
                check_input(self, a.shape, self._specs[i], index=i)
            query, value = xs[0], xs[1]
            key = xs[2] if len(xs) > 2 else value
            if key.shape[:-1] != value.shape[:-1]:
                raise ValueError(
                    f"{self.describe()}: all dimensions of value and key except the last must be equal. "
                    f"Received: value_shape={value.shape}, key_shape={key.shape}"
                )
            if query.shape[0] != value.shape[0]:
                raise ValueError(
                    f"{self.describe()}: query and value must have the same batch size. "
                    f"Received: query_shape={query.shape}, value_shape={value.shape}"
                )
        else:
            for spec in self._specs:
                check_input(self, xs[0].shape, spec, index=0)
        xs = [a if a.dtype == self.dtype else a.astype(self.dtype) for a in xs]
        return xs if multi else xs[0]

    def _groups(self, n_inputs):
        """Which roles each input feeds: inputs that are one array share one projection GEMM."""
        if n_inputs == 1:
            return [("query", "key", "value")]
        if n_inputs == 2:
            return [("query",), ("key", "value")]
        return [("query",), ("value",), ("key",)]

    def _scalar(self, value):
        """``value`` as a scalar of the layer's dtype (keeps float32 arithmetic in float32)."""
        return np.dtype(self.dtype).type(value)

    def _width(self, role):
        return self.num_heads * (self.value_dim if role == "value" else self.key_dim)

    def _packed(self, roles, scale):
        """Kernel ``(d, sum of widths)`` and bias of ``roles`` side by side; the query part times ``scale``."""
        kernels, biases = [], []
        for role in roles:
            w = self._params[f"{role}_kernel"]
            w = w.reshape(w.shape[0], -1)
            kernels.append(w * scale if role == "query" else w)
            if self.use_bias:
                b = self._params[f"{role}_bias"].reshape(-1)
                biases.append(b * scale if role == "query" else b)
        kernel = kernels[0] if len(kernels) == 1 else np.concatenate(kernels, axis=1)
        bias = None
        if self.use_bias:
            bias = biases[0] if len(biases) == 1 else np.concatenate(biases)
        return kernel, bias

    # ------------------------------------------------------------ forward / backward
    def forward(self, x, training=False):
        multi = isinstance(x, (list, tuple))
        xs = list(x) if multi else [x]
        h = self.num_heads
        scale = self._scalar(1.0 / math.sqrt(self.key_dim))
        groups = self._groups(len(xs))
        heads, packed, flats = {}, [], []
        for xi, roles in zip(xs, groups):
            batch, steps, d = xi.shape
            flat = xi.reshape(-1, d)
            kernel, bias = self._packed(roles, scale)
            proj = flat @ kernel
            if bias is not None:
                proj += bias
            proj = proj.reshape(batch, steps, -1)
            offset = 0
            for role in roles:
                width = self._width(role)
                heads[role] = proj[:, :, offset:offset + width].reshape(batch, steps, h, -1).transpose(0, 2, 1, 3)
                offset += width
            packed.append((kernel, roles))
            flats.append(flat)
        q, k, v = heads["query"], heads["key"], heads["value"]
        batch, _, t, _ = q.shape
        s = k.shape[2]
        bias = causal_bias_t(t, s, self.dtype) if self.use_causal_mask else None
        mask = None
        if training and self.dropout > 0.0:
            keep = 1.0 - self.dropout
            draw = self._rng.random((batch, h, s, t), dtype=np.float64 if self.dtype == "float64" else np.float32)
            mask = (draw < keep).astype(self.dtype)
            mask *= self._scalar(1.0 / keep)
        out, probs, dropped = attention_forward(q, k, v, bias, mask)
        ctx = out.transpose(0, 2, 1, 3).reshape(batch * t, -1)
        w_out = self._params["output_kernel"]
        w_out = w_out.reshape(-1, w_out.shape[-1])
        y = ctx @ w_out
        if self.use_bias:
            y += self._params["output_bias"]
        self._save_for_backward(training, multi, flats, packed, q, k, v, probs, dropped, mask, ctx, scale)
        return y.reshape(batch, t, -1)

    def backward(self, dy):
        multi, flats, packed, q, k, v, probs, dropped, mask, ctx, scale = self._saved()
        batch, h, t, _ = q.shape
        w_out = self._params["output_kernel"]
        d_out = w_out.shape[-1]
        w_out = w_out.reshape(-1, d_out)
        dy2 = np.asarray(dy).reshape(-1, d_out)
        self._grads["output_kernel"] += (ctx.T @ dy2).reshape(self._grads["output_kernel"].shape)
        if self.use_bias:
            self._grads["output_bias"] += dy2.sum(axis=0)
        dout = (dy2 @ w_out.T).reshape(batch, t, h, -1).transpose(0, 2, 1, 3)
        dq, dk, dv = attention_backward(dout, q, k, v, probs, dropped, mask)
        dheads = {"query": dq, "key": dk, "value": dv}
        dxs = []
        for flat, (kernel, roles) in zip(flats, packed):
            steps = dheads[roles[0]].shape[2]
            dproj = np.empty((batch, steps, kernel.shape[1]), dtype=flat.dtype)
            offset = 0
            for role in roles:
                width = self._width(role)
                dproj[:, :, offset:offset + width].reshape(batch, steps, h, -1)[...] = dheads[role].transpose(0, 2, 1, 3)
                offset += width
            dproj = dproj.reshape(-1, kernel.shape[1])
            dkernel = flat.T @ dproj
            dbias = dproj.sum(axis=0) if self.use_bias else None
            offset = 0
            for role in roles:
                width = self._width(role)
                factor = scale if role == "query" else None
                gk = self._grads[f"{role}_kernel"]
                part = dkernel[:, offset:offset + width].reshape(gk.shape)
                gk += part * factor if factor is not None else part
                if self.use_bias:
                    gb = self._grads[f"{role}_bias"]
                    part = dbias[offset:offset + width].reshape(gb.shape)
                    gb += part * factor if factor is not None else part
                offset += width
            dxs.append((dproj @ kernel.T).reshape(batch, steps, -1))
        return dxs if multi else dxs[0]

    # ------------------------------------------------------------ shapes and config
    def compute_output_shape(self, input_shape):
        shapes = _split_shapes(input_shape)
        query = shapes[0]
        return tuple(query[:-1]) + (self.output_shape or query[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.output_shape,
            "use_causal_mask": self.use_causal_mask,
            "kernel_initializer": serialize_initializer(self.kernel_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": _constraints.serialize(self.kernel_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        })
        return config


class TransformerEncoderBlock(Layer):
    """A transformer encoder layer: self-attention and a feed-forward network, each in a residual branch.

    Input and output ``(batch, time, d_model)``. Pre-norm (``norm_first=True``, the default)::

        x = x + Dropout(MHA(LN1(x)))
        y = x + Dropout(Dense_2(Dense_1(LN2(x))))

    post-norm (``norm_first=False``, the original transformer and PyTorch's default)::

        x = LN1(x + Dropout(MHA(x)))
        y = LN2(x + Dropout(Dense_2(Dense_1(x))))

    with ``MHA = MultiHeadAttention(num_heads, key_dim=d_model // num_heads, dropout=dropout)``
    (self-attention; ``dropout`` also drops attention probabilities, as in PyTorch and keras_hub),
    ``Dense_1 = Dense(ff_dim, activation)`` (default exact, erf-based ``"gelu"``), ``Dense_2 =
    Dense(d_model)``, and ``LayerNormalization(epsilon=layer_norm_epsilon)``. The epsilon defaults to
    ``1e-5``, PyTorch's and keras_hub's value (Keras's own LayerNormalization default is ``1e-3``).
    There is no dropout between ``Dense_1`` and ``Dense_2`` (keras_hub; PyTorch has one there).

    A composite of sublayers created at build (in the block's dtype, seeded from ``seed``):
    ``attention``, ``attention_norm``, ``attention_dropout``, ``feedforward_norm``,
    ``feedforward_intermediate``, ``feedforward_output``, ``feedforward_dropout``. Parameters appear
    as ``"attention/query_kernel"``, ``"feedforward_norm/gamma"``, ...; ``get_weights()`` lists
    the attention's 8 arrays, then the two norms' ``[gamma, beta]`` and the two Dense
    ``[kernel, bias]``, which is keras_hub's ``TransformerEncoder`` order.
    """

    def __init__(self, d_model, num_heads, ff_dim, dropout=0.0, norm_first=True, activation="gelu",
                 layer_norm_epsilon=1e-5, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 seed=None, **kwargs):
        owner = f"TransformerEncoderBlock(name={kwargs.get('name')!r})" if kwargs.get("name") else "TransformerEncoderBlock"
        self.d_model = check_positive_int(d_model, "d_model", owner)
        self.num_heads = check_positive_int(num_heads, "num_heads", owner)
        self.ff_dim = check_positive_int(ff_dim, "ff_dim", owner)
        if self.d_model % self.num_heads:
            raise ValueError(
                f"{owner}: expected num_heads to divide d_model (each head gets d_model // num_heads "
                f"channels). Received: d_model={self.d_model}, num_heads={self.num_heads}"
            )
        self.dropout = check_rate(dropout, "dropout", owner)
        if isinstance(layer_norm_epsilon, bool) or not isinstance(layer_norm_epsilon, numbers.Real):
            raise TypeError(f"{owner}: expected layer_norm_epsilon to be a positive number. "
                            f"Received: layer_norm_epsilon={layer_norm_epsilon!r}")
        if not layer_norm_epsilon > 0:
            raise ValueError(f"{owner}: expected layer_norm_epsilon to be a positive number. "
                             f"Received: layer_norm_epsilon={layer_norm_epsilon}")
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        super().__init__(**kwargs)
        self.norm_first = bool(norm_first)
        self.activation = _activations.get(activation)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(ndim=3, axes={-1: self.d_model})

    def build(self, input_shape):
        d, dtype = self.d_model, self.dtype
        inits = {"kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer}

        def seed():
            return int(self._rng.integers(0, 2**63 - 1))

        def add(key, layer, in_dim):
            layer._build_for((None, None, in_dim), dtype)
            self.track_layer(key, layer)

        name = self.name
        add("attention", MultiHeadAttention(self.num_heads, d // self.num_heads, dropout=self.dropout, seed=seed(),
                                            dtype=dtype, name=f"{name}_attention", **inits), d)
        add("attention_norm", LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=dtype,
                                                 name=f"{name}_attention_norm"), d)
        add("attention_dropout", Dropout(self.dropout, seed=seed(), dtype=dtype, name=f"{name}_attention_dropout"), d)
        add("feedforward_norm", LayerNormalization(epsilon=self.layer_norm_epsilon, dtype=dtype,
                                                   name=f"{name}_feedforward_norm"), d)
        add("feedforward_intermediate", Dense(self.ff_dim, activation=self.activation, seed=seed(), dtype=dtype,
                                              name=f"{name}_feedforward_intermediate", **inits), d)
        add("feedforward_output", Dense(d, seed=seed(), dtype=dtype, name=f"{name}_feedforward_output", **inits),
            self.ff_dim)
        add("feedforward_dropout", Dropout(self.dropout, seed=seed(), dtype=dtype,
                                           name=f"{name}_feedforward_dropout"), d)

    def _feedforward(self, x, training):
        s = self._sublayers
        h = s["feedforward_intermediate"].forward(x, training)
        h = s["feedforward_output"].forward(h, training)
        return s["feedforward_dropout"].forward(h, training)

    def _feedforward_backward(self, dy):
        s = self._sublayers
        dh = s["feedforward_dropout"].backward(dy)
        dh = s["feedforward_output"].backward(dh)
        return s["feedforward_intermediate"].backward(dh)

    def _attend(self, x, training):
        s = self._sublayers
        return s["attention_dropout"].forward(s["attention"].forward(x, training), training)

    def _attend_backward(self, dy):
        s = self._sublayers
        return s["attention"].backward(s["attention_dropout"].backward(dy))

    def forward(self, x, training=False):
        s = self._sublayers
        if self.norm_first:
            x = x + self._attend(s["attention_norm"].forward(x, training), training)
            y = x + self._feedforward(s["feedforward_norm"].forward(x, training), training)
        else:
            x = s["attention_norm"].forward(x + self._attend(x, training), training)
            y = s["feedforward_norm"].forward(x + self._feedforward(x, training), training)
        self._save_for_backward(training, True)
        return y

    def backward(self, dy):
        self._saved()
        s = self._sublayers
        dy = np.asarray(dy)
        if self.norm_first:
            dx = dy + s["feedforward_norm"].backward(self._feedforward_backward(dy))
            return dx + s["attention_norm"].backward(self._attend_backward(dx))
        dz = s["feedforward_norm"].backward(dy)
        dx = dz + self._feedforward_backward(dz)
        dz = s["attention_norm"].backward(dx)
        return dz + self._attend_backward(dz)

    def get_config(self):
        config = super().get_config()
        config.update({
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
            "norm_first": self.norm_first,
            "activation": _activations.serialize(self.activation),
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": serialize_initializer(self.kernel_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "seed": self.seed,
        })
        return config
