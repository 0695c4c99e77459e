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

Users add counts for their own layers with :func:`register_flops`.
"""

from __future__ import annotations

import math
from typing import Callable

from ..layers.attention import MultiHeadAttention, TransformerEncoderBlock
from ..layers.base import Layer
from ..layers.composite import Residual, TimeDistributed
from ..layers.convolution import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, DepthwiseConv2D,
                                  SeparableConv2D)
from ..layers.core import Dense
from ..layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = ["forward_flops", "backward_flops", "register_flops", "gemm_flops"]

_COUNTERS: dict[type, Callable] = {}


def gemm_flops(m: int, n: int, k: int) -> int:
    """FLOPs of one ``(m, k) @ (k, n)`` product: ``2 * m * n * k``."""
    return 2 * int(m) * int(n) * int(k)


def register_flops(cls: type, fn: Callable) -> None:
    """Count the forward FLOPs of layers of class ``cls`` (and its subclasses) with
    ``fn(layer, input_shape) -> int or None``. ``input_shape`` includes the batch size."""
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


def forward_flops(layer, input_shape):
    """FLOPs of one forward pass of ``layer`` on an input of ``input_shape`` (batch included), or
    ``None`` when the layer has no GEMM (or the shape is not fully known)."""
    shapes = _shapes(input_shape)
    if not all(_known(s) for s in shapes):
        return None
    for cls in type(layer).__mro__:
        fn = _COUNTERS.get(cls)
        if fn is not None:
            value = fn(layer, shapes[0] if len(shapes) == 1 else shapes)
            return None if value is None else int(value)
    return None


def backward_flops(layer, input_shape):
    """FLOPs of one backward pass: twice :func:`forward_flops` (``None`` for layers without GEMMs)."""
    value = forward_flops(layer, input_shape)
    return None if value is None else 2 * value


def _sum(values):
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def _chain(layers, shape):
    """Sum of the counts of ``layers`` applied one after the other, starting from ``shape``."""
    total = []
    for layer in layers:
        total.append(forward_flops(layer, shape))
        shape = tuple(layer.compute_output_shape(shape))
    return _sum(total)


# ---------------------------------------------------------------- the counts
def _dense(layer, shape):
    return gemm_flops(math.prod(shape[:-1]), layer.units, shape[-1])


def _conv(layer, shape):
    out = layer.compute_output_shape(shape)
    return 2 * shape[0] * math.prod(out[1:-1]) * math.prod(layer.kernel_size) * (shape[-1] // layer.groups) * layer.filters


def _depthwise(layer, shape):
    out = layer.compute_output_shape(shape)
    return 2 * shape[0] * math.prod(out[1:-1]) * math.prod(layer.kernel_size) * shape[-1] * layer.depth_multiplier


def _separable(layer, shape):
    out = layer.compute_output_shape(shape)
    pointwise = gemm_flops(shape[0] * math.prod(out[1:-1]), layer.filters, shape[-1] * layer.depth_multiplier)
    return _depthwise(layer, shape) + pointwise


def _conv_transpose(layer, shape):
    return 2 * shape[0] * math.prod(shape[1:-1]) * math.prod(layer.kernel_size) * shape[-1] * layer.filters


def _rnn(gates):
    def count(layer, shape):
        batch, steps, features = shape
        return 2 * batch * steps * (features + layer.units) * gates * layer.units

    return count


def _bidirectional(layer, shape):
    return _sum([forward_flops(layer.forward_layer, shape), forward_flops(layer.backward_layer, shape)])


def _attention(layer, shape):
    shapes = _shapes(shape)
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    key = shapes[2] if len(shapes) > 2 else value
    batch, t, d_q = query
    s, d_v, d_k = value[1], value[2], key[2]
    h, k, v = layer.num_heads, layer.key_dim, layer.value_dim
    d_out = layer.output_shape or d_q
    projections = 2 * batch * (t * d_q * h * k + s * d_k * h * k + s * d_v * h * v + t * h * v * d_out)
    return projections + 2 * batch * h * t * s * (k + v)


def _encoder_block(layer, shape):
    batch, t, d = shape
    attention = 2 * batch * (4 * t * d * d) + 2 * batch * t * t * 2 * d
    return attention + 2 * gemm_flops(batch * t, layer.ff_dim, d)


def _residual(layer, shape):
    return _sum([_chain(layer.body, shape), _chain(layer.shortcut, shape)])


def _time_distributed(layer, shape):
    return forward_flops(layer.layer, (shape[0] * shape[1],) + tuple(shape[2:]))


def _fused(layer, shape):
    shapes = _shapes(shape)
    return _chain(layer.source_layers, shapes[0])


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
