"""The layer graph: nodes in topological order, each a layer call with its shapes and dtype."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["GraphNode", "LayerGraph", "TraceError", "TensorSpec"]


class TraceError(ValueError):
    """A model cannot be traced into a static graph (its structure may depend on input values,
    or fusenet does not know its wiring). ``reason`` says why; the model still runs interpreted."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TensorSpec:
    """The shape (batch dimension included, ``None`` for any size) and dtype of one model input."""

    shape: tuple
    dtype: str = None

    def __post_init__(self):
        try:
            shape = tuple(None if d is None else int(d) for d in self.shape)
        except TypeError as exc:
            raise TypeError(f"TensorSpec: expected shape to be a tuple of ints or None. Received: shape={self.shape!r}") from exc
        if not shape:
            raise ValueError(f"TensorSpec: expected a shape with a batch axis. Received: shape={self.shape!r}")
        object.__setattr__(self, "shape", shape)


def _fmt_shape(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


@dataclass(frozen=True)
class GraphNode:
    """One node of a :class:`LayerGraph`.

    Attributes:
        id: unique within the graph (an int; new nodes made by passes get fresh ids).
        kind: ``"input"`` (a model input; ``layer`` is its ``Input`` layer or ``None``) or ``"layer"``.
        layer: the layer this node calls (the model's own object unless a pass made a new one).
        inputs: ``((node_id, port), ...)``: where each input comes from (``port`` is the output
            index of the source; 0 except for layers with several outputs).
        input_shapes, output_shapes: one shape per input / per output (batch dimension included).
        dtype: the dtype of the node's output(s).
        multi_input: the layer is called on a list (merge layers, attention with ``[q, v]``).
        origin: where the layer lives in the model (``"block/body0"`` for parts of a composite).
        sources: the original layers a pass folded or fused into this node (empty otherwise).
    """

    id: int
    kind: str
    layer: object
    inputs: tuple = ()
    input_shapes: tuple = ()
    output_shapes: tuple = ()
    dtype: str = "float32"
    multi_input: bool = False
    origin: str = ""
    sources: tuple = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return self.layer.name if self.layer is not None else f"input_{self.id}"

    @property
    def type_name(self) -> str:
        return type(self.layer).__name__ if self.layer is not None else "Input"

    @property
    def input_ids(self) -> tuple:
        """The ids of the nodes feeding this one, in input order."""
        return tuple(src for src, _ in self.inputs)

    @property
    def output_shape(self):
        """The output shape (the first one for a layer with several outputs)."""
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def input_shape(self):
        """The input shape (a list of shapes for a multi-input layer)."""
        if self.multi_input:
            return list(self.input_shapes)
        return self.input_shapes[0] if self.input_shapes else None

    def replace(self, **changes) -> "GraphNode":
        return dataclasses.replace(self, **changes)


class LayerGraph:
    """A static graph of layer calls: ``nodes`` in topological order and ``outputs`` (``(node_id, port)``).

    The graph references layers; it never owns their weights. Passes
    (:mod:`fusenet.graph.passes`) return new graphs and never change a graph or its layers.
    ``notes`` records what each pass did. ``str(graph)`` is a table, :meth:`to_dot` Graphviz text.
    """

    def __init__(self, nodes, outputs, name="graph", notes=None):
        self.nodes = tuple(nodes)
        self.outputs = tuple((int(a), int(b)) for a, b in outputs)
        self.name = str(name)
        self.notes = list(notes or [])
        self._index = {}
        for position, node in enumerate(self.nodes):
            if not isinstance(node, GraphNode):
                raise TypeError(f"LayerGraph: expected GraphNode objects. Received: {node!r}")
            if node.id in self._index:
                raise ValueError(f"LayerGraph: two nodes have the id {node.id}.")
            if node.kind not in ("input", "layer"):
                raise ValueError(f"LayerGraph: node {node.id} has kind {node.kind!r}; expected 'input' or 'layer'.")
            if node.kind == "layer" and node.layer is None:
                raise ValueError(f"LayerGraph: layer node {node.id} has no layer.")
            if node.kind == "input" and node.inputs:
                raise ValueError(f"LayerGraph: input node {node.id} cannot have inputs.")
            for src, port in node.inputs:
                self._check_ref((src, port), f"node {node.id} ({node.name})")
            self._index[node.id] = node
        if not self.outputs:
            raise ValueError(f"LayerGraph {self.name!r}: expected at least one output.")
        for ref in self.outputs:
            self._check_ref(ref, "the outputs")

    def _check_ref(self, ref, who):
        src, port = ref
        node = self._index.get(src)
        if node is None:
            raise ValueError(
                f"LayerGraph {self.name!r}: {who} reads node {src}, which does not come before it (the nodes must be "
                "in topological order)."
            )
        if not 0 <= port < max(len(node.output_shapes), 1):
            raise ValueError(f"LayerGraph {self.name!r}: {who} reads output {port} of node {src}, which has "
                             f"{len(node.output_shapes)} output(s).")

    # ------------------------------------------------------------ queries
    def __len__(self):
        return len(self.nodes)

    def __iter__(self):
        return iter(self.nodes)

    def node(self, node_id) -> GraphNode:
        """The node with ``node_id``."""
        try:
            return self._index[node_id]
        except KeyError:
            raise ValueError(f"LayerGraph {self.name!r} has no node {node_id!r}.") from None

    def find(self, name) -> GraphNode:
        """The node whose layer is called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValueError(f"LayerGraph {self.name!r} has no node named {name!r}; nodes: {[n.name for n in self.nodes]}")

    @property
    def input_nodes(self) -> list:
        """The model inputs, in order."""
        return [n for n in self.nodes if n.kind == "input"]

    @property
    def layer_nodes(self) -> list:
        return [n for n in self.nodes if n.kind == "layer"]

    @property
    def layers(self) -> list:
        """The layers of the layer nodes, in order."""
        return [n.layer for n in self.nodes if n.kind == "layer"]

    @property
    def output_shapes(self) -> list:
        return [self._index[src].output_shapes[port] for src, port in self.outputs]

    def consumers(self) -> dict:
        """``{(node_id, port): [consumer node ids]}`` (a node reading one tensor twice appears twice)."""
        out = {}
        for node in self.nodes:
            for ref in node.inputs:
                out.setdefault(ref, []).append(node.id)
        return out

    def uses(self, ref, consumers=None) -> int:
        """How many times the tensor ``ref`` is read: by nodes, plus once per appearance among the outputs."""
        consumers = self.consumers() if consumers is None else consumers
        return len(consumers.get(tuple(ref), ())) + sum(1 for r in self.outputs if r == tuple(ref))

    def next_id(self) -> int:
        return max(self._index, default=-1) + 1

    def with_outputs(self, outputs) -> "LayerGraph":
        """The same nodes with other ``outputs`` (node ids or ``(node_id, port)``); unused nodes stay until
        :func:`~fusenet.graph.passes.eliminate_dead` removes them."""
        refs = [(o, 0) if isinstance(o, int) else tuple(o) for o in outputs]
        return LayerGraph(self.nodes, refs, name=self.name, notes=self.notes)

    def count(self, cls) -> int:
        """How many layer nodes hold an instance of ``cls``."""
        return sum(1 for n in self.nodes if n.kind == "layer" and isinstance(n.layer, cls))

    # ------------------------------------------------------------ printing
    def rows(self) -> list:
        """One dict per node: id, name, type, inputs, output shape(s), dtype, origin."""
        rows = []
        for node in self.nodes:
            inputs = ", ".join(str(src) if port == 0 else f"{src}:{port}" for src, port in node.inputs) or "-"
            shapes = " ".join(_fmt_shape(s) for s in node.output_shapes)
            rows.append({"id": node.id, "name": node.name, "type": node.type_name, "inputs": inputs,
                         "output_shape": shapes, "dtype": node.dtype, "origin": node.origin})
        return rows

    def table(self) -> str:
        """A printable table of the nodes (and the outputs and pass notes below it)."""
        header = ["id", "node (type)", "inputs", "output shape", "dtype", "origin"]
        body = [[str(r["id"]), f"{r['name']} ({r['type']})", r["inputs"], r["output_shape"], r["dtype"], r["origin"]]
                for r in self.rows()]
        widths = [max([len(header[i])] + [len(row[i]) for row in body]) for i in range(len(header))]

        def line(cells):
            return "  ".join(c.rjust(widths[0]) if i == 0 else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

        out = [f"LayerGraph {self.name!r}: {len(self.nodes)} nodes", line(header), line(["-" * w for w in widths])]
        out += [line(row) for row in body]
        out.append("outputs: " + ", ".join(str(s) if p == 0 else f"{s}:{p}" for s, p in self.outputs))
        out += [f"note: {note}" for note in self.notes]
        return "\n".join(out)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"<LayerGraph {self.name!r} nodes={len(self.nodes)} outputs={len(self.outputs)}>"

    def to_dot(self) -> str:
        """Graphviz ``digraph`` text: one box per node (name, type, output shape), edges labelled with shapes."""

        def esc(text):
            return str(text).replace("\\", "\\\\").replace('"', '\\"')

        def quote(text):
            return '"' + esc(text) + '"'

        lines = [f"digraph {quote(self.name)} {{", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
        for node in self.nodes:
            shapes = " ".join(_fmt_shape(s) for s in node.output_shapes)
            label = "\\n".join(esc(part) for part in (node.name, node.type_name, shapes))
            style = ", style=rounded" if node.kind == "input" else ""
            lines.append(f'  n{node.id} [label="{label}"{style}];')
        for node in self.nodes:
            for i, (src, port) in enumerate(node.inputs):
                shape = _fmt_shape(self._index[src].output_shapes[port])
                lines.append(f"  n{src} -> n{node.id} [label={quote(shape)}];")
        for k, (src, port) in enumerate(self.outputs):
            lines.append(f'  out{k} [label="output {k}", shape=oval];')
            lines.append(f"  n{src} -> out{k};")
        lines.append("}")
        return "\n".join(lines)
