"""Convolution layers: Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D, Conv1DTranspose, Conv2DTranspose.

Float64 finite-difference gradients, PyTorch parity over a grid of configurations (Keras "same"
padding is mirrored in torch with an explicit asymmetric ``F.pad``), the Keras output shapes,
the chunked code paths, and the error messages.
"""

import itertools

import numpy as np
import pytest

from fusenet import layers
from fusenet.errors import BackwardBeforeForwardError
from fusenet.layers import _conv_ops as ops
from fusenet.layers import _conv_taps_ops as taps_ops
from fusenet import _parallel
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch

if torch is not None:
    import torch.nn.functional as F


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2), normal(2, 7, 2), id="Conv1D-causal"),
    LayerCase(lambda: layers.Conv1D(4, 2, strides=2, padding="same", use_bias=False), normal(2, 7, 2), id="Conv1D-same"),
    LayerCase(lambda: layers.Conv2D(4, 3, padding="same", activation="relu"), normal(2, 5, 6, 3), id="Conv2D"),
    LayerCase(lambda: layers.Conv2D(4, (2, 3), strides=2, groups=2, kernel_regularizer="l2"), normal(2, 5, 6, 4),
              id="Conv2D-groups"),
    LayerCase(lambda: layers.Conv3D(2, 2, padding="same"), normal(2, 3, 4, 3, 2), id="Conv3D"),
    LayerCase(lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), normal(2, 5, 4, 3)),
    LayerCase(lambda: layers.SeparableConv2D(4, 3, depth_multiplier=2), normal(2, 5, 4, 3)),
    LayerCase(lambda: layers.Conv1DTranspose(3, 3, strides=2, padding="same"), normal(2, 4, 2)),
    LayerCase(lambda: layers.Conv2DTranspose(3, 3, strides=2, output_padding=1), normal(2, 3, 4, 2)),
]


# ---------------------------------------------------------------- torch references (independent of fusenet's code)
def keras_same_pads(n, k, s, d):
    """TensorFlow "same": out = ceil(n / s), the extra padding element at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def torch_pad_list(spatial, ks, ss, ds, padding):
    """``F.pad`` list (last axis first) for Keras padding."""
    pads = []
    for n, k, s, d in reversed(list(zip(spatial, ks, ss, ds))):
        if padding == "same":
            pads += list(keras_same_pads(n, k, s, d))
        elif padding == "causal":
            pads += [(k - 1) * d, 0]
        else:
            pads += [0, 0]
    return pads


def torch_conv(xt, kernel, bias, strides, dilation, padding, groups=1):
    """Keras-semantics convolution with torch: NHWC in and out, kernel ``(*K, in/g, out)``."""
    rank = xt.dim() - 2
    xc = xt.movedim(-1, 1)
    xc = F.pad(xc, torch_pad_list(xt.shape[1:-1], kernel.shape[:rank], strides, dilation, padding))
    w = kernel.permute(rank + 1, rank, *range(rank))
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    return conv(xc, w, bias, stride=strides, dilation=dilation, groups=groups).movedim(1, -1)


def keras_transpose_crop(n, k, s, d, padding, output_padding):
    """``(out_size, crop)`` of a Keras transposed convolution: Keras' JAX padding arithmetic
    (``_convert_conv_transpose_padding_args_from_keras_to_jax``), which its torch backend also crops to."""
    eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(eff, s) - eff if output_padding is None else output_padding
        return (n - 1) * s + eff + op, 0
    if output_padding is None:
        pad_len, out = s + eff - 2, n * s
    else:
        pad_len, out = eff + eff % 2 - 2 + output_padding, (n - 1) * s + eff % 2 + output_padding
    left = min(pad_len // 2 + pad_len % 2, eff - 1)
    return out, eff - 1 - left


def torch_conv_transpose(xt, kernel, bias, strides, dilation, padding, output_padding):
    """Full torch transposed convolution (no padding), then Keras' crop (or zero extension)."""
    rank = xt.dim() - 2
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[rank]
    y = conv(xt.movedim(-1, 1), kernel.permute(rank + 1, rank, *range(rank)), None, stride=strides, dilation=dilation)
    pads = []
    for a in reversed(range(rank)):
        op = None if output_padding is None else output_padding[a]
        out, crop = keras_transpose_crop(xt.shape[1 + a], kernel.shape[a], strides[a], dilation[a], padding, op)
        pads += [-crop, out + crop - y.shape[2 + a]]
    y = F.pad(y, pads).movedim(1, -1)
    return y if bias is None else y + bias


def tuple_of(v, rank):
    return (v,) * rank if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------- gradients (float64, finite differences)
GRAD_CASES = [
    (lambda: layers.Conv2D(3, 3, padding="same"), (2, 5, 6, 2)),
    (lambda: layers.Conv2D(3, 2, strides=2, padding="same", activation="tanh"), (2, 5, 6, 2)),
    (lambda: layers.Conv2D(2, (3, 2), dilation_rate=2, use_bias=False), (2, 6, 5, 2)),
    (lambda: layers.Conv2D(4, 3, strides=(2, 1), groups=2, padding="valid"), (2, 5, 6, 4)),
    (lambda: layers.Conv2D(3, 1), (2, 4, 5, 2)),
    (lambda: layers.Conv2D(4, 2, groups=2, padding="same"), (2, 4, 5, 2)),
    (lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2), (2, 7, 2)),
    (lambda: layers.Conv1D(2, 4, strides=3, padding="same"), (2, 8, 3)),
    (lambda: layers.Conv3D(2, (2, 3, 2), strides=(1, 2, 1), padding="same"), (2, 3, 5, 3, 2)),
    (lambda: layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2), (2, 5, 4, 2)),
    (lambda: layers.DepthwiseConv2D(2, strides=2), (2, 5, 4, 3)),
    (lambda: layers.SeparableConv2D(3, 3, padding="same", activation="sigmoid"), (2, 4, 5, 2)),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, padding="same"), (2, 4, 3)),
    (lambda: layers.Conv1DTranspose(2, 3, dilation_rate=2, padding="valid", use_bias=False), (2, 4, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1), (2, 3, 4, 2)),
    (lambda: layers.Conv2DTranspose(3, (2, 3), strides=(2, 1), padding="valid", activation="relu"), (2, 3, 3, 2)),
]


@pytest.mark.parametrize("make, shape", GRAD_CASES, ids=[f"g{i}" for i in range(len(GRAD_CASES))])
def test_gradients_float64(make, shape, rng):
    check_layer_gradients(make(), rng.normal(size=shape))


# ---------------------------------------------------------------- torch parity grids
def conv2d_grid():
    cases = []
    for ks, strides, dil, padding, size, groups, bias in itertools.product(
        [(3, 3), (2, 2), (3, 2)], [1, 2, (2, 1)], [1, 2], ["same", "valid"], [(7, 6), (6, 5)], [1, 2], [True, False]
    ):
        if dil > 1 and strides != 1:
            continue
        cases.append((ks, strides, dil, padding, size, groups, bias))
    return cases


CONV2D_GRID = conv2d_grid()


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ks, strides, dil, padding, size, groups, bias", CONV2D_GRID)
def test_conv2d_parity(rng, dtype, ks, strides, dil, padding, size, groups, bias):
    layer = layers.Conv2D(6, ks, strides=strides, dilation_rate=dil, padding=padding, groups=groups, use_bias=bias,
                          dtype=dtype)
    x = rng.normal(size=(2,) + size + (4,)).astype(dtype)
    s, d = tuple_of(strides, 2), tuple_of(dil, 2)
    check_layer_parity(layer, x, lambda t, p: torch_conv(t, p["kernel"], p.get("bias"), s, d, padding, groups), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k, strides, dil, padding, n", [
    (3, 1, 1, "causal", 7), (3, 1, 2, "causal", 8), (2, 2, 1, "causal", 7), (4, 1, 1, "same", 7), (3, 2, 1, "same", 8),
    (3, 3, 1, "valid", 10), (1, 1, 1, "valid", 5), (2, 1, 3, "same", 6),
])
def test_conv1d_parity(rng, dtype, k, strides, dil, padding, n):
    layer = layers.Conv1D(5, k, strides=strides, dilation_rate=dil, padding=padding, dtype=dtype)
    x = rng.normal(size=(3, n, 3)).astype(dtype)
    check_layer_parity(layer, x, lambda t, p: torch_conv(t, p["kernel"], p["bias"], (strides,), (dil,), padding),
                       dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ks, strides, dil, padding, groups", [
    ((2, 3, 2), (1, 2, 1), 1, "same", 1), (2, 2, 1, "valid", 2), ((3, 2, 2), 1, (2, 1, 1), "same", 1),
    (1, 2, 1, "same", 1),
])
def test_conv3d_parity(rng, dtype, ks, strides, dil, padding, groups):
    layer = layers.Conv3D(4, ks, strides=strides, dilation_rate=dil, padding=padding, groups=groups, dtype=dtype)
    x = rng.normal(size=(2, 5, 4, 5, 2)).astype(dtype)
    s, d = tuple_of(strides, 3), tuple_of(dil, 3)
    check_layer_parity(layer, x, lambda t, p: torch_conv(t, p["kernel"], p["bias"], s, d, padding, groups), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ks, strides, dil, padding, mult, bias", [
    (3, 1, 1, "same", 1, True), (3, 2, 1, "same", 2, False), (2, 1, 2, "valid", 3, True), ((3, 2), (1, 2), 1, "valid", 1, True),
    (2, 2, 1, "same", 2, True),
])
def test_depthwise_parity(rng, dtype, ks, strides, dil, padding, mult, bias):
    layer = layers.DepthwiseConv2D(ks, strides=strides, dilation_rate=dil, padding=padding, depth_multiplier=mult,
                                   use_bias=bias, dtype=dtype)
    x = rng.normal(size=(2, 6, 7, 3)).astype(dtype)
    s, d = tuple_of(strides, 2), tuple_of(dil, 2)

    def torch_fn(t, p):
        k = p["depthwise_kernel"]  # (kh, kw, C, m) -> conv kernel (kh, kw, 1, C * m), groups = C
        kernel = k.reshape(k.shape[0], k.shape[1], 1, k.shape[2] * k.shape[3])
        return torch_conv(t, kernel, p.get("bias"), s, d, padding, groups=t.shape[-1])

    check_layer_parity(layer, x, torch_fn, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("strides, padding, mult, bias", [(1, "same", 1, True), (2, "same", 2, False), (1, "valid", 2, True)])
def test_separable_parity(rng, dtype, strides, padding, mult, bias):
    layer = layers.SeparableConv2D(5, 3, strides=strides, padding=padding, depth_multiplier=mult, use_bias=bias,
                                   activation="relu", dtype=dtype)
    x = rng.normal(size=(2, 6, 5, 3)).astype(dtype)
    s = tuple_of(strides, 2)

    def torch_fn(t, p):
        k = p["depthwise_kernel"]
        kernel = k.reshape(k.shape[0], k.shape[1], 1, k.shape[2] * k.shape[3])
        h = torch_conv(t, kernel, None, s, (1, 1), padding, groups=t.shape[-1])
        return torch.relu(torch_conv(h, p["pointwise_kernel"], p.get("bias"), (1, 1), (1, 1), "valid"))

    check_layer_parity(layer, x, torch_fn, dtype=dtype)


TRANSPOSE_GRID = [
    # rank, kernel, strides, dilation, padding, output_padding, input spatial
    (2, 3, 2, 1, "same", None, (3, 4)), (2, 3, 2, 1, "same", 1, (3, 4)), (2, 3, 2, 1, "valid", None, (3, 4)),
    (2, 2, 2, 1, "same", None, (3, 4)), (2, (3, 2), (2, 1), 1, "valid", (1, 0), (4, 3)), (2, 4, 3, 1, "same", 2, (3, 3)),
    (2, 3, 1, 2, "same", None, (4, 5)), (2, 3, 1, 2, "valid", None, (4, 5)), (2, 2, 3, 1, "valid", None, (3, 3)),
    (2, 1, 2, 1, "same", None, (3, 4)),
    (1, 3, 2, 1, "same", None, (5,)), (1, 4, 3, 1, "valid", 2, (4,)), (1, 2, 1, 3, "same", None, (6,)),
    (1, 5, 2, 1, "same", 0, (4,)),
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rank, ks, strides, dil, padding, op, size", TRANSPOSE_GRID)
def test_conv_transpose_parity(rng, dtype, bias, rank, ks, strides, dil, padding, op, size):
    cls = layers.Conv2DTranspose if rank == 2 else layers.Conv1DTranspose
    layer = cls(4, ks, strides=strides, dilation_rate=dil, padding=padding, output_padding=op, use_bias=bias, dtype=dtype)
    x = rng.normal(size=(2,) + size + (3,)).astype(dtype)
    s, d = tuple_of(strides, rank), tuple_of(dil, rank)
    opt = None if op is None else tuple_of(op, rank)
    check_layer_parity(layer, x, lambda t, p: torch_conv_transpose(t, p["kernel"], p.get("bias"), s, d, padding, opt),
                       dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make, shape, torch_fn", [
    (lambda dt: layers.Conv2D(5, 3, padding="same", dtype=dt), (3, 9, 8, 4),
     lambda t, p: torch_conv(t, p["kernel"], p["bias"], (1, 1), (1, 1), "same")),
    (lambda dt: layers.Conv2D(6, 3, strides=2, groups=2, padding="same", dtype=dt), (3, 9, 8, 4),
     lambda t, p: torch_conv(t, p["kernel"], p["bias"], (2, 2), (1, 1), "same", 2)),
    (lambda dt: layers.Conv2D(5, 1, dtype=dt), (3, 9, 8, 4),
     lambda t, p: torch_conv(t, p["kernel"], p["bias"], (1, 1), (1, 1), "valid")),
    (lambda dt: layers.Conv2DTranspose(3, 3, strides=2, padding="same", dtype=dt), (3, 5, 4, 4),
     lambda t, p: torch_conv_transpose(t, p["kernel"], p["bias"], (2, 2), (1, 1), "same", None)),
])
def test_parity_through_small_chunks(monkeypatch, rng, dtype, make, shape, torch_fn):
    """A tiny chunk budget forces the row-chunked im2col/col2im paths (several chunks per sample)."""
    for budget in (64, 4000):
        monkeypatch.setattr(ops, "CHUNK_BYTES", budget)
        check_layer_parity(make(dtype), rng.normal(size=shape).astype(dtype), torch_fn, dtype=dtype)


# ---------------------------------------------------------------- per-tap GEMM path (stride 1, 16+ channels)
TAP_CASES = [
    (lambda dt: layers.Conv2D(5, 3, padding="same", dtype=dt), (3, 5, 4, 16), (1, 1), (1, 1), "same"),
    (lambda dt: layers.Conv2D(4, (3, 2), dilation_rate=2, use_bias=False, dtype=dt), (2, 7, 5, 16), (1, 1), (2, 2),
     "valid"),
    (lambda dt: layers.Conv2D(3, 2, padding="same", activation="tanh", dtype=dt), (2, 5, 4, 17), (1, 1), (1, 1), "same"),
    (lambda dt: layers.Conv1D(4, 3, padding="causal", dilation_rate=2, dtype=dt), (3, 12, 16), (1,), (2,), "causal"),
    (lambda dt: layers.Conv3D(3, 2, padding="same", dtype=dt), (2, 3, 3, 4, 16), (1, 1, 1), (1, 1, 1), "same"),
]


@pytest.fixture
def tap_path(monkeypatch):
    """Small inputs through the per-tap GEMMs: any waste accepted, blocks of one or two samples."""
    monkeypatch.setattr(taps_ops, "MAX_WASTE", 100.0)
    monkeypatch.setattr(taps_ops, "BLOCK_ROWS", 100)


@pytest.mark.parametrize("make, shape, strides, dil, padding", TAP_CASES, ids=[f"t{i}" for i in range(len(TAP_CASES))])
def test_tap_path_gradients_float64(tap_path, rng, make, shape, strides, dil, padding):
    layer = make(np.float64)
    layer(np.zeros(shape))
    assert taps_ops.use_taps(layer._geometry(shape), 1, shape[-1], np.float64)
    check_layer_gradients(layer, rng.normal(size=shape))


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make, shape, strides, dil, padding", TAP_CASES, ids=[f"t{i}" for i in range(len(TAP_CASES))])
def test_tap_path_parity(tap_path, rng, dtype, make, shape, strides, dil, padding):
    layer = make(dtype)
    act = {"tanh": torch.tanh}.get(layer.activation.name, lambda t: t) if torch is not None else None
    check_layer_parity(layer, rng.normal(size=shape).astype(dtype),
                       lambda t, p: act(torch_conv(t, p["kernel"], p.get("bias"), strides, dil, padding)), dtype=dtype)


def test_tap_path_equals_im2col_path(tap_path, rng, monkeypatch):
    """The per-tap GEMMs and im2col compute the same convolution (forward, input and kernel gradients)."""
    x = rng.normal(size=(3, 7, 6, 16))
    k = rng.normal(size=(3, 3, 16, 5))
    b = rng.normal(size=5)
    for padding in ("same", "valid"):
        geom = ops.conv_geometry((7, 6), (3, 3), (1, 1), (1, 1), padding)
        xp = ops.pad_input(x, geom)
        dy = rng.normal(size=(3,) + geom.out_sizes + (5,))
        y = ops.conv_forward(x, k, geom, bias=b)
        dx, dk = ops.conv_backward(xp, dy, k, geom)
        monkeypatch.setattr(taps_ops, "MIN_CHANNELS", 17)  # im2col from here on
        np.testing.assert_allclose(y, ops.conv_forward(x, k, geom, bias=b), rtol=1e-12, atol=1e-12)
        ref_dx, ref_dk = ops.conv_backward(xp, dy, k, geom)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dk, ref_dk, rtol=1e-12, atol=1e-12)
        monkeypatch.setattr(taps_ops, "MIN_CHANNELS", 16)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("channels, strides", [(16, 1), (3, 1), (16, 2)])
def test_two_threads_give_the_serial_numbers(tap_path, rng, monkeypatch, dtype, channels, strides):
    """The blocks split over two threads (BLAS single-threaded meanwhile) give bit for bit the numbers of
    the serial run: forward, input gradient and kernel gradient (its two halves added in a fixed order)."""
    x = rng.normal(size=(5, 7, 6, channels)).astype(dtype)
    k = rng.normal(size=(3, 3, channels, 4)).astype(dtype)
    geom = ops.conv_geometry((7, 6), (3, 3), (strides,) * 2, (1, 1), "same")
    xp = ops.pad_input(x, geom)
    dy = rng.normal(size=(5,) + geom.out_sizes + (4,)).astype(dtype)
    results = []
    monkeypatch.setattr(_parallel, "_CONTROL", (lambda: 2, lambda n: None))  # two threads even under a BLAS limit
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    for workers in (1, 2):
        monkeypatch.setattr(_parallel, "SPLIT_WORKERS", workers)
        y = ops.conv_forward(x, k, geom, chunk_bytes=2000)
        dx, dk = ops.conv_backward(xp, dy, k, geom, chunk_bytes=2000)
        results.append((y, dx, dk))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("channels", [2, 16])
def test_input_gradient_skipped_when_not_needed(tap_path, rng, channels):
    """``_input_grad_needed = False`` (the engine sets it on the layer reading a model's input): ``backward``
    returns ``None`` and the parameter gradients are unchanged."""
    x = rng.normal(size=(2, 5, 6, channels))
    layer = layers.Conv2D(3, 3, padding="same")
    y = layer(x, training=True)
    dy = rng.normal(size=y.shape)
    layer.backward(dy)
    grads = {k: v.copy() for k, v in layer.grads.items()}
    layer.zero_grad()
    layer(x, training=True)
    layer._input_grad_needed = False
    assert layer.backward(dy) is None
    for name, value in grads.items():
        np.testing.assert_allclose(layer.grads[name], value, rtol=1e-12)


# ---------------------------------------------------------------- behaviour
def test_keras_layouts_and_float32(rng):
    x = rng.normal(size=(2, 6, 5, 4)).astype(np.float32)
    conv = layers.Conv2D(6, (3, 2), groups=2)
    y = conv(x, training=True)
    assert [w.shape for w in conv.get_weights()] == [(3, 2, 2, 6), (6,)]
    dx = conv.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == conv.grads["kernel"].dtype == np.float32
    dw = layers.DepthwiseConv2D(3, depth_multiplier=2)
    dw(x)
    assert [w.shape for w in dw.get_weights()] == [(3, 3, 4, 2), (8,)]
    sep = layers.SeparableConv2D(7, 3, depth_multiplier=2)
    sep(x)
    assert [w.shape for w in sep.get_weights()] == [(3, 3, 4, 2), (1, 1, 8, 7), (7,)]
    assert list(sep.params) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    tr = layers.Conv2DTranspose(3, (3, 2))
    assert tr(x).dtype == np.float32
    assert [w.shape for w in tr.get_weights()] == [(3, 2, 3, 4), (3,)]
    assert layers.Conv1D(2, 3)(np.ones((1, 5, 2), dtype=np.float64)).dtype == np.float64


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c.id)
def test_float32_end_to_end_and_inference_keeps_nothing(case, rng):
    """No silent float64: outputs, input gradients and parameter gradients stay float32."""
    layer = case.make()
    x = case.make_input(rng).astype(np.float32)
    y = layer(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())
    layer(x, training=False)
    assert layer._cache is None


@pytest.mark.parametrize("make, in_shape, out_shape", [
    (lambda: layers.Conv2D(3, 3, strides=2, padding="same"), (1, 7, 8, 2), (1, 4, 4, 3)),
    (lambda: layers.Conv2D(3, 3, strides=2, padding="valid"), (1, 7, 8, 2), (1, 3, 3, 3)),
    (lambda: layers.Conv2D(3, 3, dilation_rate=2, padding="valid"), (1, 7, 8, 2), (1, 3, 4, 3)),
    (lambda: layers.Conv1D(3, 4, strides=3, padding="causal"), (1, 10, 2), (1, 4, 3)),
    (lambda: layers.Conv3D(3, 2, strides=(1, 2, 3), padding="same"), (1, 3, 5, 7, 2), (1, 3, 3, 3, 3)),
    # Keras' own test cases (keras/src/layers/convolutional/conv_transpose_test.py, channels-last)
    (lambda: layers.Conv1DTranspose(5, 2, strides=2), (2, 8, 4), (2, 16, 5)),
    (lambda: layers.Conv1DTranspose(6, 2, strides=3, padding="same", output_padding=2), (2, 8, 4), (2, 23, 6)),
    (lambda: layers.Conv2DTranspose(6, (2, 3), strides=(2, 1)), (2, 8, 8, 4), (2, 16, 10, 6)),
    (lambda: layers.Conv2DTranspose(2, 7, strides=16), (1, 14, 14, 2), (1, 224, 224, 2)),
    (lambda: layers.Conv2DTranspose(2, 3, strides=2, padding="same"), (1, 5, 6, 2), (1, 10, 12, 2)),
])
def test_output_shapes(make, in_shape, out_shape):
    layer = make()
    assert layer(np.zeros(in_shape)).shape == out_shape
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


@pytest.mark.parametrize("k, s", [(3, 2), (2, 2), (4, 3), (3, 1), (5, 2)])
def test_same_transpose_is_the_adjoint_of_same_conv(rng, k, s):
    """TensorFlow's definition: Conv2DTranspose(padding="same") is the input gradient of Conv2D(padding="same")
    on an input ``strides`` times larger, with the same kernel array."""
    conv = layers.Conv2D(3, k, strides=s, padding="same", use_bias=False)
    tconv = layers.Conv2DTranspose(2, k, strides=s, padding="same", use_bias=False)
    a = rng.normal(size=(2, 4 * s, 3 * s, 2))
    b = rng.normal(size=(2, 4, 3, 3))
    conv(a)
    tconv(b)
    tconv.set_weights([conv.params["kernel"]])
    assert tconv(b).shape == a.shape
    np.testing.assert_allclose(np.sum(conv(a) * b), np.sum(tconv(b) * a), rtol=1e-12)


def test_causal_conv_sees_only_the_past(rng):
    layer = layers.Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = rng.normal(size=(1, 9, 2))
    y = layer(x)
    x2 = x.copy()
    x2[:, 5:] += 1.0
    np.testing.assert_array_equal(layer(x2)[:, :5], y[:, :5])
    assert not np.allclose(layer(x2)[:, 5:], y[:, 5:])


def test_pointwise_conv_is_a_gemm(rng):
    layer = layers.Conv2D(3, 1, use_bias=False)
    x = rng.normal(size=(2, 4, 5, 6))
    np.testing.assert_allclose(layer(x), x @ layer.params["kernel"][0, 0], rtol=1e-12)


def test_inference_epilogue_matches_training_and_keeps_nothing(rng):
    layer = layers.Conv2D(4, 3, padding="same", activation="relu")
    x = rng.normal(size=(2, 5, 6, 3))
    y_train = layer(x, training=True)
    y_eval = layer(x, training=False)
    np.testing.assert_array_equal(y_train, y_eval)
    assert layer._cache is None
    with pytest.raises(BackwardBeforeForwardError, match=r"layer '.*' \(Conv2D\): backward\(\) was called without"):
        layer.backward(np.ones_like(y_eval))


def test_grads_accumulate(rng):
    layer = layers.Conv2D(2, 3)
    x = rng.normal(size=(2, 5, 5, 2))
    layer(x, training=True)
    layer.backward(np.ones((2, 3, 3, 2)))
    once = layer.grads["kernel"].copy()
    layer(x, training=True)
    layer.backward(np.ones((2, 3, 3, 2)))
    np.testing.assert_allclose(layer.grads["kernel"], 2 * once)


def test_variable_spatial_size(rng):
    layer = layers.Conv2D(2, 3, padding="same")
    assert layer(rng.normal(size=(1, 5, 6, 2))).shape == (1, 5, 6, 2)
    assert layer(rng.normal(size=(3, 8, 4, 2))).shape == (3, 8, 4, 2)


def test_pure_functions_chunk_independent(rng):
    x = rng.normal(size=(5, 9, 7, 4)).astype(np.float32)
    k = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)
    geom = ops.conv_geometry((9, 7), (3, 3), (2, 2), (1, 1), "same")
    xp = ops.pad_input(x, geom)
    dy = rng.normal(size=(5,) + geom.out_sizes + (6,)).astype(np.float32)
    ref_y = ops.conv_forward(x, k, geom, groups=2)
    ref_dx, ref_dk = ops.conv_backward(xp, dy, k, geom, groups=2)
    for budget in (1, 500, 10_000):
        np.testing.assert_allclose(ops.conv_forward(x, k, geom, groups=2, chunk_bytes=budget), ref_y, rtol=1e-5, atol=1e-5)
        dx, dk = ops.conv_backward(xp, dy, k, geom, groups=2, chunk_bytes=budget)
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dk, ref_dk, rtol=1e-5, atol=1e-4)
        assert dx.dtype == dk.dtype == np.float32


def test_epilogue_runs_per_chunk(rng):
    x = rng.normal(size=(4, 6, 6, 2))
    k = rng.normal(size=(3, 3, 2, 3))
    geom = ops.conv_geometry((6, 6), (3, 3), (1, 1), (1, 1), "same")
    seen = []

    def epilogue(chunk):
        seen.append(chunk.shape)
        np.maximum(chunk, 0, out=chunk)

    y = ops.conv_forward(x, k, geom, bias=np.ones(3), epilogue=epilogue, chunk_bytes=600)
    np.testing.assert_allclose(y, np.maximum(ops.conv_forward(x, k, geom, bias=np.ones(3)), 0), rtol=1e-12)
    assert len(seen) > 1


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("make, match", [
    (lambda: layers.Conv2D(0, 3), r"Conv2D: expected filters to be a positive integer. Received: filters=0"),
    (lambda: layers.Conv2D(4, 0), r"kernel_size"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), r"kernel_size to be an int or a tuple of 2 ints"),
    (lambda: layers.Conv2D(4, 3, strides=0), r"strides"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2, name="c"),
     r"Conv2D\(name='c'\): strides > 1 is not supported together with dilation_rate > 1. "
     r"Received: strides=\(2, 2\) and dilation_rate=\(2, 2\)"),
    (lambda: layers.Conv2D(4, 3, padding="causal"),
     r"expected padding to be one of \['valid', 'same'\]. Received: padding='causal'"),
    (lambda: layers.Conv1D(4, 3, padding="full"),
     r"expected padding to be one of \['valid', 'same', 'causal'\]. Received: padding='full'"),
    (lambda: layers.Conv2D(6, 3, groups=4), r"filters must be divisible by groups. Received: groups=4, filters=6"),
    (lambda: layers.Conv2D(6, 3, groups=0), r"groups=0"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), r"channels-last only.*data_format='channels_first'"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), r"depth_multiplier=0"),
    (lambda: layers.SeparableConv2D(2, 3, strides=2, dilation_rate=2), r"strides > 1 is not supported"),
    (lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=2),
     r"output_padding to be smaller than its stride. Received: output_padding=\(2, 2\), strides=\(2, 2\)"),
    (lambda: layers.Conv2DTranspose(4, 3, padding="causal"), r"Received: padding='causal'"),
    (lambda: layers.Conv1DTranspose(4, 3, strides=2, dilation_rate=2), r"strides > 1 is not supported"),
])
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types():
    with pytest.raises(TypeError, match=r"filters='4'"):
        layers.Conv2D("4", 3)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['kernal_size'\]"):
        layers.Conv2D(4, 3, kernal_size=3)


@pytest.mark.parametrize("make, shape, match", [
    (lambda: layers.Conv2D(4, 3, groups=2, name="g"), (1, 5, 5, 3),
     r"layer 'g' \(Conv2D\): the number of input channels must be divisible by groups. "
     r"Received: groups=2, but the input has 3 channels"),
    (lambda: layers.Conv2D(2, 5, name="big"), (1, 4, 6, 1),
     r"layer 'big' \(Conv2D\): the kernel is larger than the padded input along spatial axis 0: "
     r"kernel size 5 > padded input size 4"),
    (lambda: layers.Conv2D(2, 3, dilation_rate=3), (1, 7, 6, 1),
     r"kernel size 3 \(dilated extent 7\) > padded input size 6 \(input 6 \+ padding 0\+0, padding='valid'\)"),
    (lambda: layers.Conv1D(2, 4, strides=2), (1, 3, 1), r"along spatial axis 0: kernel size 4"),
    (lambda: layers.DepthwiseConv2D((2, 4)), (1, 5, 3, 1), r"\(DepthwiseConv2D\): the kernel is larger .* axis 1"),
    (lambda: layers.Conv2D(2, 3, name="r"), (2, 5, 5), r"layer 'r' \(Conv2D\).*expected ndim=4.*\(2, 5, 5\)"),
    (lambda: layers.Conv3D(2, 3), (2, 5, 5, 5), r"expected ndim=5"),
    (lambda: layers.Conv1DTranspose(2, 2, padding="same", output_padding=0, strides=1, name="t"), (1, 1, 3),
     r"layer 't' \(Conv1DTranspose\): the output would have size 0 along spatial axis 0"),
])
def test_invalid_inputs(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make()(np.zeros(shape))


def test_kernel_too_large_after_build():
    layer = layers.Conv2D(2, 3, name="later")
    layer(np.zeros((1, 5, 5, 1)))
    with pytest.raises(ValueError, match=r"layer 'later' \(Conv2D\): the kernel is larger .* axis 1"):
        layer(np.zeros((1, 5, 2, 1)))
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 1"):
        layer(np.zeros((1, 5, 5, 2)))


@pytest.mark.parametrize("pool", [False, True])
def test_fused_training_equals_unfused_bit_for_bit_at_full_size(rng, pool):
    """A Conv-BN-ReLU(-MaxPool) run large enough for the per-tap GEMMs and the two-thread passes: the fused
    layer's training step computes the unfused layers' numbers exactly (outputs, input and parameter
    gradients, moving statistics)."""
    import copy

    from fusenet.fusion import LayerBuilder

    x = rng.normal(size=(16, 32, 32, 16)).astype(np.float32)
    run = [layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization(), layers.ReLU()]
    run += [layers.MaxPooling2D(2)] if pool else []
    h = x
    for layer in run:  # build
        h = layer(h)
    fused = LayerBuilder.optimize_sequence(copy.deepcopy(run), training=True)
    assert len(fused) == 1
    y_ref = x
    for layer in run:
        y_ref = layer(y_ref, training=True)
    y = fused[0](x, training=True)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.normal(size=y.shape).astype(np.float32)
    for layer in run + fused:
        layer.zero_grad()
    dx_ref = dy
    for layer in reversed(run):
        dx_ref = layer.backward(dx_ref)
    np.testing.assert_array_equal(fused[0].backward(dy), dx_ref)
    np.testing.assert_array_equal(np.concatenate([g.ravel() for g in fused[0].grads.values()]),
                                  np.concatenate([g.ravel() for layer in run for g in layer.grads.values()]))
    for a, b in zip(fused[0].get_weights(), [w for layer in run for w in layer.get_weights()]):
        np.testing.assert_array_equal(a, b)  # the moving statistics


def test_im2col_reads_a_transposed_padded_input(rng):
    """``xp`` may be any strided view (a channels-first array moved to channels-last): the gather of
    contiguous ``(kernel width, channels)`` runs applies only where they are contiguous."""
    x = np.moveaxis(rng.normal(size=(3, 2, 5, 4)), 1, -1)
    k = rng.normal(size=(3, 3, 2, 3))
    geom = ops.conv_geometry((5, 4), (3, 3), (1, 1), (1, 1), "valid")
    ref = ops.conv_forward(np.ascontiguousarray(x), k, geom)
    np.testing.assert_allclose(ops.conv_forward(x, k, geom, xp=x), ref, rtol=1e-12)
    dy = rng.normal(size=ref.shape)
    np.testing.assert_allclose(ops.conv_backward(x, dy, k, geom)[1],
                               ops.conv_backward(np.ascontiguousarray(x), dy, k, geom)[1], rtol=1e-12)
