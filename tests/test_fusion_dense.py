"""Fused Dense blocks equal the layers they replace; the pattern engine, report and registry."""

import copy

import numpy as np
import pytest

import fusenet
from fusenet import layers
from fusenet.fusion import (FusedAffineDense, FusedDenseActivation, FusedDenseBNActivation,
                            FusedDenseDropoutActivation, LayerBuilder, LayerSpec, Pattern, register_pattern, report,
                            unregister_pattern)
from tests.contract import LayerCase
from tests.fusion_check import check_fused_equals_unfused


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: FusedDenseBNActivation([layers.Dense(4), layers.BatchNormalization(), layers.ReLU()]), normal(3, 5)),
    LayerCase(lambda: FusedDenseDropoutActivation([layers.Dense(4), layers.Dropout(0.2), layers.Activation("tanh")]),
              normal(3, 5)),
    LayerCase(lambda: FusedDenseActivation([layers.Dense(4), layers.GELU()]), normal(3, 5)),
    LayerCase(lambda: FusedAffineDense([layers.Dense(4), layers.Dense(2, activation="relu")]), normal(3, 5)),
]

ACTIVATIONS = ["relu", "gelu", "sigmoid", "tanh", "elu", "silu", "leaky_relu", "softplus"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("center, scale", [(True, True), (False, False)])
def test_dense_bn_activation_dropout(rng, dtype, training, activation, center, scale):
    def make():
        return [layers.Dense(6, dtype=dtype), layers.BatchNormalization(center=center, scale=scale),
                layers.Activation(activation), layers.Dropout(0.3, seed=1)]

    x = rng.normal(size=(16, 5)).astype(dtype)
    check_fused_equals_unfused(make, x, training, FusedDenseBNActivation)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("make, cls", [
    (lambda b, d: [layers.Dense(6, use_bias=b, dtype=d), layers.BatchNormalization()], FusedDenseBNActivation),
    (lambda b, d: [layers.Dense(6, use_bias=b, dtype=d), layers.Dropout(0.4, seed=2), layers.Activation("sigmoid")],
     FusedDenseDropoutActivation),
    (lambda b, d: [layers.Dense(6, use_bias=b, dtype=d), layers.ReLU(), layers.Dropout(0.4, seed=2)], FusedDenseActivation),
    (lambda b, d: [layers.Dense(6, use_bias=b, dtype=d), layers.GELU(approximate="tanh")], FusedDenseActivation),
    (lambda b, d: [layers.Dense(6, use_bias=b, activation="elu", dtype=d), layers.Dropout(0.4, seed=2)], FusedDenseActivation),
    (lambda b, d: [layers.Dense(6, use_bias=b, dtype=d), layers.Dense(3, use_bias=b, activation="tanh")], FusedAffineDense),
], ids=["dense_bn", "dense_dropout_sigmoid", "dense_relu_dropout", "bias_gelu", "dense_elu_dropout", "dense_dense"])
def test_dense_variants(rng, dtype, training, use_bias, make, cls):
    x = rng.normal(size=(2, 8, 5)).astype(dtype)  # a 3-D input: every leading axis is a batch axis
    check_fused_equals_unfused(lambda: make(use_bias, dtype), x, training, cls)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("shape", [(130, 7), (3, 50, 7)], ids=["rows", "leading_axes"])
def test_dense_inference_on_many_rows_uses_the_transposed_kernel_gemm(rng, dtype, use_bias, shape):
    from fusenet.fusion.dense import NT_ROWS, dense_into

    def make():
        return [layers.Dense(9, use_bias=use_bias, dtype=dtype), layers.BatchNormalization(), layers.ReLU(),
                layers.Dropout(0.2, seed=3)]

    x = rng.normal(size=shape).astype(dtype)
    assert x.size // shape[-1] >= NT_ROWS  # the GEMM path on NumPy's own BLAS
    fused = check_fused_equals_unfused(make, x, training=False, expected_class=FusedDenseBNActivation)
    strided = rng.normal(size=(NT_ROWS, 14)).astype(dtype)[:, ::2]  # rows without unit stride: np.matmul
    kernel = rng.normal(size=(7, 9)).astype(dtype)
    bias = rng.normal(size=9).astype(dtype) if use_bias else None
    for a in (strided, np.ascontiguousarray(strided)):
        out = dense_into(a, np.empty((NT_ROWS, 9), dtype=dtype), kernel, np.ascontiguousarray(kernel.T), bias)
        np.testing.assert_allclose(out, a @ kernel + (0 if bias is None else bias), rtol=1e-5 if dtype == np.float32
                                   else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    assert fused[0](x).shape == shape[:-1] + (9,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_layer_skips_the_input_gradient_in_a_training_step(rng, dtype):
    def make():
        return [layers.Dense(6, dtype=dtype), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.2, seed=4),
                layers.Dense(3, dtype=dtype)]

    x = rng.normal(size=(8, 5)).astype(dtype)
    fused = LayerBuilder.optimize_sequence(make(), training=True)
    reference = copy.deepcopy(fused)
    dy = rng.normal(size=(8, 3)).astype(dtype)
    for layers_, skip in ((fused, True), (reference, False)):
        h = x
        for layer in layers_:
            h = layer(h, training=True)
        for layer in layers_:
            layer.zero_grad()
        layers_[0]._input_grad_needed = not skip
        g = dy
        for layer in reversed(layers_):
            g = layer.backward(g)
        assert (g is None) == skip
    for a, b in zip(fused, reference):
        for name in a.grads:
            np.testing.assert_array_equal(a.grads[name], b.grads[name])
    plain = layers.Dense(3, dtype=dtype)
    plain(x, training=True)
    plain._input_grad_needed = False
    assert plain.backward(dy) is None and np.abs(plain.grads["kernel"]).sum() > 0


def test_nothing_to_fuse_returns_the_same_objects():
    seq = [layers.Dense(3, activation="relu"), layers.Flatten(), layers.Dense(2, activation="softmax")]
    out = LayerBuilder.optimize_sequence(seq)
    assert all(a is b for a, b in zip(out, seq)) and len(out) == len(seq)


def test_report_explains_matches_and_misses(rng):
    seq = [layers.Dense(4), layers.BatchNormalization(axis=0), layers.ReLU(), layers.Dense(3), layers.Softmax()]
    x = rng.normal(size=(4, 5))
    for layer in seq:
        x = layer(x)
    text = str(report(seq))
    assert "normalises axis 0, not the last (channels) axis" in text
    assert "Softmax(softmax) is not an element-wise activation layer" in text or "softmax" in text
    frozen = [layers.Dense(4), layers.BatchNormalization(trainable=False), layers.ReLU()]
    rep = report(frozen, training=True)
    assert "frozen" in str(rep) and not rep.fused
    unbuilt = report([layers.Dense(4), layers.BatchNormalization()], training=False)
    assert "no moving statistics" in str(unbuilt)
    assert report([layers.Dense(4), layers.BatchNormalization()], training=True).fused


def test_user_pattern_registration(rng):
    class ScaleTwice(fusenet.fusion.FusedLayer):
        pattern = "Rescaling -> Rescaling"

        def forward(self, x, training=False):
            a, b = self.source_layers
            self._save_for_backward(training, True)
            return x * (a.scale * b.scale) + (a.offset * b.scale + b.offset)

        def backward(self, dy):
            self._saved()
            a, b = self.source_layers
            return dy * (a.scale * b.scale)

    fusenet.layers.register_layer(ScaleTwice)
    register_pattern(Pattern("rescale_rescale", (layers.Rescaling, layers.Rescaling), lambda run, t: ScaleTwice(run)))
    try:
        seq = [layers.Rescaling(2.0, 1.0), layers.Rescaling(0.5, -1.0)]
        fused = LayerBuilder.optimize_sequence(seq)
        assert len(fused) == 1 and isinstance(fused[0], ScaleTwice)
        x = rng.normal(size=(3, 2))
        np.testing.assert_allclose(fused[0](x), seq[1](seq[0](x)))
    finally:
        unregister_pattern("rescale_rescale")
    assert len(LayerBuilder.optimize_sequence(seq)) == 2


def test_fused_layer_refolds_after_training_and_set_weights(rng):
    seq = [layers.Dense(4), layers.BatchNormalization(), layers.ReLU()]
    x = rng.normal(size=(8, 3))
    for layer in seq:
        x = layer(x)
    (fused,) = LayerBuilder.optimize_sequence(seq)
    x = rng.normal(size=(8, 3))
    fused(x)
    weights = fused.get_weights()
    weights[0] = weights[0] * 2
    fused.set_weights(weights)
    ref = copy.deepcopy(seq)
    ref[0].set_weights([weights[0], weights[1]])
    expected = ref[2](ref[1](ref[0](x)))
    np.testing.assert_allclose(fused(x), expected, rtol=1e-10)
    y = fused(x, training=True)  # moving statistics change
    fused.backward(np.ones_like(y))
    unf = fused.unfuse()
    np.testing.assert_allclose(fused(x), unf[2](unf[1](unf[0](x))), rtol=1e-10)


def test_factories_train(rng):
    block = LayerBuilder.dense_bn_activation(8, "relu", dropout=0.1)
    y = block(rng.normal(size=(4, 3)), training=True)
    assert y.shape == (4, 8)
    assert [w.shape for w in block.get_weights()] == [(3, 8), (8,), (8,), (8,), (8,), (8,)]
    assert LayerBuilder.dense_activation(5)(rng.normal(size=(2, 3))).shape == (2, 5)
    assert LayerBuilder.dense_dropout_activation(5, 0.5)(rng.normal(size=(2, 3))).shape == (2, 5)


@pytest.mark.parametrize("training", [False, True])
def test_matcher_recurses_into_residual_without_sharing_layers(rng, training):
    def make():
        body = [layers.Dense(4), layers.BatchNormalization(), layers.ReLU(), layers.Dense(4)]
        return [layers.Residual(body), layers.ReLU()]

    x = rng.normal(size=(8, 4))
    seq = make()
    for layer in seq:
        x_out = layer(x, training=True)
    out = LayerBuilder.optimize_sequence(seq, training=training)
    block = out[0]
    assert block is not seq[0] and isinstance(block.body[0], FusedDenseBNActivation)
    assert block.body[1] is not seq[0].body[3]  # nothing shared with the source model
    ref = seq[1](seq[0](x, training=training), training=training)
    got = out[1](block(x, training=training), training=training)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert x_out.shape == got.shape
