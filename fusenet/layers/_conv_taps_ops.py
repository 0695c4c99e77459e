"""Private: stride-1 convolutions (groups 1) as one accumulating GEMM per kernel tap, without im2col.

The layer-level counterpart of :mod:`fusenet.fusion._conv_taps` (which the fused inference path uses):
the unfused convolution layers and the fused layers in training both run through
:func:`~fusenet.layers._conv_ops.conv_forward` / :func:`~fusenet.layers._conv_ops.conv_backward`, which
call this module where :func:`use_taps` says so, so that the two compute bit for bit the same numbers.

Flatten the zero-padded input ``xp`` (``(n, *spans, C)``) into the matrix ``X`` of ``n * prod(spans)``
rows. Output position ``o`` and kernel tap ``k`` read input position ``o + k * d``: on the flattened
padded grid that is row ``q + off(k)``, with ``q`` the flat grid index of ``o`` and
``off(k) = sum_a k_a * d_a * pitch_a`` (``pitch_a``: rows per step along axis ``a``). Computing the
output on the whole padded grid (positions past the output size are thrown away),

    Y[q] = sum_k X[q + off(k)] @ kernel[k]                                   (kernel[k]: (C, F))

is, per block of rows, ``prod(kernel_size)`` GEMMs on contiguous row ranges of ``X`` (views, no copy)
accumulating into one output block (BLAS ``beta = 1``). The input gradient is the adjoint: with ``G``
the output gradient placed on the padded grid (zeros elsewhere),

    dXp[p] = sum_k G[p - off(k)] @ kernel[k]^T

and ``dx`` is the interior of ``dXp``. Both work on blocks of whole samples of about
:data:`BLOCK_ROWS` grid rows, and copy the valid part of each block into the compact result while the
block is in cache. The cost is ``prod(spans) / prod(out_sizes)`` times the useful arithmetic (1.13 for
32x32 "same" 3x3, 1.27 for 16x16), against an im2col copy of ``prod(kernel_size)`` times the input
and, for the input gradient, a ``dcol`` buffer of that size and a col2im pass.

The kernel gradient stays an im2col GEMM (:func:`~fusenet.layers._conv_ops.conv_backward`): per tap,
``X_shift^T @ G`` has a ``(C, F)`` output and runs slower on OpenBLAS than one GEMM on the gathered
patches (measured here).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .._blas import GEMM_DTYPES, gemm
from .._parallel import split_run

__all__ = []  # private module

#: target number of padded-grid rows per block of samples
BLOCK_ROWS = 8192
#: fewest input channels for which the per-tap GEMMs beat im2col
MIN_CHANNELS = 16
#: largest waste (padded grid positions per output position) accepted
MAX_WASTE = 1.35


def use_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether the per-tap GEMMs run this convolution: strides 1, groups 1, a float32/float64 dtype, at
    least :data:`MIN_CHANNELS` input channels, more than one kernel tap, and a padded grid at most
    :data:`MAX_WASTE` times the output."""
    if groups != 1 or any(s != 1 for s in geom.strides) or np.dtype(dtype) not in GEMM_DTYPES:
        return False
    if channels < MIN_CHANNELS or geom.taps == 1:
        return False
    return math.prod(geom.spans) <= MAX_WASTE * math.prod(geom.out_sizes)


def tap_offsets(geom, spans) -> list:
    """``off(k)`` of every kernel tap (row-major over ``kernel_sizes``) on a grid of ``spans``."""
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    taps = itertools.product(*(range(k) for k in geom.kernel_sizes))
    return [sum(k * d * p for k, d, p in zip(tap, geom.dilations, pitch)) for tap in taps]


def _samples_per_block(per_sample: int, block_rows) -> int:
    return max(1, (BLOCK_ROWS if block_rows is None else block_rows) // per_sample)


def _tap_kernel(kernel: np.ndarray, dtype, taps: int) -> np.ndarray:
    """``(*K, C, F)`` -> ``(taps, C, F)`` contiguous, in ``dtype``."""
    return np.ascontiguousarray(kernel, dtype=dtype).reshape((taps,) + kernel.shape[-2:])


def tap_forward(xp: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None,
                block_rows: int | None = None) -> np.ndarray:
    """``y = conv(x, kernel) (+ bias)`` from the padded input ``xp`` (``(n, *geom.spans, C)``, from
    :func:`~fusenet.layers._conv_ops.pad_input`); returns ``(n, *geom.out_sizes, F)`` in ``xp.dtype``.

    Per block of samples: the per-tap GEMMs into a scratch block, then the valid outputs copied into
    ``y`` (``+ bias``) and ``epilogue(y_block)`` applied in place while they are in cache.
    """
    n, channels, filters = xp.shape[0], xp.shape[-1], kernel.shape[-1]
    xp = np.ascontiguousarray(xp)
    spans = xp.shape[1:-1]
    per_sample = math.prod(spans)
    rows_x = xp.reshape(n * per_sample, channels)
    offsets = tap_offsets(geom, spans)
    last_row = n * per_sample - max(offsets)  # later rows would read past the input; none is a valid output
    w = _tap_kernel(kernel, xp.dtype, len(offsets))
    y = np.empty((n,) + tuple(geom.out_sizes) + (filters,), dtype=xp.dtype)
    step = _samples_per_block(per_sample, block_rows)
    valid = (slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)

    def run(b0, b1):  # blocks b0:b1 of samples
        buf = np.empty((min(step, n) * per_sample, filters), dtype=xp.dtype)
        for n0 in range(b0 * step, min(b1 * step, n), step):
            n1 = min(n0 + step, n)
            q0, q1 = n0 * per_sample, min(n1 * per_sample, last_row)
            out = buf[:q1 - q0]
            for t, off in enumerate(offsets):
                gemm(rows_x[q0 + off:q1 + off], w[t], out, 0.0 if t == 0 else 1.0)
            block = buf[:(n1 - n0) * per_sample].reshape((n1 - n0,) + spans + (filters,))[valid]
            yb = y[n0:n1]
            if bias is None:
                np.copyto(yb, block)
            else:
                np.add(block, bias, out=yb)
            if epilogue is not None:
                epilogue(yb)

    split_run(run, -(-n // step))
    return y


def output_grid(dy: np.ndarray, geom) -> tuple[np.ndarray, int]:
    """``(grid, lead)``: ``dy`` (``(n, *out_sizes, F)``) placed on the padded grid, zeros elsewhere, as a
    ``(lead + n * prod(spans), F)`` matrix whose row ``lead + q`` is grid position ``q`` (``lead = max(off)``
    zero rows in front, so that every tap's shifted row range starts inside the buffer). Only the
    positions outside ``dy`` are zeroed."""
    n, filters = dy.shape[0], dy.shape[-1]
    spans = tuple(geom.spans)
    lead = max(tap_offsets(geom, spans))
    grid = np.empty((lead + n * math.prod(spans), filters), dtype=dy.dtype)
    grid[:lead] = 0
    g = grid[lead:].reshape((n,) + spans + (filters,))
    # the positions past the output along axis a (the earlier axes restricted to the output)
    zeros = [tuple(slice(0, oo) for oo in geom.out_sizes[:a]) + (slice(o, sp),)
             for a, (o, sp) in enumerate(zip(geom.out_sizes, spans)) if o < sp]
    valid = tuple(slice(0, o) for o in geom.out_sizes)

    def run(n0, n1):  # samples n0:n1 (the two halves of the batch on two threads)
        part = g[n0:n1]
        for index in zeros:
            part[(slice(None),) + index] = 0
        part[(slice(None),) + valid] = dy[n0:n1]

    split_run(run, n)
    return grid, lead


def tap_input_grad(dy: np.ndarray, kernel: np.ndarray, geom, block_rows: int | None = None) -> np.ndarray:
    """``dx`` (``(n, *geom.in_sizes, C)``) of :func:`tap_forward` from ``dy`` (``(n, *out_sizes, F)``):
    per block of samples, ``dXp = sum_k G[p - off(k)] @ kernel[k]^T`` (per-tap GEMMs), then its interior
    (the positions of the unpadded input) copied into ``dx`` while in cache. Input positions that no
    output reads (a "valid" convolution whose windows stop short of the end) get zeros."""
    n, channels = dy.shape[0], kernel.shape[-2]
    spans = tuple(geom.spans)
    per_sample = math.prod(spans)
    offsets = tap_offsets(geom, spans)
    grid, lead = output_grid(dy, geom)
    w = _tap_kernel(kernel, dy.dtype, len(offsets))
    dx = np.empty((n,) + tuple(geom.in_sizes) + (channels,), dtype=dy.dtype)
    # the padded grid covers input positions [-pad_before, spans - pad_before) per axis
    src = (slice(None),) + tuple(slice(p, p + min(size, sp - p)) for p, size, sp in zip(geom.pad_before, geom.in_sizes, spans))
    dst = (slice(None),) + tuple(slice(0, min(size, sp - p)) for p, size, sp in zip(geom.pad_before, geom.in_sizes, spans))
    for a, (p, size, sp) in enumerate(zip(geom.pad_before, geom.in_sizes, spans)):
        if sp - p < size:  # input positions past the grid: read by no output
            dx[(slice(None),) * (a + 1) + (slice(sp - p, size),)] = 0
    step = _samples_per_block(per_sample, block_rows)

    def run(b0, b1):  # blocks b0:b1 of samples
        buf = np.empty((min(step, n) * per_sample, channels), dtype=dy.dtype)
        for n0 in range(b0 * step, min(b1 * step, n), step):
            n1 = min(n0 + step, n)
            p0, p1 = n0 * per_sample, n1 * per_sample
            out = buf[:p1 - p0]
            for t, off in enumerate(offsets):
                gemm(grid[lead + p0 - off:lead + p1 - off], w[t], out, 0.0 if t == 0 else 1.0, trans_b=True)
            block = out.reshape((n1 - n0,) + spans + (channels,))
            np.copyto(dx[(slice(n0, n1),) + dst[1:]], block[src])

    split_run(run, -(-n // step))
    return dx
