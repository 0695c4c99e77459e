"""Measurement helpers shared by the benchmark scripts (side-by-side ratios, tracemalloc peaks)."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

__all__ = ["ratio", "peak_bytes"]


def ratio(times: dict, a: str, b: str) -> float:
    """The median over the rounds of ``time(a) / time(b)`` within one round (the runs of a round are
    close together, so a slow spell of a busy machine affects both sides of each ratio)."""
    return float(np.median(np.asarray(times[a], dtype=float) / np.asarray(times[b], dtype=float)))


def peak_bytes(fn) -> int:
    """The ``tracemalloc`` peak of one call of ``fn`` (NumPy registers its buffers with tracemalloc;
    call ``fn`` once before to measure the steady state)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
