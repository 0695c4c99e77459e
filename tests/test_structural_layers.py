"""Merge, composite (Residual, TimeDistributed), padding/cropping/up-sampling, noise and
preprocessing layers."""

import numpy as np
import pytest

from fusenet import layers
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


def normals(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


CONTRACT_CASES = [
    LayerCase(lambda: layers.Add(), normals((3, 4), (3, 4), (3, 4))),
    LayerCase(lambda: layers.Subtract(), normals((3, 4), (3, 4))),
    LayerCase(lambda: layers.Multiply(), normals((3, 4), (3, 4), (3, 4))),
    LayerCase(lambda: layers.Average(), normals((3, 4), (3, 4))),
    LayerCase(lambda: layers.Maximum(), normals((3, 4), (3, 4), (3, 4))),
    LayerCase(lambda: layers.Minimum(), normals((3, 4), (3, 4))),
    LayerCase(lambda: layers.Concatenate(axis=1), normals((2, 3, 4), (2, 2, 4))),
    LayerCase(lambda: layers.Dot(axes=-1), normals((3, 4), (3, 4))),
    LayerCase(lambda: layers.Dot(axes=(2, 2), normalize=True), normals((2, 3, 4), (2, 5, 4)), id="Dot-3d-normalize"),
    LayerCase(lambda: layers.Dot(axes=(1, 1)), normals((2, 4, 3), (2, 4)), id="Dot-3d-2d"),
    LayerCase(lambda: layers.Residual([layers.Dense(5, activation="relu"), layers.Dense(4)]), normal(3, 4)),
    LayerCase(lambda: layers.Residual([layers.Dense(6)], shortcut=layers.Dense(6, use_bias=False)), normal(3, 4),
              id="Residual-projection"),
    LayerCase(lambda: layers.Residual([layers.Dense(2)], merge="concatenate"), normal(3, 4), id="Residual-concat"),
    LayerCase(lambda: layers.TimeDistributed(layers.Dense(3)), normal(2, 5, 4)),
    LayerCase(lambda: layers.ZeroPadding1D((1, 2)), normal(2, 5, 3)),
    LayerCase(lambda: layers.ZeroPadding2D(((1, 0), (2, 1))), normal(2, 4, 5, 3)),
    LayerCase(lambda: layers.ZeroPadding3D(1), normal(2, 3, 3, 2, 2)),
    LayerCase(lambda: layers.Cropping1D((1, 2)), normal(2, 6, 3)),
    LayerCase(lambda: layers.Cropping2D(((1, 0), (0, 2))), normal(2, 4, 5, 3)),
    LayerCase(lambda: layers.Cropping3D(1), normal(2, 4, 4, 3, 2)),
    LayerCase(lambda: layers.UpSampling1D(3), normal(2, 4, 3)),
    LayerCase(lambda: layers.UpSampling2D((2, 3)), normal(2, 3, 2, 3)),
    LayerCase(lambda: layers.UpSampling3D(2), normal(2, 2, 2, 2, 2)),
    LayerCase(lambda: layers.SpatialDropout1D(0.3, seed=1), normal(2, 5, 4)),
    LayerCase(lambda: layers.SpatialDropout2D(0.3, seed=1), normal(2, 3, 3, 4)),
    LayerCase(lambda: layers.SpatialDropout3D(0.3, seed=1), normal(2, 2, 2, 2, 4)),
    LayerCase(lambda: layers.GaussianNoise(0.1, seed=2), normal(3, 4)),
    LayerCase(lambda: layers.GaussianDropout(0.2, seed=2), normal(3, 4)),
    LayerCase(lambda: layers.AlphaDropout(0.2, seed=2), normal(3, 4)),
    LayerCase(lambda: layers.ActivityRegularization(l1=0.01, l2=0.02), normal(3, 4)),
    LayerCase(lambda: layers.Rescaling(1 / 255.0, offset=-0.5), normal(2, 3, 3, 2)),
    LayerCase(lambda: layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 4.0, 9.0]), normal(4, 3)),
]


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c.id)
def test_gradients_float64(case, rng):
    check_layer_gradients(case.make(), case.make_input(rng))


# ---------------------------------------------------------------- merges
def test_merge_values(rng):
    a, b, c = (rng.normal(size=(3, 4)) for _ in range(3))
    np.testing.assert_allclose(layers.Add()([a, b, c]), a + b + c)
    np.testing.assert_allclose(layers.Multiply()([a, b, c]), a * b * c)
    np.testing.assert_allclose(layers.Average()([a, b]), (a + b) / 2)
    np.testing.assert_allclose(layers.Maximum()([a, b, c]), np.maximum(np.maximum(a, b), c))
    np.testing.assert_allclose(layers.Dot(axes=1)([a, b]), np.sum(a * b, axis=1, keepdims=True))


def test_maximum_tie_gradient_goes_to_first_input():
    a = np.array([[1.0, 2.0]])
    layer = layers.Maximum()
    layer([a, a.copy()], training=True)
    da, db = layer.backward(np.ones((1, 2)))
    np.testing.assert_array_equal(da, [[1.0, 1.0]])
    np.testing.assert_array_equal(db, [[0.0, 0.0]])


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_merge_and_resizing_parity(rng, dtype):
    xs = [rng.normal(size=(2, 3, 4)).astype(dtype) for _ in range(2)]
    check_layer_parity(layers.Concatenate(axis=1), xs, lambda t, p: torch.cat(t, dim=1), dtype=dtype)
    check_layer_parity(layers.Multiply(), xs, lambda t, p: t[0] * t[1], dtype=dtype)
    check_layer_parity(layers.Dot(axes=2), xs, lambda t, p: torch.bmm(t[0], t[1].transpose(1, 2)), dtype=dtype)
    img = rng.normal(size=(2, 4, 5, 3)).astype(dtype)

    def torch_pad(t, p):  # NHWC -> pad W by (2, 1), H by (1, 0)
        return torch.nn.functional.pad(t.permute(0, 3, 1, 2), (2, 1, 1, 0)).permute(0, 2, 3, 1)

    check_layer_parity(layers.ZeroPadding2D(((1, 0), (2, 1))), img, torch_pad, dtype=dtype)

    def torch_up(t, p):
        return torch.nn.functional.interpolate(t.permute(0, 3, 1, 2), scale_factor=(2, 3), mode="nearest").permute(0, 2, 3, 1)

    check_layer_parity(layers.UpSampling2D((2, 3)), img, torch_up, dtype=dtype)


# ---------------------------------------------------------------- composites
@requires_torch
def test_residual_parity_with_projection(rng):
    body = [layers.Dense(6, activation="relu"), layers.Dense(5)]
    block = layers.Residual(body, shortcut=layers.Dense(5, use_bias=False), dtype="float64")
    x = rng.normal(size=(4, 3))

    def torch_block(t, p):
        names = sorted(p)
        k1, b1, k2, b2, ks = (p[n] for n in (
            next(n for n in names if n.startswith("body0") and n.endswith("kernel")),
            next(n for n in names if n.startswith("body0") and n.endswith("bias")),
            next(n for n in names if n.startswith("body1") and n.endswith("kernel")),
            next(n for n in names if n.startswith("body1") and n.endswith("bias")),
            next(n for n in names if n.startswith("shortcut0"))))
        return torch.relu(t @ k1 + b1) @ k2 + b2 + t @ ks

    check_layer_parity(block, x, torch_block)


def test_residual_weights_are_the_sublayers(rng):
    d1, d2 = layers.Dense(4), layers.Dense(4)
    block = layers.Residual([d1, d2])
    block(rng.normal(size=(2, 4)))
    assert [w.shape for w in block.get_weights()] == [(4, 4), (4,), (4, 4), (4,)]
    assert block.params[f"body0_{d1.name}/kernel"] is d1.params["kernel"]
    assert len(block.gradient_pairs()) == 4
    d2.trainable = False
    assert len(block.gradient_pairs()) == 2


def test_residual_shape_mismatch_is_clear(rng):
    with pytest.raises(ValueError, match=r"layer 'res' \(Residual\).*|inputs of the same shape"):
        layers.Residual([layers.Dense(3)], name="res")(rng.normal(size=(2, 4)))


def test_time_distributed_is_one_dense_over_all_steps(rng):
    dense = layers.Dense(3)
    td = layers.TimeDistributed(dense)
    x = rng.normal(size=(2, 5, 4))
    np.testing.assert_allclose(td(x), dense(x.reshape(10, 4)).reshape(2, 5, 3))


# ---------------------------------------------------------------- noise
def test_noise_layers_identity_at_inference(rng):
    x = rng.normal(size=(4, 3, 3, 2))
    for layer in (layers.SpatialDropout2D(0.5), layers.GaussianNoise(1.0), layers.GaussianDropout(0.5),
                  layers.AlphaDropout(0.5)):
        np.testing.assert_array_equal(layer(x, training=False), x)


def test_spatial_dropout_drops_whole_channels(rng):
    y = layers.SpatialDropout2D(0.5, seed=0)(np.ones((8, 4, 4, 6)), training=True)
    per_channel = y.reshape(8, 16, 6)
    assert (per_channel == per_channel[:, :1, :]).all()
    assert set(np.unique(y)) <= {0.0, 2.0}


def test_alpha_dropout_keeps_selu_statistics():
    x = np.random.default_rng(0).normal(size=(400, 500))
    y = layers.AlphaDropout(0.2, seed=0)(x, training=True)
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1.0) < 0.01


# ---------------------------------------------------------------- preprocessing
def test_normalization_adapt_and_invert(rng):
    data = rng.normal(3.0, 2.0, size=(500, 4))
    norm = layers.Normalization()
    norm.adapt(data)
    out = norm(data)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    inv = layers.Normalization(mean=norm.state["mean"].ravel(), variance=norm.state["variance"].ravel(), invert=True)
    np.testing.assert_allclose(inv(out), data, rtol=1e-5, atol=1e-5)


def test_rescaling(rng):
    x = rng.integers(0, 256, size=(2, 3, 3, 1))
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1)(x), x / 127.5 - 1, rtol=1e-6)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("make, match", [
    (lambda: layers.Concatenate(axis=0), r"axis=0"),
    (lambda: layers.Dot(axes=(0, 1)), r"batch axis"),
    (lambda: layers.Residual([]), r"at least one layer"),
    (lambda: layers.Residual([layers.Dense(2)], merge="max"), r"merge='max'"),
    (lambda: layers.ZeroPadding2D(-1), r"non-negative"),
    (lambda: layers.UpSampling2D(0), r"positive"),
    (lambda: layers.UpSampling2D(2, interpolation="bilinear"), r"interpolation='bilinear'"),
    (lambda: layers.GaussianDropout(1.0), r"rate=1.0"),
    (lambda: layers.GaussianNoise(-1), r"stddev=-1"),
    (lambda: layers.Normalization(mean=[1.0]), r"both mean and variance"),
])
def test_invalid_configs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_merge_input_errors(rng):
    with pytest.raises(ValueError, match=r"layer 'add_me' \(Add\) expects a list of at least 2 arrays"):
        layers.Add(name="add_me")(rng.normal(size=(2, 3)))
    with pytest.raises(ValueError, match=r"input 0 has shape \(2, 3\) and input 1 has shape \(2, 4\)"):
        layers.Add()([rng.normal(size=(2, 3)), rng.normal(size=(2, 4))])
    with pytest.raises(ValueError, match=r"except along axis -1.*\(2, 3, 4\).*\(2, 2, 4\)"):
        layers.Concatenate()([rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 2, 4))])
    with pytest.raises(ValueError, match=r"Cropping2D.*leaves nothing"):
        layers.Cropping2D(2)(rng.normal(size=(1, 4, 4, 1)))
    with pytest.raises(ValueError, match=r"TimeDistributed.*rank >= 3"):
        layers.TimeDistributed(layers.Dense(2))(rng.normal(size=(2, 3)))


def test_residual_in_sequential_builds_sublayers_in_its_dtype():
    from fusenet import models

    block = layers.Residual([layers.Dense(4), layers.Dense(4)], dtype="float64")
    model = models.Sequential([layers.Input((4,)), block])
    assert model.built and all(layer.dtype == "float64" for layer in block.body)
