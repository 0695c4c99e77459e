"""The shared step of every gradient optimizer, and the registry of optimizer classes.

One update (``apply_gradients(pairs)``, Keras 3 order):

1. check the ``(grad, param)`` pairs (same shapes; ``param`` a float ndarray updated in place);
   cast each gradient to its parameter's dtype (never modifying the caller's gradient array);
2. on the first update create the per-parameter slots (moments, accumulators, ...) in each
   parameter's dtype, keyed by position in ``pairs``; afterwards check that the shapes match;
3. ``lr = learning_rate`` (a float, or ``schedule(iterations)``);
4. clip the gradients: ``clipnorm`` per tensor (``g * c / max(||g||, c)``), or
   ``global_clipnorm`` over all of them (``g * c / max(sqrt(sum ||g_i||^2), c)``), or
   ``clipvalue`` elementwise (``clip(g, -v, v)``) -- at most one of the three;
5. decoupled weight decay ``param -= lr * weight_decay * param`` (before the update, as Keras 3);
6. the optimizer's own update of ``param`` (in place) from the gradient and its slots;
7. ``iterations += 1``.

Subclasses implement ``_init_slots(param, name, lr) -> dict`` and
``_update(grad, param, slots, lr, t)`` (``t = iterations + 1``); they never rebind ``param`` and
never write into ``grad``. Scratch space for temporaries comes from :meth:`Optimizer._tmp`.
"""

from __future__ import annotations

import math
import numbers
import re

import numpy as np

from . import schedules as _schedules

__all__ = ["Optimizer", "register_optimizer", "get_optimizer_class", "available", "serialize", "deserialize", "get"]

_REGISTRY: dict[str, type] = {}


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_float(owner: str, name: str, value, *, low=None, high=None, low_open=False, high_open=False,
                allow_none=False):
    """``value`` as a float in the given interval (``None`` passes with ``allow_none``).

    ``TypeError`` for a non-number, ``ValueError`` for a value outside the interval; both
    messages name the owner and say ``Received: name=value``.
    """
    if value is None and allow_none:
        return None
    lo_b = "(" if low_open else "["
    hi_b = ")" if high_open else "]"
    interval = f"{lo_b}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_b}"
    if not _is_number(value):
        extra = " or None" if allow_none else ""
        raise TypeError(f"{owner}: expected {name} to be a number in {interval}{extra}. Received: {name}={value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None and (value <= low if low_open else value < low):
        bad = True
    if high is not None and (value >= high if high_open else value > high):
        bad = True
    if bad:
        raise ValueError(f"{owner}: expected {name} to be a number in {interval}. Received: {name}={value}")
    return value


class Optimizer:
    """Base class of the gradient optimizers.

    Args:
        learning_rate: a float ``>= 0`` or a :class:`~fusenet.optimizers.schedules.LearningRateSchedule`
            (called with ``iterations``, which is 0 on the first update).
        weight_decay: ``None`` or a float ``>= 0``: decoupled decay ``param -= lr * weight_decay * param``
            before each update (Keras 3).
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: clip all gradients together to this global L2 norm.
        name: a string (defaults to the lower-case class name).

    Attributes:
        iterations: the number of updates applied so far (int).
    """

    #: the slot names this optimizer may create per parameter (checked by ``set_state``)
    slot_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fusenet.") and not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None):
        owner = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{owner}: expected name to be a non-empty string. Received: name={name!r}")
        self.name = name if name is not None else owner.lower()
        self._learning_rate = self._check_learning_rate(learning_rate)
        self.weight_decay = check_float(owner, "weight_decay", weight_decay, low=0.0, allow_none=True)
        self.clipnorm = check_float(owner, "clipnorm", clipnorm, low=0.0, low_open=True, allow_none=True)
        self.clipvalue = check_float(owner, "clipvalue", clipvalue, low=0.0, low_open=True, allow_none=True)
        self.global_clipnorm = check_float(owner, "global_clipnorm", global_clipnorm, low=0.0, low_open=True,
                                           allow_none=True)
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{owner}: only one of clipnorm, clipvalue and global_clipnorm can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.iterations = 0
        self._slots: list | None = None  # per parameter: {slot name: ndarray}
        self._shapes: list | None = None
        self._decay_mask: list | None = None
        self._pending: dict | None = None  # a state set before the first update
        self._exclude_ids: set = set()
        self._exclude_pattern = None
        self._buffers: dict = {}

    # ------------------------------------------------------------ learning rate
    def _check_learning_rate(self, value):
        if isinstance(value, _schedules.LearningRateSchedule):
            return value
        owner = type(self).__name__
        if not _is_number(value):
            raise TypeError(
                f"{owner}: expected learning_rate to be a non-negative float or a "
                f"fusenet.optimizers.schedules.LearningRateSchedule. Received: learning_rate={value!r}"
            )
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{owner}: expected learning_rate to be a non-negative float. Received: learning_rate={value}")
        return float(value)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update: the float, or ``schedule(iterations)``.

        Settable to a float (e.g. by ``ReduceLROnPlateau``) unless the optimizer was given a
        schedule (then ``TypeError``, as Keras), or to a new schedule.
        """
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            return float(lr(self.iterations))
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if not isinstance(value, _schedules.LearningRateSchedule) and isinstance(
                self._learning_rate, _schedules.LearningRateSchedule):
            raise TypeError(
                f"{type(self).__name__}: this optimizer was created with a LearningRateSchedule "
                f"({type(self._learning_rate).__name__}), so its learning rate is not settable to a float. "
                f"Create the optimizer with a float learning_rate instead. Received: learning_rate={value!r}"
            )
        self._learning_rate = self._check_learning_rate(value)

    @property
    def learning_rate_schedule(self):
        """The schedule, or ``None`` when the learning rate is a float."""
        lr = self._learning_rate
        return lr if isinstance(lr, _schedules.LearningRateSchedule) else None

    # ------------------------------------------------------------ weight-decay exclusions
    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Exclude parameters from weight decay (Keras): the arrays in ``var_list`` (by identity) and
        every parameter whose name (``"layer_name/weight_name"``, known through :meth:`apply`)
        matches one of the regular expressions ``var_names``. Only before the first update."""
        if self._slots is not None:
            raise ValueError(f"{type(self).__name__}: exclude_from_weight_decay() can only be called before the first update.")
        self._exclude_ids = {id(v) for v in (var_list or [])}
        names = list(var_names or [])
        self._exclude_pattern = re.compile("|".join(names)) if names else None

    # ------------------------------------------------------------ the update
    def apply(self, layers) -> None:
        """Update every trainable parameter of ``layers`` (a layer or a list of layers) in place.

        Collects ``layer.gradient_pairs()`` (names ``"layer_name/weight_name"``), calls
        :meth:`apply_gradients`, then ``layer.apply_constraints()`` where a layer has one
        (Keras applies weight constraints after the optimizer step).
        """
        if hasattr(layers, "gradient_pairs"):
            layers = [layers]
        try:
            layers = list(layers)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}.apply: expected a layer or a list of layers. Received: {layers!r}") from exc
        pairs, names = [], []
        for layer in layers:
            if not hasattr(layer, "gradient_pairs"):
                raise TypeError(
                    f"{type(self).__name__}.apply: expected layers with gradient_pairs(). Received: {layer!r}"
                )
            keys = {id(v): k for k, v in getattr(layer, "params", {}).items()}
            for grad, param in layer.gradient_pairs():
                pairs.append((grad, param))
                names.append(f"{getattr(layer, 'name', type(layer).__name__)}/{keys.get(id(param), 'param')}")
        if not pairs:
            return
        self.apply_gradients(pairs, names=names)
        for layer in layers:
            if hasattr(layer, "apply_constraints"):
                layer.apply_constraints()

    def apply_gradients(self, pairs, names=None) -> None:
        """One update of every ``param`` in place from its ``grad``: ``pairs = [(grad, param), ...]``.

        ``names`` (optional, one string per pair) lets name-based options (weight-decay
        exclusions, Muon's ``exclude_layers``) see the parameters; :meth:`apply` passes them.
        An empty list is a no-op (``iterations`` unchanged).
        """
        grads, params = self._check_pairs(pairs)
        if not params:
            return
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != len(params):
                raise ValueError(
                    f"{type(self).__name__}.apply_gradients: expected one name per pair ({len(params)}). "
                    f"Received: {len(names)} names"
                )
        lr = self.learning_rate
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(
                f"{type(self).__name__}: the learning rate must be a non-negative finite number, but the schedule "
                f"gave {lr} at step {self.iterations}."
            )
        self._build(params, names, lr)
        grads = self._clip(grads)
        t = self.iterations + 1
        self._before_step(lr, t)
        for i, (g, p) in enumerate(zip(grads, params)):
            wd = self._weight_decay_for(i)
            if wd:
                p *= 1.0 - lr * wd
            self._update(g, p, self._slots[i], lr, t)
        self.iterations += 1

    def _check_pairs(self, pairs):
        owner = f"{type(self).__name__}.apply_gradients"
        grads, params = [], []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"{owner}: expected (grad, param) pairs. Received item {i}: {pair!r}")
            g, p = pair
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise TypeError(
                    f"{owner}: expected param {i} to be a float numpy array (it is updated in place). "
                    f"Received: {type(p).__name__} {getattr(p, 'dtype', '')}"
                )
            if not p.flags.writeable:
                raise ValueError(f"{owner}: param {i} (shape {p.shape}) is read-only; it must be updated in place.")
            g = np.asarray(g)
            if g.dtype.kind not in "biuf":
                raise TypeError(f"{owner}: expected grad {i} to be numeric. Received dtype {g.dtype}")
            if g.shape != p.shape:
                raise ValueError(
                    f"{owner}: grad {i} has shape {g.shape}, but its param has shape {p.shape}; they must match."
                )
            grads.append(g if g.dtype == p.dtype else g.astype(p.dtype))
            params.append(p)
        return grads, params

    def _build(self, params, names, lr) -> None:
        shapes = [p.shape for p in params]
        owner = type(self).__name__
        if self._slots is not None:
            if shapes != self._shapes:
                raise ValueError(
                    f"{owner}: this optimizer was built for {len(self._shapes)} parameters with shapes {self._shapes}, "
                    f"but received {len(shapes)} with shapes {shapes}. Its slots are keyed by position; use a new "
                    "optimizer for another set of parameters."
                )
            return
        pending = self._pending
        if pending is not None and pending["param_shapes"] is not None and pending["param_shapes"] != shapes:
            raise ValueError(
                f"{owner}: the state set with set_state() is for parameters with shapes {pending['param_shapes']}, "
                f"but received parameters with shapes {shapes}."
            )
        names = names or [None] * len(params)
        slots = [self._init_slots(p, n, lr) for p, n in zip(params, names)]
        if pending is not None and pending["param_shapes"] is not None:
            self._check_slot_layout(slots, pending["slots"])
            for i, entry in pending["slots"].items():
                for k, arr in entry.items():
                    slots[i][k][...] = arr
        mask = []
        for p, n in zip(params, names):
            excluded = id(p) in self._exclude_ids or (
                self._exclude_pattern is not None and n is not None and self._exclude_pattern.search(n) is not None)
            mask.append(not excluded)
        self._slots, self._shapes, self._decay_mask, self._pending = slots, shapes, mask, None

    def _check_slot_layout(self, slots, given) -> None:
        """``given`` ({index: {name: array}}) must hold exactly the slots of ``slots``, same shapes."""
        for i, entry in enumerate(slots):
            have = given.get(i, {})
            if set(have) != set(entry):
                raise ValueError(
                    f"{type(self).__name__}.set_state: parameter {i} expects slots {sorted(entry)}, "
                    f"but the state has {sorted(have)} (was it saved from an optimizer with another configuration?)."
                )
            for k, arr in have.items():
                if arr.shape != entry[k].shape:
                    raise ValueError(
                        f"{type(self).__name__}.set_state: slot {i}/{k} expects shape {entry[k].shape}, "
                        f"but the state has shape {arr.shape}."
                    )

    def _clip(self, grads):
        if self.clipnorm is not None:
            c = self.clipnorm
            out = []
            for g in grads:
                n = math.sqrt(float(np.vdot(g, g)))
                out.append(g if n <= c else g * (c / n))
            return out
        if self.global_clipnorm is not None:
            c = self.global_clipnorm
            n = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            return grads if n <= c else [g * (c / n) for g in grads]
        if self.clipvalue is not None:
            v = self.clipvalue
            return [np.clip(g, -v, v) for g in grads]
        return grads

    def _weight_decay_for(self, index: int):
        """The decay rate for parameter ``index`` (``None``/0: no decay)."""
        return self.weight_decay if self._decay_mask[index] else None

    def _before_step(self, lr: float, t: int) -> None:
        """Hook run once per update before the per-parameter updates (e.g. Nadam's product)."""

    def _init_slots(self, param, name, lr) -> dict:
        """The slots of one parameter, ``{name: array}`` (default: none)."""
        return {}

    def _update(self, g, p, s, lr, t) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement _update().")

    def _slot_shape(self, slot: str, param_shape: tuple) -> tuple:
        """Shape of slot ``slot`` for a parameter of ``param_shape`` (default: the same shape)."""
        return tuple(param_shape)

    def _tmp(self, p, k: int = 0) -> np.ndarray:
        """Scratch array shaped and typed like ``p`` (the ``k``-th one; reused across parameters)."""
        key = (p.dtype.str, k)
        buf = self._buffers.get(key)
        if buf is None or buf.size < p.size:
            buf = np.empty(max(p.size, 1), dtype=p.dtype)
            self._buffers[key] = buf
        return buf[: p.size].reshape(p.shape)

    def get_slot(self, index: int, name: str) -> np.ndarray:
        """The slot ``name`` of parameter ``index`` (the live array; the optimizer must be built)."""
        if self._slots is None:
            raise ValueError(f"{type(self).__name__}: no slots yet; they are created by the first update.")
        if not (0 <= index < len(self._slots)) or name not in self._slots[index]:
            raise ValueError(
                f"{type(self).__name__}: no slot {name!r} for parameter {index}. "
                f"Parameters: {len(self._slots)}; slots of parameter 0: {sorted(self._slots[0]) if self._slots else []}."
            )
        return self._slots[index][name]

    @property
    def built(self) -> bool:
        """Whether the slots exist (after the first update)."""
        return self._slots is not None

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        """JSON-safe constructor arguments (a schedule as ``{"class_name", "config"}``)."""
        lr = self._learning_rate
        return {
            "name": self.name,
            "learning_rate": _schedules.serialize(lr) if isinstance(lr, _schedules.LearningRateSchedule) else lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
        }

    @classmethod
    def from_config(cls, config: dict):
        """A new optimizer (without state) from :meth:`get_config`'s output."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"

    # ------------------------------------------------------------ state
    def _get_extra_state(self) -> dict:
        """Optimizer-wide scalars beyond the slots (JSON-safe)."""
        return {}

    def _check_extra_state(self, state: dict) -> dict:
        """Validate the extra scalars of ``state``; return what :meth:`_set_extra_state` applies."""
        return {}

    def _set_extra_state(self, extra: dict) -> None:
        pass

    def get_state(self) -> dict:
        """Everything an exact continuation needs.

        Returns ``{"class_name", "iterations", "learning_rate" (float, or None with a schedule),
        "param_shapes" (list of lists, or None before the first update), "slot_names"
        (``"index/slot"`` strings), "slots" (list of ndarrays, copies, same order)}`` plus the
        optimizer's own scalars. Every value except ``"slots"`` is JSON-safe.
        """
        lr = self._learning_rate
        state = {
            "class_name": type(self).__name__,
            "iterations": int(self.iterations),
            "learning_rate": None if isinstance(lr, _schedules.LearningRateSchedule) else float(lr),
        }
        if self._slots is not None:
            state["param_shapes"] = [list(s) for s in self._shapes]
            entries = [(i, k, a) for i, slots in enumerate(self._slots) for k, a in slots.items()]
        elif self._pending is not None and self._pending["param_shapes"] is not None:
            state["param_shapes"] = [list(s) for s in self._pending["param_shapes"]]
            entries = [(i, k, a) for i, slots in sorted(self._pending["slots"].items()) for k, a in slots.items()]
        else:
            state["param_shapes"] = None
            entries = []
        state["slot_names"] = [f"{i}/{k}" for i, k, _ in entries]
        state["slots"] = [np.array(a, copy=True) for _, _, a in entries]
        state.update(self._get_extra_state())
        return state

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s output exactly (also before the first update).

        Everything is checked before anything changes: a state of another optimizer class, a
        malformed entry, a slot whose shape does not fit its parameter, or parameter shapes that
        differ from those this optimizer was built for raise ``ValueError``. Before the first
        update the slots are kept and checked against the parameters when they arrive; a state
        taken before any update makes a built optimizer fresh again (slots created anew).
        """
        owner = f"{type(self).__name__}.set_state"
        if not isinstance(state, dict):
            raise TypeError(f"{owner}: expected a dict from get_state(). Received: {type(state).__name__}")
        if state.get("class_name") != type(self).__name__:
            raise ValueError(
                f"{owner}: the state belongs to a {state.get('class_name')!r} optimizer, not {type(self).__name__!r}."
            )
        iterations = state.get("iterations")
        if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or iterations < 0:
            raise ValueError(f"{owner}: expected iterations to be a non-negative int. Received: iterations={iterations!r}")
        lr = state.get("learning_rate")
        if lr is not None:
            lr = self._check_learning_rate(lr)
        shapes = state.get("param_shapes")
        slot_names, arrays = state.get("slot_names", []), state.get("slots", [])
        if not isinstance(slot_names, (list, tuple)) or not isinstance(arrays, (list, tuple)) or len(slot_names) != len(arrays):
            raise ValueError(f"{owner}: expected slot_names and slots to be lists of the same length.")
        if shapes is not None:
            try:
                shapes = [tuple(int(d) for d in s) for s in shapes]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{owner}: expected param_shapes to be a list of shapes. Received: {shapes!r}") from exc
            if any(d < 0 for s in shapes for d in s):
                raise ValueError(f"{owner}: negative dimension in param_shapes={shapes}")
        elif slot_names:
            raise ValueError(f"{owner}: the state has slots but no param_shapes.")
        given: dict = {}
        for key, arr in zip(slot_names, arrays):
            match = re.fullmatch(r"(\d+)/(\w+)", key) if isinstance(key, str) else None
            if match is None:
                raise ValueError(f"{owner}: malformed slot name {key!r}; expected 'index/name'.")
            i, k = int(match.group(1)), match.group(2)
            if i >= len(shapes) or k not in self.slot_names:
                raise ValueError(
                    f"{owner}: unexpected slot {key!r} (parameters: {len(shapes)}; slots of "
                    f"{type(self).__name__}: {list(self.slot_names)})."
                )
            arr = np.asarray(arr)
            if arr.dtype.kind != "f":
                raise ValueError(f"{owner}: slot {key!r} must be a float array. Received dtype {arr.dtype}")
            expected = self._slot_shape(k, shapes[i])
            if arr.shape != expected:
                raise ValueError(
                    f"{owner}: slot {key!r} expects shape {expected} for a parameter of shape {shapes[i]}, "
                    f"but the state has shape {arr.shape}."
                )
            given.setdefault(i, {})[k] = arr
        extra = self._check_extra_state(state)
        if self._slots is not None and shapes is None:  # a state from before the first update: start afresh
            self._slots = self._shapes = self._decay_mask = None
            self._pending = None
        elif self._slots is not None:
            if shapes != self._shapes:
                raise ValueError(
                    f"{owner}: the state is for parameters with shapes {shapes}, but this optimizer was built for "
                    f"{self._shapes}."
                )
            self._check_slot_layout(self._slots, given)
            for i, entry in given.items():
                for k, arr in entry.items():
                    self._slots[i][k][...] = arr
        else:
            self._pending = {"param_shapes": shapes,
                             "slots": {i: {k: np.array(a, copy=True) for k, a in e.items()} for i, e in given.items()}}
        self.iterations = int(iterations)
        if lr is not None and not isinstance(self._learning_rate, _schedules.LearningRateSchedule):
            self._learning_rate = lr
        self._set_extra_state(extra)


# ---------------------------------------------------------------- registry
def register_optimizer(cls: type) -> type:
    """Register a user subclass of :class:`Optimizer` so :func:`deserialize` may build it."""
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: expected a subclass of fusenet.optimizers.Optimizer. Received: {cls!r}")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing is not cls and existing.__module__.startswith("fusenet."):
        raise ValueError(f"register_optimizer: the name {cls.__name__!r} is taken by fusenet's own optimizer.")
    _REGISTRY[cls.__name__] = cls
    return cls


def available() -> list:
    """The valid optimizer names for :func:`get` (lower case; CamelCase works too)."""
    return sorted(name.lower() for name in _REGISTRY)


def get_optimizer_class(name: str) -> type:
    """The registered optimizer class called ``name`` (case-insensitive); ``ValueError`` otherwise."""
    if isinstance(name, str):
        cls = _REGISTRY.get(name)
        if cls is None:
            lowered = {k.lower(): v for k, v in _REGISTRY.items()}
            cls = lowered.get(name.lower())
        if cls is not None:
            return cls
    raise ValueError(f"Unknown optimizer: {name!r}. Valid names: {available()}.")


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-safe) of an optimizer."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"serialize: expected a fusenet.optimizers.Optimizer. Received: {optimizer!r}")
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(spec: dict) -> Optimizer:
    """Inverse of :func:`serialize`; builds only registered optimizer classes."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"Expected an optimizer spec {{'class_name': ..., 'config': ...}}. Received: {spec!r}")
    cls = get_optimizer_class(spec["class_name"])
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"Expected the config of {spec['class_name']} to be a dict. Received: {config!r}")
    return cls.from_config(dict(config))


def get(identifier) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"Adam"``), a :func:`serialize` dict, or an optimizer object
    (returned as is). A name gives the optimizer with its default arguments."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return get_optimizer_class(identifier)()
    raise TypeError(f"Expected an optimizer name, config dict or Optimizer object. Received: {identifier!r}")
