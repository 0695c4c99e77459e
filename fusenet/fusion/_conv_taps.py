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
with 32 to 64 channels, as fast as the im2col GEMM; measured on one core, per-tap GEMMs beat
im2col at 32x32x32 and 16x16x64, im2col wins at 8x8x128 where the grid is 1.56 outputs per output).
:func:`use_taps` decides.

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

**Stride 2** (:func:`s2d_conv_bordered`). A stride-2 convolution is a stride-1 convolution over the
space-to-depth grid ``g[n, a, p, c] = xpad[n, 2a + p, c]`` (``2^rank`` phase blocks of ``C``
channels, :func:`space_to_depth`, one copy of the input): tap ``k`` of an axis is shift ``k // 2``
and phase ``k % 2``. Laid out on the zero-bordered grid of the output (``out + 2`` per axis), the
taps of one shift whose phase blocks are contiguous make one GEMM (the 3x3 kernel: 4 shifts, GEMMs
with inner dimension ``4C``, ``2C``, ``C`` and ``C`` (+ ``C``)), written straight into the output's
zero-bordered buffer. The 1x1 stride-2 projection of a ResNet block reads phase ``(0, 0)`` of the
same grid: :func:`s2d_pointwise_term` makes it one more GEMM term of the block's second
convolution (no shortcut array, no separate add).

**Few input channels** (:func:`narrow_conv_bordered`: the 3-channel stem): per block of rows the
patches are gathered (``prod(K) * C`` columns) and multiplied in one GEMM into the bordered buffer.

**Threads.** The blocks of rows of every path are independent: :func:`run_blocks` runs them side by
side on the BLAS threads' cores (:func:`fusenet._parallel.run_chunks`, OpenBLAS at one thread
meanwhile), each with its own scratch (:func:`workspace` is per thread), so the element-wise work of
each block (bias, residual add, activation, pool) runs in parallel too and no GEMM waits for BLAS
threads. The GEMMs go straight to ``cblas_?gemm`` (:class:`TapGemms`).
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref

import numpy as np

from .._blas import _CBLAS, GEMM_DTYPES, gemm, numpy_gemm
from .._parallel import run_chunks, worker_count
from ..layers import _conv_ops as ops
from ..layers._conv_taps_ops import tap_offsets

__all__ = []  # private module

_ROW_MAJOR, _NO_TRANS = 101, 111

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


# ---------------------------------------------------------------- accumulating GEMMs on row-offset views
class TapGemms:
    """A sum of GEMMs on row-offset views of row matrices, run one block of rows at a time:

        out = sum_t src_t[q0 + off_t : q1 + off_t, col_t : col_t + K_t] @ w_t        (w_t: (K_t, F))

    On NumPy's own BLAS the calls go straight to ``cblas_?gemm`` with pointers computed once per
    tap (the checks of :func:`~fusenet._blas.gemm` cost about 3x the call itself, and a 3x3
    convolution makes a few hundred calls); otherwise through :func:`~fusenet._blas.gemm`.
    """

    def __init__(self, filters: int, dtype):
        self.filters, self.dtype = filters, np.dtype(dtype)
        self.item = self.dtype.itemsize
        self.fn = _CBLAS.get(self.dtype) if gemm is numpy_gemm else None
        self.taps = []
        self.limit = None  # largest q1 that keeps every view inside its source

    def add(self, src: np.ndarray, off: int, w: np.ndarray, col: int = 0) -> None:
        """One more term: rows ``q + off`` of ``src[:, col:col + w.shape[0]]`` times ``w``."""
        w = np.ascontiguousarray(w, dtype=self.dtype)
        k = w.shape[0]
        view = src[:, col:col + k]
        if src.dtype != self.dtype or view.shape[1] != k or (view.strides[1] != self.item and k > 1) or off < 0:
            raise ValueError(f"TapGemms: a {self.dtype} source of at least {col + k} unit-stride columns and a "
                             f"non-negative offset expected; received {src.dtype} {src.shape}, offset {off}")
        lda = max(view.strides[0] // self.item, k, 1)
        ptr = view.ctypes.data if self.fn is not None else 0
        self.taps.append((view, off, w, ptr, lda, k, w.ctypes.data))
        stop = src.shape[0] - off
        self.limit = stop if self.limit is None else min(self.limit, stop)

    def add_taps(self, src: np.ndarray, offsets, kernels: np.ndarray) -> None:
        """One term per kernel tap: rows ``q + offsets[t]`` of ``src`` (all its columns) times
        ``kernels[t]`` (``kernels``: ``(taps, C, F)`` contiguous); pointers computed once."""
        kernels = np.ascontiguousarray(kernels, dtype=self.dtype)
        taps, k, filters = kernels.shape
        if (src.dtype != self.dtype or src.ndim != 2 or src.shape[1] != k or filters != self.filters
                or (src.strides[1] != self.item and k > 1) or min(offsets) < 0):
            raise ValueError(f"TapGemms: a {self.dtype} source of {k} unit-stride columns and non-negative offsets "
                             f"expected; received {src.dtype} {src.shape}, offsets {min(offsets)}..")
        lda = max(src.strides[0] // self.item, k, 1)
        pa = src.ctypes.data if self.fn is not None else 0
        pw, step = kernels.ctypes.data, k * filters * self.item
        for t, off in enumerate(offsets):
            self.taps.append((src, off, kernels[t], pa, lda, k, pw + t * step))
        stop = src.shape[0] - max(offsets)
        self.limit = stop if self.limit is None else min(self.limit, stop)

    def run(self, q0: int, q1: int, out: np.ndarray, beta: float = 0.0) -> None:
        """``out = beta * out + sum_t ...`` over rows ``q0:q1`` (``out``: ``(q1 - q0, F)``, unit column stride)."""
        m = q1 - q0
        if m <= 0:
            return
        if q0 < 0 or q1 > self.limit or out.shape != (m, self.filters):
            raise ValueError(f"TapGemms: rows {q0}:{q1} into {out.shape} exceed the sources ({self.limit} rows)")
        fn = self.fn
        if fn is None or (out.strides[1] != self.item and self.filters > 1):
            for t, (view, off, w, *_) in enumerate(self.taps):
                gemm(view[q0 + off:q1 + off], w, out, beta if t == 0 else 1.0)
            return
        item, f = self.item, self.filters
        pc, ldc = out.ctypes.data, max(out.strides[0] // item, f, 1)
        for t, (_, off, _, pa, lda, k, pw) in enumerate(self.taps):
            fn(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, f, k, 1.0, pa + (q0 + off) * lda * item, lda, pw, f,
               beta if t == 0 else 1.0, pc, ldc)


# ---------------------------------------------------------------- reusable workspaces
_WORK = threading.local()
#: most workspaces kept per thread (the least recently used one is dropped when more are asked for:
#: dropping them all made the model that filled the cache allocate again on its next calls, one
#: buffer at a time, and a "no allocation after the first call" test fail depending on test order)
MAX_WORKSPACES = 24


def workspace(key, shape, dtype, zero: bool = False) -> np.ndarray:
    """A scratch array of ``shape`` kept per thread under ``key`` and handed out again on the next call
    with the same key (never returned to callers of the fused layers: their inputs and scratch
    only). ``zero=True``: zeroed when made (callers that write the same positions on every call
    rely on the others staying zero, so ``key`` must fix the written positions)."""
    cache = getattr(_WORK, "cache", None)
    if cache is None:
        cache = _WORK.cache = {}  # insertion order = least recently used first
    full = (key, tuple(shape), np.dtype(dtype).str, zero)
    buf = cache.pop(full, None)
    if buf is None:
        while len(cache) >= MAX_WORKSPACES:
            del cache[next(iter(cache))]
        buf = (np.zeros if zero else np.empty)(shape, dtype=dtype)
    cache[full] = buf
    return buf


#: run the blocks of a convolution side by side on the BLAS threads' cores (:mod:`fusenet._parallel`)
PARALLEL = True
#: fewest rows (or samples x rows) worth splitting over threads
MIN_PARALLEL_ROWS = 2048


def row_blocks(rows: int, block_rows: int, weight: int = 1) -> list:
    """``[(r0, r1), ...]`` covering ``range(rows)`` in blocks of at most ``block_rows`` rows, their
    number a multiple of the threads :func:`run_blocks` will use (even shares)."""
    if rows <= 0:
        return []
    count = -(-rows // max(1, block_rows))
    workers = worker_count(2) if PARALLEL and rows * weight >= MIN_PARALLEL_ROWS else 1
    if workers > 1:
        count = -(-max(count, workers) // workers) * workers
    count = min(count, rows)
    size = -(-rows // count)
    return [(r, min(r + size, rows)) for r in range(0, rows, size)]


def run_blocks(work, blocks) -> None:
    """``work(r0, r1)`` for every block (independent blocks, each writing only its own rows): side by
    side on the BLAS threads' cores with OpenBLAS at one thread meanwhile (:func:`fusenet._parallel.run_chunks`)
    when :data:`PARALLEL`, else in order."""
    if not PARALLEL or len(blocks) < 2:
        for r0, r1 in blocks:
            work(r0, r1)
        return
    run_chunks(lambda i: work(*blocks[i]), len(blocks))


def bordered_workspace(key, shape, dtype):
    """``(buffer, interior)`` as :func:`bordered` (border not zeroed), but a :func:`workspace`: for
    zero-bordered intermediates that do not leave a fused layer."""
    rank = len(shape) - 2
    full = (shape[0],) + tuple(s + 2 for s in shape[1:-1]) + (shape[-1],)
    buffer = workspace(("bordered", key), full, dtype)
    _BORDERED[id(buffer)] = buffer
    return buffer, buffer[(slice(None),) + (slice(1, -1),) * rank]


_EPILOGUES = {}  # id(fn) -> (weak reference to fn, epilogue): by identity (activations compare by config)


def epilogue_of(fn):
    """:func:`._conv_stage.act_epilogue` of the activation function ``fn`` (``None`` for none), made once
    per function object (telling a plain ReLU apart reads the function's config: tens of
    microseconds per call, a few dozen calls per forward of a ResNet)."""
    if fn is None:
        return None
    entry = _EPILOGUES.get(id(fn))
    if entry is not None and entry[0]() is fn:
        return entry[1]
    from ._conv_stage import act_epilogue

    ep = act_epilogue(fn)
    try:
        key = id(fn)
        _EPILOGUES[key] = (weakref.ref(fn, lambda _, key=key, table=_EPILOGUES: table.pop(key, None)), ep)
    except TypeError:  # not weakly referenceable: not cached
        pass
    return ep


def _kernel_taps(kernel: np.ndarray, dtype) -> np.ndarray:
    """The kernel ``(*K, C, F)`` as ``(taps, C, F)`` in ``dtype`` (contiguous)."""
    k = np.ascontiguousarray(kernel, dtype=dtype)
    return k.reshape((-1,) + k.shape[-2:])


# ---------------------------------------------------------------- the stride-1 tap convolution
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
    offsets = tap_offsets(geom, spans)
    last_row = n * per_sample - max(offsets)  # rows past this would read past the input (never valid outputs)
    gemms = TapGemms(filters, x.dtype)
    gemms.add_taps(rows_x, offsets, _kernel_taps(kernel, x.dtype))
    step = max(1, (BLOCK_ROWS if block_rows is None else block_rows) // per_sample)
    blocks = row_blocks(n, step, per_sample)
    valid_index = (slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)

    def work(n0, n1):  # per thread: its own scratch buffer (workspaces are per thread)
        buf = workspace("tap_conv", ((blocks[0][1] - blocks[0][0]) * per_sample, filters), x.dtype)
        q0, q1 = n0 * per_sample, min(n1 * per_sample, last_row)
        gemms.run(q0, q1, buf[:q1 - q0])
        block = buf[:(n1 - n0) * per_sample].reshape((n1 - n0,) + spans + (filters,))
        finish(block[valid_index], n0, n1)

    run_blocks(work, blocks)


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


def _grid(n: int, out_sizes):
    """``(spans, total, pitch, lead)`` of the zero-bordered grid of ``out_sizes`` (one position more on each side)."""
    spans = tuple(o + 2 for o in out_sizes)
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    return spans, n * math.prod(spans), pitch, sum(pitch)


def bordered_gemms(gemms: TapGemms, n: int, out_sizes, max_off: int, bias=None, epilogue=None, add_rows=None,
                   buffer=None) -> np.ndarray:
    """Run ``gemms`` over the zero-bordered grid of ``out_sizes`` (rows of the grid ``(n, *(out + 2))``,
    the valid output ``o`` at grid row ``q`` written to buffer row ``q + lead``, ``lead`` the flat
    index of position ``(1, ..., 1)``), with per block of rows in cache: ``+ bias``, ``+ add_rows``
    (rows of a zero-bordered buffer of the same grid) and ``epilogue`` in place; then zero the
    border. ``max_off``: the largest row offset of the terms (at most ``2 * lead``). Returns the
    interior ``(n, *out_sizes, F)`` of ``buffer`` (a new :func:`bordered` buffer by default)."""
    filters, dtype = gemms.filters, gemms.dtype
    spans, total, _, lead = _grid(n, out_sizes)
    if buffer is None:
        buffer, interior = bordered((n,) + tuple(out_sizes) + (filters,), dtype, zero=False)
    else:
        interior = buffer[(slice(None),) + (slice(1, -1),) * len(spans)]
    rows_y = buffer.reshape(total, filters)
    last_row = total - max(max_off, lead)

    def work(q0, q1):
        out = rows_y[q0 + lead:q1 + lead]
        gemms.run(q0, q1, out)
        if bias is not None:
            out += bias
        if add_rows is not None:
            out += add_rows[q0 + lead:q1 + lead]
        if epilogue is not None:
            epilogue(out)

    run_blocks(work, row_blocks(last_row, BLOCK_ROWS))
    zero_border(buffer)  # the positions computed past the output size, and the rows never written
    return interior


def _add_bias(a, b):
    if a is None:
        return b
    return a if b is None else a + b


def tap_conv_bordered(x: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None, addend=None,
                      extra=(), buffer=None) -> np.ndarray:
    """:func:`tap_conv_forward` for :func:`writes_bordered` geometries: the GEMMs write straight into a
    zero-bordered buffer (bias, ``addend`` and epilogue per block of rows in cache); returns its interior.

    ``addend``: ``None``, or an array of the output's shape added before the epilogue (the shortcut of
    a residual block): row by row in cache when it is itself a zero-bordered interior, else in one
    pass after the GEMMs (then the epilogue too). ``extra``: more GEMM terms ``(src, off, w, col)``
    on rows of the same grid (a projection shortcut, see :func:`TapGemms.add`). ``buffer``: the
    zero-bordered buffer to write (a :func:`workspace`), else a new one.
    """
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    xp = np.ascontiguousarray(padded_input(x, geom))
    spans = xp.shape[1:-1]
    rows_x = xp.reshape(n * math.prod(spans), channels)
    offsets = tap_offsets(geom, spans)
    gemms = TapGemms(filters, x.dtype)
    gemms.add_taps(rows_x, offsets, _kernel_taps(kernel, x.dtype))
    for src, off, w, col in extra:
        gemms.add(src, off, w, col)
    add_base = None if addend is None else bordered_base(addend)
    add_rows = None if add_base is None else add_base.reshape(-1, filters)
    late = addend is not None and add_rows is None  # the addend does not share the layout: after the GEMMs
    interior = bordered_gemms(gemms, n, geom.out_sizes, max(offsets), bias=bias,
                              epilogue=None if late else epilogue, add_rows=add_rows, buffer=buffer)
    if late:
        interior += addend
        if epilogue is not None:
            epilogue(interior)
    return interior


# ---------------------------------------------------------------- stride 2: space-to-depth
def s2d_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether a stride-2 convolution runs as :func:`s2d_conv_bordered`: groups 1, strides 2 and
    dilations 1 on every axis, kernels of 2 to 6 taps, 16+ channels, a GEMM dtype, and a grid of at
    most :data:`MAX_WASTE` positions per output (measured: on 8x8 outputs, 1.56, im2col is faster)."""
    return (BORDERED and groups == 1 and np.dtype(dtype) in GEMM_DTYPES and channels >= MIN_CHANNELS
            and all(s == 2 for s in geom.strides) and all(d == 1 for d in geom.dilations)
            and all(2 <= k <= 6 for k in geom.kernel_sizes)
            and math.prod(o + 2 for o in geom.out_sizes) <= MAX_WASTE * math.prod(geom.out_sizes))


def space_to_depth(x: np.ndarray, geom) -> np.ndarray:
    """The input of a stride-2 convolution as the grid ``(n, *(out + 2), *(2,) * rank, C)``:
    ``g[n, a, p, c] = xpad[n, 2a + p, c]`` with ``xpad`` the zero-padded input (``pad_before`` zeros
    first); positions outside the input are zero. A :func:`workspace` (zeroed once: every call
    writes the same positions)."""
    n, channels, rank = x.shape[0], x.shape[-1], geom.rank
    spans = tuple(o + 2 for o in geom.out_sizes)
    shape = (n,) + spans + (2,) * rank + (channels,)
    grid = workspace(("s2d", x.shape, geom.pad_before), shape, x.dtype, zero=True)
    copies = []
    for phases in itertools.product((0, 1), repeat=rank):
        dst, src = [slice(None)], [slice(None)]
        for a, p in enumerate(phases):
            pb, size = geom.pad_before[a], geom.in_sizes[a]
            a0 = max(0, (pb - p + 1) // 2)  # the first a with 2a + p - pb >= 0
            i0 = 2 * a0 + p - pb
            count = min(len(range(i0, size, 2)), spans[a] - a0)
            if count <= 0:
                break
            dst.append(slice(a0, a0 + count))
            src.append(slice(i0, i0 + 2 * count - 1, 2))
        else:
            copies.append((tuple(dst[1:]) + phases, tuple(src[1:])))

    def work(n0, n1):
        for dst, src in copies:
            grid[(slice(n0, n1),) + dst] = x[(slice(n0, n1),) + src]

    run_blocks(work, row_blocks(n, max(1, -(-n // worker_count(2))), math.prod(geom.in_sizes) * channels // 64))
    return grid


#: fill a gap of at most this many zero phase blocks to make one GEMM of two (stride-2 convolutions)
S2D_GAP = 1


def _s2d_terms(kernel: np.ndarray, geom, dtype, pitch):
    """``[(off, col_block, w)]``: the stride-2 kernel as GEMMs on the space-to-depth grid. Tap ``k`` on an
    axis is shift ``k // 2`` and phase ``k % 2``; the taps of one shift whose phase blocks (row-major
    over the phases) are contiguous share one GEMM with the kernels stacked (gaps of at most
    :data:`S2D_GAP` blocks filled with zeros)."""
    rank = geom.rank
    channels, filters = kernel.shape[-2:]
    kernel = np.asarray(kernel, dtype=dtype)
    terms = []
    for shift in itertools.product(*(range((k + 1) // 2) for k in geom.kernel_sizes)):
        blocks = {}
        for b, phases in enumerate(itertools.product((0, 1), repeat=rank)):
            tap = tuple(2 * s + p for s, p in zip(shift, phases))
            if all(t < k for t, k in zip(tap, geom.kernel_sizes)):
                blocks[b] = kernel[tap]
        order = sorted(blocks)
        runs = [[order[0]]]
        for b in order[1:]:
            if b - runs[-1][-1] - 1 <= S2D_GAP:
                runs[-1].append(b)
            else:
                runs.append([b])
        off = sum(s * p for s, p in zip(shift, pitch))
        for run in runs:
            zero = np.zeros((channels, filters), dtype=dtype)
            w = np.concatenate([blocks.get(b, zero) for b in range(run[0], run[-1] + 1)], axis=0)
            terms.append((off, run[0], w))
    return terms


def s2d_conv_bordered(x: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None, grid=None,
                      buffer=None) -> np.ndarray:
    """A stride-2 convolution (:func:`s2d_taps`) as a stride-1 convolution over the space-to-depth grid
    (:func:`space_to_depth`, ``2^rank * C`` channels, pass ``grid`` when already made) with the kernel
    rearranged into ``ceil(k / 2)`` shifts per axis: accumulating GEMMs on row-offset views of the
    grid (no im2col) written straight into a zero-bordered output buffer (:func:`bordered_gemms`)."""
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    if grid is None:
        grid = space_to_depth(x, geom)
    spans, total, pitch, _ = _grid(n, geom.out_sizes)
    rows = grid.reshape(total, -1)
    gemms = TapGemms(filters, x.dtype)
    max_off = 0
    for off, block, w in _s2d_terms(kernel, geom, x.dtype, pitch):
        gemms.add(rows, off, w, block * channels)
        max_off = max(max_off, off)
    return bordered_gemms(gemms, n, geom.out_sizes, max_off, bias=bias, epilogue=epilogue, buffer=buffer)


def s2d_pointwise_term(grid: np.ndarray, geom, conv_geom, kernel: np.ndarray, dtype):
    """The GEMM term ``(src, off, w, col)`` (for :func:`tap_conv_bordered`'s ``extra``) of a 1x1 stride-2
    convolution (``geom``) whose input is already on the space-to-depth grid of the stride-2
    convolution ``conv_geom`` of the same input and output size; ``None`` when it does not fit."""
    rank = geom.rank
    if (geom.kernel_sizes != (1,) * rank or geom.strides != (2,) * rank or geom.out_sizes != conv_geom.out_sizes
            or geom.in_sizes != conv_geom.in_sizes):
        return None
    # output o reads x[2o - pb_s] = grid[a, p] with 2a + p - pb = 2o - pb_s: a = o + e // 2, p = e % 2
    e = [pb - ps for pb, ps in zip(conv_geom.pad_before, geom.pad_before)]
    if any(v < 0 or v > 2 for v in e):
        return None
    n = grid.shape[0]
    spans, total, pitch, _ = _grid(n, geom.out_sizes)
    channels = kernel.shape[-2]
    block = int(np.ravel_multi_index(tuple(v % 2 for v in e), (2,) * rank))
    off = sum((v // 2) * p for v, p in zip(e, pitch))
    w = np.ascontiguousarray(kernel, dtype=dtype).reshape(channels, -1)
    return grid.reshape(total, -1), off, w, block * channels


# ---------------------------------------------------------------- few input channels: im2col per block
#: most im2col columns (taps * channels) for the narrow-input path
NARROW_COLUMNS = 256


def narrow_taps(geom, groups: int, channels: int, dtype) -> bool:
    """Whether a stride-1 convolution with few input channels (the 3-channel stem) runs as
    :func:`narrow_conv_bordered`: groups 1, fewer than :data:`MIN_CHANNELS` channels, a
    :func:`writes_bordered` geometry."""
    return (BORDERED and groups == 1 and np.dtype(dtype) in GEMM_DTYPES and channels < MIN_CHANNELS
            and all(s == 1 for s in geom.strides) and geom.taps * channels <= NARROW_COLUMNS
            and geom.taps > 1 and writes_bordered(geom))


def narrow_conv_bordered(x: np.ndarray, kernel: np.ndarray, geom, bias=None, epilogue=None) -> np.ndarray:
    """A stride-1 convolution of few input channels into a zero-bordered buffer: per block of rows of
    the padded grid, the patches are gathered (one strided copy, ``prod(K) * C`` columns, in cache)
    and multiplied by the kernel in one GEMM written straight into the buffer."""
    n, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    xp = np.ascontiguousarray(padded_input(x, geom))
    spans = xp.shape[1:-1]
    total = n * math.prod(spans)
    offsets = tap_offsets(geom, spans)
    pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
    max_off = max(offsets)
    item = xp.itemsize
    k, d = geom.kernel_sizes, geom.dilations
    # patches[q, t_0, ..., t_last, c] = xp_rows[q + sum t_a d_a pitch_a, c]; the last tap axis and the
    # channels merge into one contiguous run when its dilation is 1, copied as one opaque item of that
    # many bytes (NumPy copies a short float run element by element: half the time on the stem)
    if d[-1] == 1:
        inner, inner_strides, run = (), (), k[-1] * channels
    else:
        inner, inner_strides, run = (k[-1],), (d[-1] * pitch[-1] * channels * item,), channels
    unit = np.dtype((np.void, run * item))
    shape = (total - max_off,) + tuple(k[:-1]) + inner
    strides = ((channels * item,) + tuple(da * pa * channels * item for da, pa in zip(d[:-1], pitch[:-1]))
               + inner_strides)
    patches = np.ndarray(shape, dtype=unit, buffer=xp, strides=strides)
    w = np.ascontiguousarray(kernel, dtype=x.dtype).reshape(geom.taps * channels, filters)
    buffer, interior = bordered((n,) + tuple(geom.out_sizes) + (filters,), x.dtype, zero=False)
    _, _, _, lead = _grid(n, geom.out_sizes)
    rows_y = buffer.reshape(total, filters)
    last_row = total - max(max_off, lead)
    blocks = row_blocks(last_row, BLOCK_ROWS)

    def work(q0, q1):  # per thread: its own patch matrix (workspaces are per thread)
        m = q1 - q0
        cols = workspace("narrow", (blocks[0][1] - blocks[0][0], geom.taps * channels), x.dtype)
        np.copyto(cols[:m].view(unit).reshape((m,) + shape[1:]), patches[q0:q1])
        out = rows_y[q0 + lead:q1 + lead]
        gemm(cols[:m], w, out)
        if bias is not None:
            out += bias
        if epilogue is not None:
            epilogue(out)

    run_blocks(work, blocks)
    zero_border(buffer)
    return interior


def conv_infer(x: np.ndarray, kernel: np.ndarray, geom, groups: int = 1, bias=None, epilogue=None) -> np.ndarray:
    """``epilogue(conv(x) + bias)`` (epilogue in place, per block in cache): by :func:`tap_conv_bordered`,
    :func:`s2d_conv_bordered`, :func:`narrow_conv_bordered` or :func:`tap_conv_forward` where they
    apply, else by :func:`~fusenet.layers._conv_ops.conv_forward` (on the bordered buffer of ``x``
    when it fits, in chunks of :data:`IM2COL_CHUNK_BYTES`)."""
    channels, dtype = x.shape[-1], x.dtype
    if bordered_taps(geom, groups, channels, dtype):
        return tap_conv_bordered(x, kernel, geom, bias=bias, epilogue=epilogue)
    if s2d_taps(geom, groups, channels, dtype):
        return s2d_conv_bordered(x, kernel, geom, bias=bias, epilogue=epilogue)
    if narrow_taps(geom, groups, channels, dtype):
        return narrow_conv_bordered(x, kernel, geom, bias=bias, epilogue=epilogue)
    if use_taps(geom, groups, channels, dtype):
        return tap_conv_forward(x, kernel, geom, bias=bias, epilogue=epilogue)
    # im2col: conv_forward splits its chunks over two threads itself (fusenet._parallel)
    return ops.conv_forward(x, kernel, geom, groups, bias=bias, epilogue=epilogue, xp=im2col_input(x, geom),
                            chunk_bytes=IM2COL_CHUNK_BYTES)


def im2col_input(x: np.ndarray, geom) -> np.ndarray:
    """The padded input of an im2col convolution (:func:`~fusenet.layers._conv_ops.conv_forward`'s ``xp``),
    without a copy where possible: a view of the zero-bordered buffer of ``x`` when the padding fits
    in its one-position border (e.g. Keras "same" with stride 2, which pads one position after),
    ``x`` itself (a leading slice) when no padding is needed; else :func:`padded_input`. The
    patches are gathered from strided views, so these need not be contiguous."""
    spans, rank = geom.spans, geom.rank
    after = [sp - n - p for sp, n, p in zip(spans, geom.in_sizes, geom.pad_before)]
    base = bordered_base(x)
    if base is not None and all(p <= 1 and a <= 1 for p, a in zip(geom.pad_before, after)):
        return base[(slice(None),) + tuple(slice(1 - p, 1 - p + sp) for p, sp in zip(geom.pad_before, spans))]
    if not any(geom.pad_before) and all(a <= 0 for a in after):
        return x[(slice(None),) + tuple(slice(0, sp) for sp in spans)]
    return padded_input(x, geom)


#: im2col chunk size of the fallback convolutions: one chunk and its GEMM within a core's L2 (measured
#: on the resnet's 8x8x128 and stride-2 convolutions at half a batch: about 10% faster than 6 MB)
IM2COL_CHUNK_BYTES = 1536 << 10


def conv_blocks(x: np.ndarray, kernel: np.ndarray, geom, groups: int, finish) -> None:
    """``finish(valid, n0, n1)`` on the raw convolution output (no bias) of samples ``n0:n1``: per block
    of samples in cache with :func:`tap_conv`, or once on the whole output (im2col path)."""
    if use_taps(geom, groups, x.shape[-1], x.dtype):
        tap_conv(x, kernel, geom, finish)
        return
    finish(ops.conv_forward(x, kernel, geom, groups, xp=im2col_input(x, geom), chunk_bytes=IM2COL_CHUNK_BYTES),
           0, x.shape[0])
