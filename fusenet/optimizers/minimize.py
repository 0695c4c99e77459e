"""``minimize(fn, x0, method=...)``: one entry point to every full-batch and derivative-free optimizer,
returning a :class:`scipy.optimize.OptimizeResult` (``x``, ``fun``, ``nit``, ``nfev``, ``njev``,
``message``, ``success``, ``status``).

Methods (case-insensitive; ``-`` and ``_`` are the same), with the class that runs them:

- ``"lbfgs"``, ``"l-bfgs-b"``: :class:`~fusenet.optimizers.LBFGS`
- ``"bfgs"``: :class:`~fusenet.optimizers.BFGS`
- ``"cg"``, ``"conjugate_gradient"``: :class:`~fusenet.optimizers.ConjugateGradient`
- ``"newton_cg"``: :class:`~fusenet.optimizers.NewtonCG`
- ``"trust_region"``, ``"trust-krylov"``, ``"trust-ncg"``: :class:`~fusenet.optimizers.TrustRegion`
- ``"differential_evolution"``, ``"de"``: :class:`~fusenet.optimizers.DifferentialEvolution`
- ``"dual_annealing"``: :class:`~fusenet.optimizers.DualAnnealing`
- ``"simulated_annealing"``, ``"sa"``: :class:`~fusenet.optimizers.SimulatedAnnealing`
- ``"particle_swarm"``, ``"pso"``: :class:`~fusenet.optimizers.ParticleSwarm`
- ``"genetic_algorithm"``, ``"ga"``: :class:`~fusenet.optimizers.GeneticAlgorithm`

Further SciPy methods that need no Hessian are passed through to :func:`scipy.optimize.minimize`:
``"nelder-mead"``, ``"powell"``, ``"tnc"``, ``"slsqp"``, ``"cobyla"``, ``"cobyqa"``,
``"trust-constr"`` (options ``max_iter`` -> ``maxiter`` (``maxfun`` for TNC, which has no iteration
limit), ``tol`` -> ``tol``, every other option into SciPy's ``options``). The class names
(``"LBFGS"``, ``"ParticleSwarm"``, ...) work too.

:func:`fusenet.optimizers.get` knows the class names (any case) and ``"cg"``, ``"newton_cg"``,
``"trust_region"``, ``"differential_evolution"``, ``"dual_annealing"``, ``"simulated_annealing"``,
``"particle_swarm"``, ``"genetic_algorithm"``.
"""

from __future__ import annotations

import inspect

import numpy as np
import scipy.optimize as _so

from . import base as _base
from ._problem import Notifier, Problem, resolve_bounds
from .full_batch import BFGS, LBFGS, ConjugateGradient, NewtonCG, TrustRegion
from .metaheuristics import DerivativeFreeOptimizer, DifferentialEvolution, DualAnnealing
from .population import GeneticAlgorithm, ParticleSwarm, SimulatedAnnealing

__all__ = ["minimize", "METHODS", "SCIPY_METHODS"]

#: method name -> (class, fixed constructor arguments)
METHODS = {
    "lbfgs": (LBFGS, {}),
    "l_bfgs_b": (LBFGS, {}),
    "bfgs": (BFGS, {}),
    "cg": (ConjugateGradient, {}),
    "conjugate_gradient": (ConjugateGradient, {}),
    "newton_cg": (NewtonCG, {}),
    "trust_region": (TrustRegion, {}),
    "trust_krylov": (TrustRegion, {"method": "trust-krylov"}),
    "trust_ncg": (TrustRegion, {"method": "trust-ncg"}),
    "differential_evolution": (DifferentialEvolution, {}),
    "de": (DifferentialEvolution, {}),
    "dual_annealing": (DualAnnealing, {}),
    "simulated_annealing": (SimulatedAnnealing, {}),
    "sa": (SimulatedAnnealing, {}),
    "particle_swarm": (ParticleSwarm, {}),
    "pso": (ParticleSwarm, {}),
    "genetic_algorithm": (GeneticAlgorithm, {}),
    "ga": (GeneticAlgorithm, {}),
}
for _cls in (LBFGS, BFGS, ConjugateGradient, NewtonCG, TrustRegion, DifferentialEvolution, DualAnnealing,
             SimulatedAnnealing, ParticleSwarm, GeneticAlgorithm):
    METHODS.setdefault(_cls.__name__.lower(), (_cls, {}))

#: SciPy methods passed through (normalised name -> SciPy's name)
SCIPY_METHODS = {"nelder_mead": "Nelder-Mead", "powell": "Powell", "tnc": "TNC", "slsqp": "SLSQP",
                 "cobyla": "COBYLA", "cobyqa": "COBYQA", "trust_constr": "trust-constr"}

# registry aliases for optimizers.get("cg"), get("newton_cg"), ...: the snake-case names
for _name in ("cg", "newton_cg", "trust_region", "differential_evolution", "dual_annealing", "simulated_annealing",
              "particle_swarm", "genetic_algorithm"):
    _base._REGISTRY.setdefault(_name, METHODS[_name][0])


def _normalise(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"minimize: expected method to be a string. Received: method={method!r}")
    return method.strip().lower().replace("-", "_")


def valid_methods() -> list:
    """Every name :func:`minimize` accepts (normalised: lower case, ``_`` for ``-``)."""
    return sorted(set(METHODS) | set(SCIPY_METHODS))


def minimize(fn, x0=None, method="lbfgs", bounds=None, seed=None, jac=None, callback=None, fn_batch=None,
             **options):
    """Minimise ``fn`` from ``x0`` with ``method``; returns a :class:`scipy.optimize.OptimizeResult`.

    Args:
        fn: ``fn(x) -> float`` of a 1-D float64 vector (``(f, g)`` with ``jac=True``), or a
            :class:`~fusenet.optimizers.flat.FlatObjective`.
        x0: the start point ``(n,)``; derivative-free methods accept ``None`` with per-parameter bounds.
        method: a name from the module table.
        bounds: ``(low, high)`` for every coordinate or one ``(low, high)`` pair per coordinate
            (L-BFGS-B and the derivative-free methods; the latter use ``x0 +- radius`` without bounds).
        seed: the seed of the stochastic methods (ignored by the deterministic ones).
        jac: ``None``, ``True``, a callable or ``"2-point"``/``"3-point"`` (gradient methods; Newton-CG
            and the trust regions need a real gradient).
        callback: ``callback(info) -> stop?`` per iteration (:class:`~fusenet.optimizers.flat.IterationInfo`).
        fn_batch: ``fn_batch(X (pop, n)) -> (pop,)`` losses, for the population methods.
        **options: constructor arguments of the method's class (``max_iter``, ``tol``, ``popsize``, ...).

    Raises:
        ValueError: an unknown method (the message lists the valid ones), bad options or bounds, a
            non-finite loss at the start point.
    """
    key = _normalise(method)
    if key in SCIPY_METHODS:
        return _scipy_passthrough(fn, x0, SCIPY_METHODS[key], bounds, jac, callback, options)
    if key not in METHODS:
        raise ValueError(f"minimize: unknown method {method!r}. Valid methods: {valid_methods()}")
    cls, fixed = METHODS[key]
    if seed is not None and issubclass(cls, DerivativeFreeOptimizer):
        options["seed"] = seed
    try:
        optimizer = cls(**fixed, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        valid = [a for a in inspect.signature(cls).parameters if a != "name" and a not in fixed]
        raise TypeError(f"minimize: method {method!r} ({cls.__name__}) takes the options {valid}. Received: "
                        f"{sorted(options)}") from exc
    return optimizer.minimize(fn, x0, jac=jac, bounds=bounds, callback=callback, fn_batch=fn_batch)


def _scipy_passthrough(fn, x0, method, bounds, jac, callback, options):
    owner = f"minimize(method={method!r})"
    problem = Problem(owner, fn, x0, jac)
    if problem.x0 is None:
        raise ValueError(f"{owner}: x0 is required (the start point). Received: x0=None")
    options = dict(options)
    tol = options.pop("tol", None)
    if "max_iter" in options:
        options["maxfun" if method == "TNC" else "maxiter"] = options.pop("max_iter")
    box = resolve_bounds(owner, bounds, problem.x0.size)
    notify = Notifier(problem, callback, owner)

    def scipy_callback(intermediate_result):
        if isinstance(intermediate_result, np.ndarray):  # methods with the old callback(xk) (TNC)
            x = intermediate_result
            fun = problem.last_f if np.array_equal(x, problem.last_x) else problem.f(x)
        else:
            x, fun = intermediate_result.x, intermediate_result.fun
        if notify(x, fun):
            raise StopIteration

    fun, grad = (problem.fg, True) if problem.has_gradient else (problem.f, problem.fd_jac)
    if method in ("Nelder-Mead", "Powell", "COBYLA", "COBYQA"):
        fun, grad = problem.f, None
    result = _so.minimize(fun, problem.x0, method=method, jac=grad, tol=tol, callback=scipy_callback,
                          bounds=None if box is None else _so.Bounds(box[0], box[1]), options=options)
    if notify.stopped:
        result.message, result.success, result.status = "Stopped by the callback.", False, 99
    result.x = np.asarray(result.x, dtype=np.float64)
    result.nfev, result.njev = problem.nfev, problem.njev
    result.nit = int(result.get("nit", notify.iteration))
    problem.write(result.x)
    return result
