"""The protocol between a training loop and the full-batch / derivative-free optimizers.

These optimizers (:mod:`~fusenet.optimizers.full_batch`, :mod:`~fusenet.optimizers.metaheuristics`,
:mod:`~fusenet.optimizers.population`) never see layers or models: they minimise a function of one
flat float64 parameter vector ``x`` of length ``n`` (the sum of the sizes of all trainable
parameters). This module builds that function from a list of layers.

**Mapping** (:class:`FlatParameters`): the trainable arrays ``p_0, p_1, ...`` of
``layer.gradient_pairs()`` (in order, each array once) are laid end to end::

    x[o_i : o_i + p_i.size] == p_i.ravel()          o_i = p_0.size + ... + p_{i-1}.size

``set(x)`` copies ``x`` into the layers' own arrays in place (one copy per array, through a reshaped
view of ``x``, cast to the array's dtype; nothing is rebound, so every other reference to the
weights stays valid); ``get()`` and ``get_grad()`` copy the parameters or their gradients into a
fresh contiguous float64 vector (fresh because SciPy keeps the gradients of earlier points).

**Objective** (:func:`make_objective`): the training loop supplies

- ``forward_backward() -> loss``: one full-batch training step without the update (zero the
  gradients, forward with ``training=True``, loss plus regularisation, backward, regularisation
  gradients) that leaves ``d loss / d p_i`` in each layer's gradient array and returns the loss;
- optionally ``forward_loss() -> loss``: the loss alone (no backward), used by derivative-free
  optimizers (which otherwise call ``forward_backward`` and ignore the gradients).

The optimizer then calls ``objective.value_and_grad(x) -> (loss, grad (n,))`` or
``objective.value(x) -> loss``; each call first writes ``x`` into the layers.

**Driving a run**: ``optimizer.minimize(objective, callback=on_iteration)`` starts from the layers'
current weights, calls ``on_iteration(info)`` after every iteration (an :class:`IterationInfo`,
with the layers already holding ``info.x``; a truthy return value stops the run), writes the final
point ``result.x`` into the layers, stores the summary in ``optimizer.result_`` and returns it.
One iteration is one "epoch" of ``fit``. Mini-batches are refused: see :func:`check_batch_size`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["FlatParameters", "FlatObjective", "IterationInfo", "make_objective", "is_full_batch",
           "check_batch_size"]


@dataclass(frozen=True)
class IterationInfo:
    """What an optimizer reports after each iteration (generation) to its ``callback``.

    Attributes:
        iteration: 1 for the first iteration of this run, then 2, 3, ...
        x: the current point (the best one so far for population methods), a float64 copy ``(n,)``.
        fun: the objective at ``x``.
        nfev: objective evaluations so far in this run (forward passes for a model).
        njev: gradient evaluations so far (0 for derivative-free optimizers).
    """

    iteration: int
    x: np.ndarray
    fun: float
    nfev: int
    njev: int = 0


class FlatParameters:
    """One flat float64 vector over a list of parameter arrays (see the module docstring).

    Args:
        pairs: ``[(grad, param), ...]`` as ``layer.gradient_pairs()`` gives them; ``param`` float
            ndarrays (updated in place), ``grad`` arrays of the same shapes. An array listed twice
            (a shared layer) is kept once.

    Attributes:
        params, grads: the arrays (live references, in order).
        shapes: their shapes; ``size``: ``n``, the total number of scalars.
        eps: the machine epsilon of the least precise parameter dtype (finite-difference steps).
    """

    def __init__(self, pairs):
        params, grads, seen = [], [], set()
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"FlatParameters: expected (grad, param) pairs. Received item {i}: {pair!r}")
            g, p = pair
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(
                    f"FlatParameters: expected param {i} to be a float numpy array (it is written in place). "
                    f"Received: {type(p).__name__} {getattr(p, 'dtype', '')}"
                )
            if not p.flags.writeable:
                raise ValueError(f"FlatParameters: param {i} (shape {p.shape}) is read-only; it must be writable.")
            if not isinstance(g, np.ndarray) or g.shape != p.shape:
                raise ValueError(
                    f"FlatParameters: grad {i} must be an ndarray of the param's shape {p.shape}. "
                    f"Received: {type(g).__name__} with shape {getattr(g, 'shape', None)}"
                )
            if id(p) in seen:
                continue
            seen.add(id(p))
            params.append(p)
            grads.append(g)
        self.params, self.grads = params, grads
        self.shapes = [p.shape for p in params]
        sizes = [p.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(int).tolist()
        self.size = int(self.offsets[-1])
        self.eps = max((float(np.finfo(p.dtype).eps) for p in params), default=float(np.finfo(np.float64).eps))

    @classmethod
    def from_layers(cls, layers) -> "FlatParameters":
        """The trainable parameters of ``layers`` (a layer or a list), from ``gradient_pairs()``."""
        if not isinstance(layers, (list, tuple)):
            layers = [layers]
        pairs = []
        for layer in layers:
            get_pairs = getattr(layer, "gradient_pairs", None)
            if not callable(get_pairs):
                raise TypeError(f"FlatParameters.from_layers: expected layers with gradient_pairs(). Received: {layer!r}")
            pairs.extend(get_pairs())
        return cls(pairs)

    def __len__(self) -> int:
        return self.size

    def _check_vector(self, x, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != (self.size,):
            raise ValueError(f"FlatParameters: expected {what} of shape ({self.size},). Received shape {x.shape}")
        return x

    def views(self, x) -> list:
        """The pieces of ``x`` (shape ``(n,)``) shaped like the parameters: views, not copies."""
        x = self._check_vector(x, "x")
        o = self.offsets
        return [x[o[i]:o[i + 1]].reshape(s) for i, s in enumerate(self.shapes)]

    def get(self, out=None) -> np.ndarray:
        """The parameters as one float64 vector ``(n,)`` (into ``out`` when given, else a new array)."""
        out = np.empty(self.size, dtype=np.float64) if out is None else self._check_vector(out, "out")
        for view, p in zip(self.views(out), self.params):
            np.copyto(view, p)
        return out

    def set(self, x) -> None:
        """Copy ``x`` (shape ``(n,)``) into the parameter arrays, in place."""
        for view, p in zip(self.views(x), self.params):
            np.copyto(p, view, casting="unsafe")

    def get_grad(self, out=None) -> np.ndarray:
        """The gradients as one float64 vector ``(n,)`` (a new array unless ``out`` is given)."""
        out = np.empty(self.size, dtype=np.float64) if out is None else self._check_vector(out, "out")
        for view, g in zip(self.views(out), self.grads):
            np.copyto(view, g)
        return out

    def zero_grad(self) -> None:
        """Set every gradient array to zero, in place."""
        for g in self.grads:
            g.fill(0)


def _as_loss(value, where: str) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"make_objective: expected {where}() to return the loss as a number. Received: {value!r}")
    return float(value)


class FlatObjective:
    """The loss of a list of layers as a function of the flat parameter vector.

    Built by :func:`make_objective`; optimizers recognise it in ``minimize`` (start point = the
    current weights, final point written back). Calls:

    - ``value_and_grad(x) -> (loss, grad)``: ``set(x)``, zero the gradients, ``forward_backward()``,
      ``grad = get_grad()`` (a fresh float64 ``(n,)`` vector);
    - ``value(x) -> loss``: ``set(x)``, then ``forward_loss()`` (``forward_backward()`` without it).
    """

    def __init__(self, flat: FlatParameters, forward_backward=None, forward_loss=None):
        self.flat = flat
        self.forward_backward = forward_backward
        self.forward_loss = forward_loss

    @property
    def has_gradient(self) -> bool:
        """Whether gradients are available (a ``forward_backward`` was given)."""
        return self.forward_backward is not None

    @property
    def size(self) -> int:
        return self.flat.size

    @property
    def eps(self) -> float:
        return self.flat.eps

    def x0(self) -> np.ndarray:
        """The current weights as a flat float64 vector (the start point)."""
        return self.flat.get()

    def set(self, x) -> None:
        """Write ``x`` into the layers."""
        self.flat.set(x)

    def value_and_grad(self, x):
        if self.forward_backward is None:
            raise ValueError("FlatObjective: no gradients; build the objective with make_objective(..., forward_backward=...).")
        self.flat.set(x)
        self.flat.zero_grad()
        loss = _as_loss(self.forward_backward(), "forward_backward")
        return loss, self.flat.get_grad()

    def value(self, x) -> float:
        self.flat.set(x)
        if self.forward_loss is not None:
            return _as_loss(self.forward_loss(), "forward_loss")
        self.flat.zero_grad()
        return _as_loss(self.forward_backward(), "forward_backward")

    def __repr__(self):
        return f"<FlatObjective n={self.size} gradient={self.has_gradient}>"


def make_objective(layers, forward_backward=None, forward_loss=None) -> FlatObjective:
    """The objective of a training loop over ``layers`` (a list of layers or a :class:`FlatParameters`).

    Args:
        layers: the layers whose ``gradient_pairs()`` are optimised (frozen layers contribute none).
        forward_backward: ``() -> loss``; runs the full-batch forward (``training=True``), the loss
            and the backward, leaving the gradients in the layers (needed by gradient optimizers).
        forward_loss: ``() -> loss``; the loss alone (enough for derivative-free optimizers).

    At least one of the two callables is required.
    """
    flat = layers if isinstance(layers, FlatParameters) else FlatParameters.from_layers(layers)
    if forward_backward is None and forward_loss is None:
        raise ValueError("make_objective: expected forward_backward, forward_loss or both. Received neither.")
    for name, fn in (("forward_backward", forward_backward), ("forward_loss", forward_loss)):
        if fn is not None and not callable(fn):
            raise TypeError(f"make_objective: expected {name} to be callable. Received: {name}={fn!r}")
    if flat.size == 0:
        raise ValueError("make_objective: the layers have no trainable parameters (are they built and trainable?).")
    return FlatObjective(flat, forward_backward, forward_loss)


def is_full_batch(optimizer) -> bool:
    """Whether ``optimizer`` follows this protocol (``optimizer.full_batch`` is true)."""
    return bool(getattr(optimizer, "full_batch", False))


def check_batch_size(optimizer, batch_size, n_samples: int, owner: str = "fit") -> None:
    """Refuse mini-batches for an optimizer that only works on the full batch.

    ``batch_size=None`` or ``>= n_samples`` is the full batch. Anything smaller raises
    ``ValueError`` unless ``optimizer.supports_minibatch`` is true.
    """
    if batch_size is None or getattr(optimizer, "supports_minibatch", True):
        return
    if isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= n_samples:
        return
    name = type(optimizer).__name__
    raise ValueError(
        f"{owner}: {name} is a full-batch optimizer: every iteration uses the loss over all "
        f"{n_samples} samples, so it cannot train on mini-batches. Leave batch_size=None (or set it to at "
        f"least the number of samples) or use a gradient optimizer such as 'adam'. Received: batch_size={batch_size}"
    )
