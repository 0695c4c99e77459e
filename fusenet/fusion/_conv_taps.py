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

**Zero-bordered outputs.** When the padded grid of a convolution is its output grid plus one
position on each side (3x3 "same" or "valid", stride 1), the GEMMs can write straight into a buffer
of that padded shape, shifted by one position: the valid outputs land in its interior and the
positions computed past the output size land exactly on its border, which is then zeroed. The layer
returns the interior (a strided view); a following stride-1 convolution with one position of zero
padding finds the buffer (:func:`padded_input`) and reads it as its padded input. So a chain of
3x3 convolutions neither copies each output into a compact array nor pads it again. Pools and the
residual block write their outputs into such buffers too.
"""

from __future__ import annotations

import itertools
import math
import weakref

import numpy as np
from .._blas import GEMM_DTYPES, gemm
from ..layers import _conv_ops as ops

__all__ = []  # private module

#: target number of output rows (positions of the padded grid) per block of samples
BLOCK_ROWS = 8192
#: fewest input channels for which the per-tap GEMMs beat im2col
MIN_CHANNELS = 16
#: largest waste (padded grid positions per output position) accepted
MAX_WASTE = 1.35

def use_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether :func:`tap_conv` is the faster way for this convolution."""
    if groups != 1 or any(s != 1 for s in geom.strides) or np.dtype(dtype) not in GEMM_DTYPES or channels < MIN_CHANNELS:
        return False
    if geom.taps == 1:
        return False  # a 1x1 convolution is one GEMM on the input itself already
    return math.prod(geom.spans) <= MAX_WASTE * math.prod(geom.out_sizes)


#: write outputs into zero-bordered buffers (see the module doc); False gives compact outputs
BORDERED = True
#: the zero-bordered buffers made here, by id (weak: a buffer leaves when its last view dies)
_BORDERED = weakref.WeakValueDictionary()


def bordered(shape, dtype, zero: bool = True):
    """``(buffer, interior)``: a buffer of ``shape`` padded by one position on each spatial side and
    its interior view of ``shape``, registered for :func:`padded_input`. With ``zero=False`` the caller
    zeroes the border (:func:`zero_border`) after writing."""
    if not BORDERED:
        buffer = (np.zeros if zero else np.empty)(shape, dtype=dtype)
        return buffer, buffer
    rank = len(shape) - 2
    full = (shape[0],) + tuple(s + 2 for s in shape[1:-1]) + (shape[-1],)
    buffer = (np.zeros if zero else np.empty)(full, dtype=dtype)
    _BORDERED[id(buffer)] = buffer
    return buffer, buffer[(slice(None),) + (slice(1, -1),) * rank]


def zero_border(buffer: np.ndarray) -> None:
    """Zero the one-position border of every spatial axis of ``buffer`` (batch first, channels last)."""
    for a in range(1, buffer.ndim - 1):
        lead = (slice(None),) * a
        buffer[lead + (0,)] = 0
        buffer[lead + (-1,)] = 0


def bordered_base(x: np.ndarray):
    """The zero-bordered buffer whose interior ``x`` is exactly (:func:`bordered`), or ``None``."""
    base = x.base
    if base is None or _BORDERED.get(id(base)) is not base or base.ndim != x.ndim:
        return None
    if base.shape != (x.shape[0],) + tuple(s + 2 for s in x.shape[1:-1]) + (x.shape[-1],):
        return None
    interior = base[(slice(None),) + (slice(1, -1),) * (x.ndim - 2)]
    same = interior.__array_interface__["data"][0] == x.__array_interface__["data"][0] and interior.strides == x.strides
    return base if same else None


def padded_input(x: np.ndarray, geom) -> np.ndarray:
    """The zero-padded input of a convolution: the zero-bordered buffer ``x`` is the interior of
    (:func:`bordered`) when the convolution pads by exactly one position on each side, else
    :func:`~fusenet.layers._conv_ops.pad_input` (a copy)."""
    base = bordered_base(x)
    if base is not None and geom.pad_before == (1,) * geom.rank and tuple(geom.spans) == base.shape[1:-1]:
        return base
    return ops.pad_input(np.ascontiguousarray(x), geom)


def _offsets(geom, spans):
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    taps = itertools.product(*(range(k) for k in geom.kernel_sizes))
    return [sum(k * d * p for k, d, p in zip(tap, geom.dilations, pitch)) for tap in taps], pitch


def tap_conv(x: np.ndarray, kernel: np.ndarray, geom, finish, xp=None, block_rows: int | None = None) -> None:
    """Run the convolution of ``x`` (``(n, *in_sizes, C)``) with ``kernel`` (``(*K, C, F)``) by blocks of
    samples, calling ``finish(valid, n0, n1)`` with ``valid`` the outputs of samples ``n0:n1``
    (a strided view ``(n1 - n0, *out_sizes, F)`` of a scratch buffer, without bias, valid until the
    next block). ``xp`` may pass the padded input (:func:`~fusenet.layers._conv_ops.pad_input`).
    """
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    xp = np.ascontiguousarray(padded_input(x, geom) if xp is None else xp)
    spans = xp.shape[1:-1]
    per_sample = math.prod(spans)
    rows_x = xp.reshape(n * per_sample, channels)
    offsets, _ = _offsets(geom, spans)
    last_row = n * per_sample - max(offsets)  # rows past this would read past the input (never valid outputs)
    w = np.ascontiguousarray(kernel.astype(x.dtype, copy=False)).reshape(len(offsets), channels, filters)
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


def writes_bordered(geom) -> bool:
    """Whether the padded grid is the output grid plus one position on each side (see the module doc)."""
    return all(s == o + 2 for s, o in zip(geom.spans, geom.out_sizes)) and geom.pad_before == (1,) * geom.rank


def bordered_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether a convolution runs as :func:`tap_conv_bordered` (per-tap GEMMs into a zero-bordered buffer)."""
    return BORDERED and use_taps(geom, groups, channels, dtype) and writes_bordered(geom)


def tap_conv_bordered(x: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None, addend=None) -> np.ndarray:
    """:func:`tap_conv_forward` for :func:`writes_bordered` geometries: the GEMMs write straight into a
    zero-bordered buffer (bias, ``addend`` and epilogue per block of rows in cache); returns its interior.

    ``addend``: ``None``, or an array of the output's shape added before the epilogue (the shortcut of
    a residual block): row by row in cache when it is itself a zero-bordered interior, else in one
    pass after the GEMMs (then the epilogue too).
    """
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    xp = np.ascontiguousarray(padded_input(x, geom))
    spans = xp.shape[1:-1]
    total = n * math.prod(spans)
    rows_x = xp.reshape(total, channels)
    offsets, pitch = _offsets(geom, spans)
    lead = sum(pitch)  # output position o is buffer position o + 1 on every axis
    last_row = total - max(offsets)
    w = np.ascontiguousarray(kernel.astype(x.dtype, copy=False)).reshape(len(offsets), channels, filters)
    buffer, interior = bordered((n,) + tuple(geom.out_sizes) + (filters,), x.dtype, zero=False)
    rows_y = buffer.reshape(total, filters)
    add_base = None if addend is None else bordered_base(addend)
    rows_add = None if add_base is None else add_base.reshape(total, filters)
    late = addend is not None and rows_add is None  # the addend does not share the layout: after the GEMMs
    for q0 in range(0, last_row, BLOCK_ROWS):
        q1 = min(q0 + BLOCK_ROWS, last_row)
        out = rows_y[q0 + lead:q1 + lead]
        for t, off in enumerate(offsets):
            gemm(rows_x[q0 + off:q1 + off], w[t], out, 0.0 if t == 0 else 1.0)
        if bias is not None:
            out += bias
        if rows_add is not None:
            out += rows_add[q0 + lead:q1 + lead]
        if epilogue is not None and not late:
            epilogue(out)
    zero_border(buffer)  # the positions computed past the output size, and the rows never written
    if late:
        interior += addend
        if epilogue is not None:
            epilogue(interior)
    return interior


def conv_infer(x: np.ndarray, kernel: np.ndarray, geom, groups: int = 1, bias=None, epilogue=None) -> np.ndarray:
    """``epilogue(conv(x) + bias)`` (epilogue in place, per block in cache): by :func:`tap_conv_bordered`
    or :func:`tap_conv_forward` where :func:`use_taps` says so, else by
    :func:`~fusenet.layers._conv_ops.conv_forward` (on the bordered buffer of ``x`` when it fits)."""
    if bordered_taps(geom, groups, x.shape[-1], x.dtype):
        return tap_conv_bordered(x, kernel, geom, bias=bias, epilogue=epilogue)
    if use_taps(geom, groups, x.shape[-1], x.dtype):
        return tap_conv_forward(x, kernel, geom, bias=bias, epilogue=epilogue)
    return ops.conv_forward(x, kernel, geom, groups, bias=bias, epilogue=epilogue, xp=padded_input(x, geom))


def conv_blocks(x: np.ndarray, kernel: np.ndarray, geom, groups: int, finish) -> None:
    """``finish(valid, n0, n1)`` on the raw convolution output (no bias) of samples ``n0:n1``: per block
    of samples in cache with :func:`tap_conv`, or once on the whole output (im2col path)."""
    if use_taps(geom, groups, x.shape[-1], x.dtype):
        tap_conv(x, kernel, geom, finish)
    else:
        finish(ops.conv_forward(x, kernel, geom, groups, xp=padded_input(x, geom)), 0, x.shape[0])


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
    offsets, _ = _offsets(geom, spans)
    lead = max(offsets)
    total = n * per_sample
    grid = np.zeros((lead + total, filters), dtype=dy.dtype)
    valid_index = (slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)
    grid[lead:].reshape((n,) + tuple(spans) + (filters,))[valid_index] = dy
    w = np.ascontiguousarray(kernel.astype(dy.dtype, copy=False)).reshape(len(offsets), channels, filters)
    dxp = np.empty((total, channels), dtype=dy.dtype)
    step = BLOCK_ROWS if block_rows is None else block_rows
    for p0 in range(0, total, step):
        p1 = min(p0 + step, total)
        out = dxp[p0:p1]
        for t, off in enumerate(offsets):
            gemm(grid[lead + p0 - off:lead + p1 - off], w[t], out, 0.0 if t == 0 else 1.0, trans_b=True)
    interior = (slice(None),) + tuple(slice(p, p + size) for p, size in zip(geom.pad_before, x_shape[1:-1]))
    return np.ascontiguousarray(dxp.reshape((n,) + tuple(spans) + (channels,))[interior])
