"""Tracing: from a model (or a layer, or a list of layers) to a :class:`LayerGraph` with shapes.

``trace(model, input_spec)`` takes the model's wiring (its *structure*: a graph whose nodes call
the model's own layers), propagates the input shapes and dtypes through every layer with
``compute_output_shape`` (building unbuilt layers as their first call would), and expands
composite layers into their parts:

- ``Residual(body, shortcut, merge)``: the body chain and the shortcut chain from the same input,
  then the block's own merge layer (``Add`` by default) on ``[body, shortcut]``;
- ``TransformerEncoderBlock``: its sublayers in the order of its forward (pre-norm:
  ``LN1 -> MHA -> Dropout -> Add(x, .) -> LN2 -> Dense -> Dense -> Dropout -> Add(x1, .)``; post-norm:
  the norms after the two ``Add`` nodes); the two ``Add`` layers are new (no weights).

Which models have a structure: a :class:`~fusenet.layers.Layer`, a list of layers (a chain), and
model classes registered with :func:`register_structure` (``fusenet.models`` registers
``Sequential`` and the functional ``Model``). Anything else -- a model class with its own
``_forward`` (arbitrary Python, which may branch on the values), a layer marked ``dynamic=True``
-- is refused with :class:`TraceError` and runs interpreted.
"""

from __future__ import annotations

import numpy as np

from ..layers.attention import TransformerEncoderBlock
from ..layers.base import Layer
from ..layers.composite import Residual
from ..layers.merging import Add
from ..layers.symbolic import infer_output_shape
from ..utils import floatx, result_dtype
from ._graph import GraphNode, LayerGraph, TensorSpec, TraceError

__all__ = ["trace", "register_structure", "chain_graph", "structure_of", "input_specs", "check_traceable", "expand_composites"]

#: model class -> function(model) returning its structural LayerGraph
_STRUCTURES: dict = {}


def register_structure(cls: type, structure) -> None:
    """Declare that models of class ``cls`` (not subclasses that override ``_forward``/``_backward``)
    have a static wiring: ``structure(model)`` returns a :class:`LayerGraph` over the model's layers
    (shapes may be unknown; :func:`trace` fills them in)."""
    if not isinstance(cls, type) or not callable(structure):
        raise TypeError(f"register_structure: expected a class and a function. Received: {cls!r}, {structure!r}")
    _STRUCTURES[cls] = structure


def chain_graph(layers, name="chain", input_shape=None, input_dtype=None) -> LayerGraph:
    """The structure of a plain stack of ``layers`` (a leading ``Input`` layer becomes the input node)."""
    layers = list(layers)
    from ..layers.core import Input

    first = layers[0] if layers and isinstance(layers[0], Input) else None
    if first is not None:
        layers = layers[1:]
        input_shape = input_shape or first.shape
    shapes = (tuple(input_shape),) if input_shape is not None else ()
    nodes = [GraphNode(0, "input", first, output_shapes=shapes, dtype=input_dtype or (first.dtype if first else None)
                       or floatx())]
    for i, layer in enumerate(layers, start=1):
        if not isinstance(layer, Layer):
            raise TypeError(f"chain_graph: expected Layers. Received: {layer!r}")
        nodes.append(GraphNode(i, "layer", layer, inputs=((i - 1, 0),)))
    return LayerGraph(nodes, [(len(nodes) - 1, 0)], name=name)


def structure_of(model) -> LayerGraph:
    """The structural graph of ``model``; :class:`TraceError` when fusenet cannot know its wiring."""
    if isinstance(model, Layer):
        return chain_graph([model], name=model.name)
    if isinstance(model, (list, tuple)):
        if not model or not all(isinstance(layer, Layer) for layer in model):
            raise TypeError(f"trace: expected a model, a Layer or a non-empty list of Layers. Received: {model!r}")
        return chain_graph(model, name="chain")
    for cls in type(model).__mro__:
        structure = _STRUCTURES.get(cls)
        if structure is None:
            continue
        for method in ("_forward", "_backward"):
            if getattr(type(model), method, None) is not getattr(cls, method, None):
                raise TraceError(
                    f"{type(model).__name__} '{getattr(model, 'name', '?')}' overrides {method}() of {cls.__name__}: "
                    "its computation is arbitrary Python that may depend on input values, so it cannot be traced "
                    "into a static graph; it runs interpreted."
                )
        return structure(model)
    raise TraceError(
        f"cannot trace {type(model).__name__} {getattr(model, 'name', '')!r}: fusenet knows the wiring of Layers, lists "
        f"of layers and the model classes {sorted(c.__name__ for c in _STRUCTURES)} (see "
        "fusenet.graph.register_structure); any other model may branch on input values, so it runs interpreted."
    )


def _dynamic_reason(layer):
    """Why ``layer`` (or a sublayer) has a value-dependent structure, or ``None``."""
    if getattr(layer, "dynamic", False):
        return (f"{layer.describe()} is marked dynamic=True: its computation depends on input values, so it cannot be "
                "traced into a static graph")
    for sub in getattr(layer, "_sublayers", {}).values():
        reason = _dynamic_reason(sub)
        if reason:
            return reason
    return None


def check_traceable(model) -> LayerGraph:
    """The structure of ``model``, after refusing layers marked ``dynamic=True``."""
    structure = structure_of(model)
    for node in structure.nodes:
        if node.layer is not None:
            reason = _dynamic_reason(node.layer)
            if reason:
                raise TraceError(reason)
    return structure


# ---------------------------------------------------------------- input specs
def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(d is None or (isinstance(d, (int, np.integer)) and
                                                                  not isinstance(d, bool)) for d in value)


def _one_spec(value, what):
    if isinstance(value, TensorSpec):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"trace: expected {what} to be a numeric array. Received an array of dtype {value.dtype}.")
        return TensorSpec(value.shape, value.dtype.name)
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "dtype", None) is not None and not _is_shape(value):
        return TensorSpec(tuple(shape), np.dtype(value.dtype).name)  # a symbolic tensor or array-like with a dtype
    if _is_shape(value):
        return TensorSpec(tuple(value))
    raise TypeError(
        f"trace: expected {what} to be an example array, a shape tuple with the batch axis (e.g. (None, 32)) or a "
        f"fusenet.graph.TensorSpec. Received: {value!r}"
    )


def input_specs(input_spec, structure) -> list:
    """One :class:`TensorSpec` per input node of ``structure`` (from ``input_spec`` or the model's own shapes)."""
    inputs = structure.input_nodes
    if input_spec is None:
        specs = []
        for i, node in enumerate(inputs):
            if not node.output_shapes:
                raise ValueError(
                    f"trace: the input shape of {structure.name!r} is unknown (the model is not built); pass an example "
                    "array or a shape such as (None, 32) as input_spec."
                )
            specs.append(TensorSpec(node.output_shapes[0], node.dtype))
        return specs
    if len(inputs) == 1 and not (isinstance(input_spec, (list, tuple)) and not _is_shape(input_spec)):
        items = [input_spec]
    elif isinstance(input_spec, (list, tuple)) and not _is_shape(input_spec):
        items = list(input_spec)
    else:
        items = [input_spec]
    if len(items) != len(inputs):
        raise ValueError(
            f"trace: {structure.name!r} has {len(inputs)} input(s), but input_spec describes {len(items)}."
        )
    return [_one_spec(item, f"input_spec[{i}]" if len(items) > 1 else "input_spec") for i, item in enumerate(items)]


def _merge_input_shape(node, spec, index):
    """The spec's shape checked against the input node's declared shape (an ``Input`` layer's)."""
    declared = node.output_shapes[0] if node.output_shapes else None
    shape = spec.shape
    if declared is not None:
        if len(declared) != len(shape) or any(d is not None and s is not None and d != s
                                               for d, s in zip(declared[1:], shape[1:])):
            raise ValueError(
                f"trace: input {index} ({node.name}) expects shape {tuple(declared)}, but the input spec has shape "
                f"{tuple(shape)}."
            )
        shape = tuple(s if s is not None else d for d, s in zip(declared, shape))
        if declared[0] is not None and shape[0] is not None and shape[0] != declared[0]:
            raise ValueError(
                f"trace: input {index} ({node.name}) has a fixed batch size {declared[0]}, but the input spec has "
                f"shape {tuple(spec.shape)}."
            )
    return shape


# ---------------------------------------------------------------- propagation
def _layer_node(nid, layer, inputs, in_shapes, in_dtypes, multi, origin=""):
    reason = _dynamic_reason(layer)
    if reason:
        raise TraceError(reason)
    try:
        out_shapes, _ = infer_output_shape(layer, list(in_shapes) if multi else in_shapes[0], in_dtypes[0], multi,
                                           list(in_dtypes))
    except (ValueError, TypeError) as exc:
        got = ", ".join(str(tuple(s)) for s in in_shapes)
        raise ValueError(f"trace: {layer.describe()} cannot take input of shape {got}: {exc}") from exc
    dtype = layer.dtype or in_dtypes[0]
    return GraphNode(nid, "layer", layer, tuple(inputs), tuple(tuple(s) for s in in_shapes), tuple(out_shapes),
                     np.dtype(dtype).name, multi, origin)


def _propagate(structure, specs) -> LayerGraph:
    nodes, info = [], {}
    k = 0
    for node in structure.nodes:
        if node.kind == "input":
            spec = specs[k]
            shape = _merge_input_shape(node, spec, k)
            k += 1
            layer = node.layer
            if layer is not None:
                reference = np.empty(0, dtype=spec.dtype or layer.dtype or floatx())
                dtype = result_dtype(reference, layer.dtype).name
            else:
                dtype = np.dtype(spec.dtype or node.dtype or floatx()).name
            new = node.replace(output_shapes=(tuple(shape),), dtype=dtype)
        else:
            in_shapes = [info[ref][0] for ref in node.inputs]
            in_dtypes = [info[ref][1] for ref in node.inputs]
            new = _layer_node(node.id, node.layer, node.inputs, in_shapes, in_dtypes, node.multi_input, node.origin)
        nodes.append(new)
        for port, shape in enumerate(new.output_shapes):
            info[(new.id, port)] = (shape, new.dtype)
    return LayerGraph(nodes, structure.outputs, name=structure.name)


# ---------------------------------------------------------------- composite expansion
class _Builder:
    """Appends nodes with fresh ids, computing their shapes."""

    def __init__(self, graph_nodes, next_id):
        self.nodes = []
        self.info = {}
        for node in graph_nodes:
            for port, shape in enumerate(node.output_shapes):
                self.info[(node.id, port)] = (shape, node.dtype)
        self.next_id = next_id

    def add(self, layer, inputs, multi=False, origin=""):
        in_shapes = [self.info[ref][0] for ref in inputs]
        in_dtypes = [self.info[ref][1] for ref in inputs]
        node = _layer_node(self.next_id, layer, inputs, in_shapes, in_dtypes, multi, origin)
        self.next_id += 1
        self.nodes.append(node)
        for port, shape in enumerate(node.output_shapes):
            self.info[(node.id, port)] = (shape, node.dtype)
        return (node.id, 0)

    def register(self, node):
        self.nodes.append(node)
        for port, shape in enumerate(node.output_shapes):
            self.info[(node.id, port)] = (shape, node.dtype)


def _origin(node):
    return f"{node.origin}/{node.layer.name}" if node.origin else node.layer.name


def _expand_residual(node, b):
    block, x = node.layer, node.inputs[0]
    origin = _origin(node)
    y = x
    for i, layer in enumerate(block.body):
        y = b.add(layer, [y], origin=f"{origin}/body{i}")
    s = x
    for i, layer in enumerate(block.shortcut):
        s = b.add(layer, [s], origin=f"{origin}/shortcut{i}")
    return b.add(block.merge, [y, s], multi=True, origin=f"{origin}/merge")


def _new_add(block, suffix, shape):
    add = Add(name=f"{block.name}_{suffix}", dtype=block.dtype)
    add._build_for([shape, shape], block.dtype)
    return add


def _expand_encoder(node, b):
    block, x = node.layer, node.inputs[0]
    s = block._sublayers
    origin = _origin(node)
    shape = node.input_shapes[0]

    def chain(names, ref):
        for name in names:
            ref = b.add(s[name], [ref], origin=f"{origin}/{name}")
        return ref

    attend = ("attention", "attention_dropout")
    feed = ("feedforward_intermediate", "feedforward_output", "feedforward_dropout")
    add1, add2 = _new_add(block, "attention_add", shape), _new_add(block, "feedforward_add", shape)
    if block.norm_first:
        a = chain(("attention_norm",) + attend, x)
        x1 = b.add(add1, [x, a], multi=True, origin=f"{origin}/attention_add")
        f = chain(("feedforward_norm",) + feed, x1)
        return b.add(add2, [x1, f], multi=True, origin=f"{origin}/feedforward_add")
    a = chain(attend, x)
    x1 = chain(("attention_norm",), b.add(add1, [x, a], multi=True, origin=f"{origin}/attention_add"))
    f = chain(feed, x1)
    return chain(("feedforward_norm",), b.add(add2, [x1, f], multi=True, origin=f"{origin}/feedforward_add"))


_EXPANDERS = {Residual: _expand_residual, TransformerEncoderBlock: _expand_encoder}


def _expandable(node) -> bool:
    layer = node.layer
    return (node.kind == "layer" and type(layer) in _EXPANDERS and layer.built and not node.multi_input
            and layer.activity_regularizer is None)


def expand_composites(graph) -> LayerGraph:
    """``graph`` with every ``Residual`` and ``TransformerEncoderBlock`` node replaced by its parts (recursively)."""
    while any(_expandable(n) for n in graph.nodes):
        b = _Builder([], graph.next_id())
        redirect = {}

        def resolve(ref):
            while ref in redirect:
                ref = redirect[ref]
            return ref

        for node in graph.nodes:
            node = node.replace(inputs=tuple(resolve(r) for r in node.inputs))
            if _expandable(node):
                redirect[(node.id, 0)] = _EXPANDERS[type(node.layer)](node, b)
            else:
                b.register(node)
        graph = LayerGraph(b.nodes, [resolve(r) for r in graph.outputs], name=graph.name, notes=graph.notes)
    return graph


def trace(model, input_spec=None, expand: bool = True) -> LayerGraph:
    """The :class:`LayerGraph` of ``model`` for inputs described by ``input_spec``.

    Args:
        model: a ``Sequential``, a functional ``Model``, a ``Layer`` or a list of layers.
        input_spec: an example array, a shape with the batch axis (``(None, 32)`` or ``(8, 32)``), a
            :class:`TensorSpec`, or a list of these (one per model input). ``None``: the model's own input
            shapes (an ``Input`` layer's, or those a built model was built for).
        expand: expand ``Residual`` and ``TransformerEncoderBlock`` into their parts (default).

    Nodes come in topological order, each with its layer, input node ids, input and output shapes and
    dtype. The model is not changed, except that unbuilt layers are built as their first call would.

    Raises:
        TraceError: the model's structure may depend on input values (a model class with its own
            ``_forward``, a layer with ``dynamic=True``); it runs interpreted.
        ValueError: the input spec does not fit the model (the message names the layer and the shapes).
    """
    structure = check_traceable(model)
    specs = input_specs(input_spec, structure)
    graph = _propagate(structure, specs)
    return expand_composites(graph) if expand else graph
