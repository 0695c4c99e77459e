"""ONNX emitters of the sequence layers: SimpleRNN/LSTM/GRU (ONNX ``RNN``/``LSTM``/``GRU``), Bidirectional,
MultiHeadAttention (MatMul/Softmax) and TransformerEncoderBlock.

Recurrent weights (Keras layout, gate blocks along the last axis) become ONNX's ``W (1, G*u, in)``,
``R (1, G*u, u)`` and ``B (1, 2*G*u)`` (input bias, then recurrent bias), with the gate blocks
reordered: LSTM Keras ``i, f, c, o`` -> ONNX ``i, o, f, c``; GRU Keras ``z, r, h`` is ONNX's order,
``reset_after=True`` is ``linear_before_reset=1`` with the recurrent bias ``bias[1]`` as ``Rb``
(``reset_after=False``: ``linear_before_reset=0`` and ``Rb = 0``). The ONNX operators run
time-major ``(T, B, F)``; ``go_backwards`` is ``direction="reverse"`` (whose output sequence is
aligned with the input, so Keras's processing-order sequence is its time reversal).
"""

from __future__ import annotations

import math

import numpy as np

from ..layers import attention, recurrent
from ._activations import rnn_activation
from ._graph import INT64_MAX, Value

__all__ = ["EMITTERS"]

_OPS = {recurrent.SimpleRNN: "RNN", recurrent.LSTM: "LSTM", recurrent.GRU: "GRU"}
_GATE_ORDER = {recurrent.SimpleRNN: [0], recurrent.LSTM: [0, 3, 1, 2], recurrent.GRU: [0, 1, 2]}


def _refuse(layer, what):
    raise ValueError(f"fusenet.onnx.export: {layer.describe()} {what}, which a sequential ONNX graph cannot express.")


def onnx_rnn_weights(layer, w):
    """``(W, R, B)`` of an ONNX recurrent operator from the Keras weights ``w`` of ``layer``."""
    u = layer.units
    order = _GATE_ORDER[type(layer)]

    def blocks(m):
        return np.concatenate([m[..., b * u:(b + 1) * u] for b in order], axis=-1)

    kernel, rec, bias = np.asarray(w["kernel"]), np.asarray(w["recurrent_kernel"]), w.get("bias")
    gates = len(order) * u
    if bias is None:
        wb, rb = np.zeros(gates), np.zeros(gates)
    elif isinstance(layer, recurrent.GRU) and layer.reset_after:
        wb, rb = blocks(np.asarray(bias)[0]), blocks(np.asarray(bias)[1])
    else:
        wb, rb = blocks(np.asarray(bias)), np.zeros(gates)
    return blocks(kernel).T[None], blocks(rec).T[None], np.concatenate([wb, rb])[None]


def _rnn_node(ctx, layer, xt, direction):
    """The ONNX recurrent node over the time-major input ``xt``; returns ``(Y, Y_h)`` names."""
    g = ctx.g
    W, R, B = onnx_rnn_weights(layer, ctx.weights(layer))
    owner = layer.describe()
    if isinstance(layer, recurrent.SimpleRNN):
        acts = [rnn_activation(layer.activation, owner)]
    elif isinstance(layer, recurrent.LSTM):
        acts = [rnn_activation(layer.recurrent_activation, owner), rnn_activation(layer.activation, owner),
                rnn_activation(layer.activation, owner)]
    else:
        acts = [rnn_activation(layer.recurrent_activation, owner), rnn_activation(layer.activation, owner)]
    alphas = [a for _, al, _ in acts for a in al]
    betas = [b for _, _, be in acts for b in be]
    attrs = {"hidden_size": int(layer.units), "direction": direction, "activations": [name for name, _, _ in acts],
             "activation_alpha": alphas or None, "activation_beta": betas or None}
    if isinstance(layer, recurrent.GRU):
        attrs["linear_before_reset"] = int(layer.reset_after)
    inputs = [xt, g.const(ctx.array(W), "W"), g.const(ctx.array(R), "R"), g.const(ctx.array(B), "B")]
    outputs = [g.fresh(f"{g.prefix}/Y"), g.fresh(f"{g.prefix}/Y_h")]
    return g.op(_OPS[type(layer)], inputs, outputs=outputs, **attrs)


def _reverse_time(g, seq):
    """``seq[::-1]`` along axis 0 (time-major)."""
    return g.slice(seq, [-1], [-INT64_MAX], [0], [-1])


def _time_major(ctx, layer, v):
    x = ctx.g.native(v)
    if x.rank != 3:
        raise ValueError(f"fusenet.onnx.export: {layer.describe()} expects a (batch, time, features) input. "
                         f"Received shape {x.shape}")
    return x, ctx.g.transpose(x.name, (1, 0, 2), aux=True)


def _sequence_output(g, y, reverse):
    seq = g.squeeze(y, [1])  # (T, B, u), aligned with the input's time axis
    if reverse:
        seq = _reverse_time(g, seq)
    return g.transpose(seq, (1, 0, 2))


def _rnn(ctx, layer, v):
    g = ctx.g
    if layer.return_state:
        _refuse(layer, "returns its states (return_state=True), a list")
    x, xt = _time_major(ctx, layer, v)
    y, yh = _rnn_node(ctx, layer, xt, "reverse" if layer.go_backwards else "forward")
    out = _sequence_output(g, y, layer.go_backwards) if layer.return_sequences else g.squeeze(yh, [0])
    return Value(out, tuple(layer.compute_output_shape(x.shape)), g.dtype)


def _bidirectional(ctx, layer, v):
    g = ctx.g
    if layer.return_state:
        _refuse(layer, "returns its states (return_state=True), a list")
    if layer.merge_mode is None:
        _refuse(layer, "returns two outputs (merge_mode=None), a list")
    x, xt = _time_major(ctx, layer, v)
    outs = []
    for sub, is_backward in ((layer.forward_layer, False), (layer.backward_layer, True)):
        with g.scope(sub.name):
            y, yh = _rnn_node(ctx, sub, xt, "reverse" if sub.go_backwards else "forward")
            if sub.return_sequences:
                # Keras: a go_backwards layer returns its sequence in processing order, and Bidirectional
                # reverses the backward layer's sequence again
                outs.append(_sequence_output(g, y, sub.go_backwards != is_backward))
            else:
                outs.append(g.squeeze(yh, [0]))
    mode = layer.merge_mode
    if mode == "concat":
        out = g.op("Concat", outs, axis=-1)
    elif mode == "sum":
        out = g.op("Add", outs)
    elif mode == "mul":
        out = g.op("Mul", outs)
    else:
        out = g.op("Mul", [g.op("Add", outs), g.fconst(0.5, "half")])
    return Value(out, tuple(layer.compute_output_shape(x.shape)), g.dtype)


# ---------------------------------------------------------------- attention
def _causal_mask(g, scores, steps):
    """``scores`` with ``-inf`` where key ``j > i`` (Keras's causal mask)."""
    neg_inf = g.fconst(-np.inf, "neg_inf")
    if steps is not None:
        allowed = np.tril(np.ones((steps, steps), dtype=bool))
        cond = g.const(allowed, "causal_mask")
    else:
        from onnx import TensorProto, helper

        last2 = g.slice(g.op("Shape", [scores]), [-2], [INT64_MAX], [0])
        ones = g.op("ConstantOfShape", [last2], value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
        cond = g.op("Cast", [g.op("Trilu", [ones], upper=0)], to=TensorProto.BOOL)
    return g.op("Where", [cond, scores, neg_inf])


def _mha(ctx, layer, v):
    g = ctx.g
    x = g.native(v)
    if x.rank != 3:
        raise ValueError(f"fusenet.onnx.export: {layer.describe()} expects a (batch, time, features) input. "
                         f"Received shape {x.shape}")
    w = ctx.weights(layer)
    h, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
    scale = 1.0 / math.sqrt(kd)

    def project(role, width, factor, perm):
        kernel = np.asarray(w[f"{role}_kernel"], dtype=np.float64)
        y = g.op("MatMul", [x.name, g.const(ctx.array(kernel.reshape(kernel.shape[0], -1) * factor), f"{role}_kernel")])
        if w.get(f"{role}_bias") is not None:
            bias = np.asarray(w[f"{role}_bias"], dtype=np.float64).reshape(-1) * factor
            y = g.op("Add", [y, g.const(ctx.array(bias), f"{role}_bias")])
        y = g.op("Reshape", [y, g.iconst([0, 0, h, width], f"{role}_heads")])
        return g.transpose(y, perm)

    q = project("query", kd, scale, (0, 2, 1, 3))  # (B, h, T, k), scaled by 1/sqrt(key_dim)
    kt = project("key", kd, 1.0, (0, 2, 3, 1))  # (B, h, k, S)
    vv = project("value", vd, 1.0, (0, 2, 1, 3))  # (B, h, S, v)
    scores = g.op("MatMul", [q, kt])
    if layer.use_causal_mask:
        scores = _causal_mask(g, scores, x.shape[1])
    probs = g.op("Softmax", [scores], axis=-1)
    ctx_heads = g.transpose(g.op("MatMul", [probs, vv]), (0, 2, 1, 3))
    merged = g.op("Reshape", [ctx_heads, g.iconst([0, 0, h * vd], "merged_heads")])
    w_out = np.asarray(w["output_kernel"])
    y = g.op("MatMul", [merged, g.const(ctx.array(w_out.reshape(h * vd, -1)), "output_kernel")])
    if w.get("output_bias") is not None:
        y = g.op("Add", [y, g.const(ctx.array(w["output_bias"]), "output_bias")])
    return Value(y, tuple(layer.compute_output_shape(x.shape)), g.dtype)


def _encoder_block(ctx, layer, v):
    g = ctx.g
    s = layer._sublayers
    x = g.native(v)

    def add(a, b):
        return Value(g.op("Add", [g.native(a).name, g.native(b).name]), x.shape, g.dtype)

    def feedforward(t):
        t = ctx.emit_layer(s["feedforward_intermediate"], t)
        return ctx.emit_layer(s["feedforward_output"], t)

    if layer.norm_first:
        x1 = add(x, ctx.emit_layer(s["attention"], ctx.emit_layer(s["attention_norm"], x)))
        return add(x1, feedforward(ctx.emit_layer(s["feedforward_norm"], x1)))
    x1 = ctx.emit_layer(s["attention_norm"], add(x, ctx.emit_layer(s["attention"], x)))
    return ctx.emit_layer(s["feedforward_norm"], add(x1, feedforward(x1)))


EMITTERS = {
    recurrent.SimpleRNN: _rnn, recurrent.LSTM: _rnn, recurrent.GRU: _rnn, recurrent.Bidirectional: _bidirectional,
    attention.MultiHeadAttention: _mha, attention.TransformerEncoderBlock: _encoder_block,
}
