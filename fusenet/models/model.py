"""The training engine shared by every model: ``compile``, ``fit``, ``evaluate``, ``predict`` and friends.

:class:`Model` holds everything that does not depend on how layers are wired; a subclass
(:class:`~fusenet.models.Sequential`, :class:`~fusenet.models.Functional`) provides the graph:

- ``_all_layers()``: every layer (the input layer included) in forward order;
- ``_forward(x, training)`` and ``_backward(dy)``;
- ``_ensure_built(x)``/``built``, ``_check_input(x, owner)``, ``_layer_output_shapes()``;
- ``get_config()``/``from_config()``.

One training step on a batch ``(x, y, sample_weight)`` (vectorised over the batch)::

    layer.zero_grad()                      for every layer
    y_pred = forward(x, training=True)
    loss   = loss_fn(y, y_pred, sample_weight) + sum(layer.regularization_loss())
    dy     = loss_fn.gradient(y, y_pred, sample_weight)   # (one pass: loss_fn.value_and_gradient)
    backward(dy)                           # dy = layer.backward(layer.activity_gradient(dy)), in reverse
    layer.add_regularization_gradients()   for every layer
    optimizer.apply(layers)                # the update, then layer.apply_constraints()

The loss reported for an epoch is the mean of the batch losses (regularization included)
weighted by batch size, as Keras; metrics are stateful and reset at every epoch.

``compile(..., jit_compile=True)`` runs the same step through a compiled plan
(:func:`fusenet.graph.compile`, dynamic batch): ``forward``/``backward`` above become the plan's
generated forward and backward over the model's own layers (the same gradients), and evaluation
and prediction run the compiled inference plan. The loop itself is the same.
"""

from __future__ import annotations

import json

import numpy as np

from .. import callbacks as _callbacks
from .. import losses as _losses
from .. import metrics as _metrics
from .. import optimizers as _optimizers
from ..errors import NotBuiltError, NotCompiledError
from ..layers.base import input_gradients_unused
from ..utils import draw_seed
from . import _data
from ._summary import format_summary

__all__ = ["Model"]


class _LossTracker:
    """Mean of the batch losses weighted by batch size: ``sum(n_b * loss_b) / sum(n_b)``."""

    def __init__(self):
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int) -> None:
        self.total += float(value) * n
        self.count += n

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset(self) -> None:
        self.total, self.count = 0.0, 0


def _reduced(value) -> float:
    """The loss value as a float; an unreduced loss (``reduction="none"``) counts as the sum of its
    entries, the quantity its ``gradient`` differentiates."""
    return float(value) if np.ndim(value) == 0 else float(np.sum(value))


def _metric_value(metric):
    value = metric.result()
    if np.ndim(value) == 0:
        return float(value)
    return np.asarray(value)


class Model:
    """Base class of fusenet's models: the compile/fit/evaluate/predict engine (Keras 3 semantics).

    Attributes:
        name: the model's name.
        optimizer, loss: set by :meth:`compile` (objects).
        compiled: whether :meth:`compile` ran.
        stop_training: set to ``True`` (e.g. by a callback) to end ``fit`` after the current batch.
        history: the :class:`~fusenet.callbacks.History` of the last ``fit``.
    """

    _name_counts: dict = {}

    def __new__(cls, *args, **kwargs):
        """``Model(inputs=..., outputs=...)`` (or ``Model(x, y)``) makes a functional model
        (:class:`~fusenet.models.Functional`), as in Keras; subclasses are made as usual."""
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional

            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, name=None):
        if name is None:
            base = "sequential" if type(self).__name__ == "Sequential" else "model"
            n = Model._name_counts.get(base, 0)
            Model._name_counts[base] = n + 1
            name = base if n == 0 else f"{base}_{n}"
        elif not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: expected name to be a non-empty string. Received: name={name!r}")
        self.name = name
        self.optimizer = None
        self.loss = None
        self.compiled = False
        self.stop_training = False
        self.history = None
        self._metric_specs: list = []
        self._weighted_metric_specs: list = []
        self._metrics: list = []
        self._weighted_metrics: list = []
        self._metrics_built = False
        self._loss_tracker = _LossTracker()
        self._initial_epoch = None  # set by BackupAndRestore in on_train_begin
        self._shuffle_seed = None
        self.jit_compile = False
        self._jit = None

    # ------------------------------------------------------------ graph hooks (subclasses)
    def _all_layers(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, x, training=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def _input_layers(self) -> list:
        """The layers that read the model's input directly (their input gradient goes nowhere)."""
        return []

    def _train_backward(self, dy):
        """``_backward`` for a training step: the layers that read the model input are told (via
        ``Layer._input_grad_needed``) that their input gradient is not wanted, so they may skip it."""
        with input_gradients_unused(self._input_layers()):
            return self._backward(dy)

    def _backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def _ensure_built(self, x) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_input(self, x, owner: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _layer_output_shapes(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def layers(self) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def built(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} layers={len(self.layers)} built={self.built}>"

    # ------------------------------------------------------------ weights
    def _require_built(self, what: str) -> None:
        if not self.built:
            raise NotBuiltError(
                f"{self.describe()} is not built yet, so {what} is not available: give the first layer an input "
                "shape (layers.Input(shape) or input_shape=), call build(input_shape), or call the model on data."
            )

    @property
    def weights(self) -> list:
        """Every weight array (live, not copies) in Keras order: layer by layer, each in its own order."""
        return [w for layer in self._all_layers() for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        return [w for layer in self._all_layers() for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list:
        return [w for layer in self._all_layers() for w in layer.non_trainable_weights]

    def get_weights(self) -> list:
        """Copies of all weights in Keras order (the concatenation of every layer's ``get_weights()``)."""
        return [w for layer in self._all_layers() for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        """Copy ``weights`` (a list in :meth:`get_weights` order) into the model.

        The count and every shape are checked first; on a mismatch a ``ValueError`` names the
        layer and weight, and nothing changes.
        """
        weights = list(weights)
        current = self.weights
        if len(weights) != len(current):
            raise ValueError(
                f"{self.describe()}: set_weights expects {len(current)} arrays (shapes {[w.shape for w in current]}), "
                f"but received {len(weights)}."
            )
        pos = 0
        chunks = []
        for layer in self._all_layers():
            k = len(layer.weights)
            chunk = weights[pos:pos + k]
            for i, (w, ref) in enumerate(zip(chunk, layer.weights)):
                if np.shape(w) != ref.shape:
                    raise ValueError(
                        f"{self.describe()}: weight {i} of {layer.describe()} expects shape {ref.shape}, "
                        f"but received an array of shape {np.shape(w)}."
                    )
            chunks.append((layer, chunk))
            pos += k
        for layer, chunk in chunks:
            if chunk:
                layer.set_weights(chunk)

    def count_params(self) -> int:
        """The number of scalars in all weights (trainable and not)."""
        self._require_built("count_params()")
        return int(sum(w.size for w in self.weights))

    # ------------------------------------------------------------ summary
    def summary(self, line_length=None, positions=None, print_fn=None, show_trainable=False) -> None:
        """Print a Keras-style table: layer name and class, output shape, parameter count; then the
        totals of all, trainable and non-trainable parameters.

        ``print_fn`` (default ``print``) receives each line; pass e.g. ``lines.append`` to collect them.
        """
        text = format_summary(self, line_length=line_length, positions=positions, show_trainable=show_trainable)
        if print_fn is None:
            print(text)
        else:
            for line in text.split("\n"):
                print_fn(line)

    # ------------------------------------------------------------ calling
    def __call__(self, x, training=False):
        """``y = model(x, training)``: the forward pass over a whole array (not batched)."""
        x = _data.as_input(x, f"{self.describe()}.__call__")
        self._ensure_built(x)
        self._check_input(x, f"{self.describe()}.__call__")
        return self._forward(x, training=bool(training))

    # ------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None, jit_compile=False) -> None:
        """Set the optimizer, the loss and the metrics (each a name or an object).

        ``metrics`` is a list of names (``"accuracy"``, ``"mse"``, ...) or metric objects; the plain
        string ``"accuracy"``/``"acc"`` becomes binary, sparse categorical or categorical accuracy
        from the shapes of the first batch, as Keras. Metrics in ``metrics`` ignore sample weights;
        those in ``weighted_metrics`` use them. A string names its metric in the logs.

        ``jit_compile=True`` (Keras' name) trains, evaluates and predicts through compiled plans
        (:func:`fusenet.graph.compile`); a model that cannot be traced warns and runs interpreted.
        """
        owner = f"{self.describe()}.compile"
        if not isinstance(jit_compile, (bool, np.bool_)):
            raise TypeError(f"{owner}: expected jit_compile to be True or False. Received: jit_compile={jit_compile!r}")
        self.jit_compile = bool(jit_compile)
        self._jit = None
        self.optimizer = self._resolve_optimizer(optimizer, owner)
        self.loss = self._resolve_loss(loss, owner)
        self._metric_specs = self._check_metric_list(metrics, "metrics", owner)
        self._weighted_metric_specs = self._check_metric_list(weighted_metrics, "weighted_metrics", owner)
        self._metrics, self._weighted_metrics = [], []
        self._metrics_built = False
        self._loss_tracker.reset()
        self.compiled = True

    @staticmethod
    def _resolve_optimizer(optimizer, owner):
        if isinstance(optimizer, (str, dict)):
            return _optimizers.get(optimizer)
        if optimizer is None or not callable(getattr(optimizer, "apply", None)):
            raise TypeError(
                f"{owner}: expected optimizer to be a name such as 'adam' or a fusenet optimizer object. "
                f"Received: optimizer={optimizer!r}"
            )
        return optimizer

    @staticmethod
    def _resolve_loss(loss, owner):
        if loss is None:
            return None
        if isinstance(loss, (str, dict)):
            return _losses.get(loss)
        if not callable(loss) or not callable(getattr(loss, "gradient", None)):
            raise TypeError(
                f"{owner}: expected loss to be a name such as 'mse' or a fusenet loss object with a gradient "
                f"(plain functions have none). Received: loss={loss!r}"
            )
        return loss

    @staticmethod
    def _check_metric_list(specs, what, owner):
        if specs is None:
            return []
        if isinstance(specs, (str, dict)) or not isinstance(specs, (list, tuple)):
            raise TypeError(f"{owner}: expected {what} to be a list of metric names or objects. Received: {what}={specs!r}")
        out = []
        for i, spec in enumerate(specs):
            if spec is None:
                raise ValueError(f"{owner}: {what}[{i}] is None; expected a metric name or object.")
            if not isinstance(spec, (str, dict)) and not callable(getattr(spec, "update_state", None)) and not callable(spec):
                raise TypeError(f"{owner}: expected {what}[{i}] to be a metric name or object. Received: {spec!r}")
            if isinstance(spec, str) and spec.lower() not in ("accuracy", "acc"):
                _metrics.get(spec)  # unknown names fail at compile time, listing the valid ones
            out.append(spec)
        return out

    def _assert_compiled(self, owner: str) -> None:
        if not self.compiled:
            raise NotCompiledError(
                f"{owner}: you must call compile(optimizer, loss, metrics) before training or evaluating "
                f"{self.describe()}."
            )
        if self.loss is None:
            raise ValueError(f"{owner}: no loss to compute. Pass loss= to compile() (e.g. loss='mse').")

    def _build_metrics(self, y, y_pred) -> None:
        def make(spec):
            if isinstance(spec, str) or isinstance(spec, dict):
                return _metrics.resolve(spec, loss=self.loss, y_true_shape=y.shape, y_pred_shape=y_pred.shape)
            if callable(getattr(spec, "update_state", None)):
                return spec
            return _metrics.MeanMetricWrapper(spec, name=getattr(spec, "__name__", "metric"))

        self._metrics = [make(s) for s in self._metric_specs]
        self._weighted_metrics = [make(s) for s in self._weighted_metric_specs]
        names = ["loss"]
        for m in self._metrics + self._weighted_metrics:
            if m.name in names:
                raise ValueError(
                    f"{self.describe()}: two compiled metrics are named {m.name!r}; give them distinct names."
                )
            names.append(m.name)
        self._metrics_built = True

    @property
    def metrics(self) -> list:
        """The compiled metric objects (after the first batch), in order."""
        return list(self._metrics) + list(self._weighted_metrics)

    @property
    def metrics_names(self) -> list:
        """``["loss", <metric names>...]``: the order of ``evaluate``'s list result."""
        return ["loss"] + [m.name for m in self.metrics]

    def reset_metrics(self) -> None:
        """Reset the loss tracker and every metric."""
        self._loss_tracker.reset()
        for m in self.metrics:
            m.reset_state()

    def _logs(self) -> dict:
        logs = {"loss": self._loss_tracker.result()}
        for m in self.metrics:
            logs[m.name] = _metric_value(m)
        return logs

    def _update_metrics(self, y, y_pred, sample_weight) -> None:
        if not self._metrics_built:
            self._build_metrics(y, y_pred)
        for m in self._metrics:
            m.update_state(y, y_pred)
        for m in self._weighted_metrics:
            m.update_state(y, y_pred, sample_weight=sample_weight)

    # ------------------------------------------------------------ one step
    def _regularization_loss(self, layers) -> float:
        return float(sum(layer.regularization_loss() for layer in layers))

    def _loss_value_and_gradient(self, y, y_pred, sample_weight):
        """``(reduced loss, dloss/dy_pred in y_pred's dtype)``, in one pass where the loss offers it."""
        value_and_gradient = getattr(self.loss, "value_and_gradient", None)
        if value_and_gradient is not None:
            value, dy = value_and_gradient(y, y_pred, sample_weight=sample_weight)
        else:
            value = self.loss(y, y_pred, sample_weight=sample_weight)
            dy = self.loss.gradient(y, y_pred, sample_weight=sample_weight)
        return _reduced(value), (dy if dy.dtype == y_pred.dtype else dy.astype(y_pred.dtype))

    def _jit_model(self):
        """The compiled model behind ``jit_compile=True`` (made on first use), else ``None``."""
        if not self.jit_compile:
            return None
        if self._jit is None or self._jit.model is not self:  # (a copied model compiles its own)
            from ..graph import compile as compile_graph

            self._jit = compile_graph(self, dynamic_batch=True)
        return self._jit

    def _gradient_step(self, x, y, sample_weight, forward, backward):
        """One optimizer step with ``forward(x, training=True)`` and ``backward(dy)``: ``(loss, y_pred)``."""
        layers = self._all_layers()
        for layer in layers:
            layer.zero_grad()
        y_pred = forward(x, training=True)
        value, dy = self._loss_value_and_gradient(y, y_pred, sample_weight)
        loss = value + self._regularization_loss(layers)
        backward(dy)
        for layer in layers:
            layer.add_regularization_gradients()
        self.optimizer.apply(layers)
        return loss, y_pred

    def _train_step(self, x, y, sample_weight) -> None:
        jit = self._jit_model()
        if jit is not None:
            loss, y_pred = jit.train_step(x, y, sample_weight)
        else:
            loss, y_pred = self._gradient_step(x, y, sample_weight, self._forward, self._train_backward)
        self._loss_tracker.update(loss, x.shape[0])
        self._update_metrics(y, y_pred, sample_weight)

    def _infer(self, x):
        """Inference on one batch: the compiled plan with ``jit_compile=True``, else ``_forward``."""
        jit = self._jit_model()
        return self._forward(x, training=False) if jit is None else jit(x)

    def _test_step(self, x, y, sample_weight) -> None:
        y_pred = self._infer(x)
        loss = _reduced(self.loss(y, y_pred, sample_weight=sample_weight)) + self._regularization_loss(self._all_layers())
        self._loss_tracker.update(loss, x.shape[0])
        self._update_metrics(y, y_pred, sample_weight)

    # ------------------------------------------------------------ data checks
    def _check_xy(self, x, y, sample_weight, owner):
        x = _data.as_input(x, owner, "x")
        y = _data.as_target(y, owner)
        n = _data.check_same_length(owner, x=x, y=y)
        sw = _data.as_sample_weight(sample_weight, n, owner)
        self._ensure_built(x)
        self._check_input(x, owner)
        return x, y, sw

    # ------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            validation_batch_size=None, validation_freq=1):
        """Train for ``epochs`` epochs (Keras 3 semantics); returns a :class:`~fusenet.callbacks.History`.

        Args:
            x, y: arrays with the same number of samples (``y`` as the loss expects it).
            batch_size: samples per step (default 32); the last batch of an epoch may be smaller.
            epochs: the index of the last epoch (training runs epochs ``initial_epoch .. epochs-1``).
            verbose: ``"auto"`` (= 1), 0 silent, 1 progress bar, 2 one line per epoch.
            callbacks: a list of :class:`~fusenet.callbacks.Callback`.
            validation_split: the fraction of the data held out for validation: the LAST samples,
                taken before shuffling (as Keras). Ignored when ``validation_data`` is given.
            validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``.
            shuffle: shuffle the training samples at every epoch (``"batch"``: shuffle whole batches).
                The order comes from a seed drawn from :func:`fusenet.set_random_seed`'s generator,
                so the same seed gives the same run bit for bit.
            class_weight: ``{class index: weight}``, turned into per-sample weights.
            sample_weight: one weight per training sample.
            initial_epoch: the epoch to start from (for resuming).
            validation_batch_size: batch size of the validation pass (default ``batch_size``).
            validation_freq: validate every ``validation_freq`` epochs.

        The logs hold ``loss`` (epoch mean weighted by batch size, regularization included), the
        metric names, and ``val_loss``/``val_<metric>`` when there is validation data.

        With a full-batch or derivative-free optimizer (``LBFGS``, ``BFGS``, ..., ``DifferentialEvolution``,
        ...; ``optimizer.full_batch``), ``batch_size`` must be None (or cover the whole data set): each
        optimizer iteration is one epoch of one step, and the run lasts up to ``optimizer.max_iter``
        iterations (``epochs`` is not used); see :meth:`_fit_full_batch`.
        """
        owner = f"{self.describe()}.fit"
        self._assert_compiled(owner)
        full_batch = _optimizers.is_full_batch(self.optimizer)
        requested_batch_size = batch_size
        batch_size = _data.check_batch_size(batch_size, owner)
        val_batch_size = _data.check_batch_size(validation_batch_size or batch_size, owner)
        verbose = _data.check_verbose(verbose, owner)
        epochs = _data.check_non_negative(epochs, "epochs", owner)
        initial_epoch = _data.check_non_negative(initial_epoch, "initial_epoch", owner)
        validation_freq = _data.check_positive(validation_freq, "validation_freq", owner)
        if shuffle not in (True, False, "batch"):
            raise ValueError(f"{owner}: expected shuffle to be True, False or 'batch'. Received: shuffle={shuffle!r}")
        if class_weight is not None and sample_weight is not None:
            raise ValueError(f"{owner}: pass class_weight or sample_weight, not both (as Keras).")
        x, y, sw = self._check_xy(x, y, sample_weight, owner)

        val = None
        if validation_data is not None:
            xv, yv, swv = _data.unpack_validation_data(validation_data, owner)
            val = self._check_xy(xv, yv, swv, f"{owner} (validation_data)")
        elif validation_split:
            (x, y, sw), (xv, yv, swv) = _data.split_validation(validation_split, [x, y, sw], owner)
            val = (xv, yv, swv)
        if class_weight is not None:
            sw = _data.class_weight_to_sample_weights(y, class_weight, owner)

        n = x.shape[0]
        if full_batch:  # one optimizer iteration = one epoch of one step over all the samples
            _optimizers.check_batch_size(self.optimizer, requested_batch_size, n, owner)
            batch_size, epochs = n, initial_epoch + self.optimizer.max_iter
        slices = _data.batch_slices(n, batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                                      verbose=verbose, epochs=epochs, steps=len(slices))
        self.stop_training = False
        self._initial_epoch = None
        self._shuffle_seed = draw_seed()
        cbs.on_train_begin()
        if self._initial_epoch is not None:  # a callback (BackupAndRestore) resumes the run
            initial_epoch = self._initial_epoch
        self._initial_epoch = None
        training_logs = None
        if full_batch:
            training_logs = self._fit_full_batch(x, y, sw, val, val_batch_size, validation_freq, initial_epoch, cbs)
            epochs = initial_epoch  # the loop below is for gradient optimizers
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            order = _data.epoch_order(n, shuffle, batch_size, self._shuffle_seed, epoch)
            for step, (start, stop) in enumerate(slices):
                cbs.on_train_batch_begin(step)
                idx = slice(start, stop) if order is None else order[start:stop]
                self._train_step(x[idx], y[idx], None if sw is None else sw[idx])
                cbs.on_train_batch_end(step, self._logs())
                if self.stop_training:
                    break
            epoch_logs = self._logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_evaluation(*val, val_batch_size, cbs)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if self.stop_training:
                break
        cbs.on_train_end(training_logs)
        self.history = cbs.history
        return cbs.history

    def _fit_full_batch(self, x, y, sw, val, val_batch_size, validation_freq, initial_epoch, cbs):
        """Train with a full-batch or derivative-free optimizer (``optimizer.full_batch``).

        The optimizer minimises the full-batch loss as a function of the flat parameter vector
        (:mod:`fusenet.optimizers.flat`); each of its iterations is one epoch of one step for the
        callbacks, the progress bar and the History (logs: ``loss``, the metrics at the current
        weights, ``nfev`` = loss evaluations so far, ``val_*``). The run stops after
        ``optimizer.max_iter`` iterations, on the optimizer's own convergence rule, or when a callback
        sets ``stop_training``. Gradient optimizers see the training-mode loss and gradients;
        derivative-free ones the inference-mode loss (deterministic: no dropout noise). Weight
        constraints are applied once, to the final weights. Returns the last epoch's logs.
        """
        layers = self._all_layers()

        def forward_backward():  # _train_step without the update
            for layer in layers:
                layer.zero_grad()
            y_pred = self._forward(x, training=True)
            value, dy = self._loss_value_and_gradient(y, y_pred, sw)
            loss = value + self._regularization_loss(layers)
            self._backward(dy)
            for layer in layers:
                layer.add_regularization_gradients()
            return loss

        def forward_loss():
            y_pred = self._forward(x, training=False)
            return _reduced(self.loss(y, y_pred, sample_weight=sw)) + self._regularization_loss(layers)

        objective = _optimizers.make_objective(layers, forward_backward=forward_backward, forward_loss=forward_loss)
        last = {"logs": None}

        def on_iteration(info):  # the layers hold info.x
            epoch = initial_epoch + info.iteration - 1
            self.reset_metrics()
            cbs.on_epoch_begin(epoch)
            cbs.on_train_batch_begin(0)
            self._loss_tracker.update(info.fun, x.shape[0])
            if self._metric_specs or self._weighted_metric_specs:
                self._update_metrics(y, self._forward(x, training=False), sw)
            logs = self._logs()
            logs["nfev"] = info.nfev
            cbs.on_train_batch_end(0, logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._run_evaluation(*val, val_batch_size, cbs)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            last["logs"] = logs
            return self.stop_training

        self.optimizer.minimize(objective, callback=on_iteration)
        for layer in layers:
            layer.apply_constraints()
        return last["logs"]

    # ------------------------------------------------------------ evaluate
    def _run_evaluation(self, x, y, sw, batch_size, cbs) -> dict:
        self.reset_metrics()
        cbs.on_test_begin()
        for step, (start, stop) in enumerate(_data.batch_slices(x.shape[0], batch_size)):
            cbs.on_test_batch_begin(step)
            self._test_step(x[start:stop], y[start:stop], None if sw is None else sw[start:stop])
            cbs.on_test_batch_end(step, self._logs())
        logs = self._logs()
        cbs.on_test_end(logs)
        return logs

    def _flatten_logs(self, logs: dict):
        values = [logs[name] for name in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, callbacks=None,
                 return_dict=False):
        """The loss (regularization included) and metrics on ``(x, y)``, in batches.

        Returns the loss (a float) when there are no metrics, else ``[loss, metric, ...]`` in
        :attr:`metrics_names` order; ``return_dict=True`` returns ``{name: value}``.
        """
        owner = f"{self.describe()}.evaluate"
        self._assert_compiled(owner)
        batch_size = _data.check_batch_size(batch_size, owner)
        verbose = _data.check_verbose(verbose, owner)
        x, y, sw = self._check_xy(x, y, sample_weight, owner)
        steps = len(_data.batch_slices(x.shape[0], batch_size))
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
                                      steps=steps)
        logs = self._run_evaluation(x, y, sw, batch_size, cbs)
        return dict(logs) if return_dict else self._flatten_logs(logs)

    # ------------------------------------------------------------ predict
    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """The model's outputs on ``x`` (inference mode), computed ``batch_size`` samples at a time.

        Memory beyond the result is bounded by one batch; any batch size works (the last batch may
        be smaller).
        """
        owner = f"{self.describe()}.predict"
        batch_size = _data.check_batch_size(batch_size, owner)
        verbose = _data.check_verbose(verbose, owner)
        x = _data.as_input(x, owner, "x")
        self._ensure_built(x)
        self._check_input(x, owner)
        slices = _data.batch_slices(x.shape[0], batch_size)
        cbs = _callbacks.CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose, epochs=1,
                                      steps=len(slices))
        cbs.on_predict_begin()
        out = None
        for step, (start, stop) in enumerate(slices):
            cbs.on_predict_batch_begin(step)
            yb = self._infer(x[start:stop])
            if out is None:
                out = np.empty((x.shape[0],) + yb.shape[1:], dtype=yb.dtype)
            out[start:stop] = yb
            cbs.on_predict_batch_end(step, {"outputs": yb})
        cbs.on_predict_end()
        return out

    # ------------------------------------------------------------ single batches
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on exactly this batch; returns the running loss and metrics.

        As Keras 3, the loss and metrics accumulate across calls until :meth:`reset_metrics`.
        """
        owner = f"{self.describe()}.train_on_batch"
        self._assert_compiled(owner)
        if class_weight is not None and sample_weight is not None:
            raise ValueError(f"{owner}: pass class_weight or sample_weight, not both (as Keras).")
        x, y, sw = self._check_xy(x, y, sample_weight, owner)
        if class_weight is not None:
            sw = _data.class_weight_to_sample_weights(y, class_weight, owner)
        self._train_step(x, y, sw)
        logs = self._logs()
        return logs if return_dict else self._flatten_logs(logs)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss and metrics on this batch (inference mode; accumulating as :meth:`train_on_batch`)."""
        owner = f"{self.describe()}.test_on_batch"
        self._assert_compiled(owner)
        x, y, sw = self._check_xy(x, y, sample_weight, owner)
        self._test_step(x, y, sw)
        logs = self._logs()
        return logs if return_dict else self._flatten_logs(logs)

    def predict_on_batch(self, x):
        """The outputs on this batch (inference mode), in one forward pass."""
        owner = f"{self.describe()}.predict_on_batch"
        x = _data.as_input(x, owner, "x")
        self._ensure_built(x)
        self._check_input(x, owner)
        return self._forward(x, training=False)

    # ------------------------------------------------------------ compile config
    def get_compile_config(self):
        """JSON-safe ``{"optimizer", "loss", "metrics", "weighted_metrics"}`` and ``"jit_compile": True`` when set
        (``None`` before compile)."""
        if not self.compiled:
            return None

        def metric_spec(spec):
            if isinstance(spec, (str, dict)):
                return spec
            if not callable(getattr(spec, "update_state", None)):
                spec = _metrics.MeanMetricWrapper(spec, name=getattr(spec, "__name__", None))
            out = _metrics.serialize(spec)
            try:
                json.dumps(out)
            except TypeError:
                raise TypeError(
                    f"{self.describe()}: the compiled metric {spec.name!r} wraps a plain Python function, which a "
                    "saved file cannot hold; compile with one of fusenet's metric names or classes, or use save_weights()."
                ) from None
            return out

        config = {
            "optimizer": _optimizers.serialize(self.optimizer),
            "loss": None if self.loss is None else _losses.serialize(self.loss),
            "metrics": [metric_spec(s) for s in self._metric_specs],
            "weighted_metrics": [metric_spec(s) for s in self._weighted_metric_specs],
        }
        if self.jit_compile:
            config["jit_compile"] = True
        return config

    def compile_from_config(self, config) -> None:
        """:meth:`compile` with :meth:`get_compile_config`'s output (only fusenet's registries are used)."""
        if not isinstance(config, dict):
            raise ValueError(f"{self.describe()}: expected a compile config dict. Received: {config!r}")
        metrics = [s if isinstance(s, str) else _metrics.deserialize(s) for s in config.get("metrics") or []]
        weighted = [s if isinstance(s, str) else _metrics.deserialize(s) for s in config.get("weighted_metrics") or []]
        loss = config.get("loss")
        self.compile(
            optimizer=_optimizers.deserialize(config["optimizer"]),
            loss=None if loss is None else _losses.deserialize(loss),
            metrics=metrics or None,
            weighted_metrics=weighted or None,
            jit_compile=config.get("jit_compile") is True,
        )

    def to_json(self, **kwargs) -> str:
        """The architecture as JSON: ``{"class_name", "config"}`` (see :func:`fusenet.models.model_from_json`)."""
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()}, **kwargs)

    # ------------------------------------------------------------ files
    def save(self, filepath, overwrite=True) -> None:
        """Write the model (architecture, compile settings, weights, optimizer state) to one zip file,
        atomically. See :func:`fusenet.models.save_model`."""
        from .saving import save_model

        save_model(self, filepath, overwrite=overwrite)

    def save_weights(self, filepath, overwrite=True, format=None) -> None:
        """Write only the weights (a zip of ``.npy`` entries; a ``.npz`` path gives the same file), atomically.

        ``format="keras-h5"`` (the default for a path ending in ``.weights.h5``) writes a Keras 3
        ``.weights.h5`` file instead (needs h5py; see :mod:`fusenet.interop`).
        """
        if format is None and str(filepath).endswith(".weights.h5"):
            format = "keras-h5"
        if format == "keras-h5":
            from ..interop import save_keras_weights

            return save_keras_weights(self, filepath, overwrite=overwrite)
        if format not in (None, "fusenet"):
            raise ValueError(f"{self.describe()}.save_weights: expected format to be one of [None, 'fusenet', "
                             f"'keras-h5']. Received: format={format!r}")
        from .saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (or a plain ``.npz`` of arrays in
        :meth:`get_weights` order). Every entry is checked first; nothing changes on an error
        (:class:`fusenet.errors.ModelFileError`). A Keras 3 ``.weights.h5`` file (an ``.h5`` path or an
        HDF5 file) is read by layer order and shape (see :mod:`fusenet.interop`)."""
        from ..interop import is_hdf5_file, load_keras_weights

        if str(filepath).endswith((".h5", ".hdf5")) or is_hdf5_file(filepath):
            return load_keras_weights(self, filepath)
        from .saving import load_weights

        load_weights(self, filepath)

    def _save_training_state(self, filepath, metadata: dict) -> None:
        from .saving import save_training_state

        save_training_state(self, filepath, metadata)

    def _load_training_state(self, filepath) -> dict:
        from .saving import load_training_state

        return load_training_state(self, filepath)

