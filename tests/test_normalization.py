"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization, UnitNormalization."""

import numpy as np
import pytest

from fusenet import initializers, layers
from fusenet.errors import BackwardBeforeForwardError
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import assert_close, check_layer_parity, requires_torch, tensor, torch


def normal(*shape, loc=0.0, scale=1.0):
    return lambda rng: rng.normal(loc, scale, size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.BatchNormalization(), normal(4, 3)),
    LayerCase(lambda: layers.BatchNormalization(axis=1, center=False), normal(3, 4, 2, 2), id="BN-axis1-nocenter"),
    LayerCase(lambda: layers.BatchNormalization(axis=[1, 3], scale=False), normal(3, 2, 2, 4), id="BN-axislist-noscale"),
    LayerCase(lambda: layers.LayerNormalization(), normal(3, 5)),
    LayerCase(lambda: layers.LayerNormalization(axis=[1, 2], rms_scaling=True), normal(2, 3, 4), id="LN-rms"),
    LayerCase(lambda: layers.LayerNormalization(center=False, scale=False), normal(2, 3, 4), id="LN-noweights"),
    LayerCase(lambda: layers.GroupNormalization(groups=2), normal(2, 3, 4)),
    LayerCase(lambda: layers.GroupNormalization(groups=-1, axis=1, center=False), normal(2, 4, 3), id="GN-instance"),
    LayerCase(lambda: layers.UnitNormalization(), normal(3, 4)),
    LayerCase(lambda: layers.UnitNormalization(axis=[1, 2]), normal(2, 3, 4), id="UnitNorm-axislist"),
]


# ---------------------------------------------------------------- gradients (float64, training mode)
@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c.id)
def test_gradients_float64(case, rng):
    check_layer_gradients(case.make(), case.make_input(rng))


@pytest.mark.parametrize("shape, axis", [((5, 3), -1), ((5, 3), 1), ((3, 2, 2, 4), -1), ((3, 4, 2, 2), 1),
                                         ((3, 2, 2, 4), [1, 3]), ((2, 3, 4), 0)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batchnorm_gradients(rng, shape, axis, center, scale):
    layer = layers.BatchNormalization(axis=axis, center=center, scale=scale, gamma_initializer="random_normal",
                                      beta_initializer="random_normal")
    check_layer_gradients(layer, rng.normal(1.0, 2.0, size=shape))


def test_batchnorm_frozen_gradients(rng):
    """trainable=False runs in inference mode (Keras); backward is then that of the affine map."""
    layer = layers.BatchNormalization(trainable=False, moving_mean_initializer="random_normal")
    check_layer_gradients(layer, rng.normal(size=(4, 3)))


@pytest.mark.parametrize("shape, axis", [((3, 5), -1), ((2, 3, 4), [1, 2]), ((2, 3, 4), [2, 1]), ((2, 3, 4), 1),
                                         ((2, 3, 2, 2), [1, 3])])
@pytest.mark.parametrize("options", [{}, {"center": False}, {"scale": False}, {"rms_scaling": True}])
def test_layernorm_gradients(rng, shape, axis, options):
    layer = layers.LayerNormalization(axis=axis, gamma_initializer="random_normal", **options)
    check_layer_gradients(layer, rng.normal(size=shape))


@pytest.mark.parametrize("shape, groups, axis", [((2, 3, 4), 2, -1), ((2, 4, 3), -1, 1), ((2, 2, 3, 4), 1, -1),
                                                 ((2, 6, 2, 2), 3, 1), ((3, 4), 2, -1)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, False)])
def test_groupnorm_gradients(rng, shape, groups, axis, center, scale):
    layer = layers.GroupNormalization(groups=groups, axis=axis, center=center, scale=scale,
                                      gamma_initializer="random_normal")
    check_layer_gradients(layer, rng.normal(size=shape))


# ---------------------------------------------------------------- torch parity
def _bn_torch(channel_axis, ndim, training, eps=1e-3):
    """F.batch_norm on channels-first data, with the channels moved from ``channel_axis``."""
    def fn(xt, p):
        xt_cf = torch.movedim(xt, channel_axis, 1)
        gamma, beta = p.get("gamma"), p.get("beta")
        if training:
            y = torch.nn.functional.batch_norm(xt_cf, None, None, gamma, beta, training=True, eps=eps)
        else:
            y = torch.nn.functional.batch_norm(xt_cf, p["moving_mean"], p["moving_variance"], gamma, beta,
                                               training=False, eps=eps)
        return torch.movedim(y, 1, channel_axis)
    return fn


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, axis", [((6, 5), -1), ((4, 3, 3, 5), -1), ((4, 5, 3, 3), 1), ((4, 5, 7), 1)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_parity(rng, dtype, shape, axis, training):
    layer = layers.BatchNormalization(axis=axis, dtype=dtype, gamma_initializer="random_normal",
                                      beta_initializer="random_normal", moving_mean_initializer="random_normal",
                                      moving_variance_initializer=initializers.RandomUniform(0.5, 2.0))
    x = rng.normal(0.5, 2.0, size=shape).astype(dtype)
    layer.build(x.shape)
    if training:
        check_layer_parity(layer, x, _bn_torch(axis % len(shape), len(shape), True), dtype=dtype)
    else:
        y = layer(x, training=False)
        p = {k: tensor(v) for k, v in {**layer.params, **layer.state}.items()}
        expected = _bn_torch(axis % len(shape), len(shape), False)(tensor(x), p)
        assert_close(y, expected, dtype, "BatchNormalization inference")


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_moving_statistics_follow_keras(rng, dtype):
    """Keras: moving = m * moving + (1 - m) * stat with the biased variance; torch: momentum 1 - m, unbiased."""
    momentum = 0.9
    x = rng.normal(1.0, 3.0, size=(8, 3, 3, 4)).astype(dtype)
    layer = layers.BatchNormalization(momentum=momentum, dtype=dtype, moving_mean_initializer="random_normal",
                                      moving_variance_initializer=initializers.RandomUniform(0.5, 2.0))
    layer.build(x.shape)
    mm0, mv0 = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    rm, rv = tensor(mm0), tensor(mv0)
    torch.nn.functional.batch_norm(tensor(x).permute(0, 3, 1, 2), rm, rv, training=True, momentum=1 - momentum,
                                   eps=1e-3)
    layer(x, training=True)
    n = x.size // x.shape[-1]
    assert_close(layer.state["moving_mean"], rm, dtype, "moving_mean")
    # torch adds (1 - momentum) * unbiased variance; Keras adds (1 - momentum) * biased variance
    torch_increment = rv.numpy() - momentum * mv0
    assert_close(layer.state["moving_variance"] - momentum * mv0, torch_increment * (n - 1) / n, dtype,
                 "moving_variance increment")
    # and against the formula itself
    biased_var = x.reshape(-1, 4).astype(np.float64).var(axis=0)
    np.testing.assert_allclose(layer.state["moving_variance"], momentum * mv0 + (1 - momentum) * biased_var,
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, axis", [((6, 7), -1), ((2, 5, 8), -1), ((2, 3, 4, 5), [2, 3]), ((2, 3, 4), [1, 2])])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (False, False)])
def test_layernorm_parity(rng, dtype, shape, axis, center, scale):
    layer = layers.LayerNormalization(axis=axis, center=center, scale=scale, dtype=dtype,
                                      gamma_initializer="random_normal", beta_initializer="random_normal")
    axes = [axis] if isinstance(axis, int) else axis
    normalized_shape = tuple(shape[a] for a in axes)

    def torch_ln(xt, p):
        return torch.nn.functional.layer_norm(xt, normalized_shape, p.get("gamma"), p.get("beta"), eps=1e-3)

    check_layer_parity(layer, rng.normal(2.0, 3.0, size=shape).astype(dtype), torch_ln, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layernorm_rms_scaling_parity(rng, dtype):
    """Keras 3's rms_scaling: gamma * x / sqrt(var(x) + eps), with the centred variance."""
    layer = layers.LayerNormalization(rms_scaling=True, dtype=dtype, gamma_initializer="random_normal")

    def torch_rms(xt, p):
        var = xt.var(dim=-1, unbiased=False, keepdim=True)
        return xt * torch.rsqrt(var + 1e-3) * p["gamma"]

    check_layer_parity(layer, rng.normal(1.0, 2.0, size=(3, 4, 6)).astype(dtype), torch_rms, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, groups", [((2, 3, 3, 6), 3), ((2, 5, 4), 1), ((3, 4, 4), -1), ((5, 12), 2)])
def test_groupnorm_parity(rng, dtype, shape, groups):
    """Channels-last fusenet against channels-first torch."""
    layer = layers.GroupNormalization(groups=groups, dtype=dtype, gamma_initializer="random_normal",
                                      beta_initializer="random_normal")
    torch_groups = shape[-1] if groups == -1 else groups

    def torch_gn(xt, p):
        y = torch.nn.functional.group_norm(torch.movedim(xt, -1, 1), torch_groups, p["gamma"], p["beta"], eps=1e-3)
        return torch.movedim(y, 1, -1)

    check_layer_parity(layer, rng.normal(1.0, 2.0, size=shape).astype(dtype), torch_gn, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_groupnorm_channels_first_parity(rng, dtype):
    layer = layers.GroupNormalization(groups=2, axis=1, dtype=dtype, gamma_initializer="random_normal")
    check_layer_parity(layer, rng.normal(size=(2, 4, 3, 3)).astype(dtype),
                       lambda xt, p: torch.nn.functional.group_norm(xt, 2, p["gamma"], p["beta"], eps=1e-3),
                       dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis", [-1, 1])
def test_unitnorm_parity(rng, dtype, axis):
    check_layer_parity(layers.UnitNormalization(axis=axis, dtype=dtype), rng.normal(size=(3, 4, 5)).astype(dtype),
                       lambda xt, p: torch.nn.functional.normalize(xt, dim=axis, eps=1e-12), dtype=dtype)


# ---------------------------------------------------------------- behaviour
def test_batchnorm_keras_weights_and_order(rng):
    layer = layers.BatchNormalization()
    layer(rng.normal(size=(4, 2, 2, 3)).astype(np.float32))
    assert [w.shape for w in layer.get_weights()] == [(3,)] * 4
    assert list(layer.params) == ["gamma", "beta"] and list(layer.state) == ["moving_mean", "moving_variance"]
    np.testing.assert_array_equal(layer.get_weights()[3], np.ones(3))
    nc = layers.BatchNormalization(center=False)
    nc.build((None, 3))
    assert list(nc.params) == ["gamma"] and len(nc.get_weights()) == 3
    bare = layers.BatchNormalization(center=False, scale=False)
    bare.build((None, 3))
    assert bare.params == {} and len(bare.get_weights()) == 2
    multi = layers.BatchNormalization(axis=[3, 1])
    multi.build((None, 2, 5, 3))
    assert multi.params["gamma"].shape == (2, 3)


def test_batchnorm_training_vs_inference(rng):
    x = rng.normal(3.0, 2.0, size=(64, 4))
    layer = layers.BatchNormalization(momentum=0.5)
    y = layer(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(layer.state["moving_mean"], 0.5 * x.mean(axis=0), rtol=1e-12)
    before = layer.get_weights()
    y_inf = layer(x, training=False)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)  # inference leaves the statistics alone
    mm, mv = layer.state["moving_mean"], layer.state["moving_variance"]
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3), rtol=1e-12)
    assert layer._cache is None


def test_batchnorm_frozen_runs_in_inference_mode(rng):
    x = rng.normal(3.0, 2.0, size=(16, 4))
    layer = layers.BatchNormalization(trainable=False)
    y = layer(x, training=True)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(layer.state["moving_mean"], np.zeros(4))
    assert layer.gradient_pairs() == []


def test_batchnorm_converges_to_data_statistics(rng):
    layer = layers.BatchNormalization(momentum=0.8)
    for _ in range(60):
        layer(rng.normal(5.0, 3.0, size=(256, 2)), training=True)
    np.testing.assert_allclose(layer.state["moving_mean"], 5.0, atol=0.3)
    np.testing.assert_allclose(layer.state["moving_variance"], 9.0, atol=1.2)


def test_dtypes(rng):
    for cls in (layers.BatchNormalization, layers.LayerNormalization, layers.UnitNormalization):
        assert cls()(rng.normal(size=(3, 4)).astype(np.float32), training=True).dtype == np.float32
        assert cls()(rng.normal(size=(3, 4)), training=True).dtype == np.float64
    assert layers.GroupNormalization(groups=2)(np.ones((2, 4), dtype=np.int64)).dtype == np.float32


def test_layernorm_weights_follow_keras_shapes():
    layer = layers.LayerNormalization(axis=[1, 2])
    layer.build((None, 3, 4))
    assert [w.shape for w in layer.get_weights()] == [(3, 4), (3, 4)]
    rms = layers.LayerNormalization(rms_scaling=True)
    rms.build((None, 5))
    assert list(rms.params) == ["gamma"]
    assert layers.LayerNormalization(axis=1).compute_output_shape((None, 3, 4)) == (None, 3, 4)


def test_groupnorm_minus_one_is_instance_norm_and_config_kept(rng):
    layer = layers.GroupNormalization(groups=-1)
    x = rng.normal(size=(2, 5, 3))
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-12)
    assert layer.get_config()["groups"] == -1


def test_unitnorm_unit_length_and_zero_input(rng):
    y = layers.UnitNormalization()(rng.normal(size=(4, 6)))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1.0, rtol=1e-12)
    layer = layers.UnitNormalization()
    z = layer(np.zeros((2, 3)), training=True)
    assert not z.any()
    dx = layer.backward(np.ones((2, 3)))
    assert np.isfinite(dx).all() and np.all(dx == 1e6)


def test_backward_before_training_forward():
    layer = layers.LayerNormalization(name="ln0")
    layer(np.zeros((2, 3)), training=False)
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'ln0' \(LayerNormalization\)"):
        layer.backward(np.zeros((2, 3)))
    bn = layers.BatchNormalization(name="bn0")
    bn(np.zeros((2, 3)), training=False)
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'bn0'"):
        bn.backward(np.zeros((2, 3)))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.BatchNormalization(momentum=1.5), r"BatchNormalization: .*momentum=1.5"),
        (lambda: layers.BatchNormalization(epsilon=-1.0), r"epsilon=-1.0"),
        (lambda: layers.LayerNormalization(epsilon=float("nan")), r"epsilon=nan"),
        (lambda: layers.GroupNormalization(groups=0, name="gn"), r"GroupNormalization\(name='gn'\).*groups=0"),
        (lambda: layers.GroupNormalization(groups=-2), r"groups=-2"),
        (lambda: layers.BatchNormalization(beta_initializer="nope"), r"Unknown initializer: 'nope'"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types():
    with pytest.raises(TypeError, match=r"axis='x'"):
        layers.BatchNormalization(axis="x")
    with pytest.raises(TypeError, match=r"axis=\[\]"):
        layers.LayerNormalization(axis=[])
    with pytest.raises(TypeError, match=r"groups=2.5"):
        layers.GroupNormalization(groups=2.5)


def test_axis_out_of_range_names_layer_and_numbers():
    with pytest.raises(ValueError, match=r"layer 'bn' \(BatchNormalization\): axis 3 is out of range for an input "
                                         r"of rank 2 .*input_shape=\(4, 5\)"):
        layers.BatchNormalization(axis=3, name="bn")(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"axis -4 is out of range for an input of rank 3"):
        layers.LayerNormalization(axis=[1, -4])(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"distinct axes. Received: axis=\[1, -1\]"):
        layers.LayerNormalization(axis=[1, -1])(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"axis 2 is out of range"):
        layers.UnitNormalization(axis=2).compute_output_shape((None, 3))


def test_groupnorm_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"layer 'g' \(GroupNormalization\): the number of groups \(4\) must divide "
                                         r"the number of channels \(6\)"):
        layers.GroupNormalization(groups=4, name="g")(np.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match=r"groups \(8\) cannot be more than the number of channels \(6\)"):
        layers.GroupNormalization(groups=8)(np.zeros((2, 6)))
    with pytest.raises(ValueError, match=r"axis must not be the batch axis"):
        layers.GroupNormalization(groups=1, axis=0)(np.zeros((2, 6)))


def test_wrong_rank_and_size_after_build():
    layer = layers.BatchNormalization(name="bnr")
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"layer 'bnr' \(BatchNormalization\).*expected ndim=2.*\(2, 3, 3\)"):
        layer(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"expected axis 1 of input shape to have value 3.*\(2, 4\)"):
        layer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"GroupNormalization\): expected an input of rank >= 2.*input_shape=\(3,\)"):
        layers.GroupNormalization(groups=1)(np.zeros(3))


@pytest.mark.parametrize("make", [lambda: layers.LayerNormalization(gamma_initializer="random_normal"),
                                  lambda: layers.LayerNormalization(rms_scaling=True, gamma_initializer="random_normal"),
                                  lambda: layers.LayerNormalization(scale=False),
                                  lambda: layers.GroupNormalization(groups=2)])
def test_per_sample_norms_same_in_training_and_inference(rng, make):
    layer = make()
    x = rng.normal(size=(3, 4, 6))
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_two_threads_give_the_serial_numbers(rng, monkeypatch, dtype):
    """Inputs of 1 MB and more run the blocked sums and passes on two threads: the same numbers (the
    halves are fixed, their sums added in order) as on one thread, forward, gradients and statistics."""
    from fusenet import _parallel

    x = rng.normal(2.0, 3.0, size=(48, 16, 16, 24)).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    results = []
    monkeypatch.setattr(_parallel, "_CONTROL", (lambda: 2, lambda n: None))  # two threads even under a BLAS limit
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    for workers in (1, 2):
        monkeypatch.setattr(_parallel, "SPLIT_WORKERS", workers)
        bn = layers.BatchNormalization(dtype=dtype)
        y = bn(x, training=True)
        dx = bn.backward(dy)
        results.append([y, dx, *bn.grads.values(), *bn.state.values()])
    assert x.nbytes >= 1 << 20
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
