"""Private: compiled plans as generated Python source.

:class:`InferencePlan` lowers an optimised inference graph into steps
(:mod:`fusenet.graph._lowering`), writes them out as one straight-line function over named arrays,
and binds that function, per batch size, to the arrays planned by liveness
(:mod:`fusenet.graph._memory`), the weights and the precomputed kernels. :class:`TrainingPlan`
writes the forward and backward of a training graph over the model's own layers (the backward is
the forward schedule reversed, with the fan-out sums written out).

The source is made here from the graph alone and compiled with ``compile``/``exec`` in a namespace
of the plan's own objects; it never comes from a file or from user text (layer names only appear
sanitised to identifiers and in comments).
"""

from __future__ import annotations

import keyword
import re

import numpy as np

from ._lowering import Tensor, internal_tensors, lower_node
from ._memory import MemoryPlan
from ._program import _direct_ok

__all__ = []  # private module

_HELPERS = {
    "_matmul": np.matmul, "_add": np.add, "_multiply": np.multiply, "_maximum": np.maximum, "_mean": np.mean,
    "_amax": np.amax, "_copyto": np.copyto, "_zeros_like": np.zeros_like,
}


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _comment(text) -> str:
    return " ".join(str(text).split())  # one line


class _Names:
    """Python identifiers from layer names: sanitised, unique, never a keyword or a helper name."""

    def __init__(self):
        self.used = set(_HELPERS) | {"forward", "backward", "np"}

    def make(self, base: str) -> str:
        name = re.sub(r"\W", "_", str(base)) or "v"
        if name[0].isdigit() or name.startswith("_"):
            name = "v_" + name.lstrip("_")
        if keyword.iskeyword(name):
            name += "_"
        candidate, k = name, 1
        while candidate in self.used:
            candidate = f"{name}_{k}"
            k += 1
        self.used.add(candidate)
        return candidate


def _own(value, storages):
    """``value`` itself, or a copy when it shares memory with the plan's arrays (a layer may return a view of its input)."""
    for s in storages:
        if np.may_share_memory(value, s):
            return value.copy()
    return value


# ---------------------------------------------------------------- inference
class _EmitContext:
    def __init__(self, plan):
        self.plan = plan

    def name(self, key):
        return self.plan.tensors[key].name

    def tensor(self, key):
        return self.plan.tensors[key]

    def fixed(self, key):
        return self.plan.fixed(key)


class _BindContext:
    def __init__(self, memory, index):
        self.memory, self.index = memory, index

    def array(self, key):
        return self.memory.arrays.get(key)

    def stage_array(self):
        return self.memory.stages.get(self.index)

    @property
    def elided(self):
        return self.index in self.memory.elided

    def workspace_arrays(self):
        return self.memory.workspaces.get(self.index, {})


class InferencePlan:
    """The steps, the source and the per-batch bindings of one inference plan.

    Args:
        graph: the optimised :class:`~fusenet.graph.LayerGraph` (shapes with a ``None`` batch axis when dynamic).
        input_dtypes: the dtypes of the arrays the plan is called with.
        lower: lower nodes into kernels (``False``: every node calls its layer, as a reference).
    """

    def __init__(self, graph, input_dtypes, lower=True, name="plan"):
        self.graph = graph
        names = _Names()
        self.tensors = {}
        self.steps = []
        self.input_keys, self.input_casts = [], []
        for node, dtype in zip(graph.input_nodes, input_dtypes):
            key = (node.id, 0)
            t = Tensor(key, node.output_shapes[0], node.dtype, None, names.make(node.name))
            t.step_index = None
            self.tensors[key] = t
            self.input_keys.append(key)
            self.input_casts.append(node.layer if np.dtype(dtype) != np.dtype(node.dtype) and node.layer is not None
                                    else None)
        for node in graph.layer_nodes:
            ins = [self.tensors[ref] for ref in node.inputs]
            steps = lower_node(node, node.name, ins, fallback_only=not lower)
            inner = {t.key: t for t in internal_tensors(steps, node)}
            for step in steps:
                index = len(self.steps)
                self.steps.append(step)
                for key in step.outputs:
                    if key in inner:
                        t = inner[key]
                        t.name = names.make(f"{node.name}_{key[1]}")
                    else:
                        shape = node.output_shapes[key[1]]
                        suffix = "" if len(step.outputs) == 1 else f"_{key[1]}"
                        t = Tensor(key, shape, node.dtype, step, names.make(f"{node.name}{suffix}"))
                    t.step_index = index
                    self.tensors[key] = t
                step.name = self.tensors[step.outputs[0]].name  # the step's objects are named after its output
                step.names = names
        self.output_keys = [tuple(ref) for ref in graph.outputs]
        self._fixed = {}
        for step in self.steps:
            for key in step.outputs:
                if step.kind == "kernel":
                    self._fixed[key] = True
                elif step.kind == "view":
                    self._fixed[key] = self._fixed.get(step.inputs[0], False)
                else:
                    self._fixed[key] = False
        for step in self.steps:
            step.fixed_inputs = [self.fixed(k) for k in step.inputs]
        self.snapshots = [layer for step in self.steps for layer in step.snapshots]
        self.name = name
        self.source = self._write(name)
        self.code = compile(self.source, f"<fusenet compiled plan {name!r}>", "exec")
        self._bindings = {}

    def fixed(self, key) -> bool:
        """Whether tensor ``key`` lives in an array of the plan (else it is an input or a layer's new array)."""
        return self._fixed.get(key, False)

    @property
    def lowered(self) -> int:
        """How many steps run a kernel into planned arrays (the rest call their layer)."""
        return sum(1 for s in self.steps if s.kind != "call")

    # ------------------------------------------------------------ source
    def _write(self, name) -> str:
        ctx = _EmitContext(self)
        args = ", ".join(self.tensors[k].name for k in self.input_keys)
        ins = ", ".join(_shape_text(self.tensors[k].shape) for k in self.input_keys)
        outs = ", ".join(_shape_text(self.tensors[k].shape) for k in self.output_keys)
        lines = [f"def forward({args}):",
                 f'    """{_comment(name)}: {ins} -> {outs}; {len(self.steps)} steps, {self.lowered} into planned '
                 f'arrays."""']
        for key, layer in zip(self.input_keys, self.input_casts):
            if layer is not None:
                n = self.tensors[key].name
                lines.append(f"    {n} = {n}_cast({n}, False)  # the Input layer casts to {self.tensors[key].dtype}")
        for step in self.steps:
            ins = ", ".join(self.tensors[k].name for k in step.inputs)
            out = ", ".join(f"{self.tensors[k].name} {_shape_text(self.tensors[k].shape)}" for k in step.outputs)
            how = {"kernel": "", "view": ", view", "call": ", calls the layer"}[step.kind]
            lines.append(f"    # {_comment(step.describe())}{how}: {ins} -> {out}")
            lines += [f"    {line}" for line in step.emit(ctx)]
        results = []
        for key in self.output_keys:
            n = self.tensors[key].name
            if self.fixed(key):
                results.append(f"{n}.copy()")
            elif key in self.input_keys:
                results.append(n)
            else:
                results.append(f"_own({n}, _storages)")
        lines.append(f"    return [{', '.join(results)}]")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ binding
    def function(self, batch):
        """The compiled function for ``batch`` samples (bound once per batch size, then cached)."""
        fn = self._bindings.get(batch)
        if fn is None:
            fn = self._bind(batch)
            if len(self._bindings) >= 4:
                self._bindings.pop(next(iter(self._bindings)))
            self._bindings[batch] = fn
        return fn

    def _bind(self, batch):
        memory = MemoryPlan(self, batch)
        namespace = dict(_HELPERS)
        namespace["_own"] = _own
        namespace["_storages"] = tuple(memory.storages)
        for key, layer in zip(self.input_keys, self.input_casts):
            if layer is not None:
                namespace[f"{self.tensors[key].name}_cast"] = layer
        for key, array in memory.arrays.items():
            namespace[self.tensors[key].name] = array
        for i, step in enumerate(self.steps):
            namespace.update(step.bind(_BindContext(memory, i)))
        exec(self.code, namespace)  # noqa: S102 - source generated above from the graph, never read from outside
        fn = namespace["forward"]
        fn.memory = memory
        return fn

    def nbytes(self, batch) -> int:
        """Bytes held by the plan's arrays for ``batch`` samples."""
        fn = self._bindings.get(batch)
        return fn.memory.nbytes if fn is not None else MemoryPlan(self, batch).nbytes


# ---------------------------------------------------------------- training
class TrainingPlan:
    """Forward and backward of a training graph as generated source over the model's own layers.

    ``forward(*inputs)`` returns the list of outputs (``layer.forward(x, True)`` where ``__call__`` would only
    check and cast, else ``layer(x, True)``); ``backward(*output_grads)`` runs the nodes in reverse order,
    each ``layer.backward`` on the sum of the gradients of the node's readers (written out: the first
    contribution as is, the next ones added into a new array), and returns the input gradients.
    Parameter gradients accumulate in the layers, as the interpreted backward does.
    """

    def __init__(self, graph, name="plan"):
        self.graph = graph
        names = _Names()
        self.names = {}
        for node in graph.nodes:
            n_out = max(len(node.output_shapes), 1)
            for port in range(n_out):
                suffix = "" if n_out == 1 else f"_{port}"
                self.names[(node.id, port)] = names.make(f"{node.name}{suffix}")
        self.layer_names = {node.id: names.make(f"{node.name}_layer") for node in graph.nodes if node.layer is not None}
        self.name = name
        self.source = self._write(name, names)
        code = compile(self.source, f"<fusenet compiled training plan {name!r}>", "exec")
        namespace = dict(_HELPERS)
        namespace["_acc"] = _acc
        namespace["_saved"] = {}
        for node in graph.nodes:
            if node.layer is None:
                continue
            layer_name = self.layer_names[node.id]
            namespace[layer_name] = node.layer
            namespace[f"{layer_name}_forward"] = node.layer.forward
        exec(code, namespace)  # noqa: S102 - source generated above from the graph, never read from outside
        self.forward, self.backward = namespace["forward"], namespace["backward"]

    def _write(self, name, names) -> str:
        g = self.graph
        dtypes = {}
        for node in g.nodes:
            for port in range(max(len(node.output_shapes), 1)):
                dtypes[(node.id, port)] = node.dtype
        n_out_of = {node.id: max(len(node.output_shapes), 1) for node in g.nodes}
        inputs = [self.names[(n.id, 0)] for n in g.input_nodes]
        fw = [f"def forward({', '.join(inputs)}):", f'    """{_comment(name)}: training forward."""']
        for node in g.input_nodes:
            if node.layer is not None:
                n = self.names[(node.id, 0)]
                fw.append(f"    {n} = {self.layer_names[node.id]}({n}, True)  # {_comment(node.name)} (Input)")
        for node in g.layer_nodes:
            args = [self.names[ref] for ref in node.inputs]
            arg = f"[{', '.join(args)}]" if node.multi_input else args[0]
            direct = _direct_ok(node.layer, node, [dtypes[ref] for ref in node.inputs])
            fn = f"{self.layer_names[node.id]}_forward" if direct else self.layer_names[node.id]
            outs = [self.names[(node.id, p)] for p in range(n_out_of[node.id])]
            fw.append(f"    # {_comment(node.name)} ({node.type_name})")
            if len(outs) == 1:
                fw.append(f"    {outs[0]} = {fn}({arg}, True)")
            else:
                fw.append(f"    {', '.join(outs)}, = {fn}({arg}, True)")
                fw.append(f"    _saved[{node.id}] = ({', '.join(outs)},)")
        fw.append(f"    return [{', '.join(self.names[tuple(r)] for r in g.outputs)}]")

        grad = {key: f"d_{n}" for key, n in self.names.items()}
        bw = [f"def backward({', '.join(f'd_out_{k}' for k in range(len(g.outputs)))}):",
              f'    """{_comment(name)}: backward (the forward schedule reversed)."""']
        started = set()

        def add(key, expr):
            target = grad[key]
            if key in started:
                bw.append(f"    {target} = _acc({target}, {expr})")
            else:
                bw.append(f"    {target} = {expr}")
                started.add(key)

        output_keys = set()
        for k, ref in enumerate(g.outputs):
            add(tuple(ref), f"d_out_{k}")
            output_keys.add(tuple(ref))
        for node in reversed(g.layer_nodes):
            outs = [(node.id, p) for p in range(n_out_of[node.id])]
            if not any(key in started for key in outs):
                continue  # nothing reads this node
            layer_name = self.layer_names[node.id]
            bw.append(f"    # {_comment(node.name)} ({node.type_name})")
            if len(outs) == 1:
                dy = grad[outs[0]]
                bw.append(f"    if {dy} is not None:")
            else:
                parts = []
                for p, key in enumerate(outs):
                    parts.append(grad[key] if key in started else "None")
                bw.append(f"    _dy = [{', '.join(parts)}]")
                bw.append("    if any(d is not None for d in _dy):")
                bw.append(f"        _dy = [_zeros_like(v) if d is None else d for d, v in zip(_dy, _saved[{node.id}])]")
                dy = "_dy"
            if node.layer.activity_regularizer is not None:
                bw.append(f"        {dy} = {layer_name}.activity_gradient({dy})")
            if node.multi_input:
                bw.append(f"        _dx = {layer_name}.backward({dy})")
                for i, ref in enumerate(node.inputs):
                    bw.append(f"        _d = _dx[{i}]")
                    self._add_indented(bw, ref, "_d", grad, started)
            else:
                bw.append(f"        _d = {layer_name}.backward({dy})")
                self._add_indented(bw, node.inputs[0], "_d", grad, started)
            for key in outs:
                if key in started:
                    bw.append(f"    {grad[key]} = None")
        declared = sorted(grad[key] for key in started if key not in output_keys)
        for i in range(0, len(declared), 8):  # every gradient exists from the start (a reader may give None)
            bw.insert(2 + i // 8, "    " + " = ".join(declared[i:i + 8]) + " = None")
        results = []
        for node in g.input_nodes:
            key = (node.id, 0)
            if key not in started:
                results.append("None")
            elif node.layer is not None:
                results.append(f"(None if {grad[key]} is None else {self.layer_names[node.id]}.backward({grad[key]}))")
            else:
                results.append(grad[key])
        bw.append(f"    return [{', '.join(results)}]")
        return "\n".join(fw) + "\n\n\n" + "\n".join(bw) + "\n"

    @staticmethod
    def _add_indented(lines, key, expr, grad, started):
        key = tuple(key)
        target = grad[key]
        if key in started:
            lines.append(f"        {target} = _acc({target}, {expr})")
        else:
            lines.append(f"        {target} = {expr}")
            started.add(key)


def _acc(total, g):
    """``total + g`` (a new array: neither is written into), ``None`` counting as zero."""
    if total is None:
        return g
    if g is None:
        return total
    return total + g
