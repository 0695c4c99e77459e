"""Convolution arithmetic on NumPy: geometry, im2col/col2im and the GEMM formulation, as pure functions.

Everything is channels-last and N-dimensional (1, 2 or 3 spatial axes):

- input ``x``: ``(batch, *in_sizes, in_channels)``;
- kernel: ``(*kernel_sizes, in_channels // groups, filters)`` (Keras layout);
- output ``y``: ``(batch, *out_sizes, filters)``.

A :class:`ConvGeometry` fixes the index map of every spatial axis: output position ``o`` and
kernel tap ``k`` read input position ``i = o * stride + k * dilation - pad_before``; positions
outside ``[0, in_size)`` are zeros (the padding). With it

    y[n, o, f] = sum_{k, c} x[n, o * s + k * d - p, c] * kernel[k, c, f]       (groups = 1)

and for ``groups = g`` the channels split into ``g`` blocks, block ``j`` of the output seeing only
block ``j`` of the input.

How the work is laid out (the speed of every convolution of fusenet comes from here):

- forward: the input is copied once into a preallocated zero-bordered buffer (only when padding is
  needed), then, one cache-sized chunk of samples at a time, the patches are gathered with
  ``sliding_window_view`` into a preallocated ``col`` buffer of shape ``(rows, *kernel, channels)``
  and multiplied by the kernel reshaped to ``(prod(kernel) * channels, filters)``: one GEMM per
  chunk (per group). A 1x1 convolution with stride 1 skips the gather: ``col`` is ``x`` reshaped.
- backward: per chunk, the same ``col`` gives ``dkernel += col^T @ dy`` (one GEMM, in place); the input
  gradient is ``dcol = dy @ kernel^T``, computed as one batched GEMM straight into the layout
  ``(kernel taps, rows, channels)`` so that col2im is one strided-slice ``+=`` per kernel tap with
  long contiguous runs (a Python loop over the ``prod(kernel)`` taps, never over samples or
  pixels; never the unbuffered ``ufunc.at`` scatter).
- transposed convolutions are the adjoint: their forward is the col2im path, their backward the
  im2col path.
- depthwise convolutions (one input channel per group) skip GEMMs, whose inner dimension would be
  the kernel size only: one broadcast multiply-add per kernel tap on strided slices.

The chunking keeps the ``col`` buffer near :data:`CHUNK_BYTES` (:data:`BACKWARD_CHUNK_BYTES` in the
backward) so that gathering, GEMM and scatter stay in cache; chunks are whole samples, or rows of one
sample when a sample alone is larger. All arithmetic stays in the input dtype.

Stride-1 convolutions with groups 1 and 16+ input channels (:func:`~fusenet.layers._conv_taps_ops.use_taps`)
run their forward and their input gradient as one accumulating GEMM per kernel tap instead
(:mod:`fusenet.layers._conv_taps_ops`: no im2col, no ``dcol``, no col2im); their kernel gradient stays
the im2col GEMM. The chunks of every pass are cut in two fixed halves that can run on two threads
(:mod:`fusenet._parallel`, opt-in), the same numbers as one after the other.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from .._blas import GEMM_DTYPES, gemm
from . import _conv_taps_ops as taps_ops
from .._parallel import split_run

__all__ = [
    "CHUNK_BYTES",
    "ConvGeometry",
    "conv_padding",
    "conv_geometry",
    "conv_transpose_size",
    "conv_transpose_geometry",
    "pad_input",
    "im2col",
    "col2im",
    "conv_forward",
    "conv_backward",
    "conv_transpose_forward",
    "conv_transpose_backward",
    "depthwise_forward",
    "depthwise_backward",
]

#: target size in bytes of the im2col buffer of one chunk (a few MB: within L2/L3 reach)
CHUNK_BYTES = 6 << 20
#: arrays below this size are padded on one thread (a worker's hand-off costs more than the copy)
_PARALLEL_BYTES = 1 << 20
#: the same for the backward (the kernel gradient's ``col`` is written then read once: keep it in L2)
BACKWARD_CHUNK_BYTES = 2 << 20


# ---------------------------------------------------------------- geometry
@dataclass(frozen=True)
class ConvGeometry:
    """Index map of a convolution: ``i = o * strides + k * dilations - pad_before`` per spatial axis.

    ``in_sizes``/``out_sizes`` are the spatial sizes of the convolution's input and output; every
    tuple has one entry per spatial axis.
    """

    in_sizes: tuple
    out_sizes: tuple
    kernel_sizes: tuple
    strides: tuple
    dilations: tuple
    pad_before: tuple

    @property
    def rank(self) -> int:
        return len(self.in_sizes)

    @property
    def effective_kernel(self) -> tuple:
        """``(k - 1) * d + 1`` per axis: the extent of one dilated window."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_sizes, self.dilations))

    @property
    def spans(self) -> tuple:
        """Padded input extent the output reads: ``(out - 1) * stride + effective_kernel`` per axis."""
        return tuple((o - 1) * s + e for o, s, e in zip(self.out_sizes, self.strides, self.effective_kernel))

    @property
    def taps(self) -> int:
        """Number of kernel taps, ``prod(kernel_sizes)``."""
        return math.prod(self.kernel_sizes)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def conv_padding(in_size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """``(out_size, pad_before, pad_after)`` of one axis, as Keras/TensorFlow compute them.

    - ``"valid"``: no padding, ``out = ceil((in - (k - 1) * d) / s)`` (may be <= 0: the caller raises);
    - ``"same"``: ``out = ceil(in / s)``, total padding ``max((out - 1) * s + (k - 1) * d + 1 - in, 0)``,
      the smaller half before (the extra element goes after: bottom/right);
    - ``"causal"``: ``(k - 1) * d`` zeros before, none after, ``out = ceil(in / s)``.
    """
    eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        return _ceil_div(in_size - eff + 1, stride), 0, 0
    if padding == "same":
        out = _ceil_div(in_size, stride)
        total = max((out - 1) * stride + eff - in_size, 0)
        return out, total // 2, total - total // 2
    if padding == "causal":
        return _ceil_div(in_size, stride), eff - 1, 0
    raise ValueError(f"conv_padding: expected padding to be one of ['valid', 'same', 'causal']. Received: padding={padding!r}")


def conv_geometry(in_sizes, kernel_sizes, strides, dilations, padding) -> ConvGeometry:
    """The :class:`ConvGeometry` of a convolution with Keras ``padding`` (``"valid"``, ``"same"``, ``"causal"``)."""
    outs, befores = [], []
    for n, k, s, d in zip(in_sizes, kernel_sizes, strides, dilations):
        out, before, _ = conv_padding(n, k, s, d, padding)
        outs.append(out)
        befores.append(before)
    return ConvGeometry(tuple(in_sizes), tuple(outs), tuple(kernel_sizes), tuple(strides), tuple(dilations), tuple(befores))


def conv_transpose_size(in_size: int, kernel: int, stride: int, dilation: int, padding: str,
                        output_padding=None) -> tuple[int, int]:
    """``(out_size, crop_before)`` of one axis of a Keras transposed convolution.

    The full ("scatter") output of a transposed convolution has ``(in - 1) * s + eff`` positions,
    input ``i`` and tap ``k`` landing on ``i * s + k * d``. Keras keeps ``out_size`` of them starting
    at ``crop_before`` (``eff = (k - 1) * d + 1``):

    - ``"valid"``: ``out = (in - 1) * s + eff + output_padding`` (default ``max(eff, s) - eff``), no crop;
    - ``"same"``: ``out = in * s`` without ``output_padding``, else ``(in - 1) * s + eff % 2 + output_padding``;
      total padding ``pad = s + eff - 2`` (resp. ``eff + eff % 2 - 2 + output_padding``), left padding
      ``min(ceil(pad / 2), eff - 1)`` and ``crop_before = eff - 1 - left``.
    """
    eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        op = max(eff, stride) - eff if output_padding is None else output_padding
        return (in_size - 1) * stride + eff + op, 0
    if padding == "same":
        if output_padding is None:
            pad_len = stride + eff - 2
            out = in_size * stride
        else:
            pad_len = eff + eff % 2 - 2 + output_padding
            out = (in_size - 1) * stride + eff % 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, eff - 1)
        return out, eff - 1 - left
    raise ValueError(f"conv_transpose_size: expected padding to be one of ['valid', 'same']. Received: padding={padding!r}")


def conv_transpose_geometry(in_sizes, kernel_sizes, strides, dilations, padding, output_padding=None) -> ConvGeometry:
    """Geometry of the *regular* convolution whose adjoint is the given Keras transposed convolution.

    Its ``in_sizes`` are the transposed convolution's output sizes and its ``out_sizes`` the
    transposed convolution's input sizes (``in_sizes`` here).
    """
    outs, crops = [], []
    for a, (n, k, s, d) in enumerate(zip(in_sizes, kernel_sizes, strides, dilations)):
        op = None if output_padding is None else output_padding[a]
        out, crop = conv_transpose_size(n, k, s, d, padding, op)
        outs.append(out)
        crops.append(crop)
    return ConvGeometry(tuple(outs), tuple(in_sizes), tuple(kernel_sizes), tuple(strides), tuple(dilations), tuple(crops))


def _tap_ranges(geom: ConvGeometry, tap, out_lo: int = 0, out_hi=None):
    """Clipped ranges of one kernel tap: ``[(out_slice, in_slice), ...]`` per axis, or ``None`` if empty.

    ``out_slice`` selects the outputs ``o`` (first axis limited to ``[out_lo, out_hi)`` and
    given relative to ``out_lo``) whose input ``o * s + k * d - p`` lies inside the input;
    ``in_slice`` the matching input positions (step ``s``).
    """
    ranges = []
    for a, k in enumerate(tap):
        n, o_size, s, d, p = geom.in_sizes[a], geom.out_sizes[a], geom.strides[a], geom.dilations[a], geom.pad_before[a]
        lo, hi = (out_lo, o_size if out_hi is None else out_hi) if a == 0 else (0, o_size)
        off = k * d - p
        o_start = max(lo, _ceil_div(-off, s))
        o_stop = min(hi, _ceil_div(n - off, s))
        if o_stop <= o_start:
            return None
        i_start = o_start * s + off
        base = lo if a == 0 else 0
        ranges.append((slice(o_start - base, o_stop - base), slice(i_start, (o_stop - 1) * s + off + 1, s)))
    return ranges


def _taps(geom: ConvGeometry):
    return list(itertools.product(*(range(k) for k in geom.kernel_sizes)))


# ---------------------------------------------------------------- padding and im2col
def pad_input(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``x`` with ``pad_before`` zeros before and as many after as the output reads (``geom.spans``).

    Returns ``x`` itself (or a leading slice of it) when no padding is needed; otherwise a new
    buffer whose borders alone are zeroed before the interior is copied in.
    """
    spans = geom.spans
    if not any(geom.pad_before) and all(sp <= n for sp, n in zip(spans, geom.in_sizes)):
        if all(sp == n for sp, n in zip(spans, geom.in_sizes)):
            return x
        return x[(slice(None),) + tuple(slice(0, sp) for sp in spans)]
    xp = np.empty((x.shape[0],) + spans + (x.shape[-1],), dtype=x.dtype)
    src, dst, zeros = [], [], []
    for a, (n, sp, p) in enumerate(zip(geom.in_sizes, spans, geom.pad_before)):
        keep = max(0, min(n, sp - p))
        src.append(slice(0, keep))
        dst.append(slice(p, p + keep))
        lead = (slice(None),) * a
        if p > 0:
            zeros.append(lead + (slice(0, p),))
        if p + keep < sp:
            zeros.append(lead + (slice(p + keep, sp),))

    def run(n0, n1):  # samples n0:n1 (the two halves of the batch on two threads)
        part = xp[n0:n1]
        for index in zeros:
            part[(slice(None),) + index] = 0
        part[(slice(None),) + tuple(dst)] = x[(slice(n0, n1),) + tuple(src)]

    split_run(run, x.shape[0], parallel=xp.nbytes >= _PARALLEL_BYTES)
    return xp


def _is_pointwise(geom: ConvGeometry) -> bool:
    """1x1 kernel, stride 1, no padding: the patches are the input itself."""
    return (all(k == 1 for k in geom.kernel_sizes) and all(s == 1 for s in geom.strides)
            and not any(geom.pad_before) and geom.in_sizes == geom.out_sizes)


def im2col(xp: np.ndarray, geom: ConvGeometry, groups: int = 1, out=None, rows=None) -> np.ndarray:
    """Gather the patches of the padded input ``xp`` (from :func:`pad_input`).

    Returns ``col`` of shape ``(n, r, *out_sizes[1:], groups, *kernel_sizes, channels // groups)``
    for the samples of ``xp`` and the output rows ``rows = (r0, r1)`` of the first spatial axis
    (all rows by default), written into ``out`` (a flat buffer of at least that size) when given.
    ``col.reshape(n * r * ..., groups, taps * channels // groups)`` is the GEMM operand.
    """
    nd = geom.rank
    r0, r1 = (0, geom.out_sizes[0]) if rows is None else rows
    s, d, eff = geom.strides, geom.dilations, geom.effective_kernel
    src = xp[:, r0 * s[0]:(r1 - 1) * s[0] + eff[0]]
    n, channels = xp.shape[0], xp.shape[-1]
    item = xp.itemsize
    if groups == 1 and d[-1] == 1 and src.strides[-1] == item and src.strides[-2] == channels * item:
        # the taps of the last kernel axis are adjacent in memory: each patch row (k_last, C) is one
        # contiguous run of the input, so the gather copies runs of k_last * C values (not C); only
        # when the last two axes of xp are contiguous (a transposed view takes the general path)
        shape = (n, r1 - r0) + geom.out_sizes[1:] + geom.kernel_sizes[:-1] + (geom.kernel_sizes[-1] * channels,)
        st = src.strides
        strides = ((st[0],) + tuple(st[1 + a] * s[a] for a in range(nd))
                   + tuple(st[1 + a] * d[a] for a in range(nd - 1)) + (st[-1],))
        win = as_strided(src, shape, strides, writeable=False)
        col = np.empty(win.shape, dtype=xp.dtype) if out is None else out[:math.prod(shape)].reshape(shape)
        np.copyto(col, win)
        return col.reshape((n, r1 - r0) + geom.out_sizes[1:] + (1,) + geom.kernel_sizes + (channels,))
    win = sliding_window_view(src, eff, axis=tuple(range(1, nd + 1)))  # (n, *positions, C, *eff)
    win = win[(slice(None),) + tuple(slice(None, None, st) for st in s) + (slice(None),)
              + tuple(slice(None, None, dl) for dl in d)]  # (n, r, *O[1:], C, *K)
    spatial = win.shape[1:nd + 1]
    win = win.reshape((n,) + spatial + (groups, channels // groups) + geom.kernel_sizes)
    order = (0,) + tuple(range(1, nd + 1)) + (nd + 1,) + tuple(range(nd + 3, 2 * nd + 3)) + (nd + 2,)
    win = win.transpose(order)  # (n, *spatial, g, *K, Cg)
    if out is None:
        col = np.empty(win.shape, dtype=xp.dtype)
    else:
        col = out[:math.prod(win.shape)].reshape(win.shape)
    np.copyto(col, win)
    return col


def col2im(dcol: np.ndarray, dx: np.ndarray, geom: ConvGeometry, rows=None, assign_tap=None) -> None:
    """Add the per-tap patch gradients ``dcol`` into ``dx`` (the adjoint of :func:`im2col`).

    ``dcol`` has shape ``(taps, n, r, *out_sizes[1:], channels)`` (tap-major, so every tap is a
    contiguous block), ``dx`` is ``(n, *in_sizes, channels)`` without padding; padded positions are
    dropped by clipping each tap's slices. One strided ``+=`` per kernel tap. ``assign_tap`` (from
    :func:`_covering_tap`, a tap whose slices cover all of ``dx``) is assigned first instead of
    added, so that ``dx`` need not be zeroed.
    """
    r0, r1 = (0, geom.out_sizes[0]) if rows is None else rows
    taps = _taps(geom)
    order = range(len(taps)) if assign_tap is None else [assign_tap] + [t for t in range(len(taps)) if t != assign_tap]
    for t in order:
        ranges = _tap_ranges(geom, taps[t], r0, r1)
        if ranges is None:
            continue
        src = dcol[t][(slice(None),) + tuple(o for o, _ in ranges)]
        dst = (slice(None),) + tuple(i for _, i in ranges)
        if t == assign_tap:
            dx[dst] = src
        else:
            dx[dst] += src


def _covering_tap(geom: ConvGeometry):
    """Index of a tap whose clipped input slices cover the whole input with step 1, or ``None``."""
    if any(s != 1 for s in geom.strides):
        return None
    for t, tap in enumerate(_taps(geom)):
        ranges = _tap_ranges(geom, tap)
        if ranges is not None and all(i.start == 0 and i.stop == n for (_, i), n in zip(ranges, geom.in_sizes)):
            return t
    return None


def _chunks(batch: int, geom: ConvGeometry, row_bytes: int, budget: int):
    """``(n0, n1, r0, r1)`` chunks: whole samples while one sample's ``col`` fits ``budget``, else rows."""
    o0 = geom.out_sizes[0]
    per_sample = max(1, o0 * row_bytes)
    if per_sample <= budget:
        nb = max(1, budget // per_sample)
        for n0 in range(0, batch, nb):
            yield n0, min(n0 + nb, batch), 0, o0
    else:
        nr = max(1, budget // max(1, row_bytes))
        for n0 in range(batch):
            for r0 in range(0, o0, nr):
                yield n0, n0 + 1, r0, min(r0 + nr, o0)


def _row_bytes(geom: ConvGeometry, channels: int, itemsize: int) -> int:
    """Bytes of ``col`` for one output row (first spatial axis) of one sample."""
    return math.prod(geom.out_sizes[1:]) * geom.taps * channels * itemsize


# ---------------------------------------------------------------- kernels in GEMM layout
def _kernel_gemm(kernel: np.ndarray, groups: int) -> np.ndarray:
    """``(*K, Cg, F)`` -> ``(g, taps * Cg, F // g)`` (a view when ``g == 1``)."""
    *ks, cg, f = kernel.shape
    taps = math.prod(ks)
    if groups == 1:
        return kernel.reshape(1, taps * cg, f)
    fg = f // groups
    return np.ascontiguousarray(kernel.reshape(taps, cg, groups, fg).transpose(2, 0, 1, 3)).reshape(groups, taps * cg, fg)


def _kernel_from_gemm(w: np.ndarray, kernel_shape) -> np.ndarray:
    """Inverse of :func:`_kernel_gemm`: ``(g, taps * Cg, Fg)`` -> ``(*K, Cg, g * Fg)``."""
    *ks, cg, f = kernel_shape
    g, _, fg = w.shape
    taps = math.prod(ks)
    return w.reshape(g, taps, cg, fg).transpose(1, 2, 0, 3).reshape(tuple(kernel_shape))


def _kernel_taps_t(kernel: np.ndarray, groups: int) -> np.ndarray:
    """``(*K, Cg, F)`` -> ``(taps, g, Fg, Cg)``: per tap and group, the transposed kernel block."""
    *ks, cg, f = kernel.shape
    taps = math.prod(ks)
    fg = f // groups
    return np.ascontiguousarray(kernel.reshape(taps, cg, groups, fg).transpose(0, 2, 3, 1))


def _gemm(col2: np.ndarray, w: np.ndarray, out2: np.ndarray) -> None:
    """``out2[m, g, :] = col2[m, g, :] @ w[g]`` for every group (one GEMM each, into ``out2``)."""
    if w.shape[0] == 1:
        np.matmul(col2[:, 0], w[0], out=out2[:, 0])
    else:
        np.matmul(col2.transpose(1, 0, 2), w, out=out2.transpose(1, 0, 2))


def _gemm_weight_grad(col2: np.ndarray, dy2: np.ndarray, dw: np.ndarray) -> None:
    """``dw[g] += col2[:, g, :]^T @ dy2[:, g, :]`` for every group (in place, without a temporary, for
    one group in float32/float64)."""
    if dw.shape[0] == 1 and dw.dtype in GEMM_DTYPES:
        gemm(col2[:, 0], dy2[:, 0], dw[0], 1.0, trans_a=True)
    elif dw.shape[0] == 1:
        dw[0] += col2[:, 0].T @ dy2[:, 0]
    else:
        dw += np.matmul(col2.transpose(1, 2, 0), dy2.transpose(1, 0, 2))


# ---------------------------------------------------------------- convolution
def _same_dtype(x, kernel):
    """``kernel`` in ``x``'s dtype (the arithmetic never leaves the input dtype)."""
    return kernel if kernel.dtype == x.dtype else kernel.astype(x.dtype)


def conv_forward(x: np.ndarray, kernel: np.ndarray, geom: ConvGeometry, groups: int = 1, bias=None,
                 epilogue=None, xp=None, chunk_bytes: int | None = None) -> np.ndarray:
    """``y = conv(x, kernel) (+ bias)``, shape ``(batch, *geom.out_sizes, filters)``, in ``x.dtype``.

    ``x``: ``(batch, *geom.in_sizes, channels)``; ``kernel``: ``(*kernel_sizes, channels // groups,
    filters)``. ``xp`` may pass the already padded input (:func:`pad_input`). ``epilogue(y_chunk)``,
    when given, is applied in place to each finished output chunk while it is in cache (after the
    bias), e.g. a fused batch-norm scale and activation.
    """
    kernel = _same_dtype(x, kernel)
    batch, channels, filters = x.shape[0], x.shape[-1], kernel.shape[-1]
    if xp is None:
        xp = pad_input(np.ascontiguousarray(x), geom)
    if groups > 1 and channels == groups:
        y = depthwise_forward(xp, kernel.reshape(kernel.shape[:-2] + (channels, filters // groups)), geom)
        if bias is not None:
            y += bias
        if epilogue is not None:
            epilogue(y)
        return y
    if taps_ops.use_taps(geom, groups, channels, x.dtype):
        return taps_ops.tap_forward(xp, kernel, geom, bias=bias, epilogue=epilogue)
    y = np.empty((batch,) + geom.out_sizes + (filters,), dtype=x.dtype)
    w = _kernel_gemm(kernel, groups)
    ck = w.shape[1]
    pointwise = _is_pointwise(geom)
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    row_bytes = _row_bytes(geom, channels, x.dtype.itemsize)
    chunks = list(_chunks(batch, geom, row_bytes, budget))
    rows = max((n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in chunks) * math.prod(geom.out_sizes[1:])

    def run(c0, c1):  # chunks c0:c1 (disjoint parts of y)
        buf = None
        for n0, n1, r0, r1 in chunks[c0:c1]:
            yc = y[n0:n1, r0:r1]
            m = yc.size // filters
            if pointwise:
                col2 = xp[n0:n1, r0:r1].reshape(m, groups, ck)
            else:
                if buf is None:
                    buf = np.empty(rows * groups * ck, dtype=x.dtype)
                col2 = im2col(xp[n0:n1], geom, groups, out=buf, rows=(r0, r1)).reshape(m, groups, ck)
            y2 = yc.reshape(m, groups, filters // groups)
            _gemm(col2, w, y2)
            if bias is not None:
                yc += bias
            if epilogue is not None:
                epilogue(yc)

    split_run(run, len(chunks))
    return y


def conv_backward(xp: np.ndarray, dy: np.ndarray, kernel: np.ndarray, geom: ConvGeometry, groups: int = 1,
                  need_dx: bool = True, need_dkernel: bool = True, chunk_bytes: int | None = None):
    """Gradients of :func:`conv_forward`: ``(dx, dkernel)`` (``None`` for what is not asked).

    ``xp`` is the padded input that :func:`pad_input` returned in the forward (only read when
    ``need_dkernel``; may be ``None`` otherwise); ``dy``: ``(batch, *out_sizes, filters)``.
    ``dx``: ``(batch, *in_sizes, channels)``; ``dkernel`` has the kernel's shape (the bias gradient,
    ``dy.sum`` over all but the last axis, is the caller's). Per chunk: ``dkernel += col^T @ dy``,
    ``dcol = dy @ kernel^T`` (tap-major) and :func:`col2im`.
    """
    kernel = _same_dtype(dy, kernel)
    batch, filters = dy.shape[0], dy.shape[-1]
    channels = kernel.shape[-2] * groups
    dy = np.ascontiguousarray(dy)
    if groups > 1 and channels == groups:
        dk = kernel.reshape(kernel.shape[:-2] + (channels, filters // groups))
        dx, dkw = depthwise_backward(xp, dy, dk, geom, need_dx=need_dx, need_dkernel=need_dkernel)
        return dx, (None if dkw is None else dkw.reshape(kernel.shape))
    fg, cg = filters // groups, channels // groups
    taps = geom.taps
    ck = taps * cg
    pointwise = _is_pointwise(geom)
    budget = BACKWARD_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    tap_dx = None
    if need_dx and taps_ops.use_taps(geom, groups, channels, dy.dtype):
        tap_dx = taps_ops.tap_input_grad(dy, kernel, geom)
        need_dx = False
        if not need_dkernel:
            return tap_dx, None
    row_bytes = _row_bytes(geom, channels, dy.dtype.itemsize)
    chunks = list(_chunks(batch, geom, row_bytes, budget))
    by_rows = any(r1 - r0 != geom.out_sizes[0] for _, _, r0, r1 in chunks)
    dx = assign = None
    zero = False
    if need_dx:
        assign = None if (by_rows or pointwise) else _covering_tap(geom)
        # without a covering tap, each chunk zeroes its samples' part of dx first (at its first row chunk)
        dx = np.empty((batch,) + geom.in_sizes + (channels,), dtype=dy.dtype)
        zero = assign is None and not pointwise
        wt = _kernel_taps_t(kernel, groups)  # (taps, g, Fg, Cg)
    w = _kernel_gemm(kernel, groups) if (need_dx and pointwise) else None

    rows = max((n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in chunks) * math.prod(geom.out_sizes[1:])

    def run(c0, c1):  # chunks c0:c1; returns their part of the kernel gradient
        dw = np.zeros((groups, ck, fg), dtype=dy.dtype) if need_dkernel else None
        buf = dbuf = None
        for n0, n1, r0, r1 in chunks[c0:c1]:
            dyc = dy[n0:n1, r0:r1]
            m = dyc.size // filters
            dy2 = dyc.reshape(m, groups, fg)
            if need_dkernel:
                if pointwise:
                    col2 = xp[n0:n1, r0:r1].reshape(m, groups, ck)
                else:
                    if buf is None:
                        buf = np.empty(rows * groups * ck, dtype=dy.dtype)
                    col2 = im2col(xp[n0:n1], geom, groups, out=buf, rows=(r0, r1)).reshape(m, groups, ck)
                _gemm_weight_grad(col2, dy2, dw)
            if need_dx:
                if pointwise:
                    dxc = dx[n0:n1, r0:r1].reshape(m, groups, cg)
                    _gemm(dy2, w.transpose(0, 2, 1), dxc)
                    continue
                if dbuf is None:
                    dbuf = np.empty(taps * rows * channels, dtype=dy.dtype)
                dcol = dbuf[:taps * m * channels].reshape(taps, m, groups, cg)
                if groups == 1:
                    np.matmul(dy2[:, 0], wt[:, 0], out=dcol[:, :, 0])
                else:
                    np.matmul(dy2.transpose(1, 0, 2), wt, out=dcol.transpose(0, 2, 1, 3))
                dcol = dcol.reshape((taps, n1 - n0, r1 - r0) + geom.out_sizes[1:] + (channels,))
                if zero and r0 == 0:
                    dx[n0:n1] = 0
                col2im(dcol, dx[n0:n1], geom, rows=(r0, r1), assign_tap=assign)
        return dw

    # chunks of rows of one sample add into overlapping rows of dx: those run one after the other
    parts = split_run(run, len(chunks), parallel=not (need_dx and by_rows))
    dw = parts[0]
    if need_dkernel:
        for part in parts[1:]:
            dw += part
    dkernel = _kernel_from_gemm(dw, kernel.shape) if need_dkernel else None
    return (dx if tap_dx is None else tap_dx), dkernel


def conv_transpose_forward(x: np.ndarray, kernel: np.ndarray, geom: ConvGeometry, bias=None,
                           chunk_bytes: int | None = None) -> np.ndarray:
    """Transposed convolution (Keras ``conv_transpose``): the adjoint of :func:`conv_forward`.

    ``x``: ``(batch, *geom.out_sizes, in_channels)``; ``kernel``: ``(*K, filters, in_channels)``
    (Keras layout); ``geom`` from :func:`conv_transpose_geometry`. Returns
    ``(batch, *geom.in_sizes, filters)``: ``y[i * s + k * d - crop] += kernel[k] @ x[i]``.
    """
    y, _ = conv_backward(None, x, kernel, geom, need_dkernel=False, chunk_bytes=chunk_bytes)
    if bias is not None:
        y += bias
    return y


def conv_transpose_backward(x: np.ndarray, dy: np.ndarray, kernel: np.ndarray, geom: ConvGeometry,
                            need_dx: bool = True, need_dkernel: bool = True, chunk_bytes: int | None = None):
    """Gradients of :func:`conv_transpose_forward`: ``(dx, dkernel)``, one im2col pass over ``dy``.

    ``dx = conv_forward(dy, kernel)``; ``dkernel[k] += col(dy)[:, k]^T @ x``.
    """
    kernel = _same_dtype(dy, kernel)
    batch, filters = dy.shape[0], dy.shape[-1]
    channels = kernel.shape[-1]
    dyp = pad_input(np.ascontiguousarray(dy), geom)
    x = np.ascontiguousarray(x)
    w = _kernel_gemm(kernel, 1)
    ck = w.shape[1]
    dx = np.empty(x.shape, dtype=dy.dtype) if need_dx else None
    dw = np.zeros((1, ck, channels), dtype=dy.dtype) if need_dkernel else None
    pointwise = _is_pointwise(geom)
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    row_bytes = _row_bytes(geom, filters, dy.dtype.itemsize)
    buf = None
    for n0, n1, r0, r1 in _chunks(batch, geom, row_bytes, budget):
        xc = x[n0:n1, r0:r1]
        m = xc.size // channels
        if pointwise:
            col2 = dyp[n0:n1, r0:r1].reshape(m, 1, ck)
        else:
            if buf is None:
                buf = np.empty(m * ck, dtype=dy.dtype)
            col2 = im2col(dyp[n0:n1], geom, 1, out=buf, rows=(r0, r1)).reshape(m, 1, ck)
        if need_dx:
            _gemm(col2, w, dx[n0:n1, r0:r1].reshape(m, 1, channels))
        if need_dkernel:
            _gemm_weight_grad(col2, xc.reshape(m, 1, channels), dw)
    dkernel = _kernel_from_gemm(dw, kernel.shape) if need_dkernel else None
    return dx, dkernel


# ---------------------------------------------------------------- depthwise
def _depthwise_chunk(batch: int, per_sample_bytes: int) -> int:
    return max(1, min(batch, (1 << 20) // max(1, per_sample_bytes)))


def _tap_view(xp: np.ndarray, geom: ConvGeometry, tap) -> np.ndarray:
    """The strided slice of the padded input that kernel tap ``tap`` reads, ``(n, *out_sizes, C)``."""
    return xp[(slice(None),) + tuple(slice(k * d, k * d + (o - 1) * s + 1, s) for k, d, o, s in
                                     zip(tap, geom.dilations, geom.out_sizes, geom.strides))]


def depthwise_forward(xp: np.ndarray, kernel: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Depthwise convolution: ``y[n, o, c * m + j] = sum_k x[n, o * s + k * d - p, c] * kernel[k, c, j]``.

    ``xp``: the padded input from :func:`pad_input`, ``(batch, *spans, C)``; ``kernel``:
    ``(*K, C, m)`` (Keras ``depthwise_kernel``); returns ``(batch, *out_sizes, C * m)``. A GEMM per
    channel would have inner dimension ``prod(K)`` only, so this is one broadcast multiply-add per
    kernel tap on strided slices, over cache-sized chunks of samples.
    """
    kernel = _same_dtype(xp, kernel)
    batch, channels = xp.shape[0], xp.shape[-1]
    mult = kernel.shape[-1]
    y = np.empty((batch,) + geom.out_sizes + (channels, mult), dtype=xp.dtype)
    k2 = kernel.reshape(geom.taps, channels, mult)
    nb = _depthwise_chunk(batch, y[0].nbytes)
    taps = _taps(geom)
    for n0 in range(0, batch, nb):
        yc, xc = y[n0:n0 + nb], xp[n0:n0 + nb]
        tmp = np.empty_like(yc)
        for t, tap in enumerate(taps):
            xin = _tap_view(xc, geom, tap)[..., None]
            if t == 0:
                np.multiply(xin, k2[t], out=yc)
            else:
                np.multiply(xin, k2[t], out=tmp)
                yc += tmp
    return y.reshape((batch,) + geom.out_sizes + (channels * mult,))


def depthwise_backward(xp, dy: np.ndarray, kernel: np.ndarray, geom: ConvGeometry,
                       need_dx: bool = True, need_dkernel: bool = True):
    """Gradients of :func:`depthwise_forward`: ``(dx, dkernel)`` (``None`` for what is not asked).

    ``xp`` is the padded input of the forward (read only for ``dkernel``). Per kernel tap:
    ``dkernel[k, c, j] = sum x_k[.., c] * dy[.., c, j]`` and ``dx[slice_k] += sum_j dy[.., c, j] * kernel[k, c, j]``
    (clipped slices, so padding positions are dropped).
    """
    kernel = _same_dtype(dy, kernel)
    batch = dy.shape[0]
    channels, mult = kernel.shape[-2], kernel.shape[-1]
    dy = np.ascontiguousarray(dy).reshape(dy.shape[:-1] + (channels, mult))
    k2 = kernel.reshape(geom.taps, channels, mult)
    dk = np.zeros((geom.taps, channels, mult), dtype=dy.dtype) if need_dkernel else None
    dx = np.zeros((batch,) + geom.in_sizes + (channels,), dtype=dy.dtype) if need_dx else None
    taps = _taps(geom)
    ranges = [_tap_ranges(geom, tap) for tap in taps]
    nb = _depthwise_chunk(batch, dy[0].nbytes)
    lead = "nxyz"[:geom.rank + 1]
    for n0 in range(0, batch, nb):
        dyc = dy[n0:n0 + nb]
        for t, tap in enumerate(taps):
            if need_dkernel:
                xin = _tap_view(xp[n0:n0 + nb], geom, tap)
                dk[t] += np.einsum(f"{lead}c,{lead}cj->cj", xin, dyc)
            if need_dx and ranges[t] is not None:
                dyo = dyc[(slice(None),) + tuple(o for o, _ in ranges[t])]
                dst = dx[(slice(n0, n0 + nb),) + tuple(i for _, i in ranges[t])]
                if mult == 1:
                    dst += dyo[..., 0] * k2[t, :, 0]
                else:
                    dst += np.einsum("...cj,cj->...c", dyo, k2[t])
    return dx, (None if dk is None else dk.reshape(kernel.shape))
