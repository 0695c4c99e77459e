"""The gradient of a loss over a chain of layer calls, without the general reverse pass.

A training step written TensorFlow style (``model(x, training=True)`` on a ``Sequential``, a
fusenet loss through :func:`~fusenet.autodiff.call_loss`, ``tape.gradient(loss,
model.trainable_weights)``) records ``k`` layer nodes and one loss node in a chain::

    x -> layer_1 -> h_1 -> ... -> layer_k -> y_pred -> loss

When the tape recorded exactly that (each layer called once, one input and one output per call,
no sublayers, training calls), differentiates once (not persistent), no outer tape records and
no Variable was assigned since, its gradient is the hand-written backward pass itself: the
loss's own gradient array goes to ``layer_k.backward``, each layer's input gradient to the layer
before, and every layer's grads (zeroed first) are the parameter gradients, returned without a
copy, exactly as the general pass (:func:`fusenet.autodiff.tape._backprop`) computes them in
this case. Only the part of the chain a source leads to runs (a layer before the first one
with a requested parameter is not differentiated, and the first one differentiated skips its
input gradient unless the chain's input is a source).

Two entry points, both returning ``None`` (the general machinery runs) for anything else:
:func:`chain_gradient` answers ``tape.gradient`` directly when the sources are exactly the
chain's parameter arrays in order (``model.trainable_weights``), :func:`chain_backprop` replaces
the reverse pass for other sources (a subset of the parameters, the chain's input).
"""

from __future__ import annotations

import numpy as np

from .layers_bridge import _SimpleLayerNode
from .losses_bridge import _LossNode
from .tape import _SEED_IDS, _STATE, register_fast_backprop, register_fast_gradient
from .tensor import ASSIGNMENTS, Tensor

__all__ = ["chain_backprop", "chain_gradient"]

_wrap = Tensor._wrap


def _chain_input(tape, targets, seeds):
    """The input Tensor of the recorded chain ending in the loss node that gave ``targets``, or
    ``None`` when the tape recorded something else (or may not use the short pass). The layer
    bridge keeps ``tape._chain_tail``, the last output of the chain of simple layer calls recorded
    so far (``None`` once anything else was recorded, a loss node excepted)."""
    nodes = tape._nodes
    k = len(nodes) - 1
    if k < 1 or len(targets) != 1 or tape.persistent or not tape._replace_layer_grads or _STATE.recording:
        return None
    loss = nodes[k]
    tail = tape._chain_tail
    if (type(loss) is not _LossNode or tail is None or loss.inputs[0] is not tail or loss.outputs[0] is not targets[0]
            or loss.n_recorders != 1 or id(seeds[0]) not in _SEED_IDS
            or len(tape._layer_calls) != k  # k calls of k distinct layers (and no other node but the loss)
            or nodes[0]._stamp != ASSIGNMENTS[0]  # no Variable assigned since the first call
            or loss.grad.shape != tail._value.shape):
        return None
    return nodes[0].inputs[0]


def _run(tape, first: int, want_dx: bool, table, source_ids):
    """The hand-written backward over the chain's layers ``k-1 .. first``; the gradients of the
    parameters whose Variable ids are in ``source_ids`` go into ``table`` (when given). Returns
    the input gradient of layer ``first`` (``None`` unless ``want_dx``)."""
    nodes = tape._nodes
    dy = nodes[-1].grad
    state = _STATE
    barrier = state.barrier
    state.barrier = len(state.stack)
    try:
        for i in range(len(nodes) - 2, first - 1, -1):
            node = nodes[i]
            layer = node.layer
            info = node.info
            layer._cache = node.saved
            dtype = node.outputs[0]._value.dtype
            if dy.dtype is not dtype or not dy.flags.writeable:
                dy = dy.astype(dtype) if dy.dtype != dtype else dy.copy()
            if info.plain_zero:
                for g in layer._grads.values():
                    g.fill(0)
            else:
                layer.zero_grad()
            if i == first and not want_dx and layer._input_grad_needed:
                layer._input_grad_needed = False  # nobody reads this input gradient
                try:
                    dy = layer.backward(dy)
                finally:
                    layer._input_grad_needed = True
            else:
                dy = layer.backward(dy)
            if table is not None:
                grads = layer._grads
                for key, name in info.grad_keys:
                    if key in source_ids:
                        g = _wrap(grads[name])
                        prev = table.setdefault(key, g)
                        if prev is not g:
                            from . import ops

                            table[key] = ops.add(prev, g)
            if i > first or want_dx:
                value = node.inputs[0]._value
                if type(dy) is not np.ndarray or dy.shape != value.shape:
                    raise RuntimeError(
                        f"internal error: the backward of layer '{layer.name}' gave an input gradient of shape "
                        f"{np.shape(dy)} for an input of shape {value.shape}"
                    )
    finally:
        state.barrier = barrier
    return dy if want_dx else None


def chain_gradient(tape, targets, seeds, leaves):
    """The gradients of ``leaves`` (a flat list) when they are exactly the parameter arrays of
    the recorded chain's layers, in order, every layer's weights watched (``tape.gradient(loss,
    model.trainable_weights)``): a list of Tensors, the layers' own grads arrays. ``None``
    otherwise."""
    if _chain_input(tape, targets, seeds) is None:
        return None
    # the parameter arrays of the chain's layers, each layer's weights watched at its call
    expected = tape._chain_params
    if expected is None or list(map(id, leaves)) != expected or len(set(expected)) != len(expected):
        return None  # (other sources, or an array shared by two layers: the general pass)
    _run(tape, 0, False, None, None)
    results = []
    for node in tape._nodes[:-1]:  # (the hook keeps _chain_params only for layers with grad_names)
        results.extend(map(_wrap, map(node.layer._grads.__getitem__, node.info.grad_names)))
    return results


def chain_backprop(tape, targets, seeds, sources):
    """The gradient table ``{id(source): gradient}`` of a recorded layer chain ending in a loss
    node (see the module doc) when every source is a parameter Variable of the chain or its
    input, or ``None``."""
    x = _chain_input(tape, targets, seeds)
    if x is None:
        return None
    nodes = tape._nodes
    source_ids = set(map(id, sources))
    x_source = id(x) in source_ids and x._value.dtype.kind == "f"
    # the first node a source leads to: its parameters are sources (or the chain's input is one)
    first = 0 if x_source else -1
    found = 1 if x_source else 0
    for i in range(len(nodes) - 1):
        hits = len(source_ids.intersection(nodes[i].info.var_ids))
        if hits:
            found += hits
            if first < 0:
                first = i
    if first < 0 or found != len(source_ids):  # a source outside the chain: the general pass
        return None
    table = {}
    dx = _run(tape, first, x_source, table, source_ids)
    if x_source:
        value = x._value
        table[id(x)] = _wrap(dx if dx.dtype is value.dtype else dx.astype(value.dtype))
    return table


register_fast_gradient(chain_gradient)
register_fast_backprop(chain_backprop)
