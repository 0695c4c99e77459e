"""The exporter: walks a Sequential model, emits every layer, checks and writes the ONNX file."""

from __future__ import annotations

import os

import numpy as np

from ..activations.functions import Linear
from ..layers import core, embedding, regularization
from . import _layers, _sequence
from ._activations import emit_activation
from ._graph import GraphBuilder, Value

__all__ = ["export", "supported_layers", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization

#: layers that are the identity at inference: removed from the graph
_IDENTITY = (core.Input, core.Identity, regularization.Dropout, regularization.SpatialDropout1D,
             regularization.SpatialDropout2D, regularization.SpatialDropout3D, regularization.GaussianNoise,
             regularization.GaussianDropout, regularization.AlphaDropout, regularization.ActivityRegularization)

_EMITTERS = {**_layers.EMITTERS, **_sequence.EMITTERS}


def supported_layers() -> list:
    """The names of the layer classes :func:`export` maps to ONNX (fused layers are exported through
    the layers they replaced; the inference-time identities are removed)."""
    return sorted({cls.__name__ for cls in _EMITTERS} | {cls.__name__ for cls in _IDENTITY})


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fusenet.onnx.export needs the 'onnx' package: pip install onnx (the fusenet extra 'onnx'; onnxruntime "
            "runs the exported file)."
        ) from exc


# ---------------------------------------------------------------- BatchNormalization folding
def _fold_target(prev, bn):
    """Whether ``bn`` (inference) can be folded into the layer ``prev`` that feeds it."""
    from ..layers import convolution
    from ..layers.normalization import BatchNormalization

    if type(bn) is not BatchNormalization or not bn.built or not prev.built:
        return None
    if list(bn._axes) != [len(bn.build_input_shape) - 1]:
        return None
    if type(getattr(prev, "activation", None)) is not Linear:
        return None
    kinds = {core.Dense: "dense", convolution.Conv1D: "dense", convolution.Conv2D: "dense",
             convolution.Conv3D: "dense", convolution.DepthwiseConv2D: "depthwise",
             convolution.SeparableConv2D: "separable", convolution.Conv1DTranspose: "transpose",
             convolution.Conv2DTranspose: "transpose"}
    return kinds.get(type(prev))


def _folded_weights(w, bn, kind):
    """The weights ``w`` (a dict, Keras names) of the layer feeding ``bn`` with ``bn`` folded in."""
    from ..fusion import folding

    bn_args = (bn._params.get("gamma"), bn._params.get("beta"), bn._state["moving_mean"],
               bn._state["moving_variance"], bn.epsilon)
    if kind == "dense":
        kernel, bias = folding.fold_batchnorm(w["kernel"], w.get("bias"), *bn_args)
        return {"kernel": kernel, "bias": bias}
    if kind == "depthwise":
        kernel, bias = folding.fold_batchnorm_depthwise(w["depthwise_kernel"], w.get("bias"), *bn_args)
        return {"depthwise_kernel": kernel, "bias": bias}
    if kind == "separable":
        kernel, bias = folding.fold_batchnorm(w["pointwise_kernel"], w.get("bias"), *bn_args)
        return {"depthwise_kernel": w["depthwise_kernel"], "pointwise_kernel": kernel, "bias": bias}
    kernel, bias = folding.fold_batchnorm_transpose(w["kernel"], w.get("bias"), *bn_args)
    return {"kernel": kernel, "bias": bias}


def _flatten_layers(layers) -> list:
    """Fused layers replaced by the layers they replaced (recursively), inference identities removed."""
    from ..fusion.base import FusedLayer

    flat = []
    for layer in layers:
        if isinstance(layer, FusedLayer):
            flat.extend(_flatten_layers(layer.source_layers))
        elif type(layer) not in _IDENTITY:
            flat.append(layer)
    return flat


# ---------------------------------------------------------------- the context
class _Context:
    """What the emitters see: the graph builder, the folded weights and the dispatch."""

    def __init__(self, g: GraphBuilder, fused: bool):
        self.g = g
        self.fused = fused
        self._overrides: dict = {}

    def array(self, a):
        return np.asarray(a, dtype=self.g.dtype)

    def weights(self, layer) -> dict:
        """The arrays to export for ``layer``: its own, or those with a BatchNormalization folded in."""
        if id(layer) in self._overrides:
            return self._overrides[id(layer)]
        return {**layer._params, **layer._state}

    def activate(self, layer, fn, v):
        """``fn`` (an ActivationFunction) applied to ``v``, named after ``layer``."""
        return emit_activation(self.g, fn, v, layer.describe())

    def expand(self, layers) -> list:
        """The layers to emit: fused layers replaced by the layers they replaced, identities removed,
        and (``fused``) every BatchNormalization folded into the Dense/convolution feeding it."""
        out = []
        for layer in _flatten_layers(layers):
            kind = _fold_target(out[-1], layer) if self.fused and out else None
            if kind is not None:
                self._overrides[id(out[-1])] = _folded_weights(self.weights(out[-1]), layer, kind)
                continue
            out.append(layer)
        return out

    def emit_sequence(self, layers, v):
        for layer in self.expand(layers):
            v = self.emit_layer(layer, v)
        return v

    def emit_layer(self, layer, v):
        from ..fusion.base import FusedLayer

        if isinstance(layer, FusedLayer) or type(layer) in _IDENTITY:
            return self.emit_sequence([layer], v)
        emitter = _EMITTERS.get(type(layer))
        if emitter is None:
            raise ValueError(
                f"fusenet.onnx.export: {layer.describe()} has no ONNX mapping (class "
                f"{type(layer).__module__}.{type(layer).__name__}). Supported layers: {supported_layers()}"
            )
        if not layer.built:
            raise ValueError(f"fusenet.onnx.export: {layer.describe()} is not built; build the model first.")
        with self.g.scope(layer.name):
            return emitter(self, layer, v)



# ---------------------------------------------------------------- the model
def _check_opset(opset):
    import onnx

    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"fusenet.onnx.export: expected opset to be an int. Received: opset={opset!r}")
    if not MIN_OPSET <= int(opset) <= latest:
        raise ValueError(
            f"fusenet.onnx.export: expected opset between {MIN_OPSET} (LayerNormalization) and {latest} (the newest "
            f"this onnx package knows). Received: opset={opset}"
        )
    return int(opset)


def _model_dtype(model):
    """The float dtype of the model's weights and computation (the first layer that has one)."""
    for layer in model._all_layers():
        if layer.dtype is not None and not isinstance(layer, core.Input):
            return np.dtype(layer.dtype)
    return np.dtype(model._all_layers()[0].dtype or "float32")


def _tensor_type(dtype):
    from onnx import TensorProto

    return {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float64"): TensorProto.DOUBLE,
            np.dtype("float16"): TensorProto.FLOAT16, np.dtype("int64"): TensorProto.INT64}[np.dtype(dtype)]


def _dims(shape):
    return ["batch"] + [f"dim_{i}" if d is None else int(d) for i, d in enumerate(shape[1:], start=1)]


def build_model_proto(model, opset=DEFAULT_OPSET, fused=True):
    """The ``onnx.ModelProto`` of ``model`` (checked), without writing it. See :func:`export`."""
    _require_onnx()
    import onnx
    from onnx import helper

    from ..models.sequential import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"fusenet.onnx.export: expected a fusenet Sequential model. Received: {type(model).__name__}")
    opset = _check_opset(opset)
    if not model.built:
        raise ValueError(f"fusenet.onnx.export: {model.describe()} is not built; give it an input shape "
                         "(layers.Input(shape)) or call it on data first.")
    dtype = _model_dtype(model)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"fusenet.onnx.export: only float32 and float64 models can be exported. Received: {dtype}")
    g = GraphBuilder(opset, dtype)
    ctx = _Context(g, bool(fused))
    layers = _flatten_layers(model._all_layers())
    ids = bool(layers) and type(layers[0]) is embedding.Embedding
    in_dtype = np.dtype(np.int64) if ids else dtype
    input_name = g.fresh("input")
    v = Value(input_name, model.input_shape, in_dtype)
    with g.scope(model.name):
        v = ctx.emit_sequence(model._all_layers(), v)
        v = g.native(v)
    output_name = "output"
    producer = next((n for n in reversed(g.nodes) if v.name in n.output), None)
    if producer is None:  # the model is the identity
        with g.scope(model.name):
            g.op("Identity", [v.name], outputs=[output_name])
    else:  # the last node writes the graph's output (and whoever reads that tensor reads it there)
        producer.output[list(producer.output).index(v.name)] = output_name
        for node in g.nodes:
            for i, name in enumerate(node.input):
                if name == v.name:
                    node.input[i] = output_name
    out_shape = model.output_shape
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(input_name, _tensor_type(in_dtype), _dims(model.input_shape))],
        [helper.make_tensor_value_info(output_name, _tensor_type(dtype), _dims(out_shape))],
        g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    from .. import __version__

    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fusenet", producer_version=__version__,
                              doc_string=f"fusenet model {model.name!r} ({'fused' if fused else 'unfused'} export)")
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=DEFAULT_OPSET, fused=True):
    """Write ``model`` (a built :class:`~fusenet.models.Sequential`) to ``path`` as an ONNX file.

    Every inference-time layer becomes standard ONNX operators (see :mod:`fusenet.onnx`); the
    graph has one input ``"input"`` (fusenet's channels-last layout, dynamic batch dimension
    ``"batch"``; ``int64`` ids when the model starts with an Embedding) and one output ``"output"``.
    Node names are the layers' names. ``fused=True`` folds every BatchNormalization that follows
    a Dense/convolution into its weights (fused layers are always exported through the layers they
    replaced); ``fused=False`` keeps BatchNormalization as its own operator. The model is checked
    with ``onnx.checker.check_model(full_check=True)`` before the file is written atomically.

    Returns the ``onnx.ModelProto``. Raises ``ValueError`` naming a layer without an ONNX mapping
    (and listing the supported layers), ``TypeError`` for a non-Sequential model.
    """
    proto = build_model_proto(model, opset=opset, fused=fused)
    data = proto.SerializeToString()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    from ..interop._atomic import atomic_write

    atomic_write(os.fspath(path), write, owner="fusenet.onnx.export")
    return proto
