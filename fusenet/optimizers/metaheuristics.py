"""Derivative-free global optimizers over the flat parameter vector: the shared base and the two
SciPy-backed ones, :class:`DifferentialEvolution` and :class:`DualAnnealing`. The population
methods written here (simulated annealing, particle swarm, genetic algorithm) are in
:mod:`fusenet.optimizers.population`.

They need only the loss (``requires_gradient = False``): through ``model.fit`` they see the
objective of :func:`fusenet.optimizers.flat.make_objective`, as a plain function
``minimize(fn, x0, bounds=...)``, with ``fn_batch(X) -> losses`` for a whole population
``X (pop, n)`` when the objective can evaluate one in a single call.

**The search box.** Every one of them searches a finite box ``low <= x <= high``: ``bounds`` when
given (finite, ``low < high``), else the default box ``x0 - radius <= x <= x0 + radius`` around the
start point (``radius=2.0`` by default); with neither ``bounds`` nor ``x0`` they raise
``ValueError``. A start point outside the box is clipped into it and is always one individual of the
first population. A non-finite loss at the start point raises ``ValueError``; elsewhere it counts as
``+inf``.

**Randomness.** ``seed`` (an int) makes a run reproducible bit for bit: every ``minimize`` call
starts a new ``np.random.Generator`` from it (``seed=None``: a seed drawn from
:func:`fusenet.set_random_seed`'s generator).

**Stopping rule** of the population methods: after ``max_iter`` generations, when the callback asks,
or when the population has converged, ``std(f) <= atol + tol * |mean(f)|`` over the population's
losses (SciPy's rule for differential evolution; never while a loss is infinite). ``polish=True``
then refines the best point with L-BFGS-B (finite-difference gradient) inside the box.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import scipy
import scipy.optimize as _so

from ..utils import check_positive_int, draw_seed
from . import base as _base
from ._problem import resolve_bounds
from .base import check_float
from .full_batch import FullBatchOptimizer

__all__ = ["DerivativeFreeOptimizer", "DifferentialEvolution", "DualAnnealing"]


def _rng_argument(rng) -> dict:
    """SciPy's keyword for a Generator: ``rng`` since SciPy 1.15, ``seed`` before."""
    major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
    return {"rng": rng} if (major, minor) >= (1, 15) else {"seed": rng}


def _check_seed(owner: str, seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{owner}: expected seed to be None or a non-negative integer. Received: seed={seed!r}")
    return int(seed)


def latin_hypercube(rng: np.random.Generator, low, high, popsize: int) -> np.ndarray:
    """``popsize`` points of the box, one per stratum of every axis: ``(popsize, n)``."""
    n = low.size
    strata = rng.permuted(np.tile(np.arange(popsize), (n, 1)), axis=1).T  # (popsize, n)
    u = (strata + rng.random((popsize, n))) / popsize
    return low + u * (high - low)


def population_converged(f, tol: float, atol: float) -> bool:
    """``std(f) <= atol + tol * |mean(f)|`` (False while any loss is infinite)."""
    if not np.all(np.isfinite(f)):
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        spread, centre = float(np.std(f)), float(np.mean(f))
    if not (math.isfinite(spread) and math.isfinite(centre)):
        return False
    return spread <= atol + tol * abs(centre)


class DerivativeFreeOptimizer(FullBatchOptimizer):
    """Base class of the derivative-free optimizers (see the module docstring).

    Args:
        max_iter: the maximum number of iterations (generations).
        tol, atol: the population's convergence tolerances (relative, absolute).
        bounds: ``(low, high)`` for every parameter or one finite pair per parameter.
        radius: the half-width of the default box around ``x0`` (used without ``bounds``).
        seed: ``None`` or a non-negative int.
        polish: refine the best point with L-BFGS-B at the end.
    """

    requires_gradient = False
    supports_bounds = True

    def __init__(self, max_iter=100, tol=0.01, atol=0.0, bounds=None, radius=2.0, seed=None, polish=False, name=None):
        super().__init__(max_iter, tol, bounds, name)
        owner = type(self).__name__
        self.atol = check_float(owner, "atol", atol, low=0.0)
        self.radius = check_float(owner, "radius", radius, low=0.0, low_open=True)
        self.seed = _check_seed(owner, seed)
        self.polish = bool(polish)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(draw_seed() if self.seed is None else self.seed)

    def _resolve_box(self, owner, problem, bounds):
        if bounds is None:
            if problem.x0 is None:
                raise ValueError(
                    f"{owner}: {type(self).__name__} searches a box: pass bounds=(low, high) or one (low, high) pair "
                    "per parameter, or a start point x0 (the box is then x0 +- radius). Received: bounds=None, x0=None"
                )
            return problem.x0 - self.radius, problem.x0 + self.radius
        if problem.x0 is None:
            config = bounds if isinstance(bounds, _so.Bounds) else list(bounds)
            n = _box_size(owner, config)
        else:
            n = problem.x0.size
        low, high = resolve_bounds(owner, bounds, n)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                f"{owner}: {type(self).__name__} needs finite bounds (it samples the box). Received: "
                f"low={low.tolist()}, high={high.tolist()}"
            )
        if not np.all(low < high):
            raise ValueError(f"{owner}: expected low < high for every parameter. Received: low={low.tolist()}, "
                             f"high={high.tolist()}")
        return low, high

    def _start(self, problem, box):
        """The start point clipped into the box and its loss (checked), or ``(None, None)``."""
        if problem.x0 is None:
            problem.no_start_point()
            return None, None
        x0 = np.clip(problem.x0, box[0], box[1])
        return x0, problem.check_start(x0)

    def _polish(self, problem, box, x, fun):
        """L-BFGS-B from ``x`` inside the box; returns the better of the two points."""
        if not self.polish:
            return x, fun
        res = _so.minimize(problem.f, x, method="L-BFGS-B", bounds=_so.Bounds(box[0], box[1]))
        if res.fun < fun:
            return np.asarray(res.x, dtype=np.float64), float(res.fun)
        return x, fun

    def get_config(self) -> dict:
        return {**super().get_config(), "atol": self.atol, "radius": self.radius, "seed": self.seed,
                "polish": self.polish}


def _box_size(owner: str, bounds) -> int:
    """The dimension given by bounds alone (no x0): one pair per parameter, or a Bounds with arrays."""
    if isinstance(bounds, _so.Bounds):
        size = np.broadcast(np.asarray(bounds.lb), np.asarray(bounds.ub)).size
        if size == 1:
            size = 0
    else:
        scalar_pair = len(bounds) == 2 and all(v is None or isinstance(v, numbers.Real) for v in bounds)
        size = 0 if scalar_pair else len(bounds)
    if size == 0:
        raise ValueError(
            f"{owner}: without x0 the bounds must give one (low, high) pair per parameter (the dimension is "
            f"unknown otherwise). Received: bounds={bounds!r}"
        )
    return size


def check_popsize(owner: str, popsize, minimum: int) -> int:
    if isinstance(popsize, bool) or not isinstance(popsize, numbers.Integral):
        raise TypeError(f"{owner}: expected popsize to be an integer >= {minimum}. Received: popsize={popsize!r}")
    if popsize < minimum:
        raise ValueError(f"{owner}: expected popsize to be an integer >= {minimum}. Received: popsize={popsize}")
    return int(popsize)


# ---------------------------------------------------------------- SciPy: differential evolution
class DifferentialEvolution(DerivativeFreeOptimizer):
    """Differential evolution (Storn and Price) by :func:`scipy.optimize.differential_evolution`.

    Args:
        popsize: the number of individuals (all of the population, unlike SciPy's multiplier);
            ``None``: ``15 * n`` (SciPy's default population). At least 5.
        strategy: SciPy's strategy (``"best1bin"``, ``"rand1bin"``, ``"currenttobest1bin"``, ...).
        mutation: the differential weight ``F`` in ``[0, 2]``, or ``(low, high)`` for dithering.
        recombination: the crossover probability ``CR`` in ``[0, 1]``.
        max_iter, tol, atol, bounds, radius, seed, polish: see :class:`DerivativeFreeOptimizer`.

    The first population is a Latin hypercube of the box with ``x0`` as its first individual. With
    ``fn_batch`` the population is evaluated in one call per generation (SciPy ``vectorized=True``,
    which implies ``updating="deferred"``); otherwise individuals are evaluated one by one and the
    population is updated immediately (SciPy's default), so the two runs differ.
    """

    _STRATEGIES = ("best1bin", "best1exp", "rand1bin", "rand1exp", "rand2bin", "rand2exp", "randtobest1bin",
                   "randtobest1exp", "currenttobest1bin", "currenttobest1exp", "best2exp", "best2bin")

    def __init__(self, max_iter=1000, popsize=None, strategy="best1bin", mutation=(0.5, 1.0), recombination=0.7,
                 tol=0.01, atol=0.0, bounds=None, radius=2.0, seed=None, polish=False, name=None):
        super().__init__(max_iter, tol, atol, bounds, radius, seed, polish, name)
        owner = "DifferentialEvolution"
        self.popsize = None if popsize is None else check_popsize(owner, popsize, 5)
        if strategy not in self._STRATEGIES:
            raise ValueError(f"{owner}: expected strategy to be one of {list(self._STRATEGIES)}. Received: "
                             f"strategy={strategy!r}")
        self.strategy = strategy
        if isinstance(mutation, (tuple, list)):
            if len(mutation) != 2:
                raise ValueError(f"{owner}: expected mutation to be a number or (low, high). Received: mutation={mutation!r}")
            lo = check_float(owner, "mutation", mutation[0], low=0.0, high=2.0)
            hi = check_float(owner, "mutation", mutation[1], low=0.0, high=2.0)
            if lo > hi:
                raise ValueError(f"{owner}: expected mutation low <= high. Received: mutation={mutation!r}")
            self.mutation = [lo, hi]
        else:
            self.mutation = check_float(owner, "mutation", mutation, low=0.0, high=2.0)
        self.recombination = check_float(owner, "recombination", recombination, low=0.0, high=1.0)

    def _run(self, problem, box, notify):
        rng = self._rng()
        low, high = box
        popsize = self.popsize if self.popsize is not None else 15 * low.size
        x0, _ = self._start(problem, box)
        init = latin_hypercube(rng, low, high, popsize)
        if x0 is not None:
            init[0] = x0

        def scipy_callback(intermediate_result):
            if notify(intermediate_result.x, intermediate_result.fun):
                raise StopIteration

        vectorized = problem.has_batch
        func = (lambda xt: problem.f_batch(np.ascontiguousarray(xt.T))) if vectorized else problem.f
        mutation = tuple(self.mutation) if isinstance(self.mutation, list) else self.mutation
        result = _so.differential_evolution(
            func, _so.Bounds(low, high), strategy=self.strategy, maxiter=self.max_iter, tol=self.tol,
            mutation=mutation, recombination=self.recombination, callback=scipy_callback, polish=False,
            init=init, atol=self.atol, updating="deferred" if vectorized else "immediate", vectorized=vectorized,
            **_rng_argument(rng))
        result.x, result.fun = self._polish(problem, box, np.asarray(result.x, dtype=np.float64), float(result.fun))
        return result

    def get_config(self):
        return {**super().get_config(), "popsize": self.popsize, "strategy": self.strategy,
                "mutation": self.mutation, "recombination": self.recombination}


# ---------------------------------------------------------------- SciPy: dual annealing
class DualAnnealing(DerivativeFreeOptimizer):
    """Generalised simulated annealing with local searches, by :func:`scipy.optimize.dual_annealing`.

    Args:
        max_iter: the maximum number of global iterations (SciPy ``maxiter``).
        max_fun: the maximum number of objective evaluations (SciPy ``maxfun``).
        initial_temp, restart_temp_ratio, visit, accept: SciPy's annealing parameters.
        local_search: run a local search (L-BFGS-B, finite-difference gradient) after each
            annealing chain (SciPy ``no_local_search=not local_search``). With many parameters this
            costs ``n + 1`` evaluations per gradient: turn it off for networks.
        bounds, radius, seed, polish: see :class:`DerivativeFreeOptimizer`.

    Stopping rule: SciPy's (``max_iter`` iterations or ``max_fun`` evaluations) or the callback.
    The callback is called (and ``fit`` counts an epoch) every time a new best point is found, as
    SciPy's ``dual_annealing`` reports progress only then; ``info.iteration`` counts those reports.
    """

    def __init__(self, max_iter=1000, max_fun=10_000_000, initial_temp=5230.0, restart_temp_ratio=2e-5, visit=2.62,
                 accept=-5.0, local_search=True, bounds=None, radius=2.0, seed=None, polish=False, name=None):
        super().__init__(max_iter, None, 0.0, bounds, radius, seed, polish, name)
        owner = "DualAnnealing"
        self.max_fun = check_positive_int(max_fun, "max_fun", owner)
        self.initial_temp = check_float(owner, "initial_temp", initial_temp, low=0.01, high=5.0e4)
        self.restart_temp_ratio = check_float(owner, "restart_temp_ratio", restart_temp_ratio, low=0.0, high=1.0,
                                              low_open=True, high_open=True)
        self.visit = check_float(owner, "visit", visit, low=1.0, high=3.0, low_open=True)
        self.accept = check_float(owner, "accept", accept, low=-1.0e4, high=-5.0)
        self.local_search = bool(local_search)

    def _run(self, problem, box, notify):
        rng = self._rng()
        x0, _ = self._start(problem, box)

        def scipy_callback(x, f, context):
            return notify(x, f)

        result = _so.dual_annealing(
            problem.f, _so.Bounds(box[0], box[1]), maxiter=self.max_iter, initial_temp=self.initial_temp,
            restart_temp_ratio=self.restart_temp_ratio, visit=self.visit, accept=self.accept, maxfun=self.max_fun,
            no_local_search=not self.local_search, callback=scipy_callback, x0=x0, **_rng_argument(rng))
        result.x, result.fun = self._polish(problem, box, np.asarray(result.x, dtype=np.float64), float(result.fun))
        return result

    def get_config(self):
        config = super().get_config()
        for key in ("tol", "atol"):
            del config[key]
        config.update(max_fun=self.max_fun, initial_temp=self.initial_temp,
                      restart_temp_ratio=self.restart_temp_ratio, visit=self.visit, accept=self.accept,
                      local_search=self.local_search)
        return config


_base._REGISTRY.pop("DerivativeFreeOptimizer", None)
