"""Full-batch quasi-Newton, conjugate-gradient and Newton optimizers over the flat parameter vector,
all through :func:`scipy.optimize.minimize` (SciPy does the line searches and the L-BFGS recursion).

They do not take mini-batch steps: ``apply``/``apply_gradients`` refuse, and a training loop drives
them through the protocol of :mod:`fusenet.optimizers.flat`
(``optimizer.minimize(make_objective(layers, forward_backward), callback=...)``). They also minimise
any function: ``LBFGS().minimize(fn, x0, jac=True)``.

Each runs one SciPy method and stops at the first of: ``max_iter`` iterations, the callback asking,
a failed line search / non-finite step, or its convergence test:

- :class:`LBFGS` (``L-BFGS-B``, bounds): ``max|projected g| <= gtol``, or
  ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol``, or ``max_fun`` evaluations;
- :class:`BFGS` (``BFGS``) and :class:`ConjugateGradient` (``CG``, Polak-Ribiere+): ``max|g| <= gtol``;
- :class:`NewtonCG` (``Newton-CG``): ``sum|step| <= n * xtol``;
- :class:`TrustRegion` (``trust-krylov`` or ``trust-ncg``): ``||g||_2 < gtol``.

``tol`` sets those tolerances as SciPy's ``minimize(tol=...)`` does (``gtol`` and ``ftol`` for
L-BFGS-B, ``gtol`` for BFGS/CG/trust regions, ``xtol`` for Newton-CG); ``tol=None`` keeps SciPy's
defaults (L-BFGS-B ``gtol=1e-5, ftol=2.2e-9``; BFGS/CG ``gtol=1e-5``; Newton-CG ``xtol=1e-5``;
trust regions ``gtol=1e-4``). ``NewtonCG`` and ``TrustRegion`` need Hessian-vector products: they
are finite differences of gradients (:meth:`fusenet.optimizers._problem.Problem.hessp`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize as _so

from ..utils import check_in, check_positive_int
from . import base as _base
from ._problem import Notifier, Problem, bounds_to_config, resolve_bounds
from .base import Optimizer, check_float

__all__ = ["FullBatchOptimizer", "LBFGS", "BFGS", "ConjugateGradient", "NewtonCG", "TrustRegion"]

_STOPPED = "Stopped by the callback."


class _NonFiniteStep(Exception):
    """SciPy proposed a point (or a Hessian-vector direction) with a non-finite entry."""


class FullBatchOptimizer(Optimizer):
    """Base class of the optimizers that minimise a function of the flat parameter vector.

    Class attributes the training loop tests: ``full_batch = True``, ``supports_minibatch = False``,
    ``requires_gradient`` (True for gradient methods; derivative-free ones need only the loss).

    Args:
        max_iter: the maximum number of iterations (generations); one iteration is one epoch of ``fit``.
        tol: the convergence tolerance (see the subclass); ``None`` for the default.
        bounds: ``None``, ``(low, high)`` for every parameter, or one ``(low, high)`` pair per
            parameter (``None`` = unbounded); only where the method supports bounds.
        name: a string (defaults to the lower-case class name).

    Attributes:
        result_: the :class:`scipy.optimize.OptimizeResult` of the last :meth:`minimize` (``x``,
            ``fun``, ``nit`` iterations, ``nfev`` objective evaluations, ``njev`` gradient
            evaluations, ``message``, ``success``, ``status``), ``None`` before.
        iterations: the iterations run so far, over every call.
    """

    full_batch = True
    supports_minibatch = False
    requires_gradient = True
    supports_bounds = False

    def __init__(self, max_iter=100, tol=None, bounds=None, name=None):
        super().__init__(learning_rate=0.0, name=name)
        owner = type(self).__name__
        self.max_iter = check_positive_int(max_iter, "max_iter", owner)
        self.tol = check_float(owner, "tol", tol, low=0.0, allow_none=True)
        self.bounds = bounds_to_config(owner, bounds)
        if self.bounds is not None and not self.supports_bounds:
            raise ValueError(self._no_bounds_message(bounds))
        self.result_ = None

    def _no_bounds_message(self, bounds) -> str:
        return (f"{type(self).__name__} does not support bounds; use LBFGS (L-BFGS-B) or a derivative-free "
                f"optimizer for a bounded problem. Received: bounds={bounds!r}")

    # ------------------------------------------------------------ mini-batch use is refused
    def _refuse(self, what: str):
        return ValueError(
            f"{type(self).__name__}.{what}: {type(self).__name__} is a full-batch optimizer; it minimises the loss "
            "over the whole data set through minimize(objective) and cannot apply mini-batch gradient steps. "
            "Train with model.fit(x, y) and batch_size=None, or use a gradient optimizer such as 'adam'."
        )

    def apply(self, layers) -> None:
        """Refused: see :meth:`minimize`."""
        raise self._refuse("apply")

    def apply_gradients(self, pairs) -> None:
        """Refused: see :meth:`minimize`."""
        raise self._refuse("apply_gradients")

    # ------------------------------------------------------------ the run
    def minimize(self, fn, x0=None, *, jac=None, bounds=None, callback=None, fn_batch=None):
        """Minimise ``fn`` from ``x0``; returns (and keeps in :attr:`result_`) an ``OptimizeResult``.

        Args:
            fn: a :class:`~fusenet.optimizers.flat.FlatObjective` (``x0`` defaults to the layers'
                weights, the final point is written back into them), or a callable ``fn(x) -> float``
                of a 1-D float64 vector.
            x0: the start point ``(n,)`` (required for a plain callable).
            jac: for a plain callable, as SciPy: ``None``, ``True`` (``fn`` returns ``(f, g)``), a
                callable ``jac(x) -> g``, or ``"2-point"``/``"3-point"``.
            bounds: overrides the constructor's ``bounds``.
            callback: ``callback(info) -> stop?`` after every iteration, with an
                :class:`~fusenet.optimizers.flat.IterationInfo`; a truthy value (or ``StopIteration``)
                stops the run.
            fn_batch: ``fn_batch(X (pop, n)) -> (pop,)``, used by population methods.

        ``nfev`` counts every call of the objective (finite-difference probes included).
        """
        owner = f"{type(self).__name__}.minimize"
        problem = Problem(owner, fn, x0, jac, fn_batch, nan_as_inf=not self.requires_gradient)
        box = self._resolve_box(owner, problem, self.bounds if bounds is None else bounds)
        notify = Notifier(problem, callback, owner)
        result = self._run(problem, box, notify)
        if notify.stopped:
            result.message, result.success, result.status = _STOPPED, False, 99
        result.x = np.asarray(result.x, dtype=np.float64)
        result.fun = float(result.fun)
        result.nit = int(result.nit)
        result.nfev = problem.nfev
        result.njev = problem.njev
        message = result.message
        result.message = "; ".join(map(str, message)) if isinstance(message, (list, tuple)) else str(message)
        result.success = bool(result.success)
        problem.write(result.x)
        self.iterations += result.nit
        self.result_ = result
        return result

    def _resolve_box(self, owner, problem, bounds):
        if problem.x0 is None:
            raise ValueError(f"{owner}: x0 is required (the start point). Received: x0=None")
        box = resolve_bounds(owner, bounds, problem.x0.size)
        if box is not None and not self.supports_bounds:
            raise ValueError(self._no_bounds_message(bounds))
        return box

    def _run(self, problem: Problem, box, notify: Notifier):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not implement _run().")

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        config = {"name": self.name, "max_iter": self.max_iter, "tol": self.tol}
        if self.supports_bounds:
            config["bounds"] = self.bounds
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**dict(config))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} iterations={self.iterations}>"


class _ScipyGradientOptimizer(FullBatchOptimizer):
    """A gradient method of :func:`scipy.optimize.minimize`."""

    _method = ""
    _uses_hessp = False

    def _options(self) -> dict:
        return {"maxiter": self.max_iter}

    def _tol_options(self) -> dict:  # pragma: no cover - every subclass overrides
        return {}

    def _scipy_method(self) -> str:
        return self._method

    def _run(self, problem, box, notify):
        kwargs = {}
        if problem.has_gradient:
            fun, jac = problem.fg, True
        elif self._uses_hessp:
            raise ValueError(
                f"{type(self).__name__} needs the gradient (its Hessian-vector products are differences of "
                "gradients): pass jac=True or a callable jac, or a model objective with forward_backward."
            )
        else:
            fun, jac = problem.f, problem.fd_jac
        if self._uses_hessp:
            central = self.finite_difference == "central"

            def hessp(x, p):
                if not np.all(np.isfinite(p)):
                    raise _NonFiniteStep
                return problem.hessp(x, p, central=central)

            kwargs["hessp"] = hessp
        x0 = problem.x0
        if box is not None:
            x0 = np.clip(x0, box[0], box[1])
            kwargs["bounds"] = _so.Bounds(box[0], box[1])
        last = {}

        def guarded(x):
            if not np.all(np.isfinite(x)):
                raise _NonFiniteStep
            return fun(x)

        def scipy_callback(intermediate_result):
            last["x"], last["fun"] = np.array(intermediate_result.x, copy=True), intermediate_result.fun
            if notify(intermediate_result.x, intermediate_result.fun):
                raise StopIteration

        options = {**self._options()}
        if self.tol is not None:
            options.update(self._tol_options())
        try:
            with warnings.catch_warnings():
                # trlib (trust-krylov) warns on the degenerate subproblems of a gradient at rounding level;
                # the non-finite step that follows ends the run below
                warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"scipy\.optimize\._trustregion")
                return _so.minimize(guarded, x0, method=self._scipy_method(), jac=jac, callback=scipy_callback,
                                    options=options, **kwargs)
        except _NonFiniteStep:
            x = last.get("x", x0)
            f = last["fun"] if "fun" in last else problem.f(x0)
            return _so.OptimizeResult(
                x=x, fun=f, nit=notify.iteration, success=False, status=3,
                message="Stopped: SciPy proposed a non-finite step (is tol below the attainable precision?).")


class LBFGS(_ScipyGradientOptimizer):
    """Limited-memory BFGS with optional box bounds (SciPy ``L-BFGS-B``).

    Args:
        max_iter: maximum iterations (default 100).
        tol: ``gtol = ftol = tol`` (see the module table); ``None``: ``gtol=1e-5``, ``ftol=2.2e-9``.
        memory: the number of correction pairs kept (SciPy ``maxcor``, torch ``history_size``).
        max_fun: maximum objective evaluations (default ``15000``).
        max_line_search: maximum evaluations per line search (SciPy ``maxls``).
        bounds: ``(low, high)`` for every parameter or one pair per parameter.
    """

    supports_bounds = True
    _method = "L-BFGS-B"

    def __init__(self, max_iter=100, tol=None, memory=10, max_fun=15000, max_line_search=20, bounds=None, name=None):
        super().__init__(max_iter, tol, bounds, name)
        self.memory = check_positive_int(memory, "memory", "LBFGS")
        self.max_fun = check_positive_int(max_fun, "max_fun", "LBFGS")
        self.max_line_search = check_positive_int(max_line_search, "max_line_search", "LBFGS")

    def _options(self):
        return {"maxiter": self.max_iter, "maxcor": self.memory, "maxfun": self.max_fun, "maxls": self.max_line_search}

    def _tol_options(self):
        return {"gtol": self.tol, "ftol": self.tol}

    def get_config(self):
        return {**super().get_config(), "memory": self.memory, "max_fun": self.max_fun,
                "max_line_search": self.max_line_search}


class BFGS(_ScipyGradientOptimizer):
    """BFGS with a dense inverse-Hessian approximation ``(n, n)`` (SciPy ``BFGS``): for small models.

    ``tol``: ``gtol`` on ``max|g|`` (default 1e-5).
    """

    _method = "BFGS"

    def __init__(self, max_iter=100, tol=None, name=None):
        super().__init__(max_iter, tol, None, name)

    def _tol_options(self):
        return {"gtol": self.tol}


class ConjugateGradient(_ScipyGradientOptimizer):
    """Nonlinear conjugate gradients, Polak-Ribiere+ (SciPy ``CG``); ``tol``: ``gtol`` on ``max|g|``
    (default 1e-5)."""

    _method = "CG"

    def __init__(self, max_iter=100, tol=None, name=None):
        super().__init__(max_iter, tol, None, name)

    def _tol_options(self):
        return {"gtol": self.tol}


class NewtonCG(_ScipyGradientOptimizer):
    """Truncated Newton: the Newton step solved by conjugate gradients (SciPy ``Newton-CG``).

    The Hessian-vector products ``H p`` are differences of gradients (one extra gradient per
    product with ``finite_difference="forward"``, two with ``"central"``). ``tol``: ``xtol``,
    the run stops when ``sum|step| <= n * xtol`` (default 1e-5).
    """

    _method = "Newton-CG"
    _uses_hessp = True

    def __init__(self, max_iter=100, tol=None, finite_difference="forward", name=None):
        super().__init__(max_iter, tol, None, name)
        self.finite_difference = check_in(finite_difference, ("forward", "central"), "finite_difference", "NewtonCG")

    def _tol_options(self):
        return {"xtol": self.tol}

    def get_config(self):
        return {**super().get_config(), "finite_difference": self.finite_difference}


class TrustRegion(_ScipyGradientOptimizer):
    """A trust-region Newton method on finite-difference Hessian-vector products.

    Args:
        method: ``"trust-krylov"`` (nearly exact subproblem, GLTR Lanczos) or ``"trust-ncg"``
            (Steihaug conjugate gradients).
        initial_trust_radius, max_trust_radius: the trust radius at the start and its cap.
        finite_difference: ``"forward"`` or ``"central"`` differences of gradients.
        tol: ``gtol``: stop when ``||g||_2 < gtol`` (default 1e-4).
    """

    _uses_hessp = True

    def __init__(self, max_iter=100, tol=None, method="trust-krylov", initial_trust_radius=1.0,
                 max_trust_radius=1000.0, finite_difference="forward", name=None):
        super().__init__(max_iter, tol, None, name)
        owner = "TrustRegion"
        self.method = check_in(method, ("trust-krylov", "trust-ncg"), "method", owner)
        self.initial_trust_radius = check_float(owner, "initial_trust_radius", initial_trust_radius, low=0.0,
                                                low_open=True)
        self.max_trust_radius = check_float(owner, "max_trust_radius", max_trust_radius, low=0.0, low_open=True)
        if self.initial_trust_radius > self.max_trust_radius:
            raise ValueError(
                f"TrustRegion: expected initial_trust_radius <= max_trust_radius. Received: initial_trust_radius="
                f"{initial_trust_radius}, max_trust_radius={max_trust_radius}"
            )
        self.finite_difference = check_in(finite_difference, ("forward", "central"), "finite_difference", owner)

    def _scipy_method(self):
        return self.method

    def _options(self):
        return {"maxiter": self.max_iter, "initial_trust_radius": self.initial_trust_radius,
                "max_trust_radius": self.max_trust_radius}

    def _tol_options(self):
        return {"gtol": self.tol}

    def get_config(self):
        return {**super().get_config(), "method": self.method, "initial_trust_radius": self.initial_trust_radius,
                "max_trust_radius": self.max_trust_radius, "finite_difference": self.finite_difference}


# the abstract bases are not buildable by name
_base._REGISTRY.pop("FullBatchOptimizer", None)
