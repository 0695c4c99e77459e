"""Population metaheuristics written here: :class:`SimulatedAnnealing` (parallel chains),
:class:`ParticleSwarm` and :class:`GeneticAlgorithm` (real-coded).

Each generation updates the whole population ``X (popsize, n)`` with array operations (no Python
loop over individuals) and evaluates it with one ``fn_batch(X)`` call when the objective provides
one (else ``fn`` row by row). The search box, the seeding, the start point and the stopping rule
are those of :class:`~fusenet.optimizers.metaheuristics.DerivativeFreeOptimizer`: the first
population is a Latin hypercube of the box with ``x0`` as its first individual; a run stops after
``max_iter`` generations, when the callback asks, or when ``std(f) <= atol + tol * |mean(f)|`` over
the population's losses (the chains' current losses for annealing, the personal bests for the swarm).
The callback receives the best point found so far.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import OptimizeResult

from ..utils import check_non_negative_int, check_positive_int
from .base import check_float
from .metaheuristics import DerivativeFreeOptimizer, check_popsize, latin_hypercube, population_converged

__all__ = ["SimulatedAnnealing", "ParticleSwarm", "GeneticAlgorithm"]


class _PopulationOptimizer(DerivativeFreeOptimizer):
    """The generation loop shared by the three methods."""

    _min_popsize = 1

    def __init__(self, max_iter, popsize, tol, atol, bounds, radius, seed, polish, name):
        super().__init__(max_iter, tol, atol, bounds, radius, seed, polish, name)
        self.popsize = check_popsize(type(self).__name__, popsize, self._min_popsize)

    def _run(self, problem, box, notify):
        rng = self._rng()
        low, high = box
        x0, f0 = self._start(problem, box)
        X = latin_hypercube(rng, low, high, self.popsize)
        if x0 is None:
            f = problem.f_batch(X)
        else:
            X[0] = x0
            f = np.empty(self.popsize)
            f[0] = f0
            if self.popsize > 1:
                f[1:] = problem.f_batch(X[1:])
        state = self._init_state(rng, X, f, box)
        i = int(np.argmin(f))
        best_x, best_f = X[i].copy(), float(f[i])
        nit, message, status = 0, "Maximum number of iterations reached.", 2
        for k in range(self.max_iter):
            cand_x, cand_f, losses = self._step(state, k, rng, problem, box)
            nit += 1
            if cand_f < best_f:
                best_x, best_f = cand_x.copy(), float(cand_f)
            if notify(best_x, best_f):
                break
            if population_converged(losses, self.tol, self.atol):
                message, status = "The population has converged (std(f) <= atol + tol * |mean(f)|).", 0
                break
        best_x, best_f = self._polish(problem, box, best_x, best_f)
        success = math.isfinite(best_f) and status == 0
        if not math.isfinite(best_f):
            message, status = "No point with a finite loss was found.", 3
        return OptimizeResult(x=best_x, fun=best_f, nit=nit, message=message, success=success, status=status)

    def _init_state(self, rng, X, f, box) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, state, k, rng, problem, box):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "popsize": self.popsize}


def _reflect(Y, low, high):
    """Reflect the coordinates that left the box at its walls (then clip what is still outside)."""
    Y = np.where(Y < low, 2.0 * low - Y, Y)
    Y = np.where(Y > high, 2.0 * high - Y, Y)
    return np.clip(Y, low, high)


# ---------------------------------------------------------------- simulated annealing
class SimulatedAnnealing(_PopulationOptimizer):
    """Simulated annealing with ``popsize`` independent Metropolis chains on one cooling schedule.

    Generation ``k = 0 .. max_iter - 1``::

        T_k     = T_0 * final_temp_ratio ** (k / (max_iter - 1))          geometric cooling
        sigma_k = step_size * (high - low) * sqrt(T_k / T_0)              per coordinate
        Y       = reflect(X + sigma_k * N(0, 1))                           proposals (popsize, n)
        accept  = f(Y) <= f(X)  or  u < exp(-(f(Y) - f(X)) / T_k),  u ~ U(0, 1)

    Args:
        popsize: the number of chains (default 16).
        initial_temp: ``T_0``; ``None``: the standard deviation of the first population's losses
            (1.0 when that is zero).
        final_temp_ratio: ``T_{max_iter-1} / T_0`` in ``(0, 1]``.
        step_size: the proposal scale at ``T_0`` as a fraction of the box width.
        max_iter, tol, atol, bounds, radius, seed, polish: see
            :class:`~fusenet.optimizers.metaheuristics.DerivativeFreeOptimizer`.
    """

    def __init__(self, max_iter=500, popsize=16, initial_temp=None, final_temp_ratio=1e-6, step_size=0.1, tol=0.01,
                 atol=0.0, bounds=None, radius=2.0, seed=None, polish=False, name=None):
        super().__init__(max_iter, popsize, tol, atol, bounds, radius, seed, polish, name)
        owner = "SimulatedAnnealing"
        self.initial_temp = check_float(owner, "initial_temp", initial_temp, low=0.0, low_open=True, allow_none=True)
        self.final_temp_ratio = check_float(owner, "final_temp_ratio", final_temp_ratio, low=0.0, high=1.0,
                                            low_open=True)
        self.step_size = check_float(owner, "step_size", step_size, low=0.0, low_open=True)

    def _init_state(self, rng, X, f, box):
        t0 = self.initial_temp
        if t0 is None:
            finite = f[np.isfinite(f)]
            t0 = float(np.std(finite)) if finite.size > 1 else 0.0
            if not (math.isfinite(t0) and t0 > 0):
                t0 = 1.0
        return {"X": X, "f": f, "t0": t0}

    def _step(self, state, k, rng, problem, box):
        low, high = box
        X, f, t0 = state["X"], state["f"], state["t0"]
        frac = k / (self.max_iter - 1) if self.max_iter > 1 else 0.0
        t = t0 * self.final_temp_ratio ** frac
        sigma = self.step_size * (high - low) * math.sqrt(t / t0)
        Y = _reflect(X + sigma * rng.standard_normal(X.shape), low, high)
        fy = problem.f_batch(Y)
        u = rng.random(f.shape[0])
        both = np.isfinite(fy) & np.isfinite(f)
        delta = np.full(f.shape, np.inf)
        np.subtract(fy, f, out=delta, where=both)
        with np.errstate(over="ignore", under="ignore"):
            metropolis = u < np.exp(-np.maximum(delta, 0.0) / t)
        accept = (fy <= f) | metropolis
        X[accept] = Y[accept]
        f[accept] = fy[accept]
        i = int(np.argmin(f))
        return X[i], float(f[i]), f

    def get_config(self):
        return {**super().get_config(), "initial_temp": self.initial_temp, "final_temp_ratio": self.final_temp_ratio,
                "step_size": self.step_size}


# ---------------------------------------------------------------- particle swarm
class ParticleSwarm(_PopulationOptimizer):
    """Particle swarm optimisation, global-best topology (Kennedy and Eberhart; Clerc's constants).

    Every generation, for all particles at once (``r1, r2 ~ U(0, 1)`` per coordinate)::

        V = inertia * V + cognitive * r1 * (P_best - X) + social * r2 * (g_best - X)
        V = clip(V, -v_max, v_max),   v_max = velocity_clamp * (high - low)
        X = X + V                     (coordinates leaving the box stop at the wall, their V = 0)

    then each personal best ``P_best`` is replaced where the particle improved on it.

    Args:
        popsize: the number of particles (default 40, at least 2).
        inertia, cognitive, social: ``w, c1, c2`` (default 0.7298, 1.49618, 1.49618).
        velocity_clamp: the largest step as a fraction of the box width.
        max_iter, tol, atol, bounds, radius, seed, polish: see
            :class:`~fusenet.optimizers.metaheuristics.DerivativeFreeOptimizer`.
    """

    _min_popsize = 2

    def __init__(self, max_iter=200, popsize=40, inertia=0.7298, cognitive=1.49618, social=1.49618,
                 velocity_clamp=0.2, tol=0.01, atol=0.0, bounds=None, radius=2.0, seed=None, polish=False, name=None):
        super().__init__(max_iter, popsize, tol, atol, bounds, radius, seed, polish, name)
        owner = "ParticleSwarm"
        self.inertia = check_float(owner, "inertia", inertia, low=0.0, high=1.0)
        self.cognitive = check_float(owner, "cognitive", cognitive, low=0.0)
        self.social = check_float(owner, "social", social, low=0.0)
        self.velocity_clamp = check_float(owner, "velocity_clamp", velocity_clamp, low=0.0, high=1.0, low_open=True)

    def _init_state(self, rng, X, f, box):
        vmax = self.velocity_clamp * (box[1] - box[0])
        V = rng.uniform(-1.0, 1.0, size=X.shape) * vmax
        return {"X": X, "V": V, "vmax": vmax, "P": X.copy(), "pf": f.copy()}

    def _step(self, state, k, rng, problem, box):
        low, high = box
        X, V, P, pf, vmax = state["X"], state["V"], state["P"], state["pf"], state["vmax"]
        g = P[int(np.argmin(pf))]
        r1 = rng.random(X.shape)
        r2 = rng.random(X.shape)
        V *= self.inertia
        V += self.cognitive * r1 * (P - X)
        V += self.social * r2 * (g - X)
        np.clip(V, -vmax, vmax, out=V)
        X += V
        outside = (X < low) | (X > high)
        np.clip(X, low, high, out=X)
        V[outside] = 0.0
        f = problem.f_batch(X)
        improved = f < pf
        P[improved] = X[improved]
        pf[improved] = f[improved]
        i = int(np.argmin(pf))
        return P[i], float(pf[i]), pf

    def get_config(self):
        return {**super().get_config(), "inertia": self.inertia, "cognitive": self.cognitive, "social": self.social,
                "velocity_clamp": self.velocity_clamp}


# ---------------------------------------------------------------- genetic algorithm
class GeneticAlgorithm(_PopulationOptimizer):
    """A real-coded genetic algorithm: elitism, tournament selection, blend crossover, Gaussian mutation.

    Generation ``k``: the ``elite`` best individuals survive unchanged; each of the other
    ``popsize - elite`` children comes from two parents, each the best of ``tournament_size``
    individuals drawn at random, by BLX-``alpha`` crossover (with probability ``crossover_rate``,
    else a copy of the first parent)::

        child = p1 + u * (p2 - p1),   u ~ U(-alpha, 1 + alpha) per coordinate

    then every coordinate mutates with probability ``mutation_rate``:
    ``child += N(0, 1) * mutation_scale * (high - low) * (1 - k / max_iter)``, and is clipped into
    the box.

    Args:
        popsize: the number of individuals (default 50, at least ``elite + 2``).
        elite: how many of the best survive each generation (default 2).
        tournament_size: individuals per tournament (default 3).
        crossover_rate, blend_alpha: the crossover probability and BLX ``alpha`` (default 0.9, 0.5).
        mutation_rate: per-coordinate probability; ``None``: ``max(1 / n, 0.05)``.
        mutation_scale: the mutation standard deviation as a fraction of the box width (default 0.1).
        max_iter, tol, atol, bounds, radius, seed, polish: see
            :class:`~fusenet.optimizers.metaheuristics.DerivativeFreeOptimizer`.
    """

    _min_popsize = 2

    def __init__(self, max_iter=200, popsize=50, elite=2, tournament_size=3, crossover_rate=0.9, blend_alpha=0.5,
                 mutation_rate=None, mutation_scale=0.1, tol=0.01, atol=0.0, bounds=None, radius=2.0, seed=None,
                 polish=False, name=None):
        super().__init__(max_iter, popsize, tol, atol, bounds, radius, seed, polish, name)
        owner = "GeneticAlgorithm"
        elite = check_non_negative_int(elite, "elite", owner)
        if self.popsize < elite + 2:
            raise ValueError(
                f"{owner}: expected popsize >= elite + 2 (two children at least). Received: popsize={popsize}, "
                f"elite={elite}"
            )
        self.elite = elite
        self.tournament_size = check_positive_int(tournament_size, "tournament_size", owner)
        self.crossover_rate = check_float(owner, "crossover_rate", crossover_rate, low=0.0, high=1.0)
        self.blend_alpha = check_float(owner, "blend_alpha", blend_alpha, low=0.0)
        self.mutation_rate = check_float(owner, "mutation_rate", mutation_rate, low=0.0, high=1.0, allow_none=True)
        self.mutation_scale = check_float(owner, "mutation_scale", mutation_scale, low=0.0)

    def _init_state(self, rng, X, f, box):
        rate = self.mutation_rate if self.mutation_rate is not None else max(1.0 / X.shape[1], 0.05)
        return {"X": X, "f": f, "rate": rate}

    def _step(self, state, k, rng, problem, box):
        low, high = box
        X, f = state["X"], state["f"]
        pop, n = X.shape
        n_child = pop - self.elite
        order = np.argsort(f, kind="stable")
        elite_x, elite_f = X[order[: self.elite]], f[order[: self.elite]]
        contestants = rng.integers(0, pop, size=(2, n_child, self.tournament_size))
        winner = np.argmin(f[contestants], axis=-1)
        parents = np.take_along_axis(contestants, winner[..., None], axis=-1)[..., 0]
        p1, p2 = X[parents[0]], X[parents[1]]
        u = rng.uniform(-self.blend_alpha, 1.0 + self.blend_alpha, size=(n_child, n))
        cross = rng.random(n_child) < self.crossover_rate
        child = np.where(cross[:, None], p1 + u * (p2 - p1), p1)
        sigma = self.mutation_scale * (high - low) * (1.0 - k / self.max_iter)
        mutate = rng.random((n_child, n)) < state["rate"]
        child = child + mutate * sigma * rng.standard_normal((n_child, n))
        np.clip(child, low, high, out=child)
        fc = problem.f_batch(child)
        X = np.concatenate([elite_x, child])
        f = np.concatenate([elite_f, fc])
        state["X"], state["f"] = X, f
        i = int(np.argmin(f))
        return X[i], float(f[i]), f

    def get_config(self):
        return {**super().get_config(), "elite": self.elite, "tournament_size": self.tournament_size,
                "crossover_rate": self.crossover_rate, "blend_alpha": self.blend_alpha,
                "mutation_rate": self.mutation_rate, "mutation_scale": self.mutation_scale}

