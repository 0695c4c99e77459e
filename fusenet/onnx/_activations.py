"""Every activation function of :mod:`fusenet.activations` as ONNX operators.

One ONNX operator where there is one (Relu, LeakyRelu, Elu, Selu, Celu, Sigmoid, Tanh, Softplus,
Softsign, HardSigmoid, HardSwish, Shrink, Softmax, LogSoftmax, Exp), a short composition otherwise:

- ``gelu``: ``0.5 * x * (1 + Erf(x / sqrt(2)))``; ``approximate=True``: ``0.5 x (1 + Tanh(k (x + 0.044715 x^3)))``;
- ``relu`` with options: ``Where(x > t, x, 0)``, ``Clip(0, max_value)``, ``- negative_slope * Relu(t - x)``;
- ``relu6``/``hard_tanh``/``sparse_sigmoid``: ``Clip``; ``threshold``/``sparse_plus``: ``Where``;
- ``silu``: ``x * Sigmoid(x)``; ``mish``: ``x * Tanh(Softplus(x))``; ``log_sigmoid``: ``-Softplus(-x)``;
  ``tanh_shrink``: ``x - Tanh(x)``; ``squareplus``: ``(x + Sqrt(x^2 + b)) / 2``; ``softmin``: ``Softmax(-x)``;
- softmax/log_softmax over several axes: ``ReduceMax``/``Exp``/``ReduceSum``;
- ``sparsemax``: ``TopK`` (sorted), ``CumSum``, the support size and ``tau``, ``Relu(z - tau)``;
- ``glu``: two ``Slice`` halves, ``a * Sigmoid(b)``.

Axes are given in fusenet's (channels-last) order and mapped to the tensor's storage layout.
"""

from __future__ import annotations

import math

import numpy as np

from ..activations import functions as F
from ..activations._smooth import SELU_ALPHA, SELU_SCALE
from ._graph import GraphBuilder, Value

__all__ = ["emit_activation", "supported_activations", "rnn_activation"]


def _c(g: GraphBuilder, value, hint="c"):
    return g.fconst(value, hint)


def _relu(g, fn, x, v):
    thr, mv, ns = fn.threshold, fn.max_value, fn.negative_slope
    if thr == 0:
        y = g.op("Relu", [x])
    else:
        y = g.op("Where", [g.op("Greater", [x, _c(g, thr, "threshold")]), x, _c(g, 0.0, "zero")])
    if mv is not None:
        y = g.op("Clip", [y, _c(g, 0.0, "zero"), _c(g, mv, "max_value")])
    if ns:
        leak = g.op("Relu", [g.op("Sub", [_c(g, thr, "threshold"), x])])
        y = g.op("Sub", [y, g.op("Mul", [leak, _c(g, ns, "negative_slope")])])
    return y


def _clip(low, high):
    def emit(g, fn, x, v):
        lo = low(fn) if callable(low) else low
        hi = high(fn) if callable(high) else high
        return g.op("Clip", [x, _c(g, lo, "min"), _c(g, hi, "max")])
    return emit


def _gelu(g, fn, x, v):
    half = _c(g, 0.5, "half")
    if fn.approximate:
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, _c(g, 0.044715, "c")])])
        t = g.op("Tanh", [g.op("Mul", [inner, _c(g, math.sqrt(2.0 / math.pi), "k")])])
    else:
        t = g.op("Erf", [g.op("Mul", [x, _c(g, math.sqrt(0.5), "inv_sqrt2")])])
    return g.op("Mul", [g.op("Mul", [x, half]), g.op("Add", [t, _c(g, 1.0, "one")])])


def _softplus_beta(g, fn, x, v):
    bx = x if fn.beta == 1 else g.op("Mul", [x, _c(g, fn.beta, "beta")])
    y = g.op("Softplus", [bx])
    if fn.beta != 1:
        y = g.op("Div", [y, _c(g, fn.beta, "beta")])
    if fn.threshold is not None:
        y = g.op("Where", [g.op("Greater", [bx, _c(g, fn.threshold, "threshold")]), x, y])
    return y


def _axes(g, fn, v):
    axes = fn.axis if isinstance(fn.axis, tuple) else (fn.axis,)
    for a in axes:
        if not -v.rank <= a < v.rank:
            raise ValueError(f"{g.prefix}: axis {a} is out of range for an input of rank {v.rank}.")
    return [g.stored_axis(v, a) for a in axes]


def _softmax_like(op_type, negate=False, log=False):
    def emit(g, fn, x, v):
        if negate:
            x = g.op("Neg", [x])
        axes = _axes(g, fn, v)
        if len(axes) == 1:
            return g.op(op_type, [x], axis=axes[0])
        s = g.op("Sub", [x, g.reduce("ReduceMax", x, axes)])
        e = g.op("Exp", [s])
        total = g.reduce("ReduceSum", e, axes)
        if log:
            return g.op("Sub", [s, g.op("Log", [total])])
        return g.op("Div", [e, total])
    return emit


def _static_size(g, v, axis):
    n = v.shape[axis]
    if n is None:
        raise ValueError(f"{g.prefix}: the size of axis {axis} must be known to export this activation. "
                         f"Received input shape {v.shape}")
    return int(n)


def _sparsemax(g, fn, x, v):
    (ax,) = _axes(g, fn, v)
    n = _static_size(g, v, fn.axis)
    z = g.op("Sub", [x, g.reduce("ReduceMax", x, [ax])])
    zs = g.op("TopK", [z, g.iconst([n], "k")], n_out=2, axis=ax, largest=1, sorted=1)[0]
    shape = [1] * v.rank
    shape[ax] = n
    k = g.fconst(np.arange(1, n + 1).reshape(shape), "k")
    cs = g.op("CumSum", [zs, g.const(np.array(ax, dtype=np.int64), "axis")])
    one = _c(g, 1.0, "one")
    support = g.op("Cast", [g.op("Greater", [g.op("Add", [g.op("Mul", [k, zs]), one]), cs])],
                   to=_onnx_float(g))
    size = g.reduce("ReduceSum", support, [ax])
    index = g.op("Cast", [g.op("Sub", [size, one])], to=_onnx_int64())
    tau = g.op("Div", [g.op("Sub", [g.op("GatherElements", [cs, index], axis=ax), one]), size])
    return g.op("Relu", [g.op("Sub", [z, tau])])


def _glu(g, fn, x, v):
    (ax,) = _axes(g, fn, v)
    n = _static_size(g, v, fn.axis)
    if n % 2:
        raise ValueError(f"{g.prefix}: GLU needs an even size along axis {fn.axis}. Received input shape {v.shape}")
    a = g.slice(x, [0], [n // 2], [ax])
    b = g.slice(x, [n // 2], [n], [ax])
    return g.op("Mul", [a, g.op("Sigmoid", [b])])


def _onnx_float(g):
    from onnx import TensorProto

    return TensorProto.DOUBLE if g.dtype == np.float64 else TensorProto.FLOAT


def _onnx_int64():
    from onnx import TensorProto

    return TensorProto.INT64


def _sparse_plus(g, fn, x, v):
    one = _c(g, 1.0, "one")
    q = g.op("Add", [g.op("Clip", [x, _c(g, -1.0, "min"), one]), one])
    quad = g.op("Mul", [g.op("Mul", [q, q]), _c(g, 0.25, "quarter")])
    return g.op("Where", [g.op("GreaterOrEqual", [x, one]), x, quad])


def _sparse_sigmoid(g, fn, x, v):
    half = g.op("Mul", [g.op("Add", [x, _c(g, 1.0, "one")]), _c(g, 0.5, "half")])
    return g.op("Clip", [half, _c(g, 0.0, "min"), _c(g, 1.0, "max")])


def _simple(op_type, **attrs):
    def emit(g, fn, x, v):
        values = {k: (a(fn) if callable(a) else a) for k, a in attrs.items()}
        return g.op(op_type, [x], **values)
    return emit


_EMITTERS = {
    F.Linear: None,
    F.ReLU: lambda g, fn, x, v: g.op("Relu", [x]) if not (fn.threshold or fn.max_value is not None or fn.negative_slope)
    else _relu(g, fn, x, v),
    F.ReLU6: _clip(0.0, 6.0),
    F.LeakyReLU: _simple("LeakyRelu", alpha=lambda fn: float(fn.negative_slope)),
    F.RReLU: _simple("LeakyRelu", alpha=lambda fn: float(fn.slope)),
    F.HardSigmoid: _simple("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    F.HardSiLU: _simple("HardSwish"),
    F.HardTanh: _clip(lambda fn: fn.min_val, lambda fn: fn.max_val),
    F.HardShrink: _simple("Shrink", lambd=lambda fn: float(fn.threshold), bias=0.0),
    F.SoftShrink: _simple("Shrink", lambd=lambda fn: float(fn.threshold), bias=lambda fn: float(fn.threshold)),
    F.Threshold: lambda g, fn, x, v: g.op("Where", [g.op("Greater", [x, _c(g, fn.threshold, "threshold")]), x,
                                                    _c(g, fn.default_value, "value")]),
    F.SparsePlus: _sparse_plus,
    F.SparseSigmoid: _sparse_sigmoid,
    F.ELU: _simple("Elu", alpha=lambda fn: float(fn.alpha)),
    F.SELU: _simple("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    F.CELU: _simple("Celu", alpha=lambda fn: float(fn.alpha)),
    F.GELU: _gelu,
    F.GELUTanh: _gelu,
    F.Sigmoid: _simple("Sigmoid"),
    F.LogSigmoid: lambda g, fn, x, v: g.op("Neg", [g.op("Softplus", [g.op("Neg", [x])])]),
    F.Tanh: _simple("Tanh"),
    F.TanhShrink: lambda g, fn, x, v: g.op("Sub", [x, g.op("Tanh", [x])]),
    F.Softplus: _softplus_beta,
    F.Squareplus: lambda g, fn, x, v: g.op("Mul", [
        g.op("Add", [x, g.op("Sqrt", [g.op("Add", [g.op("Mul", [x, x]), _c(g, fn.b, "b")])])]), _c(g, 0.5, "half")]),
    F.Softsign: _simple("Softsign"),
    F.SiLU: lambda g, fn, x, v: g.op("Mul", [x, g.op("Sigmoid", [x])]),
    F.Mish: lambda g, fn, x, v: g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])]),
    F.Exponential: _simple("Exp"),
    F.Softmax: _softmax_like("Softmax"),
    F.Softmin: _softmax_like("Softmax", negate=True),
    F.LogSoftmax: _softmax_like("LogSoftmax", log=True),
    F.Sparsemax: _sparsemax,
    F.GLU: _glu,
}


def supported_activations() -> list:
    """The names of the activation functions the exporter maps (``fusenet.activations`` names)."""
    return sorted(cls.name for cls in _EMITTERS)


def emit_activation(g: GraphBuilder, fn, v: Value, owner: str) -> Value:
    """``fn(v)`` as ONNX nodes; element-wise activations keep ``v``'s layout (and flat order)."""
    cls = type(fn)
    if cls not in _EMITTERS:
        raise ValueError(
            f"fusenet.onnx.export: {owner} uses the activation {getattr(fn, 'name', cls.__name__)!r} "
            f"({cls.__module__}.{cls.__name__}), which has no ONNX mapping. Supported activations: {supported_activations()}"
        )
    emitter = _EMITTERS[cls]
    if emitter is None:
        return v
    if not getattr(fn, "elementwise", True):
        v = g.plain(v)
    name = emitter(g, fn, v.name, v)
    shape = v.shape
    if cls is F.GLU:
        shape = tuple(fn.compute_output_shape(v.shape))
    return v.like(name, shape=shape)


# ---------------------------------------------------------------- recurrent cells
def rnn_activation(loop_activation, owner: str):
    """``(onnx_name, alphas, betas)`` of a recurrent layer's activation (``_LoopActivation``).

    ONNX recurrent operators accept Tanh, Sigmoid, Relu, Affine, LeakyRelu, HardSigmoid, Elu,
    Softsign and Softplus; anything else is refused.
    """
    fast = loop_activation.fast
    fn = loop_activation.function
    if fast is None and fn is not None and type(fn) in (F.Tanh, F.Sigmoid, F.Linear):
        fast = fn.name
    if fast == "tanh":
        return "Tanh", [], []
    if fast == "sigmoid":
        return "Sigmoid", [], []
    if fast == "linear":
        return "Affine", [1.0], [0.0]
    cls = type(fn)
    if cls is F.ReLU and not (fn.threshold or fn.max_value is not None or fn.negative_slope):
        return "Relu", [], []
    if cls is F.LeakyReLU:
        return "LeakyRelu", [float(fn.negative_slope)], []
    if cls is F.HardSigmoid:
        return "HardSigmoid", [1.0 / 6.0], [0.5]
    if cls is F.ELU:
        return "Elu", [float(fn.alpha)], []
    if cls is F.Softsign:
        return "Softsign", [], []
    if cls is F.Softplus and fn.beta == 1 and fn.threshold is None:
        return "Softplus", [], []
    raise ValueError(
        f"fusenet.onnx.export: {owner} uses the activation {getattr(fn, 'name', fast)!r} inside the recurrent cell; "
        "ONNX recurrent operators support only ['elu', 'hard_sigmoid', 'leaky_relu', 'linear', 'relu', 'sigmoid', "
        "'softplus', 'softsign', 'tanh']."
    )
