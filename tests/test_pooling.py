"""Pooling layers: Max/AveragePooling1D/2D/3D and GlobalMax/GlobalAveragePooling1D/2D/3D.

Float64 finite-difference gradients; PyTorch parity (max pooling with ties and overlapping
windows against torch's own arg-max rule; Keras "same" padding mirrored with an explicit
asymmetric pad; the "same" average divides by the valid elements only); errors.
"""

import numpy as np
import pytest

from fusenet import layers
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch

if torch is not None:
    import torch.nn.functional as F


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.MaxPooling1D(3, strides=2, padding="same"), normal(2, 7, 3)),
    LayerCase(lambda: layers.MaxPooling2D(), normal(2, 4, 6, 3)),
    LayerCase(lambda: layers.MaxPooling3D(pool_size=(2, 1, 2)), normal(2, 4, 3, 4, 2)),
    LayerCase(lambda: layers.AveragePooling1D(2), normal(2, 7, 3)),
    LayerCase(lambda: layers.AveragePooling2D(3, strides=2, padding="same"), normal(2, 5, 6, 3)),
    LayerCase(lambda: layers.AveragePooling3D(), normal(2, 4, 4, 5, 2)),
    LayerCase(lambda: layers.GlobalMaxPooling1D(), normal(2, 7, 3)),
    LayerCase(lambda: layers.GlobalMaxPooling2D(keepdims=True), normal(2, 4, 5, 3)),
    LayerCase(lambda: layers.GlobalMaxPooling3D(), normal(2, 3, 4, 2, 3)),
    LayerCase(lambda: layers.GlobalAveragePooling1D(keepdims=True), normal(2, 7, 3)),
    LayerCase(lambda: layers.GlobalAveragePooling2D(), normal(2, 4, 5, 3)),
    LayerCase(lambda: layers.GlobalAveragePooling3D(), normal(2, 3, 4, 2, 3)),
]


# ---------------------------------------------------------------- torch references
def keras_same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pad_list(spatial, ks, ss, padding):
    pads = []
    for n, k, s in reversed(list(zip(spatial, ks, ss))):
        pads += list(keras_same_pads(n, k, s)) if padding == "same" else [0, 0]
    return pads


def torch_max_pool(t, ks, ss, padding):
    """Keras max pooling: -inf padding (never chosen), torch's own window arg-max."""
    rank = t.dim() - 2
    xc = F.pad(t.movedim(-1, 1), pad_list(t.shape[1:-1], ks, ss, padding), value=-float("inf"))
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank]
    return pool(xc, ks, ss).movedim(1, -1)


def torch_avg_pool(t, ks, ss, padding):
    """Keras/TF average pooling: window sum over zero padding / number of valid elements."""
    rank = t.dim() - 2
    xc = t.movedim(-1, 1)
    if rank == 1:  # avg_pool1d has no divisor_override: use the 2-D one over a unit axis
        xc, ks, ss = xc[..., None], tuple(ks) + (1,), tuple(ss) + (1,)
    pads = pad_list(xc.shape[2:], ks, ss, padding)
    pool = {2: F.avg_pool2d, 3: F.avg_pool3d}[xc.dim() - 2]
    total = pool(F.pad(xc, pads), ks, ss, divisor_override=1)
    count = pool(F.pad(torch.ones_like(xc[:1, :1]), pads), ks, ss, divisor_override=1)
    y = total / count
    if rank == 1:
        y = y[..., 0]
    return y.movedim(1, -1)


def tuple_of(v, rank):
    return (v,) * rank if isinstance(v, int) else tuple(v)


MAX_CLASSES = {1: layers.MaxPooling1D, 2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
AVG_CLASSES = {1: layers.AveragePooling1D, 2: layers.AveragePooling2D, 3: layers.AveragePooling3D}

POOL_GRID = [
    # rank, pool, strides, padding, spatial
    (2, 2, None, "valid", (6, 8)), (2, 2, None, "valid", (7, 5)), (2, 3, 2, "valid", (7, 8)), (2, 2, 1, "valid", (5, 6)),
    (2, 3, 2, "same", (7, 8)), (2, 2, None, "same", (7, 5)), (2, (3, 2), (1, 2), "same", (5, 6)), (2, 3, 1, "same", (4, 5)),
    (1, 2, None, "valid", (9,)), (1, 3, 2, "same", (8,)), (1, 3, 1, "valid", (7,)), (1, 4, 3, "same", (10,)),
    (3, 2, None, "valid", (4, 5, 4)), (3, (2, 3, 2), (1, 2, 2), "same", (3, 5, 4)),
]


# ---------------------------------------------------------------- gradients
GRAD_CASES = [
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (2, 5, 6, 2)),
    (lambda: layers.MaxPooling2D(2, strides=1), (2, 4, 5, 2)),
    (lambda: layers.MaxPooling1D(2), (2, 7, 3)),
    (lambda: layers.MaxPooling3D(2, padding="same"), (1, 3, 4, 3, 2)),
    (lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (2, 5, 6, 2)),
    (lambda: layers.AveragePooling2D(2), (2, 4, 5, 2)),
    (lambda: layers.AveragePooling1D(3, strides=1, padding="same"), (2, 6, 2)),
    (lambda: layers.AveragePooling3D((1, 2, 2), strides=(1, 1, 2)), (1, 3, 4, 4, 2)),
    (lambda: layers.GlobalMaxPooling2D(), (2, 3, 4, 3)),
    (lambda: layers.GlobalMaxPooling1D(keepdims=True), (2, 5, 3)),
    (lambda: layers.GlobalMaxPooling3D(), (2, 2, 3, 2, 2)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (2, 3, 4, 3)),
    (lambda: layers.GlobalAveragePooling1D(), (2, 5, 3)),
    (lambda: layers.GlobalAveragePooling3D(), (2, 2, 3, 2, 2)),
]


@pytest.mark.parametrize("make, shape", GRAD_CASES, ids=[f"g{i}" for i in range(len(GRAD_CASES))])
def test_gradients_float64(make, shape, rng):
    check_layer_gradients(make(), rng.normal(size=shape))


# ---------------------------------------------------------------- torch parity
@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("rank, pool, strides, padding, spatial", POOL_GRID)
def test_max_pool_parity(rng, dtype, ties, rank, pool, strides, padding, spatial):
    """With ``ties`` the input holds only the values 0, 1, 2: many windows have several maxima and
    torch's rule (first maximum in row-major order) decides; overlapping windows add gradients."""
    layer = MAX_CLASSES[rank](pool, strides=strides, padding=padding, dtype=dtype)
    shape = (2,) + spatial + (3,)
    x = (rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)).astype(dtype)
    ks = tuple_of(pool, rank)
    ss = ks if strides is None else tuple_of(strides, rank)
    check_layer_parity(layer, x, lambda t, p: torch_max_pool(t, ks, ss, padding), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rank, pool, strides, padding, spatial", POOL_GRID)
def test_avg_pool_parity(rng, dtype, rank, pool, strides, padding, spatial):
    layer = AVG_CLASSES[rank](pool, strides=strides, padding=padding, dtype=dtype)
    x = rng.normal(size=(2,) + spatial + (3,)).astype(dtype)
    ks = tuple_of(pool, rank)
    ss = ks if strides is None else tuple_of(strides, rank)
    check_layer_parity(layer, x, lambda t, p: torch_avg_pool(t, ks, ss, padding), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("rank, keepdims", [(1, False), (2, False), (3, False), (2, True)])
def test_global_pool_parity(rng, dtype, ties, rank, keepdims):
    shape = (2,) + (4, 5, 3)[:rank] + (3,)
    x = (rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)).astype(dtype)
    dims = tuple(range(1, rank + 1))
    adaptive = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[rank]

    def torch_max(t, p):  # torch's window arg-max rule over the whole spatial extent
        y = adaptive(t.movedim(-1, 1), 1).movedim(1, -1)
        return y if keepdims else y.reshape(t.shape[0], t.shape[-1])

    cls_max = {1: layers.GlobalMaxPooling1D, 2: layers.GlobalMaxPooling2D, 3: layers.GlobalMaxPooling3D}[rank]
    cls_avg = {1: layers.GlobalAveragePooling1D, 2: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling3D}[rank]
    check_layer_parity(cls_max(keepdims=keepdims, dtype=dtype), x, torch_max, dtype=dtype)
    check_layer_parity(cls_avg(keepdims=keepdims, dtype=dtype), x, lambda t, p: t.mean(dim=dims, keepdim=keepdims),
                       dtype=dtype)


# ---------------------------------------------------------------- behaviour
def test_max_pool_tie_goes_to_first_in_row_major_order():
    x = np.zeros((1, 2, 2, 1), dtype=np.float32)
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 5.0
    layer = layers.MaxPooling2D(2)
    y = layer(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert y.item() == 5.0
    np.testing.assert_array_equal(dx[0, ..., 0], [[0.0, 1.0], [0.0, 0.0]])


def test_overlapping_windows_add_up():
    x = np.array([0.0, 3.0, 1.0, 0.0]).reshape(1, 4, 1)
    layer = layers.MaxPooling1D(2, strides=1)
    y = layer(x, training=True)
    np.testing.assert_array_equal(y.ravel(), [3.0, 3.0, 1.0])
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)).ravel(), [0.0, 2.0, 1.0, 0.0])


def test_same_average_counts_only_valid_elements():
    x = np.ones((1, 5, 5, 1))
    y = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    np.testing.assert_allclose(y, np.ones((1, 3, 3, 1)))


def test_max_pool_nan_wins_as_in_torch():
    x = np.array([1.0, np.nan, 0.5, 2.0]).reshape(1, 4, 1)
    layer = layers.MaxPooling1D(2)
    y = layer(x, training=True)
    assert np.isnan(y[0, 0, 0]) and y[0, 1, 0] == 2.0
    np.testing.assert_array_equal(layer.backward(np.ones_like(y)).ravel(), [0.0, 1.0, 0.0, 1.0])
    assert np.isnan(layer(x)[0, 0, 0])


@pytest.mark.parametrize("make, in_shape, out_shape", [
    (lambda: layers.MaxPooling2D(), (1, 7, 5, 2), (1, 3, 2, 2)),
    (lambda: layers.MaxPooling2D(padding="same"), (1, 7, 5, 2), (1, 4, 3, 2)),
    (lambda: layers.AveragePooling1D(3, strides=2), (1, 8, 2), (1, 3, 2)),
    (lambda: layers.MaxPooling3D(padding="same"), (1, 3, 4, 5, 2), (1, 2, 2, 3, 2)),
    (lambda: layers.GlobalAveragePooling3D(keepdims=True), (2, 3, 4, 5, 6), (2, 1, 1, 1, 6)),
    (lambda: layers.GlobalMaxPooling1D(), (2, 3, 6), (2, 6)),
])
def test_output_shapes(make, in_shape, out_shape):
    layer = make()
    assert layer(np.zeros(in_shape)).shape == out_shape
    assert layer.compute_output_shape((None,) + in_shape[1:]) == (None,) + out_shape[1:]


def test_float32_stays_float32_and_inference_keeps_nothing(rng):
    x = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    for layer in (layers.MaxPooling2D(), layers.AveragePooling2D(), layers.GlobalMaxPooling2D(),
                  layers.GlobalAveragePooling2D()):
        y = layer(x, training=True)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32
        layer(x, training=False)
        assert layer._cache is None


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("make, match", [
    (lambda: layers.MaxPooling2D(0), r"pool_size"),
    (lambda: layers.MaxPooling2D(2, strides=(1, 0)), r"strides"),
    (lambda: layers.AveragePooling1D(2, padding="causal"),
     r"AveragePooling1D: expected padding to be one of \['valid', 'same'\]. Received: padding='causal'"),
    (lambda: layers.MaxPooling3D((2, 2)), r"pool_size to be an int or a tuple of 3 ints"),
    (lambda: layers.GlobalAveragePooling2D(data_format="channels_first"), r"data_format='channels_first'"),
])
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_keepdims_must_be_bool():
    with pytest.raises(TypeError, match=r"keepdims='yes'"):
        layers.GlobalMaxPooling2D(keepdims="yes")


@pytest.mark.parametrize("make, shape, match", [
    (lambda: layers.MaxPooling2D(3, name="p"), (1, 2, 5, 1),
     r"layer 'p' \(MaxPooling2D\): the pool is larger than the padded input along spatial axis 0: "
     r"pool size 3 > padded input size 2 \(input 2 \+ padding 0\+0, padding=\'valid\'\)"),
    (lambda: layers.AveragePooling1D(4), (1, 3, 2), r"\(AveragePooling1D\): the pool is larger"),
    (lambda: layers.MaxPooling2D(), (2, 4, 4), r"\(MaxPooling2D\).*expected ndim=4"),
    (lambda: layers.GlobalAveragePooling2D(), (2, 4, 4), r"\(GlobalAveragePooling2D\).*expected ndim=4"),
])
def test_invalid_inputs(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make()(np.zeros(shape))
