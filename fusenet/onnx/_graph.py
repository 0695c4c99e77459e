"""The ONNX graph under construction: nodes, initializers, names, and the data layout of every tensor.

Every tensor of the graph is a :class:`Value`. Its ``shape`` is always given in fusenet's own
(channels-last) axis order, batch first (``None`` for an unknown size); ``layout`` says how the
tensor is actually stored in the graph:

- ``"native"``: in fusenet's order, e.g. ``(N, H, W, C)``;
- ``"cf"`` (channels first): the last axis moved to position 1, e.g. ``(N, C, H, W)``, the layout
  ONNX's Conv, pooling and BatchNormalization work in. Only tensors of rank >= 3 are ever ``"cf"``.

A rank-2 tensor produced by flattening a ``"cf"`` tensor may also carry ``flat_perm``, an index
array ``p`` with ``native[:, j] == stored[:, p[j]]``: the next Dense absorbs it by permuting its
kernel rows (``kernel'[p] = kernel``), anything else gathers the columns back into order.

Layout changes are explicit Transposes (memoised, so a tensor is transposed at most once per
target layout): a convolutional part runs entirely in ``"cf"``, with one Transpose where it begins
and, if needed, one where it ends.
"""

from __future__ import annotations

import contextlib

import numpy as np

__all__ = ["Value", "GraphBuilder", "INT64_MAX"]

INT64_MAX = np.iinfo(np.int64).max


class Value:
    """A tensor of the graph: its ONNX ``name``, native-order ``shape``, storage ``layout`` and
    optional ``flat_perm`` (see the module docstring); ``dtype`` is a NumPy dtype."""

    __slots__ = ("name", "shape", "layout", "flat_perm", "dtype")

    def __init__(self, name, shape, dtype, layout="native", flat_perm=None):
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.layout = layout if len(self.shape) >= 3 else "native"
        self.flat_perm = flat_perm

    @property
    def rank(self) -> int:
        return len(self.shape)

    def like(self, name, shape=None, dtype=None):
        """A new Value stored like this one (same layout and flat_perm)."""
        return Value(name, self.shape if shape is None else shape, self.dtype if dtype is None else dtype,
                     self.layout, self.flat_perm)

    def __repr__(self):
        return f"Value({self.name!r}, shape={self.shape}, layout={self.layout!r}, flat_perm={self.flat_perm is not None})"


def cf_perm(rank: int) -> tuple:
    """The Transpose permutation native -> channels-first: ``(0, r-1, 1, ..., r-2)``."""
    return (0, rank - 1) + tuple(range(1, rank - 1))


def native_perm(rank: int) -> tuple:
    """The Transpose permutation channels-first -> native: ``(0, 2, ..., r-1, 1)``."""
    return (0,) + tuple(range(2, rank)) + (1,)


class GraphBuilder:
    """Collects nodes and initializers; names nodes after the layer being exported.

    ``scope(name)`` sets the layer whose nodes are being emitted: its first node is named exactly
    ``name`` (the layer's name), the others ``name/OpType`` (``_1``, ``_2``, ... if repeated).
    """

    def __init__(self, opset: int, dtype):
        import onnx  # noqa: F401  (the optional dependency; the caller checked it)
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.opset = int(opset)
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.initializers: list = []
        self._tensor_names: set = set()
        self._node_names: set = set()
        self._scopes: list = []
        self._memo: dict = {}

    # ------------------------------------------------------------ names
    def fresh(self, hint: str) -> str:
        """A tensor name not used yet, derived from ``hint``."""
        base = hint or "t"
        name, k = base, 0
        while name in self._tensor_names:
            k += 1
            name = f"{base}_{k}"
        self._tensor_names.add(name)
        return name

    def _node_name(self, op_type: str, aux: bool = False) -> str:
        scope = self._scopes[-1] if self._scopes else op_type
        candidates = [scope] if scope not in self._node_names and not aux else []
        base = f"{scope}/{op_type}"
        candidates.append(base)
        for name in candidates:
            if name not in self._node_names:
                self._node_names.add(name)
                return name
        k = 1
        while f"{base}_{k}" in self._node_names:
            k += 1
        self._node_names.add(f"{base}_{k}")
        return f"{base}_{k}"

    @contextlib.contextmanager
    def scope(self, name: str):
        """Nodes created inside are named after ``name`` (a layer's name)."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    @property
    def prefix(self) -> str:
        return self._scopes[-1] if self._scopes else "graph"

    # ------------------------------------------------------------ constants
    def const(self, array, hint: str) -> str:
        """An initializer holding ``array`` (dtype kept) named ``<layer>/<hint>``."""
        array = np.ascontiguousarray(array)
        name = self.fresh(f"{self.prefix}/{hint}")
        self.initializers.append(self.numpy_helper.from_array(array, name=name))
        return name

    def fconst(self, value, hint: str = "const") -> str:
        """A float constant (scalar or array) in the model's float dtype."""
        return self.const(np.asarray(value, dtype=self.dtype), hint)

    def iconst(self, values, hint: str = "shape") -> str:
        """A 1-D int64 constant."""
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    # ------------------------------------------------------------ nodes
    def op(self, op_type: str, inputs, n_out: int = 1, hint: str | None = None, outputs=None, aux: bool = False,
           **attrs):
        """Add a node; returns its output name (or a list when ``n_out > 1`` or ``outputs`` is given).

        ``outputs`` may name the outputs explicitly ("" for an omitted optional output). ``aux=True``
        marks a helper node (a layout change) that never takes the layer's own name.
        """
        if outputs is None:
            stem = f"{self.prefix}/{hint or op_type}"
            outputs = [self.fresh(stem if i == 0 else f"{stem}_{i}") for i in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = self.helper.make_node(op_type, list(inputs), list(outputs), name=self._node_name(op_type, aux), **attrs)
        self.nodes.append(node)
        return outputs[0] if n_out == 1 and len(outputs) == 1 else list(outputs)

    # ------------------------------------------------------------ opset-dependent operators
    def reduce(self, op_type: str, x: str, axes, keepdims: bool = True) -> str:
        """``ReduceMean``/``ReduceSum``/``ReduceMax``/... over ``axes`` (attribute before opset 18,
        input from 18 on; ``ReduceSum`` takes an input since 13)."""
        axes = [int(a) for a in axes]
        as_input = self.opset >= 18 or op_type == "ReduceSum"
        if as_input:
            return self.op(op_type, [x, self.iconst(axes, "axes")], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=axes, keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.iconst(axes, "axes")])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.iconst(axes, "axes")])

    def transpose(self, x: str, perm, aux: bool = False) -> str:
        return self.op("Transpose", [x], perm=[int(p) for p in perm], aux=aux)

    def slice(self, x: str, starts, ends, axes, steps=None) -> str:
        inputs = [x, self.iconst(starts, "starts"), self.iconst(ends, "ends"), self.iconst(axes, "axes")]
        if steps is not None:
            inputs.append(self.iconst(steps, "steps"))
        return self.op("Slice", inputs)

    # ------------------------------------------------------------ layouts
    def native(self, v: Value) -> Value:
        """``v`` stored in fusenet's axis order, without a flat permutation."""
        if v.flat_perm is not None:
            key = (v.name, "unperm")
            if key not in self._memo:
                name = self.op("Gather", [v.name, self.iconst(v.flat_perm, "flatten_order")], axis=1, aux=True)
                self._memo[key] = Value(name, v.shape, v.dtype)
            return self._memo[key]
        if v.layout == "native":
            return v
        key = (v.name, "native")
        if key not in self._memo:
            name = self.transpose(v.name, native_perm(v.rank), aux=True)
            self._memo[key] = Value(name, v.shape, v.dtype, "native")
        return self._memo[key]

    def channels_first(self, v: Value) -> Value:
        """``v`` stored channels-first (tensors of rank <= 2 are returned unchanged)."""
        if v.rank < 3 or v.layout == "cf":
            return self.native(v) if v.flat_perm is not None else v
        key = (v.name, "cf")
        if key not in self._memo:
            name = self.transpose(v.name, cf_perm(v.rank), aux=True)
            self._memo[key] = Value(name, v.shape, v.dtype, "cf")
        return self._memo[key]

    def plain(self, v: Value) -> Value:
        """``v`` in any layout but without a flat permutation."""
        return self.native(v) if v.flat_perm is not None else v

    @staticmethod
    def stored_axis(v: Value, axis: int) -> int:
        """The storage axis of ``v`` holding the native axis ``axis`` (may be negative)."""
        rank = v.rank
        a = axis % rank
        if v.layout != "cf" or a == 0:
            return a
        return 1 if a == rank - 1 else a + 1

    def stored_array(self, v: Value, array_native):
        """A broadcast constant given in native order (any rank <= ``v.rank``, NumPy broadcasting
        rules) arranged for ``v``'s storage layout (full rank, permuted when ``v`` is channels-first)."""
        a = np.asarray(array_native)
        if a.ndim == 0 or v.layout != "cf":
            return a
        a = a.reshape((1,) * (v.rank - a.ndim) + a.shape)
        return np.transpose(a, cf_perm(v.rank))

    def stored_list(self, v: Value, per_axis) -> list:
        """A per-axis list given in native axis order, reordered for ``v``'s storage layout."""
        per_axis = list(per_axis)
        if v.layout != "cf":
            return per_axis
        return [per_axis[p] for p in cf_perm(v.rank)]
