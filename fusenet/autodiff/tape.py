"""The gradient tape: recording, the computation graph and reverse-mode differentiation.

While a :class:`GradientTape` is entered (``with GradientTape() as tape:``) every operation on a
Tensor it *tracks* is recorded as a :class:`ComputationNode` ``outputs = op(inputs)`` together
with the operation's vector-Jacobian product (VJP). A tape tracks the tensors it was told to
:meth:`~GradientTape.watch`, the trainable :class:`~fusenet.autodiff.Variable`s that operations
use (``watch_accessed_variables=True``), and every output of an operation it recorded.

``tape.gradient(target, sources)`` walks the recorded DAG backwards from ``target``, iteratively
(no recursion limit). The recording order is a topological order (an operation's inputs exist
before it is recorded; :meth:`Graph.topological_order` computes one with Kahn's algorithm for
display), so:

1. one pass in recording order marks the nodes a source leads to, and which of their inputs
   need a gradient;
2. in reverse recording order, each of those nodes whose outputs received a gradient (so it
   lies on a path between the sources and the targets) turns the gradient of its outputs into
   gradients of its inputs with its VJP; gradients of a tensor used several times are summed.

The seed of a scalar target is a shared read-only array of ones (never handed out: the gradient
of a target with respect to itself is a copy).

Short paths for recordings they recognise entirely may be registered
(:func:`register_fast_gradient`, :func:`register_fast_backprop`); they must give exactly what
the general pass gives. :mod:`fusenet.autodiff._chain` is one: a chain of layer calls ending in
a fusenet loss (the TensorFlow-style training step of a ``Sequential``) runs the layers'
hand-written backward directly.

Every VJP is written with the tape operations themselves. While a tape computes gradients it
does not record, but any *outer* tape that is recording sees those operations, so nesting tapes
gives higher-order derivatives::

    with GradientTape() as outer:
        outer.watch(x)
        with GradientTape() as inner:
            inner.watch(x)
            y = f(x)
        dy_dx = inner.gradient(y, x)
    d2y_dx2 = outer.gradient(dy_dx, x)

Semantics follow TensorFlow 2: a source the tape never saw gets ``None`` (or zeros with
``unconnected_gradients="zero"``); a non-persistent tape computes one set of gradients and then
releases its graph (a second :meth:`~GradientTape.gradient` call raises
:class:`TapeUsageError`); ``persistent=True`` keeps the graph for several calls. A target that
is not a scalar needs ``output_gradients`` of its shape (the upstream gradient): fusenet does not
silently sum it.

Tapes are not thread-safe: record and differentiate from one thread.
"""

from __future__ import annotations

import contextlib
import operator
from collections import deque
from itertools import chain

import numpy as np

from .tensor import ASSIGNMENTS, Tensor, Variable

__all__ = [
    "GradientTape",
    "ComputationNode",
    "Graph",
    "TapeUsageError",
    "stop_gradient",
    "record",
    "record_node",
    "non_differentiable",
]


class TapeUsageError(RuntimeError):
    """A tape was used in a way its state does not allow (e.g. a second ``gradient`` call on a
    non-persistent tape, or a Variable assigned between recording and differentiation)."""


# ---------------------------------------------------------------- global recording state
class _State:
    """The entered tapes (outermost first) and which of them record.

    ``barrier``: tapes below this index do not record. The layer bridge raises it (and empties
    ``recording``) while a layer runs its own NumPy forward/backward, so that only the one node
    of the layer call is recorded by the outer tapes; tapes entered inside (a TapeLayer's own
    tape) record.
    """

    def __init__(self):
        self.stack: list = []
        self.barrier = 0
        self.recording: tuple = ()
        self.scopes = 0  # active tapes plus dispatch scopes (see layers_bridge)
        self.hooks: list = []  # (on_first_scope, on_last_scope) pairs
        self.backprop = None  # the running gradient computation (a _Backprop), innermost

    def refresh(self) -> None:
        stack = self.stack
        above = len(stack) - self.barrier
        if above == 1:  # the common case: one tape entered
            tape = stack[-1]
            self.recording = (tape,) if tape._recording else ()
        elif above <= 0:
            self.recording = ()
        else:
            self.recording = tuple([t for t in stack[self.barrier:] if t._recording])

    def open_scope(self) -> None:
        self.scopes += 1
        if self.scopes == 1:
            for start, _ in self.hooks:
                start()

    def close_scope(self) -> None:
        self.scopes -= 1
        if self.scopes == 0:
            for _, stop in self.hooks:
                stop()


_STATE = _State()


def add_scope_hooks(on_first, on_last) -> None:
    """Call ``on_first()`` when the first tape (or dispatch scope) opens and ``on_last()`` when
    the last one closes. The layer bridge uses it to route layer calls on Tensors through the tape."""
    _STATE.hooks.append((on_first, on_last))


@contextlib.contextmanager
def dispatch_scope():
    """Open the scope hooks (layer calls on Tensors record) without entering a tape."""
    _STATE.open_scope()
    try:
        yield
    finally:
        _STATE.close_scope()


class _Backprop:
    """What a layer node's VJP needs to know about the gradient computation running it.

    Attributes:
        tape: the tape computing the gradients.
        replace: whether layer nodes set their layer's ``grads`` to this computation's gradient
            (:class:`GradientTape` by default) rather than add to them (a TapeLayer's own tape).
        zeroed: ids of the layers whose ``grads`` this computation already reset.
        once: the tape is not persistent (this is its only gradient computation).
        calls: the tape's ``id(layer) -> number of recorded calls``.
    """

    __slots__ = ("tape", "replace", "zeroed", "once", "calls")

    def __init__(self, tape):
        self.tape = tape
        self.replace = tape._replace_layer_grads
        self.zeroed = set()
        self.once = not tape.persistent
        self.calls = tape._layer_calls


# ---------------------------------------------------------------- nodes and recording
class ComputationNode:
    """One recorded operation: ``outputs = op(inputs)`` and how to pull gradients back.

    Attributes:
        op: the operation's name (``"matmul"``, ``"layer:dense"``, ...).
        inputs: the input Tensors (constants included; Python scalars are not inputs).
        outputs: the output Tensors (one for every primitive except layer calls with several outputs).
        attrs: static arguments worth showing (axis, shape, ...).
    """

    __slots__ = ("op", "inputs", "outputs", "attrs", "_vjp", "_stamp")

    #: the node adds its input gradients into the gradient table itself (``_backward_into``)
    _adds_into_grads = False

    def __init__(self, op, inputs, outputs, vjp, attrs=None):
        self.op = op
        self.inputs = inputs
        self.outputs = outputs
        self.attrs = attrs or {}
        self._vjp = vjp
        self._stamp = ASSIGNMENTS[0]  # Variable assignments so far (see _check_versions)

    def _check_versions(self) -> None:
        """Raise when a Variable input was assigned after this node was recorded."""
        if ASSIGNMENTS[0] == self._stamp:
            return
        for var in self.inputs:
            if isinstance(var, Variable) and var._version > self._stamp:
                raise TapeUsageError(
                    f"GradientTape.gradient: Variable {var.name or '<unnamed>'} (shape {var.shape}) was assigned after "
                    f"operation '{self.op}' used it; its gradient would use the new value. Compute the gradient "
                    "before assigning, or assign to a copy."
                )

    def backward(self, grads: tuple, needs: tuple) -> tuple:
        """Gradients of the inputs (``None`` where ``needs`` is False) from those of the outputs.

        ``grads`` has one Tensor per output (zeros for outputs that got none).
        """
        if ASSIGNMENTS[0] != self._stamp:
            self._check_versions()
        vjp = self._vjp
        if type(vjp) is tuple:  # one function per input
            g = grads[0]
            if len(vjp) == 1:
                fn = vjp[0]
                return (fn(g) if needs[0] and fn is not None else None,)
            return tuple([fn(g) if need and fn is not None else None for fn, need in zip(vjp, needs)])
        return vjp(grads if len(self.outputs) > 1 else grads[0], needs)

    def __repr__(self):
        ins = ", ".join(str(t.shape) for t in self.inputs)
        outs = ", ".join(str(t.shape) for t in self.outputs)
        return f"<ComputationNode {self.op}({ins}) -> {outs}>"


def record_node(op: str, values, inputs, vjp, attrs=None):
    """Wrap ``values`` (one array per output) as Tensors and record the node in every recording
    tape that tracks one of the ``inputs``.

    ``inputs`` may contain Python scalars (constants; they are dropped from the node). ``vjp`` is
    either a tuple with one function ``g -> input gradient`` (or ``None``) per entry of
    ``inputs``, or one function ``(grads, needs) -> tuple of input gradients`` over the Tensor
    inputs (``grads`` is the tuple of output gradients, or the single gradient when there is one
    output). Returns ``(outputs, node)``; ``node`` is ``None`` when nothing recorded it.
    """
    outputs = (Tensor._wrap(values[0]),) if len(values) == 1 else tuple([Tensor._wrap(v) for v in values])
    tapes = _STATE.recording
    if not tapes:
        return outputs, None
    for t in inputs:
        if not isinstance(t, Tensor):  # Python scalars are constants, not node inputs
            if isinstance(vjp, tuple):
                pairs = [(t, fn) for t, fn in zip(inputs, vjp) if isinstance(t, Tensor)]
                tensors = tuple([t for t, _ in pairs])
                vjp = tuple([fn for _, fn in pairs])
            else:
                tensors = tuple([t for t in inputs if isinstance(t, Tensor)])
            break
    else:
        tensors = inputs if type(inputs) is tuple else tuple(inputs)
    node = None
    for tape in tapes:
        if tape._tracks_any(tensors):
            if node is None:
                node = ComputationNode(op, tensors, outputs, vjp, attrs)
            tape._add(node)
    return outputs, node


def record(op: str, value, inputs, vjp, attrs=None) -> Tensor:
    """:func:`record_node` for a one-output operation; returns the output Tensor."""
    outputs, _ = record_node(op, (value,), inputs, vjp, attrs)
    return outputs[0]


def non_differentiable(op: str, values, inputs, reason: str):
    """Wrap ``values`` as Tensors that an outer recording tape may not differentiate.

    Used for gradients computed by hand-written NumPy (a layer's ``backward``): they are exact,
    but their own derivative is unknown, so differentiating them again raises
    ``NotImplementedError`` with ``reason`` instead of silently returning zero.
    """

    def refuse(grads, needs):
        raise NotImplementedError(reason)

    outputs, _ = record_node(op, values, inputs, refuse)
    return outputs


def stop_gradient(x) -> Tensor:
    """A new Tensor with the value of ``x`` that no tape differentiates through (a constant)."""
    return Tensor._wrap(x._value if isinstance(x, Tensor) else np.asarray(x))


# ---------------------------------------------------------------- the graph view
class Graph:
    """The DAG a tape recorded: :class:`ComputationNode`s linked by the Tensors they share.

    Attributes:
        nodes: the nodes in recording order.
        watched: the tensors the tape was told to watch (and the Variables it watched on access).
    """

    def __init__(self, nodes, watched):
        self.nodes = list(nodes)
        self.watched = list(watched)

    def __len__(self) -> int:
        return len(self.nodes)

    def topological_order(self) -> list:
        """The nodes so that each comes after every node producing one of its inputs (Kahn's
        algorithm, iterative; ties keep recording order)."""
        return _topological_order(self.nodes)

    def to_dot(self, name: str = "tape") -> str:
        """Graphviz DOT text: tensors are ellipses (name, shape, dtype; watched ones filled),
        operations are boxes; edges go input -> operation -> output."""
        ids: dict[int, str] = {}
        lines = [f"digraph {_dot_id(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
        watched = {id(t) for t in self.watched}

        def tensor_id(t):
            key = id(t)
            if key not in ids:
                ids[key] = f"t{len(ids)}"
                label = (t.name + "\\n" if t.name else "") + f"{t.shape} {t.dtype}"
                style = ', style=filled, fillcolor="lightblue"' if key in watched else ""
                kind = "Variable" if isinstance(t, Variable) else "Tensor"
                lines.append(f'  {ids[key]} [label="{_dot_escape(label)}", shape=ellipse, tooltip="{kind}"{style}];')
            return ids[key]

        for t in self.watched:
            tensor_id(t)
        for k, node in enumerate(self.topological_order()):
            op_id = f"op{k}"
            attrs = ", ".join(f"{a}={v}" for a, v in node.attrs.items())
            label = node.op + (f"\\n{attrs}" if attrs else "")
            lines.append(f'  {op_id} [label="{_dot_escape(label)}", shape=box, style=rounded];')
            for t in node.inputs:
                lines.append(f"  {tensor_id(t)} -> {op_id};")
            for t in node.outputs:
                lines.append(f"  {op_id} -> {tensor_id(t)};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


def _dot_id(name: str) -> str:
    return name if name.isidentifier() else '"' + name.replace('"', '\\"') + '"'


def _producers(nodes) -> dict:
    """``id(tensor) -> node`` for every output of ``nodes``."""
    producer = {}
    for node in nodes:
        for t in node.outputs:
            producer[id(t)] = node
    return producer


def _topological_order(nodes, producer=None) -> list:
    """Kahn's algorithm over ``nodes`` (edges: producer of an input -> consumer)."""
    if producer is None:
        producer = _producers(nodes)
    indegree = {id(n): 0 for n in nodes}
    consumers: dict[int, list] = {id(n): [] for n in nodes}
    for node in nodes:
        seen = set()
        for t in node.inputs:
            p = producer.get(id(t))
            if p is not None and id(p) in indegree and id(p) not in seen and p is not node:
                seen.add(id(p))
                indegree[id(node)] += 1
                consumers[id(p)].append(node)
    ready = deque(n for n in nodes if indegree[id(n)] == 0)
    order = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for c in consumers[id(node)]:
            indegree[id(c)] -= 1
            if indegree[id(c)] == 0:
                ready.append(c)
    if len(order) != len(nodes):  # pragma: no cover - recording order makes cycles impossible
        raise TapeUsageError("the recorded graph has a cycle")
    return order


# ---------------------------------------------------------------- nested structures
def _flatten(structure, owner: str, what: str):
    """Leaves of a Tensor / list / tuple / dict structure and a function rebuilding it."""
    if not isinstance(structure, (list, tuple, dict)):
        return [structure], _first
    if type(structure) in (list, tuple):
        for kind in set(map(type, structure)):  # the distinct types of the items (usually one)
            if issubclass(kind, (list, tuple, dict)):
                break
        else:  # a flat list or tuple (e.g. model.trainable_weights)
            return list(structure), type(structure)
    leaves = []

    def walk(s):
        if isinstance(s, dict):
            keys = list(s)
            subs = [walk(s[k]) for k in keys]
            return lambda it: {k: sub(it) for k, sub in zip(keys, subs)}
        if isinstance(s, (list, tuple)):
            subs = [walk(v) for v in s]
            kind = type(s) if type(s) in (list, tuple) else list
            return lambda it: kind(sub(it) for sub in subs)
        leaves.append(s)
        return lambda it: next(it)

    build = walk(structure)
    return leaves, (lambda values: build(iter(values)))


def _first(values):
    return values[0]


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"{type(x).__name__} of shape {x.shape}"
    return type(x).__name__


# ---------------------------------------------------------------- the tape
class GradientTape:
    """Records operations on Tensors to differentiate them (TensorFlow 2's ``GradientTape``).

    Args:
        persistent: keep the graph after :meth:`gradient` so that it can be called again
            (release it with :meth:`reset` or by dropping the tape).
        watch_accessed_variables: watch every trainable Variable an operation uses while the
            tape records (otherwise only what :meth:`watch` names).
    """

    __slots__ = ("persistent", "watch_accessed_variables", "_replace_layer_grads", "_recording", "_entered",
                 "_released", "_nodes", "_tensors", "_watched", "_layer_calls", "_arrays", "_chain_tail", "_chain_params",
                 "__weakref__")

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        if type(persistent) is not bool and not isinstance(persistent, (bool, np.bool_)):
            raise TypeError(f"GradientTape: expected persistent to be True or False. Received: persistent={persistent!r}")
        self.persistent = bool(persistent)
        self.watch_accessed_variables = bool(watch_accessed_variables)
        # layer nodes set the layers' grads to the gradient (True) or add to them (a TapeLayer's
        # private tape: its backward must add, as every layer's backward does)
        self._replace_layer_grads = True
        self._recording = False
        self._entered = False
        self._released = False
        self._nodes: list = []  # (as _clear, written out)
        self._tensors: dict = {}
        self._watched: dict = {}
        self._layer_calls: dict = {}
        self._arrays = None
        self._chain_tail = CHAIN_START
        self._chain_params: list = []

    def _clear(self) -> None:
        self._nodes: list = []
        self._tensors: dict = {}  # id -> Tensor: watched tensors and recorded outputs
        self._watched: dict = {}  # id -> Tensor: explicitly or automatically watched
        self._layer_calls: dict = {}  # id(layer) -> number of its calls recorded (layers_bridge)
        self._arrays = None  # id(ndarray) -> (Variable, ...), built when needed (_array_index)
        # the layer bridge follows whether the recording so far is a chain of simple layer calls:
        # _chain_tail is its last output (CHAIN_START: nothing recorded; None: not a chain) and
        # _chain_params the ids of those layers' parameter arrays in order (None: some layer's
        # weights were not all watched at its call); see fusenet.autodiff._chain
        self._chain_tail = CHAIN_START
        self._chain_params: list = []

    # ------------------------------------------------------------ context
    def __enter__(self) -> "GradientTape":
        if self._entered:
            raise TapeUsageError("GradientTape: this tape is already entered; use a new tape for a nested block.")
        if self._released:
            raise TapeUsageError("GradientTape: this non-persistent tape has been used; create a new tape to record again.")
        self._entered = True
        self._recording = True
        state = _STATE
        stack = state.stack
        stack.append(self)
        if len(stack) - state.barrier == 1:  # the only tape above the barrier (see _State.refresh)
            state.recording = (self,)
        else:
            state.refresh()
        state.scopes += 1
        if state.scopes == 1:
            for start, _ in state.hooks:
                start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._recording = False
        self._entered = False
        state = _STATE
        stack = state.stack
        if stack and stack[-1] is self:
            stack.pop()
        else:
            for i in range(len(stack) - 1, -1, -1):
                if stack[i] is self:
                    del stack[i]
                    break
        if state.barrier > len(stack):
            state.barrier = len(stack)
        if len(stack) == state.barrier:
            state.recording = ()
        else:
            state.refresh()
        state.scopes -= 1
        if state.scopes == 0:  # (as _State.close_scope)
            for _, stop in state.hooks:
                stop()
        return False

    @contextlib.contextmanager
    def stop_recording(self):
        """Inside this block the tape records nothing (operations there are constants to it)."""
        was = self._recording
        self._recording = False
        _STATE.refresh()
        try:
            yield
        finally:
            self._recording = was
            _STATE.refresh()

    # ------------------------------------------------------------ tracking
    def watch(self, tensor) -> None:
        """Watch ``tensor`` (a Tensor, a Variable, or a list/tuple/dict of them).

        Plain ndarrays have no identity a tape could follow: wrap them in ``Variable(arr)`` (same
        memory) or ``Tensor(arr)`` first.
        """
        self._check_usable("watch")
        leaves, _ = _flatten(tensor, "GradientTape.watch", "tensor")
        for t in leaves:
            if not isinstance(t, Tensor):
                raise TypeError(
                    "GradientTape.watch: expected a Tensor or Variable (or a list of them); wrap arrays with "
                    f"Variable(arr) or Tensor(arr) first. Received: {_describe(t)}"
                )
        for t in leaves:
            self._watch(t)

    def _watch(self, t: Tensor) -> None:
        key = id(t)
        if key in self._watched:
            return
        self._tensors[key] = self._watched[key] = t
        if isinstance(t, Variable):
            self._index_variable(t)

    def _index_variable(self, v: Variable) -> None:
        self._arrays = None  # rebuilt when needed (_array_index)

    def _array_index(self) -> dict:
        """``id(ndarray) -> (Variable, ...)``: the watched Variables on each array, in the order
        they were watched (built when first needed after a watch)."""
        arrays = self._arrays
        if arrays is None:
            variables = list(filter(_IS_VARIABLE, self._watched.values()))
            ids = list(map(id, map(_VALUE, variables)))
            if len(set(ids)) == len(ids):  # one Variable per array (the usual case): C-level maps
                arrays = dict(zip(ids, zip(variables)))
            else:
                arrays = {}
                for key, v in zip(ids, variables):
                    arrays[key] = arrays.get(key, ()) + (v,)
            self._arrays = arrays
        return arrays

    def _tracks_any(self, tensors) -> bool:
        """Whether this tape follows one of ``tensors`` (watching accessed trainable Variables)."""
        found = False
        known = self._tensors
        for t in tensors:
            key = id(t)
            if key in known:
                found = True
            elif self.watch_accessed_variables and type(t) is Variable and t.trainable:
                known[key] = self._watched[key] = t
                self._arrays = None
                found = True
        return found

    def _watch_all(self, ids, items, array_ids, array_items) -> None:
        """Watch Variables none of which this tape knows yet, at once: ``items`` are
        ``(id(v), v)`` (the layer bridge keeps these per layer)."""
        self._tensors.update(items)
        self._watched.update(items)
        self._arrays = None

    def _add(self, node: ComputationNode) -> None:
        self._chain_tail = None
        self._nodes.append(node)
        known = self._tensors
        for t in node.outputs:
            known[id(t)] = t

    def watched_variables(self) -> list:
        """The Variables this tape watches, in the order it first saw them."""
        return [t for t in self._watched.values() if isinstance(t, Variable)]

    def graph(self) -> Graph:
        """The recorded :class:`Graph` (nodes in recording order)."""
        self._check_usable("graph")
        return Graph(self._nodes, self._watched.values())

    def reset(self) -> None:
        """Forget everything recorded so far (the tape keeps recording if it is entered)."""
        self._clear()
        self._released = False

    def _check_usable(self, what: str) -> None:
        if self._released:
            raise TapeUsageError(
                f"GradientTape.{what}: a non-persistent GradientTape can compute only one set of gradients, and "
                "this one already did (its graph is released). Use GradientTape(persistent=True) to call gradient() "
                "several times, or record again with a new tape."
            )

    # ------------------------------------------------------------ differentiation
    def _resolve(self, source):
        """The tracked Tensors that stand for ``source`` (a Tensor/Variable or a parameter ndarray)."""
        if isinstance(source, np.ndarray):
            return self._array_index().get(id(source), ())
        if not isinstance(source, Tensor):
            raise TypeError(
                "GradientTape.gradient: expected every source to be a Tensor, a Variable or a parameter ndarray "
                f"(possibly in a list or dict). Received: {_describe(source)}"
            )
        found = [source] if id(source) in self._tensors else []
        if isinstance(source, Variable):
            found += [v for v in self._array_index().get(id(source._value), ()) if v is not source]
        return found

    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """Gradients of ``target`` with respect to ``sources``, in the structure of ``sources``.

        Args:
            target: a Tensor, or a list of Tensors (their gradients are summed).
            sources: a Tensor, a Variable or a parameter ndarray (an array a Variable or a
                recorded layer call uses, e.g. ``model.trainable_weights``), or a list/tuple/dict
                of them.
            output_gradients: the upstream gradient of each target, shaped like it. Required for
                a target that is not a scalar (one element).
            unconnected_gradients: ``"none"`` (default) gives ``None`` for a source the target
                does not depend on, or that the tape never saw; ``"zero"`` gives zeros.

        Returns:
            Tensors shaped like their sources (parameter ndarrays get Tensors too;
            ``np.asarray(g)`` is the array), in the structure of ``sources``.
        """
        if self._released:
            self._check_usable("gradient")
        owner = "GradientTape.gradient"
        if unconnected_gradients != "none" and unconnected_gradients != "zero":
            raise ValueError(
                f"{owner}: expected unconnected_gradients to be one of ['none', 'zero']. "
                f"Received: unconnected_gradients={unconnected_gradients!r}"
            )
        if isinstance(target, Tensor):
            targets = (target,)
            value = target._value
            if output_gradients is None and value.size == 1:  # the common case: a scalar loss
                seeds = (_one(value.shape, value.dtype),)
            else:
                seeds = self._seeds(targets, output_gradients, owner)
        else:
            targets, _ = _flatten(target, owner, "target")
            for t in targets:
                if not isinstance(t, Tensor):
                    raise TypeError(
                        f"{owner}: expected the target to be a Tensor (or a list of Tensors). Received: {_describe(t)}"
                    )
            seeds = self._seeds(targets, output_gradients, owner)
        leaves, rebuild = _flatten(sources, owner, "sources")
        if not self._recording:
            for fast in _FAST_GRADIENTS:
                results = fast(self, targets, seeds, leaves)
                if results is not None:
                    if not self.persistent:  # release the graph
                        self._clear()
                        self._released = True
                    return rebuild(results)
        # the tracked tensors standing for each source; ``single``: exactly one for every source
        # (e.g. the parameter arrays of model.trainable_weights, each used by one layer)
        resolved = None
        if set(map(type, leaves)) == _NDARRAY_ONLY:
            resolved = list(map(self._array_index().get, map(id, leaves)))
            if None in resolved:
                resolved = None
            else:
                flat = list(chain.from_iterable(resolved))
                single = len(flat) == len(resolved)
        if resolved is None:
            get_array = self._array_index().get
            resolved = [get_array(id(s), ()) if type(s) is np.ndarray else self._resolve(s) for s in leaves]
            flat = [t for group in resolved for t in group]
            single = False
        was = self._recording
        if was:  # the VJPs below are not recorded on this tape (outer tapes may record them)
            self._recording = False
            _STATE.refresh()
        try:
            grads = _backprop(self, targets, seeds, flat)
        except BaseException:
            if was:
                self._recording = was
                _STATE.refresh()
            raise
        if self.persistent:
            if was:
                self._recording = was
                _STATE.refresh()
        else:  # release the graph; nothing more is recorded on this tape
            self._clear()
            self._released = True
        get = grads.get
        if single:
            results = list(map(get, map(id, flat)))
        else:
            results = [get(id(group[0])) if len(group) == 1 else self._sum_group(group, get) for group in resolved]
        if unconnected_gradients == "zero":
            for i, (source, g) in enumerate(zip(leaves, results)):
                if g is None:
                    shape, dtype = (source.shape, source.dtype)
                    results[i] = Tensor._wrap(np.zeros(shape, dtype=dtype if dtype.kind == "f" else np.float32))
        return rebuild(results)

    @staticmethod
    def _sum_group(group, get):
        """The sum of the gradients of the tracked tensors standing for one source (``None`` if none)."""
        g = None
        for t in group:
            gt = get(id(t))
            if gt is not None:
                g = gt if g is None else _ops().add(g, gt)
        return g

    def _seeds(self, targets, output_gradients, owner):
        if output_gradients is None:
            seeds = []
            for t in targets:
                value = t._value
                if value.size != 1:
                    raise ValueError(
                        f"{owner}: the target has shape {t.shape}, which is not a scalar; pass output_gradients "
                        f"(the upstream gradient, shape {t.shape}) or reduce the target first, e.g. with sum(). "
                        f"Received: target.shape={t.shape}, output_gradients=None"
                    )
                seeds.append(_one(value.shape, value.dtype))
            return seeds
        ogs, _ = _flatten(output_gradients, owner, "output_gradients")
        if len(ogs) != len(targets):
            raise ValueError(
                f"{owner}: expected one output gradient per target ({len(targets)}). Received: {len(ogs)} output gradients"
            )
        seeds = []
        for t, og in zip(targets, ogs):
            if not isinstance(og, Tensor):
                og = Tensor._wrap(np.asarray(og))
            if og.shape != t.shape:
                raise ValueError(
                    f"{owner}: expected output_gradients shaped like the target. "
                    f"Received: target.shape={t.shape}, output_gradients.shape={og.shape}"
                )
            if og.dtype != _grad_dtype(t):
                og = _ops().cast(og, _grad_dtype(t))
            seeds.append(og)
        return seeds

    def __repr__(self):
        state = "released" if self._released else f"{len(self._nodes)} nodes"
        return f"<GradientTape persistent={self.persistent} {state}>"


_NDARRAY_ONLY = {np.ndarray}
_IS_VARIABLE = Variable.__instancecheck__  # isinstance(t, Variable) as a C-level function
_VALUE = operator.attrgetter("_value")
_VARIABLE_ONLY = {Variable}
_ONES: dict = {}
_SEED_IDS: set = set()  # ids of the Tensors in _ONES (kept alive there)


def _one(shape, dtype) -> Tensor:
    """A read-only Tensor of ones of ``shape`` (one element) in ``dtype`` (float32 for a non-float
    dtype): the seed of a scalar target, shared between gradient computations (never written)."""
    key = (shape, dtype)
    seed = _ONES.get(key)
    if seed is None:
        arr = np.ones(shape, dtype=dtype if dtype.kind == "f" else np.float32)
        arr.flags.writeable = False
        seed = _ONES[key] = Tensor._wrap(arr)
        _SEED_IDS.add(id(seed))
    return seed


def is_seed(g: Tensor) -> bool:
    """Whether ``g`` is the shared seed of a scalar target (a gradient of exactly one)."""
    return id(g) in _SEED_IDS


def _grad_dtype(t: Tensor):
    return t.dtype if t.dtype.kind == "f" else np.dtype(np.float32)


_OPS = []


def _ops():
    """The operations module (imported on first use: it imports this module)."""
    if not _OPS:
        from . import ops

        _OPS.append(ops)
    return _OPS[0]


def accumulate(grads: dict, t: Tensor, g: Tensor, node) -> None:
    """Add ``g`` (the gradient of ``t`` pulled back through ``node``) into the gradient table
    ``grads`` (``id(tensor) -> gradient``), in ``t``'s dtype."""
    value, gv = t._value, g._value
    if gv.shape != value.shape:  # pragma: no cover - a wrong VJP is a bug of fusenet
        raise RuntimeError(
            f"internal error: the VJP of '{node.op}' gave shape {g.shape} for an input of shape {t.shape}"
        )
    if gv.dtype is not value.dtype and gv.dtype != value.dtype:
        g = _ops().cast(g, value.dtype)
    key = id(t)
    prev = grads.get(key)
    grads[key] = g if prev is None else _ops().add(prev, g)


_FAST_BACKPROPS: list = []
CHAIN_START = object()  # GradientTape._chain_tail before anything is recorded
_FAST_GRADIENTS: list = []


def register_fast_gradient(fn) -> None:
    """Add ``fn(tape, targets, seeds, leaves) -> list of gradients or None``, tried (in order) by
    :meth:`GradientTape.gradient` before it resolves the sources: it returns the gradients of the
    flat ``leaves`` for a recording and sources it handles entirely (see
    :mod:`fusenet.autodiff._chain`), ``None`` otherwise."""
    _FAST_GRADIENTS.append(fn)


def register_fast_backprop(fn) -> None:
    """Add ``fn(tape, targets, seeds, sources) -> table or None``, tried (in order) before the
    general reverse pass: it returns the gradient table for a recording it handles entirely
    (see :mod:`fusenet.autodiff._chain`), ``None`` otherwise."""
    _FAST_BACKPROPS.append(fn)


def _backprop(tape: GradientTape, targets, seeds, sources) -> dict:
    """Reverse accumulation: a dict whose entry ``id(source)`` is the gradient of each source the
    targets depend on (other entries are internal).

    The recording order is a topological order (a node's inputs exist before it is recorded),
    so one forward pass finds the nodes a source leads to (and which of their inputs need a
    gradient: those a source leads to, of a float dtype), and one backward pass over them, in
    reverse recording order, pulls the gradients back; a node whose outputs got no gradient
    does not reach the targets and is skipped. Gradients of a tensor used several times are summed.
    """
    for fast in _FAST_BACKPROPS:
        table = fast(tape, targets, seeds, sources)
        if table is not None:
            return table
    ops = _ops()
    source_ids = set(map(id, sources))
    # float tensors through which a source reaches the targets (forward pass over the recording
    # order); an input needs a gradient when it is one of them
    if set(map(type, sources)) <= _VARIABLE_ONLY:  # Variables are float
        leads = set(source_ids)
    else:
        leads = {id(s) for s in sources if s._value.dtype.kind == "f"}
    leads_contains = leads.__contains__
    relevant = []
    for node in tape._nodes:
        needs = list(map(leads_contains, map(id, node.inputs)))
        if True in needs:
            relevant.append((node, needs))
            for o in node.outputs:
                if o._value.dtype.kind == "f":
                    leads.add(id(o))
    grads: dict[int, Tensor] = {}
    for t, g in zip(targets, seeds):
        if id(t) in leads or id(t) in source_ids:
            if id(t) in source_ids and not g._value.flags.writeable:  # a shared seed is never handed out
                g = Tensor._wrap(g._value.copy())
            prev = grads.get(id(t))
            grads[id(t)] = g if prev is None else ops.add(prev, g)
    get, pop = grads.get, grads.pop
    outer = _STATE.backprop
    _STATE.backprop = _Backprop(tape)
    try:
        for node, needs in reversed(relevant):
            outputs = node.outputs
            if len(outputs) == 1:
                key = id(outputs[0])
                g = get(key) if key in source_ids else pop(key, None)
                if g is None:
                    continue
                outs = (g,)
            else:
                outs = [get(id(t)) if id(t) in source_ids else pop(id(t), None) for t in outputs]
                if all(g is None for g in outs):
                    continue
                outs = tuple([g if g is not None else Tensor._wrap(np.zeros(t.shape, dtype=_grad_dtype(t)))
                              for g, t in zip(outs, outputs)])
            if node._adds_into_grads:
                node._backward_into(outs, needs, grads)
                continue
            for t, g, need in zip(node.inputs, node.backward(outs, needs), needs):
                if g is None or not need:
                    continue
                value, gv = t._value, g._value
                if gv.shape != value.shape:  # pragma: no cover - a wrong VJP is a bug of fusenet
                    raise RuntimeError(
                        f"internal error: the VJP of '{node.op}' gave shape {g.shape} for an input of shape {t.shape}"
                    )
                if gv.dtype is not value.dtype and gv.dtype != value.dtype:
                    g = ops.cast(g, value.dtype)
                key = id(t)
                prev = get(key)
                grads[key] = g if prev is None else ops.add(prev, g)
    finally:
        _STATE.backprop = outer
    return grads  # the sources' entries are their gradients
