"""``fusenet.graph.compile(model)``: trace, optimise and run the graph, cached by input shape.

The callable returned by :func:`compile` looks at each call's input shapes and dtypes (and the
``training`` flag). The first call with a new key traces the model for exactly those shapes
(:func:`~fusenet.graph.trace`, composites unexpanded), optimises the graph
(:func:`~fusenet.graph.passes.optimize`: the inference pipeline, whose first pass offers whole composite
layers to the fusion registry before expanding the rest, or the exact structural passes for
``training=True``) and builds a
:class:`~fusenet.graph._program.Program`; later calls with the same key reuse it. The cache is
an LRU of at most ``max_entries`` plans; ``cache_info()`` counts hits, misses and invalidations.

Inference plans may hold folded or fused copies of some layers' weights; before each call the
compiled model compares a checksum (CRC-32) of those source weights with the one taken when the
plan was built, and rebuilds stale plans (``check_weights=False`` skips this when the weights are
known not to change; :meth:`CompiledModel.cache_clear` forgets every plan). Training plans run
the model's own layers, so a training call followed by :meth:`CompiledModel.backward` puts the
gradients into the model's layers exactly as the interpreted model does.

A model that cannot be traced (:class:`~fusenet.graph.TraceError`: a custom model class with its
own ``_forward``, a layer marked ``dynamic=True``) runs interpreted: ``fallback="warn"`` (default)
warns once with the reason (:class:`CompileFallbackWarning`), ``fallback="silent"`` does not,
``fallback="raise"`` raises. The reason stays in :attr:`CompiledModel.fallback_reason`.
"""

from __future__ import annotations

import warnings
import zlib
from collections import OrderedDict, namedtuple

import numpy as np

from ..layers.base import Layer
from ..utils import check_numeric, check_positive_int
from ._graph import TensorSpec, TraceError
from ._program import Program
from .passes import optimize
from .tracing import check_traceable, trace

__all__ = ["compile", "CompiledModel", "CompileFallbackWarning", "CacheInfo"]

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "entries", "max_entries", "invalidations"])


class CompileFallbackWarning(UserWarning):
    """A compiled model runs interpreted because it cannot be traced (the message says why)."""


def _fingerprint(arrays) -> int:
    """CRC-32 of the bytes of ``arrays`` (layer weights: created once, updated in place, never rebound)."""
    crc = 0
    for w in arrays:
        crc = zlib.crc32(w if w.flags.c_contiguous else np.ascontiguousarray(w), crc)
    return crc


class _Plan:
    __slots__ = ("traced", "graph", "program", "arrays", "fingerprint")

    def __init__(self, traced, graph, program, sources):
        self.traced = traced
        self.graph = graph
        self.program = program
        self.arrays = [w for layer in sources for w in layer.weights]
        self.fingerprint = _fingerprint(self.arrays) if self.arrays else None


class CompiledModel:
    """A model compiled into cached execution plans (see :func:`compile`).

    Call it like the model: ``compiled(x)`` or ``compiled(x, training=True)`` (a list of arrays for
    a model with several inputs; a list of outputs for several outputs).
    """

    def __init__(self, model, max_entries=8, dynamic_batch=False, fallback="warn", passes=None, training_passes=None,
                 check_weights=True):
        self.model = model
        self.max_entries = check_positive_int(max_entries, "max_entries", "fusenet.graph.compile")
        if fallback not in ("warn", "silent", "raise"):
            raise ValueError(f"fusenet.graph.compile: expected fallback to be 'warn', 'silent' or 'raise'. "
                             f"Received: fallback={fallback!r}")
        self.fallback = fallback
        self.dynamic_batch = bool(dynamic_batch)
        self.passes = passes
        self.training_passes = training_passes
        self.check_weights = bool(check_weights)
        self._plans: OrderedDict = OrderedDict()
        self._hits = self._misses = self._invalidations = 0
        self._last_training_plan = None
        self.fallback_reason = None
        self._n_inputs = None
        try:
            structure = check_traceable(model)
            self._n_inputs = len(structure.input_nodes)
            self._multi_output = len(structure.outputs) > 1
        except TraceError as exc:
            self._refuse(exc, stacklevel=4)

    # ------------------------------------------------------------ fallback
    def _refuse(self, exc, stacklevel):
        if self.fallback == "raise":
            raise exc
        self.fallback_reason = exc.reason
        self.cache_clear()
        if self.fallback == "warn":
            warnings.warn(f"fusenet.graph.compile: {self._describe()} runs interpreted: {exc.reason}",
                          CompileFallbackWarning, stacklevel=stacklevel)

    def _describe(self):
        describe = getattr(self.model, "describe", None)
        return describe() if callable(describe) else type(self.model).__name__

    @property
    def interpreted(self) -> bool:
        """Whether calls run the model interpreted (tracing was refused)."""
        return self.fallback_reason is not None

    def _run_interpreted(self, x, training):
        if isinstance(self.model, (list, tuple)):
            for layer in self.model:
                x = layer(x, training=training)
            return x
        return self.model(x, training=training)

    # ------------------------------------------------------------ inputs and keys
    def _inputs(self, x):
        multi = self._n_inputs is not None and self._n_inputs > 1
        items = list(x) if multi and isinstance(x, (list, tuple)) else [x]
        if self._n_inputs is not None and len(items) != self._n_inputs:
            raise ValueError(f"{self._describe()} (compiled) expects {self._n_inputs} input arrays, "
                             f"but received {len(items)}.")
        arrays = []
        for i, item in enumerate(items):
            arr = check_numeric(item, f"{self._describe()} (compiled), input {i},")
            if arr.ndim == 0:
                raise ValueError(f"{self._describe()} (compiled): input {i} needs a batch axis. Received a scalar.")
            arrays.append(arr)
        return arrays

    def _key(self, arrays, training):
        shapes = tuple(((None,) + a.shape[1:]) if self.dynamic_batch else a.shape for a in arrays)
        return shapes, tuple(a.dtype.name for a in arrays), bool(training)

    def _build(self, key):
        shapes, dtypes, training = key
        ensure = getattr(self.model, "_ensure_built", None)
        if callable(ensure) and not getattr(self.model, "built", True):
            ensure(np.zeros((1,) + tuple(shapes[0][1:]), dtype=dtypes[0]))
        specs = [TensorSpec(s, d) for s, d in zip(shapes, dtypes)]
        traced = trace(self.model, specs if len(specs) > 1 else specs[0], expand=False)
        passes = self.training_passes if training else self.passes
        graph = optimize(traced, training=training, passes=passes)
        kept = {id(layer) for layer in graph.layers}
        sources = [layer for layer in _unique(traced.layers) if id(layer) not in kept and layer.weights]
        return _Plan(traced, graph, Program(graph, direct=not training), sources)

    def _plan(self, arrays, training):
        key = self._key(arrays, training)
        plan = self._plans.get(key)
        if plan is not None and self.check_weights and plan.arrays and _fingerprint(plan.arrays) != plan.fingerprint:
            self._invalidations += 1
            del self._plans[key]
            plan = None
        if plan is None:
            self._misses += 1
            plan = self._build(key)
            self._plans[key] = plan
            while len(self._plans) > self.max_entries:
                self._plans.popitem(last=False)
        else:
            self._hits += 1
            self._plans.move_to_end(key)
        return plan

    # ------------------------------------------------------------ calling
    def __call__(self, x, training=False):
        """The model's output(s) for ``x``, through the plan cached for ``x``'s shapes and dtypes."""
        if self.interpreted:
            return self._run_interpreted(x, training)
        arrays = self._inputs(x)
        try:
            plan = self._plan(arrays, training)
        except TraceError as exc:  # a refusal found only for these shapes
            self._refuse(exc, stacklevel=3)
            return self._run_interpreted(x, training)
        outputs = plan.program.forward(arrays, training=bool(training))
        self._last_training_plan = plan if training else None
        return outputs if self._multi_output else outputs[0]

    def backward(self, dy):
        """After ``compiled(x, training=True)``: back-propagate ``dy`` (a list for several outputs) through
        the same plan; parameter gradients accumulate in the model's layers. Returns the input gradient(s)."""
        if self.interpreted:
            backward = getattr(self.model, "_backward", None) or getattr(self.model, "backward")
            return backward(dy)
        if self._last_training_plan is None:
            raise RuntimeError(
                f"{self._describe()} (compiled): backward() needs a preceding call with training=True."
            )
        grads = self._last_training_plan.program.backward(list(dy) if self._multi_output else [dy])
        return grads if len(grads) > 1 else grads[0]

    # ------------------------------------------------------------ the cache
    def cache_info(self) -> CacheInfo:
        """``CacheInfo(hits, misses, entries, max_entries, invalidations)``."""
        return CacheInfo(self._hits, self._misses, len(self._plans), self.max_entries, self._invalidations)

    def cache_clear(self) -> None:
        """Forget every plan (the counters stay)."""
        self._plans.clear()
        self._last_training_plan = None

    def graph(self, x, training=False):
        """The optimised :class:`~fusenet.graph.LayerGraph` used for inputs like ``x`` (built if needed)."""
        if self.interpreted:
            raise TraceError(self.fallback_reason)
        return self._plan(self._inputs(x), training).graph

    def traced_graph(self, x, training=False):
        """The graph as traced (composite layers not expanded), before the passes, for inputs like ``x``."""
        if self.interpreted:
            raise TraceError(self.fallback_reason)
        return self._plan(self._inputs(x), training).traced

    def __repr__(self):
        info = self.cache_info()
        state = f"interpreted ({self.fallback_reason})" if self.interpreted else f"{info.entries} plan(s)"
        return f"<CompiledModel of {self._describe()}: {state}>"


def _unique(layers):
    seen, out = set(), []
    for layer in layers:
        if id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def compile(model, max_entries=8, dynamic_batch=False, fallback="warn", passes=None, training_passes=None,
            check_weights=True) -> CompiledModel:  # noqa: A001 - the public name, as torch.compile
    """Compile ``model`` (a ``Sequential``, a functional ``Model``, a ``Layer`` or a list of layers) into a
    callable that runs its optimised graph, one plan per input shape/dtype/training key.

    Args:
        max_entries: the most plans kept (least recently used dropped first).
        dynamic_batch: key plans on the per-sample shape only, so a new batch size reuses the plan.
        fallback: what to do when the model cannot be traced: ``"warn"`` (run interpreted, warn once),
            ``"silent"`` or ``"raise"`` (:class:`~fusenet.graph.TraceError`).
        passes, training_passes: the pass pipelines (names or functions) for inference and training plans;
            default :data:`~fusenet.graph.passes.INFERENCE_PASSES` / :data:`~fusenet.graph.passes.TRAINING_PASSES`.
        check_weights: rebuild a plan holding folded copies when the source weights changed.

    The compiled callable gives the model's numbers: inference plans agree to float rounding (folded
    BatchNorm, fused layers); training plans run the model's own layers with the exact passes only.
    """
    if not isinstance(model, (Layer, list, tuple)) and not callable(getattr(model, "_all_layers", None)):
        raise TypeError(f"fusenet.graph.compile: expected a model, a Layer or a list of layers. Received: {model!r}")
    return CompiledModel(model, max_entries=max_entries, dynamic_batch=dynamic_batch, fallback=fallback,
                         passes=passes, training_passes=training_passes, check_weights=check_weights)
