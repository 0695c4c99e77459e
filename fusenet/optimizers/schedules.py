"""Learning-rate schedules, named and computed as in Keras 3 (``keras.optimizers.schedules``).

A schedule is a callable ``schedule(step) -> float``: ``step`` is the optimizer's
``iterations`` (0 on the first update, +1 after each). An optimizer created with
``learning_rate=schedule`` uses ``schedule(optimizer.iterations)`` at every update.

Every schedule has ``get_config()`` (JSON-safe) and ``from_config(config)``; :func:`serialize`
gives ``{"class_name": ..., "config": ...}`` and :func:`deserialize` rebuilds a schedule only
from fusenet's own classes and those passed to :func:`register_schedule`.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "LearningRateSchedule",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "register_schedule",
    "serialize",
    "deserialize",
    "get",
]

_REGISTRY: dict[str, type] = {}


def _real(owner: str, name: str, value, *, positive: bool = False, non_negative: bool = False):
    """``value`` as a Python int (when integral) or float, checked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: expected {name} to be a number. Received: {name}={value!r}")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: expected {name} to be finite. Received: {name}={value}")
    if positive and value <= 0:
        raise ValueError(f"{owner}: expected {name} to be > 0. Received: {name}={value}")
    if non_negative and value < 0:
        raise ValueError(f"{owner}: expected {name} to be >= 0. Received: {name}={value}")
    return value


def _step(owner: str, step) -> float:
    if isinstance(step, bool) or not isinstance(step, numbers.Real):
        raise TypeError(f"{owner}: expected step to be a number (the optimizer's iterations). Received: step={step!r}")
    return float(step)


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step) -> float`` and ``get_config()``.

    fusenet's own subclasses are registered automatically; user subclasses must be passed to
    :func:`register_schedule` to be deserialisable.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fusenet.") and not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    def __call__(self, step) -> float:  # pragma: no cover - abstract
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must implement __call__(step).")

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must implement get_config().")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _real(owner, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _real(owner, "decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        p = _step(type(self).__name__, step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate**p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` for ``step > boundaries[-1]``.

    ``boundaries`` strictly increasing, ``len(values) == len(boundaries) + 1``.
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        owner = type(self).__name__
        try:
            boundaries, values = list(boundaries), list(values)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: expected boundaries and values to be lists of numbers. "
                f"Received: boundaries={boundaries!r}, values={values!r}"
            ) from exc
        if len(boundaries) != len(values) - 1 or not boundaries:
            raise ValueError(
                f"{owner}: the length of boundaries should be 1 less than the length of values (and at least 1). "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and values={values} of length {len(values)}."
            )
        boundaries = [_real(owner, "boundaries", b) for b in boundaries]
        values = [float(_real(owner, "values", v)) for v in values]
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{owner}: expected strictly increasing boundaries. Received: boundaries={boundaries}")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step) -> float:
        step = _step(type(self).__name__, step)
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``, ``step = min(step, decay_steps)``.

    With ``cycle=True``, ``decay_steps`` is replaced by the first multiple of it that is
    ``>= step`` (``decay_steps`` itself at step 0) and the decay restarts.
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _real(owner, "decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _real(owner, "end_learning_rate", end_learning_rate)
        self.power = _real(owner, "power", power)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step) -> float:
        step = _step(type(self).__name__, step)
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / decay_steps)
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return (self.initial_learning_rate - self.end_learning_rate) * (1.0 - p) ** self.power + self.end_learning_rate

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``.

    With ``staircase=True`` the ratio is ``floor(step / decay_steps)``.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _real(owner, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _real(owner, "decay_rate", decay_rate, non_negative=True)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        p = _step(type(self).__name__, step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warmup (Keras 3 ``CosineDecay``).

    Without ``warmup_target``: ``s = min(step, decay_steps)``,
    ``lr = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)``.

    With ``warmup_target``: ``s = min(step, warmup_steps + decay_steps)``; for ``s < warmup_steps``
    ``lr = initial + (warmup_target - initial) * s / warmup_steps``, afterwards the cosine decay
    above from ``warmup_target`` at ``s - warmup_steps``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        owner = type(self).__name__
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _real(owner, "decay_steps", decay_steps, positive=True)
        self.alpha = _real(owner, "alpha", alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else _real(owner, "warmup_target", warmup_target)
        self.warmup_steps = _real(owner, "warmup_steps", warmup_steps, non_negative=True)

    def _decay(self, step, decay_from):
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = _step(type(self).__name__, step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Keras 3 ``CosineDecayRestarts``).

    ``f = step / first_decay_steps``. With ``t_mul == 1``: ``i = floor(f)``, ``f -= i``; otherwise
    ``i = floor(log(1 - f * (1 - t_mul)) / log(t_mul))``, ``f = (f - (1 - t_mul**i) / (1 - t_mul)) / t_mul**i``.
    ``lr = initial * ((1 - alpha) * 0.5 * m_mul**i * (1 + cos(pi * f)) + alpha)``.
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name="SGDRDecay"):
        owner = type(self).__name__
        self.initial_learning_rate = _real(owner, "initial_learning_rate", initial_learning_rate)
        self.first_decay_steps = _real(owner, "first_decay_steps", first_decay_steps, positive=True)
        self.t_mul = _real(owner, "t_mul", t_mul, positive=True)
        self.m_mul = _real(owner, "m_mul", m_mul, non_negative=True)
        self.alpha = _real(owner, "alpha", alpha)
        self.name = name

    def __call__(self, step) -> float:
        fraction = _step(type(self).__name__, step) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul**restart) / (1.0 - self.t_mul)
            fraction = (fraction - done) / self.t_mul**restart
        cosine = 0.5 * self.m_mul**restart * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self.t_mul, "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


# ---------------------------------------------------------------- registry
def register_schedule(cls: type) -> type:
    """Register a user subclass of :class:`LearningRateSchedule` so :func:`deserialize` may build it."""
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise TypeError(f"register_schedule: expected a subclass of LearningRateSchedule. Received: {cls!r}")
    existing = _REGISTRY.get(cls.__name__)
    if existing is not None and existing is not cls and existing.__module__.startswith("fusenet."):
        raise ValueError(f"register_schedule: the name {cls.__name__!r} is taken by fusenet's own schedule.")
    _REGISTRY[cls.__name__] = cls
    return cls


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": ...}`` (JSON-safe) of a schedule."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"serialize: expected a LearningRateSchedule. Received: {schedule!r}")
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(spec: dict) -> LearningRateSchedule:
    """Inverse of :func:`serialize`; builds only registered schedule classes."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"Expected a schedule spec {{'class_name': ..., 'config': ...}}. Received: {spec!r}")
    cls = _REGISTRY.get(spec["class_name"]) if isinstance(spec["class_name"], str) else None
    if cls is None:
        raise ValueError(
            f"Unknown learning rate schedule class: {spec['class_name']!r}. Expected one of {sorted(_REGISTRY)} "
            "(or a class passed to register_schedule)."
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"Expected the config of {spec['class_name']} to be a dict. Received: {config!r}")
    return cls.from_config(dict(config))


def get(identifier) -> LearningRateSchedule:
    """A schedule from a schedule object or a :func:`serialize` dict."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"Expected a LearningRateSchedule or its serialized dict. Received: {identifier!r}")
