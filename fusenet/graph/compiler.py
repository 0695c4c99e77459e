"""``fusenet.graph.compile(model)``: trace, optimise, lower and run the graph, cached by input shape.

The callable returned by :func:`compile` looks at each call's input shapes and dtypes (and the
``training`` flag). The first call with a new key traces the model for exactly those shapes
(:func:`~fusenet.graph.trace`, composites unexpanded), optimises the graph
(:func:`~fusenet.graph.passes.optimize`: the inference pipeline, whose first pass offers whole composite
layers to the fusion registry before expanding the rest, or the exact structural passes for
``training=True``) and turns it into a plan; later calls with the same key reuse it. The cache is
an LRU of at most ``max_entries`` plans; ``cache_info()`` counts hits, misses and invalidations.

An inference plan is generated Python source (``compiled.code``): one straight-line function
over named arrays, one block per node. Dense layers, convolutions (plain, BatchNorm-folded, fused
with their activation, max-pool, residual add), BatchNormalization, ReLU, Add, max and global
pooling write into arrays planned by liveness (intermediate arrays are reused within a call and
across calls: after the first call of a batch size, a call allocates only the copies of the outputs
it returns); a run of such per-sample steps (convolutions, BatchNorm, ReLU, Add, max pooling) goes over
the batch in chunks of a few samples whose arrays stay in cache, so that its inner arrays are sized
for one chunk; the shape-specialised work (convolution geometry, chunking, GEMM layouts, folded
weights, the views of every block) is done once per plan and batch size; reshapes are views; any
other layer is called (``layer.forward`` directly: the plan already checked the input). A training
plan is generated source too: the forward over the model's own layers and the backward in reverse
order with the fan-out sums written out, so that gradients land in the model's layers exactly as
in interpreted training (:meth:`CompiledModel.backward`, :meth:`CompiledModel.train_step`).

Inference plans hold folded copies of some weights; before each call the compiled model checks
that the source weights did not change and rebuilds stale plans: ``check_weights="sample"``
(default) compares five elements of every source weight array (bit for bit): ``set_weights`` and
loading rewrite whole arrays, an optimizer step moves every weight with a gradient and every
BatchNorm moving statistic, so these are caught; an edit by hand of a few elements (or updates
that leave all five elements of every array untouched) is not -- use ``"full"``, a CRC-32 of all
the bytes (exact, a pass over the weights per call), or :meth:`CompiledModel.cache_clear`;
``False`` never checks. Calls share the plan's arrays, so one compiled model must not be called
from two threads at once.

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

from ..layers.base import Layer, input_gradients_unused
from ..utils import check_numeric, check_positive_int
from ._codegen import InferencePlan, TrainingPlan
from ._graph import TensorSpec, TraceError
from .passes import optimize
from .tracing import check_traceable, trace

__all__ = ["compile", "CompiledModel", "CompileFallbackWarning", "CacheInfo"]

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "entries", "max_entries", "invalidations"])

_CHECKS = ("sample", "full")


class CompileFallbackWarning(UserWarning):
    """A compiled model runs interpreted because it cannot be traced (the message says why)."""


def _fingerprint(arrays) -> int:
    """CRC-32 of the bytes of ``arrays`` (layer weights: created once, updated in place, never rebound)."""
    crc = 0
    for w in arrays:
        crc = zlib.crc32(w if w.flags.c_contiguous else np.ascontiguousarray(w), crc)
    return crc


class _WeightGuard:
    """Tells whether the weights a plan copied or folded changed since the plan was built.

    ``"sample"``: the bit patterns of five elements of each array (first, last, three between); ``"full"``:
    a CRC-32 of every byte."""

    def __init__(self, arrays, mode):
        self.arrays, self.mode = arrays, mode
        if mode == "full":
            self.value = _fingerprint(arrays)
            return
        self.probes = []
        for a in arrays:
            if a.size == 0:
                continue
            bits = a.reshape(-1).view(f"u{a.dtype.itemsize}") if a.flags.c_contiguous else None
            if bits is None:  # pragma: no cover - layer weights are contiguous
                self.probes.append((lambda a=a: _fingerprint([a]), None))
                continue
            n = a.size
            for i in sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1}):
                self.probes.append((bits.item, i))
        self.value = self._sample()

    def _sample(self):
        return [f() if i is None else f(i) for f, i in self.probes]

    def stale(self) -> bool:
        if self.mode == "full":
            return _fingerprint(self.arrays) != self.value
        return self._sample() != self.value


class _Plan:
    __slots__ = ("traced", "graph", "training", "inference", "trainer", "guard")

    def __init__(self, traced, graph, training, inference, trainer, sources, check):
        self.traced = traced
        self.graph = graph
        self.training = training
        self.inference = inference
        self.trainer = trainer
        arrays = [w for layer in sources for w in layer.weights]
        self.guard = _WeightGuard(arrays, check) if (arrays and check) else None

    @property
    def source(self) -> str:
        return (self.trainer or self.inference).source


class CompiledModel:
    """A model compiled into cached execution plans (see :func:`compile`).

    Call it like the model: ``compiled(x)`` or ``compiled(x, training=True)`` (a list of arrays for
    a model with several inputs; a list of outputs for several outputs). After a training call,
    :meth:`backward` back-propagates through the same plan; :meth:`train_step` runs a whole optimizer
    step of a compiled fusenet model. ``code`` is the generated source of the last plan used.
    """

    def __init__(self, model, max_entries=8, dynamic_batch=False, fallback="warn", passes=None, training_passes=None,
                 check_weights="sample"):
        self.model = model
        self.max_entries = check_positive_int(max_entries, "max_entries", "fusenet.graph.compile")
        if fallback not in ("warn", "silent", "raise"):
            raise ValueError(f"fusenet.graph.compile: expected fallback to be 'warn', 'silent' or 'raise'. "
                             f"Received: fallback={fallback!r}")
        if check_weights is True:
            check_weights = "sample"
        if check_weights is not False and check_weights not in _CHECKS:
            raise ValueError(f"fusenet.graph.compile: expected check_weights to be 'sample', 'full', True or False. "
                             f"Received: check_weights={check_weights!r}")
        self.fallback = fallback
        self.dynamic_batch = bool(dynamic_batch)
        self.passes = passes
        self.training_passes = training_passes
        self.check_weights = check_weights
        self._plans: OrderedDict = OrderedDict()
        self._hits = self._misses = self._invalidations = 0
        self._last_training_plan = None
        self._last_plan = None
        self.fallback_reason = None
        self._n_inputs = None
        self._multi_output = False
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
        if type(x) is np.ndarray and self._n_inputs == 1 and x.ndim and x.dtype.kind in "biuf":
            return [x]  # the common case, checked in one line
        multi = self._n_inputs is not None and self._n_inputs > 1
        packed = getattr(x, "arrays", None)  # a functional model's tuple of input arrays
        if isinstance(packed, (list, tuple)) and not isinstance(x, np.ndarray):
            x = list(packed)
        items = list(x) if multi and isinstance(x, (list, tuple)) else [x]
        if self._n_inputs is not None and len(items) != self._n_inputs:
            raise ValueError(f"{self._describe()} (compiled) expects {self._n_inputs} input arrays, "
                             f"but received {len(items)}.")
        arrays = []
        for i, item in enumerate(items):
            arr = item if type(item) is np.ndarray and item.dtype.kind in "biuf" else \
                check_numeric(item, f"{self._describe()} (compiled), input {i},")
            if arr.ndim == 0:
                raise ValueError(f"{self._describe()} (compiled): input {i} needs a batch axis. Received a scalar.")
            arrays.append(arr)
        if self.dynamic_batch and len({a.shape[0] for a in arrays}) > 1:
            raise ValueError(f"{self._describe()} (compiled): with dynamic_batch=True every input needs the same batch "
                             f"size. Received shapes {[a.shape for a in arrays]}.")
        return arrays

    def _key(self, arrays, training):
        if self.dynamic_batch:
            shapes = tuple((None,) + a.shape[1:] for a in arrays)
        else:
            shapes = tuple(a.shape for a in arrays)
        return shapes, tuple(a.dtype for a in arrays), bool(training)

    def _build(self, key):
        shapes, dtypes, training = key
        dtypes = tuple(np.dtype(d).name for d in dtypes)
        ensure = getattr(self.model, "_ensure_built", None)
        if callable(ensure) and not getattr(self.model, "built", True):
            ensure(np.zeros((1,) + tuple(shapes[0][1:]), dtype=dtypes[0]))
        specs = [TensorSpec(s, d) for s, d in zip(shapes, dtypes)]
        traced = trace(self.model, specs if len(specs) > 1 else specs[0], expand=False)
        passes = self.training_passes if training else self.passes
        graph = optimize(traced, training=training, passes=passes)
        name = getattr(self.model, "name", None) or traced.name
        if training:
            return _Plan(traced, graph, True, None, TrainingPlan(graph, name=f"{name} (training)"), [], False)
        plan = InferencePlan(graph, dtypes, name=name)
        kept = {id(layer) for layer in graph.layers}
        sources = [layer for layer in _unique(traced.layers) if id(layer) not in kept and layer.weights]
        sources += [layer for layer in _unique(plan.snapshots) if layer.weights]
        return _Plan(traced, graph, False, plan, None, _unique(sources), self.check_weights)

    def _plan(self, arrays, training):
        key = self._key(arrays, training)
        plan = self._plans.get(key)
        if plan is not None and plan.guard is not None and plan.guard.stale():
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
        self._last_plan = plan
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
        if plan.training:
            outputs = plan.trainer.forward(*arrays)
            self._last_training_plan = plan
        else:
            outputs = plan.inference.function(arrays[0].shape[0])(*arrays)
            self._last_training_plan = None
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
        grads = self._last_training_plan.trainer.backward(*(list(dy) if self._multi_output else [dy]))
        return grads if len(grads) > 1 else grads[0]

    def train_step(self, x, y, sample_weight=None):
        """One optimizer step of the compiled fusenet model on the batch ``(x, y)``, forward and backward
        through the training plan: gradients zeroed, ``loss = loss_fn(y, y_pred, sample_weight) +
        regularization``, backward, regularization gradients, ``optimizer.apply`` -- the model's own
        training step (:meth:`fusenet.models.Model.compile` with ``jit_compile=True`` makes ``fit`` use this).
        Returns ``(loss, y_pred)``; the model's loss tracker and metrics are the training loop's business."""
        step = getattr(self.model, "_gradient_step", None)
        if not callable(step):
            raise TypeError(f"{self._describe()} (compiled): train_step needs a fusenet model compiled with an optimizer "
                            "and a loss; call forward and backward yourself for a layer or a list of layers.")
        assert_compiled = getattr(self.model, "_assert_compiled", None)
        if callable(assert_compiled):
            assert_compiled(f"{self._describe()} (compiled).train_step")
        return step(x, y, sample_weight, forward=self._train_forward, backward=self._train_backward)

    def _train_forward(self, x, training=True):
        return self(x, training=training)

    def _train_backward(self, dy):
        """:meth:`backward` in a training step: the layers that read the model's inputs are told that their
        input gradient goes nowhere (``Layer._input_grad_needed``), as the interpreted training step does."""
        plan = self._last_training_plan
        readers = []
        if plan is not None:
            inputs = {node.id for node in plan.graph.input_nodes}
            readers = [node.layer for node in plan.graph.layer_nodes
                       if not node.multi_input and node.inputs and node.inputs[0][0] in inputs]
        with input_gradients_unused(readers):
            return self.backward(dy)

    # ------------------------------------------------------------ the cache
    def cache_info(self) -> CacheInfo:
        """``CacheInfo(hits, misses, entries, max_entries, invalidations)``."""
        return CacheInfo(self._hits, self._misses, len(self._plans), self.max_entries, self._invalidations)

    def cache_clear(self) -> None:
        """Forget every plan (the counters stay)."""
        self._plans.clear()
        self._last_training_plan = None
        self._last_plan = None

    def graph(self, x, training=False):
        """The optimised :class:`~fusenet.graph.LayerGraph` used for inputs like ``x`` (built if needed)."""
        return self._plan_for(x, training).graph

    def traced_graph(self, x, training=False):
        """The graph as traced (composite layers not expanded), before the passes, for inputs like ``x``."""
        return self._plan_for(x, training).traced

    def _plan_for(self, x, training):
        if self.interpreted:
            raise TraceError(self.fallback_reason)
        return self._plan(self._inputs(x), training)

    @property
    def code(self) -> str:
        """The generated Python source of the plan used last (see :meth:`code_for`)."""
        if self._last_plan is None:
            raise ValueError(f"{self._describe()} (compiled) has no plan yet: call it on data first, or use "
                             "code_for(x).")
        return self._last_plan.source

    def prepare(self, x, training=False) -> "CompiledModel":
        """Build (and, for inference, bind) the plan for inputs like ``x`` without running it: what the first
        call of that shape would do besides computing. Returns the compiled model."""
        plan = self._plan_for(x, training)
        if not plan.training:
            plan.inference.function(self._inputs(x)[0].shape[0])
        return self

    def code_for(self, x, training=False) -> str:
        """The generated Python source of the plan for inputs like ``x`` (built if needed)."""
        return self._plan_for(x, training).source

    def buffer_nbytes(self, x) -> int:
        """Bytes of the arrays an inference plan holds between calls for inputs like ``x``."""
        arrays = self._inputs(x)
        return self._plan_for(x, False).inference.nbytes(arrays[0].shape[0])

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
            check_weights="sample") -> CompiledModel:  # noqa: A001 - the public name, as torch.compile
    """Compile ``model`` (a ``Sequential``, a functional ``Model``, a ``Layer`` or a list of layers) into a
    callable that runs its optimised graph, one plan per input shape/dtype/training key.

    Args:
        max_entries: the most plans kept (least recently used dropped first).
        dynamic_batch: key plans on the per-sample shape only, so a new batch size reuses the plan (its
            arrays are bound once per batch size; the last four batch sizes stay bound).
        fallback: what to do when the model cannot be traced: ``"warn"`` (run interpreted, warn once),
            ``"silent"`` or ``"raise"`` (:class:`~fusenet.graph.TraceError`).
        passes, training_passes: the pass pipelines (names or functions) for inference and training plans;
            default :data:`~fusenet.graph.passes.INFERENCE_PASSES` / :data:`~fusenet.graph.passes.TRAINING_PASSES`.
        check_weights: how a plan holding folded copies notices that the source weights changed:
            ``"sample"`` (default, or ``True``), ``"full"`` or ``False`` (see the module documentation).

    The compiled callable gives the model's numbers: inference plans agree to float rounding (folded
    BatchNorm, fused layers); training plans run the model's own layers with the exact passes only.
    """
    if not isinstance(model, (Layer, list, tuple)) and not callable(getattr(model, "_all_layers", None)):
        raise TypeError(f"fusenet.graph.compile: expected a model, a Layer or a list of layers. Received: {model!r}")
    return CompiledModel(model, max_entries=max_entries, dynamic_batch=dynamic_batch, fallback=fallback,
                         passes=passes, training_passes=training_passes, check_weights=check_weights)
