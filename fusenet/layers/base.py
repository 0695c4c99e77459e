"""The Layer contract every fusenet layer follows, and the one input-checking helper.

A layer turns ``x`` into ``y = forward(x, training)`` and, after a forward with
``training=True``, turns the gradient of the loss with respect to ``y`` into the gradient
with respect to ``x`` (``dx = backward(dy)``), adding (``+=``) its parameter gradients into
``grads``. The arrays in ``params``, ``grads`` and ``state`` are created once in ``build``
and never rebound afterwards: optimizers update ``params`` in place, ``backward`` adds into
``grads`` in place, ``set_weights`` copies into the existing arrays. Composite layers expose
the arrays of their sublayers under ``"sublayer/name"`` keys, the very same objects.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np

from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..errors import BackwardBeforeForwardError, NotBuiltError
from ..initializers import get as get_initializer
from ..utils import check_numeric, floatx, result_dtype, standardize_dtype
from . import symbolic as _symbolic

__all__ = [
    "Layer", "InputSpec", "check_input", "register_layer", "get_layer_class", "serialize", "deserialize", "set_call_hook",
]

# ---------------------------------------------------------------- registry of layer classes
_REGISTRY: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Register a user-defined Layer subclass so that saved models may name it.

    fusenet's own layers are registered automatically; a loader builds only registered classes.
    Usable as a decorator. Returns ``cls``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: expected a subclass of fusenet.layers.Layer. Received: {cls!r}")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing is not cls and existing.__module__.startswith("fusenet."):
        raise ValueError(f"register_layer: the name {cls.__name__!r} is taken by fusenet's own {existing.__module__}.{cls.__name__}.")
    _REGISTRY[cls.__name__] = cls
    return cls


def get_layer_class(name: str) -> type:
    """The registered layer class called ``name``; ``ValueError`` for anything else."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"Unknown layer class: {name!r}. Only fusenet's layers and classes passed to "
            f"fusenet.layers.register_layer can be built; known: {sorted(_REGISTRY)}."
        )
    return cls


def serialize(layer: "Layer") -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-safe) of a layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict) -> "Layer":
    """Build a layer from :func:`serialize`'s output, only from registered classes."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"Expected a dict with 'class_name' and 'config'. Received: {spec!r}")
    cls = get_layer_class(spec["class_name"])
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"Expected the config of {spec['class_name']} to be a dict. Received: {config!r}")
    return cls.from_config(dict(config))


# ---------------------------------------------------------------- input checks
class InputSpec:
    """What a layer accepts: rank bounds and fixed sizes of some axes (Keras ``InputSpec``).

    ``axes`` maps an axis (negative counts from the end) to the size it must have.
    """

    def __init__(self, ndim=None, min_ndim=None, max_ndim=None, axes=None):
        self.ndim, self.min_ndim, self.max_ndim = ndim, min_ndim, max_ndim
        self.axes = dict(axes or {})

    def __repr__(self):
        return f"InputSpec(ndim={self.ndim}, min_ndim={self.min_ndim}, max_ndim={self.max_ndim}, axes={self.axes})"


def _describe(layer) -> str:
    return f"layer '{layer.name}' ({type(layer).__name__})"


def check_input(layer: "Layer", shape, spec: InputSpec | None, index: int = 0) -> None:
    """Raise ``ValueError`` when ``shape`` does not fit ``spec``.

    Every layer gets the same message shape: the layer's name and class, what it expected,
    and the shape it received, e.g. ``Input 0 of layer 'dense' (Dense) is incompatible with the
    layer: expected axis -1 of input shape to have value 2, but received input with shape (1, 3)``.
    """
    if spec is None:
        return
    shape = tuple(shape)
    rank = len(shape)
    head = f"Input {index} of {_describe(layer)} is incompatible with the layer"
    if spec.ndim is not None and rank != spec.ndim:
        raise ValueError(f"{head}: expected ndim={spec.ndim}, but received input with shape {shape} (ndim={rank})")
    if spec.min_ndim is not None and rank < spec.min_ndim:
        raise ValueError(f"{head}: expected min_ndim={spec.min_ndim}, but received input with shape {shape} (ndim={rank})")
    if spec.max_ndim is not None and rank > spec.max_ndim:
        raise ValueError(f"{head}: expected max_ndim={spec.max_ndim}, but received input with shape {shape} (ndim={rank})")
    for axis, value in spec.axes.items():
        if value is None or not (-rank <= axis < rank):
            continue
        got = shape[axis]
        if got is not None and got != value:
            raise ValueError(
                f"{head}: expected axis {axis} of input shape to have value {value}, but received input with shape {shape}"
            )


def _snake_case(name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


_NAME_COUNTS: dict[str, int] = {}


def _unique_name(base: str) -> str:
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


# ---------------------------------------------------------------- the call hook
_CALL_HOOK = None


@contextlib.contextmanager
def input_gradients_unused(layers):
    """Within the block, ``layer._input_grad_needed`` is False for each of ``layers`` (restored after,
    also after an error): the model engine wraps a training step's backward in it for the layers that
    read the model input, whose input gradient goes nowhere."""
    skipped = [layer for layer in layers if layer._input_grad_needed]
    for layer in skipped:
        layer._input_grad_needed = False
    try:
        yield
    finally:
        for layer in skipped:
            layer._input_grad_needed = True


def set_call_hook(hook):
    """Install ``hook`` to see layer calls first; returns the previously installed hook (or ``None``).

    While a hook is installed, ``layer(x, training)`` on anything but a symbolic tensor (the
    functional API keeps its own path) first calls ``hook(layer, x, training)``: a result other
    than ``NotImplemented`` is returned as the layer's output; ``NotImplemented`` lets the layer
    run as usual. ``set_call_hook(None)`` removes it. ``fusenet.autodiff`` installs one while a
    ``GradientTape`` is open (a layer call on a Tensor becomes one tape node) and puts the previous
    one back when the last tape closes. A hook must be cheap and must decline the calls it does
    not handle, including the call it makes itself to run the layer. Without a hook, a call costs
    one extra global lookup.
    """
    global _CALL_HOOK
    if hook is not None and not callable(hook):
        raise TypeError(f"set_call_hook: expected a callable hook(layer, x, training) or None. Received: {hook!r}")
    previous, _CALL_HOOK = _CALL_HOOK, hook
    return previous


# ---------------------------------------------------------------- the base class
class Layer:
    """Base class of every layer.

    Subclasses validate hyper-parameters in ``__init__``, create weights in
    ``build(input_shape)`` with :meth:`add_weight`, and implement ``forward`` and
    ``backward``. ``input_shape`` always includes the batch dimension (may be ``None``).

    Attributes:
        params: trainable arrays, ``name -> ndarray``.
        grads: their gradients, same keys and shapes, accumulated by ``backward``.
        state: non-trainable arrays (e.g. moving statistics).
        built: whether ``build`` ran.
        dtype: the float dtype of weights and computation (``None`` until known).
    """

    #: cast float/int inputs to the layer's dtype in ``__call__`` (Embedding turns this off)
    _cast_inputs = True
    #: whether ``backward`` must return the input gradient. The model engine sets it to False on
    #: the layers that read the model's input, only around the backward of a training step (nobody
    #: reads that gradient); a layer may then skip computing it and return ``None``. Layers that
    #: ignore the flag stay correct.
    _input_grad_needed = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        abstract = cls.__dict__.get("abstract_layer", False)  # a base class that is never built itself
        if cls.__module__.startswith("fusenet.") and not cls.__name__.startswith("_") and not abstract:
            _REGISTRY[cls.__name__] = cls

    def __init__(self, name=None, dtype=None, trainable=True, input_shape=None, activity_regularizer=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected keyword arguments {sorted(kwargs)}.")
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{type(self).__name__}: expected name to be a non-empty string without '/'. Received: name={name!r}")
        self.name = name if name is not None else _unique_name(_snake_case(type(self).__name__))
        self.dtype = standardize_dtype(dtype).name if dtype is not None else None
        self.trainable = bool(trainable)
        if input_shape is not None:
            try:
                input_shape = tuple(None if d is None else int(d) for d in input_shape)
            except TypeError as exc:
                raise TypeError(
                    f"{type(self).__name__}: expected input_shape to be a tuple of ints (without the batch size). "
                    f"Received: input_shape={input_shape!r}"
                ) from exc
        self.input_shape_arg = input_shape
        self.built = False
        self.input_spec: InputSpec | None = None
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._state: dict[str, np.ndarray] = {}
        self._weight_order: list[tuple[str, str]] = []
        self._sublayers: dict[str, Layer] = {}
        self._cache = None
        self.build_input_shape = None
        self.activity_regularizer = _regularizers.get(activity_regularizer)
        self._regularizers: dict[str, object] = {}
        self._constraints: dict[str, object] = {}
        self._activity_output = None

    # ------------------------------------------------------------ weights
    def add_weight(self, name: str, shape, initializer="zeros", trainable: bool = True, rng=None,
                   regularizer=None, constraint=None) -> np.ndarray:
        """Create a weight of ``shape`` in the layer's dtype and register it.

        Trainable weights get a gradient array of zeros; ``rng`` is the generator the
        initializer draws from when it has no seed of its own. ``regularizer`` adds a penalty
        on this weight to the training loss (:meth:`regularization_loss`); ``constraint`` is
        applied after each optimizer step (:meth:`apply_constraints`).
        """
        if name in self._params or name in self._state:
            raise ValueError(f"{_describe(self)}: a weight named {name!r} already exists.")
        if self.dtype is None:
            self.dtype = floatx()
        value = get_initializer(initializer)(tuple(shape), dtype=self.dtype, rng=rng)
        if trainable:
            self._params[name] = value
            self._grads[name] = np.zeros_like(value)
            self._weight_order.append(("params", name))
        else:
            self._state[name] = value
            self._weight_order.append(("state", name))
        if regularizer is not None:
            self._regularizers[name] = _regularizers.get(regularizer)
        if constraint is not None:
            self._constraints[name] = _constraints.get(constraint)
        return value

    # ------------------------------------------------------------ regularization and constraints
    def regularization_loss(self) -> float:
        """Sum of the weight penalties (this layer and sublayers) and the activity penalty of the
        last training forward (divided by its batch size, as Keras)."""
        total = 0.0
        for name, reg in self._regularizers.items():
            total += reg(self._params[name] if name in self._params else self._state[name])
        if self.activity_regularizer is not None and self._activity_output is not None:
            y = self._activity_output
            total += self.activity_regularizer(y) / max(y.shape[0], 1)
        for sub in self._sublayers.values():
            total += sub.regularization_loss()
        return float(total)

    def add_regularization_gradients(self) -> None:
        """Add the gradients of the weight penalties into ``grads`` (this layer and sublayers)."""
        for name, reg in self._regularizers.items():
            if name in self._grads:
                self._grads[name] += reg.gradient(self._params[name])
        for sub in self._sublayers.values():
            sub.add_regularization_gradients()

    def apply_constraints(self) -> None:
        """Project constrained weights in place (after an optimizer step)."""
        for name, constraint in self._constraints.items():
            w = self._params[name] if name in self._params else self._state[name]
            w[...] = constraint(w)
        for sub in self._sublayers.values():
            sub.apply_constraints()

    def activity_gradient(self, dy):
        """``dy`` plus the gradient of the activity penalty of the last training forward.

        The training loop calls ``layer.backward(layer.activity_gradient(dy))``.
        """
        if self.activity_regularizer is None or self._activity_output is None:
            return dy
        y = self._activity_output
        return dy + self.activity_regularizer.gradient(y) / max(y.shape[0], 1)

    def track_layer(self, key: str, layer: "Layer") -> "Layer":
        """Make ``layer`` a sublayer: its weights appear here under ``key/...``."""
        if not isinstance(layer, Layer):
            raise TypeError(f"{_describe(self)}: expected a Layer to track. Received: {layer!r}")
        self._sublayers[key] = layer
        return layer

    def _merged(self, attr: str) -> dict:
        own = getattr(self, attr)
        if not self._sublayers:
            return own
        out = dict(own)
        for key, sub in self._sublayers.items():
            for k, v in getattr(sub, attr[1:]).items():
                out[f"{key}/{k}"] = v
        return out

    @property
    def params(self) -> dict:
        """Trainable arrays (this layer's and its sublayers'), ``name -> ndarray``."""
        return self._merged("_params")

    @property
    def grads(self) -> dict:
        """Gradients of :attr:`params`, same keys and shapes."""
        return self._merged("_grads")

    @property
    def state(self) -> dict:
        """Non-trainable arrays, ``name -> ndarray``."""
        return self._merged("_state")

    @property
    def weights(self) -> list:
        """All weight arrays in Keras ``get_weights()`` order (own weights, then sublayers')."""
        own = [getattr(self, "_" + store)[name] for store, name in self._weight_order]
        for sub in self._sublayers.values():
            own.extend(sub.weights)
        return own

    @property
    def trainable_weights(self) -> list:
        """The trainable arrays (empty when ``trainable`` is False)."""
        return list(self.params.values()) if self.trainable else []

    @property
    def non_trainable_weights(self) -> list:
        """State arrays, plus every parameter when ``trainable`` is False."""
        if self.trainable:
            return list(self.state.values())
        return list(self.params.values()) + list(self.state.values())

    def gradient_pairs(self) -> list:
        """``[(grad, param), ...]`` for the parameters an optimizer should update.

        Respects ``trainable`` of this layer and of every sublayer.
        """
        if not self.trainable:
            return []
        pairs = [(self._grads[k], self._params[k]) for k in self._params]
        for sub in self._sublayers.values():
            pairs.extend(sub.gradient_pairs())
        return pairs

    def zero_grad(self) -> None:
        """Set every gradient (also of sublayers) to zero, in place."""
        for g in self.grads.values():
            g.fill(0)

    def get_weights(self) -> list:
        """Copies of all weights, in Keras order."""
        return [np.array(w, copy=True) for w in self.weights]

    def set_weights(self, weights) -> None:
        """Copy ``weights`` (a list in :meth:`get_weights` order) into the layer.

        Checks the count and every shape first: on a mismatch raises ``ValueError`` naming
        the layer and changes nothing.
        """
        current = self.weights
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(
                f"{_describe(self)} expects {len(current)} weight arrays, but received {len(weights)}: "
                f"shapes {[np.shape(w) for w in weights]} (expected {[w.shape for w in current]})."
            )
        arrays = []
        for i, (w, cur) in enumerate(zip(weights, current)):
            a = check_numeric(w, f"{_describe(self)}.set_weights")
            if a.shape != cur.shape:
                raise ValueError(
                    f"{_describe(self)}: weight {i} expects shape {cur.shape}, but received an array of shape {a.shape}."
                )
            arrays.append(a)
        for a, cur in zip(arrays, current):
            cur[...] = a

    def count_params(self) -> int:
        """Number of scalars in all weights (trainable and not)."""
        if not self.built:
            raise NotBuiltError(f"{_describe(self)} is not built yet: call it on data or build(input_shape) first.")
        return int(sum(w.size for w in self.weights))

    # ------------------------------------------------------------ life cycle
    def build(self, input_shape) -> None:
        """Create the weights for ``input_shape`` (batch dimension included). Subclasses extend."""
        self.built = True

    def _build_for(self, input_shape, dtype=None) -> None:
        """Build once: fix the dtype (explicit ``dtype=``, else the input's), then :meth:`build`."""
        if self.built:
            return
        if self.dtype is None:
            self.dtype = (standardize_dtype(dtype) if dtype is not None else np.dtype(floatx())).name
        self.build(tuple(input_shape))
        self.build_input_shape = tuple(input_shape)
        self.built = True

    def _prepare_input(self, x):
        """Check ``x`` (numeric dtype, rank, sizes), cast it to the layer's dtype, build on first use."""
        x = check_numeric(x, f"Layer '{self.name}' ({type(self).__name__})")
        if not self.built:
            self._build_for(x.shape, result_dtype(x, self.dtype))
        check_input(self, x.shape, self.input_spec)
        if self._cast_inputs and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    def __call__(self, x, training: bool = False):
        """Check and cast ``x``, build on first use, return ``forward(x, training)``.

        A symbolic ``x`` (functional API) records a node instead; an installed call hook
        (:func:`set_call_hook`) sees every other call first.
        """
        if not isinstance(x, np.ndarray) and _symbolic.is_symbolic(x):  # functional API (layers/symbolic.py)
            return _symbolic.symbolic_call(self, x, training)
        if _CALL_HOOK is not None:
            y = _CALL_HOOK(self, x, training)
            if y is not NotImplemented:
                return y
        x = self._prepare_input(x)
        y = self.forward(x, training=bool(training))
        if self.activity_regularizer is not None:
            self._activity_output = y if training else None
        return y

    def forward(self, x, training: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement forward().")

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement backward().")

    # ------------------------------------------------------------ the backward cache
    def _save_for_backward(self, training: bool, *values) -> None:
        """Keep ``values`` for :meth:`backward` when training; drop any old cache otherwise."""
        self._cache = values if training else None

    def _saved(self):
        """What the last training forward kept; raises when there was none."""
        if self._cache is None:
            raise BackwardBeforeForwardError(
                f"{_describe(self)}: backward() was called without a preceding forward(x, training=True); "
                "run the layer with training=True before calling backward()."
            )
        return self._cache

    # ------------------------------------------------------------ shapes and config
    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape`` (batch dimension included). Default: unchanged."""
        return tuple(input_shape)

    def get_config(self) -> dict:
        """JSON-safe constructor arguments; ``type(self).from_config(cfg)`` gives an equal layer."""
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = _regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        if config.get("input_shape") is not None:
            config["input_shape"] = tuple(config["input_shape"])
        return cls(**config)

    def describe(self) -> str:
        """``"layer 'name' (Class)"``, for messages."""
        return _describe(self)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"
