"""Derivative-free optimizers: DifferentialEvolution, DualAnnealing (SciPy), SimulatedAnnealing,
ParticleSwarm, GeneticAlgorithm; through ``optimizers.minimize`` and through a training loop."""

import copy
import json

import numpy as np
import pytest
import scipy.optimize as so

from fusenet import layers, optimizers
from tests.flat_loop import FlatLoop

try:  # pragma: no cover - depends on the environment
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """See tests/test_optimizers_fullbatch.py: SciPy's L-BFGS-B (polish, local searches) on tiny vectors."""
    if threadpool_limits is None:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


METHODS = ["differential_evolution", "dual_annealing", "simulated_annealing", "particle_swarm", "genetic_algorithm"]
POPULATION_METHODS = ["simulated_annealing", "particle_swarm", "genetic_algorithm"]


def rastrigin(X):
    """Rastrigin, rows of ``X (pop, n)``: global minimum 0 at 0."""
    X = np.atleast_2d(X)
    return 10.0 * X.shape[1] + np.sum(X**2 - 10.0 * np.cos(2.0 * np.pi * X), axis=1)


def ackley(X):
    """Ackley, rows of ``X (pop, n)``: global minimum 0 at 0."""
    X = np.atleast_2d(X)
    n = X.shape[1]
    return (-20.0 * np.exp(-0.2 * np.sqrt(np.sum(X**2, axis=1) / n))
            - np.exp(np.sum(np.cos(2.0 * np.pi * X), axis=1) / n) + 20.0 + np.e)


def scalar(batch_fn):
    return lambda x: float(batch_fn(x)[0])


def shifted_sphere(x):
    return float(np.sum((x - np.arange(1.0, x.size + 1.0) / 4.0) ** 2))


def rosenbrock(x):
    return float(so.rosen(x))


BOX5 = [(-5.12, 5.12)] * 5


# ---------------------------------------------------------------- global minima
RASTRIGIN_CASES = {
    "differential_evolution": {},
    "dual_annealing": {},
    "genetic_algorithm": {"max_iter": 300, "popsize": 80, "polish": True},
}


@pytest.mark.parametrize("method", sorted(RASTRIGIN_CASES))
def test_rastrigin_5d_global_minimum(method):
    result = optimizers.minimize(scalar(rastrigin), None, method=method, bounds=BOX5, seed=0, fn_batch=rastrigin,
                                 **RASTRIGIN_CASES[method])
    assert np.max(np.abs(result.x)) < 1e-6 and result.fun < 1e-8


ACKLEY_CASES = {
    "differential_evolution": {},
    "dual_annealing": {},
    "particle_swarm": {"max_iter": 300, "popsize": 60},
    "genetic_algorithm": {"max_iter": 300, "popsize": 80, "polish": True},
    "simulated_annealing": {"max_iter": 1000, "popsize": 32, "polish": True},
}


@pytest.mark.parametrize("method", sorted(ACKLEY_CASES))
def test_ackley_5d_global_minimum(method):
    result = optimizers.minimize(scalar(ackley), None, method=method, bounds=BOX5, seed=0, fn_batch=ackley,
                                 **ACKLEY_CASES[method])
    assert np.max(np.abs(result.x)) < 1e-6 and result.fun < 1e-6


# ---------------------------------------------------------------- smooth problems, determinism
#: the tolerance on max|x - x*| each method reaches with default settings and no polishing (with seed 3; the
#: worst of seeds 0-5 for the genetic algorithm: 7e-3, for annealing on Rosenbrock's valley: 0.11)
TOLERANCES = {"differential_evolution": 1e-6, "dual_annealing": 1e-4, "particle_swarm": 1e-4,
              "genetic_algorithm": 1e-2, "simulated_annealing": 1e-2}
SMOOTH = {
    "rosenbrock": (rosenbrock, np.zeros(2), [(-2.0, 2.0)] * 2, np.ones(2)),
    "sphere": (shifted_sphere, np.zeros(5), (-3.0, 3.0), np.arange(1.0, 6.0) / 4.0),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("problem", sorted(SMOOTH))
def test_smooth_problems_and_determinism(method, problem):
    fn, x0, bounds, expected = SMOOTH[problem]
    options = {"max_iter": 100} if method == "dual_annealing" else {}
    tolerance = 0.1 if (method, problem) == ("simulated_annealing", "rosenbrock") else TOLERANCES[method]
    runs = []
    for seed, max_iter in ((3, None), (3, None), (4, 2)):
        points = []

        def recorded(x):
            points.append(np.array(x, copy=True))
            return fn(x)

        run_options = options if max_iter is None else {"max_iter": max_iter}
        runs.append((optimizers.minimize(recorded, x0, method=method, bounds=bounds, seed=seed, **run_options), points))
    (first, first_points), (again, again_points), (_, other_points) = runs
    np.testing.assert_allclose(first.x, expected, atol=tolerance)
    assert np.array_equal(first.x, again.x) and first.fun == again.fun and first.nfev == again.nfev
    assert all(np.array_equal(a, b) for a, b in zip(first_points, again_points))  # bit for bit, every evaluation
    assert any(not np.array_equal(a, b) for a, b in zip(first_points, other_points))  # another seed, another search
    assert isinstance(first, so.OptimizeResult) and isinstance(first.message, str)
    assert first.nit > 0 and first.nfev > first.nit and first.njev == 0


@pytest.mark.parametrize("method", METHODS)
def test_polish_refines_to_a_tight_tolerance(method):
    fn, x0, bounds, expected = SMOOTH["sphere"]
    options = {"max_iter": 20} if method == "dual_annealing" else {"max_iter": 30}
    result = optimizers.minimize(fn, x0, method=method, bounds=bounds, seed=0, polish=True, **options)
    np.testing.assert_allclose(result.x, expected, atol=1e-6)


def test_global_seed_makes_runs_reproducible():
    import fusenet

    fusenet.set_random_seed(7)
    first = optimizers.ParticleSwarm(max_iter=20).minimize(shifted_sphere, np.zeros(3))
    fusenet.set_random_seed(7)
    again = optimizers.ParticleSwarm(max_iter=20).minimize(shifted_sphere, np.zeros(3))
    assert np.array_equal(first.x, again.x)


# ---------------------------------------------------------------- batched evaluation
@pytest.mark.parametrize("method", POPULATION_METHODS)
def test_fn_batch_gives_the_same_run_in_fewer_calls(method):
    calls = {"fn": 0, "batch": 0, "rows": 0}

    def fn(x):
        calls["fn"] += 1
        return float(rastrigin(x)[0])

    def fn_batch(X):
        calls["batch"] += 1
        calls["rows"] += X.shape[0]
        return rastrigin(X)

    row_by_row = optimizers.minimize(fn, np.full(4, 0.5), method=method, bounds=(-3, 3), seed=1, max_iter=15)
    assert calls["fn"] == row_by_row.nfev
    calls.update(fn=0)
    batched = optimizers.minimize(fn, np.full(4, 0.5), method=method, bounds=(-3, 3), seed=1, max_iter=15,
                                  fn_batch=fn_batch)
    assert np.array_equal(batched.x, row_by_row.x) and batched.fun == row_by_row.fun
    assert calls["fn"] == 1  # only the start point, checked on its own
    assert calls["batch"] == batched.nit + 1  # the first population, then one call per generation
    assert batched.nfev == calls["rows"] + 1 == row_by_row.nfev


def test_differential_evolution_uses_fn_batch_once_per_generation():
    calls = []

    def fn_batch(X):
        calls.append(X.shape)
        return rastrigin(X)

    result = optimizers.minimize(scalar(rastrigin), np.zeros(3), method="de", bounds=(-3, 3), seed=0, popsize=12,
                                 max_iter=10, fn_batch=fn_batch)
    assert all(shape == (12, 3) for shape in calls) and len(calls) == result.nit + 1
    assert result.nfev == 12 * len(calls) + 1


# ---------------------------------------------------------------- bounds and the default box
@pytest.mark.parametrize("method", METHODS)
def test_every_evaluated_point_is_inside_the_box(method):
    seen = []

    def fn(x):
        seen.append(np.array(x, copy=True))
        return shifted_sphere(x)

    low, high = np.array([-1.0, 0.0, 0.5]), np.array([0.2, 0.4, 2.0])
    options = {"max_iter": 20} if method == "dual_annealing" else {"max_iter": 15}
    result = optimizers.minimize(fn, np.full(3, 9.0), method=method, bounds=list(zip(low, high)), seed=0, polish=True,
                                 **options)
    points = np.array(seen)
    assert np.all(points >= low) and np.all(points <= high)
    np.testing.assert_array_equal(points[0], np.clip(np.full(3, 9.0), low, high))  # x0 clipped, evaluated first
    np.testing.assert_allclose(result.x, np.clip(np.arange(1.0, 4.0) / 4.0, low, high), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_default_box_is_x0_plus_minus_radius(method):
    seen = []

    def fn(x):
        seen.append(np.array(x, copy=True))
        return shifted_sphere(x)

    x0 = np.array([3.0, -1.0])
    optimizers.minimize(fn, x0, method=method, seed=0, radius=0.5, max_iter=10)
    offsets = np.abs(np.array(seen) - x0)
    assert offsets.max() <= 0.5 + 1e-12 and offsets.max() > 0.25


def test_non_finite_losses_away_from_the_start_count_as_infinite():
    def fn(x):  # undefined (nan) on half of the box
        return np.nan if x[0] < 0 else shifted_sphere(x)

    for method in METHODS:
        result = optimizers.minimize(fn, np.ones(2), method=method, bounds=(-2, 2), seed=0, max_iter=30)
        assert np.isfinite(result.fun) and result.x[0] >= 0, method


# ---------------------------------------------------------------- through a training loop
XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])
XOR_OPTIMIZERS = {
    "differential_evolution": lambda: optimizers.DifferentialEvolution(max_iter=100, popsize=40, seed=0),
    "dual_annealing": lambda: optimizers.DualAnnealing(max_iter=150, local_search=False, seed=0),
    "particle_swarm": lambda: optimizers.ParticleSwarm(max_iter=100, popsize=30, seed=0),
    "genetic_algorithm": lambda: optimizers.GeneticAlgorithm(max_iter=100, popsize=40, seed=0),
    "simulated_annealing": lambda: optimizers.SimulatedAnnealing(max_iter=300, seed=0),
}


def xor_net():
    return FlatLoop([layers.Dense(3, activation="tanh", dtype="float64"),
                     layers.Dense(1, activation="sigmoid", dtype="float64")], "binary_crossentropy")


@pytest.mark.parametrize("name", sorted(XOR_OPTIMIZERS))
def test_trains_xor_to_full_accuracy(name):
    net = xor_net()
    optimizer = XOR_OPTIMIZERS[name]()
    infos = []

    def callback(info):
        infos.append((info, np.array_equal(net.flat_weights(), info.x)))

    history = net.fit(optimizer, XOR_X, XOR_Y, callback=callback)
    assert np.all((net.predict(XOR_X) > 0.5) == XOR_Y)
    result = optimizer.result_
    assert result.nfev == net.n_forward - 1  # every evaluation is one forward pass (plus predict above)
    np.testing.assert_array_equal(net.flat_weights(), result.x)  # the best point is in the layers
    assert all(in_layers for _, in_layers in infos)  # the layers hold info.x when the callback runs
    assert [info.iteration for info, _ in infos] == list(range(1, len(history) + 1))
    losses = [info.fun for info, _ in infos]
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # the best loss so far
    assert all(a.nfev < b.nfev for (a, _), (b, _) in zip(infos, infos[1:]))
    assert result.fun == losses[-1] and optimizer.requires_gradient is False


@pytest.mark.parametrize("method", ["differential_evolution", "particle_swarm", "genetic_algorithm",
                                    "simulated_annealing", "dual_annealing"])
def test_callback_stops_the_run(method):
    # dual annealing reports only new best points (here the first local search finds the global minimum)
    last = 1 if method == "dual_annealing" else 2
    result = optimizers.minimize(scalar(rastrigin), np.full(3, 2.0), method=method,
                                 bounds=(-5, 5), seed=0, callback=lambda info: info.iteration == last)
    assert result.message == "Stopped by the callback." and not result.success
    if method != "dual_annealing":
        assert result.nit == 2


def test_mini_batches_are_refused():
    opt = optimizers.ParticleSwarm()
    assert opt.full_batch and not opt.supports_minibatch
    with pytest.raises(ValueError, match=r"ParticleSwarm is a full-batch optimizer"):
        xor_net().fit(opt, XOR_X, XOR_Y, batch_size=2)
    with pytest.raises(ValueError, match=r"GeneticAlgorithm\.apply_gradients: .*full-batch"):
        optimizers.GeneticAlgorithm().apply_gradients([(np.zeros(2), np.zeros(2))])


# ---------------------------------------------------------------- config and registry
CONFIG_CASES = {
    "de": lambda: optimizers.DifferentialEvolution(max_iter=5, popsize=8, strategy="rand1bin", mutation=0.6,
                                                   recombination=0.9, tol=0.1, atol=1e-3, bounds=(-1, 1), seed=3),
    "de_dither": lambda: optimizers.DifferentialEvolution(mutation=(0.2, 0.8), polish=True, radius=0.5),
    "da": lambda: optimizers.DualAnnealing(max_iter=7, max_fun=100, initial_temp=100.0, restart_temp_ratio=1e-3,
                                           visit=2.0, accept=-10.0, local_search=False, bounds=[(0, 1), (-1, None)]),
    "sa": lambda: optimizers.SimulatedAnnealing(popsize=4, initial_temp=2.0, final_temp_ratio=1e-3, step_size=0.3),
    "pso": lambda: optimizers.ParticleSwarm(popsize=5, inertia=0.5, cognitive=1.0, social=2.0, velocity_clamp=0.5),
    "ga": lambda: optimizers.GeneticAlgorithm(popsize=10, elite=1, tournament_size=2, crossover_rate=0.5,
                                              blend_alpha=0.2, mutation_rate=0.3, mutation_scale=0.05, name="ga1"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_round_trip(name):
    opt = CONFIG_CASES[name]()
    config = opt.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(opt).from_config(copy.deepcopy(config))
    assert type(clone) is type(opt) and clone.get_config() == config
    assert optimizers.deserialize(copy.deepcopy(optimizers.serialize(opt))).get_config() == config


def test_a_config_clone_runs_identically():
    opt = CONFIG_CASES["de"]()
    clone = type(opt).from_config(opt.get_config())
    a = opt.minimize(shifted_sphere, np.zeros(2))
    b = clone.minimize(shifted_sphere, np.zeros(2))
    assert np.array_equal(a.x, b.x) and opt.result_ is a and opt.iterations == a.nit


def test_get_by_name():
    for name, cls in [("differential_evolution", "DifferentialEvolution"), ("DifferentialEvolution", "DifferentialEvolution"),
                      ("dual_annealing", "DualAnnealing"), ("simulated_annealing", "SimulatedAnnealing"),
                      ("particle_swarm", "ParticleSwarm"), ("ParticleSwarm", "ParticleSwarm"),
                      ("genetic_algorithm", "GeneticAlgorithm"), ("geneticalgorithm", "GeneticAlgorithm")]:
        assert type(optimizers.get(name)).__name__ == cls
    assert "derivativefreeoptimizer" not in optimizers.available()
    for method in ["de", "pso", "ga", "sa", "DualAnnealing"]:
        result = optimizers.minimize(shifted_sphere, np.zeros(2), method=method, bounds=(-1, 1), seed=0, max_iter=3)
        assert result.nit >= 1


# ---------------------------------------------------------------- errors
def test_bounds_are_required_without_a_start_point():
    with pytest.raises(ValueError, match=r"ParticleSwarm searches a box: pass bounds=.*Received: bounds=None, x0=None"):
        optimizers.minimize(shifted_sphere, None, method="pso")
    with pytest.raises(ValueError, match=r"without x0 the bounds must give one \(low, high\) pair per parameter"):
        optimizers.minimize(shifted_sphere, None, method="de", bounds=(-1, 1))
    with pytest.raises(ValueError, match=r"DualAnnealing needs finite bounds"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="dual_annealing", bounds=[(-1, 1), (0, None)])
    with pytest.raises(ValueError, match=r"expected low < high for every parameter"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="ga", bounds=[(-1, 1), (0, 0)])
    with pytest.raises(ValueError, match=r"expected one \(low, high\) pair per parameter, 3 pairs\. Received 2 pairs"):
        optimizers.minimize(shifted_sphere, np.zeros(3), method="sa", bounds=[(-1, 1), (0, 1)])


def test_bad_popsize():
    with pytest.raises(ValueError, match=r"DifferentialEvolution: expected popsize to be an integer >= 5\. Received: popsize=3"):
        optimizers.DifferentialEvolution(popsize=3)
    with pytest.raises(ValueError, match=r"ParticleSwarm: expected popsize to be an integer >= 2\. Received: popsize=1"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="pso", popsize=1)
    with pytest.raises(ValueError, match=r"SimulatedAnnealing: expected popsize .*Received: popsize=0"):
        optimizers.SimulatedAnnealing(popsize=0)
    with pytest.raises(TypeError, match=r"expected popsize to be an integer >= 2\. Received: popsize='8'"):
        optimizers.GeneticAlgorithm(popsize="8")
    with pytest.raises(ValueError, match=r"GeneticAlgorithm: expected popsize >= elite \+ 2"):
        optimizers.GeneticAlgorithm(popsize=3, elite=2)
    with pytest.raises(TypeError, match=r"method 'dual_annealing' \(DualAnnealing\) takes the options"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="dual_annealing", popsize=10)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match=r"expected seed to be None or a non-negative integer\. Received: seed=-1"):
        optimizers.ParticleSwarm(seed=-1)
    with pytest.raises(ValueError, match=r"expected radius"):
        optimizers.GeneticAlgorithm(radius=0)
    with pytest.raises(ValueError, match=r"expected strategy to be one of"):
        optimizers.DifferentialEvolution(strategy="best3bin")
    with pytest.raises(ValueError, match=r"expected mutation"):
        optimizers.DifferentialEvolution(mutation=(0.5, 3.0))
    with pytest.raises(ValueError, match=r"expected mutation low <= high"):
        optimizers.DifferentialEvolution(mutation=(0.9, 0.5))
    with pytest.raises(ValueError, match=r"expected visit"):
        optimizers.DualAnnealing(visit=1.0)
    with pytest.raises(ValueError, match=r"expected inertia"):
        optimizers.ParticleSwarm(inertia=1.5)
    with pytest.raises(ValueError, match=r"expected final_temp_ratio"):
        optimizers.SimulatedAnnealing(final_temp_ratio=0)
    with pytest.raises(ValueError, match=r"expected mutation_rate"):
        optimizers.GeneticAlgorithm(mutation_rate=2)
    with pytest.raises(ValueError, match=r"expected elite to be a non-negative integer"):
        optimizers.GeneticAlgorithm(elite=-1)


def test_objective_errors():
    with pytest.raises(ValueError, match=r"ParticleSwarm\.minimize: the loss at the start point is not finite"):
        optimizers.minimize(lambda x: np.inf, np.zeros(2), method="pso", bounds=(-1, 1))
    with pytest.raises(ValueError, match=r"the loss at the start point is not finite"):
        optimizers.minimize(lambda x: np.nan, np.zeros(2), method="differential_evolution")
    with pytest.raises(ValueError, match=r"expected fn_batch to return 6 losses, shape \(6,\)\. Received shape \(6, 1\)"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="ga", popsize=7, bounds=(-1, 1),
                            fn_batch=lambda X: np.zeros((X.shape[0], 1)))
    with pytest.raises(TypeError, match="expected fn_batch to be callable"):
        optimizers.minimize(shifted_sphere, np.zeros(2), method="sa", fn_batch=3)
    net = xor_net()
    net.build(XOR_X)
    gradient_free = optimizers.make_objective(net.layers, forward_loss=lambda: 1.0)
    result = optimizers.ParticleSwarm(max_iter=2, seed=0).minimize(gradient_free)  # the loss alone is enough
    assert result.fun == 1.0
