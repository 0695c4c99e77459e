"""The machine's float32 GEMM speed on a layer's or a model's own matrix shapes: the hardware limit
that a benchmark's GFLOP/s is shown next to.

The shapes come from :func:`fusenet.profiling.flops.gemm_shapes` (forward) and
:func:`~fusenet.profiling.flops.backward_gemm_shapes` (backward): a list of ``Gemm(m, k, n, count)``
entries, ``count`` products ``(m, k) @ (k, n)``. Each distinct shape is timed as a plain
``np.matmul(a, b, out=c)`` on random float32 arrays (median of a few calls after a warm-up); a
small product that occurs many times (attention heads, depthwise channels) is timed as one batched
``np.matmul`` over up to ~16 M elements, the way the layers run it. The GEMM time of a list is the
sum of ``count`` times the time of one product; its GFLOP/s is the list's FLOPs over that time.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from fusenet.profiling.flops import Gemm, backward_gemm_shapes, gemm_shapes

__all__ = ["layer_gemms", "model_gemms", "gemm_seconds", "gemm_gflops", "flops_of"]

_BATCHED_LIMIT = 1 << 22  # products with fewer multiply-adds than this run batched when they repeat
_ELEMENTS = 1 << 24  # at most this many float32 elements in the arrays of one timed call
_CACHE: dict = {}


def layer_gemms(layer, input_shape, training: bool = False) -> list:
    """The products of one forward (and, with ``training``, one backward) of ``layer`` on ``input_shape``."""
    out = list(gemm_shapes(layer, input_shape) or [])
    if training:
        out += list(backward_gemm_shapes(layer, input_shape) or [])
    return out


def model_gemms(model, batch: int, training: bool = False) -> list:
    """The products of one pass of a built Sequential ``model`` on a batch of ``batch`` samples."""
    shape = (batch,) + tuple(model.input_shape[1:])
    out = []
    for layer in model.layers:
        out += layer_gemms(layer, shape, training)
        shape = tuple(layer.compute_output_shape(shape))
    return out


def flops_of(gemms) -> int:
    """``sum(2 * m * k * n * count)``."""
    return sum(g.flops for g in gemms)


def _time_call(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _seconds_of_one(g: Gemm, repeats: int) -> float:
    """Median seconds of one product of shape ``g`` (batched products: per product)."""
    per_product = g.m * g.k + g.k * g.n + g.m * g.n
    batch = 1
    if g.count > 1 and g.m * g.k * g.n < _BATCHED_LIMIT:
        batch = int(max(1, min(g.count, _ELEMENTS // per_product)))
    key = (g.m, g.k, g.n, batch)
    if key not in _CACHE:
        rng = np.random.default_rng(0)
        lead = (batch,) if batch > 1 else ()
        a = rng.standard_normal(lead + (g.m, g.k), dtype=np.float32)
        b = rng.standard_normal(lead + (g.k, g.n), dtype=np.float32)
        c = np.empty(lead + (g.m, g.n), dtype=np.float32)
        _CACHE[key] = _time_call(lambda: np.matmul(a, b, out=c), repeats) / batch
    return _CACHE[key]


def gemm_seconds(gemms, repeats: int = 5) -> float:
    """Seconds that plain float32 GEMMs of the same shapes take: ``sum(count * time of one product)``."""
    return sum(g.count * _seconds_of_one(g, repeats) for g in gemms)


def gemm_gflops(gemms, repeats: int = 5):
    """GFLOP/s of plain float32 GEMMs on these shapes (``None`` for an empty list)."""
    if not gemms:
        return None
    return flops_of(gemms) / gemm_seconds(gemms, repeats) / 1e9
