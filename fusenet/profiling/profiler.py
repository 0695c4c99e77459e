"""``profile(model, x)``: where a model's time goes, layer by layer, and what fusion would save.

How it measures (all on deep copies: the profiled model is never changed):

1. The layers run once to build and warm up, then once more to record every (nested) layer's
   input and output shapes and the order in which the layers are called.
2. ``repeats`` times, side by side: the whole model without per-layer timers (the *total*: the
   forward loop of ``Sequential``, and in training the loss and the backward loop), the same
   passes with a ``time.perf_counter`` pair around every layer call, and the same two for
   ``model.fuse()``. The order alternates between repeats and the garbage collector is paused,
   so that a busy machine disturbs all four alike. Each figure is the median over the repeats,
   with the interquartile range as its spread.
3. One more, untimed pass under ``tracemalloc`` gives each layer's peak allocation.

Nested layers (a ``Residual``'s body and shortcut, a ``TransformerEncoderBlock``'s attention,
norms and feed-forward layers: every layer a composite tracks with ``track_layer``) are timed
through wrappers on their ``forward``/``backward`` methods and listed under their parent; their
times are part of the parent's. Fused layers are not opened: their line says what they replaced.
"""

from __future__ import annotations

import copy
import gc
import itertools
import time
import tracemalloc

import numpy as np

from .. import fusion as _fusion
from .. import losses as _losses
from ..fusion.base import FusedLayer
from ..layers.base import Layer
from ..models.sequential import Sequential
from ..utils import check_numeric, check_positive_int
from .flops import backward_flops, forward_flops
from .report import FusionRun, LayerProfile, ProfileReport, TimeStats

__all__ = ["profile"]

_OWNER = "fusenet.profiling.profile"
_FORWARD, _BACKWARD = 0, 1


def _shape_of(value):
    if isinstance(value, (list, tuple)):
        return [tuple(np.shape(v)) for v in value]
    return tuple(np.shape(value))


def _label(layer) -> str:
    return f"{type(layer).__name__}({layer.name})"


def _backward_step(layer, dy):
    """One layer's part of ``Sequential``'s backward loop."""
    return layer.backward(layer.activity_gradient(dy))


class _Node:
    """A (possibly nested) layer and what was measured about it."""

    def __init__(self, layer, path, depth):
        self.layer = layer
        self.path = path
        self.depth = depth
        self.children: list[_Node] = []
        self.order = None  # rank of its first call in the shape pass (None: never called)
        self.input_shape = None
        self.output_shape = None
        self.acc = [0.0, 0.0]  # seconds in the current pass: forward, backward
        self.times: list[list[float]] = [[], []]
        self.alloc = [None, None]  # peak bytes above the level at the call
        self.retained = None
        self.row = None  # its LayerProfile, once the report is built

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class _Recorder:
    """Times, shapes or allocations of the calls that go through :meth:`call`, by ``mode``."""

    def __init__(self):
        self.mode = None  # None: pass through; "shape", "time" or "memory"
        self._counter = itertools.count()
        self._frames: list[list[int]] = []  # memory mode: [start bytes, highest peak seen] per open call

    def call(self, node, kind, fn, args, kwargs):
        mode = self.mode
        if mode is None:
            return fn(*args, **kwargs)
        if mode == "time":
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            node.acc[kind] += time.perf_counter() - t0
            return out
        if mode == "shape":
            if kind == _FORWARD and node.order is None:
                node.order = next(self._counter)
                node.input_shape = _shape_of(args[0])
                out = fn(*args, **kwargs)
                node.output_shape = _shape_of(out)
                return out
            return fn(*args, **kwargs)
        return self._call_traced(node, kind, fn, args, kwargs)

    def _call_traced(self, node, kind, fn, args, kwargs):
        # tracemalloc has one peak counter: an enclosing call keeps the highest peak seen before each
        # reset in its frame, so nested calls and their parents both get their own peak.
        current, peak = tracemalloc.get_traced_memory()
        if self._frames:
            self._frames[-1][1] = max(self._frames[-1][1], peak)
        tracemalloc.reset_peak()
        frame = [current, current]
        self._frames.append(frame)
        try:
            out = fn(*args, **kwargs)
        finally:
            after, peak = tracemalloc.get_traced_memory()
            self._frames.pop()
            if self._frames:
                self._frames[-1][1] = max(self._frames[-1][1], peak)
        used = max(frame[1], peak) - frame[0]
        node.alloc[kind] = used if node.alloc[kind] is None else max(node.alloc[kind], used)
        if kind == _FORWARD:
            node.retained = after - frame[0]
        return out

    def flush(self, nodes) -> None:
        """End of a timed pass: store every node's accumulated time and reset it."""
        for node in nodes:
            for kind in (_FORWARD, _BACKWARD):
                node.times[kind].append(node.acc[kind])
                node.acc[kind] = 0.0


def _instrument(layer, node, recorder) -> None:
    """Route a nested layer's ``forward``/``backward`` through ``recorder`` (instance attributes
    shadowing the class methods, on the profiler's private copy only)."""
    forward, backward = layer.forward, layer.backward

    def timed_forward(*args, **kwargs):
        return recorder.call(node, _FORWARD, forward, args, kwargs)

    def timed_backward(*args, **kwargs):
        return recorder.call(node, _BACKWARD, backward, args, kwargs)

    layer.forward = timed_forward
    layer.backward = timed_backward


def _tree(layers, recorder) -> list:
    """One node per model layer, with nodes for the sublayers of composites (not of fused layers)."""
    seen: set[int] = set()

    def add_children(node):
        if isinstance(node.layer, FusedLayer):
            return
        for key, sub in node.layer._sublayers.items():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            child = _Node(sub, f"{node.path}/{key}", node.depth + 1)
            _instrument(sub, child, recorder)
            node.children.append(child)
            add_children(child)

    top = []
    for i, layer in enumerate(layers):
        seen.add(id(layer))
        node = _Node(layer, str(i), 0)
        add_children(node)
        top.append(node)
    return top


def _prune(nodes):
    """Drop sublayers that were never called; order the rest by their first call."""
    kept = [n for n in nodes if n.order is not None or n.depth == 0]
    for node in kept:
        node.children = sorted(_prune(node.children), key=lambda n: n.order)
    return kept


class _Runner:
    """The passes over one list of layers: a plain total pass and an instrumented per-layer pass."""

    def __init__(self, layers, training, loss_step, dy_fixed):
        self.layers = layers
        self.training = training
        self.loss_step = loss_step
        self.dy_fixed = dy_fixed
        self.recorder = _Recorder()
        self.nodes = _tree(layers, self.recorder)
        self.total_times: list[float] = []
        self.loss_times: list[float] = []
        self.pass_sums: list[float] = []  # per timed per-layer pass: model layers (and loss) added up

    def _zero_grad(self):
        if self.training:
            for layer in self.layers:
                layer.zero_grad()

    def warm_up(self, x):
        self._zero_grad()
        out = x
        for layer in self.layers:
            out = layer(out, training=self.training)
        if self.training:
            dy = self.loss_step(out) if self.loss_step is not None else self.dy_fixed(out)
            for layer in reversed(self.layers):
                dy = _backward_step(layer, dy)
        return out

    def total(self, x):
        self._zero_grad()
        layers, training = self.layers, self.training
        t0 = time.perf_counter()
        out = x
        for layer in layers:
            out = layer(out, training=training)
        if training:
            dy = self.loss_step(out) if self.loss_step is not None else self.dy_fixed(out)
            for layer in reversed(layers):
                dy = _backward_step(layer, dy)
        self.total_times.append(time.perf_counter() - t0)

    def per_layer(self, x, mode="time"):
        self._zero_grad()
        rec = self.recorder
        rec.mode = mode
        try:
            out = x
            for node in self.nodes:
                out = rec.call(node, _FORWARD, node.layer, (out,), {"training": self.training})
            if self.training:
                if self.loss_step is not None:
                    t0 = time.perf_counter()
                    dy = self.loss_step(out)
                    if mode == "time":
                        self.loss_times.append(time.perf_counter() - t0)
                else:
                    dy = self.dy_fixed(out)
                for node in reversed(self.nodes):
                    dy = rec.call(node, _BACKWARD, _backward_step, (node.layer, dy), {})
        finally:
            rec.mode = None
        if mode == "time":
            loss = self.loss_times[-1] if self.training and self.loss_step is not None else 0.0
            self.pass_sums.append(sum(node.acc[_FORWARD] + node.acc[_BACKWARD] for node in self.nodes) + loss)
            rec.flush([n for top in self.nodes for n in top.walk()])

    def shapes(self, x):
        self.per_layer(x, mode="shape")
        self.nodes = _prune(self.nodes)

    def memory(self, x):
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        try:
            self.per_layer(x, mode="memory")
        finally:
            if not tracing:
                tracemalloc.stop()


# ---------------------------------------------------------------- arguments
def _layers_of(model):
    if isinstance(model, Sequential):
        return None
    if isinstance(model, Layer):
        return [model]
    if isinstance(model, (list, tuple)) and model and all(isinstance(layer, Layer) for layer in model):
        return list(model)
    if isinstance(model, (list, tuple)) and not model:
        raise ValueError(f"{_OWNER}: expected at least one layer. Received: model=[]")
    raise TypeError(f"{_OWNER}: expected model to be a fusenet Sequential model or a list of layers. "
                    f"Received: model={model!r}")


def _resolve_loss(loss, model):
    if loss is not None:
        if isinstance(loss, (str, dict)):
            return _losses.get(loss)
        if not callable(loss) or not callable(getattr(loss, "gradient", None)):
            raise TypeError(f"{_OWNER}: expected loss to be a loss name such as 'mse' or a fusenet loss object. "
                            f"Received: loss={loss!r}")
        return loss
    model_loss = getattr(model, "loss", None)
    if model_loss is None:
        raise ValueError(f"{_OWNER}: y was given for a training profile but there is no loss to compute: compile "
                         "the model with a loss or pass loss= (e.g. loss='mse'). Received: loss=None")
    return model_loss


def _loss_step(loss_obj, y):
    value_and_gradient = getattr(loss_obj, "value_and_gradient", None)

    def step(y_pred):
        if value_and_gradient is not None:
            _, dy = value_and_gradient(y, y_pred)
        else:
            loss_obj(y, y_pred)
            dy = loss_obj.gradient(y, y_pred)
        return dy if dy.dtype == y_pred.dtype else dy.astype(y_pred.dtype)

    return step


def _fixed_gradient(seed):
    """A random output gradient (the same on every pass) when training without ``y``."""
    cache = {}

    def dy(y_pred):
        key = (y_pred.shape, y_pred.dtype)
        if key not in cache:
            cache[key] = np.random.default_rng(seed).standard_normal(y_pred.shape).astype(y_pred.dtype)
        return cache[key]

    return dy


# ---------------------------------------------------------------- the report
def _rows(runner, total_ms, training) -> list:
    rows = []
    for top in runner.nodes:
        for node in top.walk():
            fwd = TimeStats.from_seconds(node.times[_FORWARD])
            bwd = TimeStats.from_seconds(node.times[_BACKWARD]) if training else None
            layer = node.layer
            f_flops = forward_flops(layer, node.input_shape) if node.input_shape is not None else None
            row = LayerProfile(
                path=node.path, name=layer.name, class_name=type(layer).__name__, depth=node.depth,
                output_shape=node.output_shape, forward=fwd, backward=bwd,
                forward_flops=f_flops,
                backward_flops=(backward_flops(layer, node.input_shape) if training and f_flops is not None else None),
                forward_alloc_bytes=node.alloc[_FORWARD], backward_alloc_bytes=node.alloc[_BACKWARD] if training else None,
                forward_retained_bytes=node.retained,
                replaces=layer.describe_fusion() if isinstance(layer, FusedLayer) else None,
            )
            row.share = row.time_ms / total_ms if total_ms > 0 else 0.0
            node.row = row
            rows.append(row)
    for top in runner.nodes:
        for node in top.walk():
            if node.children:
                node.row.self_ms = node.row.time_ms - sum(child.row.time_ms for child in node.children)
    return rows


def _sibling_lists(nodes):
    yield nodes
    for node in nodes:
        for sub in node.walk():
            if sub.children:
                yield sub.children


def _find_run(nodes, labels, used):
    n = len(labels)
    for siblings in _sibling_lists(nodes):
        for i in range(len(siblings) - n + 1):
            run = siblings[i:i + n]
            if [_label(node.layer) for node in run] == labels and not any(id(node) in used for node in run):
                return run
    return None


def _fused_nodes(runner):
    found = {}
    if runner is None:
        return found
    for top in runner.nodes:
        for node in top.walk():
            if isinstance(node.layer, FusedLayer):
                found.setdefault(tuple(_label(src) for src in node.layer.source_layers), node)
    return found


def _fusion_runs(rep, runner, fused_runner, total_ms):
    runs, notes, used = [], [], set()
    fused_by_sources = _fused_nodes(fused_runner)
    for entry in rep.entries:
        # positions are given as the profile's layer paths ("3", "3/body0_conv2d"), found by the layer names
        if not entry.fused:
            nodes = _find_run(runner.nodes, list(entry.layers), set())
            notes.append({"position": entry.position if nodes is None else nodes[0].path, "layers": list(entry.layers),
                          "pattern": entry.pattern, "reason": entry.reason})
            continue
        nodes = _find_run(runner.nodes, list(entry.layers), used)
        time_ms = share = None
        position = entry.position
        if nodes is not None:
            used.update(id(node) for node in nodes)
            time_ms = sum(node.row.time_ms for node in nodes)
            share = time_ms / total_ms if total_ms > 0 else 0.0
            position = nodes[0].path
        run = FusionRun(position, list(entry.layers), entry.pattern, time_ms, share, estimate=entry.saving)
        fused_node = fused_by_sources.get(tuple(entry.layers))
        if fused_node is not None and time_ms is not None:
            run.fused_time_ms = fused_node.row.time_ms
            run.saving_ms = time_ms - run.fused_time_ms
            run.saving_share = run.saving_ms / total_ms if total_ms > 0 else 0.0
        runs.append(run)
    return runs, notes


# ---------------------------------------------------------------- the entry point
def profile(model, x, y=None, training=False, repeats=10, *, loss=None, fused=True, memory=True, seed=0):
    """Profile ``model`` on the batch ``x``: per-layer times, FLOPs, allocations, and fusion.

    Args:
        model: a :class:`~fusenet.models.Sequential`, or a list of layers applied in order.
        x: one input batch (its first axis is the batch).
        y: targets for a training profile; the loss is ``loss`` or the compiled model's loss. Without
            ``y`` a training profile back-propagates a fixed random output gradient (no loss line).
            Ignored at inference.
        training: ``False``: inference forward passes; ``True``: forward (``training=True``), loss
            and backward passes (no optimizer step).
        repeats: timed repeats (each figure is the median over them).
        loss: a loss name or object for ``y`` (default: the model's compiled loss).
        fused: also time ``model.fuse(training=training)`` side by side (its total and fused layers),
            for the measured speed-up and the measured saving of every fused run.
        memory: measure allocations with ``tracemalloc`` in one extra, untimed pass.
        seed: seed of the random output gradient of a training profile without ``y``.

    Returns:
        a :class:`ProfileReport`: ``print(report)`` shows one line per layer (sublayers of composites
        indented under their parent, fused layers with what they replaced) with the median forward and
        backward times and their spread, the share of the model's total, GEMM FLOPs and achieved
        GFLOP/s (:mod:`fusenet.profiling.flops`), peak bytes allocated and the output shape; then the
        model's measured total next to the sum of its layers, the runs that match a fusion pattern
        (``fusion.report``) with their share of the time and the saving measured on ``model.fuse()``,
        and the fused model's speed-up. ``to_dict()``/``to_csv()`` give the same data.

    The profiled model is not changed: everything runs on deep copies.
    """
    layers_arg = _layers_of(model)
    repeats = check_positive_int(repeats, "repeats", _OWNER)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{_OWNER}: expected training to be True or False. Received: training={training!r}")
    training = bool(training)
    x = check_numeric(x, _OWNER)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{_OWNER}: expected x to be a non-empty batch with the batch on axis 0. Received: x with shape {x.shape}")
    loss_step = None
    if training and y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{_OWNER}: expected y to have one entry per sample of x ({x.shape[0]}). "
                             f"Received: y with shape {y.shape}")
        loss_step = _loss_step(_resolve_loss(loss, model), y)

    if layers_arg is None:
        work_model = copy.deepcopy(model)
        if not work_model.layers:
            raise ValueError(f"{_OWNER}: {model.describe()} has no layers to profile.")
        work_model(x)  # builds as model(x) would, and checks x against the model's input shape
        layers = work_model.layers
        model_name = model.describe()
    else:
        work_model = None
        layers = copy.deepcopy(layers_arg)
        model_name = f"a list of {len(layers)} layer(s)"

    runner = _Runner(layers, training, loss_step, _fixed_gradient(seed))
    runner.warm_up(x)
    fused_runner = None
    if fused:
        if work_model is not None:
            fused_model, rep = work_model.fuse(training=training, report=True)
            fused_layers = fused_model.layers
        else:
            fused_layers, rep = _fusion.LayerBuilder.optimize_sequence(copy.deepcopy(layers), training=training,
                                                                       report=True)
        fused_runner = _Runner(fused_layers, training, loss_step, _fixed_gradient(seed))
        fused_runner.warm_up(x)
    else:
        rep = _fusion.report(layers, training=training)
    runner.shapes(x)
    if fused_runner is not None:
        fused_runner.shapes(x)

    tasks = [lambda: runner.total(x), lambda: runner.per_layer(x)]
    if fused_runner is not None:
        tasks += [lambda: fused_runner.total(x), lambda: fused_runner.per_layer(x)]
    gc.collect()
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for task in (tasks if r % 2 == 0 else tasks[::-1]):
                task()
    finally:
        if gc_enabled:
            gc.enable()
    if memory:
        runner.memory(x)

    total = TimeStats.from_seconds(runner.total_times)
    rows = _rows(runner, total.median_ms, training)
    fused_total = None
    if fused_runner is not None:
        fused_total = TimeStats.from_seconds(fused_runner.total_times)
        _rows(fused_runner, fused_total.median_ms, training)
    runs, notes = _fusion_runs(rep, runner, fused_runner, total.median_ms)
    return ProfileReport(
        model_name=model_name, input_shape=tuple(x.shape), dtype=str(x.dtype), training=training, repeats=repeats,
        layers=rows, total=total, loss=TimeStats.from_seconds(runner.loss_times) if runner.loss_times else None,
        pass_sum=TimeStats.from_seconds(runner.pass_sums),
        fusion_runs=runs, fusion_notes=notes, fused_total=fused_total,
    )
