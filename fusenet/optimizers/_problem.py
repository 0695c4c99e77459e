"""Shared plumbing of the full-batch and derivative-free optimizers: the counted objective
(:class:`Problem`), finite-difference Hessian-vector products, bounds, the iteration callback.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.optimize import Bounds

from .flat import FlatObjective, IterationInfo

__all__ = ["Problem", "bounds_to_config", "resolve_bounds", "Notifier"]

_FD_JACS = ("2-point", "3-point", "cs")


def _loss(value, owner: str) -> float:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{owner}: expected the objective to return a number. Received: {value!r}")
    return float(value)


class Problem:
    """The objective of one ``minimize`` run, with evaluation counts.

    ``fn`` is a :class:`~fusenet.optimizers.flat.FlatObjective` or a callable of a 1-D float64
    vector. ``jac`` as in :func:`scipy.optimize.minimize`: ``None`` (no gradient), ``True`` (``fn``
    returns ``(f, g)``), a callable ``jac(x) -> g``, or ``"2-point"``/``"3-point"``/``"cs"``
    (finite differences by SciPy). ``fn_batch(X) -> (pop,)`` evaluates a population ``X (pop, n)``.

    ``nan_as_inf``: derivative-free optimizers compare losses, so a non-finite loss (anywhere but
    at the start point, which must be finite) counts as ``+inf``.
    """

    def __init__(self, owner: str, fn, x0=None, jac=None, fn_batch=None, *, nan_as_inf: bool = False):
        self.owner = owner
        self.nfev = 0
        self.njev = 0
        self.nan_as_inf = nan_as_inf
        self._write = None
        self._fd_jac = None
        self._batch = None
        self._cache_x = None
        self._cache_g = None
        self._checked = False
        self.last_x = None  # the last point evaluated and its loss
        self.last_f = None
        if isinstance(fn, FlatObjective):
            self._value = fn.value
            self._value_and_grad = fn.value_and_grad if fn.has_gradient else None
            self.eps = fn.eps
            self._write = fn.set
            start = fn.x0() if x0 is None else x0
        else:
            if not callable(fn):
                raise TypeError(f"{owner}: expected fn to be callable. Received: fn={fn!r}")
            self.eps = float(np.finfo(np.float64).eps)
            start = x0
            if jac is None or (isinstance(jac, str) and jac in _FD_JACS):
                self._value, self._value_and_grad = fn, None
                self._fd_jac = jac
            elif jac is True:
                self._value = lambda x: fn(x)[0]
                self._value_and_grad = fn
            elif callable(jac):
                self._value = fn
                self._value_and_grad = lambda x: (fn(x), jac(x))
            else:
                raise TypeError(
                    f"{owner}: expected jac to be None, True, a callable or one of {list(_FD_JACS)}. Received: jac={jac!r}"
                )
        if fn_batch is not None and not callable(fn_batch):
            raise TypeError(f"{owner}: expected fn_batch to be callable. Received: fn_batch={fn_batch!r}")
        self._batch = fn_batch
        self.x0 = None
        if start is not None:
            x = np.asarray(start)
            if x.dtype.kind not in "biuf":
                raise TypeError(f"{owner}: expected x0 to be a numeric vector. Received dtype {x.dtype}")
            if x.ndim != 1 or x.size == 0:
                raise ValueError(f"{owner}: expected x0 to be a non-empty 1-D vector. Received shape {x.shape}")
            x = np.array(x, dtype=np.float64)
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{owner}: expected a finite x0. Received: {x}")
            self.x0 = x
            if isinstance(fn, FlatObjective) and x.size != fn.size:
                raise ValueError(f"{owner}: x0 has {x.size} entries, but the model has {fn.size} parameters.")

    # ------------------------------------------------------------ evaluations
    @property
    def has_gradient(self) -> bool:
        return self._value_and_grad is not None

    @property
    def has_batch(self) -> bool:
        """Whether a whole population can be evaluated in one call (``fn_batch`` was given)."""
        return self._batch is not None

    @property
    def fd_jac(self):
        """``None`` or SciPy's finite-difference scheme for the gradient."""
        return self._fd_jac

    def _checked_value(self, f: float) -> float:
        if not self._checked:
            self._checked = True
            if not math.isfinite(f):
                raise ValueError(
                    f"{self.owner}: the loss at the start point is not finite (loss={f}). Check the data, the "
                    "initial weights and the loss function."
                )
        if self.nan_as_inf and not math.isfinite(f):
            return math.inf
        return f

    def f(self, x) -> float:
        """The objective at ``x`` (counted)."""
        self.nfev += 1
        f = self._checked_value(_loss(self._value(x), self.owner))
        self.last_x, self.last_f = np.array(x, dtype=np.float64, copy=True), f
        return f

    def fg(self, x):
        """``(f, g)`` at ``x`` (counted); ``g`` a float64 vector of ``n``. Remembers the last one."""
        self.nfev += 1
        self.njev += 1
        f, g = self._value_and_grad(x)
        f = self._checked_value(_loss(f, self.owner))
        g = np.asarray(g, dtype=np.float64)
        if g.shape != x.shape:
            raise ValueError(f"{self.owner}: expected the gradient to have shape {x.shape}. Received shape {g.shape}")
        self._cache_x, self._cache_g = np.array(x, copy=True), g
        self.last_x, self.last_f = self._cache_x, f
        return f, g

    def f_batch(self, X) -> np.ndarray:
        """The objective at every row of ``X (pop, n)``: ``fn_batch(X)`` in one call when given."""
        if self._batch is not None:
            values = np.asarray(self._batch(X), dtype=np.float64)
            if values.shape != (X.shape[0],):
                raise ValueError(
                    f"{self.owner}: expected fn_batch to return {X.shape[0]} losses, shape ({X.shape[0]},). "
                    f"Received shape {values.shape}"
                )
            self.nfev += X.shape[0]
            if self.nan_as_inf:
                values = np.where(np.isfinite(values), values, np.inf)
            return values
        return np.array([self.f(x) for x in X], dtype=np.float64)

    def check_start(self, x) -> float:
        """Evaluate the start point ``x`` (a ``ValueError`` when the loss there is not finite)."""
        self._checked = False
        return self.f(x)

    def no_start_point(self) -> None:
        """There is no start point to check (a population drawn from the bounds)."""
        self._checked = True

    def hessp(self, x, p, central: bool = False) -> np.ndarray:
        """``H(x) p`` by finite differences of gradients.

        Forward: ``(g(x + h p) - g(x)) / h`` with ``h = sqrt(eps) (1 + |x|) / |p|`` (``g(x)`` is
        reused when it was the last gradient computed); central:
        ``(g(x + h p) - g(x - h p)) / (2 h)`` with ``h = eps^(1/3) (1 + |x|) / |p|``. ``eps`` is the
        machine epsilon of the parameters' dtype.
        """
        pn = float(np.linalg.norm(p))
        if pn == 0.0:
            return np.zeros_like(p, dtype=np.float64)
        scale = 1.0 + float(np.linalg.norm(x))
        if central:
            h = self.eps ** (1.0 / 3.0) * scale / pn
            g_plus = self._grad_only(x + h * p)
            g_minus = self._grad_only(x - h * p)
            return (g_plus - g_minus) / (2.0 * h)
        if self._cache_x is not None and np.array_equal(self._cache_x, x):
            g0 = self._cache_g
        else:
            g0 = self.fg(x)[1]
        h = math.sqrt(self.eps) * scale / pn
        return (self._grad_only(x + h * p) - g0) / h

    def _grad_only(self, x):
        # a probe for a Hessian-vector product: keeps the cache on the iterate
        cache = self._cache_x, self._cache_g
        g = self.fg(x)[1]
        self._cache_x, self._cache_g = cache
        return g

    def write(self, x) -> None:
        """Write ``x`` into the layers (for a model objective; nothing otherwise)."""
        if self._write is not None:
            self._write(x)


# ---------------------------------------------------------------- the iteration callback
class Notifier:
    """Counts iterations and calls the user's ``callback(IterationInfo) -> stop?``."""

    def __init__(self, problem: Problem, callback, owner: str):
        if callback is not None and not callable(callback):
            raise TypeError(f"{owner}: expected callback to be callable. Received: callback={callback!r}")
        self.problem = problem
        self.callback = callback
        self.iteration = 0
        self.stopped = False

    def __call__(self, x, fun) -> bool:
        """After an iteration at ``x`` (value ``fun``): True when the callback asks to stop."""
        self.iteration += 1
        if self.callback is None:
            return False
        x = np.array(x, dtype=np.float64, copy=True)
        self.problem.write(x)
        info = IterationInfo(self.iteration, x, float(fun), self.problem.nfev, self.problem.njev)
        try:
            stop = bool(self.callback(info))
        except StopIteration:
            stop = True
        self.stopped = self.stopped or stop
        return stop


# ---------------------------------------------------------------- bounds
def _bound_value(v, owner: str, default: float) -> float:
    if v is None:
        return default
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{owner}: expected every bound to be a number or None. Received: {v!r}")
    v = float(v)
    if math.isnan(v):
        raise ValueError(f"{owner}: a bound is nan.")
    return v


def _is_scalar_bound(v) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def bounds_to_config(owner: str, bounds):
    """Validate the form of constructor bounds and return them JSON-safe.

    ``None``; ``(low, high)`` scalars for every parameter -> ``[low, high]``; a sequence of
    ``(low, high)`` pairs, one per parameter -> ``[[low, high], ...]``; a
    :class:`scipy.optimize.Bounds` -> one of the two. ``None`` or an infinite value means unbounded
    (stored as ``None``).
    """
    if bounds is None:
        return None
    if isinstance(bounds, Bounds):
        lb, ub = np.asarray(bounds.lb, dtype=np.float64), np.asarray(bounds.ub, dtype=np.float64)
        if lb.size == 1 and ub.size == 1:
            bounds = (float(lb.reshape(())), float(ub.reshape(())))
        else:
            lb, ub = np.broadcast_arrays(lb, ub)
            bounds = list(zip(lb.tolist(), ub.tolist()))

    def clean(v, default):
        v = _bound_value(v, owner, default)
        return None if math.isinf(v) else v

    try:
        items = list(bounds)
    except TypeError as exc:
        raise TypeError(
            f"{owner}: expected bounds to be (low, high), a list of (low, high) pairs or scipy.optimize.Bounds. "
            f"Received: bounds={bounds!r}"
        ) from exc
    if len(items) == 2 and all(_is_scalar_bound(v) for v in items):
        lo, hi = clean(items[0], -math.inf), clean(items[1], math.inf)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{owner}: expected low <= high in bounds. Received: bounds={bounds!r}")
        return [lo, hi]
    out = []
    for i, pair in enumerate(items):
        try:
            pair = list(pair)
        except TypeError:
            pair = None
        if pair is None or len(pair) != 2:
            raise ValueError(
                f"{owner}: expected bounds to be (low, high) or a list of (low, high) pairs. Received item {i}: "
                f"{items[i]!r}"
            )
        lo, hi = clean(pair[0], -math.inf), clean(pair[1], math.inf)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{owner}: expected low <= high in bounds. Received pair {i}: {items[i]!r}")
        out.append([lo, hi])
    return out


def resolve_bounds(owner: str, bounds, n: int):
    """``(low, high)`` float64 arrays of shape ``(n,)`` (``-inf``/``inf`` where unbounded), or ``None``."""
    config = bounds_to_config(owner, bounds)
    if config is None:
        return None
    if len(config) == 2 and all(not isinstance(v, list) for v in config):
        lo = np.full(n, -math.inf if config[0] is None else config[0])
        hi = np.full(n, math.inf if config[1] is None else config[1])
        return lo, hi
    if len(config) != n:
        raise ValueError(
            f"{owner}: expected one (low, high) pair per parameter, {n} pairs. Received {len(config)} pairs."
        )
    lo = np.array([-math.inf if a is None else a for a, _ in config], dtype=np.float64)
    hi = np.array([math.inf if b is None else b for _, b in config], dtype=np.float64)
    return lo, hi
