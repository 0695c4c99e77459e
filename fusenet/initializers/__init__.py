"""Weight initializers, named and behaving as in Keras 3.

An initializer is called as ``init(shape, dtype=None, rng=None)`` and returns a new array.
When the initializer has its own ``seed`` it uses it (the same seed gives the same values
every call, as in Keras); otherwise it draws from ``rng`` (the layer's generator) or, without
one, from a generator seeded by :func:`fusenet.set_random_seed`.

Fans follow Keras: for a kernel ``(..., in, out)`` the receptive field is the product of the
leading dimensions, ``fan_in = in * receptive``, ``fan_out = out * receptive``.
"""

from __future__ import annotations

import math

import numpy as np

from ..utils import make_rng, standardize_dtype

__all__ = [
    "Initializer",
    "Zeros",
    "Ones",
    "Constant",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "Orthogonal",
    "Identity",
    "compute_fans",
    "get",
    "serialize",
    "deserialize",
]


def compute_fans(shape) -> tuple[float, float]:
    """``(fan_in, fan_out)`` of a weight of ``shape``, as Keras computes them."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


class Initializer:
    """Base class: subclasses implement ``_sample(shape, rng)`` returning float64 values."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"{type(self).__name__}: expected seed to be None or a non-negative int. Received: seed={seed!r}")
        self.seed = seed

    def __call__(self, shape, dtype=None, rng=None) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        dt = standardize_dtype(dtype)
        if self.seed is not None:
            rng = np.random.default_rng(self.seed)
        elif rng is None:
            rng = make_rng(None)
        return np.asarray(self._sample(shape, rng), dtype=dt)

    def _sample(self, shape, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__


class Zeros(Initializer):
    """All zeros."""

    def __init__(self):
        super().__init__(None)

    def _sample(self, shape, rng):
        return np.zeros(shape)

    def get_config(self):
        return {}


class Ones(Initializer):
    """All ones."""

    def __init__(self):
        super().__init__(None)

    def _sample(self, shape, rng):
        return np.ones(shape)

    def get_config(self):
        return {}


class Constant(Initializer):
    """Every entry equal to ``value``."""

    def __init__(self, value=0.0):
        super().__init__(None)
        self.value = float(value)

    def _sample(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal with ``mean`` and ``stddev``."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        if stddev < 0:
            raise ValueError(f"RandomNormal: expected stddev >= 0. Received: stddev={stddev}")
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape, rng):
        return rng.normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    """Uniform on ``[minval, maxval)``."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        if maxval < minval:
            raise ValueError(f"RandomUniform: expected minval <= maxval. Received: minval={minval}, maxval={maxval}")
        self.minval, self.maxval = float(minval), float(maxval)

    def _sample(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


def _truncated_normal(shape, stddev, rng):
    """Normal(0, stddev) redrawn outside two standard deviations (Keras ``truncated_normal``)."""
    out = rng.normal(0.0, 1.0, size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.normal(0.0, 1.0, size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * stddev


class TruncatedNormal(Initializer):
    """Normal with ``mean`` and ``stddev``, values beyond two standard deviations redrawn."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def _sample(self, shape, rng):
        return self.mean + _truncated_normal(shape, self.stddev, rng)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(Initializer):
    """Scale / fan variance: ``mode`` in fan_in/fan_out/fan_avg, ``distribution`` in
    truncated_normal/untruncated_normal/uniform (Keras semantics, incl. the 0.8796 truncation factor)."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if scale <= 0:
            raise ValueError(f"{type(self).__name__}: expected scale > 0. Received: scale={scale}")
        if mode not in self._MODES:
            raise ValueError(f"{type(self).__name__}: expected mode to be one of {list(self._MODES)}. Received: mode={mode!r}")
        if distribution not in self._DISTS:
            raise ValueError(
                f"{type(self).__name__}: expected distribution to be one of {list(self._DISTS)}. "
                f"Received: distribution={distribution!r}"
            )
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def _sample(self, shape, rng):
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "truncated_normal":
            return _truncated_normal(shape, math.sqrt(variance) / 0.87962566103423978, rng)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), size=shape)
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _FixedVarianceScaling(VarianceScaling):
    _scale, _mode, _dist = 1.0, "fan_in", "uniform"

    def __init__(self, seed=None):
        super().__init__(self._scale, self._mode, self._dist, seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_FixedVarianceScaling):
    """Uniform on ``±sqrt(6 / (fan_in + fan_out))``."""

    _scale, _mode, _dist = 1.0, "fan_avg", "uniform"


class GlorotNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out))``."""

    _scale, _mode, _dist = 1.0, "fan_avg", "truncated_normal"


class HeUniform(_FixedVarianceScaling):
    """Uniform on ``±sqrt(6 / fan_in)``."""

    _scale, _mode, _dist = 2.0, "fan_in", "uniform"


class HeNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(2 / fan_in)``."""

    _scale, _mode, _dist = 2.0, "fan_in", "truncated_normal"


class LecunUniform(_FixedVarianceScaling):
    """Uniform on ``±sqrt(3 / fan_in)``."""

    _scale, _mode, _dist = 1.0, "fan_in", "uniform"


class LecunNormal(_FixedVarianceScaling):
    """Truncated normal with stddev ``sqrt(1 / fan_in)``."""

    _scale, _mode, _dist = 1.0, "fan_in", "truncated_normal"


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``; higher-rank shapes are flattened to ``(prod(shape[:-1]), shape[-1])``."""

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def _sample(self, shape, rng):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: expected a shape of rank >= 2. Received: shape={shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return self.gain * q.reshape(shape)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only)."""

    def __init__(self, gain=1.0):
        super().__init__(None)
        self.gain = float(gain)

    def _sample(self, shape, rng):
        if len(shape) != 2:
            raise ValueError(f"Identity: expected a 2-D shape. Received: shape={shape}")
        return self.gain * np.eye(*shape)

    def get_config(self):
        return {"gain": self.gain}


_ALIASES = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "normal": RandomNormal,
    "uniform": RandomUniform,
    "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal,
    "identity": Identity,
}
_CLASSES = {cls.__name__: cls for cls in _ALIASES.values()}


def get(identifier) -> Initializer:
    """An initializer from a name (``"glorot_uniform"`` or ``"GlorotUniform"``), a config dict or an object."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(
                f"Unknown initializer: {identifier!r}. Expected one of {sorted(_ALIASES)} or an Initializer object."
            )
        return cls()
    if callable(identifier):
        raise TypeError(
            "Expected an initializer name, config dict or fusenet.initializers.Initializer; "
            f"plain callables cannot be saved. Received: {identifier!r}"
        )
    raise TypeError(f"Expected an initializer name, config dict or Initializer object. Received: {identifier!r}")


def serialize(initializer: Initializer) -> dict:
    """``{"class_name": ..., "config": ...}`` of an initializer (JSON-safe)."""
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def deserialize(config: dict) -> Initializer:
    """Inverse of :func:`serialize`; only fusenet's own initializer classes are built."""
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"Unknown initializer class: {name!r}. Expected one of {sorted(_CLASSES)}.")
    return cls.from_config(dict(config.get("config", {})))
