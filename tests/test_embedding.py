"""Embedding layers: Embedding (token lookup) and PositionalEmbedding (learned positions)."""

import numpy as np
import pytest

from fusenet import constraints, layers, regularizers
from fusenet.errors import BackwardBeforeForwardError
from fusenet.initializers import RandomUniform
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch


def ids(high, *shape):
    return lambda rng: rng.integers(0, high, size=shape)


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.Embedding(10, 4), ids(10, 3, 5)),
    LayerCase(lambda: layers.Embedding(6, 3, embeddings_initializer="glorot_uniform", name="emb1d"), ids(6, 7),
              id="Embedding-1d"),
    LayerCase(lambda: layers.Embedding(5, 2, embeddings_regularizer="l2", embeddings_constraint="non_neg"),
              ids(5, 2, 3, 2), id="Embedding-reg-3d"),
    LayerCase(lambda: layers.PositionalEmbedding(6), normal(2, 4, 3)),
    LayerCase(lambda: layers.PositionalEmbedding(3, initializer="random_normal"), normal(2, 2, 3, 5),
              id="PositionalEmbedding-4d"),
]


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 2)])
def test_embedding_gradient_float64(rng, shape):
    # few ids over many positions, so repeated ids must be summed
    x = rng.integers(0, 4, size=shape)
    errors = check_layer_gradients(layers.Embedding(6, 3), x, check_input=False)
    assert set(errors) == {"embeddings"}


@pytest.mark.parametrize("shape", [(2, 4, 3), (2, 6, 3), (2, 2, 3, 2)])
def test_positional_embedding_gradient_float64(rng, shape):
    check_layer_gradients(layers.PositionalEmbedding(6), rng.normal(size=shape))


def test_embedding_backward_matches_one_hot_gemm(rng):
    layer = layers.Embedding(7, 5, dtype="float64")
    x = rng.integers(0, 7, size=(6, 9))
    layer(x, training=True)
    dy = rng.normal(size=(6, 9, 5))
    assert layer.backward(dy) is None
    one_hot = np.eye(7)[x.reshape(-1)]
    np.testing.assert_allclose(layer.grads["embeddings"], one_hot.T @ dy.reshape(-1, 5), rtol=1e-12, atol=1e-12)
    untouched = np.setdiff1d(np.arange(7), x)
    assert not layer.grads["embeddings"][untouched].any()


# ---------------------------------------------------------------- torch parity
@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_parity(rng, dtype):
    layer = layers.Embedding(11, 4, dtype=dtype)
    x = rng.integers(0, 11, size=(3, 8))
    check_layer_parity(layer, x, lambda t, p: torch.nn.functional.embedding(t, p["embeddings"]), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_positional_embedding_parity(rng, dtype):
    layer = layers.PositionalEmbedding(9, dtype=dtype)
    x = rng.normal(size=(3, 5, 4)).astype(dtype)
    check_layer_parity(layer, x, lambda t, p: t + p["embeddings"][:5], dtype=dtype)


# ---------------------------------------------------------------- behaviour
def test_embedding_lookup_dtype_and_shape(rng):
    layer = layers.Embedding(10, 3)
    x = rng.integers(0, 10, size=(2, 4))
    y = layer(x)
    assert y.shape == (2, 4, 3) and y.dtype == np.float32 and layer.dtype == "float32"
    np.testing.assert_array_equal(y, layer.params["embeddings"][x])
    assert [w.shape for w in layer.get_weights()] == [(10, 3)]
    assert layers.Embedding(10, 3, dtype="float64")(x).dtype == np.float64
    # float ids do not decide the weights' dtype; whole-number floats are accepted as ids
    float_ids = layers.Embedding(10, 3)
    out = float_ids(x.astype(np.float64))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, float_ids.params["embeddings"][x])


def test_embedding_keeps_integer_ids_uncast(rng):
    layer = layers.Embedding(10, 2)
    x = rng.integers(0, 10, size=(3, 4)).astype(np.int32)
    layer(x, training=True)
    (saved,) = layer._saved()
    assert saved.dtype.kind == "i"
    np.testing.assert_array_equal(saved, x)


def test_embedding_default_initializer_is_keras_uniform():
    layer = layers.Embedding(200, 50)
    layer.build((None, 3))
    w = layer.params["embeddings"]
    assert w.min() >= -0.05 and w.max() <= 0.05 and w.std() > 0.02
    assert layer.get_config()["embeddings_initializer"] == {
        "class_name": "RandomUniform", "config": {"minval": -0.05, "maxval": 0.05, "seed": None}}
    assert isinstance(layer.embeddings_initializer, RandomUniform)


def test_embedding_regularizer_and_constraint(rng):
    layer = layers.Embedding(5, 2, embeddings_regularizer=regularizers.L2(0.1),
                             embeddings_constraint=constraints.NonNeg(), dtype="float64")
    layer(rng.integers(0, 5, size=(2, 3)))
    w = layer.params["embeddings"]
    assert layer.regularization_loss() == pytest.approx(0.1 * float(np.sum(w * w)))
    layer.zero_grad()
    layer.add_regularization_gradients()
    np.testing.assert_allclose(layer.grads["embeddings"], 0.2 * w)
    w[...] = -1.0
    layer.apply_constraints()
    assert (layer.params["embeddings"] == 0).all()


def test_positional_embedding_adds_first_rows(rng):
    layer = layers.PositionalEmbedding(6)
    x = rng.normal(size=(2, 4, 3)).astype(np.float32)
    y = layer(x)
    np.testing.assert_allclose(y, x + layer.params["embeddings"][:4])
    assert layer.params["embeddings"].shape == (6, 3)
    assert layer.compute_output_shape((None, 4, 3)) == (None, 4, 3)


def test_embedding_then_positions_train_step(rng):
    emb, pos = layers.Embedding(8, 4, dtype="float64"), layers.PositionalEmbedding(5, dtype="float64")
    x = rng.integers(0, 8, size=(3, 5))
    h = pos(emb(x, training=True), training=True)
    assert h.shape == (3, 5, 4)
    assert emb.backward(pos.backward(np.ones_like(h))) is None
    np.testing.assert_allclose(pos.grads["embeddings"], np.full((5, 4), 3.0))
    np.testing.assert_allclose(emb.grads["embeddings"].sum(), 3 * 5 * 4)


def test_inference_keeps_nothing(rng):
    layer = layers.Embedding(4, 2)
    layer(rng.integers(0, 4, size=(2, 3)), training=True)
    layer(rng.integers(0, 4, size=(2, 3)), training=False)
    assert layer._cache is None
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'embedding.*\(Embedding\): backward\(\) was called"):
        layer.backward(np.zeros((2, 3, 2)))


# ---------------------------------------------------------------- errors
def test_out_of_range_ids_name_layer_id_and_input_dim():
    layer = layers.Embedding(5, 2, name="tokens")
    with pytest.raises(ValueError, match=r"layer 'tokens' \(Embedding\).*input_dim=5.*received id 7"):
        layer(np.array([[1, 7, 2]]))
    with pytest.raises(ValueError, match=r"layer 'tokens' \(Embedding\).*input_dim=5.*received id -1"):
        layer(np.array([[1, -1, 2]]))
    with pytest.raises(ValueError, match=r"received id 5"):
        layer(np.array([5]))


def test_non_integer_ids_refused():
    with pytest.raises(ValueError, match=r"layer 'e' \(Embedding\): expected integer ids.*float64.*\(1, 2\)"):
        layers.Embedding(5, 2, name="e")(np.array([[1.0, 2.5]]))
    with pytest.raises(TypeError, match=r"Layer 'e2' \(Embedding\) expected a numeric array"):
        layers.Embedding(5, 2, name="e2")(np.array(["a"]))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.Embedding(0, 3), ValueError, r"Embedding: expected input_dim to be a positive integer. Received: input_dim=0"),
        (lambda: layers.Embedding(4, -1), ValueError, r"output_dim=-1"),
        (lambda: layers.Embedding(4.0, 2), TypeError, r"input_dim=4.0"),
        (lambda: layers.Embedding(4, 2, embeddings_initializer="nope"), ValueError, r"Unknown initializer: 'nope'"),
        (lambda: layers.PositionalEmbedding(0), ValueError, r"sequence_length=0"),
        (lambda: layers.PositionalEmbedding(4, initializer="nope"), ValueError, r"Unknown initializer: 'nope'"),
    ],
)
def test_invalid_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_positional_embedding_shape_errors():
    layer = layers.PositionalEmbedding(4, name="pos")
    with pytest.raises(ValueError, match=r"layer 'pos' \(PositionalEmbedding\): expected at most sequence_length=4 .*\(2, 5, 3\)"):
        layer(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"layer 'pos' \(PositionalEmbedding\).*expected min_ndim=3.*\(2, 3\)"):
        layer(np.zeros((2, 3)))
    layer(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"layer 'pos' \(PositionalEmbedding\).*axis -1 of input shape to have value 3.*\(2, 3, 4\)"):
        layer(np.zeros((2, 3, 4)))
