"""Private: lowering the nodes of an optimised inference graph into the steps of a compiled plan.

A *step* computes one tensor (rarely several) of the plan. Its kind says where the result goes:

- ``"kernel"``: into an array the plan owns (planned by liveness in :mod:`fusenet.graph._memory`),
  with the layer's own arithmetic on its (possibly folded) weights: Dense and the fused Dense
  layers, the convolutions (plain, folded, fused with BatchNorm/activation/max-pool, the ResNet basic
  block, the MobileNet block), BatchNormalization, ReLU, Add, max pooling, global pooling;
- ``"view"``: a reshaped view of its input (Flatten, Reshape): no work at all;
- ``"call"``: anything else calls the layer (its ``forward`` directly where ``__call__`` would only
  check and cast); its result is a new array of the layer's making.

Every step emits the lines of Python it runs (:meth:`Step.emit`, names resolved by the plan) and,
per batch size, binds the objects those lines use (:meth:`Step.bind`): weights, precomputed views,
convolution runners. Shape-specialised work (geometry, folded weights, GEMM layouts) is done when a
step is made or bound, never per call.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..fusion._conv_chain import FusedConvBNActivation, FusedConvBNActivationPool, FusedDepthwiseSeparableBNActivation
from ..fusion._conv_residual import FusedResidualConvBlock
from ..fusion._conv_stage import act_epilogue
from ..fusion.dense import NT_ROWS, FusedAffineDense, _FusedDenseStages, dense_into, is_plain_relu
from ..fusion.patterns import bn_condition
from ..layers import _conv_ops as ops
from ..layers._depthwise_conv import DepthwiseConv2D
from ..layers.activation import _FunctionLayer
from ..layers.convolution import Conv1D, Conv2D, Conv3D
from ..layers.core import Dense
from ..layers.merging import Add
from ..layers.normalization import BatchNormalization
from ..layers.pooling import (GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
                              GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D, MaxPooling2D, MaxPooling3D)
from ..layers.reshaping import Flatten, Reshape
from ._kernels import ConvSpec, MaxPoolInto, StagedConv
from ._program import _direct_ok

__all__ = []  # private module

_CONVS = (Conv1D, Conv2D, Conv3D)
_MAX_POOLS = (MaxPooling1D, MaxPooling2D, MaxPooling3D)
_GLOBAL_POOLS = (GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
                 GlobalMaxPooling2D, GlobalMaxPooling3D)


def concrete(shape, batch) -> tuple:
    """``shape`` with its batch axis set to ``batch``."""
    return (batch,) + tuple(shape[1:])


class Tensor:
    """A value of the plan: its shape (batch axis ``None`` in dynamic plans), dtype, and who makes it."""

    __slots__ = ("key", "shape", "dtype", "step", "name", "step_index")

    def __init__(self, key, shape, dtype, step=None, name=""):
        self.key, self.shape, self.dtype, self.step, self.name = key, tuple(shape), np.dtype(dtype), step, name
        self.step_index = None

    def nbytes(self, batch) -> int:
        return math.prod(concrete(self.shape, batch)) * self.dtype.itemsize


class Step:
    """One operation of a plan. Subclasses set ``kind`` and implement :meth:`emit` and :meth:`bind`.

    Attributes:
        node: the graph node the step belongs to (a node may lower to several steps).
        name: a Python identifier, unique in the plan; the step's bound objects are ``<name>_<what>``.
        inputs, outputs: tensor keys (``(node_id, port)`` or ``(node_id, "part")`` for a node's insides).
        inplace: the input whose array the output may take over when that input dies here.
        stage: a :class:`~fusenet.graph._kernels.Stage` for input 0 (convolutions), else ``None``.
        strided_out: the step can write into a strided view (a stage interior).
        snapshots: the layers whose weights the step copied or folded (checked for changes by the plan).
    """

    kind = "kernel"
    inplace = None
    stage = None
    strided_out = False
    fresh = False  # a "call" step whose results never view its inputs

    def __init__(self, node, name, inputs, outputs, snapshots=()):
        self.node, self.name = node, name
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.snapshots = tuple(snapshots)
        self.names = None  # the plan's identifier registry (set by the plan)
        self.fixed_inputs = [True] * len(self.inputs)  # which inputs live in the plan's arrays (set by the plan)
        self._syms = {}

    def sym(self, what: str) -> str:
        """The identifier of the step's bound object ``what`` (``<name>_<what>``, unique in the plan)."""
        name = self._syms.get(what)
        if name is None:
            base = f"{self.name}_{what}"
            name = self.names.make(base) if self.names is not None else base
            self._syms[what] = name
        return name

    def workspaces(self, batch, strided_out: bool, bordered: bool = False) -> dict:
        """``{name: (shape, dtype)}`` scratch arrays for one call (besides a stage); ``strided_out``: the output is
        the interior of the next convolution's stage, ``bordered``: of its zero-bordered grid."""
        return {}

    def emit(self, ctx) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, ctx) -> dict:
        return {}

    def describe(self) -> str:
        return f"{self.node.name} ({self.node.type_name})"


# ---------------------------------------------------------------- helpers for emitted code
def _rows(ctx, key, sym_name, width):
    """An expression for tensor ``key`` as a ``(rows, width)`` matrix (and whether a bound view is needed)."""
    name = ctx.name(key)
    if len(ctx.tensor(key).shape) == 2:
        return name, False
    if ctx.fixed(key):
        return sym_name, True
    return f"{name}.reshape(-1, {width})", False


def _act_lines(ctx, step, fn, target):
    """Lines applying the activation ``fn`` in place on ``target`` (an expression)."""
    if fn is None or fn.name == "linear":
        return []
    if is_plain_relu(fn):
        return [f"_maximum({target}, 0, out={target})"]
    return [f"{target}[...] = {step.sym('act')}({target})"]


# ---------------------------------------------------------------- Dense
class DenseStep(Step):
    """``y = act(x @ kernel + bias)``: one GEMM into the output, with the bias (:func:`~fusenet.fusion.dense.dense_into`:
    on :data:`~fusenet.fusion.dense.NT_ROWS` rows or more, the bias broadcast first and one accumulating GEMM on the
    transposed kernel), then the activation in place."""

    def __init__(self, node, name, kernel, bias, act, snapshots=(), live=False):
        super().__init__(node, name, node.inputs[:1], [(node.id, 0)], snapshots)
        self.kernel, self.bias, self.act = kernel, bias, act
        self.live = live  # the kernel is the layer's own parameter (updated in place): no transposed copy of it
        self.kernel_t = None  # made on the first binding with enough rows

    def emit(self, ctx):
        x, out = self.inputs[0], self.outputs[0]
        units = self.kernel.shape[-1]
        x2, self._bind_x = _rows(ctx, x, self.sym("x"), self.kernel.shape[0])
        y2, self._bind_y = _rows(ctx, out, self.sym("y"), units)
        lines = [f"{self.sym('gemm')}({x2}, {y2})"]
        elementwise = self.act is None or getattr(self.act, "elementwise", False)
        return lines + _act_lines(ctx, self, self.act, y2 if elementwise else ctx.name(out))

    def bind(self, ctx):
        rows = math.prod(ctx.array(self.outputs[0]).shape[:-1])
        kernel_t = None
        if rows >= NT_ROWS and not self.live:
            if self.kernel_t is None:
                self.kernel_t = np.ascontiguousarray(self.kernel.T)
            kernel_t = self.kernel_t
        out = {self.sym("gemm"): functools.partial(dense_into, kernel=self.kernel, kernel_t=kernel_t, bias=self.bias)}
        if self.act is not None and not is_plain_relu(self.act):
            out[self.sym("act")] = self.act.forward
        if self._bind_x:
            out[self.sym("x")] = ctx.array(self.inputs[0]).reshape(-1, self.kernel.shape[0])
        if self._bind_y:
            out[self.sym("y")] = ctx.array(self.outputs[0]).reshape(-1, self.kernel.shape[-1])
        return out


def _dense_parts(layer):
    """``(kernel, bias, activation, snapshots)`` of a Dense-like layer at inference, or ``None``."""
    if type(layer) is Dense:
        return layer._params["kernel"], layer._params.get("bias"), layer.activation, ()
    if isinstance(layer, _FusedDenseStages):
        kernel, bias = layer.folded()
        return kernel, bias, layer.activation, ()
    if type(layer) is FusedAffineDense:
        kernel, bias = layer.folded()
        return kernel, bias, layer.second.activation, ()
    return None


# ---------------------------------------------------------------- convolutions
class ConvStep(Step):
    """A convolution (:class:`~fusenet.graph._kernels.ConvSpec`) on its staged input 0, written into the output;
    with ``residual`` (input 1) added before the activation."""

    strided_out = True

    def __init__(self, node, name, inputs, output, spec: ConvSpec, snapshots=()):
        super().__init__(node, name, inputs, [output], snapshots)
        self.spec = spec
        self.stage = spec.stage

    def _staged_residual(self) -> bool:
        """The residual is an array the plan does not own (a model input): it is copied in on each call."""
        return len(self.inputs) > 1 and not self.fixed_inputs[1]

    def workspaces(self, batch, strided_out, bordered=False):
        ws = self.spec.workspaces(batch, strided_out, bordered)
        if self._staged_residual():
            ws["residual"] = (concrete(self.spec.out_shape, batch), self.spec.dtype)
        return ws

    def emit(self, ctx):
        args = ", ".join(ctx.name(k) for k in self.inputs)
        return [f"{self.sym('conv')}({args})"]

    def bind(self, ctx):
        xp = ctx.stage_array()
        copy = xp is not None and not ctx.elided
        if xp is None:  # no padding: the input buffer itself is the stage
            xp = ctx.array(self.inputs[0])
        ws = ctx.workspace_arrays()
        residual = None
        if len(self.inputs) > 1:
            residual = ws["residual"] if self._staged_residual() else ctx.array(self.inputs[1])
        runner = self.spec.bind(xp, ctx.array(self.outputs[0]), ws, residual=residual,
                                border=ctx.border_stage(self.outputs[0]))
        return {self.sym("conv"): StagedConv(runner, ctx.stage_array(), self.stage, copy,
                                             residual if self._staged_residual() else None)}


def _geometry(layer, shape):
    return layer._geometry(tuple(shape))


def _conv_parts(layer, in_shape):
    """``(kernel, bias, geometry, groups, activation)`` of a plain convolution layer, or ``None``."""
    if getattr(layer, "data_format", "channels_last") not in (None, "channels_last"):
        return None
    act = layer.activation
    if act is not None and act.name != "linear" and not getattr(act, "elementwise", False):
        return None
    geom = _geometry(layer, in_shape)
    if type(layer) in _CONVS:
        return layer._params["kernel"], layer._params.get("bias"), geom, layer.groups, act
    if type(layer) is DepthwiseConv2D:
        k = layer._params["depthwise_kernel"]
        kh, kw, c, m = k.shape
        return k.reshape(kh, kw, 1, c * m), layer._params.get("bias"), geom, c, act
    return None


def _stage_parts(stage, folded, in_shape):
    """``(kernel, bias, geometry, groups)`` of a fused conv stage on its folded weights, or ``None``."""
    op = stage.op
    kernel, bias = folded
    if op.kind in ("conv", "depthwise"):
        if getattr(op.layer, "data_format", "channels_last") not in (None, "channels_last"):
            return None
        return kernel, bias, _geometry(op.layer, in_shape), op.groups(in_shape[-1])
    if op.kind == "pointwise":
        sizes = tuple(in_shape[1:-1])
        ones = (1,) * len(sizes)
        return kernel, bias, ops.ConvGeometry(sizes, sizes, ones, ones, ones, (0,) * len(sizes)), 1
    return None


def _conv_spec(in_shape, dtype, kernel, bias, geom, groups, act=None, pool=None, residual=False):
    return ConvSpec(in_shape, kernel, bias, geom, groups, dtype, epilogue=act_epilogue(act), pool=pool,
                    residual=residual)


# ---------------------------------------------------------------- element-wise and the rest
class ReluStep(Step):
    """``y = max(x, 0)`` (in place when ``x`` dies here)."""

    inplace = 0
    strided_out = True

    def emit(self, ctx):
        return [f"_maximum({ctx.name(self.inputs[0])}, 0, out={ctx.name(self.outputs[0])})"]


class AffineStep(Step):
    """Inference BatchNormalization over the last axis: ``y = x * k + b`` with ``k = gamma / sqrt(var + eps)``
    and ``b = beta - mean * k`` computed once (the layer's own arithmetic, so the numbers are the same)."""

    inplace = 0
    strided_out = True

    def __init__(self, node, name, bn):
        super().__init__(node, name, node.inputs[:1], [(node.id, 0)], snapshots=(bn,))
        var = bn._state["moving_variance"].reshape(-1)
        mean = bn._state["moving_mean"].reshape(-1)
        inv = 1.0 / np.sqrt(var + bn.epsilon)
        k = inv * bn._params["gamma"].reshape(-1) if bn.scale else inv
        b = -mean * k
        if bn.center:
            b += bn._params["beta"].reshape(-1)
        self.k, self.b = k, b

    def emit(self, ctx):
        x, y = ctx.name(self.inputs[0]), ctx.name(self.outputs[0])
        return [f"_multiply({x}, {self.sym('scale')}, out={y})", f"_add({y}, {self.sym('shift')}, out={y})"]

    def bind(self, ctx):
        return {self.sym("scale"): self.k, self.sym("shift"): self.b}


class AddStep(Step):
    """``y = x0 + x1 + ...`` in the layer's order (in place into ``x0`` when it dies here)."""

    inplace = 0
    strided_out = True

    def emit(self, ctx):
        names = [ctx.name(k) for k in self.inputs]
        y = ctx.name(self.outputs[0])
        lines = [f"_add({names[0]}, {names[1]}, out={y})"]
        lines += [f"_add({y}, {n}, out={y})" for n in names[2:]]
        return lines


class MaxPoolStep(Step):
    """Max pooling into the output (one ``np.maximum`` per window tap on precomputed slices)."""

    strided_out = True

    def __init__(self, node, name, geom):
        super().__init__(node, name, node.inputs[:1], [(node.id, 0)])
        self.pool = MaxPoolInto(geom)

    def emit(self, ctx):
        return [f"{self.sym('pool')}({ctx.name(self.inputs[0])}, {ctx.name(self.outputs[0])})"]

    def bind(self, ctx):
        return {self.sym("pool"): self.pool}


class GlobalPoolStep(Step):
    """Global average or max pooling: ``y = mean (or max) of x.reshape(n, -1, c) over axis 1``, into the output."""

    def __init__(self, node, name, mode, channels):
        super().__init__(node, name, node.inputs[:1], [(node.id, 0)])
        self.mode, self.channels = mode, channels

    def emit(self, ctx):
        x = ctx.name(self.inputs[0])
        fn = "_mean" if self.mode == "average" else "_amax"
        return [f"{fn}({x}.reshape({x}.shape[0], -1, {self.channels}), axis=1, out={ctx.name(self.outputs[0])})"]


class ViewStep(Step):
    """A reshape (Flatten, Reshape): the output is a view of the input (or its copy when the input is
    not contiguous, as ``ndarray.reshape`` does)."""

    kind = "view"

    def emit(self, ctx):
        out = self.outputs[0]
        if ctx.fixed(out):
            return []  # bound once: a view of a planned array
        x = ctx.name(self.inputs[0])
        rest = ", ".join(str(d) for d in ctx.tensor(out).shape[1:])
        return [f"{ctx.name(out)} = {x}.reshape({x}.shape[0], {rest})"]

    def bind(self, ctx):
        return {}


class FunctionStep(Step):
    """An activation layer whose function is not ReLU: ``y = function.forward(x)`` (a new array)."""

    kind = "call"
    fresh = True  # never a view of its input

    def __init__(self, node, name, fn):
        super().__init__(node, name, node.inputs[:1], [(node.id, 0)])
        self.fn = fn

    def emit(self, ctx):
        return [f"{ctx.name(self.outputs[0])} = {self.sym('fn')}({ctx.name(self.inputs[0])})"]

    def bind(self, ctx):
        return {self.sym("fn"): self.fn.forward}


class CallStep(Step):
    """Any other layer: ``layer.forward(x, False)`` (or ``layer(x, False)`` when its input needs checking or
    casting); the result is a new array (or a view the layer made, which the plan keeps alive)."""

    kind = "call"

    def __init__(self, node, name, input_dtypes, training=False):
        n_out = max(len(node.output_shapes), 1)
        super().__init__(node, name, node.inputs, [(node.id, p) for p in range(n_out)])
        self.direct = _direct_ok(node.layer, node, input_dtypes)
        self.training = bool(training)

    def emit(self, ctx):
        args = [ctx.name(k) for k in self.inputs]
        arg = f"[{', '.join(args)}]" if self.node.multi_input else args[0]
        call = f"{self.sym('forward' if self.direct else 'call')}({arg}, {self.training})"
        outs = [ctx.name(k) for k in self.outputs]
        if len(outs) == 1:
            return [f"{outs[0]} = {call}"]
        return [f"{', '.join(outs)}, = {call}"]

    def bind(self, ctx):
        layer = self.node.layer
        return {self.sym("forward" if self.direct else "call"): layer.forward if self.direct else layer}


# ---------------------------------------------------------------- the lowering
def lower_node(node, name, in_tensors, fallback_only=False) -> list:
    """The steps computing ``node`` (a layer node of an optimised inference graph), given its input tensors."""
    layer = node.layer
    dtype = np.dtype(node.dtype)
    same_dtype = all(t.dtype == dtype for t in in_tensors) and layer.dtype is not None and np.dtype(layer.dtype) == dtype
    if fallback_only or not same_dtype or len(node.output_shapes) != 1:
        return [CallStep(node, name, [t.dtype.name for t in in_tensors])]
    in_shape = in_tensors[0].shape if in_tensors else None
    out = (node.id, 0)
    if node.multi_input:
        if type(layer) is Add and all(t.shape == in_tensors[0].shape for t in in_tensors) and len(in_tensors) >= 2:
            return [AddStep(node, name, node.inputs, [out])]
        return [CallStep(node, name, [t.dtype.name for t in in_tensors])]
    dense = _dense_parts(layer)
    if dense is not None and len(in_shape) >= 2:
        kernel, bias, act, snaps = dense
        return [DenseStep(node, name, kernel, bias, None if act.name == "linear" else act, snaps,
                          live=type(layer) is Dense)]
    steps = _lower_conv(node, name, layer, in_shape, dtype)
    if steps is not None:
        return steps
    if isinstance(layer, _FunctionLayer) and getattr(layer.function, "elementwise", False):
        if is_plain_relu(layer.function):
            return [ReluStep(node, name, node.inputs[:1], [out])]
        return [FunctionStep(node, name, layer.function)]
    if type(layer) is BatchNormalization and bn_condition(layer, training=False) is None:
        return [AffineStep(node, name, layer)]
    if type(layer) in _MAX_POOLS and layer.data_format in (None, "channels_last"):
        geom = ops.conv_geometry(tuple(in_shape[1:-1]), layer.pool_size, layer.strides, (1,) * layer.rank,
                                 layer.padding)
        return [MaxPoolStep(node, name, geom)]
    if type(layer) in _GLOBAL_POOLS and not layer.keepdims and layer.data_format in (None, "channels_last"):
        return [GlobalPoolStep(node, name, layer.mode, in_shape[-1])]
    if type(layer) in (Flatten, Reshape):
        return [ViewStep(node, name, node.inputs[:1], [out])]
    return [CallStep(node, name, [t.dtype.name for t in in_tensors])]


def _lower_conv(node, name, layer, in_shape, dtype):
    """Steps for the convolution family, or ``None``."""
    out = (node.id, 0)
    x = node.inputs[0]
    if type(layer) in _CONVS or type(layer) is DepthwiseConv2D:
        parts = _conv_parts(layer, in_shape)
        if parts is None:
            return None
        kernel, bias, geom, groups, act = parts
        return [ConvStep(node, name, [x], out, _conv_spec(in_shape, dtype, kernel, bias, geom, groups, act))]
    if type(layer) in (FusedConvBNActivation, FusedConvBNActivationPool):
        stage = layer.stages[0]
        parts = _stage_parts(stage, layer.folded()[0], in_shape)
        if parts is None or stage.op.kind not in ("conv", "depthwise"):
            return None
        kernel, bias, geom, groups = parts
        if type(layer) is FusedConvBNActivationPool:
            conv_shape = (in_shape[0],) + tuple(geom.out_sizes) + (kernel.shape[-1],)
            pool_geom = layer._pool_geometry(concrete(conv_shape, 1))
            spec = _conv_spec(in_shape, dtype, kernel, bias, geom, groups, pool=pool_geom)
        else:
            spec = _conv_spec(in_shape, dtype, kernel, bias, geom, groups, stage.act)
        return [ConvStep(node, name, [x], out, spec)]
    if type(layer) is FusedDepthwiseSeparableBNActivation:
        (k1, b1), (k2, b2) = layer.folded()
        first, second = layer.stages
        p1 = _stage_parts(first, (k1, b1), in_shape)
        if p1 is None:
            return None
        spec1 = _conv_spec(in_shape, dtype, *p1, act=first.act)
        mid = (node.id, "depthwise")
        p2 = _stage_parts(second, (k2, b2), spec1.out_shape)
        if p2 is None:
            return None
        spec2 = _conv_spec(spec1.out_shape, dtype, *p2, act=second.act)
        return [ConvStep(node, f"{name}_depthwise", [x], mid, spec1), ConvStep(node, name, [mid], out, spec2)]
    if type(layer) is FusedResidualConvBlock:
        folded = layer.folded()
        first, second = layer.body
        if any(s.op.kind not in ("conv", "depthwise") for s in layer.body + layer.shortcut):
            return None
        steps = []
        shortcut = x
        if layer.shortcut:
            ps = _stage_parts(layer.shortcut[0], folded[2], in_shape)
            spec_s = _conv_spec(in_shape, dtype, *ps)
            shortcut = (node.id, "shortcut")
            steps.append(ConvStep(node, f"{name}_shortcut", [x], shortcut, spec_s))
        p1 = _stage_parts(first, folded[0], in_shape)
        spec1 = _conv_spec(in_shape, dtype, *p1, act=first.act)
        mid = (node.id, "body")
        p2 = _stage_parts(second, folded[1], spec1.out_shape)
        spec2 = _conv_spec(spec1.out_shape, dtype, *p2, act=layer.act, residual=True)
        if tuple(spec2.out_shape[1:]) != tuple(node.output_shapes[0][1:]):
            return None
        steps += [ConvStep(node, f"{name}_body", [x], mid, spec1), ConvStep(node, name, [mid, shortcut], out, spec2)]
        return steps
    return None


def internal_tensors(steps, node) -> list:
    """``Tensor`` records of the insides of a node lowered to several steps (keys ``(node_id, "part")``)."""
    out = []
    for step in steps:
        for key in step.outputs:
            if isinstance(key[1], str) and isinstance(step, ConvStep):
                out.append(Tensor(key, step.spec.out_shape, step.spec.dtype, step, f"{step.name}"))
    return out
