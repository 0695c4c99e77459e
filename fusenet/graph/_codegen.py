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

from .. import _parallel
from .._parallel import run_chunks
from ._lowering import AddStep, AffineStep, ConvStep, MaxPoolStep, ReluStep, Tensor, internal_tensors, lower_node
from ._memory import MemoryPlan, _Pool
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


# ---------------------------------------------------------------- tiled segments
#: the steps that work sample by sample into planned arrays, so that a run of them can go over the batch in chunks
_TILEABLE = (ConvStep, ReluStep, AffineStep, MaxPoolStep, AddStep)
#: the bytes per chunk of a tiled run (the largest working set of one of its steps). With the chunks run serially
#: on NumPy's two-thread OpenBLAS, larger GEMMs win over a chunk in L2: reference cnn at batch 64 (one lane),
#: chunks of 4, 8, 16 samples and the whole batch ran 0.94-0.99x, 1.02x, 1.05-1.06x and 1.07x the speed of the
#: fused model, the plan holding 3.8, 6.0, 9.2 and 14.3 MiB: 16 samples (6 MB) keep it within half the memory
#: of interpreted inference (26 MiB)
TILE_BYTES = 6 << 20
#: threads sharing out the chunks of a tiled run (each with its own set of the run's arrays), at most
#: :data:`fusenet._parallel.CHUNK_WORKERS` when the plan is bound (one lane when the chunks run serially: one set
#: of arrays, half the memory of two)
LANES = 2


def lanes() -> int:
    """The lanes a tiled run gets when a plan is bound now: :data:`LANES`, at most the chunk threads allowed."""
    return max(1, min(LANES, _parallel.CHUNK_WORKERS))


class _Segment:
    """A run of at least two per-sample steps ``start..stop`` (step indices) of an inference plan, run chunk by
    chunk over the batch. ``internal``: the tensors made and read only inside it (sized for one chunk when
    tiled); ``names``: the loop variables (``_n0, _n1``, the bound objects of its steps, the aliases of the arrays
    it touches), ``slices``: ``(alias, name)`` of the inputs that are not planned arrays (sliced per chunk);
    ``per_sample``: the bytes per sample one of its steps works on (its stage, inputs and outputs: for the
    chunk size)."""

    def __init__(self, plan, start, stop):
        self.start, self.stop = start, stop
        steps = plan.steps[start:stop + 1]
        made = {k for step in steps for k in step.outputs}
        outside = {k for i, step in enumerate(plan.steps) if not start <= i <= stop for k in step.inputs}
        outside |= set(plan.output_keys)
        self.internal = {k for k in made if k not in outside}
        self.keys = []
        for step in steps:
            for k in list(step.inputs) + list(step.outputs):
                if k not in self.keys:
                    self.keys.append(k)
        per_sample = 0  # the largest working set of one step: its stage, inputs and outputs
        for step in steps:
            size = sum(plan.tensors[k].nbytes(1) for k in list(step.inputs) + list(step.outputs))
            if step.stage is not None:
                size += int(np.prod(step.stage.shape(1))) * plan.tensors[step.inputs[0]].dtype.itemsize
            per_sample = max(per_sample, size)
        self.per_sample = per_sample
        self.alias, self.slices, self.names = {}, [], []

    def chunk(self, batch) -> int:
        """Samples per chunk at ``batch``: the largest divisor of ``batch`` within :data:`TILE_BYTES`
        (``batch`` itself -- no tiling -- when everything fits, or when only small divisors would)."""
        fit = max(1, TILE_BYTES // max(1, self.per_sample))
        if fit >= batch:
            return batch
        best = max(d for d in range(1, fit + 1) if batch % d == 0)
        return best if best * 2 > fit else batch


def _segments(plan) -> list:
    runs, start = [], None
    for i, step in enumerate(plan.steps + [None]):
        if step is not None and isinstance(step, _TILEABLE) and step.kind == "kernel":
            if start is None:
                start = i
            continue
        if start is not None and i - start >= 2:
            runs.append(_Segment(plan, start, i - 1))
        start = None
    return runs


# ---------------------------------------------------------------- inference
class _EmitContext:
    def __init__(self, plan):
        self.plan = plan
        self.alias = {}  # inside a tiled run: tensor key -> the loop variable holding its chunk

    def name(self, key):
        alias = self.alias.get(key)
        return alias if alias is not None else self.plan.tensors[key].name

    def tensor(self, key):
        return self.plan.tensors[key]

    def fixed(self, key):
        return self.plan.fixed(key)


class _BindContext:
    def __init__(self, memory, index, rows=None, internal=(), lane=None, lane_index=0):
        self.memory, self.index = memory, index
        self.rows, self.internal = rows, internal  # a chunk of a tiled run: whole-batch arrays are sliced
        self.lane, self.lane_index = lane, lane_index  # and its lane's share of the run's own arrays

    def array(self, key):
        a = self.memory.arrays.get(key)
        if a is None or self.rows is None:
            return a
        return _lane_view(a, self.lane) if key in self.internal else a[self.rows]

    def stage_array(self):
        return _lane_view(self.memory.stages.get(self.index), self.lane)

    def border_stage(self, key):
        """The zero-bordered stage of the convolution that reads ``key`` and whose interior ``key`` is
        (``MemoryPlan.bordered``), or ``None``."""
        j = self.memory.bordered.get(key)
        return None if j is None else _lane_view(self.memory.stages[j], self.lane)

    @property
    def elided(self):
        return self.index in self.memory.elided

    def workspace_arrays(self):
        lanes = self.memory.lane_workspaces.get(self.index)
        return lanes[self.lane_index] if lanes else {}


def _lane_view(array, lane):
    """``array[lane]`` (a lane's rows of a tiled run's own array), or ``array`` when there are no lanes."""
    return array if array is None or lane is None else array[lane]


def _run_lanes(fn, lanes, *args):
    """``fn(runs, *args)`` for each lane's runs: on up to ``len(lanes)`` threads side by side (BLAS at one thread
    meanwhile, :func:`fusenet._parallel.run_chunks`), each lane on its own arrays."""
    if len(lanes) == 1:
        fn(lanes[0], *args)
        return
    run_chunks(lambda w: fn(lanes[w], *args), len(lanes))


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
        self.segments = _segments(self)
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
        starts = {seg.start: seg for seg in self.segments}
        lanes_source = []  # one function per tiled run: its chunks, one lane's share
        segment, target = None, lines
        for i, step in enumerate(self.steps):
            if i in starts:
                segment = starts[i]
                target = self._open_segment(segment, ctx)
            indent = "        " if segment is not None else "    "
            ins = ", ".join(self.tensors[k].name for k in step.inputs)
            out = ", ".join(f"{self.tensors[k].name} {_shape_text(self.tensors[k].shape)}" for k in step.outputs)
            how = {"kernel": "", "view": ", view", "call": ", calls the layer"}[step.kind]
            target.append(f"{indent}# {_comment(step.describe())}{how}: {ins} -> {out}")
            target += [f"{indent}{line}" for line in step.emit(ctx)]
            if segment is not None and i == segment.stop:
                syms = [sym for j in range(segment.start, segment.stop + 1) for sym in self.steps[j]._syms.values()]
                segment.syms = syms
                segment.names = ["_n0", "_n1"] + syms + segment.names
                args = "".join(f", {name}" for _, name in segment.slices)
                target[1] = f"    for {', '.join(segment.names)} in _runs:"
                lanes_source += target + ["", ""]
                lines.append(f"    # steps {segment.start}-{segment.stop} sample by sample: over the batch in chunks of at "
                             f"most {TILE_BYTES >> 20} MB, the chunks shared out between threads")
                lines.append(f"    _run_lanes({segment.loop}_lane, {segment.loop}{args})")
                ctx.alias = {}
                segment, target = None, lines
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
        return "\n".join(lanes_source + lines) + "\n"

    def _open_segment(self, segment, ctx):
        """The first lines of the function running one lane's chunks of a tiled run (its loop line is a placeholder)."""
        names = self.steps[0].names
        segment.loop = names.make(f"{self.steps[segment.start].name}_chunks")
        segment.names, segment.slices = [], []
        for key in segment.keys:
            alias = names.make(f"{self.tensors[key].name}_chunk")
            ctx.alias[key] = alias
            if self.fixed(key):
                segment.names.append(alias)
            else:  # a model input or a layer's new array: sliced here
                segment.slices.append((alias, self.tensors[key].name))
        args = "".join(f", {name}" for _, name in segment.slices)
        lines = [f"def {segment.loop}_lane(_runs{args}):", "    for ...:"]
        lines += [f"        {alias} = {name}[_n0:_n1]" for alias, name in segment.slices]
        return lines

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

    def _tiles(self, batch):
        """``[(segment, chunk, lanes)]`` of every run at ``batch``, and the tiles argument of the memory plan."""
        chunks = []
        for seg in self.segments:
            chunk = seg.chunk(batch)
            chunks.append((seg, chunk, min(lanes(), batch // chunk)))
        return chunks, [(seg.start, seg.stop, c, seg.internal, lanes) for seg, c, lanes in chunks if c < batch]

    def _bind(self, batch):
        chunks, tiles = self._tiles(batch)
        memory = MemoryPlan(self, batch, tiles)
        namespace = dict(_HELPERS)
        namespace["_own"] = _own
        namespace["_run_lanes"] = _run_lanes
        namespace["_storages"] = tuple(memory.storages)
        for key, layer in zip(self.input_keys, self.input_casts):
            if layer is not None:
                namespace[f"{self.tensors[key].name}_cast"] = layer
        for key, array in memory.arrays.items():
            namespace[self.tensors[key].name] = array
        in_segment = set()
        for seg, chunk, lanes in chunks:
            in_segment.update(range(seg.start, seg.stop + 1))
            runs = [[] for _ in range(lanes)]
            for c, n0 in enumerate(range(0, batch, chunk)):
                rows, w = slice(n0, n0 + chunk), c % lanes
                lane = slice(w * chunk, (w + 1) * chunk) if lanes > 1 else None
                bound = {}
                for i in range(seg.start, seg.stop + 1):
                    bound.update(self.steps[i].bind(_BindContext(memory, i, rows, seg.internal, lane, w)))
                arrays = [_lane_view(memory.arrays[k], lane) if k in seg.internal else memory.arrays[k][rows]
                          for k in seg.keys if self.fixed(k)]
                runs[w].append(tuple([n0, n0 + chunk] + [bound[sym] for sym in seg.syms] + arrays))
            namespace[seg.loop] = tuple(tuple(r) for r in runs)
        for i, step in enumerate(self.steps):
            if i not in in_segment:
                namespace.update(step.bind(_BindContext(memory, i)))
        exec(self.code, namespace)  # noqa: S102 - source generated above from the graph, never read from outside
        fn = namespace["forward"]
        fn.memory = memory
        return fn

    def nbytes(self, batch) -> int:
        """Bytes held by the plan's arrays for ``batch`` samples."""
        fn = self._bindings.get(batch)
        return fn.memory.nbytes if fn is not None else MemoryPlan(self, batch, self._tiles(batch)[1]).nbytes


# ---------------------------------------------------------------- training
class TrainingPlan:
    """Forward and backward of a training graph as generated source over the model's own layers.

    ``forward(*inputs)`` returns the list of outputs (``layer.forward(x, True)`` where ``__call__`` would only
    check and cast, else ``layer(x, True)``); ``backward(*output_grads)`` runs the nodes in reverse order,
    each ``layer.backward`` on the sum of the gradients of the node's readers (written out: the first
    contribution as is, the next ones added into a new array), and returns the input gradients.
    Parameter gradients accumulate in the layers, as the interpreted backward does.

    The input gradients of the Dense-family nodes (Dense and the fused Dense layers, whose backward can write
    it into an array it is given and never returns a view of its output gradient) go into buffers planned
    by liveness over the backward schedule, like the forward arrays of inference plans: a buffer is taken
    where the node's backward writes it and given back after the backward of the node that reads it (when
    that reader is itself such a node and the only reader; otherwise it stays taken to the end of the
    backward), flat storages shared between gradients of any shape, made once per batch size
    (:meth:`buffers`). Gradients of the model's inputs are never planned (they are returned).
    """

    def __init__(self, graph, name="plan"):
        self.graph = graph
        self._plan_gradient_buffers()
        self._buffer_cache = {}
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
        namespace["_buffers"] = self.buffers
        namespace["_returned"] = _returned
        for node in graph.nodes:
            if node.layer is None:
                continue
            layer_name = self.layer_names[node.id]
            namespace[layer_name] = node.layer
            namespace[f"{layer_name}_forward"] = node.layer.forward
            if node.id in self.grad_slot:
                namespace[f"{layer_name}_into"] = node.layer._backward_into
        exec(code, namespace)  # noqa: S102 - source generated above from the graph, never read from outside
        self.forward, self.backward = namespace["forward"], namespace["backward"]

    # ------------------------------------------------------------ gradient buffers
    def _plan_gradient_buffers(self):
        """``grad_slot``: ``{node id: storage index}`` of the nodes whose input gradient goes into a planned
        buffer, ``grad_shapes``: ``{node id: (input shape, dtype)}``; storages reused by liveness in backward order."""
        from ..fusion.dense import _FusedDenseStages  # (fusion imports the layers; the graph imports fusion lazily)
        from ..layers.core import Dense

        g = self.graph
        index = {node.id: node for node in g.nodes}
        readers = {}
        for node in g.layer_nodes:
            for ref in node.inputs:
                readers.setdefault(tuple(ref), []).append(node.id)
        outputs = {tuple(ref) for ref in g.outputs}

        def planned(node):
            if node.multi_input or len(node.inputs) != 1 or len(node.output_shapes) != 1:
                return False
            if not (type(node.layer) is Dense or isinstance(node.layer, _FusedDenseStages)):
                return False
            src = index[node.inputs[0][0]]
            return src.kind != "input" and np.dtype(src.dtype) == np.dtype(node.dtype)

        pool = _Pool()
        self.grad_slot, self.grad_shapes, self._storage_sizes = {}, {}, None
        held = {}  # node id -> storage, until the backward of its input's producer
        for node in reversed(g.layer_nodes):
            if planned(node):
                src_id, port = node.inputs[0]
                shape = index[src_id].output_shapes[port]
                dtype = np.dtype(node.dtype)
                per_sample = int(np.prod(shape[1:])) * dtype.itemsize
                storage = pool.take(per_sample)  # sized per sample here, scaled by the batch when made
                self.grad_slot[node.id] = storage.index
                self.grad_shapes[node.id] = (tuple(shape), dtype)
                if (readers.get((src_id, port)) == [node.id] and (src_id, port) not in outputs
                        and index[src_id].kind != "input" and planned(index[src_id])):
                    held.setdefault(src_id, []).append(storage)  # read by that node's backward, then free
            for storage in held.pop(node.id, []):
                pool.give(storage)
        self._storage_sizes = [s.size for s in pool.storages]

    def buffers(self, batch) -> list:
        """The gradient buffers for ``batch`` samples, one per planned node slot (made once per batch size)."""
        bufs = self._buffer_cache.get(batch)
        if bufs is None:
            storages = [np.empty(size * batch, dtype=np.uint8) for size in self._storage_sizes]
            bufs = {}
            for node_id, slot in self.grad_slot.items():
                shape, dtype = self.grad_shapes[node_id]
                count = batch * int(np.prod(shape[1:]))
                bufs[node_id] = storages[slot][:count * dtype.itemsize].view(dtype).reshape((batch,) + shape[1:])
            if len(self._buffer_cache) >= 4:
                self._buffer_cache.pop(next(iter(self._buffer_cache)))
            self._buffer_cache[batch] = bufs
        return bufs

    def buffer_nbytes(self, batch) -> int:
        """Bytes of the gradient buffers for ``batch`` samples."""
        return sum(self._storage_sizes) * batch

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
            elif node.id in self.grad_slot:  # into its planned buffer
                bw.append(f"        _d = {layer_name}_into({dy}, _bufs[{node.id}])")
                self._add_indented(bw, node.inputs[0], "_d", grad, started)
            else:
                bw.append(f"        _d = {layer_name}.backward({dy})")
                self._add_indented(bw, node.inputs[0], "_d", grad, started)
            for key in outs:
                if key in started:
                    bw.append(f"    {grad[key]} = None")
        declared = sorted(grad[key] for key in started if key not in output_keys)
        for i in range(0, len(declared), 8):  # every gradient exists from the start (a reader may give None)
            bw.insert(2 + i // 8, "    " + " = ".join(declared[i:i + 8]) + " = None")
        if self.grad_slot:
            bw.insert(2, "    _bufs = _buffers(d_out_0.shape[0])  # the planned input-gradient buffers")
        results = []
        for node in g.input_nodes:
            key = (node.id, 0)
            if key not in started:
                results.append("None")
            elif node.layer is not None:
                results.append(f"(None if {grad[key]} is None else {self.layer_names[node.id]}.backward({grad[key]}))")
            else:
                results.append(grad[key])
        if self.grad_slot:  # a returned gradient never lives in a buffer (a view of one, through a reshape, is copied)
            results = [r if r == "None" else f"_returned({r}, _bufs)" for r in results]
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


def _returned(value, buffers):
    """``value``, or its copy when it shares memory with one of the gradient ``buffers`` of a training plan."""
    if value is None:
        return None
    for b in buffers.values():
        if np.may_share_memory(value, b):
            return value.copy()
    return value


def _acc(total, g):
    """``total + g`` (a new array: neither is written into), ``None`` counting as zero."""
    if total is None:
        return g
    if g is None:
        return total
    return total + g
