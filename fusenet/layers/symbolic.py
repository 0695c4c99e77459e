"""Symbolic tensors: calling layers on shapes instead of arrays (the functional API).

A :class:`SymbolicTensor` carries a shape (batch dimension included, ``None`` for unknown sizes)
and a dtype, and remembers the :class:`SymbolicNode` (layer call) that produced it. Calling any
layer on symbolic tensors records a node and returns new symbolic tensors, whose shapes come
from the layer's ``compute_output_shape``; the layer is checked and built on the way, exactly
as its first call on data would build it. No array is computed.

What counts as symbolic input (the hook at the top of ``Layer.__call__``):

- a :class:`SymbolicTensor`;
- a :class:`~fusenet.layers.Input` layer *object*: in a functional context
  ``x = layers.Input((32, 32, 3))`` stands for its own output, so ``layers.Conv2D(16, 3)(x)``
  works as in Keras (the tensor is :func:`input_tensor(x) <input_tensor>`, created once per
  Input layer). The same ``Input`` object still works as the first layer of a ``Sequential``;
- a list or tuple holding any of these (multi-input layers such as ``Add``); mixing arrays and
  symbolic tensors in one call is refused with a ``TypeError``.

A layer called on incompatible shapes raises ``ValueError`` naming the layer, the layers that
produced its inputs and their shapes.

This module imports nothing from the rest of fusenet at import time (``layers.base`` imports it).
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["SymbolicTensor", "SymbolicNode", "is_symbolic", "input_tensor", "symbolic_call", "infer_output_shape"]

_IDS = itertools.count()


def _shape_text(shape) -> str:
    return str(tuple(shape))


class SymbolicNode:
    """One recorded layer call: ``layer`` applied to ``inputs`` (symbolic tensors) gave ``outputs``.

    ``multi_input`` tells whether the layer was called on a list. ``id`` grows with creation
    time, so sorting nodes by id gives a topological order of everything recorded so far.
    An ``Input`` layer's node has no inputs.
    """

    __slots__ = ("id", "layer", "inputs", "outputs", "multi_input")

    def __init__(self, layer, inputs, multi_input):
        self.id = next(_IDS)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.outputs = ()
        self.multi_input = bool(multi_input)

    @property
    def is_input(self) -> bool:
        return not self.inputs and _is_input_layer(self.layer)

    def __repr__(self):
        return f"<SymbolicNode {self.id} {self.layer.describe()} inputs={len(self.inputs)}>"


class SymbolicTensor:
    """A placeholder for an array: ``shape`` (batch included), ``dtype`` and the node that makes it.

    ``index`` is the position among the node's outputs (layers with several outputs, e.g. an RNN
    with ``return_state=True``). A symbolic tensor has no values: converting it to a NumPy array
    raises ``TypeError``.
    """

    __slots__ = ("shape", "dtype", "node", "index")

    def __init__(self, shape, dtype, node=None, index=0):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype).name
        self.node = node
        self.index = int(index)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def layer(self):
        """The layer that produces this tensor (an ``Input`` layer for a model input)."""
        return None if self.node is None else self.node.layer

    def describe(self) -> str:
        """``"the output of layer 'dense' (Dense) with shape (None, 16)"``, for messages."""
        if self.node is None:
            return f"a symbolic tensor with shape {_shape_text(self.shape)}"
        which = "the output" if len(self.node.outputs) <= 1 else f"output {self.index}"
        return f"{which} of {self.node.layer.describe()} with shape {_shape_text(self.shape)}"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            f"{self.describe()} is symbolic and has no values: build a model with "
            "fusenet.models.Model(inputs=..., outputs=...) and call the model on arrays."
        )

    def __repr__(self):
        src = "" if self.node is None else f" from {self.node.layer.describe()}"
        return f"<SymbolicTensor shape={self.shape} dtype={self.dtype}{src}>"


# ---------------------------------------------------------------- recognising symbolic input
_INPUT_CLASS = []


def _is_input_layer(x) -> bool:
    if not _INPUT_CLASS:
        from .core import Input  # imported late: layers.base imports this module

        _INPUT_CLASS.append(Input)
    return isinstance(x, _INPUT_CLASS[0])


def _is_symbolic_item(x) -> bool:
    return isinstance(x, SymbolicTensor) or _is_input_layer(x)


def is_symbolic(x) -> bool:
    """Whether a layer called on ``x`` should record a node instead of computing (see the module doc)."""
    if isinstance(x, (list, tuple)):
        return any(_is_symbolic_item(a) for a in x)
    return _is_symbolic_item(x)


def input_tensor(layer, new: bool = False) -> SymbolicTensor:
    """The symbolic tensor an ``Input`` layer stands for (created once and kept on the layer).

    ``new=True`` starts a fresh one (a model rebuilt from a config or a graph gets fresh tensors).
    The Input layer is built for its shape and dtype (``float32`` unless ``dtype=`` says otherwise).
    """
    if not _is_input_layer(layer):
        raise TypeError(f"input_tensor: expected a fusenet.layers.Input layer. Received: {layer!r}")
    tensor = getattr(layer, "_symbolic_output", None)
    if tensor is None or new:
        from ..utils import floatx

        if not layer.built:
            layer._build_for(layer.shape, layer.dtype or floatx())
        node = SymbolicNode(layer, (), False)
        tensor = SymbolicTensor(layer.shape, layer.dtype, node, 0)
        node.outputs = (tensor,)
        layer._symbolic_output = tensor
    return tensor


# ---------------------------------------------------------------- shape inference
def _as_shape(value):
    return tuple(None if d is None else int(d) for d in value)


def _normalise_output(out):
    """``(shapes, several)``: one shape tuple, or a list of them for a layer with several outputs."""
    if isinstance(out, list) and out and all(isinstance(s, (tuple, list)) for s in out):
        return [_as_shape(s) for s in out], True
    return [_as_shape(out)], False


def _probe(shapes, dtypes):
    """Tiny arrays (one sample) of ``shapes`` for the layer's own input checks; ``None`` when a
    non-batch size is unknown."""
    arrays = []
    for shape, dtype in zip(shapes, dtypes):
        if any(d is None for d in shape[1:]):
            return None
        arrays.append(np.zeros((1,) + tuple(shape[1:]), dtype=dtype))
    return arrays


def infer_output_shape(layer, input_shape, dtype, multi_input: bool, input_dtypes=None):
    """Check ``layer`` against ``input_shape`` (a shape, or a list of shapes when ``multi_input``),
    build it when needed (as its first call on data of dtype ``dtype`` would), and return
    ``(output_shapes, several_outputs)``. Raises the layer's own ``ValueError`` on a misfit.
    """
    from ..utils import result_dtype
    from .base import check_input

    build_dtype = result_dtype(np.empty(0, dtype), layer.dtype) if layer._cast_inputs else None
    if not multi_input:
        shape = _as_shape(input_shape)
        check_input(layer, shape, layer.input_spec)
        if not layer.built:
            try:  # refuse a misfit before building when the layer can tell without weights
                layer.compute_output_shape(shape)
            except ValueError:
                raise
            except Exception:  # noqa: BLE001 - some layers know their output shape only once built
                pass
            layer._build_for(shape, build_dtype)
            check_input(layer, shape, layer.input_spec)
        return _normalise_output(layer.compute_output_shape(shape))
    shapes = [_as_shape(s) for s in input_shape]
    if not layer.built:
        layer._build_for(shapes, build_dtype)
    check_shapes = getattr(layer, "_check_shapes", None)
    if callable(check_shapes):  # merge layers say it with the symbolic shapes
        check_shapes(shapes)
    probe = _probe(shapes, input_dtypes or [dtype] * len(shapes))
    if probe is not None:
        layer._prepare_input(probe)  # the layer's own checks of a list of inputs (merge shapes, ...)
    return _normalise_output(layer.compute_output_shape(shapes))


def _collect(layer, x):
    multi = isinstance(x, (list, tuple))
    items = list(x) if multi else [x]
    tensors = []
    for i, item in enumerate(items):
        if isinstance(item, SymbolicTensor):
            tensors.append(item)
        elif _is_input_layer(item):
            tensors.append(input_tensor(item))
        else:
            raise TypeError(
                f"{layer.describe()} was called on a list mixing symbolic tensors and other values: input {i} is a "
                f"{type(item).__name__}. A functional call takes only symbolic tensors (layers.Input(...) or the "
                "outputs of layers called on them)."
            )
    return tensors, multi


def symbolic_call(layer, x, training=False):
    """Record ``layer(x)`` for symbolic ``x``; return the output symbolic tensor (a list of them for a
    layer with several outputs). ``training`` is ignored: a functional model gets it at run time."""
    tensors, multi = _collect(layer, x)
    shapes = [t.shape for t in tensors]
    dtypes = [t.dtype for t in tensors]
    try:
        out_shapes, several = infer_output_shape(layer, shapes if multi else shapes[0], dtypes[0], multi, dtypes)
    except (ValueError, TypeError) as exc:
        sources = "; ".join(t.describe() for t in tensors)
        raise ValueError(f"{layer.describe()} cannot be called on {sources}: {exc}") from exc
    out_dtype = layer.dtype or dtypes[0]
    node = SymbolicNode(layer, tensors, multi)
    outputs = tuple(SymbolicTensor(s, out_dtype, node, i) for i, s in enumerate(out_shapes))
    node.outputs = outputs
    return list(outputs) if several else outputs[0]
