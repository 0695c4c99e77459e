"""fusenet layers inside a gradient tape, and layers written with tape operations.

**Layer calls on a tape.** While a :class:`~fusenet.autodiff.GradientTape` is entered, calling
a fusenet layer on a :class:`~fusenet.autodiff.Tensor` (``dense(x)``) records ONE node whose
backward is the layer's own hand-written ``backward`` (a ``Sequential`` model records one node
per layer). A layer with trainable
weights is recorded even when its input is a plain array, as long as a tape records with
``watch_accessed_variables=True`` (the weights are variables the tape sees accessed), so the
TensorFlow-style training step works unchanged::

    with GradientTape() as tape:
        loss = call_loss(loss_fn, y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))

The node's inputs are the layer's inputs and its parameters, each parameter wrapped in a
:class:`~fusenet.autodiff.Variable` that shares the parameter's memory. Asking the tape for the
gradient of a parameter (its ndarray, that Variable, or any Variable on the same array) gives
this call's contribution; the layer's ``grads`` receive it too (``+=``, as ``backward`` always
does). :func:`call_layer` is the same thing as a function.

Rules:

- the layer runs its forward with the ``training`` flag of the call. Its backward needs the
  training forward, so differentiating through a call made with ``training=False`` raises
  :class:`~fusenet.autodiff.TapeUsageError` naming the layer (call it with ``training=True``);
- a layer called several times on one tape is differentiated correctly for every call (the
  bridge keeps each call's saved values);
- the layer's backward is NumPy, so a second-order gradient through a layer node raises
  ``NotImplementedError`` (write the computation with tape operations, e.g. a :class:`TapeLayer`);
- while a layer runs its own forward and backward, outer tapes do not record: the layer is one node.

Outside any tape, layers behave exactly as without this module: the routing of Tensor inputs
(``Layer.__call__`` replaced by a wrapper that calls the original for everything else) is
switched on when the first tape (or a :class:`TapeLayer` call) opens and off when the last one
closes. Tapes are single-threaded.

**TapeLayer.** Subclass it, create weights in ``build`` with ``add_weight`` (which returns a
:class:`~fusenet.autodiff.Variable` on the parameter array) and write ``call(x)`` with tape
operations; ``forward`` records the call on a private tape and ``backward(dy)`` replays it::

    class Scale(TapeLayer):
        def build(self, input_shape):
            self.w = self.add_weight("w", (input_shape[-1],), "ones")

        def call(self, x):
            return ad.tanh(x * self.w)

Such a layer has ``params``/``grads``/``get_config`` like any other and trains in
``Sequential.fit``.
"""

from __future__ import annotations

import inspect
import weakref

import numpy as np

from ..layers.base import Layer
from . import tape as _tape
from .tape import GradientTape, TapeUsageError, non_differentiable, record_node
from .tensor import Tensor, Variable

__all__ = ["call_layer", "TapeLayer", "layer_variables"]

_ORIGINAL_CALL = Layer.__call__


# ---------------------------------------------------------------- routing layer calls
def _has_tensor(x) -> bool:
    if isinstance(x, Tensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(v, Tensor) for v in x)


def _wants_tape(layer: Layer, x) -> bool:
    if _has_tensor(x):
        return True
    tapes = _tape.recording_tapes()
    return bool(tapes) and layer.trainable and any(t.watch_accessed_variables for t in tapes)


def _tape_aware_call(self, x, training=False):
    """``Layer.__call__`` while a tape is active: Tensor inputs (and trainable layers seen by a
    recording tape) go through :func:`call_layer`; everything else runs unchanged."""
    if _wants_tape(self, x):
        return call_layer(self, x, training=training)
    return _ORIGINAL_CALL(self, x, training=training)


def _route_on():
    Layer.__call__ = _tape_aware_call


def _route_off():
    if Layer.__dict__.get("__call__") is _tape_aware_call:
        Layer.__call__ = _ORIGINAL_CALL


_tape.add_scope_hooks(_route_on, _route_off)


# ---------------------------------------------------------------- parameters as Variables
_VARIABLES: "weakref.WeakKeyDictionary[Layer, dict]" = weakref.WeakKeyDictionary()


def layer_variables(layer: Layer) -> dict:
    """``name -> Variable`` for ``layer.params``: each Variable shares its parameter's memory.

    The same Variable objects are returned while the parameter arrays stay the same; they are
    trainable when the layer is.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer_variables: expected a fusenet Layer. Received: {type(layer).__name__}")
    params = layer.params
    cached = _VARIABLES.get(layer)
    if cached is None or list(cached) != list(params) or any(cached[k]._value is not params[k] for k in params):
        own = getattr(layer, "_tape_variables", {})
        cached = {}
        for k, arr in params.items():
            v = own.get(k)
            cached[k] = v if v is not None and v._value is arr else Variable(arr, name=f"{layer.name}/{k}")
        _VARIABLES[layer] = cached
    for v in cached.values():
        v.trainable = layer.trainable
    return cached


def _all_layers(layer: Layer) -> list:
    found, stack = [], [layer]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current._sublayers.values())
    return found


def _grad_owners(layer: Layer) -> dict:
    """``key of layer.grads -> (the (sub)layer holding it, its own key)``."""
    owners, stack = {}, [("", layer)]
    while stack:
        prefix, current = stack.pop()
        for k in current._grads:
            owners[prefix + k] = (current, k)
        for key, sub in current._sublayers.items():
            stack.append((f"{prefix}{key}/", sub))
    return owners


def _describe(layer: Layer) -> str:
    return f"layer '{layer.name}' ({type(layer).__name__})"


# ---------------------------------------------------------------- one layer call = one node
def call_layer(layer: Layer, x, training: bool = False):
    """Run ``layer(x, training)`` and record it as one node on the recording tapes.

    ``x`` is a Tensor or array (a list of them for multi-input layers). Returns a Tensor (a list
    of Tensors for multi-output layers); when no tape recorded the call and no input was a
    Tensor, the layer's plain output.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"call_layer: expected a fusenet Layer. Received: {type(layer).__name__}")
    multi_in = isinstance(x, (list, tuple))
    items = list(x) if multi_in else [x]
    arrays = [v._value if isinstance(v, Tensor) else v for v in items]
    training = bool(training)
    with _tape.isolated():
        y = _ORIGINAL_CALL(layer, arrays if multi_in else arrays[0], training=training)
    multi_out = isinstance(y, (list, tuple))
    outs = list(y) if multi_out else [y]
    inputs = [v if isinstance(v, Tensor) else Tensor._wrap(np.asarray(a)) for v, a in zip(items, arrays)]
    variables = layer_variables(layer) if layer.built else {}
    names = list(variables)
    saved = [(sub, sub._cache) for sub in _all_layers(layer)] if training else None
    n_in = len(inputs)

    def vjp(grads, needs):
        if saved is None:
            raise TapeUsageError(
                f"{_describe(layer)} was called with training=False inside a recording GradientTape, so it kept "
                "nothing for its backward. Call it with training=True to differentiate through it."
            )
        for sub, cache in saved:
            sub._cache = cache
        gs = list(grads) if multi_out else [grads]
        dys = [g._value.astype(o.dtype, copy=False) for g, o in zip(gs, outs)]
        wanted = [k for k, need in zip(names, needs[n_in:]) if need]
        # this call's parameter gradients: the backward adds into fresh zero arrays swapped in for
        # the layer's gradients, which then receive them (+=); exact whatever they held before
        owners = _grad_owners(layer)
        swapped = []
        for k in wanted:
            owner, local = owners[k]
            swapped.append((owner, local, owner._grads[local]))
            owner._grads[local] = np.zeros(swapped[-1][2].shape, dtype=swapped[-1][2].dtype)
        contributions = {}
        try:
            with _tape.isolated():
                dx = layer.backward(dys if multi_out else dys[0])
        finally:
            for k, (owner, local, original) in zip(wanted, swapped):
                contributions[k] = owner._grads[local]
                owner._grads[local] = original
                original += contributions[k]
        dxs = list(dx) if multi_in else [dx]
        values, slots = [], []
        for i in range(n_in):
            if needs[i] and dxs[i] is not None:
                values.append(np.asarray(dxs[i]))
                slots.append(i)
        for k in wanted:
            values.append(contributions[k])
            slots.append(n_in + names.index(k))
        reason = (
            f"Second-order gradients through {_describe(layer)} are not available: its backward is hand-written "
            "NumPy. Write the computation with tape operations (e.g. a TapeLayer) to differentiate it twice."
        )
        wrapped = non_differentiable(f"backward:{layer.name}", values, tuple(gs) + tuple(inputs), reason)
        result = [None] * len(needs)
        for slot, t in zip(slots, wrapped):
            result[slot] = t
        return tuple(result)

    out_tensors, node = record_node(f"layer:{layer.name}", outs, tuple(inputs) + tuple(variables.values()), vjp,
                                    {"class": type(layer).__name__})
    if node is None and not any(isinstance(v, Tensor) for v in items):
        return y
    return list(out_tensors) if multi_out else out_tensors[0]


# ---------------------------------------------------------------- layers written with tape operations
def _accepts_training(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return "training" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_TAKES_TRAINING: dict = {}


class TapeLayer(Layer):
    """A layer whose forward is written with tape operations and whose backward is automatic.

    Subclasses implement ``build(input_shape)`` (weights from :meth:`add_weight`, which returns
    a :class:`~fusenet.autodiff.Variable` sharing the parameter array) and ``call(x)`` (or
    ``call(x, training)``) on a Tensor ``x`` of shape ``(batch, ...)``, returning a Tensor. Other
    fusenet layers may be used inside ``call`` (create them in ``__init__`` and register them with
    ``track_layer`` so that their weights belong to this layer).

    ``forward(x, training=True)`` records ``call`` on a private persistent tape; ``backward(dy)``
    computes the input gradient and adds the parameter gradients into ``grads`` from that tape.
    ``compute_output_shape`` runs ``call`` on a batch of one.
    """

    abstract_layer = True

    def add_weight(self, name, shape, initializer="zeros", trainable=True, rng=None, regularizer=None, constraint=None):
        """Create a weight (see :meth:`fusenet.layers.Layer.add_weight`) and return a
        :class:`~fusenet.autodiff.Variable` on it (same memory), for use in ``call``."""
        arr = super().add_weight(name, shape, initializer=initializer, trainable=trainable, rng=rng,
                                 regularizer=regularizer, constraint=constraint)
        var = Variable(arr, trainable=trainable, name=f"{self.name}/{name}")
        self.__dict__.setdefault("_tape_variables", {})[name] = var
        return var

    def call(self, x):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement call(x) with tape operations.")

    def _run_call(self, x: Tensor, training: bool) -> Tensor:
        accepts = _TAKES_TRAINING.get(type(self))
        if accepts is None:
            accepts = _TAKES_TRAINING[type(self)] = _accepts_training(self.call)
        y = self.call(x, training=training) if accepts else self.call(x)
        if not isinstance(y, Tensor):
            y = Tensor(np.asarray(y))
        return y

    def forward(self, x, training=False):
        xt = Tensor(x)
        if not training:
            self._save_for_backward(False)
            with _tape.dispatch_scope():
                return np.asarray(self._run_call(xt, False)._value)
        with GradientTape(persistent=True) as tape:
            tape.watch(xt)
            y = self._run_call(xt, True)
        self._save_for_backward(True, tape, xt, y)
        return y._value

    def backward(self, dy):
        tape, xt, y = self._saved()
        own = [(k, v) for k, v in getattr(self, "_tape_variables", {}).items() if k in self._params]
        sublayer_params = [arr for k, arr in self.params.items() if "/" in k]
        sources = [xt] + [v for _, v in own] + sublayer_params
        dy = np.asarray(dy, dtype=y.dtype)
        grads = tape.gradient(y, sources, output_gradients=dy)
        for (k, _), g in zip(own, grads[1:1 + len(own)]):
            if g is not None:
                self._grads[k] += g._value
        return np.zeros_like(xt._value) if grads[0] is None else grads[0]._value

    def __getstate__(self):
        # copies (deepcopy, pickle) keep no recorded tape: a copy must run its own forward first
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not self.built:
            self._build_for(shape)
        probe = np.ones(tuple(1 if d is None else d for d in shape), dtype=self.dtype)
        with np.errstate(all="ignore"), _tape.dispatch_scope():
            out = self._run_call(Tensor(probe), False)
        return (shape[0],) + tuple(out.shape[1:])
