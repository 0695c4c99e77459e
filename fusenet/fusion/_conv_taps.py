"""Private: stride-1 convolution as one accumulating GEMM per kernel tap, without im2col.

For a convolution with strides 1 and groups 1, flatten the zero-padded input ``xp`` (shape
``(n, *spans, C)``) into the matrix ``X`` of ``n * prod(spans)`` rows and ``C`` columns. Output
position ``o`` and kernel tap ``k`` read input position ``o + k * d``; on the flattened padded grid
that is row ``q + off(k)`` with ``q`` the flat index of ``o`` and ``off(k) = sum_a k_a * d_a * pitch_a``
(``pitch_a`` = number of rows per step along axis ``a``). So, computing the output on the whole
padded grid (the positions past the output size are thrown away),

    Y[q] = sum_k X[q + off(k)] @ kernel[k]          (kernel[k]: (C, F))

is, per block of rows, ``prod(kernel_size)`` GEMMs whose left operand is a contiguous row range
of ``X`` (a view, no copy) and which accumulate into the same output block (BLAS ``gemm`` with
``beta = 1``, in place). Compared with im2col + one GEMM this skips the gather (a copy of
``prod(kernel_size)`` times the input) at the price of computing ``prod(spans) / prod(out_sizes)``
times the outputs (1.13 for 32x32 "same" 3x3, 1.27 for 16x16). The GEMMs have inner dimension ``C``;
they are efficient from about 16 channels on (OpenBLAS on this machine: 210-280 GFLOP/s float32
with 32 to 64 channels, as fast as the im2col GEMM). :func:`use_taps` decides.

Each block is whole samples: after its GEMMs, the valid outputs of the block are finished while
in cache by ``finish(valid, n0, n1)`` (bias, activation, a pool, a residual add...).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.linalg import blas

from ..layers import _conv_ops as ops

__all__ = []  # private module

#: target number of output rows (positions of the padded grid) per block of samples
BLOCK_ROWS = 8192
#: fewest input channels for which the per-tap GEMMs beat im2col
MIN_CHANNELS = 16
#: largest waste (padded grid positions per output position) accepted
MAX_WASTE = 1.35

_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112


def _numpy_cblas():
    """NumPy's own BLAS ``?gemm`` (the ILP64 OpenBLAS of the NumPy wheels) through ctypes, or ``{}``.

    The accumulating GEMMs need ``beta = 1``, which ``np.matmul`` does not offer. SciPy's
    ``scipy.linalg.blas`` does, but SciPy ships its own OpenBLAS with its own worker threads: after
    a call, each library's idle workers spin for a while, and alternating the two libraries (as a
    model does, layer after layer) made both run up to 2-3x slower on two cores. So the GEMMs go to
    the library NumPy itself uses when it can be found, and to SciPy's otherwise.
    """
    try:
        import ctypes
        import glob
        import os

        root = os.path.dirname(np.__file__)
        paths = sorted(glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
                       + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_cblas_", "cblas_"):
                names = (f"{prefix}sgemm64_", f"{prefix}dgemm64_")
                if all(hasattr(lib, name) for name in names):
                    out = {}
                    for name, dtype, real in zip(names, (np.float32, np.float64), (ctypes.c_float, ctypes.c_double)):
                        fn = getattr(lib, name)
                        index = ctypes.c_int64
                        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, real,
                                       ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
                        fn.restype = None
                        out[np.dtype(dtype)] = _cblas_gemm(fn)
                    return out
    except (ImportError, OSError, AttributeError):  # pragma: no cover - another NumPy build: SciPy's BLAS
        pass
    return {}  # pragma: no cover - NumPy without a findable OpenBLAS


def _cblas_gemm(fn):
    def gemm(a, b, c, beta, trans_b=False):
        item = a.itemsize
        fn(_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS if trans_b else _CBLAS_NO_TRANS, a.shape[0], c.shape[1],
           a.shape[1], 1.0, a.ctypes.data, a.strides[0] // item, b.ctypes.data, b.strides[0] // item, beta,
           c.ctypes.data, c.strides[0] // item)

    return gemm


def _scipy_gemm(fn):
    def gemm(a, b, c, beta, trans_b=False):  # column-major view: c^T = op(b)^T @ a^T
        fn(1.0, b.T, a.T, beta=beta, c=c.T, overwrite_c=1, trans_a=int(trans_b))

    return gemm


#: ``gemm(a, b, c, beta, trans_b=False)``: ``c = a @ op(b) + beta * c`` in place, for row-major arrays
#: with unit inner strides (``op(b) = b.T`` when ``trans_b``)
_GEMM = _numpy_cblas() or {np.dtype(np.float32): _scipy_gemm(blas.sgemm), np.dtype(np.float64): _scipy_gemm(blas.dgemm)}


def use_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether :func:`tap_conv` is the faster way for this convolution."""
    if groups != 1 or any(s != 1 for s in geom.strides) or np.dtype(dtype) not in _GEMM or channels < MIN_CHANNELS:
        return False
    if geom.taps == 1:
        return False  # a 1x1 convolution is one GEMM on the input itself already
    return math.prod(geom.spans) <= MAX_WASTE * math.prod(geom.out_sizes)


def tap_conv(x: np.ndarray, kernel: np.ndarray, geom, finish, xp=None, block_rows: int | None = None) -> None:
    """Run the convolution of ``x`` (``(n, *in_sizes, C)``) with ``kernel`` (``(*K, C, F)``) by blocks of
    samples, calling ``finish(valid, n0, n1)`` with ``valid`` the outputs of samples ``n0:n1``
    (a strided view ``(n1 - n0, *out_sizes, F)`` of a scratch buffer, without bias, valid until the
    next block). ``xp`` may pass the padded input (:func:`~fusenet.layers._conv_ops.pad_input`).
    """
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    if xp is None:
        xp = ops.pad_input(np.ascontiguousarray(x), geom)
    xp = np.ascontiguousarray(xp)
    spans = xp.shape[1:-1]
    per_sample = math.prod(spans)
    rows_x = xp.reshape(n * per_sample, channels)
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    taps = list(itertools.product(*(range(k) for k in geom.kernel_sizes)))
    offsets = [sum(k * d * p for k, d, p in zip(tap, geom.dilations, pitch)) for tap in taps]
    last_row = n * per_sample - max(offsets)  # rows past this would read past the input (never valid outputs)
    w = np.ascontiguousarray(kernel.astype(x.dtype, copy=False)).reshape(len(taps), channels, filters)
    gemm = _GEMM[x.dtype]
    step = max(1, (BLOCK_ROWS if block_rows is None else block_rows) // per_sample)
    buf = np.empty((min(step, n) * per_sample, filters), dtype=x.dtype)
    valid_index = (slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)
    for n0 in range(0, n, step):
        n1 = min(n0 + step, n)
        q0, q1 = n0 * per_sample, min(n1 * per_sample, last_row)
        out = buf[:q1 - q0]
        for t, off in enumerate(offsets):
            gemm(rows_x[q0 + off:q1 + off], w[t], out, 0.0 if t == 0 else 1.0)
        block = buf[:(n1 - n0) * per_sample].reshape((n1 - n0,) + spans + (filters,))
        finish(block[valid_index], n0, n1)


def tap_conv_forward(x: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None, xp=None) -> np.ndarray:
    """:func:`~fusenet.layers._conv_ops.conv_forward` through :func:`tap_conv`: ``y = conv(x) + bias``,
    then ``epilogue(y[n0:n1])`` in place on each block of samples while it is in cache."""
    y = np.empty((x.shape[0],) + geom.out_sizes + (kernel.shape[-1],), dtype=x.dtype)

    def finish(valid, n0, n1):
        out = y[n0:n1]
        if bias is None:
            np.copyto(out, valid)
        else:
            np.add(valid, bias, out=out)
        if epilogue is not None:
            epilogue(out)

    tap_conv(x, kernel, geom, finish, xp=xp)
    return y


def conv_infer(x: np.ndarray, kernel: np.ndarray, geom, groups: int = 1, bias=None, epilogue=None) -> np.ndarray:
    """``epilogue(conv(x) + bias)`` (epilogue in place, per block in cache), by :func:`tap_conv_forward`
    where :func:`use_taps` says so, else by :func:`~fusenet.layers._conv_ops.conv_forward`."""
    if use_taps(geom, groups, x.shape[-1], x.dtype):
        return tap_conv_forward(x, kernel, geom, bias=bias, epilogue=epilogue)
    return ops.conv_forward(x, kernel, geom, groups, bias=bias, epilogue=epilogue)


def conv_blocks(x: np.ndarray, kernel: np.ndarray, geom, groups: int, finish) -> None:
    """``finish(valid, n0, n1)`` on the raw convolution output (no bias) of samples ``n0:n1``: per block
    of samples in cache with :func:`tap_conv`, or once on the whole output (im2col path)."""
    if use_taps(geom, groups, x.shape[-1], x.dtype):
        tap_conv(x, kernel, geom, finish)
    else:
        finish(ops.conv_forward(x, kernel, geom, groups), 0, x.shape[0])


def tap_conv_input_grad(dy: np.ndarray, kernel: np.ndarray, geom, x_shape, block_rows: int | None = None) -> np.ndarray:
    """``dx`` of a stride-1 convolution (groups 1) from ``dy`` (``(n, *out_sizes, F)``): the adjoint of
    :func:`tap_conv`, also one accumulating GEMM per kernel tap on row-offset views.

    ``dy`` is placed on the padded grid (zeros elsewhere, ``max(off)`` zero rows in front) as ``G``;
    then the gradient of the padded input is ``dXp[p] = sum_k G[p - off(k)] @ kernel[k]^T`` and ``dx``
    its interior (the padding positions are dropped).
    """
    n, filters = dy.shape[0], dy.shape[-1]
    channels = kernel.shape[-2]
    spans = geom.spans
    per_sample = math.prod(spans)
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    taps = list(itertools.product(*(range(k) for k in geom.kernel_sizes)))
    offsets = [sum(k * d * p for k, d, p in zip(tap, geom.dilations, pitch)) for tap in taps]
    lead = max(offsets)
    total = n * per_sample
    grid = np.zeros((lead + total, filters), dtype=dy.dtype)
    valid_index = (slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)
    grid[lead:].reshape((n,) + tuple(spans) + (filters,))[valid_index] = dy
    w = np.ascontiguousarray(kernel.astype(dy.dtype, copy=False)).reshape(len(taps), channels, filters)
    gemm = _GEMM[dy.dtype]
    dxp = np.empty((total, channels), dtype=dy.dtype)
    step = BLOCK_ROWS if block_rows is None else block_rows
    for p0 in range(0, total, step):
        p1 = min(p0 + step, total)
        out = dxp[p0:p1]
        for t, off in enumerate(offsets):
            gemm(grid[lead + p0 - off:lead + p1 - off], w[t], out, 0.0 if t == 0 else 1.0, trans_b=True)
    interior = (slice(None),) + tuple(slice(p, p + size) for p, size in zip(geom.pad_before, x_shape[1:-1]))
    return np.ascontiguousarray(dxp.reshape((n,) + tuple(spans) + (channels,))[interior])
