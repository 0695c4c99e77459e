"""Small shared utilities: dtypes, argument checks and the random-number generators.

Every package of fusenet may import this module; it imports only NumPy.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "floatx",
    "set_floatx",
    "standardize_dtype",
    "result_dtype",
    "as_float_array",
    "check_numeric",
    "check_positive_int",
    "check_non_negative_int",
    "check_rate",
    "check_in",
    "normalize_tuple",
    "set_random_seed",
    "make_rng",
    "draw_seed",
]

_FLOATX = np.dtype("float32")
_FLOAT_DTYPES = ("float16", "float32", "float64")


def floatx() -> str:
    """Default float dtype of weights and activations (``"float32"`` unless changed)."""
    return _FLOATX.name


def set_floatx(dtype) -> None:
    """Set the default float dtype (``"float16"``, ``"float32"`` or ``"float64"``)."""
    global _FLOATX
    _FLOATX = standardize_dtype(dtype)


def standardize_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as a NumPy float dtype; ``None`` means :func:`floatx`.

    Raises ``TypeError`` for anything that is not a float dtype.
    """
    if dtype is None:
        return _FLOATX
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"Expected a float dtype such as 'float32' or 'float64', but received dtype={dtype!r}.") from exc
    if dt.name not in _FLOAT_DTYPES:
        raise TypeError(f"Expected a float dtype, one of {list(_FLOAT_DTYPES)}, but received dtype={dtype!r}.")
    return dt


def result_dtype(x, dtype=None) -> np.dtype:
    """The float dtype a computation on ``x`` runs in.

    ``dtype`` wins when given; otherwise float64 input stays float64 (and float16 stays
    float16) and every other input (integers, booleans, float32) computes in :func:`floatx`.
    """
    if dtype is not None:
        return standardize_dtype(dtype)
    xd = getattr(x, "dtype", None)
    if xd is not None and np.dtype(xd).name in _FLOAT_DTYPES:
        return np.dtype(xd)
    return _FLOATX


def check_numeric(x, owner: str = "Input") -> np.ndarray:
    """Return ``x`` as an ndarray, raising ``TypeError`` when it is not numeric.

    ``owner`` names who asks (e.g. ``"Layer 'dense' (Dense)"``) so the message says it.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{owner} expected a numeric array (bool, int or float), "
            f"but received an array of dtype {arr.dtype} with shape {arr.shape}."
        )
    return arr


def as_float_array(x, dtype=None, owner: str = "Input") -> np.ndarray:
    """``x`` as a float ndarray of :func:`result_dtype` (no copy when already right)."""
    arr = check_numeric(x, owner)
    return arr.astype(result_dtype(arr, dtype), copy=False)


# ---------------------------------------------------------------- argument checks
def check_positive_int(value, name: str, owner: str) -> int:
    """``value`` as an int > 0, else ``ValueError``/``TypeError`` naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: expected {name} to be a positive integer. Received: {name}={value!r}")
    if value <= 0:
        raise ValueError(f"{owner}: expected {name} to be a positive integer. Received: {name}={value}")
    return int(value)


def check_non_negative_int(value, name: str, owner: str) -> int:
    """``value`` as an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: expected {name} to be a non-negative integer. Received: {name}={value!r}")
    if value < 0:
        raise ValueError(f"{owner}: expected {name} to be a non-negative integer. Received: {name}={value}")
    return int(value)


def check_rate(value, name: str, owner: str, *, allow_one: bool = False) -> float:
    """``value`` as a float in ``[0, 1)`` (``[0, 1]`` with ``allow_one``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: expected {name} to be a number in [0, 1). Received: {name}={value!r}")
    hi_ok = value <= 1 if allow_one else value < 1
    if not (0 <= value and hi_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{owner}: expected {name} to be a number in {interval}. Received: {name}={value}")
    return float(value)


def check_in(value, allowed, name: str, owner: str):
    """``value`` if it is one of ``allowed``, else ``ValueError`` listing them."""
    if value not in allowed:
        raise ValueError(f"{owner}: expected {name} to be one of {list(allowed)}. Received: {name}={value!r}")
    return value


def normalize_tuple(value, n: int, name: str, owner: str) -> tuple[int, ...]:
    """An int or a sequence of ``n`` positive ints as a tuple of ``n`` ints (Keras ``kernel_size`` style)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError as exc:
            raise TypeError(
                f"{owner}: expected {name} to be an int or a tuple of {n} ints. Received: {name}={value!r}"
            ) from exc
        if len(values) != n or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{owner}: expected {name} to be an int or a tuple of {n} ints. Received: {name}={value!r}")
        values = tuple(int(v) for v in values)
    if any(v <= 0 for v in values):
        raise ValueError(f"{owner}: expected every value of {name} to be positive. Received: {name}={value!r}")
    return values


# ---------------------------------------------------------------- randomness
_GLOBAL_RNG = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed every source of randomness of fusenet (initializers, dropout, shuffling).

    Objects created after this call with ``seed=None`` draw their own seeds from one
    global generator, so the same seed and the same program give the same run, bit for bit.
    """
    global _GLOBAL_RNG
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"set_random_seed: expected a non-negative integer seed. Received: seed={seed!r}")
    _GLOBAL_RNG = np.random.default_rng(int(seed))


def draw_seed() -> int:
    """A fresh seed drawn from the global generator (deterministic after :func:`set_random_seed`)."""
    return int(_GLOBAL_RNG.integers(0, 2**63 - 1))


def make_rng(seed=None) -> np.random.Generator:
    """A ``np.random.Generator``: from ``seed`` when given, else seeded from the global generator.

    A ``Generator`` passed as ``seed`` is returned as is.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        seed = draw_seed()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"Expected seed to be None or a non-negative integer. Received: seed={seed!r}")
    return np.random.default_rng(int(seed))
