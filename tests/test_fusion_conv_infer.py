"""Inference paths of the fused convolutions (:mod:`fusenet.fusion._conv_taps`): stride-2 convolutions
on the space-to-depth grid, the 1x1 stride-2 projection of a residual block as one more GEMM term of
its second convolution, the few-channel (stem) im2col path, the direct BLAS calls and the per-thread
workspaces. Each fused layer is compared with the unfused run (float64 rtol 1e-10, float32 rtol 1e-5
atol 1e-6) and each path is checked to be the one taken.
"""

import threading

import numpy as np
import pytest

from fusenet import _blas, layers
from fusenet.fusion import FusedConvBNActivation, FusedResidualConvBlock, _conv_residual, _conv_taps
from fusenet.layers import _conv_ops as ops
from tests.fusion_check import TOL, check_fused_equals_unfused

DTYPES = [np.float64, np.float32]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def small_blocks(monkeypatch):
    """Several row blocks even on small inputs (run side by side on the BLAS threads' cores where there
    are several), and the tap paths whatever the waste of tiny grids."""
    monkeypatch.setattr(_conv_taps, "BLOCK_ROWS", 50)
    monkeypatch.setattr(_conv_taps, "MAX_WASTE", 10.0)
    monkeypatch.setattr(_conv_taps, "MIN_PARALLEL_ROWS", 0)


def _spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(module, name, wrapper)
    return calls


S2D_CONFIGS = {
    "2d_same_even": (layers.Conv2D, dict(kernel_size=3, padding="same"), (3, 8, 8, 16)),
    "2d_same_odd": (layers.Conv2D, dict(kernel_size=3, padding="same"), (2, 9, 7, 16)),
    "2d_valid": (layers.Conv2D, dict(kernel_size=3, padding="valid"), (2, 9, 8, 16)),
    "2d_k2": (layers.Conv2D, dict(kernel_size=2, padding="valid"), (2, 8, 6, 16)),
    "2d_k4_same": (layers.Conv2D, dict(kernel_size=(4, 3), padding="same"), (2, 7, 8, 16)),
    "2d_k5_same": (layers.Conv2D, dict(kernel_size=5, padding="same"), (2, 10, 9, 16)),
    "1d_same": (layers.Conv1D, dict(kernel_size=3, padding="same"), (3, 11, 16)),
    "3d_same": (layers.Conv3D, dict(kernel_size=3, padding="same"), (2, 4, 6, 5, 16)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", list(S2D_CONFIGS))
@pytest.mark.parametrize("gap", [0, 1])
def test_stride2_space_to_depth(rng, monkeypatch, small_blocks, dtype, config, gap):
    """Stride-2 convolutions with 16+ channels run on the space-to-depth grid (zero-padded phases,
    shifted GEMMs, gaps filled or not), for every padding, kernel size and rank; the output is a
    zero-bordered buffer that a following 3x3 convolution reads in place."""
    monkeypatch.setattr(_conv_taps, "S2D_GAP", gap)
    cls, kwargs, shape = S2D_CONFIGS[config]
    x = rng.normal(size=shape).astype(dtype)
    calls = _spy(monkeypatch, _conv_taps, "s2d_conv_bordered")
    for use_bias in (False, True):
        fused = check_fused_equals_unfused(lambda: [cls(6, strides=2, use_bias=use_bias, dtype=dtype, **kwargs),
                                                    layers.BatchNormalization(), layers.ReLU()],
                                           x, False, FusedConvBNActivation)
    assert len(calls) == 4  # two runs per check (fused and its before/after comparison)
    y = fused[0](x)
    assert _conv_taps.bordered_base(y) is not None and not y.flags.c_contiguous
    check_fused_equals_unfused(lambda: [cls(6, strides=2, dtype=dtype, **kwargs), layers.Activation("tanh")],
                               x, True, FusedConvBNActivation)


@pytest.mark.parametrize("dtype", DTYPES)
def test_space_to_depth_grid(rng, dtype):
    """``grid[n, a, p, c] = xpad[n, 2a + p, c]`` with the zero padding of the geometry; calls reuse the
    workspace and write the same positions (the others stay zero)."""
    x = rng.normal(size=(2, 9, 6, 3)).astype(dtype)
    geom = ops.conv_geometry((9, 6), (3, 3), (2, 2), (1, 1), "same")
    grid = _conv_taps.space_to_depth(x, geom)
    spans = tuple(o + 2 for o in geom.out_sizes)
    xpad = np.zeros((2, 2 * spans[0], 2 * spans[1], 3), dtype=dtype)
    (p0, p1) = geom.pad_before
    xpad[:, p0:p0 + 9, p1:p1 + 6] = x
    expected = xpad.reshape(2, spans[0], 2, spans[1], 2, 3).transpose(0, 1, 3, 2, 4, 5)
    np.testing.assert_array_equal(grid, expected)
    again = _conv_taps.space_to_depth(x * 2, geom)
    assert again is grid
    np.testing.assert_array_equal(again, expected * 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, kernel", [(8, 3), (9, 3), (8, 5), (9, 4)])
def test_residual_projection_as_gemm_term(rng, monkeypatch, small_blocks, dtype, size, kernel):
    """The first block of a ResNet stage (stride-2 conv, 1x1 stride-2 projection + BN): the projection
    is one more GEMM term of the second convolution, on the space-to-depth grid of the first (whose
    padding puts the projection's pixels on another phase or shift for odd sizes and larger kernels)."""
    terms = _spy(monkeypatch, _conv_residual, "s2d_pointwise_term")
    x = rng.normal(size=(3, size, size, 16)).astype(dtype)

    def make():
        body = [layers.Conv2D(16, kernel, strides=2, padding="same", dtype=dtype), layers.BatchNormalization(),
                layers.ReLU(), layers.Conv2D(16, 3, padding="same", use_bias=False), layers.BatchNormalization()]
        shortcut = [layers.Conv2D(16, 1, strides=2, padding="same", use_bias=True), layers.BatchNormalization()]
        return [layers.Residual(body, shortcut=shortcut), layers.ReLU()]

    check_fused_equals_unfused(make, x, False, FusedResidualConvBlock)
    assert terms and all(term is not None for term in terms)
    check_fused_equals_unfused(make, x, True, FusedResidualConvBlock)


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual_projection_that_does_not_fit(rng, monkeypatch, small_blocks, dtype):
    """A shortcut that is not a 1x1 stride-2 convolution is computed on its own."""
    terms = _spy(monkeypatch, _conv_residual, "s2d_pointwise_term")
    x = rng.normal(size=(2, 9, 9, 16)).astype(dtype)

    def make():
        body = [layers.Conv2D(16, 3, strides=2, padding="same", dtype=dtype), layers.ReLU(),
                layers.Conv2D(16, 3, padding="same")]
        shortcut = [layers.Conv2D(16, 3, strides=2, padding="same")]
        return [layers.Residual(body, shortcut=shortcut), layers.Activation("gelu")]

    check_fused_equals_unfused(make, x, False, FusedResidualConvBlock)
    assert terms and all(term is None for term in terms)


NARROW_CONFIGS = {
    "2d_same": (layers.Conv2D, dict(kernel_size=3, padding="same"), (3, 9, 8, 3)),
    "2d_dilated_last_axis": (layers.Conv2D, dict(kernel_size=(3, 2), padding="same", dilation_rate=(1, 2)),
                             (2, 6, 7, 2)),
    "2d_not_bordered": (layers.Conv2D, dict(kernel_size=(1, 3), padding="same"), (2, 6, 7, 2)),
    "1d_same": (layers.Conv1D, dict(kernel_size=3, padding="same"), (3, 13, 4)),
    "3d_same": (layers.Conv3D, dict(kernel_size=3, padding="same"), (2, 4, 5, 6, 1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", list(NARROW_CONFIGS))
def test_few_channel_stem(rng, monkeypatch, small_blocks, dtype, config):
    """A stride-1 convolution of few input channels (the 3-channel stem) gathers its patches per block
    of rows and writes one GEMM per block into a zero-bordered buffer (with a dilated last axis the
    patches keep taps and channels as two axes); a geometry that is not bordered takes im2col."""
    cls, kwargs, shape = NARROW_CONFIGS[config]
    x = rng.normal(size=shape).astype(dtype)
    calls = _spy(monkeypatch, _conv_taps, "narrow_conv_bordered")
    fused = check_fused_equals_unfused(lambda: [cls(5, dtype=dtype, **kwargs), layers.BatchNormalization(),
                                                layers.Activation("gelu")], x, False, FusedConvBNActivation)
    bordered = kwargs["kernel_size"] != (1, 3)  # (1, 3) "same" pads no rows: not the bordered geometry
    assert bool(calls) == bordered
    assert (_conv_taps.bordered_base(fused[0](x)) is not None) == bordered


@pytest.mark.parametrize("dtype", DTYPES)
def test_tap_gemms_direct_calls_equal_checked_gemm(rng, monkeypatch, dtype):
    """The direct BLAS calls of TapGemms give the numbers of fusenet._blas.gemm (SciPy's BLAS too);
    rows past the sources and bad operands are refused."""
    src = rng.normal(size=(40, 12)).astype(dtype)
    w1 = rng.normal(size=(8, 5)).astype(dtype)
    w2 = rng.normal(size=(4, 5)).astype(dtype)
    expected = src[3:23, 0:8] @ w1 + src[7:27, 8:12] @ w2
    for patched in (None, _blas.scipy_gemm):
        if patched is not None:
            monkeypatch.setattr(_conv_taps, "gemm", patched)
        gemms = _conv_taps.TapGemms(5, dtype)
        gemms.add(src, 3, w1)
        gemms.add(src, 7, w2, col=8)
        out = np.full((20, 5), np.nan, dtype=dtype)
        gemms.run(0, 20, out)
        np.testing.assert_allclose(out, expected, **TOL[np.dtype(dtype)])
        gemms.run(0, 20, out, beta=1.0)
        np.testing.assert_allclose(out, 2 * expected, **TOL[np.dtype(dtype)])
        with pytest.raises(ValueError, match="exceed the sources"):
            gemms.run(20, 34, np.empty((14, 5), dtype=dtype))
    with pytest.raises(ValueError, match="non-negative offset"):
        _conv_taps.TapGemms(5, dtype).add(src, -1, w1)
    with pytest.raises(ValueError, match="unit-stride columns"):
        _conv_taps.TapGemms(5, dtype).add(src, 0, w1, col=6)


@pytest.mark.parametrize("rows, block, weight",
                         [(0, 8, 1), (1, 8, 1), (7, 3, 1), (100, 8, 1), (64, 7, 1156), (5, 100, 1)])
@pytest.mark.parametrize("parallel", [False, True])
def test_row_blocks_cover_the_rows(monkeypatch, rows, block, weight, parallel):
    """The blocks cover every row once, in order, none larger than asked (their number is a multiple
    of the threads when split); run_blocks calls the work on each, on any thread."""
    monkeypatch.setattr(_conv_taps, "PARALLEL", parallel)
    monkeypatch.setattr(_conv_taps, "MIN_PARALLEL_ROWS", 0)
    blocks = _conv_taps.row_blocks(rows, block, weight)
    assert [r for r0, r1 in blocks for r in range(r0, r1)] == list(range(rows))
    assert all(0 < r1 - r0 <= block for r0, r1 in blocks)
    seen = np.zeros(rows, dtype=int)

    def work(r0, r1):
        seen[r0:r1] += 1

    _conv_taps.run_blocks(work, blocks)
    assert (seen == 1).all()


def test_workspaces_are_per_key_and_per_thread():
    """A workspace comes back for the same key, shape and dtype; another thread gets its own."""
    a = _conv_taps.workspace("test", (3, 4), np.float32)
    assert _conv_taps.workspace("test", (3, 4), np.float32) is a
    assert _conv_taps.workspace("test", (3, 5), np.float32) is not a
    assert _conv_taps.workspace("test", (3, 4), np.float64) is not a
    zeros = _conv_taps.workspace("test", (2, 2), np.float32, zero=True)
    assert not zeros.any()
    other = []
    thread = threading.Thread(target=lambda: other.append(_conv_taps.workspace("test", (3, 4), np.float32)))
    thread.start()
    thread.join()
    assert other[0] is not a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, channels, filters", [(16, 32, 32), (16, 32, 64), (8, 64, 128)])
def test_reference_resnet_blocks(rng, dtype, size, channels, filters):
    """The basic blocks of the reference resnet at their real channel counts (the stage transitions
    32 -> 64 at 16x16 and 64 -> 128 at 8x8 with their projections), default block sizes and waste
    limits: fused equals unfused."""
    from tests.test_fusion_conv import _residual

    strides = 1 if channels == filters else 2
    x = rng.normal(size=(2, size, size, channels)).astype(dtype)
    check_fused_equals_unfused(lambda: [_residual(filters, strides=strides, project=strides == 2, dtype=dtype),
                                        layers.ReLU()], x, False, FusedResidualConvBlock)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, strides=2, padding="same"),
                                    dict(kernel_size=3, strides=2, padding="valid"),
                                    dict(kernel_size=1, strides=2, padding="same"),
                                    dict(kernel_size=3, strides=1, padding="same")],
                         ids=["3x3_s2_same", "3x3_s2_valid", "1x1_s2", "3x3_s1_same"])
def test_im2col_reads_zero_bordered_input_in_place(rng, monkeypatch, dtype, kwargs):
    """The im2col fallback reads a zero-bordered input as a strided view when its padding fits in the
    border (no copy), the input itself when it needs none; same numbers as the unfused run."""
    monkeypatch.setattr(_conv_taps, "MAX_WASTE", 1.0)  # no per-tap or space-to-depth path: im2col
    x = rng.normal(size=(2, 8, 10, 3)).astype(dtype)
    fused = check_fused_equals_unfused(lambda: [layers.Conv2D(16, 3, padding="same", dtype=dtype), layers.ReLU(),
                                                layers.Conv2D(5, **kwargs), layers.BatchNormalization(),
                                                layers.ReLU()], x, False)
    h = fused[0](x)
    base = _conv_taps.bordered_base(h)
    assert base is not None
    geom = fused[1].stages[0].op.layer._geometry(h.shape)
    xp = _conv_taps.im2col_input(h, geom)
    assert np.shares_memory(xp, base) and xp.shape[1:-1] == geom.spans
    np.testing.assert_array_equal(xp, ops.pad_input(np.ascontiguousarray(h), geom))


def test_epilogues_are_made_once_per_activation(rng):
    """epilogue_of gives act_epilogue's in-place function, made once per activation object (by
    identity: equal activations are different keys), None for no activation or a linear one."""
    from fusenet import activations
    from fusenet.fusion._conv_stage import act_epilogue

    relu, gelu = activations.get("relu"), activations.get("gelu")
    assert _conv_taps.epilogue_of(None) is None
    assert _conv_taps.epilogue_of(activations.get("linear")) is None
    assert _conv_taps.epilogue_of(relu) is act_epilogue(relu)  # the module's in-place ReLU
    first = _conv_taps.epilogue_of(gelu)
    assert _conv_taps.epilogue_of(gelu) is first
    x = rng.normal(size=(4, 3))
    y = x.copy()
    first(y)
    np.testing.assert_allclose(y, gelu.forward(x), rtol=1e-12)


def test_workspaces_drop_the_least_recently_used(monkeypatch):
    """A full workspace cache drops its least recently used entry, not everything: the buffers a model
    uses on every call stay put."""
    monkeypatch.setattr(_conv_taps, "MAX_WORKSPACES", 3)
    monkeypatch.setattr(_conv_taps._WORK, "cache", {}, raising=False)
    a = _conv_taps.workspace("a", (2,), np.float32)
    b = _conv_taps.workspace("b", (2,), np.float32)
    _conv_taps.workspace("c", (2,), np.float32)
    assert _conv_taps.workspace("a", (2,), np.float32) is a  # a is now the most recently used
    _conv_taps.workspace("d", (2,), np.float32)  # drops b, the least recently used
    assert _conv_taps.workspace("a", (2,), np.float32) is a
    assert _conv_taps.workspace("b", (2,), np.float32) is not b
    assert len(_conv_taps._WORK.cache) == 3
