"""Full-batch and derivative-free optimizers through Sequential.fit."""

import numpy as np
import pytest

import fusenet
from fusenet import callbacks, layers, models, optimizers


def _regression(rng):
    x = rng.normal(size=(64, 3))
    w = np.array([[1.5], [-2.0], [0.5]])
    return x, x @ w + 0.25


def test_lbfgs_fit_reaches_the_least_squares_solution(rng):
    x, y = _regression(rng)
    model = models.Sequential([layers.Input((3,)), layers.Dense(1, dtype="float64")])
    model.compile(optimizer=optimizers.LBFGS(max_iter=100, tol=1e-14), loss="mse", metrics=["mae"])
    history = model.fit(x, y, validation_split=0.25, verbose=0)
    kernel, bias = model.get_weights()
    xt, yt = x[:48], y[:48]
    a = np.hstack([xt, np.ones((48, 1))])
    sol = np.linalg.lstsq(a, yt, rcond=None)[0]
    np.testing.assert_allclose(kernel.ravel(), sol[:3].ravel(), atol=1e-8)
    np.testing.assert_allclose(bias, sol[3], atol=1e-8)
    assert {"loss", "mae", "nfev", "val_loss", "val_mae"} <= set(history.history)
    assert len(history.history["loss"]) == model.optimizer.result_.nit


def test_minibatch_refused_and_callbacks_stop(rng):
    x, y = _regression(rng)
    model = models.Sequential([layers.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="lbfgs", loss="mse")
    with pytest.raises(ValueError, match="batch"):
        model.fit(x, y, batch_size=8, verbose=0)
    stop = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(model, "stop_training", epoch >= 2))
    history = model.fit(x, y, callbacks=[stop], verbose=0)
    assert len(history.history["loss"]) == 3


def test_differential_evolution_trains_xor():
    fusenet.set_random_seed(0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    model = models.Sequential([layers.Input((2,)), layers.Dense(4, activation="tanh", dtype="float64"),
                               layers.Dense(2, activation="softmax", dtype="float64")])
    model.compile(optimizer=optimizers.DifferentialEvolution(max_iter=60, seed=0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, verbose=0)
    assert (model.predict(x, verbose=0).argmax(axis=1) == y).all()
