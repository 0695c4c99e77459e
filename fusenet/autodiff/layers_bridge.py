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
its gradient through this tape's calls of the layer. :func:`call_layer` is the same thing as a
function.

**Where parameter gradients go.** ``tape.gradient`` *sets* the ``grads`` of every layer it
differentiates through to the gradient it computes (what they held before is discarded, so a
TensorFlow-style loop needs no ``zero_grad``; summed over the layer's calls that lead to the
targets, for the requested parameters and the others alike). The layer's ``backward`` runs
once per call, on the values that call saved. When the layer was called once on a
non-persistent tape and no other tape recorded that call (the training step above), the
backward adds straight into the just-zeroed ``grads`` and the tape returns **those arrays**,
without a copy: the returned gradients alias ``layer.grads`` until the layer's gradients are
written again (its next backward, a ``zero_grad``, the next tape gradient through it) — copy
them to keep them longer. Otherwise (a persistent tape, a layer called several times, a call
recorded by nested tapes) each call's parameter gradients go to fresh arrays first, the tape
returns fresh arrays and the layer's ``grads`` receive their sum. The private tape of a
:class:`TapeLayer` adds (``+=``) into the ``grads`` of the layers used inside it instead, as
every ``backward`` does. Activity regularizers are not applied on a tape (add the penalty to
the loss).

Rules:

- the layer runs its forward with the ``training`` flag of the call. Its backward needs the
  training forward, so differentiating through a call made with ``training=False`` raises
  :class:`~fusenet.autodiff.TapeUsageError` naming the layer (call it with ``training=True``);
- a layer called several times on one tape is differentiated correctly for every call (the
  bridge keeps each call's saved values);
- the layer's backward is NumPy, so a second-order gradient through a layer node raises
  ``NotImplementedError`` (write the computation with tape operations, e.g. a :class:`TapeLayer`);
- while a layer runs its own forward and backward, outer tapes do not record: the layer is one node;
- when no gradient is wanted for a call's input (the model's input, typically), the layer is told
  so around its backward (``Layer._input_grad_needed = False``, as the model engine's training
  step does), so a layer that honours it skips computing that gradient;
- a chain of such calls ending in a fusenet loss (a ``Sequential`` training step) is differentiated
  by running the layers' backward one after the other (:mod:`fusenet.autodiff._chain`), with the
  same results as the general reverse pass.

Outside any tape, layers behave exactly as without this module. The routing uses the call hook
of :mod:`fusenet.layers.base` (:func:`~fusenet.layers.base.set_call_hook`): the bridge installs
its hook when the first tape (or a :class:`TapeLayer` call) opens and puts the previous hook
back when the last one closes; the hook takes Tensor inputs (and plain arrays into trainable
layers with weights while a tape watches accessed variables) and declines every other call,
which the previous hook, if any, then sees. Tapes are single-threaded.

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

import functools
import inspect
import weakref

import numpy as np

from ..layers import base as _base
from ..layers.base import Layer
from . import tape as _tape
from . import ops as _ops
from .tape import _STATE, CHAIN_START as _CHAIN_START, ComputationNode, GradientTape, TapeUsageError, accumulate, non_differentiable
from .tensor import ASSIGNMENTS, Tensor, Variable

__all__ = ["call_layer", "TapeLayer", "layer_variables"]


_wrap = Tensor._wrap
_new_object = object.__new__


# ---------------------------------------------------------------- routing layer calls (the call hook)
_PREVIOUS_HOOK = None  # the hook that was installed before ours; it sees the calls we decline


def _layer_call_hook(layer, x, training=False):
    """``Layer.__call__``'s hook while a tape is open (:func:`fusenet.layers.base.set_call_hook`).

    Tensor inputs, and plain arrays into a trainable layer with weights while a tape that
    watches accessed variables records, go through :func:`call_layer`; every other call is
    declined (``NotImplemented``: the layer runs as usual), which includes the call
    :func:`call_layer` makes itself (its inputs are arrays and no tape records then).

    The hook runs inside ``Layer.__call__``, so a call it takes runs the rest of ``__call__``
    (``_prepare_input``, ``forward``) itself instead of calling the layer a second time, unless
    another hook was installed before ours (that one must see the inner call). The common case
    (one recording tape, one input, one output array, no sublayers, a training call) is recorded
    here, written out: it runs for every layer of a model on every training step.
    """
    tx = type(x)
    if tx is Tensor:  # the common case: the output of the previous layer call
        arg = x._value
    elif tx is not np.ndarray and (
        isinstance(x, Tensor) or (isinstance(x, (list, tuple)) and any(isinstance(v, Tensor) for v in x))
    ):
        return _call_layer(layer, x, training, _PREVIOUS_HOOK is None)
    else:
        tapes = _STATE.recording
        if not (tapes and layer.trainable and (layer._params or layer._sublayers or not layer.built)
                and any(t.watch_accessed_variables for t in tapes)):
            previous = _PREVIOUS_HOOK
            return NotImplemented if previous is None else previous(layer, x, training)
        if tx is not np.ndarray:
            return _call_layer(layer, x, training, _PREVIOUS_HOOK is None)
        arg, x = x, None
    state = _STATE
    tapes = state.recording
    if _PREVIOUS_HOOK is not None or len(tapes) != 1:
        return _call_layer(layer, arg if x is None else x, training, _PREVIOUS_HOOK is None)
    barrier = state.barrier
    state.barrier = len(state.stack)
    state.recording = ()
    try:  # the remainder of Layer.__call__; no tape records inside the layer
        y = layer.forward(layer._prepare_input(arg), training=bool(training))
        if layer.activity_regularizer is not None:
            layer._activity_output = y if training else None
    finally:
        state.barrier = barrier
        state.recording = tapes
    if type(y) is not np.ndarray or layer._sublayers or not training:
        return _record(layer, x, None, arg, y, training, tapes)
    xt = x if x is not None else _wrap(arg)
    info = _INFO.get(id(layer))  # the layer's info (_layer_info, written out)
    if (info is None or info.ref() is not layer or info.trainable is not layer.trainable
            or tuple(map(id, layer._params.values())) != info.param_ids):
        info = _layer_info(layer)
    tape = tapes[0]
    known = tape._tensors
    variables = info.variables
    if (variables and info.trainable and tape.watch_accessed_variables
            and known.keys().isdisjoint(info.var_ids)):
        # the layer's first call on this tape: its trainable weights are watched, all at once
        known.update(info.var_items)
        tape._watched.update(info.var_items)
        tape._arrays = None
        params = tape._chain_params
        if params is not None:
            if info.grad_names is not None:
                params.extend(info.param_ids)
            else:
                tape._chain_params = None
    elif not tape._tracks_any((xt,) + variables):
        return y if x is None else _wrap(y)
    elif variables:
        tape._chain_params = None
    node = _new_object(_SimpleLayerNode)
    out = _new_object(Tensor)  # _wrap(y), written out
    out._value = y
    out.name = None
    node.inputs = (xt,) + variables
    node.outputs = (out,)
    node._stamp = ASSIGNMENTS[0]
    node.layer = layer
    node.info = info
    node.saved = layer._cache
    tape._nodes.append(node)
    known[id(out)] = out
    tail = tape._chain_tail
    if tail is xt or tail is _CHAIN_START:  # the chain of layer calls goes on
        tape._chain_tail = out
    elif tail is not None:
        tape._chain_tail = None
    calls = tape._layer_calls
    key = id(layer)
    calls[key] = calls.get(key, 0) + 1
    return out


def _hook_on():
    global _PREVIOUS_HOOK
    _PREVIOUS_HOOK = _base.set_call_hook(_layer_call_hook)


def _hook_off():
    global _PREVIOUS_HOOK
    if _base._CALL_HOOK is _layer_call_hook:  # otherwise a later hook replaced ours: leave it
        _base.set_call_hook(_PREVIOUS_HOOK)
    _PREVIOUS_HOOK = None


_tape.add_scope_hooks(_hook_on, _hook_off)


# ---------------------------------------------------------------- parameters as Variables
class _LayerInfo:
    """A layer's parameters as Variables, and where each one's gradient array lives.

    ``owners[i]`` is ``(the (sub)layer holding gradient i, its own key)``; ``arrays`` are the
    parameter arrays the Variables were made on (a rebound parameter rebuilds the info).
    """

    __slots__ = ("names", "variables", "arrays", "owners", "trainable", "ref", "var_ids", "var_items", "array_ids",
                 "array_items", "plain_zero", "grad_keys", "grad_names", "param_ids")

    def __init__(self, layer, params):
        own = getattr(layer, "_tape_variables", {})
        owners = _grad_owners(layer)
        self.names = tuple(params)
        variables = []
        for k, arr in params.items():
            v = own.get(k)
            variables.append(v if v is not None and v._value is arr else Variable(arr, name=f"{layer.name}/{k}"))
        self.variables = tuple(variables)
        self.var_ids = tuple(id(v) for v in variables)
        self.var_items = tuple(zip(self.var_ids, variables))
        self.array_ids = tuple(id(v._value) for v in variables)
        self.array_items = tuple((a, (v,)) for a, v in zip(self.array_ids, variables))
        self.arrays = tuple(params.values())
        self.param_ids = tuple(map(id, self.arrays))  # (the arrays are kept: ids stay unique)
        self.owners = tuple(owners[k] for k in self.names)
        # zeroing the grads is filling layer._grads (no sublayers, zero_grad not overridden)
        self.plain_zero = not layer._sublayers and type(layer).zero_grad is Layer.zero_grad
        # (id of the Variable, key in layer._grads) of a layer without sublayers (its own grads)
        self.grad_keys = tuple((i, local) for i, (owner, local) in zip(self.var_ids, self.owners) if owner is layer)
        # the keys of layer._grads in parameter order, when every gradient is the layer's own
        self.grad_names = tuple(local for _, local in self.grad_keys) if len(self.grad_keys) == len(self.arrays) else None
        self.trainable = None
        self.ref = weakref.ref(layer, functools.partial(_forget, _INFO, id(layer)))


def _forget(registry: dict, key: int, ref) -> None:
    """Drop the info of a layer that was garbage-collected (``registry`` is bound: this also runs
    while the interpreter shuts down)."""
    info = registry.get(key)
    if info is not None and info.ref is ref:
        del registry[key]


_INFO: dict = {}  # id(layer) -> its _LayerInfo (whose ``ref`` is a weak reference to the layer)


def _layer_info(layer: Layer) -> _LayerInfo:
    """The cached :class:`_LayerInfo` of a built layer, rebuilt when its parameter arrays changed."""
    params = layer.params if layer._sublayers else layer._params
    info = _INFO.get(id(layer))
    if info is None or info.ref() is not layer or tuple(map(id, params.values())) != info.param_ids:
        info = _LayerInfo(layer, params)
        _INFO[id(layer)] = info
    if info.trainable is not layer.trainable:
        info.trainable = trainable = layer.trainable
        for v in info.variables:
            v.trainable = bool(trainable)
    return info


def layer_variables(layer: Layer) -> dict:
    """``name -> Variable`` for ``layer.params``: each Variable shares its parameter's memory.

    The same Variable objects are returned while the parameter arrays stay the same; they are
    trainable when the layer is.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"layer_variables: expected a fusenet Layer. Received: {type(layer).__name__}")
    info = _layer_info(layer)
    return dict(zip(info.names, info.variables))


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


def _all_layers(layer: Layer) -> list:
    found, stack = [], [layer]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(current._sublayers.values())
    return found


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
    return _call_layer(layer, x, training)


def _call_layer(layer, x, training, inline=False):
    """Run the layer on ``x`` with no tape recording inside it, then record one node.

    ``inline``: called from the hook inside ``Layer.__call__`` (no other hook to chain to): run
    the rest of ``Layer.__call__`` (check and cast, build, forward) directly."""
    tx = type(x)
    if tx is Tensor or (tx is not np.ndarray and isinstance(x, Tensor)):
        items, arg = None, x._value
    elif tx is not np.ndarray and isinstance(x, (list, tuple)):
        items = tuple(x)
        arg = [v._value if isinstance(v, Tensor) else v for v in items]
        if not any(isinstance(v, Tensor) for v in items):
            x = None
    else:
        items, arg, x = None, x, None
    # the layer runs its own NumPy forward: no tape entered so far records inside it
    state = _STATE
    tapes, barrier = state.recording, state.barrier
    state.barrier, state.recording = len(state.stack), ()
    try:
        if inline:  # the remainder of Layer.__call__ (the hook runs inside it)
            y = layer.forward(layer._prepare_input(arg), training=bool(training))
            if layer.activity_regularizer is not None:
                layer._activity_output = y if training else None
        else:
            y = layer(arg, training=training)
    finally:
        state.barrier, state.recording = barrier, tapes
    return _record(layer, x, items, arg, y, training, tapes)


def _record(layer, x, items, arg, y, training, tapes):
    """Record the call ``y = layer(arg)`` on the ``tapes`` that track one of its inputs or
    parameters. ``x``: the input Tensor (the list of inputs when ``items``, a tuple, is given;
    ``None`` when no input was a Tensor). Returns Tensors, or ``y`` itself when no tape recorded
    the call and no input was a Tensor."""
    multi_out = type(y) is not np.ndarray and isinstance(y, (list, tuple))
    has_tensor = x is not None
    if not tapes:
        if not has_tensor:
            return y
        return [_wrap(v) for v in y] if multi_out else _wrap(y)
    if items is None:
        inputs = (x if has_tensor else _wrap(arg),)
    else:
        inputs = tuple([v if isinstance(v, Tensor) else _wrap(np.asarray(a)) for v, a in zip(items, arg)])
    if layer.built:
        info = _layer_info(layer)
        node_inputs = inputs + info.variables
    else:
        info, node_inputs = None, inputs
    if len(tapes) > 1:
        recorders = [t for t in tapes if t._tracks_any(node_inputs)]
    else:
        tape = tapes[0]
        if (info is not None and info.trainable and info.variables and tape.watch_accessed_variables
                and tape._tensors.keys().isdisjoint(info.var_ids)):
            # the layer's first call on this tape: its trainable weights are watched, all at once
            tape._watch_all(info.var_ids, info.var_items, info.array_ids, info.array_items)
            recorders = tapes
        else:
            recorders = tapes if tape._tracks_any(node_inputs) else ()
    if not recorders:
        if not has_tensor:
            return y
        return [_wrap(v) for v in y] if multi_out else _wrap(y)
    node = _LayerNode(layer, info, training, inputs, items is not None, node_inputs, y, multi_out, len(recorders))
    key = id(layer)
    outs = node.outputs
    sublayers = _all_layers(layer)[1:] if layer._sublayers else ()
    for t in recorders:
        t._nodes.append(node)
        t._chain_tail = None
        known = t._tensors
        for o in outs:
            known[id(o)] = o
        calls = t._layer_calls
        calls[key] = calls.get(key, 0) + 1
        for sub in sublayers:  # their grads take part in this call too
            calls[id(sub)] = calls.get(id(sub), 0) + 1
    return list(outs) if multi_out else outs[0]


def _zero_once(layer, zeroed: set) -> None:
    """Zero the grads of ``layer`` and of its sublayers that this gradient computation has not
    zeroed yet (``zeroed``: their ids). A layer used on its own and inside a composite is zeroed
    once, so that both contributions add up."""
    key = id(layer)
    if not layer._sublayers:
        if key not in zeroed:
            zeroed.add(key)
            layer.zero_grad()
        return
    for sub in _all_layers(layer):
        if id(sub) not in zeroed:
            zeroed.add(id(sub))
            for g in sub._grads.values():
                g.fill(0)


_NOT_TRAINING = object()  # the saved values of a call made with training=False: none


class _LayerNode(ComputationNode):
    """One recorded call of a fusenet layer; its backward is the layer's own ``backward``.

    The node's inputs are the call's ``n_in`` inputs followed by the layer's parameter
    Variables. It keeps the ``_cache`` of the layer (and of its sublayers) from this call, so a
    layer called several times is differentiated correctly for each call. (``op`` and ``attrs``
    are made when asked for: most nodes are never displayed.)
    """

    __slots__ = ("layer", "info", "saved", "n_in", "multi_in", "n_recorders", "simple")

    def __init__(self, layer, info, training, inputs, multi_in, node_inputs, y, multi_out, n_recorders):
        self.inputs = node_inputs
        self.outputs = tuple([_wrap(v) for v in y]) if multi_out else (_wrap(y),)
        self._stamp = ASSIGNMENTS[0]
        self.layer = layer
        self.info = info
        sublayers = layer._sublayers
        if not training:
            self.saved = _NOT_TRAINING
        elif sublayers:
            self.saved = tuple([(sub, sub._cache) for sub in _all_layers(layer)])
        else:
            self.saved = layer._cache
        self.n_in = len(inputs)
        self.multi_in = multi_in
        self.n_recorders = n_recorders
        # one input, one output, no sublayers, a training call: _backward_into's short path
        self.simple = bool(training) and not multi_in and not multi_out and not sublayers and info is not None

    @property
    def op(self) -> str:
        return f"layer:{self.layer.name}"

    @property
    def attrs(self) -> dict:
        return {"class": type(self.layer).__name__}

    _adds_into_grads = True

    def _pull(self, grads: tuple, needs):
        """Run the layer's ``backward`` on this call's saved values for the output gradients
        ``grads``: returns ``(dx, params)`` as arrays (``dx`` as the backward returned it,
        ``params[i]`` the gradient of parameter ``i`` or ``None``; ``params`` is ``None`` when no
        parameter gradient is needed). Where the parameter gradients go: see the module doc."""
        if ASSIGNMENTS[0] != self._stamp:
            self._check_versions()
        layer = self.layer
        saved = self.saved
        if saved is _NOT_TRAINING:
            raise TapeUsageError(
                f"{_describe(layer)} was called with training=False inside a recording GradientTape, so it kept "
                "nothing for its backward. Call it with training=True to differentiate through it."
            )
        if layer._sublayers:
            for sub, cache in saved:
                sub._cache = cache
        else:
            layer._cache = saved
        outputs = self.outputs
        if len(outputs) == 1:
            dys = grads[0]._value
            dtype = outputs[0]._value.dtype
            if dys.dtype is not dtype and dys.dtype != dtype:
                dys = dys.astype(dtype)
            elif not dys.flags.writeable:  # a shared seed: a backward may work in place
                dys = dys.copy()
        else:
            dys = [g._value.astype(o._value.dtype, copy=not g._value.flags.writeable)
                   for g, o in zip(grads, outputs)]
        param_needs = needs[self.n_in:]
        any_param = True in param_needs
        backprop = _STATE.backprop
        alias = False
        if backprop is not None and backprop.replace:
            # this gradient computation sets the layer's grads: reset them at its first call here
            _zero_once(layer, backprop.zeroed)
            tape = backprop.tape
            # the only call of a layer without sublayers, recorded by this tape alone, differentiated
            # once: the backward adds into the (just zeroed) grads themselves, which the tape returns
            alias = (self.n_recorders == 1 and not tape.persistent and not layer._sublayers
                     and tape._layer_calls.get(id(layer)) == 1)
        swapped = None
        if any_param and not alias:  # this call's parameter gradients in fresh zero arrays, then added to grads
            swapped = []
            for (owner, local), need in zip(self.info.owners, param_needs):
                if need:
                    original = owner._grads[local]
                    swapped.append((owner, local, original))
                    owner._grads[local] = np.zeros(original.shape, dtype=original.dtype)
        state = _STATE
        tapes, barrier = state.recording, state.barrier
        state.barrier, state.recording = len(state.stack), ()
        try:
            dx = layer.backward(dys)
        finally:
            state.barrier, state.recording = barrier, tapes
            if swapped:
                mine = []
                for owner, local, original in swapped:
                    mine.append(owner._grads[local])
                    owner._grads[local] = original
                    original += mine[-1]
        if not any_param:
            return dx, None
        if swapped:
            contributions = iter(mine)
            return dx, [next(contributions) if need else None for need in param_needs]
        owners = self.info.owners
        return dx, [owner._grads[local] if need else None for (owner, local), need in zip(owners, param_needs)]

    def _input_grads(self, dx, needs) -> list:
        if self.multi_in:
            return [d if need else None for d, need in zip(dx, needs)]
        return [dx if needs[0] else None]

    def backward(self, grads: tuple, needs) -> list:
        """Gradients of the node's inputs (the call's inputs, then the parameters) from those of
        its outputs, through the layer's own ``backward``."""
        dx, params = self._pull(grads, needs)
        values = self._input_grads(dx, needs) + (params or [None] * (len(needs) - self.n_in))
        if _STATE.recording:  # an outer tape records: hand-computed gradients cannot be differentiated again
            slots = [i for i, v in enumerate(values) if v is not None]
            reason = (
                f"Second-order gradients through {_describe(self.layer)} are not available: its backward is "
                "hand-written NumPy. Write the computation with tape operations (e.g. a TapeLayer) to differentiate "
                "it twice."
            )
            wrapped = non_differentiable(f"backward:{self.layer.name}", [values[i] for i in slots],
                                         tuple(grads) + self.inputs[:self.n_in], reason)
            for i, t in zip(slots, wrapped):
                values[i] = t
            return values
        return [None if v is None else _wrap(v) for v in values]

    def _backward_into(self, grads: tuple, needs, table: dict) -> None:
        """:meth:`backward`, adding the input gradients into the gradient table of ``_backprop``
        (the common case written out: one input, one output, the layer's own gradient arrays).

        When the call's input needs no gradient, the layer is told so around its backward
        (``Layer._input_grad_needed = False``, as the model engine does for the layers that read
        the model input): a layer may then skip computing it."""
        if not self.simple or _STATE.recording or ASSIGNMENTS[0] != self._stamp:
            for t, g in zip(self.inputs, self.backward(grads, needs)):
                if g is not None:
                    accumulate(table, t, g, self)
            return
        layer = self.layer
        layer._cache = self.saved
        dy = grads[0]._value
        dtype = self.outputs[0]._value.dtype
        if dy.dtype is not dtype or not dy.flags.writeable:
            if dy.dtype != dtype:
                dy = dy.astype(dtype)
            elif not dy.flags.writeable:  # a shared seed: a backward may work in place
                dy = dy.copy()
        backprop = _STATE.backprop
        info = self.info
        key = id(layer)
        if backprop.replace:
            zeroed = backprop.zeroed
            if key not in zeroed:  # this gradient computation sets the layer's grads
                zeroed.add(key)
                if info.plain_zero:
                    for g in layer._grads.values():
                        g.fill(0)
                else:
                    layer.zero_grad()
            # the only call of the layer, recorded by this tape alone, differentiated once: the
            # backward adds into the (just zeroed) grads themselves, which are the gradients
            alias = backprop.once and self.n_recorders == 1 and backprop.calls[key] == 1
        else:
            alias = False
        need_dx = needs[0]
        skip_dx = not need_dx and layer._input_grad_needed
        if not alias:
            self._pull_fresh_into(dy, needs, skip_dx, table)
            return
        state = _STATE
        barrier = state.barrier
        state.barrier = len(state.stack)
        if skip_dx:
            layer._input_grad_needed = False
        try:
            dx = layer.backward(dy)
        finally:
            state.barrier = barrier
            if skip_dx:
                layer._input_grad_needed = True
        if need_dx and dx is not None:
            self._put_dx(dx, table)
        # every parameter's gradient is its array in the layer's grads (an entry for a parameter
        # that is no source is never read: parameters are leaves)
        names = info.grad_names
        if names is not None and table.keys().isdisjoint(info.var_ids):
            table.update(zip(info.var_ids, map(_wrap, map(layer._grads.__getitem__, names))))
            return
        own = layer._grads
        setdefault = table.setdefault
        for k, name in info.grad_keys:
            g = _wrap(own[name])
            prev = setdefault(k, g)
            if prev is not g:
                table[k] = _ops.add(prev, g)

    def _put_dx(self, dx, table: dict) -> None:
        """Add the layer's input gradient ``dx`` (an array) into the gradient table."""
        t = self.inputs[0]
        value = t._value
        if type(dx) is np.ndarray and dx.dtype is value.dtype and dx.shape == value.shape:
            k = id(t)
            prev = table.get(k)
            table[k] = _wrap(dx) if prev is None else _ops.add(prev, _wrap(dx))
        else:
            accumulate(table, t, _wrap(dx), self)

    def _pull_fresh_into(self, dy, needs, skip_dx, table: dict) -> None:
        """The short path's backward when the layer's grads are not the gradients themselves:
        fresh arrays for this call's parameter gradients (see :meth:`_pull_into_fresh`)."""
        dx, params = self._pull_into_fresh(dy, needs, skip_dx)
        if needs[0] and dx is not None:
            self._put_dx(dx, table)
        setdefault = table.setdefault
        for k, g in zip(self.info.var_ids, params):
            if g is not None:
                g = _wrap(g)
                prev = setdefault(k, g)
                if prev is not g:
                    table[k] = _ops.add(prev, g)

    def _pull_into_fresh(self, dy, needs, skip_dx=False):
        """The layer's backward with fresh zero arrays swapped in for the needed parameter
        gradients; they are then added (``+=``) to the layer's grads. Returns ``(dx, params)``."""
        layer = self.layer
        swapped = []
        for (owner, local), need in zip(self.info.owners if self.info is not None else (), needs[self.n_in:]):
            if need:
                original = owner._grads[local]
                swapped.append((owner, local, original))
                owner._grads[local] = np.zeros(original.shape, dtype=original.dtype)
        state = _STATE
        barrier = state.barrier
        state.barrier = len(state.stack)
        if skip_dx:
            layer._input_grad_needed = False
        mine = []
        try:
            dx = layer.backward(dy)
        finally:
            state.barrier = barrier
            if skip_dx:
                layer._input_grad_needed = True
            for owner, local, original in swapped:
                mine.append(owner._grads[local])
                owner._grads[local] = original
                original += mine[-1]
        contributions = iter(mine)
        return dx, [next(contributions) if need else None for need in needs[self.n_in:]]


class _SimpleLayerNode(_LayerNode):
    """A :class:`_LayerNode` of the common case, built by the hook: one input, one output, no
    sublayers, a training call, one recording tape (these facts are class attributes)."""

    __slots__ = ()
    n_in = 1
    multi_in = False
    n_recorders = 1
    simple = True


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
        tape = GradientTape(persistent=True)
        tape._replace_layer_grads = False  # backward adds (+=) into grads, sublayers' included
        with tape:
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
