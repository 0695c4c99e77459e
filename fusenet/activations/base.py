"""The activation-function interface and its registry.

An activation is an object with ``forward(x) -> y`` and ``backward(x, y, dy) -> dx``
(``y`` is ``forward(x)``, passed so that backward can reuse it), a ``name``, a
``get_config()``, and ``elementwise`` (True when ``y[i]`` depends only on ``x[i]``, which
fusion relies on). Activations with hyper-parameters take them as keyword arguments.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ActivationFunction", "register_activation", "get", "serialize", "deserialize", "available"]

_REGISTRY: dict[str, type] = {}


class ActivationFunction:
    """Base class. Subclasses set ``name`` and implement ``forward`` and ``backward``."""

    name = "activation"
    elementwise = True

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, x: np.ndarray, y: np.ndarray, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(np.asarray(x))

    def get_config(self) -> dict:
        """Hyper-parameters (constructor keyword arguments), JSON-safe."""
        return {}

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def register_activation(cls: type, *aliases: str) -> type:
    """Register ``cls`` under ``cls.name`` and every alias; returns ``cls``."""
    for key in (cls.name, *aliases):
        _REGISTRY[key] = cls
    return cls


def available() -> list[str]:
    """Every registered activation name (aliases included), sorted."""
    return sorted(_REGISTRY)


def get(identifier) -> ActivationFunction:
    """An activation object from a name (``"relu"``), a config dict, ``None`` (linear) or an object."""
    if identifier is None:
        identifier = "linear"
    if isinstance(identifier, ActivationFunction):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _REGISTRY.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown activation: {identifier!r}. Expected one of {available()}.")
        return cls()
    raise TypeError(
        "Expected an activation name, a config dict or a fusenet.activations.ActivationFunction. "
        f"Received: {identifier!r}"
    )


def serialize(activation: ActivationFunction):
    """A name when the activation has no hyper-parameters, else ``{"class_name", "config"}``."""
    config = activation.get_config()
    if not config:
        return activation.name
    return {"class_name": activation.name, "config": config}


def deserialize(spec) -> ActivationFunction:
    """Inverse of :func:`serialize`, only from registered activations."""
    if isinstance(spec, str):
        return get(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("class_name"), str):
        raise ValueError(f"Expected an activation name or a dict with 'class_name'. Received: {spec!r}")
    cls = _REGISTRY.get(spec["class_name"])
    if cls is None:
        raise ValueError(f"Unknown activation: {spec['class_name']!r}. Expected one of {available()}.")
    return cls(**dict(spec.get("config", {})))
