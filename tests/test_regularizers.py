"""Regularizers and constraints: values, gradients, and their use in layers."""

import numpy as np
import pytest

from fusenet import constraints, layers, regularizers
from tests.gradcheck import assert_gradients_close, numerical_gradient


@pytest.mark.parametrize("reg", [regularizers.L1(0.3), regularizers.L2(0.2), regularizers.L1L2(0.1, 0.05),
                                 regularizers.OrthogonalRegularizer(0.5, "rows"),
                                 regularizers.OrthogonalRegularizer(0.5, "columns")], ids=repr)
def test_regularizer_gradient(reg, rng):
    w = rng.normal(size=(4, 5))
    num = numerical_gradient(lambda: reg(w), w)
    assert_gradients_close(reg.gradient(w), num, repr(reg))


def test_regularizer_values_match_keras_formulas(rng):
    w = rng.normal(size=(3, 4))
    assert regularizers.L2(0.1)(w) == pytest.approx(0.1 * np.sum(w**2))
    assert regularizers.L1(0.1)(w) == pytest.approx(0.1 * np.sum(np.abs(w)))
    n = w / np.linalg.norm(w, axis=1, keepdims=True)
    p = n @ n.T
    expected = 0.2 * 0.5 * np.sum(np.abs(p - np.diag(np.diag(p)))) / 3.0
    assert regularizers.OrthogonalRegularizer(0.2)(w) == pytest.approx(expected)


def test_dense_regularizers_enter_loss_and_grads(rng):
    layer = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.5),
                         activity_regularizer=regularizers.L2(0.1))
    x = rng.normal(size=(4, 2))
    y = layer(x, training=True)
    k, b = layer.params["kernel"], layer.params["bias"]
    expected = 0.01 * np.sum(k**2) + 0.5 * np.sum(np.abs(b)) + 0.1 * np.sum(y**2) / 4
    assert layer.regularization_loss() == pytest.approx(expected)
    layer.zero_grad()
    layer.add_regularization_gradients()
    np.testing.assert_allclose(layer.grads["kernel"], 0.02 * k)
    dy = np.zeros_like(y)
    np.testing.assert_allclose(layer.activity_gradient(dy), 0.2 * y / 4)
    cfg = layer.get_config()
    clone = layers.Dense.from_config(cfg)
    assert clone.kernel_regularizer == layer.kernel_regularizer and clone.activity_regularizer == layer.activity_regularizer


@pytest.mark.parametrize("c, check", [
    (constraints.NonNeg(), lambda w: (w >= 0).all()),
    (constraints.MaxNorm(1.0), lambda w: (np.linalg.norm(w, axis=0) <= 1.0 + 1e-6).all()),
    (constraints.UnitNorm(), lambda w: np.allclose(np.linalg.norm(w, axis=0), 1.0, atol=1e-5)),
    (constraints.MinMaxNorm(0.5, 0.8), lambda w: ((np.linalg.norm(w, axis=0) >= 0.5 - 1e-6) & (np.linalg.norm(w, axis=0) <= 0.8 + 1e-6)).all()),
], ids=lambda c: type(c).__name__)
def test_constraints_applied_in_place(c, check, rng):
    layer = layers.Dense(3, kernel_constraint=c)
    layer(rng.normal(size=(2, 4)))
    layer.params["kernel"][...] = rng.normal(size=(4, 3)) * 3
    kernel = layer.params["kernel"]
    layer.apply_constraints()
    assert layer.params["kernel"] is kernel and check(kernel)
    assert constraints.deserialize(constraints.serialize(c)) == c


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown regularizer: 'l3'. Expected one of \["):
        regularizers.get("l3")
    with pytest.raises(ValueError, match=r"Unknown constraint: 'positive'"):
        constraints.get("positive")
    with pytest.raises(ValueError, match=r"l2=-1"):
        regularizers.L2(-1)
