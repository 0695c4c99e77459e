"""ONNX emitters of the feed-forward layers: core, convolution, pooling, normalization, reshaping,
resizing, preprocessing, activation layers and the composites (Residual, TimeDistributed).

Each emitter is ``emit(ctx, layer, v) -> Value``: ``v`` is the layer's input (any storage layout,
see :mod:`fusenet.onnx._graph`), the result its output. Weights come from ``ctx.weights(layer)``,
which holds BatchNormalization-folded arrays when the exporter folded a BN into the layer.
Convolutions, window pooling and BatchNormalization on images work channels-first (the layout ONNX
defines them in); the Keras kernel layouts are transposed once, at export:

- ConvND ``(k..., in // groups, out)`` -> Conv ``W (out, in // groups, k...)``;
- DepthwiseConv2D ``(kh, kw, in, m)`` -> Conv ``W (in * m, 1, kh, kw)``, ``group = in``;
- ConvNDTranspose ``(k..., out, in)`` -> ConvTranspose ``W (in, out, k...)``;
- Keras ``"same"``/``"causal"`` padding -> explicit ``pads`` (``auto_pad="SAME_UPPER"``, the same
  rule, only when a strided axis has an unknown size).
"""

from __future__ import annotations

import numpy as np

from ..layers import activation as act_layers
from ..layers import composite, convolution, core, embedding, normalization, pooling, preprocessing, reshaping, resizing
from ..layers._conv_ops import conv_padding, conv_transpose_size
from ..layers.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from ._graph import INT64_MAX, Value

__all__ = ["EMITTERS"]


def _out(ctx, layer, name, v, layout=None, shape=None):
    shape = tuple(layer.compute_output_shape(v.shape)) if shape is None else shape
    return Value(name, shape, ctx.g.dtype, layout or v.layout)


# ---------------------------------------------------------------- core
def _dense(ctx, layer, v):
    g = ctx.g
    w = ctx.weights(layer)
    kernel, bias = ctx.array(w["kernel"]), w.get("bias")
    if v.flat_perm is not None:  # the input columns are in channels-first flatten order: permute the rows
        permuted = np.empty_like(kernel)
        permuted[v.flat_perm] = kernel
        kernel, x = permuted, v
    else:
        x = g.native(v)
    k = g.const(kernel, "kernel")
    if x.rank == 2:
        inputs = [x.name, k] + ([g.const(ctx.array(bias), "bias")] if bias is not None else [])
        y = g.op("Gemm", inputs)
    else:
        y = g.op("MatMul", [x.name, k])
        if bias is not None:
            y = g.op("Add", [y, g.const(ctx.array(bias), "bias")])
    return ctx.activate(layer, layer.activation, _out(ctx, layer, y, v, layout="native"))


# ---------------------------------------------------------------- convolutions
def _pads(g, v, kernel, strides, dilations, padding):
    """ONNX padding attributes for Keras ``padding`` on the spatial axes of ``v``."""
    before, after = [], []
    for n, k, s, d in zip(v.shape[1:-1], kernel, strides, dilations):
        eff = (k - 1) * d + 1
        if padding == "valid":
            b, e = 0, 0
        elif padding == "causal":
            b, e = eff - 1, 0
        elif n is None:
            if s != 1:
                return {"auto_pad": "SAME_UPPER"}
            b, e = (eff - 1) // 2, eff - 1 - (eff - 1) // 2
        else:
            _, b, e = conv_padding(int(n), k, s, d, "same")
        before.append(int(b))
        after.append(int(e))
    return {"pads": before + after}


def _conv_kernel(kernel):
    """Keras ``(k..., in, out)`` -> ONNX ``(out, in, k...)``."""
    r = kernel.ndim - 2
    return np.transpose(kernel, (r + 1, r) + tuple(range(r)))


def _conv_node(ctx, v, weight, bias, kernel_size, strides, dilations, padding, group=1):
    g = ctx.g
    inputs = [v.name, g.const(ctx.array(weight), "kernel")]
    if bias is not None:
        inputs.append(g.const(ctx.array(bias), "bias"))
    return g.op("Conv", inputs, kernel_shape=list(kernel_size), strides=list(strides), dilations=list(dilations),
                group=int(group), **_pads(g, v, kernel_size, strides, dilations, padding))


def _conv(ctx, layer, v):
    x = ctx.g.channels_first(v)
    w = ctx.weights(layer)
    y = _conv_node(ctx, x, _conv_kernel(w["kernel"]), w.get("bias"), layer.kernel_size, layer.strides,
                   layer.dilation_rate, layer.padding, layer.groups)
    return ctx.activate(layer, layer.activation, _out(ctx, layer, y, x, layout="cf"))


def _depthwise_weight(depthwise_kernel):
    kh, kw, cin, m = depthwise_kernel.shape
    return np.transpose(depthwise_kernel.reshape(kh, kw, 1, cin * m), (3, 2, 0, 1))


def _depthwise(ctx, layer, v):
    x = ctx.g.channels_first(v)
    w = ctx.weights(layer)
    dk = w["depthwise_kernel"]
    y = _conv_node(ctx, x, _depthwise_weight(dk), w.get("bias"), layer.kernel_size, layer.strides,
                   layer.dilation_rate, layer.padding, group=dk.shape[2])
    return ctx.activate(layer, layer.activation, _out(ctx, layer, y, x, layout="cf"))


def _separable(ctx, layer, v):
    x = ctx.g.channels_first(v)
    w = ctx.weights(layer)
    dk = w["depthwise_kernel"]
    h = _conv_node(ctx, x, _depthwise_weight(dk), None, layer.kernel_size, layer.strides, layer.dilation_rate,
                   layer.padding, group=dk.shape[2])
    mid = Value(h, (None,) * x.rank, ctx.g.dtype, "cf")
    y = _conv_node(ctx, mid, _conv_kernel(w["pointwise_kernel"]), w.get("bias"), (1, 1), (1, 1), (1, 1), "valid")
    return ctx.activate(layer, layer.activation, _out(ctx, layer, y, x, layout="cf"))


def _conv_transpose(ctx, layer, v):
    g = ctx.g
    x = g.channels_first(v)
    w = ctx.weights(layer)
    before, after, extra = [], [], []
    for a, (k, s, d) in enumerate(zip(layer.kernel_size, layer.strides, layer.dilation_rate)):
        op = None if layer.output_padding is None else layer.output_padding[a]
        n = 8  # the crops below do not depend on the input size
        out, crop = conv_transpose_size(n, k, s, d, layer.padding, op)
        full = (n - 1) * s + (k - 1) * d + 1
        excess = full - crop - out
        before.append(int(crop))
        after.append(int(max(excess, 0)))
        extra.append(int(max(-excess, 0)))
    inputs = [x.name, g.const(ctx.array(_conv_kernel(w["kernel"])), "kernel")]
    if w.get("bias") is not None:
        inputs.append(g.const(ctx.array(w["bias"]), "bias"))
    y = g.op("ConvTranspose", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
             dilations=list(layer.dilation_rate), pads=before + after,
             output_padding=extra if any(extra) else None)
    return ctx.activate(layer, layer.activation, _out(ctx, layer, y, x, layout="cf"))


# ---------------------------------------------------------------- pooling
def _pool(ctx, layer, v):
    g = ctx.g
    x = g.channels_first(v)
    ones = (1,) * layer.rank
    attrs = _pads(g, x, layer.pool_size, layer.strides, ones, layer.padding)
    if layer.mode == "max":
        y = g.op("MaxPool", [x.name], kernel_shape=list(layer.pool_size), strides=list(layer.strides), **attrs)
    else:
        y = g.op("AveragePool", [x.name], kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                 count_include_pad=0, **attrs)
    return _out(ctx, layer, y, x, layout="cf")


def _global_pool(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    shape = tuple(layer.compute_output_shape(v.shape))
    if x.layout == "cf":
        y = g.op("GlobalMaxPool" if layer.mode == "max" else "GlobalAveragePool", [x.name])
        if layer.keepdims:
            return Value(y, shape, g.dtype, "cf")
        return Value(g.op("Flatten", [y], axis=1), shape, g.dtype)
    op = "ReduceMax" if layer.mode == "max" else "ReduceMean"
    y = g.reduce(op, x.name, list(range(1, x.rank - 1)), keepdims=layer.keepdims)
    return Value(y, shape, g.dtype)


# ---------------------------------------------------------------- normalization
def _axis_broadcast(values, axes, rank, shape):
    """``values`` (a weight over the sorted native ``axes``) reshaped to a full-rank broadcast shape."""
    bshape = [1] * rank
    for a in axes:
        bshape[a] = shape[a]
    return np.asarray(values).reshape(bshape)


def _batchnorm(ctx, layer, v):
    from ..fusion.folding import batchnorm_scale_shift

    g = ctx.g
    x = g.plain(v)
    w = ctx.weights(layer)
    axes = list(layer._axes)
    rank = x.rank
    c = w["moving_mean"]
    gamma, beta = w.get("gamma"), w.get("beta")
    if axes == [rank - 1] and (rank == 2 or x.layout == "cf"):
        ones, zeros = np.ones_like(c), np.zeros_like(c)
        inputs = [x.name] + [g.const(ctx.array(a), hint) for a, hint in (
            (ones if gamma is None else gamma, "gamma"), (zeros if beta is None else beta, "beta"),
            (c, "moving_mean"), (w["moving_variance"], "moving_variance"))]
        y = g.op("BatchNormalization", inputs, epsilon=float(layer.epsilon))
        return x.like(y)
    s, t = batchnorm_scale_shift(gamma, beta, c, w["moving_variance"], layer.epsilon, np.float64)
    full = [d if d is not None else 1 for d in x.shape]
    scale = g.stored_array(x, _axis_broadcast(s, axes, rank, full))
    shift = g.stored_array(x, _axis_broadcast(t, axes, rank, full))
    y = g.op("Add", [g.op("Mul", [x.name, g.fconst(scale, "scale")]), g.fconst(shift, "shift")])
    return x.like(y)


def _standardize(g, x, axes, epsilon, center=True):
    """``(x - mean) / sqrt(var + eps)`` (``center=False``: ``x / sqrt(var + eps)``) over ``axes``."""
    mean = g.reduce("ReduceMean", x, axes)
    d = g.op("Sub", [x, mean])
    var = g.reduce("ReduceMean", g.op("Mul", [d, d]), axes)
    inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, g.fconst(epsilon, "epsilon")])])])
    return g.op("Mul", [d if center else x, inv])


def _layernorm(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    w = ctx.weights(layer)
    axes = sorted(layer._axes)
    rank = x.rank
    gamma, beta = w.get("gamma"), w.get("beta")
    trailing = axes == list(range(axes[0], rank))
    normalized = [x.shape[a] for a in axes]
    if trailing and not layer.rms_scaling:
        shape = tuple(normalized)
        inputs = [x.name, g.const(ctx.array(np.ones(shape) if gamma is None else np.reshape(gamma, shape)), "gamma")]
        if beta is not None:
            inputs.append(g.const(ctx.array(np.reshape(beta, shape)), "beta"))
        y = g.op("LayerNormalization", inputs, axis=int(axes[0]), epsilon=float(layer.epsilon))
        return x.like(y)
    y = _standardize(g, x.name, axes, layer.epsilon, center=not layer.rms_scaling)
    bshape = [1] * rank
    for a in axes:
        bshape[a] = x.shape[a]
    if gamma is not None:
        y = g.op("Mul", [y, g.fconst(np.reshape(gamma, bshape), "gamma")])
    if beta is not None:
        y = g.op("Add", [y, g.fconst(np.reshape(beta, bshape), "beta")])
    return x.like(y)


def _groupnorm(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    w = ctx.weights(layer)
    axis, groups = layer._axis, layer._groups
    channels = x.shape[axis]
    after = x.shape[axis + 1:]
    if any(d is None for d in after):
        raise ValueError(f"fusenet.onnx.export: {layer.describe()} needs the axes after its channel axis to have known "
                         f"sizes. Received input shape {x.shape}")
    tail = int(np.prod(after)) if after else 1
    view = g.op("Reshape", [x.name, g.iconst([0, -1, groups, channels // groups, tail], "group_shape")])
    y = _standardize(g, view, [1, 3, 4], layer.epsilon)
    y = g.op("Reshape", [y, g.op("Shape", [x.name])])
    bshape = [1] * x.rank
    bshape[axis] = channels
    if w.get("gamma") is not None:
        y = g.op("Mul", [y, g.fconst(np.reshape(w["gamma"], bshape), "gamma")])
    if w.get("beta") is not None:
        y = g.op("Add", [y, g.fconst(np.reshape(w["beta"], bshape), "beta")])
    return x.like(y)


def _unitnorm(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    axes = [g.stored_axis(x, a) for a in layer._axes]
    sq = g.reduce("ReduceSumSquare", x.name, axes)
    norm = g.op("Sqrt", [g.op("Max", [sq, g.fconst(layer._FLOOR, "floor")])])
    return x.like(g.op("Div", [x.name, norm]))


# ---------------------------------------------------------------- reshaping
def _flatten(ctx, layer, v):
    g = ctx.g
    shape = tuple(layer.compute_output_shape(v.shape))
    if v.rank == 2:
        return v
    static = all(d is not None for d in v.shape[1:])
    if v.layout == "cf" and static:
        channels = int(v.shape[-1])
        spatial = int(np.prod(v.shape[1:-1]))
        # native column j = s * C + c holds the stored (C, spatial) column c * S + s
        perm = (np.arange(channels)[None, :] * spatial + np.arange(spatial)[:, None]).reshape(-1)
        return Value(g.op("Flatten", [v.name], axis=1), shape, g.dtype, flat_perm=perm.astype(np.int64))
    x = g.native(v)
    return Value(g.op("Flatten", [x.name], axis=1), shape, g.dtype)


def _reshape(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    y = g.op("Reshape", [x.name, g.iconst([0] + list(layer.target_shape), "target_shape")])
    return _out(ctx, layer, y, x, layout="native")


def _permute(ctx, layer, v):
    x = ctx.g.native(v)
    return _out(ctx, layer, ctx.g.transpose(x.name, layer._perm), x, layout="native")


def _repeat_vector(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    y = g.op("Expand", [g.unsqueeze(x.name, [1]), g.iconst([1, layer.n, 1], "repeats")])
    return _out(ctx, layer, y, x, layout="native")


# ---------------------------------------------------------------- padding, cropping, up-sampling
def _zero_padding(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    pairs = [(0, 0)] + list(layer.padding) + [(0, 0)]
    pairs = g.stored_list(x, pairs)
    pads = [a for a, _ in pairs] + [b for _, b in pairs]
    y = g.op("Pad", [x.name, g.iconst(pads, "pads")], mode="constant")
    return _out(ctx, layer, y, x)


def _cropping(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    starts, ends, axes = [], [], []
    for i, (a, b) in enumerate(layer.cropping, start=1):
        starts.append(a)
        ends.append(-b if b else INT64_MAX)
        axes.append(g.stored_axis(x, i))
    return _out(ctx, layer, g.slice(x.name, starts, ends, axes), x)


def _upsampling(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    scales = g.stored_list(x, [1.0] + [float(s) for s in layer.size] + [1.0])
    y = g.op("Resize", [x.name, "", g.const(np.asarray(scales, dtype=np.float32), "scales")], mode="nearest",
             coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _out(ctx, layer, y, x)


# ---------------------------------------------------------------- preprocessing and activation layers
def _rescaling(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    y = g.op("Mul", [x.name, g.fconst(g.stored_array(x, np.asarray(layer.scale)), "scale")])
    if np.any(np.asarray(layer.offset) != 0):
        y = g.op("Add", [y, g.fconst(g.stored_array(x, np.asarray(layer.offset)), "offset")])
    return x.like(y)


def _normalization(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    std, mean = layer._scale_offset(np.float64)
    std_c = g.fconst(g.stored_array(x, std), "std")
    mean_c = g.fconst(g.stored_array(x, mean), "mean")
    if layer.invert:
        y = g.op("Add", [g.op("Mul", [x.name, std_c]), mean_c])
    else:
        y = g.op("Div", [g.op("Sub", [x.name, mean_c]), std_c])
    return x.like(y)


def _function_layer(ctx, layer, v):
    return ctx.activate(layer, layer.function, v)


def _prelu(ctx, layer, v):
    g = ctx.g
    x = g.plain(v)
    alpha = g.stored_array(x, ctx.weights(layer)["alpha"][None])
    return x.like(g.op("PRelu", [x.name, g.fconst(alpha, "alpha")]))


def _rrelu(ctx, layer, v):
    return v.like(ctx.g.op("LeakyRelu", [v.name], alpha=float(layer.function.slope)))


# ---------------------------------------------------------------- embeddings
def _embedding(ctx, layer, v):
    g = ctx.g
    ids = v.name
    if v.dtype.kind != "i":
        ids = g.op("Cast", [ids], to=_int64())
    y = g.op("Gather", [g.const(ctx.array(ctx.weights(layer)["embeddings"]), "embeddings"), ids], axis=0)
    return Value(y, tuple(layer.compute_output_shape(v.shape)), g.dtype)


def _positional_embedding(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    emb = ctx.array(ctx.weights(layer)["embeddings"])
    steps = x.shape[-2]
    if steps is not None:
        table = g.const(emb[:steps], "embeddings")
    else:
        length = g.slice(g.op("Shape", [x.name]), [-2], [-1], [0])
        table = g.op("Slice", [g.const(emb, "embeddings"), g.iconst([0], "starts"), length, g.iconst([0], "axes")])
    return x.like(g.op("Add", [x.name, table]))


def _int64():
    from onnx import TensorProto

    return TensorProto.INT64


# ---------------------------------------------------------------- composites
_MERGE_OPS = {Add: "Add", Multiply: "Mul", Subtract: "Sub", Maximum: "Max", Minimum: "Min"}


def merge(ctx, merge_layer, values, owner):
    """The merge layer over ``values`` (already emitted): Add/Mul/Sub/Max/Min/Average/Concat."""
    g = ctx.g
    cls = type(merge_layer)
    if cls not in (*_MERGE_OPS, Average, Concatenate):
        raise ValueError(
            f"fusenet.onnx.export: {owner} merges with {merge_layer.describe()}, which has no ONNX mapping. "
            f"Supported merges: {sorted(c.__name__ for c in (*_MERGE_OPS, Average, Concatenate))}"
        )
    perms = [v.flat_perm for v in values]
    same_perm = perms[0] is not None and all(p is not None and np.array_equal(p, perms[0]) for p in perms)
    if not same_perm:
        values = [g.plain(v) for v in values]
    if any(v.layout == "cf" for v in values) and all(v.rank >= 3 for v in values):
        values = [g.channels_first(v) for v in values]
    else:
        values = [v if v.flat_perm is not None else g.native(v) for v in values]
    names = [v.name for v in values]
    ref = values[0]
    with g.scope(merge_layer.name):
        if cls is Concatenate:
            y = g.op("Concat", names, axis=g.stored_axis(ref, merge_layer.axis))
            shape = tuple(merge_layer.compute_output_shape([v.shape for v in values]))
            return Value(y, shape, g.dtype, ref.layout)
        if cls is Average:
            total = g.op("Sum", names)
            return ref.like(g.op("Mul", [total, g.fconst(1.0 / len(names), "inverse_count")]))
        y = names[0]
        for other in names[1:]:
            y = g.op(_MERGE_OPS[cls], [y, other])
        return ref.like(y)


def _residual(ctx, layer, v):
    body = ctx.emit_sequence(layer.body, v)
    shortcut = ctx.emit_sequence(layer.shortcut, v)
    return merge(ctx, layer.merge, [body, shortcut], layer.describe())


def _time_distributed(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    inner = x.shape[2:]
    if any(d is None for d in inner):
        raise ValueError(f"fusenet.onnx.export: {layer.describe()} needs the axes after (batch, time) to have known "
                         f"sizes. Received input shape {x.shape}")
    merged = g.op("Reshape", [x.name, g.iconst([-1] + list(inner), "merged_shape")])
    y = ctx.emit_layer(layer.layer, Value(merged, (None,) + tuple(inner), g.dtype))
    y = g.native(y)
    out_inner = y.shape[1:]
    if any(d is None for d in out_inner):
        raise ValueError(f"fusenet.onnx.export: {layer.describe()} needs the wrapped layer's output to have a known "
                         f"shape. Received {y.shape}")
    lead = g.slice(g.op("Shape", [x.name]), [0], [2], [0])
    target = g.op("Concat", [lead, g.iconst(list(out_inner), "inner_shape")], axis=0)
    out = g.op("Reshape", [y.name, target])
    return Value(out, tuple(layer.compute_output_shape(x.shape)), g.dtype)


EMITTERS = {
    core.Dense: _dense,
    convolution.Conv1D: _conv, convolution.Conv2D: _conv, convolution.Conv3D: _conv,
    convolution.DepthwiseConv2D: _depthwise, convolution.SeparableConv2D: _separable,
    convolution.Conv1DTranspose: _conv_transpose, convolution.Conv2DTranspose: _conv_transpose,
    **{cls: _pool for cls in (pooling.MaxPooling1D, pooling.MaxPooling2D, pooling.MaxPooling3D, pooling.AveragePooling1D,
                              pooling.AveragePooling2D, pooling.AveragePooling3D)},
    **{cls: _global_pool for cls in (pooling.GlobalMaxPooling1D, pooling.GlobalMaxPooling2D, pooling.GlobalMaxPooling3D,
                                     pooling.GlobalAveragePooling1D, pooling.GlobalAveragePooling2D,
                                     pooling.GlobalAveragePooling3D)},
    normalization.BatchNormalization: _batchnorm,
    normalization.LayerNormalization: _layernorm,
    normalization.GroupNormalization: _groupnorm,
    normalization.UnitNormalization: _unitnorm,
    reshaping.Flatten: _flatten, reshaping.Reshape: _reshape, reshaping.Permute: _permute,
    reshaping.RepeatVector: _repeat_vector,
    **{cls: _zero_padding for cls in (resizing.ZeroPadding1D, resizing.ZeroPadding2D, resizing.ZeroPadding3D)},
    **{cls: _cropping for cls in (resizing.Cropping1D, resizing.Cropping2D, resizing.Cropping3D)},
    **{cls: _upsampling for cls in (resizing.UpSampling1D, resizing.UpSampling2D, resizing.UpSampling3D)},
    preprocessing.Rescaling: _rescaling, preprocessing.Normalization: _normalization,
    **{getattr(act_layers, name): _function_layer for name in act_layers.__all__
       if isinstance(getattr(act_layers, name), type) and issubclass(getattr(act_layers, name), act_layers._FunctionLayer)},
    act_layers.PReLU: _prelu, act_layers.RReLU: _rrelu,
    embedding.Embedding: _embedding, embedding.PositionalEmbedding: _positional_embedding,
    composite.Residual: _residual, composite.TimeDistributed: _time_distributed,
}
