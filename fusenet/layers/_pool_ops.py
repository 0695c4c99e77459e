"""Pooling arithmetic on NumPy (channels-last, 1 to 3 spatial axes), as pure functions.

A pooling window is a :class:`~fusenet.layers._conv_ops.ConvGeometry` with dilation 1: output
``o`` and window tap ``k`` read input ``o * stride + k - pad_before``; positions outside the input
(the ``"same"`` padding) are not part of the window. Every function loops over the window taps
only (``prod(pool_size)`` strided-slice operations over the whole batch), never over samples or
pixels.

- max pooling: ``y[o] = max_k x[o * s + k - p]``. Its gradient goes to one element per window,
  chosen exactly as PyTorch chooses it: the first valid element of the window in row-major
  order starts as the arg-max, and a later element replaces it when it is strictly greater or NaN.
  With overlapping windows the gradients of the windows that share an element add up.
- average pooling: ``y[o] = mean of the valid x in the window``; with ``"same"`` padding the divisor
  counts only the elements inside the input (TensorFlow/Keras), ``count[o] = prod_axes
  (min(in, o*s - p + K) - max(0, o*s - p))``.
"""

from __future__ import annotations

import math

import numpy as np

from ._conv_ops import ConvGeometry, _tap_ranges, _taps
from .._parallel import split_run

__all__ = ["max_pool_forward", "max_pool_argmax", "max_pool_backward", "avg_pool_forward", "avg_pool_backward", "window_counts"]

#: inputs below this size are pooled on one thread (a worker's hand-off costs more than the pass)
PARALLEL_BYTES = 1 << 20
#: bytes of input per block of samples in the tiling max-pool backward (the block's temporaries stay in L2)
POOL_BLOCK_BYTES = 1 << 19


def _region(ranges, which: int):
    return (slice(None),) + tuple(r[which] for r in ranges) + (slice(None),)


def _covers_outputs(geom: ConvGeometry, ranges) -> bool:
    return all(o.start == 0 and o.stop == n for (o, _), n in zip(ranges, geom.out_sizes))


def _first_valid_tap(geom: ConvGeometry) -> np.ndarray:
    """Per output position, the flat index of the first window tap inside the input, ``(1, *out, 1)``."""
    firsts = []
    for a in range(geom.rank):
        o = np.arange(geom.out_sizes[a])
        firsts.append(np.maximum(0, geom.pad_before[a] - o * geom.strides[a]))
    grids = np.meshgrid(*firsts, indexing="ij")
    flat = np.ravel_multi_index(tuple(grids), geom.kernel_sizes)
    return flat.reshape((1,) + geom.out_sizes + (1,))


def _index_dtype(geom: ConvGeometry):
    return np.uint8 if geom.taps <= 255 else np.int32


def max_pool_forward(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Window maxima ``(batch, *out_sizes, C)``: one ``np.maximum`` per window tap (NaN propagates)."""
    shape = (x.shape[0],) + geom.out_sizes + (x.shape[-1],)
    taps = _taps(geom)
    ranges = [_tap_ranges(geom, tap) for tap in taps]
    y = np.empty(shape, dtype=x.dtype)
    first_full = ranges[0] is not None and _covers_outputs(geom, ranges[0])

    def run(n0, n1):  # samples n0:n1 (the two halves of the batch on two threads)
        xs, ys = x[n0:n1], y[n0:n1]
        if first_full:
            ys[...] = xs[_region(ranges[0], 1)]
        else:
            ys.fill(-np.inf)
        for t in range(1 if first_full else 0, len(taps)):
            if ranges[t] is None:
                continue
            out = ys[_region(ranges[t], 0)]
            np.maximum(out, xs[_region(ranges[t], 1)], out=out)

    split_run(run, x.shape[0], parallel=x.nbytes >= PARALLEL_BYTES)
    return y


def max_pool_argmax(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Flat window index (row-major over ``pool_size``) of the element PyTorch's max pooling picks.

    Exactly torch's scan: the first valid element of the window starts as the arg-max, a later
    element replaces it when it is strictly greater or NaN (so NaN windows point at their last NaN).
    One compare and two masked writes per window tap.
    """
    shape = (x.shape[0],) + geom.out_sizes + (x.shape[-1],)
    taps = _taps(geom)
    best = np.full(shape, -np.inf, dtype=x.dtype)
    idx = np.empty(shape, dtype=_index_dtype(geom))
    idx[...] = _first_valid_tap(geom)
    mask = np.empty(shape, dtype=bool)
    nan = np.empty(shape, dtype=bool)
    for t, tap in enumerate(taps):
        ranges = _tap_ranges(geom, tap)
        if ranges is None:
            continue
        region = _region(ranges, 0)
        out, xin, m, isn = best[region], x[_region(ranges, 1)], mask[region], nan[region]
        np.greater(xin, out, out=m)
        np.isnan(xin, out=isn)
        m |= isn
        np.copyto(out, xin, where=m)
        np.copyto(idx[region], t, where=m)
    return idx


def _tiles(geom: ConvGeometry) -> bool:
    """Windows that tile (part of) the input: strides equal to the pool size, no padding on either side."""
    return (not any(geom.pad_before) and geom.strides == geom.kernel_sizes
            and all(o * k <= n for o, k, n in zip(geom.out_sizes, geom.kernel_sizes, geom.in_sizes)))


def route_to_first_max(dx, x, pooled, rest, hit, n0: int, n1: int, taps, geom) -> None:
    """Samples ``n0:n1`` of a tiling max pool's backward: ``rest`` (the pooled gradient of those samples,
    consumed) goes to the first maximum of each window of ``x`` (``pooled`` its window maxima), in
    window-tap order, written into ``dx``; ``hit`` is boolean scratch of ``rest``'s shape. Each window
    position of ``dx`` is written once (the windows tile the input), so no zero fill is needed."""
    for t, tap in enumerate(taps):
        index = (slice(n0, n1),) + tuple(slice(k, k + o * s, s) for k, o, s in zip(tap, geom.out_sizes, geom.strides))
        dst = dx[index]
        np.equal(x[index], pooled, out=hit)
        np.multiply(rest, hit, out=dst)
        if t < len(taps) - 1:
            rest -= dst


def _max_pool_backward_tiles(dy: np.ndarray, x: np.ndarray, y: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """:func:`max_pool_backward` for tiling windows, by blocks of samples: per window tap,
    ``dx_tap = rest * (x_tap == y)`` then ``rest -= dx_tap`` (``rest`` starts as ``dy`` and becomes 0
    once the first maximum of its window took it), so that only the first maximum gets ``dy``. Every
    input element belongs to at most one window: each tap's slice is written once (no zero fill but
    for the elements past the last window)."""
    dx = np.empty((dy.shape[0],) + geom.in_sizes + (dy.shape[-1],), dtype=dy.dtype)
    covered = tuple(o * k for o, k in zip(geom.out_sizes, geom.kernel_sizes))
    for a, (c, n) in enumerate(zip(covered, geom.in_sizes)):
        if c < n:
            dx[(slice(None),) * (a + 1) + (slice(c, n),)] = 0
    taps = _taps(geom)
    batch = dy.shape[0]
    step = max(1, POOL_BLOCK_BYTES // max(1, x[0].nbytes))
    shape = (min(step, batch),) + dy.shape[1:]

    def run(b0, b1):  # blocks b0:b1 of samples (the two halves run on two threads)
        rest_buf = np.empty(shape, dtype=dy.dtype)
        hit_buf = np.empty(shape, dtype=bool)
        for n0 in range(b0 * step, min(b1 * step, batch), step):
            n1 = min(n0 + step, batch)
            rest, hit = rest_buf[:n1 - n0], hit_buf[:n1 - n0]
            np.copyto(rest, dy[n0:n1])
            route_to_first_max(dx, x, y[n0:n1], rest, hit, n0, n1, taps, geom)

    split_run(run, -(-batch // step))
    return dx


def max_pool_backward(dy: np.ndarray, x: np.ndarray, y: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dx`` of :func:`max_pool_forward`: each ``dy[o]`` goes to the input element PyTorch picks.

    Without NaN in ``y``, the chosen element is the first one (row-major over the window) equal
    to the maximum: per window tap, ``hit = (x_tap == y) and not found``, ``found |= hit`` and a
    strided-slice write of ``dy * hit`` (added when windows overlap, stride < pool); windows that
    tile the input run by blocks of samples (:func:`_max_pool_backward_tiles`). With NaN, the
    exact scan of :func:`max_pool_argmax` decides.
    """
    nan = bool(np.isnan(y).any())
    if not nan and _tiles(geom):
        return _max_pool_backward_tiles(dy, x, y, geom)
    dx = np.zeros((dy.shape[0],) + geom.in_sizes + (dy.shape[-1],), dtype=dy.dtype)
    overlap = any(s < k for s, k in zip(geom.strides, geom.kernel_sizes))
    taps = _taps(geom)
    argmax = max_pool_argmax(x, geom) if nan else None
    found = None
    hit = np.empty(dy.shape, dtype=bool)
    for t, tap in enumerate(taps):
        ranges = _tap_ranges(geom, tap)
        if ranges is None:
            continue
        region = _region(ranges, 0)
        m = hit[region]
        if argmax is not None:
            np.equal(argmax[region], t, out=m)
        else:
            np.equal(x[_region(ranges, 1)], y[region], out=m)
            if found is None:
                found = np.zeros(dy.shape, dtype=bool) if t < len(taps) - 1 else None
            else:
                np.greater(m, found[region], out=m)  # m and not found
            if found is not None and t < len(taps) - 1:
                found[region] |= m
        dst = dx[_region(ranges, 1)]
        if overlap:
            dst += dy[region] * m
        else:  # every input element belongs to at most one window: write in place
            np.multiply(dy[region], m, out=dst)
    return dx


def window_counts(geom: ConvGeometry):
    """Number of valid input elements per window, ``(1, *out_sizes, 1)`` (a Python int when constant)."""
    per_axis = []
    constant = True
    for n, o_size, s, k, p in zip(geom.in_sizes, geom.out_sizes, geom.strides, geom.kernel_sizes, geom.pad_before):
        start = np.arange(o_size) * s - p
        c = np.minimum(n, start + k) - np.maximum(0, start)
        constant &= bool((c == k).all())
        per_axis.append(c)
    if constant:
        return math.prod(geom.kernel_sizes)
    count = per_axis[0]
    for c in per_axis[1:]:
        count = np.multiply.outer(count, c)
    return count.reshape((1,) + geom.out_sizes + (1,))


def avg_pool_forward(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Window means ``(batch, *out_sizes, C)``; the divisor counts only the elements inside the input."""
    shape = (x.shape[0],) + geom.out_sizes + (x.shape[-1],)
    y = np.zeros(shape, dtype=x.dtype)
    for tap in _taps(geom):
        ranges = _tap_ranges(geom, tap)
        if ranges is not None:
            y[_region(ranges, 0)] += x[_region(ranges, 1)]
    count = window_counts(geom)
    y *= (1.0 / count) if isinstance(count, int) else (1.0 / count).astype(x.dtype)
    return y


def avg_pool_backward(dy: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """``dx`` of :func:`avg_pool_forward`: ``dy / count`` spread over each window (strided ``+=`` per tap)."""
    count = window_counts(geom)
    g = dy * ((1.0 / count) if isinstance(count, int) else (1.0 / count).astype(dy.dtype))
    dx = np.zeros((dy.shape[0],) + geom.in_sizes + (dy.shape[-1],), dtype=dy.dtype)
    for tap in _taps(geom):
        ranges = _tap_ranges(geom, tap)
        if ranges is not None:
            dx[_region(ranges, 1)] += g[_region(ranges, 0)]
    return dx

