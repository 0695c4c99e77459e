"""FLOP counts of the GEMM-based layers, per layer type.

A product of an ``(M, K)`` matrix and a ``(K, N)`` matrix counts ``2 * M * N * K`` FLOPs (one
multiply and one add per term). Only those products are counted: bias additions, activations,
normalisations, pooling, softmax and other element-wise work count 0, and a layer without a
GEMM gets ``None`` ("not a GEMM-based layer"). ``B`` is the batch size; every input shape
includes it.

============================  ======================================================================
layer                         forward FLOPs
============================  ======================================================================
Dense                         ``2 * M * in * units``, ``M`` = product of all input axes but the last
Conv1D/2D/3D                  ``2 * B * prod(out_spatial) * prod(kernel_size) * (in / groups) * filters``
                              (im2col: ``M = B * prod(out_spatial)``, ``K = prod(kernel) * in / groups``,
                              ``N = filters / groups``, one GEMM per group)
DepthwiseConv2D               ``2 * B * prod(out_spatial) * kh * kw * in * depth_multiplier``
SeparableConv2D               the depthwise count plus the 1x1 GEMM
                              ``2 * B * prod(out_spatial) * in * depth_multiplier * filters``
Conv1D/2DTranspose            ``2 * B * prod(in_spatial) * prod(kernel_size) * in * filters`` (the
                              convolution it is the adjoint of)
SimpleRNN / LSTM / GRU        ``2 * B * T * (in + units) * g * units`` with ``g`` = 1 / 4 / 3 gates
                              (input GEMM and ``T`` recurrent GEMMs)
Bidirectional                 the sum of its two recurrent layers
MultiHeadAttention            projections ``2 * B * (T * d_q * H * k + S * d_k * H * k + S * d_v * H * v
                              + T * H * v * d_out)`` plus the attention products
                              ``2 * B * H * T * S * (k + v)`` (query length ``T``, key length ``S``,
                              ``H`` heads of key size ``k`` and value size ``v``)
TransformerEncoderBlock       its MultiHeadAttention (``T = S``, ``k = v = d / H``) plus the
                              feed-forward GEMMs ``2 * 2 * B * T * d * ff_dim``
Residual, TimeDistributed     the sum of the layers they hold, on their input shapes
fused layers (FusedLayer)     the sum of the layers they replaced (fusion removes passes over
                              memory, not multiplications)
============================  ======================================================================

Backward: every GEMM-based layer computes two products of the forward's size per forward
product (the input gradient and the weight gradient; for attention the gradients of both
factors), so :func:`backward_flops` is twice :func:`forward_flops`.

:func:`gemm_shapes` lists the products behind a count as :class:`Gemm` ``(m, k, n, count)``
entries (``count`` products of ``(m, k) @ (k, n)``), e.g. to time a plain float32 GEMM of the same
shapes as the hardware limit to compare a layer with; :func:`backward_gemm_shapes` lists the
backward's (``dX = dY W^T``: ``(m, n, k)``; ``dW = X^T dY``: ``(k, m, n)``). Depthwise
convolutions are counted as one tiny product per channel (``m = B * prod(out)``, ``k = kh * kw``,
``n = depth_multiplier``).

Users add counts for their own layers with :func:`register_flops`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

from ..layers.attention import MultiHeadAttention, TransformerEncoderBlock
from ..layers.base import Layer
from ..layers.composite import Residual, TimeDistributed
from ..layers.convolution import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, DepthwiseConv2D,
                                  SeparableConv2D)
from ..layers.core import Dense
from ..layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = ["Gemm", "forward_flops", "backward_flops", "gemm_shapes", "backward_gemm_shapes", "register_flops",
           "gemm_flops"]

_COUNTERS: dict[type, Callable] = {}


class Gemm(NamedTuple):
    """``count`` matrix products ``(m, k) @ (k, n)``: ``2 * m * k * n * count`` FLOPs."""

    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


def gemm_flops(m: int, n: int, k: int) -> int:
    """FLOPs of one ``(m, k) @ (k, n)`` product: ``2 * m * n * k``."""
    return 2 * int(m) * int(n) * int(k)


def register_flops(cls: type, fn: Callable) -> None:
    """Count the forward FLOPs of layers of class ``cls`` (and its subclasses) with
    ``fn(layer, input_shape)``, which returns an int, a list of :class:`Gemm` (or ``(m, k, n[, count])``
    tuples), or ``None`` (no GEMM). ``input_shape`` includes the batch size."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_flops: expected a subclass of fusenet.layers.Layer. Received: {cls!r}")
    if not callable(fn):
        raise TypeError(f"register_flops: expected fn to be callable as fn(layer, input_shape). Received: {fn!r}")
    _COUNTERS[cls] = fn


def _known(shape) -> bool:
    return all(d is not None for d in shape)


def _shapes(input_shape):
    """A list of shape tuples for a single shape or a list of shapes."""
    input_shape = tuple(input_shape)
    if input_shape and isinstance(input_shape[0], (tuple, list)):
        return [tuple(s) for s in input_shape]
    return [input_shape]


def _count(layer, input_shape):
    """What the layer's counter returns: ``None``, an int, or a list of :class:`Gemm`."""
    shapes = _shapes(input_shape)
    if not all(_known(s) for s in shapes):
        return None
    for cls in type(layer).__mro__:
        fn = _COUNTERS.get(cls)
        if fn is not None:
            value = fn(layer, shapes[0] if len(shapes) == 1 else shapes)
            if value is None or isinstance(value, int):
                return value
            return [Gemm(*(int(v) for v in g)) for g in value]
    return None


def gemm_shapes(layer, input_shape):
    """The forward's matrix products as a list of :class:`Gemm`, or ``None`` when the layer has no
    GEMM (or its counter gives only a number)."""
    value = _count(layer, input_shape)
    return value if isinstance(value, list) else None


def backward_gemm_shapes(layer, input_shape):
    """The backward's products: for each forward ``(m, k) @ (k, n)``, ``(m, n) @ (n, k)`` (input
    gradient) and ``(k, m) @ (m, n)`` (weight gradient). ``None`` as :func:`gemm_shapes`."""
    forward = gemm_shapes(layer, input_shape)
    if forward is None:
        return None
    return [b for g in forward for b in (Gemm(g.m, g.n, g.k, g.count), Gemm(g.k, g.m, g.n, g.count))]


def forward_flops(layer, input_shape):
    """FLOPs of one forward pass of ``layer`` on an input of ``input_shape`` (batch included), or
    ``None`` when the layer has no GEMM (or the shape is not fully known)."""
    value = _count(layer, input_shape)
    if value is None or isinstance(value, int):
        return value
    return sum(g.flops for g in value)


def backward_flops(layer, input_shape):
    """FLOPs of one backward pass: twice :func:`forward_flops` (``None`` for layers without GEMMs)."""
    value = forward_flops(layer, input_shape)
    return None if value is None else 2 * value


def _merge(parts):
    """Concatenate the counts of several layers (``None`` parts skipped; ints make an int total)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if all(isinstance(p, list) for p in parts):
        return [g for p in parts for g in p]
    return sum(p if isinstance(p, int) else sum(g.flops for g in p) for p in parts)


def _chain(layers, shape):
    """The counts of ``layers`` applied one after the other, starting from ``shape``."""
    parts = []
    for layer in layers:
        parts.append(_count(layer, shape))
        shape = tuple(layer.compute_output_shape(shape))
    return _merge(parts)


# ---------------------------------------------------------------- the counts
def _dense(layer, shape):
    return [Gemm(math.prod(shape[:-1]), shape[-1], layer.units)]


def _conv(layer, shape):
    out = layer.compute_output_shape(shape)
    g = layer.groups
    return [Gemm(shape[0] * math.prod(out[1:-1]), math.prod(layer.kernel_size) * (shape[-1] // g), layer.filters // g, g)]


def _depthwise(layer, shape):
    out = layer.compute_output_shape(shape)
    return [Gemm(shape[0] * math.prod(out[1:-1]), math.prod(layer.kernel_size), layer.depth_multiplier, shape[-1])]


def _separable(layer, shape):
    out = layer.compute_output_shape(shape)
    pointwise = Gemm(shape[0] * math.prod(out[1:-1]), shape[-1] * layer.depth_multiplier, layer.filters)
    return _depthwise(layer, shape) + [pointwise]


def _conv_transpose(layer, shape):
    # the col2im forward: (B * prod(in_spatial), in) @ (in, prod(kernel) * filters)
    return [Gemm(shape[0] * math.prod(shape[1:-1]), shape[-1], math.prod(layer.kernel_size) * layer.filters)]


def _rnn(gates):
    def count(layer, shape):
        batch, steps, features = shape
        width = gates * layer.units
        return [Gemm(batch * steps, features, width), Gemm(batch, layer.units, width, steps)]

    return count


def _bidirectional(layer, shape):
    return _merge([_count(layer.forward_layer, shape), _count(layer.backward_layer, shape)])


def _attention(layer, shape):
    shapes = _shapes(shape)
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    key = shapes[2] if len(shapes) > 2 else value
    batch, t, d_q = query
    s, d_v, d_k = value[1], value[2], key[2]
    h, k, v = layer.num_heads, layer.key_dim, layer.value_dim
    d_out = layer.output_shape or d_q
    return [Gemm(batch * t, d_q, h * k), Gemm(batch * s, d_k, h * k), Gemm(batch * s, d_v, h * v),
            Gemm(t, k, s, batch * h), Gemm(t, s, v, batch * h), Gemm(batch * t, h * v, d_out)]


def _encoder_block(layer, shape):
    batch, t, d = shape
    hk = d // layer.num_heads
    return [Gemm(batch * t, d, 3 * d), Gemm(t, hk, t, batch * layer.num_heads), Gemm(t, t, hk, batch * layer.num_heads),
            Gemm(batch * t, d, d), Gemm(batch * t, d, layer.ff_dim), Gemm(batch * t, layer.ff_dim, d)]


def _residual(layer, shape):
    return _merge([_chain(layer.body, shape), _chain(layer.shortcut, shape)])


def _time_distributed(layer, shape):
    return _count(layer.layer, (shape[0] * shape[1],) + tuple(shape[2:]))


def _fused(layer, shape):
    return _chain(layer.source_layers, _shapes(shape)[0])


for _cls, _fn in [
    (Dense, _dense), (Conv1D, _conv), (Conv2D, _conv), (Conv3D, _conv), (DepthwiseConv2D, _depthwise),
    (SeparableConv2D, _separable), (Conv1DTranspose, _conv_transpose), (Conv2DTranspose, _conv_transpose),
    (SimpleRNN, _rnn(1)), (LSTM, _rnn(4)), (GRU, _rnn(3)), (Bidirectional, _bidirectional),
    (MultiHeadAttention, _attention), (TransformerEncoderBlock, _encoder_block), (Residual, _residual),
    (TimeDistributed, _time_distributed),
]:
    register_flops(_cls, _fn)


def _register_fused() -> None:
    from ..fusion.base import FusedLayer

    register_flops(FusedLayer, _fused)


_register_fused()
