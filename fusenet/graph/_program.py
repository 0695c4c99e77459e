"""Running a :class:`~fusenet.graph.LayerGraph`: a fixed schedule over numbered value slots.

Forward runs the nodes in topological order; every tensor lives in one slot and is dropped
after its last reader (outputs are kept). Backward runs the schedule in reverse: each node's
output gradient is the sum of the gradients of its readers (fan-out), built without touching
any array a layer returned (the first sum allocates, later ones add in place into that new
array). Layers with several outputs get zeros for outputs that received no gradient.

The functional model (:class:`fusenet.models.Functional`) and the compiled callable
(:func:`fusenet.graph.compile`) both run through this one executor.
"""

from __future__ import annotations

import numpy as np

from ..layers.base import Layer

__all__ = ["Program"]


def _direct_ok(layer, node, input_dtypes) -> bool:
    """Whether ``layer.forward`` may be called without ``__call__``'s checks (inference plans only):
    the layer's call is the plain one, its inputs already have its dtype (so nothing is cast), and
    it has no activity regularizer (which ``__call__`` records)."""
    cls = type(layer)
    return (cls.__call__ is Layer.__call__ and cls._prepare_input is Layer._prepare_input and layer.built
            and layer.activity_regularizer is None and not node.multi_input and layer.dtype is not None
            and all(d == layer.dtype for d in input_dtypes))


class _Step:
    __slots__ = ("layer", "call", "inputs", "outputs", "multi_input", "free", "node_id")

    def __init__(self, layer, call, inputs, outputs, multi_input, node_id):
        self.layer = layer
        self.call = call
        self.inputs = inputs
        self.outputs = outputs
        self.multi_input = multi_input
        self.free = ()
        self.node_id = node_id


class Program:
    """The executable schedule of a graph.

    Args:
        graph: a :class:`~fusenet.graph.LayerGraph` with known output counts.
        direct: call ``layer.forward`` directly where nothing needs checking or casting (see
            :func:`_direct_ok`); only for inference plans whose input shapes and dtypes were checked.
    """

    def __init__(self, graph, direct: bool = False):
        self.graph = graph
        slots = {}

        def slot(ref):
            if ref not in slots:
                slots[ref] = len(slots)
            return slots[ref]

        dtypes = {}
        self.input_steps = []
        self.steps = []
        for node in graph.nodes:
            n_out = max(len(node.output_shapes), 1)
            for port in range(n_out):
                dtypes[(node.id, port)] = node.dtype
            if node.kind == "input":
                self.input_steps.append((node.layer, slot((node.id, 0))))
                continue
            ins = tuple(slot(ref) for ref in node.inputs)
            outs = tuple(slot((node.id, port)) for port in range(n_out))
            layer = node.layer
            in_dtypes = [dtypes[ref] for ref in node.inputs]
            call = layer.forward if direct and _direct_ok(layer, node, in_dtypes) else layer
            self.steps.append(_Step(layer, call, ins, outs, node.multi_input, node.id))
        self.output_slots = tuple(slots[tuple(ref)] for ref in graph.outputs)
        self.n_slots = len(slots)
        last = {}
        for i, step in enumerate(self.steps):
            for s in step.inputs:
                last[s] = i
        keep = set(self.output_slots)
        frees = [[] for _ in self.steps]
        for s, i in last.items():
            if s not in keep:
                frees[i].append(s)
        for step, free in zip(self.steps, frees):
            step.free = tuple(free)
        self._multi_meta = {}

    @property
    def n_inputs(self) -> int:
        return len(self.input_steps)

    # ------------------------------------------------------------ forward
    def forward(self, inputs, training: bool = False) -> list:
        """The outputs (a list, in the graph's output order) for ``inputs`` (a list, one per input)."""
        values = [None] * self.n_slots
        for (layer, s), x in zip(self.input_steps, inputs):
            values[s] = x if layer is None else layer(x, training)
        record = bool(training)
        for step in self.steps:
            if step.multi_input:
                arg = [values[s] for s in step.inputs]
            else:
                arg = values[step.inputs[0]]
            out = step.call(arg, training)
            if len(step.outputs) == 1:
                values[step.outputs[0]] = out
            else:
                for s, y in zip(step.outputs, out):
                    values[s] = y
                if record:
                    self._multi_meta[step.node_id] = [(np.shape(y), getattr(y, "dtype", None)) for y in out]
            for s in step.free:
                values[s] = None
        return [values[s] for s in self.output_slots]

    # ------------------------------------------------------------ backward
    @staticmethod
    def _accumulate(grads, owned, s, g):
        current = grads[s]
        if current is None:
            grads[s] = g
        elif s in owned:
            current += g
        else:
            grads[s] = current + g
            owned.add(s)

    def backward(self, output_grads) -> list:
        """Gradients with respect to the inputs (a list; ``None`` where none flows), after a forward with
        ``training=True``. ``output_grads`` has one array per output. Parameter gradients accumulate in
        the layers (``+=``), as every layer's ``backward`` does."""
        grads = [None] * self.n_slots
        owned = set()
        for s, g in zip(self.output_slots, output_grads):
            if g is not None:
                self._accumulate(grads, owned, s, g)
        for step in reversed(self.steps):
            outs = [grads[s] for s in step.outputs]
            for s in step.outputs:
                grads[s] = None
                owned.discard(s)
            if all(g is None for g in outs):
                continue  # nothing downstream reads this node's outputs
            if len(step.outputs) == 1:
                g = outs[0]
            else:
                meta = self._multi_meta.get(step.node_id)
                g = [o if o is not None else np.zeros(shape, dtype) for o, (shape, dtype) in zip(outs, meta)]
            layer = step.layer
            if layer.activity_regularizer is not None:
                g = layer.activity_gradient(g)
            dx = layer.backward(g)
            dxs = list(dx) if step.multi_input else [dx]
            for s, d in zip(step.inputs, dxs):
                if d is not None:
                    self._accumulate(grads, owned, s, d)
        result = []
        for layer, s in self.input_steps:
            g = grads[s]
            result.append(g if layer is None or g is None else layer.backward(g))
        return result
