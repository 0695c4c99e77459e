"""Full-batch optimizers (LBFGS, BFGS, ConjugateGradient, NewtonCG, TrustRegion), the flat-parameter
protocol of ``fusenet.optimizers.flat`` and ``optimizers.minimize`` with the gradient methods."""

import copy
import json

import numpy as np
import pytest
import scipy.optimize as so

from fusenet import layers, losses, optimizers
from tests.flat_loop import FlatLoop
from tests.gradcheck import relative_error
from tests.parity import requires_torch, torch

try:  # pragma: no cover - depends on the environment
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """SciPy's L-BFGS-B calls BLAS on tiny vectors; once torch is imported, OpenBLAS threads make each
    call ~100x slower on this machine. One BLAS thread keeps these small problems fast."""
    if threadpool_limits is None:  # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield

GRADIENT_OPTIMIZERS = {
    "lbfgs": lambda: optimizers.LBFGS(max_iter=200, tol=1e-15),
    "bfgs": lambda: optimizers.BFGS(max_iter=200, tol=1e-11),
    "cg": lambda: optimizers.ConjugateGradient(max_iter=300, tol=1e-11),
    "newton_cg": lambda: optimizers.NewtonCG(max_iter=50, tol=1e-12),
    "trust_krylov": lambda: optimizers.TrustRegion(max_iter=50, tol=1e-11),
    "trust_ncg": lambda: optimizers.TrustRegion(max_iter=50, tol=1e-11, method="trust-ncg"),
    "newton_cg_central": lambda: optimizers.NewtonCG(max_iter=50, tol=1e-12, finite_difference="central"),
}


def least_squares(rng, n=64, d_in=4, d_out=3):
    """A noisy linear problem and its exact least-squares solution ``(kernel, bias)``."""
    x = rng.normal(size=(n, d_in))
    y = x @ rng.normal(size=(d_in, d_out)) + rng.normal(size=d_out) + 0.1 * rng.normal(size=(n, d_out))
    solution = np.linalg.lstsq(np.hstack([x, np.ones((n, 1))]), y, rcond=None)[0]
    return x, y, solution[:d_in], solution[d_in]


def shifted_sphere(x):
    c = np.arange(1.0, x.size + 1.0) / 4.0
    return float(np.sum((x - c) ** 2)), 2.0 * (x - c)


def rosenbrock(x):
    return so.rosen(x), so.rosen_der(x)


# ---------------------------------------------------------------- the flat mapping
def two_layer_net(dtype="float64", seed=0):
    return [layers.Dense(5, activation="tanh", dtype=dtype, kernel_initializer={"class_name": "GlorotUniform",
                                                                                "config": {"seed": seed}}),
            layers.Dense(3, dtype=dtype)]


def test_flat_parameters_round_trip_and_write_in_place(rng):
    net = FlatLoop(two_layer_net(), "mse")
    net.build(rng.normal(size=(2, 4)))
    flat = optimizers.FlatParameters.from_layers(net.layers)
    arrays = [p for layer in net.layers for p in layer.params.values()]
    assert flat.size == 4 * 5 + 5 + 5 * 3 + 3 and len(flat) == flat.size
    x = flat.get()
    assert x.dtype == np.float64 and x.shape == (flat.size,) and x.flags.c_contiguous
    np.testing.assert_array_equal(x, np.concatenate([a.ravel() for a in arrays]))
    new = rng.normal(size=flat.size)
    flat.set(new)
    for array, view, layer_array in zip(arrays, flat.views(new), [p for la in net.layers for p in la.params.values()]):
        assert array is layer_array  # written in place, nothing rebound
        np.testing.assert_array_equal(array, view)
        assert np.shares_memory(view, new)  # the pieces of x are views
    np.testing.assert_array_equal(flat.get(), new)
    out = np.empty(flat.size)
    assert flat.get(out=out) is out


def test_flat_parameters_mixed_dtypes_and_shared_arrays(rng):
    a32 = layers.Dense(2, dtype="float32")
    a32(np.ones((1, 3), dtype=np.float32))
    b64 = layers.Dense(2, dtype="float64")
    b64(np.ones((1, 2)))
    pairs = a32.gradient_pairs() + b64.gradient_pairs() + a32.gradient_pairs()  # a32 listed twice
    flat = optimizers.FlatParameters(pairs)
    assert flat.size == 3 * 2 + 2 + 2 * 2 + 2
    assert flat.eps == float(np.finfo(np.float32).eps)
    x = rng.normal(size=flat.size)
    flat.set(x)
    assert a32.params["kernel"].dtype == np.float32
    np.testing.assert_array_equal(a32.params["kernel"], x[:6].reshape(3, 2).astype(np.float32))
    np.testing.assert_array_equal(b64.params["bias"], x[-2:])


def test_frozen_layers_are_left_out(rng):
    net = FlatLoop(two_layer_net(), "mse")
    net.build(rng.normal(size=(2, 4)))
    net.layers[0].trainable = False
    assert optimizers.FlatParameters.from_layers(net.layers).size == 5 * 3 + 3


def test_objective_gradient_equals_the_layers_gradients(rng):
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    net = FlatLoop(two_layer_net(), "mse")
    net.build(x)
    objective = net.objective(x, y)
    point = objective.x0() + 0.1 * rng.normal(size=objective.size)
    loss, grad = objective.value_and_grad(point)
    expected = np.concatenate([g.ravel() for layer in net.layers for g in layer.grads.values()])
    np.testing.assert_array_equal(grad, expected)
    assert np.isclose(loss, objective.value(point), rtol=1e-14)
    # and it is the gradient of the objective (central differences in float64)
    eps = 1e-6
    basis = np.eye(objective.size)
    numeric = np.array([(objective.value(point + eps * e) - objective.value(point - eps * e)) / (2 * eps)
                        for e in basis])
    assert relative_error(grad, numeric) < 1e-6
    # a fresh vector each call: SciPy keeps the gradients of earlier points
    assert objective.value_and_grad(point)[1] is not grad


def test_objective_zeroes_the_gradients_before_each_evaluation(rng):
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    layer = layers.Dense(3, dtype="float64")
    layer(x)
    mse = losses.get("mse")

    def forward_backward():  # does not zero the gradients itself
        y_pred = layer(x, training=True)
        value, dy = mse.value_and_gradient(y, y_pred)
        layer.backward(dy)
        return value

    objective = optimizers.make_objective([layer], forward_backward=forward_backward)
    point = objective.x0()
    g1 = objective.value_and_grad(point)[1]
    g2 = objective.value_and_grad(point)[1]
    np.testing.assert_array_equal(g1, g2)
    assert objective.value(point) == objective.value_and_grad(point)[0]  # value() falls back on forward_backward


# ---------------------------------------------------------------- least squares through the layers
@pytest.mark.parametrize("name", sorted(GRADIENT_OPTIMIZERS))
def test_least_squares_reaches_the_exact_solution(name, rng):
    x, y, kernel, bias = least_squares(rng)
    net = FlatLoop([layers.Dense(3, dtype="float64")], "mse")
    optimizer = GRADIENT_OPTIMIZERS[name]()
    history = net.fit(optimizer, x, y)
    dense = net.layers[0]
    np.testing.assert_allclose(dense.params["kernel"], kernel, rtol=0, atol=1e-8)
    np.testing.assert_allclose(dense.params["bias"], bias, rtol=0, atol=1e-8)
    result = optimizer.result_
    assert result is optimizer.result_ and result.nit == len(history) == optimizer.iterations
    assert result.nfev == net.n_forward  # every evaluation is one full-batch forward pass
    assert result.njev == result.nfev
    assert isinstance(result.message, str) and result.fun == pytest.approx(history[-1]["loss"], rel=1e-12)
    np.testing.assert_array_equal(result.x, net.flat_weights())  # the final point is in the layers
    assert [h["epoch"] for h in history] == list(range(result.nit))
    assert all(a["nfev"] < b["nfev"] for a, b in zip(history, history[1:]))


def test_lbfgs_trains_a_small_classifier(rng):
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    labels = np.repeat(np.arange(3), 20)
    x = centres[labels] + 0.5 * rng.normal(size=(60, 2))
    net = FlatLoop([layers.Dense(8, activation="tanh", dtype="float64"),
                    layers.Dense(3, activation="softmax", dtype="float64")], "sparse_categorical_crossentropy")
    seen = []

    def callback(info):  # the layers hold info.x when the callback runs
        seen.append(np.array_equal(net.flat_weights(), info.x))

    history = net.fit(optimizers.LBFGS(max_iter=60), x, labels, callback=callback)
    assert all(seen) and len(seen) == len(history)
    assert history[-1]["loss"] < 0.05 < history[0]["loss"]
    assert np.mean(np.argmax(net.predict(x), axis=-1) == labels) == 1.0


def test_lbfgs_beats_adam_epoch_for_epoch_on_digits():
    """The digits MLP (64-32-10, 500 samples): L-BFGS fits the training set in under 30 epochs, with a
    training loss far below Adam's (lr 1e-2, batch 32) after the same number of epochs."""
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x, labels = digits.data[:800] / 16.0, digits.target[:800]
    x_train, y_train, x_test, y_test = x[:500], labels[:500], x[500:], labels[500:]

    def mlp():
        init = [{"class_name": "GlorotUniform", "config": {"seed": s}} for s in (0, 1)]
        return FlatLoop([layers.Dense(32, activation="tanh", dtype="float64", kernel_initializer=init[0]),
                         layers.Dense(10, activation="softmax", dtype="float64", kernel_initializer=init[1])],
                        "sparse_categorical_crossentropy")

    def accuracy(net, x, y):
        return float(np.mean(np.argmax(net.predict(x), axis=-1) == y))

    lbfgs = mlp()
    history = lbfgs.fit(optimizers.LBFGS(max_iter=30), x_train, y_train)
    epochs = len(history)
    adam_net, adam = mlp(), optimizers.Adam(1e-2)
    adam_net.build(x_train)
    order_rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = order_rng.permutation(500)
        for start in range(0, 500, 32):
            idx = order[start:start + 32]
            for layer in adam_net.layers:
                layer.zero_grad()
            y_pred = adam_net.forward(x_train[idx], training=True)
            adam_net.backward(adam_net.loss.gradient(y_train[idx], y_pred))
            adam.apply(adam_net.layers)
    lbfgs_loss = lbfgs.loss(y_train, lbfgs.predict(x_train))
    adam_loss = adam_net.loss(y_train, adam_net.predict(x_train))
    assert epochs < 30 and accuracy(lbfgs, x_train, y_train) == 1.0 >= accuracy(adam_net, x_train, y_train)
    assert lbfgs_loss < 0.01 * adam_loss
    assert accuracy(lbfgs, x_test, y_test) > 0.75


def test_float32_model_trains(rng):
    x, y, kernel, bias = least_squares(rng)
    net = FlatLoop([layers.Dense(3)], "mse")
    optimizer = optimizers.TrustRegion(max_iter=30, tol=1e-5)
    net.fit(optimizer, x.astype(np.float32), y.astype(np.float32))
    assert net.layers[0].params["kernel"].dtype == np.float32
    np.testing.assert_allclose(net.layers[0].params["kernel"], kernel, atol=1e-4)


def test_callback_stops_the_run_and_the_last_point_is_kept(rng):
    x, y, _, _ = least_squares(rng)
    net = FlatLoop([layers.Dense(3, dtype="float64")], "mse")
    optimizer = optimizers.BFGS(max_iter=100)
    history = net.fit(optimizer, x, y, callback=lambda info: info.iteration == 3)
    assert len(history) == 3 and optimizer.result_.nit == 3
    assert optimizer.result_.message == "Stopped by the callback." and not optimizer.result_.success
    np.testing.assert_array_equal(net.flat_weights(), optimizer.result_.x)


def test_stop_iteration_from_the_callback_also_stops():
    def callback(info):
        raise StopIteration

    result = optimizers.minimize(rosenbrock, np.zeros(2), method="cg", jac=True, callback=callback)
    assert result.nit == 1 and result.message == "Stopped by the callback."


def test_lbfgs_bounds_on_a_model(rng):
    x, y, kernel, _ = least_squares(rng)
    net = FlatLoop([layers.Dense(3, dtype="float64")], "mse")
    net.fit(optimizers.LBFGS(max_iter=100, bounds=(-0.3, 0.3)), x, y)
    weights = net.flat_weights()
    assert weights.min() >= -0.3 and weights.max() <= 0.3
    assert np.any(np.isclose(np.abs(weights), 0.3))  # the true kernel lies outside: some bound is active


def test_mini_batches_are_refused():
    opt = optimizers.LBFGS()
    with pytest.raises(ValueError, match=r"LBFGS is a full-batch optimizer.*Received: batch_size=32"):
        optimizers.check_batch_size(opt, 32, 100, "Sequential.fit")
    optimizers.check_batch_size(opt, None, 100)
    optimizers.check_batch_size(opt, 100, 100)
    optimizers.check_batch_size(optimizers.Adam(), 32, 100)  # a gradient optimizer takes mini-batches
    assert optimizers.is_full_batch(opt) and not optimizers.is_full_batch(optimizers.Adam())
    assert opt.full_batch and not opt.supports_minibatch and opt.requires_gradient
    layer = layers.Dense(2)
    layer(np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"LBFGS\.apply: LBFGS is a full-batch optimizer"):
        opt.apply([layer])
    with pytest.raises(ValueError, match=r"BFGS\.apply_gradients: .*cannot apply mini-batch"):
        optimizers.BFGS().apply_gradients(layer.gradient_pairs())
    with pytest.raises(ValueError, match="full-batch"):
        FlatLoop([layer], "mse").fit(opt, np.ones((8, 2)), np.ones((8, 2)), batch_size=4)


# ---------------------------------------------------------------- minimize with the gradient methods
GRADIENT_METHODS = ["lbfgs", "l-bfgs-b", "bfgs", "cg", "newton_cg", "trust_region", "trust-krylov", "trust-ncg",
                    "LBFGS", "ConjugateGradient", "NewtonCG", "TrustRegion"]


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("problem", ["rosenbrock", "sphere"])
def test_minimize_gradient_methods(method, problem):
    fn = rosenbrock if problem == "rosenbrock" else shifted_sphere
    x0 = np.array([-1.2, 1.0, -0.5, 0.8])
    expected = np.ones(4) if problem == "rosenbrock" else np.arange(1.0, 5.0) / 4.0
    result = optimizers.minimize(fn, x0, method=method, jac=True, max_iter=500, tol=1e-12)
    assert isinstance(result, so.OptimizeResult)
    np.testing.assert_allclose(result.x, expected, atol=1e-6)
    assert result.fun < 1e-10 and result.nit > 0 and result.nfev >= result.nit
    assert isinstance(result.message, str) and isinstance(result.success, bool)


def test_minimize_with_separate_jac_and_finite_differences():
    x0 = np.array([-1.2, 1.0])
    with_jac = optimizers.minimize(so.rosen, x0, method="bfgs", jac=so.rosen_der, tol=1e-10, max_iter=200)
    np.testing.assert_allclose(with_jac.x, 1.0, atol=1e-6)
    numeric = optimizers.minimize(so.rosen, x0, method="lbfgs", max_iter=200)  # SciPy's 2-point gradient
    np.testing.assert_allclose(numeric.x, 1.0, atol=1e-3)
    assert numeric.njev == 0 and numeric.nfev > numeric.nit
    three = optimizers.minimize(so.rosen, x0, method="cg", jac="3-point", max_iter=200)
    np.testing.assert_allclose(three.x, 1.0, atol=1e-4)


def test_minimize_bounds_are_respected():
    result = optimizers.minimize(rosenbrock, np.zeros(3), method="lbfgs", jac=True, bounds=[(-1, 0.5), (0, 2), (None, 2)])
    assert result.x[0] == pytest.approx(0.5) and np.all(result.x[1:] <= 2)
    result = optimizers.minimize(rosenbrock, np.full(3, 3.0), method="lbfgs", jac=True, bounds=so.Bounds(-1, 2))
    assert np.all(result.x >= -1) and np.all(result.x <= 2)  # x0 outside the box is clipped into it


def test_minimize_passes_other_scipy_methods_through():
    for method in ["Nelder-Mead", "powell", "tnc", "slsqp", "trust-constr"]:
        result = optimizers.minimize(rosenbrock, np.array([-1.2, 1.0]), method=method, jac=True, max_iter=3000,
                                     tol=1e-10)
        np.testing.assert_allclose(result.x, 1.0, atol=1e-3, err_msg=method)
        assert result.nfev > 0


def test_hessian_vector_products_by_differences_of_gradients():
    from fusenet.optimizers._problem import Problem

    a = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    problem = Problem("test", lambda x: (0.5 * x @ a @ x, a @ x), np.zeros(3), jac=True)
    p = np.array([1.0, -2.0, 0.5])
    x = np.array([0.3, -0.1, 2.0])
    problem.fg(x)
    before = problem.nfev
    np.testing.assert_allclose(problem.hessp(x, p), a @ p, rtol=1e-6)
    assert problem.nfev == before + 1  # g(x) reused from the iterate
    np.testing.assert_allclose(problem.hessp(x, p, central=True), a @ p, rtol=1e-8)
    np.testing.assert_array_equal(problem.hessp(x, np.zeros(3)), np.zeros(3))


@requires_torch
def test_lbfgs_matches_torch_lbfgs(rng):
    x, y, _, _ = least_squares(rng, n=40, d_in=5, d_out=2)
    net = FlatLoop([layers.Dense(2, dtype="float64")], "mse")
    net.build(x)
    kernel0, bias0 = (w.copy() for w in net.layers[0].get_weights())
    net.fit(optimizers.LBFGS(max_iter=100, tol=1e-14), x, y)

    w = torch.tensor(kernel0, requires_grad=True)
    b = torch.tensor(bias0, requires_grad=True)
    xt, yt = torch.tensor(x), torch.tensor(y)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.mean((xt @ w + b - yt) ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    torch_loss = float(torch.mean((xt @ w + b - yt) ** 2).detach())
    our_loss = float(np.mean((net.predict(x) - y) ** 2))
    assert our_loss == pytest.approx(torch_loss, rel=1e-6)
    np.testing.assert_allclose(net.layers[0].params["kernel"], w.detach().numpy(), atol=1e-6)


# ---------------------------------------------------------------- config and registry
CONFIG_CASES = {
    "lbfgs": lambda: optimizers.LBFGS(max_iter=7, tol=1e-9, memory=5, max_fun=99, max_line_search=10,
                                      bounds=[(-1, 1), (None, 2.5)]),
    "lbfgs_scalar_bounds": lambda: optimizers.LBFGS(bounds=(-2, None), name="boxed"),
    "bfgs": lambda: optimizers.BFGS(max_iter=3, tol=1e-4),
    "cg": lambda: optimizers.ConjugateGradient(max_iter=9),
    "newton_cg": lambda: optimizers.NewtonCG(tol=1e-7, finite_difference="central"),
    "trust_region": lambda: optimizers.TrustRegion(method="trust-ncg", initial_trust_radius=0.5, max_trust_radius=10),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_round_trip(name):
    opt = CONFIG_CASES[name]()
    config = opt.get_config()
    assert json.loads(json.dumps(config)) == config
    clone = type(opt).from_config(copy.deepcopy(config))
    assert type(clone) is type(opt) and clone.get_config() == config
    spec = optimizers.serialize(opt)
    assert optimizers.deserialize(copy.deepcopy(spec)).get_config() == config
    state = opt.get_state()  # no slots: the quasi-Newton memory lives inside one minimize() call
    assert state["slots"] == [] and state["class_name"] == type(opt).__name__
    clone.set_state(state)


def test_get_by_name():
    names = {"lbfgs": "LBFGS", "bfgs": "BFGS", "cg": "ConjugateGradient", "conjugategradient": "ConjugateGradient",
             "newton_cg": "NewtonCG", "NewtonCG": "NewtonCG", "trust_region": "TrustRegion",
             "TrustRegion": "TrustRegion", "LBFGS": "LBFGS"}
    for name, cls in names.items():
        assert type(optimizers.get(name)).__name__ == cls
    for name in ["lbfgs", "cg", "newton_cg", "trust_region"]:
        assert name in optimizers.available()
    assert "fullbatchoptimizer" not in optimizers.available()


# ---------------------------------------------------------------- errors
def test_bad_arguments():
    with pytest.raises(ValueError, match=r"LBFGS: expected max_iter to be a positive integer\. Received: max_iter=0"):
        optimizers.LBFGS(max_iter=0)
    with pytest.raises(ValueError, match=r"BFGS: expected tol .*Received: tol=-1"):
        optimizers.BFGS(tol=-1)
    with pytest.raises(ValueError, match="memory"):
        optimizers.LBFGS(memory=0)
    with pytest.raises(ValueError, match=r"TrustRegion: expected method to be one of \['trust-krylov', 'trust-ncg'\]"):
        optimizers.TrustRegion(method="dogleg")
    with pytest.raises(ValueError, match="initial_trust_radius <= max_trust_radius"):
        optimizers.TrustRegion(initial_trust_radius=5, max_trust_radius=1)
    with pytest.raises(ValueError, match="finite_difference"):
        optimizers.NewtonCG(finite_difference="backward")
    with pytest.raises(ValueError, match="expected low <= high"):
        optimizers.LBFGS(bounds=(1, -1))
    with pytest.raises(TypeError, match="expected bounds to be"):
        optimizers.LBFGS(bounds=3)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"minimize: unknown method 'adam'\. Valid methods: \[.*'bfgs'.*'lbfgs'.*'pso'"):
        optimizers.minimize(rosenbrock, np.zeros(2), method="adam")
    with pytest.raises(TypeError, match=r"method 'bfgs' \(BFGS\) takes the options \['max_iter', 'tol'\]"):
        optimizers.minimize(rosenbrock, np.zeros(2), method="bfgs", popsize=3)


def test_bounds_errors():
    with pytest.raises(ValueError, match=r"BFGS does not support bounds; use LBFGS.*Received: bounds=\(-1, 1\)"):
        optimizers.minimize(rosenbrock, np.zeros(2), method="bfgs", jac=True, bounds=(-1, 1))
    with pytest.raises(ValueError, match="does not support bounds"):
        optimizers.ConjugateGradient().minimize(rosenbrock, np.zeros(2), jac=True, bounds=[(0, 1), (0, 1)])
    with pytest.raises(ValueError, match=r"expected one \(low, high\) pair per parameter, 3 pairs\. Received 2 pairs"):
        optimizers.minimize(rosenbrock, np.zeros(3), method="lbfgs", jac=True, bounds=[(0, 1), (0, 1)])
    with pytest.raises(ValueError, match="Received item 1"):
        optimizers.LBFGS(bounds=[(0, 1), (0, 1, 2)])


def test_non_finite_loss_at_the_start_point(rng):
    with pytest.raises(ValueError, match=r"LBFGS\.minimize: the loss at the start point is not finite \(loss=nan\)"):
        optimizers.LBFGS().minimize(lambda x: (np.nan, np.zeros_like(x)), np.zeros(2), jac=True)
    x = rng.normal(size=(4, 2))
    y = np.full((4, 2), np.nan)
    net = FlatLoop([layers.Dense(2, dtype="float64")], "mse")
    with pytest.raises(ValueError, match="not finite"):
        net.fit(optimizers.BFGS(), x, y)


def test_other_errors():
    with pytest.raises(ValueError, match=r"NewtonCG needs the gradient"):
        optimizers.minimize(so.rosen, np.zeros(2), method="newton_cg")
    with pytest.raises(ValueError, match=r"TrustRegion needs the gradient"):
        optimizers.TrustRegion().minimize(so.rosen, np.zeros(2))
    with pytest.raises(ValueError, match=r"x0 is required"):
        optimizers.LBFGS().minimize(so.rosen)
    with pytest.raises(ValueError, match=r"expected x0 to be a non-empty 1-D vector"):
        optimizers.LBFGS().minimize(so.rosen, np.zeros((2, 2)))
    with pytest.raises(TypeError, match="expected jac to be"):
        optimizers.LBFGS().minimize(so.rosen, np.zeros(2), jac="exact")
    with pytest.raises(TypeError, match="expected fn to be callable"):
        optimizers.LBFGS().minimize(3, np.zeros(2))
    with pytest.raises(TypeError, match="expected the objective to return a number"):
        optimizers.LBFGS().minimize(lambda x: "a", np.zeros(2))
    with pytest.raises(ValueError, match=r"expected the gradient to have shape \(2,\)"):
        optimizers.LBFGS().minimize(lambda x: (1.0, np.zeros(3)), np.zeros(2), jac=True)
    with pytest.raises(TypeError, match="callback"):
        optimizers.LBFGS().minimize(so.rosen, np.zeros(2), callback=3)
    with pytest.raises(TypeError, match="method to be a string"):
        optimizers.minimize(so.rosen, np.zeros(2), method=None)


def test_protocol_errors(rng):
    layer = layers.Dense(2)
    with pytest.raises(ValueError, match="no trainable parameters"):
        optimizers.make_objective([layer], forward_loss=lambda: 0.0)
    layer(np.ones((1, 2)))
    with pytest.raises(ValueError, match="Received neither"):
        optimizers.make_objective([layer])
    with pytest.raises(TypeError, match="expected forward_loss to be callable"):
        optimizers.make_objective([layer], forward_loss=1.0)
    with pytest.raises(TypeError, match="expected .* pairs"):
        optimizers.FlatParameters([np.zeros(2)])
    with pytest.raises(TypeError, match="float numpy array"):
        optimizers.FlatParameters([(np.zeros(2), [0.0, 0.0])])
    with pytest.raises(ValueError, match="grad 0 must be an ndarray of the param's shape"):
        optimizers.FlatParameters([(np.zeros(3), np.zeros(2))])
    with pytest.raises(TypeError, match="gradient_pairs"):
        optimizers.FlatParameters.from_layers([object()])
    flat = optimizers.FlatParameters.from_layers(layer)
    with pytest.raises(ValueError, match=r"expected x of shape \(6,\)"):
        flat.set(np.zeros(5))
    derivative_free = optimizers.make_objective([layer], forward_loss=lambda: 1.0)
    with pytest.raises(ValueError, match="no gradients"):
        derivative_free.value_and_grad(derivative_free.x0())
    with pytest.raises(ValueError, match="NewtonCG needs the gradient"):
        optimizers.NewtonCG().minimize(derivative_free)
    bad = optimizers.make_objective([layer], forward_loss=lambda: "loss")
    with pytest.raises(TypeError, match=r"expected forward_loss\(\) to return the loss as a number"):
        bad.value(bad.x0())
    with pytest.raises(ValueError, match="x0 has 5 entries, but the model has 6 parameters"):
        optimizers.LBFGS().minimize(derivative_free, np.zeros(5))
