"""Core layers: Input, Identity, Dense, Dropout, Flatten, Reshape, Permute, RepeatVector."""

import numpy as np
import pytest

import fusenet
from fusenet import layers
from fusenet.errors import BackwardBeforeForwardError, NotBuiltError
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.Input((5,)), normal(3, 5)),
    LayerCase(lambda: layers.Identity(), normal(3, 5)),
    LayerCase(lambda: layers.Dense(4, activation="relu"), normal(3, 5)),
    LayerCase(lambda: layers.Dense(4, use_bias=False, name="nobias"), normal(2, 3, 5), id="Dense-nobias-3d"),
    LayerCase(lambda: layers.Dropout(0.3, seed=1), normal(3, 5)),
    LayerCase(lambda: layers.Flatten(), normal(2, 3, 4, 5)),
    LayerCase(lambda: layers.Reshape((-1, 2)), normal(2, 3, 4)),
    LayerCase(lambda: layers.Permute((2, 1)), normal(2, 3, 4)),
    LayerCase(lambda: layers.RepeatVector(3), normal(2, 4)),
]


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c.id)
def test_gradients_float64(case, rng):
    layer = case.make()
    check_layer_gradients(layer, case.make_input(rng))


def test_dense_gradient_with_every_option(rng):
    for activation in ("linear", "relu"):
        for use_bias in (True, False):
            check_layer_gradients(layers.Dense(3, activation=activation, use_bias=use_bias), rng.normal(size=(4, 2, 5)))


# ---------------------------------------------------------------- torch parity
@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_parity(rng, dtype, use_bias):
    layer = layers.Dense(7, use_bias=use_bias, dtype=dtype)
    x = rng.normal(size=(6, 2, 5)).astype(dtype)

    def torch_dense(xt, p):
        return torch.nn.functional.linear(xt, p["kernel"].T, p.get("bias"))

    check_layer_parity(layer, x, torch_dense, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reshaping_parity(rng, dtype):
    x = rng.normal(size=(2, 3, 4, 5)).astype(dtype)
    check_layer_parity(layers.Flatten(), x, lambda t, p: torch.flatten(t, 1), dtype=dtype)
    check_layer_parity(layers.Reshape((4, -1)), x, lambda t, p: t.reshape(2, 4, 15), dtype=dtype)
    check_layer_parity(layers.Permute((3, 1, 2)), x, lambda t, p: t.permute(0, 3, 1, 2), dtype=dtype)
    x2 = x[:, 0, 0, :]
    check_layer_parity(layers.RepeatVector(4), x2, lambda t, p: t[:, None, :].repeat(1, 4, 1), dtype=dtype)


# ---------------------------------------------------------------- behaviour
def test_dense_keras_layout_and_dtype(rng):
    layer = layers.Dense(3)
    y = layer(rng.normal(size=(2, 5)).astype(np.float32))
    assert layer.params["kernel"].shape == (5, 3) and layer.params["bias"].shape == (3,)
    assert [w.shape for w in layer.get_weights()] == [(5, 3), (3,)]
    assert y.dtype == np.float32 and layer.dtype == "float32"
    assert layers.Dense(3)(np.ones((2, 5), dtype=np.float64)).dtype == np.float64
    assert layers.Dense(3, dtype="float64")(np.ones((2, 5), dtype=np.float32)).dtype == np.float64
    assert layers.Dense(3)(np.ones((2, 5), dtype=np.int64)).dtype == np.float32


def test_dropout_inverted_and_seeded(rng):
    x = np.ones((2000, 50))
    a = layers.Dropout(0.25, seed=3)(x, training=True)
    b = layers.Dropout(0.25, seed=3)(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0 / 0.75}
    assert abs((a == 0).mean() - 0.25) < 0.01
    np.testing.assert_array_equal(layers.Dropout(0.25)(x, training=False), x)
    fusenet.set_random_seed(7)
    c = layers.Dropout(0.5)(x, training=True)
    fusenet.set_random_seed(7)
    d = layers.Dropout(0.5)(x, training=True)
    np.testing.assert_array_equal(c, d)


def test_dropout_noise_shape(rng):
    y = layers.Dropout(0.5, noise_shape=(None, 1, 4), seed=0)(np.ones((3, 5, 4)), training=True)
    assert (y == y[:, :1, :]).all()


def test_same_seed_same_weights():
    fusenet.set_random_seed(42)
    a = layers.Dense(4)
    a.build((None, 3))
    fusenet.set_random_seed(42)
    b = layers.Dense(4)
    b.build((None, 3))
    np.testing.assert_array_equal(a.params["kernel"], b.params["kernel"])


def test_inference_keeps_nothing(rng):
    layer = layers.Dense(3)
    layer(rng.normal(size=(2, 4)), training=True)
    layer(rng.normal(size=(2, 4)), training=False)
    assert layer._cache is None


# ---------------------------------------------------------------- errors
def test_wrong_last_dimension_names_layer_and_shapes():
    layer = layers.Dense(3, name="head")
    layer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"layer 'head' \(Dense\).*axis -1 of input shape to have value 4.*\(2, 5\)"):
        layer(np.zeros((2, 5)))


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"layer 'perm' \(Permute\).*expected ndim=3.*\(2, 3\)"):
        layers.Permute((2, 1), name="perm")(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Input .*expected ndim=2"):
        layers.Input((4,))(np.zeros((2, 4, 1)))


def test_non_numeric_dtype_is_type_error():
    with pytest.raises(TypeError, match=r"Layer 'txt' \(Dense\) expected a numeric array.*<U"):
        layers.Dense(2, name="txt")(np.array([["a", "b"]]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.Dense(0), r"units=0"),
        (lambda: layers.Dense(-3), r"units=-3"),
        (lambda: layers.Dropout(1.5), r"rate=1.5"),
        (lambda: layers.Dropout(-0.1), r"rate=-0.1"),
        (lambda: layers.Reshape((0, 2)), r"target_shape"),
        (lambda: layers.Reshape((-1, -1)), r"at most one -1"),
        (lambda: layers.Permute((0, 1)), r"permutation"),
        (lambda: layers.RepeatVector(0), r"n=0"),
        (lambda: layers.Input((0, 3)), r"positive"),
        (lambda: layers.Dense(3, activation="nope"), r"Unknown activation: 'nope'. Expected one of \[.*'relu'"),
        (lambda: layers.Dense(3, kernel_initializer="nope"), r"Unknown initializer: 'nope'. Expected one of \[.*'glorot_uniform'"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types():
    with pytest.raises(TypeError, match=r"units='3'"):
        layers.Dense("3")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['unitz'\]"):
        layers.Dense(3, unitz=4)


def test_backward_before_training_forward():
    layer = layers.Dense(2, name="d0")
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'd0' \(Dense\): backward\(\) was called without"):
        layer.backward(np.zeros((1, 2)))
    layer(np.zeros((1, 3)), training=False)
    with pytest.raises(BackwardBeforeForwardError):
        layer.backward(np.zeros((1, 2)))


def test_count_params_before_build():
    with pytest.raises(NotBuiltError, match="not built"):
        layers.Dense(2).count_params()


def test_reshape_incompatible_size():
    with pytest.raises(ValueError, match=r"cannot reshape input of shape \(2, 3, 4\) to \(5,\)"):
        layers.Reshape((5,))(np.zeros((2, 3, 4)))


def test_grads_accumulate_and_zero(rng):
    layer = layers.Dense(3)
    x = rng.normal(size=(4, 2))
    layer(x, training=True)
    layer.backward(np.ones((4, 3)))
    once = layer.grads["kernel"].copy()
    layer(x, training=True)
    layer.backward(np.ones((4, 3)))
    np.testing.assert_allclose(layer.grads["kernel"], 2 * once)
    layer.zero_grad()
    assert not layer.grads["kernel"].any()


def test_unknown_layer_class_refused():
    with pytest.raises(ValueError, match="Unknown layer class: 'os.system'"):
        layers.deserialize({"class_name": "os.system", "config": {}})
