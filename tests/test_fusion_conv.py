"""Fused convolution layers equal the runs they replace; their patterns, conditions and reports.

Every fused class is checked with :func:`tests.fusion_check.check_fused_equals_unfused` (outputs in
inference; outputs, input gradient, every parameter gradient and the moving statistics after two
training steps) in float64 (rtol 1e-10) and float32 (rtol 1e-5, atol 1e-6), over grids of
strides, padding, dilation, groups, bias, ``center``/``scale`` and activations; the reference cnn
and resnet of BENCHMARKS.md (small batch) are compared through ``Sequential.fuse``.
"""

import copy

import numpy as np
import pytest

from fusenet import layers, models
from fusenet.fusion import _conv_taps
from fusenet.fusion import (FusedAffineConv, FusedConvBNActivation, FusedConvBNActivationPool,
                            FusedDepthwiseSeparableBNActivation, FusedPointwiseConv, FusedResidualConvBlock, LayerBuilder,
                            conv, report)
from tests.contract import LayerCase
from tests.fusion_check import check_fused_equals_unfused

DTYPES = [np.float64, np.float32]


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


def _run(seq, x, training=False):
    for layer in seq:
        x = layer(x, training=training)
    return x


def _built(seq, x):
    _run(seq, x)
    return seq


def _residual(filters=4, strides=1, project=False, act="relu", bn=True, conv=layers.Conv2D, dtype=None):
    body = [conv(filters, 3, strides=strides, padding="same", dtype=dtype)]
    body += [layers.BatchNormalization()] if bn else []
    body += [layers.Activation(act), conv(filters, 3, padding="same", use_bias=False)]
    body += [layers.BatchNormalization()] if bn else []
    shortcut = None
    if project:
        shortcut = [conv(filters, 1, strides=strides, use_bias=False), layers.BatchNormalization()]
    return layers.Residual(body, shortcut=shortcut)


CONTRACT_CASES = [
    LayerCase(lambda: FusedConvBNActivation([layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(),
                                             layers.ReLU()]), normal(2, 6, 6, 3)),
    LayerCase(lambda: FusedConvBNActivationPool([layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(),
                                                 layers.ReLU(), layers.MaxPooling2D()]), normal(2, 6, 6, 3)),
    LayerCase(lambda: FusedDepthwiseSeparableBNActivation([
        layers.DepthwiseConv2D(3, padding="same"), layers.BatchNormalization(), layers.ReLU(), layers.Conv2D(5, 1),
        layers.BatchNormalization(), layers.ReLU()]), normal(2, 6, 6, 3)),
    LayerCase(lambda: FusedResidualConvBlock([_residual(3, project=True), layers.ReLU()]), normal(2, 6, 6, 3)),
    LayerCase(lambda: FusedAffineConv([layers.Rescaling(0.5, 0.25), layers.Conv2D(4, 3), layers.ReLU()]),
              normal(2, 6, 6, 3)),
    LayerCase(lambda: FusedPointwiseConv([layers.Conv2D(6, 1), layers.Conv2D(4, 3), layers.BatchNormalization()]),
              normal(2, 6, 6, 3)),
]


# ---------------------------------------------------------------- Conv -> BN -> activation
CONV_CONFIGS = {
    "2d_same_s1": (layers.Conv2D, dict(kernel_size=3, padding="same"), (3, 7, 7, 3)),
    "2d_valid_s2": (layers.Conv2D, dict(kernel_size=3, strides=2, padding="valid"), (3, 8, 7, 3)),
    "2d_same_s2_even": (layers.Conv2D, dict(kernel_size=3, strides=2, padding="same"), (3, 8, 8, 3)),
    "2d_dilation2": (layers.Conv2D, dict(kernel_size=3, dilation_rate=2, padding="same"), (2, 9, 8, 3)),
    "2d_groups2_rect": (layers.Conv2D, dict(kernel_size=(2, 3), padding="valid", groups=2), (3, 6, 7, 4)),
    "2d_pointwise": (layers.Conv2D, dict(kernel_size=1), (3, 5, 5, 4)),
    "1d_causal_dilated": (layers.Conv1D, dict(kernel_size=3, padding="causal", dilation_rate=2), (3, 11, 3)),
    "1d_valid_s2": (layers.Conv1D, dict(kernel_size=4, strides=2), (3, 12, 3)),
    "3d_same": (layers.Conv3D, dict(kernel_size=2, padding="same"), (2, 4, 5, 4, 2)),
    "3d_valid_s2": (layers.Conv3D, dict(kernel_size=3, strides=(1, 2, 2), padding="valid"), (2, 5, 6, 6, 2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("config", list(CONV_CONFIGS), ids=list(CONV_CONFIGS))
def test_conv_bn_relu_grid(rng, dtype, training, use_bias, config):
    cls, kwargs, shape = CONV_CONFIGS[config]

    def make():
        return [cls(5 if "groups" not in config else 6, use_bias=use_bias, dtype=dtype, **kwargs),
                layers.BatchNormalization(), layers.ReLU()]

    check_fused_equals_unfused(make, rng.normal(size=shape).astype(dtype), training, FusedConvBNActivation)


ACTIVATIONS = ["relu", "gelu", "sigmoid", "tanh", "elu", "silu", "leaky_relu", "softplus", "relu6"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("center, scale", [(True, True), (False, False), (True, False)])
def test_conv_bn_activations(rng, dtype, training, activation, center, scale):
    def make():
        return [layers.Conv2D(4, 3, strides=2, padding="same", dtype=dtype),
                layers.BatchNormalization(center=center, scale=scale, momentum=0.9), layers.Activation(activation)]

    check_fused_equals_unfused(make, rng.normal(size=(3, 7, 6, 3)).astype(dtype), training, FusedConvBNActivation)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("make, shape", [
    (lambda d: [layers.Conv2D(4, 3, padding="same", dtype=d), layers.BatchNormalization()], (3, 7, 7, 3)),
    (lambda d: [layers.Conv2D(4, 3, padding="valid", dtype=d), layers.LeakyReLU(0.1)], (3, 7, 7, 3)),
    (lambda d: [layers.Conv1D(4, 3, padding="same", use_bias=False, dtype=d), layers.ELU()], (3, 9, 3)),
    (lambda d: [layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, dtype=d), layers.BatchNormalization(),
                layers.ReLU()], (3, 7, 7, 3)),
    (lambda d: [layers.DepthwiseConv2D(3, strides=2, use_bias=False, dtype=d), layers.BatchNormalization(),
                layers.Activation("hard_sigmoid")], (3, 7, 7, 3)),
], ids=["conv_bn", "conv_leaky_relu", "conv1d_elu", "depthwise_bn_relu", "depthwise_s2_hard_sigmoid"])
def test_conv_variants(rng, dtype, training, make, shape):
    check_fused_equals_unfused(lambda: make(dtype), rng.normal(size=shape).astype(dtype), training,
                               FusedConvBNActivation)


@pytest.mark.parametrize("dtype", DTYPES)
def test_frozen_batchnorm(rng, dtype):
    """A frozen BN folds at inference; the pattern refuses it in training, but the layer built
    directly runs on the moving statistics exactly as the unfused layers do."""
    def make():
        return [layers.Conv2D(4, 3, padding="same", dtype=dtype), layers.BatchNormalization(trainable=False),
                layers.ReLU()]

    x = rng.normal(size=(3, 6, 6, 3)).astype(dtype)
    check_fused_equals_unfused(make, x, False, FusedConvBNActivation)
    ref = _built(make(), x)
    ref[1].set_weights([rng.uniform(0.5, 1.5, size=4) for _ in range(4)])
    fused = FusedConvBNActivation(ref)
    _compare_training(fused, ref, x)


def _compare_training(fused, ref, x, steps=2):
    tol = dict(rtol=1e-10, atol=1e-10) if x.dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(3)
    for _ in range(steps):
        y_ref = _run(ref, x, training=True)
        y = fused(x, training=True)
        np.testing.assert_allclose(y, y_ref, **tol)
        dy = rng.normal(size=y.shape).astype(x.dtype)
        fused.zero_grad()
        for layer in ref:
            layer.zero_grad()
        dx_ref = dy
        for layer in reversed(ref):
            dx_ref = layer.backward(dx_ref)
        np.testing.assert_allclose(fused.backward(dy), dx_ref, **tol)
        for g, r in zip(fused.grads.values(), [g for layer in ref for g in layer.grads.values()]):
            np.testing.assert_allclose(g, r, **tol)
        for a, b in zip(fused.get_weights(), [w for layer in ref for w in layer.get_weights()]):
            np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cls, kwargs, shape", [
    (layers.Conv2D, dict(kernel_size=3, padding="same"), (3, 6, 7, 16)),
    (layers.Conv2D, dict(kernel_size=(3, 2), padding="valid", dilation_rate=2), (3, 9, 8, 16)),
    (layers.Conv1D, dict(kernel_size=3, padding="causal", dilation_rate=2), (3, 12, 16)),
    (layers.Conv3D, dict(kernel_size=2, padding="same"), (2, 4, 4, 5, 16)),
], ids=["2d_same", "2d_valid_dilated", "1d_causal", "3d_same"])
def test_tap_gemm_path(rng, monkeypatch, dtype, training, cls, kwargs, shape):
    """Stride-1 convolutions with 16+ channels run as one GEMM per kernel tap (several blocks of rows
    here): the inference forward and the training input gradient, for Conv-BN-act, Conv-BN-ReLU-MaxPool
    and the residual block."""
    monkeypatch.setattr(_conv_taps, "BLOCK_ROWS", 60)
    monkeypatch.setattr(_conv_taps, "MAX_WASTE", 10.0)
    x = rng.normal(size=shape).astype(dtype)
    conv_layer = cls(5, **kwargs)
    conv_layer(x)
    assert _conv_taps.use_taps(conv_layer._geometry(x.shape), 1, 16, dtype)
    pool = {layers.Conv1D: layers.MaxPooling1D, layers.Conv2D: layers.MaxPooling2D, layers.Conv3D: layers.MaxPooling3D}[cls]
    for use_bias in (False, True):
        check_fused_equals_unfused(lambda: [cls(5, use_bias=use_bias, dtype=dtype, **kwargs),
                                            layers.BatchNormalization(), layers.Activation("gelu")],
                                   x, training, FusedConvBNActivation)
    check_fused_equals_unfused(lambda: [cls(5, use_bias=False, dtype=dtype, **kwargs), layers.Activation("tanh")],
                               x, training, FusedConvBNActivation)
    check_fused_equals_unfused(lambda: [cls(5, use_bias=False, dtype=dtype, **kwargs), layers.BatchNormalization(),
                                        layers.ReLU(), pool(2)], x, training, FusedConvBNActivationPool)
    if kwargs.get("padding") != "valid":
        check_fused_equals_unfused(lambda: [_residual(16, conv=cls, dtype=dtype), layers.ReLU()], x,
                                   training, FusedResidualConvBlock)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chained_convolutions_share_zero_bordered_buffers(rng, monkeypatch, dtype):
    """3x3 convolutions write into zero-bordered buffers that the next 3x3 convolution reads as its
    padded input (no copy); views that do not fit fall back to padding a copy."""
    monkeypatch.setattr(_conv_taps, "MAX_WASTE", 10.0)

    def make():
        return [layers.Conv2D(16, 3, padding="same", dtype=dtype), layers.BatchNormalization(), layers.ReLU(),
                layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU(),
                layers.MaxPooling2D(2),
                layers.Conv2D(16, 3, padding="same"), layers.Activation("tanh"),
                _residual(16), layers.ReLU(),
                layers.Conv2D(16, 3, padding="valid"), layers.BatchNormalization()]

    x = rng.normal(size=(3, 8, 10, 16)).astype(dtype)
    fused = check_fused_equals_unfused(make, x, False)
    y = x
    for layer in fused[:-1]:
        y = layer(y)
        geom = _conv_taps.ops.conv_geometry(y.shape[1:-1], (3, 3), (1, 1), (1, 1), "same")
        assert not y.flags.c_contiguous and _conv_taps.padded_input(y, geom) is y.base
        assert _conv_taps.padded_input(y[1:], geom) is not y.base  # a slice of the batch: copied
        np.testing.assert_array_equal(_conv_taps.padded_input(y[1:], geom), _conv_taps.padded_input(y, geom)[1:])
    valid = _conv_taps.ops.conv_geometry(y.shape[1:-1], (3, 3), (1, 1), (1, 1), "valid")
    assert _conv_taps.padded_input(y, valid).flags.c_contiguous  # no padding wanted: not the bordered buffer


@pytest.mark.parametrize("dtype", DTYPES)
def test_tap_gemm_with_scipy_blas(rng, monkeypatch, dtype):
    """Without NumPy's own BLAS at hand the per-tap GEMMs (fused inference, and the layers' forward and
    input gradient) go through scipy.linalg.blas: same numbers."""
    from fusenet import _blas
    from fusenet.layers import _conv_ops as ops
    from fusenet.layers import _conv_taps_ops as taps_ops

    x = rng.normal(size=(3, 7, 6, 16)).astype(dtype)
    kernel = rng.normal(size=(3, 3, 16, 5)).astype(dtype)
    geom = ops.conv_geometry((7, 6), (3, 3), (1, 1), (1, 1), "same")
    dy = rng.normal(size=(3, 7, 6, 5)).astype(dtype)

    def run():
        return (_conv_taps.tap_conv_forward(x, kernel, geom), taps_ops.tap_input_grad(dy, kernel, geom))

    expected = run()
    monkeypatch.setattr(_conv_taps, "gemm", _blas.scipy_gemm)
    monkeypatch.setattr(taps_ops, "gemm", _blas.scipy_gemm)
    got = run()
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **tol)
    np.testing.assert_allclose(got[0], ops.conv_forward(x, kernel, geom), **tol)


# ---------------------------------------------------------------- Conv -> BN -> ReLU -> MaxPooling
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("make, shape", [
    (lambda d: [layers.Conv2D(4, 3, padding="same", use_bias=False, dtype=d), layers.BatchNormalization(), layers.ReLU(),
                layers.MaxPooling2D(2)], (3, 8, 8, 3)),
    (lambda d: [layers.Conv2D(4, 3, padding="same", dtype=d), layers.BatchNormalization(), layers.ReLU(),
                layers.MaxPooling2D(3, strides=2, padding="same")], (3, 7, 8, 3)),
    (lambda d: [layers.Conv2D(4, 2, padding="valid", dtype=d), layers.ReLU(), layers.MaxPooling2D(2)], (3, 7, 7, 3)),
    (lambda d: [layers.Conv2D(4, 3, padding="same", dtype=d), layers.ReLU(), layers.MaxPooling2D((1, 2))], (3, 7, 9, 3)),
    (lambda d: [layers.Conv2D(4, 3, padding="same", dtype=d), layers.ReLU(), layers.MaxPooling2D((3, 1))], (3, 7, 9, 3)),
    (lambda d: [layers.Conv2D(4, 3, padding="same", dtype=d), layers.ReLU(), layers.MaxPooling2D((1, 1))], (3, 5, 5, 3)),
    (lambda d: [layers.Conv1D(4, 3, padding="same", dtype=d), layers.BatchNormalization(), layers.ReLU(),
                layers.MaxPooling1D(2)], (3, 10, 3)),
    (lambda d: [layers.Conv3D(3, 2, padding="same", dtype=d), layers.BatchNormalization(), layers.ReLU(),
                layers.MaxPooling3D(2)], (2, 4, 4, 4, 2)),
], ids=["2x2", "3x3_s2_same", "no_bn", "1x2_odd", "3x1_odd", "1x1", "1d", "3d"])
def test_conv_bn_relu_pool(rng, dtype, training, make, shape):
    check_fused_equals_unfused(lambda: make(dtype), rng.normal(size=shape).astype(dtype), training,
                               FusedConvBNActivationPool)


def test_pool_ties_route_the_gradient_as_the_unfused_run(rng):
    """Windows whose BN outputs are all negative (ReLU gives ties at 0) or tied: identical gradients."""
    def make():
        conv_layer = layers.Conv2D(2, 1, use_bias=False, kernel_initializer="ones")
        return [conv_layer, layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2)]

    x = np.repeat(np.repeat(rng.normal(size=(3, 3, 3, 1)), 2, axis=1), 2, axis=2)  # every window a constant
    check_fused_equals_unfused(make, x, True, FusedConvBNActivationPool)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_rows, blocked", [(4, True), (3, False), (100, True)],
                         ids=["sample_blocks", "split_samples", "one_block"])
def test_pool_runs_inside_the_batchnorm_blocks(rng, monkeypatch, dtype, block_rows, blocked):
    """Training: the pool and its backward run inside the BN's blocked passes when the blocks hold whole
    samples (the unfused BN cuts the same blocks, so the sums are the same), else the separate passes.
    Here the BN works on a ``(8, 2048)`` view (32 x 32 x 8 per sample: 4 rows a sample)."""
    from fusenet.layers import normalization

    monkeypatch.setattr(normalization, "BLOCK_BYTES", block_rows * 2048 * np.dtype(dtype).itemsize)
    plans = []
    original = FusedConvBNActivationPool._blocked_plan

    def spy(self, x):
        plan = original(self, x)
        plans.append(plan is not None)
        return plan

    monkeypatch.setattr(FusedConvBNActivationPool, "_blocked_plan", spy)

    def make():
        return [layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype), layers.BatchNormalization(),
                layers.ReLU(), layers.MaxPooling2D(2)]

    check_fused_equals_unfused(make, rng.normal(size=(2, 32, 32, 3)).astype(dtype), True, FusedConvBNActivationPool)
    assert plans and all(p == blocked for p in plans)


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_pool_output_is_the_next_convs_padded_input(rng, monkeypatch, dtype):
    """Training: the Conv-BN-ReLU-MaxPool layer writes its output into a zero-bordered buffer, and the
    following 3x3 conv stage reads that buffer as its padded input (no pad_input copy); same numbers."""
    from fusenet.layers import _conv_ops

    def make():
        return [layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype), layers.BatchNormalization(),
                layers.ReLU(), layers.MaxPooling2D(2),
                layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype), layers.BatchNormalization(),
                layers.ReLU()]

    x = rng.normal(size=(2, 16, 16, 3)).astype(dtype)
    fused = check_fused_equals_unfused(make, x, True, FusedConvBNActivationPool)
    assert [type(f) for f in fused] == [FusedConvBNActivationPool, FusedConvBNActivation]
    padded = []
    original = _conv_ops.pad_input
    monkeypatch.setattr(_conv_ops, "pad_input", lambda a, geom: padded.append(a.shape) or original(a, geom))
    y = fused[0](x, training=True)
    geom = _conv_taps.ops.conv_geometry(y.shape[1:-1], (3, 3), (1, 1), (1, 1), "same")
    assert not y.flags.c_contiguous and _conv_taps.padded_input(y, geom) is y.base
    assert not np.any(y.base[:, 0]) and not np.any(y.base[:, -1]) and not np.any(y.base[:, :, 0])
    assert not np.any(y.base[:, :, -1])
    padded.clear()
    fused[1](y, training=True)
    assert padded == []
    fused[1](np.ascontiguousarray(y), training=True)  # a plain array: padded as before
    assert padded == [y.shape]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_rows, bordered", [(4, True), (3, False)], ids=["sample_blocks", "split_samples"])
def test_training_conv_bn_relu_output_is_the_next_convs_padded_input(rng, monkeypatch, dtype, block_rows, bordered):
    """Training: Conv-BN-ReLU writes its output into a zero-bordered buffer when the BN's blocks hold
    whole samples (else a plain array, as before); the next 3x3 conv stage reads the buffer without
    padding it; the numbers are the unfused ones either way."""
    from fusenet.layers import _conv_ops, normalization

    monkeypatch.setattr(normalization, "BLOCK_BYTES", block_rows * 2048 * np.dtype(dtype).itemsize)

    def make():
        return [layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype), layers.BatchNormalization(),
                layers.ReLU(), layers.Conv2D(8, 3, padding="same", use_bias=False, dtype=dtype),
                layers.BatchNormalization(), layers.ReLU(), layers.MaxPooling2D(2)]

    x = rng.normal(size=(2, 32, 32, 3)).astype(dtype)
    fused = check_fused_equals_unfused(make, x, True, FusedConvBNActivation)
    assert [type(f) for f in fused] == [FusedConvBNActivation, FusedConvBNActivationPool]
    padded = []
    original = _conv_ops.pad_input
    monkeypatch.setattr(_conv_ops, "pad_input", lambda a, geom: padded.append(a.shape) or original(a, geom))
    y = fused[0](x, training=True)
    padded.clear()
    fused[1](y, training=True)
    if bordered:
        assert not y.flags.c_contiguous and not np.any(y.base[:, 0]) and not np.any(y.base[:, :, -1])
        assert padded == []
    else:
        assert y.flags.c_contiguous and padded == [y.shape]


def test_pool_with_nan_falls_back_to_the_exact_scan(rng):
    """A NaN in the pooled map: the backward takes the pooling ops' exact (PyTorch) arg-max scan."""
    def make():
        return [layers.Conv2D(2, 1, use_bias=False, dtype="float64"), layers.BatchNormalization(epsilon=0.0,
                                                                                                 dtype="float64"),
                layers.ReLU(), layers.MaxPooling2D(2)]

    x = rng.normal(size=(2, 4, 4, 1))
    x[0, 1, 1, 0] = np.nan
    unfused = make()
    fused = FusedConvBNActivationPool(make())
    for layer_list in (unfused, [fused]):
        h = x
        for layer in layer_list:
            h = layer(h, training=True)
    for a, b in zip(fused.source_layers, unfused):
        b.set_weights(a.get_weights())
    outs = []
    for layer_list in (unfused, [fused]):
        h = x
        for layer in layer_list:
            h = layer(h, training=True)
        g = np.ones_like(h)
        for layer in reversed(layer_list):
            g = layer.backward(g)
        outs.append((h, g))
    np.testing.assert_array_equal(np.isnan(outs[0][0]), np.isnan(outs[1][0]))
    np.testing.assert_array_equal(np.isnan(outs[0][1]), np.isnan(outs[1][1]))


# ---------------------------------------------------------------- depthwise separable
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("make", [
    lambda d: [layers.DepthwiseConv2D(3, padding="same", dtype=d), layers.BatchNormalization(), layers.ReLU(),
               layers.Conv2D(5, 1, use_bias=False), layers.BatchNormalization(), layers.ReLU()],
    lambda d: [layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, dtype=d), layers.BatchNormalization(),
               layers.Activation("relu6"), layers.Conv2D(5, 1), layers.BatchNormalization()],
    lambda d: [layers.SeparableConv2D(5, 3, padding="same", dtype=d), layers.BatchNormalization(scale=False),
               layers.Activation("silu")],
    lambda d: [layers.SeparableConv2D(4, 3, strides=2, depth_multiplier=2, use_bias=False, dtype=d),
               layers.BatchNormalization()],
    lambda d: [layers.SeparableConv2D(4, 3, dilation_rate=2, padding="same", dtype=d), layers.ReLU()],
], ids=["mobilenet", "linear_bottleneck_s2_m2", "separable_bn_silu", "separable_bn", "separable_relu"])
def test_depthwise_separable(rng, dtype, training, make):
    check_fused_equals_unfused(lambda: make(dtype), rng.normal(size=(3, 8, 7, 3)).astype(dtype), training,
                               FusedDepthwiseSeparableBNActivation)


def test_depthwise_separable_inference_runs_groups_of_samples(rng, monkeypatch):
    """Inference with several sample groups (a tiny chunk budget) equals one group."""
    seq = [layers.DepthwiseConv2D(3, padding="same"), layers.BatchNormalization(), layers.ReLU(), layers.Conv2D(5, 1),
           layers.BatchNormalization(), layers.ReLU()]
    x = rng.normal(size=(5, 6, 6, 3))
    _built(seq, x)
    (fused,) = LayerBuilder.optimize_sequence(seq)
    whole = fused(x)
    monkeypatch.setattr("fusenet.layers._conv_ops.CHUNK_BYTES", 512)
    np.testing.assert_allclose(fused(x), whole, rtol=1e-12)
    np.testing.assert_allclose(whole, _run(seq, x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- residual basic block
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("kwargs, final, shape", [
    (dict(), layers.ReLU, (3, 6, 6, 4)),
    (dict(filters=6, strides=2, project=True), layers.ReLU, (3, 7, 6, 4)),
    (dict(filters=6, project=True, act="tanh"), lambda: layers.Activation("elu"), (3, 5, 5, 4)),
    (dict(bn=False), layers.ReLU, (3, 5, 6, 4)),
    (dict(conv=layers.Conv1D), layers.ReLU, (3, 9, 4)),
], ids=["identity", "projection_s2", "projection_tanh_elu", "no_bn", "conv1d"])
def test_residual_block(rng, dtype, training, kwargs, final, shape):
    def make():
        return [_residual(dtype=dtype, **kwargs), final()]

    check_fused_equals_unfused(make, rng.normal(size=shape).astype(dtype), training, FusedResidualConvBlock)


def test_residual_inference_places_every_chunk(rng, monkeypatch):
    """Many conv chunks (tiny chunk budget): each gets its own part of the shortcut."""
    seq = _built([_residual(4), layers.ReLU()], rng.normal(size=(3, 6, 6, 4)))
    (fused,) = LayerBuilder.optimize_sequence(seq)
    x = rng.normal(size=(3, 6, 6, 4))
    monkeypatch.setattr("fusenet.layers._conv_ops.CHUNK_BYTES", 600)
    np.testing.assert_allclose(fused(x), _run(seq, x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- inference-only folds
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make, shape", [
    (lambda d: [layers.BatchNormalization(dtype=d), layers.Conv2D(4, 3, padding="valid"), layers.ReLU()], (3, 6, 6, 3)),
    (lambda d: [layers.Rescaling(1 / 255, dtype=d), layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(),
                layers.ReLU()], (3, 6, 6, 3)),
    (lambda d: [layers.Rescaling([0.5, 2.0, 1.5], offset=[0.1, -0.2, 0.3], dtype=d), layers.Conv2D(4, 2, strides=2),
                layers.BatchNormalization()], (3, 6, 6, 3)),
    (lambda d: [layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0], dtype=d),
                layers.Conv1D(4, 3, groups=1), layers.Activation("tanh")], (3, 8, 3)),
    (lambda d: [layers.Normalization(mean=[0.5, -1.0, 2.0], variance=[4.0, 0.25, 1.0], invert=True, dtype=d),
                layers.DepthwiseConv2D(3, depth_multiplier=2)], (3, 6, 6, 3)),
    (lambda d: [layers.BatchNormalization(dtype=d), layers.Dense(4, activation="relu")], (5, 3)),
    (lambda d: [layers.BatchNormalization(dtype=d), layers.Dense(4), layers.BatchNormalization(), layers.ReLU()],
     (2, 5, 3)),
    (lambda d: [layers.Rescaling(2.0, 0.5, dtype=d), layers.Conv2D(6, 3, padding="valid", groups=3)], (3, 6, 6, 3)),
], ids=["bn_conv_valid", "rescale_conv_same_zero_shift", "rescale_per_channel", "normalization_conv1d",
        "normalization_invert_depthwise", "bn_dense", "bn_dense_bn_relu", "rescale_grouped"])
def test_affine_fold(rng, dtype, make, shape):
    check_fused_equals_unfused(lambda: make(dtype), rng.normal(size=shape).astype(dtype), False, FusedAffineConv)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [
    lambda d: [layers.Conv2D(8, 1, dtype=d), layers.Conv2D(5, 3, padding="valid")],
    lambda d: [layers.Conv2D(8, 1, use_bias=False, dtype=d), layers.Conv2D(5, 3, strides=2, padding="same"),
               layers.BatchNormalization(), layers.ReLU()],
    lambda d: [layers.Conv1D(8, 1, dtype=d), layers.Conv1D(5, 3, dilation_rate=2), layers.Activation("gelu")],
    lambda d: [layers.Conv3D(6, 1, dtype=d), layers.Conv3D(4, 2), layers.BatchNormalization()],
], ids=["valid_bias", "same_no_bias_bn_relu", "conv1d_dilated_gelu", "conv3d_bn"])
def test_pointwise_fold(rng, dtype, make):
    shape = {"Conv1D": (3, 9, 3), "Conv3D": (2, 4, 4, 4, 3)}.get(type(make(dtype)[0]).__name__, (3, 7, 7, 3))
    check_fused_equals_unfused(lambda: make(dtype), rng.normal(size=shape).astype(dtype), False, FusedPointwiseConv)


@pytest.mark.parametrize("dtype", DTYPES)
def test_input_folds_fall_back_and_train(rng, dtype):
    """Built directly (no pattern condition): a shift or first bias before zero padding is applied
    explicitly, and the result still equals the unfused run; training runs the first layer as it is
    and the rest as a fused stage."""
    x = rng.normal(size=(3, 6, 6, 3)).astype(dtype)
    for seq in ([layers.Rescaling(0.5, 0.3, dtype=dtype), layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization()],
                [layers.Conv2D(6, 1, bias_initializer="ones", dtype=dtype), layers.Conv2D(4, 3, padding="same"),
                 layers.ReLU()],
                [layers.BatchNormalization(dtype=dtype), layers.Dense(5), layers.BatchNormalization(), layers.ReLU()]):
        _built(seq, x)
        cls = FusedPointwiseConv if isinstance(seq[0], layers.Conv2D) else FusedAffineConv
        fused = cls(seq)
        tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fused(x), _run(seq, x), **tol)
        _compare_training(fused, copy.deepcopy(seq), x)


# ---------------------------------------------------------------- reference models
def _cnn(batch_norm_momentum=0.99):
    def block(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=batch_norm_momentum), layers.ReLU()]

    return models.Sequential([layers.Input((16, 16, 3))] + block(8) + block(8) + [layers.MaxPooling2D(2)] + block(16)
                             + block(16) + [layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(32), layers.ReLU(),
                                            layers.Dropout(0.3, seed=1), layers.Dense(10)])


def _resnet():
    def block(filters, strides, project):
        body = [layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False), layers.BatchNormalization(),
                layers.ReLU(), layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization()]
        shortcut = [layers.Conv2D(filters, 1, strides=strides, padding="same", use_bias=False),
                    layers.BatchNormalization()] if project else None
        return [layers.Residual(body, shortcut=shortcut), layers.ReLU()]

    stack = [layers.Input((16, 16, 3)), layers.Conv2D(8, 3, padding="same", use_bias=False), layers.BatchNormalization(),
             layers.ReLU()]
    for width, strides in ((8, 1), (12, 2), (16, 2)):
        stack += block(width, strides, strides != 1) + block(width, 1, False)
    return models.Sequential(stack + [layers.GlobalAveragePooling2D(), layers.Dense(10)])


@pytest.mark.parametrize("build, fused_classes", [
    (_cnn, {"FusedConvBNActivation": 2, "FusedConvBNActivationPool": 2, "FusedDenseActivation": 1}),
    (_resnet, {"FusedConvBNActivation": 1, "FusedResidualConvBlock": 6}),
], ids=["cnn", "resnet"])
def test_reference_models_fuse(rng, build, fused_classes):
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, size=4)
    model = build()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # moving statistics away from their initial values
    before = model.get_weights()
    fused, rep = model.fuse(report=True)
    counts = {}
    for layer in fused.layers:
        counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + 1
    assert {k: counts.get(k, 0) for k in fused_classes} == fused_classes
    assert len(rep.fused) == sum(fused_classes.values())
    np.testing.assert_allclose(fused.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    # training: the fused model trains exactly as the unfused one
    a = build()
    a.compile(models_optimizer(), "sparse_categorical_crossentropy")
    a.build((None, 16, 16, 3))
    b = a.fuse(training=True)
    ha = a.fit(x, y, epochs=2, batch_size=2, shuffle=False, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-5, atol=1e-6)


def models_optimizer():
    from fusenet import optimizers

    return optimizers.SGD(learning_rate=0.05, momentum=0.9)


def test_fused_conv_model_saves_loads_and_unfuses(rng, tmp_path):
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    model = _resnet()
    fused = model.fuse()
    path = tmp_path / "fused.fnet"
    fused.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), fused.predict(x, verbose=0))
    lines = []
    fused.summary(print_fn=lines.append)
    assert "fuses Residual(" in "\n".join(lines)
    block = next(layer for layer in fused.layers if isinstance(layer, FusedResidualConvBlock))
    residual, relu = block.unfuse()
    assert isinstance(residual, layers.Residual) and isinstance(relu, layers.ReLU)
    xb = rng.normal(size=(2, 16, 16, 8)).astype("float32")
    np.testing.assert_allclose(block(xb), relu(residual(xb)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- refused runs and reports
def test_report_explains_refused_runs(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    axis1 = _built([layers.Conv2D(4, 3), layers.BatchNormalization(axis=1), layers.ReLU()], x)
    assert "normalises axis 1, not the last (channels) axis" in str(report(axis1))
    frozen = _built([layers.Conv2D(4, 3), layers.BatchNormalization(trainable=False), layers.ReLU()], x)
    text = str(report(frozen, training=True))
    assert "frozen (trainable=False)" in text and not report(frozen, training=True).fused
    assert report(frozen).fused  # at inference a frozen BN folds like any other
    unbuilt = report([layers.Conv2D(4, 3), layers.BatchNormalization(), layers.ReLU()])
    assert "no moving statistics" in str(unbuilt) and not unbuilt.fused
    mixed = _built([layers.Conv2D(4, 3, dtype="float64"), layers.BatchNormalization(dtype="float32")], x)
    assert "different dtypes" in str(report(mixed))
    activated = _built([layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization()], x)
    assert "has its own activation 'relu'; it must be linear to fuse with the BatchNormalization" in str(report(activated))
    regularized = _built([layers.Conv2D(4, 3, activity_regularizer="l2"), layers.ReLU()], x)
    assert "has an activity_regularizer" in str(report(regularized))


def test_report_explains_refused_folds(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    bn = layers.BatchNormalization()
    seq = _built([bn, layers.Conv2D(4, 3, padding="same")], x)
    bn.set_weights([w + 0.5 for w in bn.get_weights()])  # a non-zero shift
    text = str(report(seq))
    assert "is not exact: the zero-padded border would see the shift" in text
    assert "inference only" in str(report(seq, training=True))
    assert not report(seq, training=True).fused
    seq[1] = _built([layers.Conv2D(4, 3, padding="valid")], x)[0]
    assert report(seq).fused
    wide = _built([layers.Conv2D(2, 1), layers.Conv2D(5, 3)], rng.normal(size=(2, 6, 6, 8)))
    assert "folding would cost more: 360 multiply-adds per output position instead of 106" in str(report(wide))
    biased = _built([layers.Conv2D(8, 1, bias_initializer="ones"), layers.Conv2D(5, 3, padding="same")], x)
    assert "cannot be folded through the zero padding" in str(report(biased))
    per_pixel = _built([layers.Rescaling(np.ones((6, 6, 1))), layers.Conv2D(4, 3)], x)
    assert "is not a scalar or a per-channel vector" in str(report(per_pixel))
    assert "inference only" in str(report(_built([layers.Conv2D(8, 1), layers.Conv2D(5, 3)], x), training=True))


def test_report_explains_residual_mismatch(rng):
    x = rng.normal(size=(2, 6, 6, 4))
    body = [layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
            layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization()]
    concat = _built([layers.Residual(body, merge="concatenate"), layers.ReLU()], x)
    rep = report(concat)
    assert "merges with Concatenate, not Add" in str(rep)
    assert not any(e.pattern == "residual_conv_block" for e in rep.fused)
    short_body = _built([layers.Residual([layers.Conv2D(4, 3, padding="same"), layers.ReLU()]), layers.ReLU()], x)
    assert "is not conv [-> BN] -> activation -> conv [-> BN]" in str(report(short_body))


def test_sequence_without_convolutions_to_fuse_is_untouched(rng):
    seq = [layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten()]
    out = LayerBuilder.optimize_sequence(seq)
    assert all(a is b for a, b in zip(out, seq)) and len(out) == len(seq)


# ---------------------------------------------------------------- direct use, factories, errors
def test_fused_layer_refolds_after_training_and_set_weights(rng):
    seq = _built([layers.Conv2D(4, 3, padding="same"), layers.BatchNormalization(), layers.ReLU()],
                 rng.normal(size=(2, 5, 5, 3)))
    (fused,) = LayerBuilder.optimize_sequence(seq)
    x = rng.normal(size=(2, 5, 5, 3))
    fused(x)
    weights = fused.get_weights()
    weights[0] = weights[0] * 2
    fused.set_weights(weights)
    ref = copy.deepcopy(seq)
    ref[0].set_weights(weights[:2])
    np.testing.assert_allclose(fused(x), _run(ref, x), rtol=1e-10)
    y = fused(x, training=True)  # moving statistics change
    fused.backward(np.ones_like(y))
    np.testing.assert_allclose(fused(x), _run(fused.unfuse(), x), rtol=1e-10)


def test_factories_build_trainable_layers(rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    block = conv.conv_bn_relu(6, 3)
    y = block(x, training=True)
    assert y.shape == (2, 8, 8, 6) and [w.shape for w in block.get_weights()] == [(3, 3, 3, 6)] + [(6,)] * 4
    assert block.backward(np.ones_like(y)).shape == x.shape
    assert conv.conv_bn_activation(4, 3, activation=None, rank=1, strides=2)(x[:, 0]).shape == (2, 4, 4)
    assert conv.conv_bn_relu_pool(4, 3)(x).shape == (2, 4, 4, 4)
    mobile = conv.depthwise_separable_bn_activation(5, strides=2, pointwise_activation=None)
    assert mobile(x).shape == (2, 4, 4, 5) and isinstance(mobile, FusedDepthwiseSeparableBNActivation)
    assert len(conv.depthwise_separable_bn_activation(5).source_layers) == 6
    res = conv.residual_conv_block(6, strides=2)
    assert res(x, training=True).shape == (2, 4, 4, 6) and len(res.block.shortcut) == 2
    assert conv.residual_conv_block(3)(x).shape == x.shape
    with pytest.raises(ValueError, match="expected rank to be one of"):
        conv.conv_bn_relu(4, 3, rank=4)


def test_constructor_errors():
    with pytest.raises(TypeError, match=r"expected a convolution .* at position 0"):
        FusedConvBNActivation([layers.ReLU(), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="expected one Conv1D/2D/3D or DepthwiseConv2D"):
        FusedConvBNActivation([layers.Conv2D(4, 3), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="has its own activation 'relu'; it must be linear"):
        FusedConvBNActivation([layers.Conv2D(4, 3, activation="relu"), layers.BatchNormalization()])
    with pytest.raises(ValueError, match="normalises axis 1, not -1"):
        FusedConvBNActivation([layers.Conv2D(4, 3), layers.BatchNormalization(axis=1)])
    with pytest.raises(ValueError, match="a plain ReLU and a MaxPooling layer"):
        FusedConvBNActivationPool([layers.Conv2D(4, 3), layers.Activation("tanh"), layers.MaxPooling2D()])
    with pytest.raises(ValueError, match="pools 1 spatial axes but"):
        FusedConvBNActivationPool([layers.Conv2D(4, 3), layers.ReLU(), layers.MaxPooling1D()])
    with pytest.raises(ValueError, match="Conv2D 1x1 .stride 1, groups 1."):
        FusedDepthwiseSeparableBNActivation([layers.DepthwiseConv2D(3), layers.ReLU(), layers.Conv2D(4, 3)])
    with pytest.raises(TypeError, match=r"expected \[Residual, activation layer\]"):
        FusedResidualConvBlock([layers.Conv2D(4, 3), layers.ReLU()])
    with pytest.raises(ValueError, match="merges with Multiply, not Add"):
        FusedResidualConvBlock([layers.Residual([layers.Conv2D(4, 3), layers.ReLU(), layers.Conv2D(4, 3)],
                                                merge="multiply"), layers.ReLU()])
    with pytest.raises(TypeError, match="expected a BatchNormalization, Rescaling or Normalization first"):
        FusedAffineConv([layers.Dense(3), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="must be a 1x1 convolution with strides 1, groups 1 and no activation"):
        FusedPointwiseConv([layers.Conv2D(4, 3), layers.Conv2D(4, 3)])


def test_residual_shape_mismatch_is_a_clear_error(rng):
    block = FusedResidualConvBlock([_residual(6), layers.ReLU()])  # identity shortcut, 4 -> 6 channels
    with pytest.raises(ValueError, match="expects inputs of the same shape"):
        block(rng.normal(size=(2, 5, 5, 4)))
    strided = FusedResidualConvBlock([_residual(4, strides=2), layers.ReLU()])  # identity shortcut, stride 2
    strided.build((None, None, None, 4))  # spatial sizes unknown when built: checked per call
    for training in (False, True):
        with pytest.raises(ValueError, match=r"the body gives shape \(2, 3, 3, 4\) but the shortcut gives \(2, 6, 6, 4\)"):
            strided(rng.normal(size=(2, 6, 6, 4)), training=training)


def test_more_refusals_are_explained(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    unbuilt_conv = [_built([layers.BatchNormalization()], x)[0], layers.Conv2D(4, 3)]
    assert "is not built, so its kernel cannot take the fold" in str(report(unbuilt_conv))
    shift = _built([layers.Rescaling(1.0, 0.5), layers.Conv2D(4, 3, padding="same")], x)
    shift[1].build_input_shape = (None, None, None, 3)  # spatial sizes unknown
    assert "is not fully known" in str(report(shift))
    regularized = _built([layers.Rescaling(2.0), layers.Conv2D(4, 3, activity_regularizer="l1")], x)
    assert "has an activity_regularizer" in str(report(regularized))
    ranks = [layers.Conv1D(8, 1), layers.Conv2D(4, 3)]
    assert "have different ranks" in str(report(ranks))
    assert "is not built, so the kernels cannot be folded" in str(report([layers.Conv2D(8, 1), layers.Conv2D(4, 3)]))
    pointwise_reg = _built([layers.Conv2D(8, 1, activity_regularizer="l2"), layers.Conv2D(4, 3)], x)
    assert "has an activity_regularizer" in str(report(pointwise_reg))


def test_residual_block_problems():
    from fusenet.fusion._conv_residual import residual_block_problem

    body = [layers.Conv2D(4, 3, padding="same"), layers.ReLU(), layers.Conv2D(4, 3, padding="same")]
    assert residual_block_problem(layers.Conv2D(4, 3)).endswith("is not a Residual")
    assert "expected a convolution" in residual_block_problem(layers.Residual(body + [layers.MaxPooling2D()]))
    assert "holds Dense layers" in residual_block_problem(layers.Residual([layers.Conv2D(4, 3), layers.ReLU(),
                                                                           layers.Dense(4)]))
    shortcut = [layers.Conv2D(4, 1), layers.ReLU()]
    assert "the shortcut of" in residual_block_problem(layers.Residual(body, shortcut=shortcut))
    assert residual_block_problem(layers.Residual(body)) is None


@pytest.mark.parametrize("training", [False, True])
def test_residual_block_with_linear_final_activation(rng, training):
    check_fused_equals_unfused(lambda: [_residual(4), layers.Activation("linear")], rng.normal(size=(3, 5, 5, 4)),
                               training, FusedResidualConvBlock)


def test_input_fold_errors(rng):
    x = rng.normal(size=(2, 6, 6, 3))
    with pytest.raises(ValueError, match="expected one weighted layer"):
        FusedAffineConv([layers.Rescaling(2.0), layers.Conv2D(4, 3), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="expected one weighted layer"):
        FusedAffineConv([layers.Rescaling(2.0), layers.SeparableConv2D(4, 3)])  # two stages
    with pytest.raises(ValueError, match="must be a convolution of the same rank with groups=1"):
        FusedPointwiseConv([layers.Conv2D(6, 1), layers.Conv2D(6, 3, groups=2)])
    from fusenet.fusion._conv_input_fold import affine_of
    from fusenet.fusion.folding import FoldingError

    with pytest.raises(FoldingError, match="is not built, so it has no moving statistics"):
        affine_of(layers.BatchNormalization(), 3)
    with pytest.raises(FoldingError, match="is not built, so it has no mean and variance"):
        affine_of(layers.Normalization(), 3)
    with pytest.raises(FoldingError, match="is not a per-channel affine layer"):
        affine_of(layers.ReLU(), 3)
    scale, shift = affine_of(_built([layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 4.0, 4.0])], x)[0], 3)
    np.testing.assert_allclose(scale, 0.5)
    np.testing.assert_allclose(shift, [-0.5, -1.0, -1.5])


def test_batchnorm_axis_checks():
    from fusenet.fusion._conv_stage import check_channels_axis

    with pytest.raises(ValueError, match=r"normalises several axes \[1, 3\]"):
        check_channels_axis(layers.BatchNormalization(axis=[1, 3]), "owner")
    check_channels_axis(layers.BatchNormalization(axis=[-1]), "owner")
    built = _built([layers.BatchNormalization(axis=1)], np.zeros((2, 3, 4)))[0]
    with pytest.raises(ValueError, match="normalises axis 1, not the last"):
        check_channels_axis(built, "owner")


def test_compact_outputs_and_pointwise_convs(rng, monkeypatch):
    """With zero-bordered outputs switched off the layers give the same numbers; a 1x1 convolution
    is one GEMM on the input already, never per-tap GEMMs."""
    from fusenet.layers import _conv_ops as ops

    assert not _conv_taps.use_taps(ops.conv_geometry((8, 8), (1, 1), (1, 1), (1, 1), "same"), 1, 32, np.float32)
    seq = _built([layers.Conv2D(16, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(),
                  _residual(16), layers.ReLU(), layers.Conv2D(8, 3, padding="same"), layers.ReLU(),
                  layers.MaxPooling2D()], rng.normal(size=(2, 12, 12, 16)))
    fused = LayerBuilder.optimize_sequence(seq)
    x = rng.normal(size=(2, 12, 12, 16))
    bordered = _run(fused, x)
    monkeypatch.setattr(_conv_taps, "BORDERED", False)
    compact = _run(fused, x)
    np.testing.assert_allclose(compact, bordered, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(compact, _run(seq, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pool", [False, True])
def test_fused_first_layer_skips_its_input_gradient(rng, pool):
    """A fused conv chain told its input gradient is unused (``_input_grad_needed = False``, as the engine
    does for a model's first layer) returns ``None`` and adds the same parameter gradients."""
    def make():
        run = [layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU()]
        return run + [layers.MaxPooling2D(2)] if pool else run

    x = rng.normal(size=(2, 6, 6, 16))
    cls = FusedConvBNActivationPool if pool else FusedConvBNActivation
    fused = cls(make())
    y = fused(x, training=True)
    dy = rng.normal(size=y.shape)
    assert fused.backward(dy) is not None
    grads = {k: v.copy() for k, v in fused.grads.items()}
    fused.zero_grad()
    fused(x, training=True)
    fused._input_grad_needed = False
    assert fused.backward(dy) is None
    for name, value in grads.items():
        np.testing.assert_allclose(fused.grads[name], value, rtol=1e-12)
