"""The functional model: layers wired into a directed acyclic graph (Keras 3 ``Functional``).

Build it by calling layers on symbolic tensors (see :mod:`fusenet.layers.symbolic`) and naming
the ends::

    x = layers.Input((32, 32, 3))
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Add()([h, layers.Conv2D(16, 1)(x)])
    model = fusenet.models.Model(inputs=x, outputs=layers.Dense(10)(layers.Flatten()(y)))

``fusenet.models.Model(inputs=..., outputs=...)`` returns a :class:`Functional` (as Keras does);
``inputs``/``outputs`` may be lists for several of each. The ``Input`` layer object itself stands
for its output tensor, so ``layers.Conv2D(16, 3)(x)`` works with ``x = layers.Input(...)``.

The model trains through the same engine as :class:`~fusenet.models.Sequential`
(:class:`~fusenet.models.model.Model`: one ``compile``/``fit``/``evaluate``/``predict`` loop). Its
forward and backward run the graph through :class:`fusenet.graph.Program`: nodes in topological
order forward, in reverse backward, where a tensor read by several layers (fan-out) receives the
sum of their gradients.

Several inputs: pass ``x`` as a list (in ``inputs`` order) or a dict keyed by the ``Input`` layers'
names. Several outputs: ``y`` likewise (keyed by the output layers' names, :attr:`output_names`);
``compile(loss=...)`` takes one loss for every output, a list, or a dict (an output whose loss is
``None`` is not trained), and ``loss_weights=`` (list or dict) weighs them; the training loss is
``sum_k w_k * loss_k``. ``metrics`` is a list applied to every output, or a dict keyed by output
names (or a list with one entry per output) for per-output metrics; each is logged as ``<output>_<metric>``;
``predict`` returns a list of arrays. ``class_weight`` needs a single output (as Keras).

Restrictions: a layer can appear once in a model (fusenet layers keep one backward cache), names
must be unique; calling a model on symbolic tensors (nesting models) is not supported.
"""

from __future__ import annotations

import copy
import inspect
import numbers

import numpy as np

from .. import callbacks as _callbacks
from .. import layers as _layers
from .. import metrics as _metrics
from ..graph import GraphNode, LayerGraph, Program
from ..layers.symbolic import SymbolicTensor, input_tensor, is_symbolic
from . import _data
from ._summary import format_functional_summary
from .model import Model, _reduced

__all__ = ["Functional"]


# ---------------------------------------------------------------- several arrays as one batch
class _ArrayTuple:
    """Several arrays with the same number of samples, batched together (the inputs or targets of a
    model with several inputs or outputs). Indexing (a slice or an index array) applies to each;
    ``shape[0]`` is the number of samples, which is all the training loop asks of it."""

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = tuple(arrays)

    @property
    def shape(self):
        return (self.arrays[0].shape[0],)

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return _ArrayTuple([a[index] for a in self.arrays])


def _part(value, k):
    return value.arrays[k] if isinstance(value, _ArrayTuple) else value[k]


# ---------------------------------------------------------------- losses and metrics of several outputs
class _OutputLosses:
    """The loss of a model with several outputs: ``sum_k weights[k] * losses[k](y_true[k], y_pred[k])``.

    An output whose loss is ``None`` adds nothing and gets a zero gradient. ``single`` marks a
    one-output model with a loss weight (``y_true``/``y_pred`` are then plain arrays).
    """

    def __init__(self, losses, weights, names, single=False):
        self.losses = list(losses)
        self.weights = [float(w) for w in weights]
        self.names = list(names)
        self.single = bool(single)

    def _pairs(self, y_true, y_pred):
        if self.single:
            return [(y_true, y_pred)]
        return [(_part(y_true, k), y_pred[k]) for k in range(len(self.losses))]

    def __call__(self, y_true, y_pred, sample_weight=None):
        total = 0.0
        for loss, w, (yt, yp) in zip(self.losses, self.weights, self._pairs(y_true, y_pred)):
            if loss is not None:
                total += w * _reduced(loss(yt, yp, sample_weight=sample_weight))
        return total

    def value_and_gradient(self, y_true, y_pred, sample_weight=None):
        """``(sum of the weighted losses, [dloss/dy_pred_k ...])`` (one gradient per output)."""
        total, grads = 0.0, []
        for loss, w, (yt, yp) in zip(self.losses, self.weights, self._pairs(y_true, y_pred)):
            if loss is None:
                grads.append(np.zeros_like(yp))
                continue
            vg = getattr(loss, "value_and_gradient", None)
            if vg is not None:
                value, g = vg(yt, yp, sample_weight=sample_weight)
            else:
                value = loss(yt, yp, sample_weight=sample_weight)
                g = loss.gradient(yt, yp, sample_weight=sample_weight)
            total += w * _reduced(value)
            g = np.asarray(g)
            if w != 1.0:
                g = g * g.dtype.type(w) if g.dtype.kind == "f" else g * w
            grads.append(g if g.dtype == yp.dtype else g.astype(yp.dtype))
        return total, (grads[0] if self.single else grads)

    def gradient(self, y_true, y_pred, sample_weight=None):
        return self.value_and_gradient(y_true, y_pred, sample_weight)[1]

    def get_config(self):
        from .. import losses as _losses

        return {"losses": [None if loss is None else _losses.serialize(loss) for loss in self.losses],
                "weights": list(self.weights), "names": list(self.names)}

    @classmethod
    def from_config(cls, config, single):
        from .. import losses as _losses

        losses = [None if spec is None else _losses.deserialize(spec) for spec in config["losses"]]
        return cls(losses, config["weights"], config["names"], single=single)


class _OutputMetric:
    """A metric applied to output ``index`` of a model with several outputs, logged as ``name``."""

    def __init__(self, metric, index, name):
        self.metric = metric
        self.index = index
        self.name = name

    def update_state(self, y_true, y_pred, sample_weight=None):
        yt, yp = _part(y_true, self.index), y_pred[self.index]
        if sample_weight is None:
            self.metric.update_state(yt, yp)
        else:
            self.metric.update_state(yt, yp, sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


# ---------------------------------------------------------------- the model
def _as_tensors(value, what):
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"Model: expected at least one tensor in {what}. Received: {what}={value!r}")
    tensors = []
    for i, item in enumerate(items):
        if isinstance(item, _layers.Input):
            item = input_tensor(item)
        if not isinstance(item, SymbolicTensor):
            raise TypeError(
                f"Model: expected {what} to be symbolic tensors (layers.Input(...) or the outputs of layers called on "
                f"them). Received: {what}[{i}]={item!r} of type {type(item).__name__}"
            )
        tensors.append(item)
    return tensors


def _check_weights_arg(value, names, owner):
    n = len(names)
    if value is None:
        return [1.0] * n
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{owner}: loss_weights names unknown outputs {unknown}; the outputs are {names}.")
        weights = [value.get(name, 1.0) for name in names]
    elif isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{owner}: expected {n} loss_weights (one per output {names}). Received: {list(value)}")
        weights = list(value)
    elif n == 1:
        weights = [value]
    else:
        raise TypeError(f"{owner}: expected loss_weights to be a list or a dict keyed by {names}. Received: {value!r}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not np.isfinite(w):
            raise ValueError(f"{owner}: expected every loss weight to be a finite number. Received: loss_weights={value!r}")
    return [float(w) for w in weights]


class Functional(Model):
    """A model whose layers form a directed acyclic graph from ``inputs`` to ``outputs``.

    Args:
        inputs: the symbolic tensor of an ``Input`` layer (or the ``Input`` layer itself), or a list of them.
        outputs: a symbolic tensor reachable from the inputs, or a list of them.
        name: the model's name (default ``"functional"``, ``"functional_1"``, ...).

    Raises ``ValueError`` when an output depends on an ``Input`` that is not among ``inputs``, when an
    input is not used by any output, or when a layer appears twice; ``TypeError`` for non-tensors.

    ``layers`` lists every layer in topological order, the ``Input`` layers first (as Keras);
    ``get_weights()`` follows that order.
    """

    def __init__(self, inputs, outputs, name=None):
        if name is None:
            n = Model._name_counts.get("functional", 0)
            Model._name_counts["functional"] = n + 1
            name = "functional" if n == 0 else f"functional_{n}"
        super().__init__(name=name)
        self._inputs = _as_tensors(inputs, "inputs")
        self._outputs = _as_tensors(outputs, "outputs")
        self._wire()

    # ------------------------------------------------------------ wiring
    def _wire(self):
        owner = f"{self.describe()}"
        inputs, outputs = self._inputs, self._outputs
        input_ids = {}
        for k, t in enumerate(inputs):
            if not t.node.is_input:
                raise ValueError(
                    f"{owner}: inputs[{k}] is {t.describe()}; model inputs must be the tensors of layers.Input(...)."
                )
            if t.node.id in input_ids:
                raise ValueError(f"{owner}: {t.node.layer.describe()} is given twice in inputs.")
            input_ids[t.node.id] = k
        names = [t.node.layer.name for t in inputs]
        visited = {}
        for k, out in enumerate(outputs):
            stack = [out.node]
            while stack:
                node = stack.pop()
                if node.id in visited:
                    continue
                visited[node.id] = node
                if node.is_input:
                    if node.id not in input_ids:
                        raise ValueError(
                            f"{owner}: output {k} ({out.describe()}) is not connected to the given inputs {names}: it "
                            f"depends on {node.layer.describe()}, which is not among them. Pass that Input in inputs=, "
                            "or compute the output from the given inputs."
                        )
                    continue
                stack.extend(t.node for t in node.inputs)
        unused = [inputs[k].node.layer.describe() for nid, k in input_ids.items() if nid not in visited]
        if unused:
            raise ValueError(
                f"{owner}: the input(s) {', '.join(unused)} are not used by any output; remove them from inputs= or "
                "connect them to an output."
            )
        order = sorted((n for n in visited.values() if not n.is_input), key=lambda n: n.id)  # ids grow with calls
        seen_layers, seen_names = {}, {}
        for node in [t.node for t in inputs] + order:
            layer = node.layer
            if id(layer) in seen_layers:
                raise ValueError(
                    f"{owner}: {layer.describe()} is called more than once in the model; a fusenet layer keeps one "
                    "backward cache, so each call needs its own layer (layers cannot be shared within a model)."
                )
            if layer.name in seen_names:
                raise ValueError(
                    f"{owner}: all layers of a model need unique names; {layer.describe()} has the same name as "
                    f"{seen_names[layer.name].describe()}. Pass name= to one of them."
                )
            seen_layers[id(layer)] = layer
            seen_names[layer.name] = layer
        graph_ids, nodes = {}, []
        for node in [t.node for t in inputs] + order:
            gid = len(nodes)
            graph_ids[node.id] = gid
            if node.is_input:
                t = node.outputs[0]
                nodes.append(GraphNode(gid, "input", node.layer, output_shapes=(t.shape,), dtype=t.dtype))
            else:
                refs = tuple((graph_ids[t.node.id], t.index) for t in node.inputs)
                nodes.append(GraphNode(gid, "layer", node.layer, refs, tuple(t.shape for t in node.inputs),
                                       tuple(t.shape for t in node.outputs), node.outputs[0].dtype, node.multi_input))
        out_refs = [(graph_ids[t.node.id], t.index) for t in outputs]
        self._structure = LayerGraph(nodes, out_refs, name=self.name)
        self._program = Program(self._structure)
        self._layers = [n.layer for n in nodes]
        self._node_inputs = {n.layer.name: [(nodes[src].layer.name, port) for src, port in n.inputs] for n in nodes}

    # ------------------------------------------------------------ structure
    @property
    def layers(self) -> list:
        """Every layer in topological order, the ``Input`` layers first (as Keras)."""
        return list(self._layers)

    def _all_layers(self) -> list:
        return self._layers

    @property
    def built(self) -> bool:
        return True

    @property
    def inputs(self) -> list:
        """The input symbolic tensors."""
        return list(self._inputs)

    @property
    def outputs(self) -> list:
        """The output symbolic tensors."""
        return list(self._outputs)

    @property
    def input_names(self) -> list:
        return [t.node.layer.name for t in self._inputs]

    @property
    def output_names(self) -> list:
        """The names of the layers producing the outputs (``<name>_<index>`` for a layer with several outputs)."""
        names = []
        for t in self._outputs:
            name = t.node.layer.name if len(t.node.outputs) == 1 else f"{t.node.layer.name}_{t.index}"
            names.append(name if name not in names else f"{name}_{len(names)}")
        return names

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def graph(self) -> LayerGraph:
        """The model's structure as a :class:`~fusenet.graph.LayerGraph` (batch dimension ``None``)."""
        return self._structure

    def _layer_output_shapes(self) -> list:
        return [n.output_shapes[0] for n in self._structure.nodes]

    def connections(self) -> dict:
        """``{layer name: [(source layer name, output index), ...]}``: where each layer reads its inputs."""
        return {layer.name: list(self._node_inputs[layer.name]) for layer in self._layers}

    def build(self, input_shape=None) -> None:
        """A functional model is built when it is made; ``input_shape`` (if given) must fit its inputs."""
        if input_shape is None:
            return
        owner = f"{self.describe()}.build"
        shapes = [input_shape] if self._n_in == 1 else list(input_shape)
        if len(shapes) != self._n_in:
            raise ValueError(f"{owner}: expected {self._n_in} input shapes. Received: input_shape={input_shape!r}")
        for t, shape in zip(self._inputs, shapes):
            self._check_shape(t, tuple(shape), owner)

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` or at position ``index`` (in :attr:`layers`)."""
        if index is not None:
            if name is not None:
                raise ValueError(f"{self.describe()}.get_layer: pass name or index, not both.")
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"{self.describe()}.get_layer: index {index} is out of range for {len(self._layers)} layers.")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.describe()}.get_layer: no layer named {name!r}. Layers: {[l.name for l in self._layers]}")

    # ------------------------------------------------------------ data
    @property
    def _n_in(self):
        return len(self._inputs)

    @property
    def _n_out(self):
        return len(self._outputs)

    def _structured(self, value, names, what, owner, convert):
        n = len(names)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            missing = [name for name in names if name not in value]
            if unknown or missing:
                raise ValueError(
                    f"{owner}: expected {what} keyed by {names}. Received keys {sorted(value)} "
                    f"(unknown: {unknown}, missing: {missing})."
                )
            items = [value[name] for name in names]
        elif isinstance(value, (list, tuple)) and (n > 1 or (len(value) == 1 and isinstance(value[0], np.ndarray))):
            if len(value) != n:
                raise ValueError(
                    f"{owner}: the model has {n} {what}s {names}, but received a list of {len(value)} arrays for {what}."
                )
            items = list(value)
        elif n == 1:
            items = [value]
        else:
            raise ValueError(
                f"{owner}: the model has {n} {what}s {names}; pass a list (in that order) or a dict of {n} arrays. "
                f"Received a single {type(value).__name__}."
            )
        label = "x" if what == "input" else "y"
        arrays = [convert(a, owner, label if n == 1 else f"{label}[{i}]") for i, a in enumerate(items)]
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"{owner}: all {what} arrays must have the same number of samples. Received shapes "
                f"{[a.shape for a in arrays]}."
            )
        return arrays[0] if n == 1 else _ArrayTuple(arrays)

    def _as_x(self, x, owner):
        if is_symbolic(x):
            raise TypeError(
                f"{owner}: calling a model on symbolic tensors (using a model as a layer) is not supported; call its "
                "layers instead, or build one model from all the layers."
            )
        return self._structured(x, self.input_names, "input", owner, _data.as_input)

    def _as_y(self, y, owner):
        return self._structured(y, self.output_names, "output", owner, _data.as_input)

    def _check_shape(self, tensor, shape, owner):
        expected = tensor.shape
        if len(shape) != len(expected) or any(e is not None and s != e for e, s in zip(expected, shape)):
            k = self._inputs.index(tensor)
            what = "x" if self._n_in == 1 else f"x[{k}]"
            raise ValueError(
                f"{owner}: input {k} ({tensor.node.layer.describe()}) expects shape {expected}, but received {what} "
                f"with shape {tuple(shape)}."
            )

    def _check_input(self, x, owner: str) -> None:
        arrays = x.arrays if isinstance(x, _ArrayTuple) else [x]
        for t, a in zip(self._inputs, arrays):
            self._check_shape(t, a.shape, owner)

    def _ensure_built(self, x) -> None:
        return None

    def _check_xy(self, x, y, sample_weight, owner):
        x = self._as_x(x, owner)
        y = self._as_y(y, owner)
        nx, ny = x.shape[0], y.shape[0]
        if nx != ny:
            raise ValueError(f"{owner}: x and y must have the same number of samples, but x has {nx} and y has {ny}.")
        sw = _data.as_sample_weight(sample_weight, nx, owner)
        self._check_input(x, owner)
        return x, y, sw

    # ------------------------------------------------------------ forward and backward
    def _forward(self, x, training=False):
        arrays = list(x.arrays) if isinstance(x, _ArrayTuple) else [x]
        outs = self._program.forward(arrays, training=training)
        return outs[0] if self._n_out == 1 else outs

    def _backward(self, dy):
        grads = self._program.backward(list(dy) if self._n_out > 1 else [dy])
        return grads[0] if self._n_in == 1 else grads

    def __call__(self, x, training=False):
        """``y = model(x, training)`` (a list of arrays in and/or out for several inputs/outputs)."""
        owner = f"{self.describe()}.__call__"
        x = self._as_x(x, owner)
        self._check_input(x, owner)
        return self._forward(x, training=bool(training))

    def predict_on_batch(self, x):
        owner = f"{self.describe()}.predict_on_batch"
        x = self._as_x(x, owner)
        self._check_input(x, owner)
        return self._forward(x, training=False)

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """The outputs on ``x`` (inference mode), ``batch_size`` samples at a time; a list of arrays for a
        model with several outputs."""
        if self._n_in == 1 and self._n_out == 1 and not isinstance(x, (list, tuple, dict)):
            return super().predict(x, batch_size=batch_size, verbose=verbose, callbacks=callbacks)
        owner = f"{self.describe()}.predict"
        batch_size = _data.check_batch_size(batch_size, owner)
        verbose = _data.check_verbose(verbose, owner)
        x = self._as_x(x, owner)
        self._check_input(x, owner)
        n = x.shape[0]
        slices = _data.batch_slices(n, batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
                                      steps=len(slices))
        cbs.on_predict_begin()
        outs = None
        for step, (start, stop) in enumerate(slices):
            cbs.on_predict_batch_begin(step)
            yb = self._forward(x[start:stop], training=False)
            parts = yb if self._n_out > 1 else [yb]
            if outs is None:
                outs = [np.empty((n,) + a.shape[1:], dtype=a.dtype) for a in parts]
            for out, a in zip(outs, parts):
                out[start:stop] = a
            cbs.on_predict_batch_end(step, {"outputs": yb})
        cbs.on_predict_end()
        return outs if self._n_out > 1 else outs[0]

    def _refuse_class_weight(self, method, args, kwargs):
        if self._n_out > 1:
            bound = inspect.signature(method).bind(self, *args, **kwargs)
            if bound.arguments.get("class_weight") is not None:
                raise ValueError(
                    f"{self.describe()}: class_weight is only supported for models with a single output (as Keras); "
                    "pass sample_weight instead."
                )

    def fit(self, *args, **kwargs):
        self._refuse_class_weight(Model.fit, args, kwargs)
        return super().fit(*args, **kwargs)

    fit.__doc__ = Model.fit.__doc__
    fit.__signature__ = inspect.signature(Model.fit)

    def train_on_batch(self, *args, **kwargs):
        self._refuse_class_weight(Model.train_on_batch, args, kwargs)
        return super().train_on_batch(*args, **kwargs)

    train_on_batch.__doc__ = Model.train_on_batch.__doc__
    train_on_batch.__signature__ = inspect.signature(Model.train_on_batch)

    # ------------------------------------------------------------ compile: losses and metrics per output
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None, loss_weights=None,
                jit_compile=False) -> None:
        """As :meth:`Model.compile <fusenet.models.model.Model.compile>`, plus, for several outputs: ``loss`` one
        loss for every output, a list (one per output, ``None`` = untrained) or a dict keyed by
        :attr:`output_names`; ``loss_weights`` a list or dict of multipliers (default 1). Metrics apply
        to every output (a flat list) or per output (a dict keyed by :attr:`output_names`, or a list of lists),
        and are named ``<output>_<metric>``."""
        self._pending_loss_weights = loss_weights
        try:
            super().compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted_metrics,
                            jit_compile=jit_compile)
        finally:
            self._pending_loss_weights = None

    def _per_output_dict(self, loss) -> bool:
        return isinstance(loss, dict) and "class_name" not in loss and bool(loss) and \
            all(isinstance(k, str) for k in loss)

    def _resolve_loss(self, loss, owner):
        names = self.output_names
        n = len(names)
        weights = getattr(self, "_pending_loss_weights", None)
        per_output = isinstance(loss, (list, tuple)) or self._per_output_dict(loss)
        if loss is None or (n == 1 and weights is None and not per_output):
            return Model._resolve_loss(loss, owner)
        if isinstance(loss, (list, tuple)):
            if len(loss) != n:
                raise ValueError(
                    f"{owner}: the model has {n} output(s) {names}, so a list of losses needs {n} entries. "
                    f"Received {len(loss)}: loss={list(loss)!r}"
                )
            items = list(loss)
        elif per_output:
            unknown = sorted(set(loss) - set(names))
            if unknown:
                raise ValueError(f"{owner}: the loss dict names unknown outputs {unknown}; the outputs are {names}.")
            items = [loss.get(name) for name in names]
        else:
            items = [loss] * n
        resolved = [None if item is None else Model._resolve_loss(item, owner) for item in items]
        if all(item is None for item in resolved):
            raise ValueError(f"{owner}: every output's loss is None; give at least one output a loss.")
        weights = _check_weights_arg(weights, names, owner)
        if n == 1 and weights == [1.0]:
            return resolved[0]
        return _OutputLosses(resolved, weights, names, single=n == 1)

    def _check_metric_list(self, specs, what, owner):
        """A flat list of metric specs; for several outputs also a dict keyed by :attr:`output_names` or a list
        with one entry (a spec, a list of specs or ``None``) per output. Which output each spec watches
        (``None``: every output) is kept in ``_metric_targets[what]``."""
        targets = getattr(self, "_metric_targets", None)
        if targets is None:
            targets = self._metric_targets = {}
        names = self.output_names
        n = len(names)
        structured = None
        if n > 1 and isinstance(specs, dict) and "class_name" not in specs:
            unknown = sorted(set(specs) - set(names))
            if unknown:
                raise ValueError(f"{owner}: {what} names unknown outputs {unknown}; the outputs are {names}.")
            structured = [specs.get(name) for name in names]
        elif (n > 1 and isinstance(specs, (list, tuple)) and len(specs) == n
              and all(s is None or isinstance(s, (list, tuple)) for s in specs)):
            structured = list(specs)
        if structured is None:
            flat = Model._check_metric_list(specs, what, owner)
            targets[what] = [None] * len(flat)
            return flat
        flat, where = [], []
        for k, entry in enumerate(structured):
            if entry is None:
                continue
            entry = [entry] if isinstance(entry, (str, dict)) or not isinstance(entry, (list, tuple)) else list(entry)
            checked = Model._check_metric_list(entry, f"{what}[{names[k]!r}]", owner)
            flat.extend(checked)
            where.extend([k] * len(checked))
        targets[what] = where
        return flat

    def _targets(self, what, count):
        targets = (getattr(self, "_metric_targets", None) or {}).get(what)
        return targets if targets is not None and len(targets) == count else [None] * count

    def _loss_value_and_gradient(self, y, y_pred, sample_weight):
        if isinstance(self.loss, _OutputLosses):
            return self.loss.value_and_gradient(y, y_pred, sample_weight)
        return super()._loss_value_and_gradient(y, y_pred, sample_weight)

    def _build_metrics(self, y, y_pred) -> None:
        if self._n_out == 1:
            return super()._build_metrics(y, y_pred)
        losses = self.loss.losses if isinstance(self.loss, _OutputLosses) else [self.loss] * self._n_out
        names = self.output_names

        def make(spec, k):
            yt, yp = _part(y, k), y_pred[k]
            if isinstance(spec, (str, dict)):
                metric = _metrics.resolve(spec, loss=losses[k], y_true_shape=yt.shape, y_pred_shape=yp.shape)
            elif callable(getattr(spec, "update_state", None)):
                metric = copy.deepcopy(spec)
            else:
                metric = _metrics.MeanMetricWrapper(spec, name=getattr(spec, "__name__", "metric"))
            return _OutputMetric(metric, k, f"{names[k]}_{metric.name}")

        def build(specs, what):
            targets = self._targets(what, len(specs))
            return [make(s, k) for k in range(self._n_out) for s, t in zip(specs, targets) if t is None or t == k]

        self._metrics = build(self._metric_specs, "metrics")
        self._weighted_metrics = build(self._weighted_metric_specs, "weighted_metrics")
        seen = ["loss"]
        for m in self._metrics + self._weighted_metrics:
            if m.name in seen:
                raise ValueError(f"{self.describe()}: two compiled metrics are named {m.name!r}; give them distinct names.")
            seen.append(m.name)
        self._metrics_built = True

    def get_compile_config(self):
        """The base compile config, plus (for several outputs) the per-output losses and metric targets."""
        loss = self.loss
        multi_loss = isinstance(loss, _OutputLosses)
        if multi_loss:
            self.loss = None  # the base serialises single losses; the per-output loss is serialised here
        try:
            config = super().get_compile_config()
        finally:
            self.loss = loss
        if config is None:
            return None
        if multi_loss:
            config["loss"] = {"class_name": "OutputLosses", "config": loss.get_config()}
        targets = {what: self._targets(what, len(specs)) for what, specs in
                   (("metrics", self._metric_specs), ("weighted_metrics", self._weighted_metric_specs))}
        if any(t is not None for ts in targets.values() for t in ts):
            config["metric_outputs"] = targets
        return config

    def compile_from_config(self, config) -> None:
        if not isinstance(config, dict):
            return super().compile_from_config(config)
        loss = config.get("loss")
        multi_loss = isinstance(loss, dict) and loss.get("class_name") == "OutputLosses"
        targets = config.get("metric_outputs")
        base = {k: v for k, v in config.items() if k != "metric_outputs"}
        if multi_loss:
            base["loss"] = None
        super().compile_from_config(base)
        if multi_loss:
            inner = loss.get("config")
            if not isinstance(inner, dict) or len(inner.get("losses", [])) != self._n_out:
                raise ValueError(
                    f"{self.describe()}: the saved per-output losses do not fit the model's {self._n_out} outputs."
                )
            self.loss = _OutputLosses.from_config(inner, single=self._n_out == 1)
        if targets is not None:
            for what, specs in (("metrics", self._metric_specs), ("weighted_metrics", self._weighted_metric_specs)):
                got = targets.get(what) if isinstance(targets, dict) else None
                if not isinstance(got, list) or len(got) != len(specs) or not all(
                        t is None or (isinstance(t, int) and 0 <= t < self._n_out) for t in got):
                    raise ValueError(f"{self.describe()}: the saved metric targets {targets!r} do not fit the model.")
                self._metric_targets[what] = list(got)

    # ------------------------------------------------------------ summary
    def summary(self, line_length=None, positions=None, print_fn=None, show_trainable=False) -> None:
        """Print a Keras-style table: layer and class, output shape, parameters, and the layers each one is
        connected to (``source[0][output index]``); then the parameter totals."""
        text = format_functional_summary(self, line_length=line_length, positions=positions,
                                         show_trainable=show_trainable)
        if print_fn is None:
            print(text)
        else:
            for line in text.split("\n"):
                print_fn(line)

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        """``{"name", "layers": [{"class_name", "config", "name", "inbound": [[source, output index], ...],
        "multi_input"}, ...], "input_layers", "output_layers"}`` (JSON-safe; layers in topological order)."""
        layers = []
        for node in self._structure.nodes:
            spec = _layers.serialize(node.layer)
            spec.update({"name": node.layer.name,
                         "inbound": [[name, port] for name, port in self._node_inputs[node.layer.name]],
                         "multi_input": node.multi_input})
            layers.append(spec)
        return {
            "name": self.name,
            "layers": layers,
            "input_layers": [[t.node.layer.name, 0] for t in self._inputs],
            "output_layers": [[t.node.layer.name, t.index] for t in self._outputs],
        }

    @classmethod
    def from_config(cls, config: dict):
        """A new model from :meth:`get_config`'s output; layers come only from fusenet's layer registry."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"Functional.from_config: expected a dict with a list of 'layers'. Received: {config!r}")
        tensors = {}

        def lookup(ref, what):
            if not (isinstance(ref, (list, tuple)) and len(ref) == 2 and isinstance(ref[0], str)
                    and isinstance(ref[1], int)):
                raise ValueError(f"Functional.from_config: {what} must be [layer name, output index]. Received: {ref!r}")
            outs = tensors.get(ref[0])
            if outs is None or not 0 <= ref[1] < len(outs):
                raise ValueError(f"Functional.from_config: {what} refers to {ref!r}, which no earlier layer provides.")
            return outs[ref[1]]

        for spec in config["layers"]:
            if not isinstance(spec, dict):
                raise ValueError(f"Functional.from_config: expected layer entries to be dicts. Received: {spec!r}")
            layer = _layers.deserialize({"class_name": spec.get("class_name"), "config": spec.get("config", {})})
            inbound = spec.get("inbound") or []
            if isinstance(layer, _layers.Input):
                outs = [input_tensor(layer, new=True)]
            else:
                if not isinstance(inbound, list) or not inbound:
                    raise ValueError(f"Functional.from_config: {layer.describe()} has no inbound connections.")
                args = [lookup(ref, f"an input of {layer.describe()}") for ref in inbound]
                out = layer(args if spec.get("multi_input") else args[0])
                outs = out if isinstance(out, list) else [out]
            if layer.name in tensors:
                raise ValueError(f"Functional.from_config: two layers are named {layer.name!r}.")
            tensors[layer.name] = outs
        inputs = [lookup(ref, "input_layers") for ref in config.get("input_layers") or []]
        outputs = [lookup(ref, "output_layers") for ref in config.get("output_layers") or []]
        return cls(inputs=inputs, outputs=outputs, name=config.get("name"))

    @classmethod
    def from_graph(cls, graph: LayerGraph, name=None):
        """A functional model calling the layers of ``graph`` (e.g. an optimised
        :class:`~fusenet.graph.LayerGraph`) wired as the graph says. Input nodes need their ``Input`` layer
        (a plain input node gets a new ``Input`` of its shape and dtype)."""
        refs = {}
        for node in graph.nodes:
            if node.kind == "input":
                layer = node.layer
                if layer is None:
                    layer = _layers.Input(node.output_shape[1:], dtype=node.dtype)
                outs = [input_tensor(layer, new=True)]
            else:
                args = [refs[r] for r in node.inputs]
                out = node.layer(args if node.multi_input else args[0])
                outs = out if isinstance(out, list) else [out]
            for port, t in enumerate(outs):
                refs[(node.id, port)] = t
        inputs = [refs[(n.id, 0)] for n in graph.input_nodes]
        outputs = [refs[r] for r in graph.outputs]
        return cls(inputs=inputs, outputs=outputs, name=name)

    # ------------------------------------------------------------ fusion
    def fuse(self, training: bool = False, report: bool = False):
        """A new, equivalent functional model whose single-consumer chains of layers went through the fusion
        registry (``LayerBuilder.optimize_sequence`` semantics, via :func:`fusenet.graph.passes.fuse_patterns`).

        ``training=False`` targets inference, ``training=True`` keeps trainable fused layers. The model is not
        changed and shares no layer with the result. Compile settings carry over (fresh optimizer state).
        With ``report=True`` returns ``(fused_model, fusion.FusionReport)``.
        """
        from ..fusion import FusionReport
        from ..graph.passes import fuse_patterns

        rep = FusionReport()
        graph = fuse_patterns(copy.deepcopy(self._structure), training=training, report=rep)
        model = Functional.from_graph(graph, name=f"{self.name}_fused")
        if self.compiled:
            model.compile_from_config(self.get_compile_config())
        return (model, rep) if report else model
