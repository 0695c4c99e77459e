"""Private: the two halves of a blocked convolution pass on two threads, BLAS single-threaded meanwhile
(opt-in: :data:`WORKERS`).

The convolution passes of :mod:`fusenet.layers._conv_taps_ops` and the kernel gradient of
:func:`~fusenet.layers._conv_ops.conv_backward` are loops over independent blocks of samples (GEMMs on
a block plus copies while it is in cache). OpenBLAS splits each of those small GEMMs over its own
threads and leaves the copies to one core; running the first half of the blocks on the calling thread
and the second half on one worker thread, with NumPy's OpenBLAS set to one thread meanwhile, keeps
both cores on whole blocks (GEMMs and copies; NumPy and ctypes release the GIL). The split does not
depend on whether a worker runs: :func:`split_run` always cuts ``[0, items)`` at the same place, so
the numbers (e.g. the two partial kernel gradients, added in a fixed order) are the same on one core.

It runs serially when NumPy's OpenBLAS thread control cannot be found or NumPy's OpenBLAS is limited to
one thread, when :data:`WORKERS` is below 2, from inside a split (no nesting), or while another thread
holds the split.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = []  # private module

#: threads used by :func:`split_run` (the calling thread and ``WORKERS - 1`` worker); 1 runs serially.
#: Off by default: on a quiet 2-core machine NumPy's own 2-thread OpenBLAS ran the reference cnn train step
#: faster (124 ms against 171 ms with ``WORKERS = 2``), while under heavy load from other processes the
#: split was up to 3x faster (OpenBLAS's threads then wait for each other at every small GEMM).
WORKERS = 1


def _thread_control():
    """``(get, set)`` of NumPy's OpenBLAS ``num_threads``, or ``None``."""
    try:
        root = os.path.dirname(np.__file__)
        paths = sorted(glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
                       + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", ""):
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        get.argtypes = []
                        put.restype = None
                        put.argtypes = [ctypes.c_int]
                        return get, put
    except (OSError, AttributeError):  # pragma: no cover - another NumPy build: run serially
        pass
    return None  # pragma: no cover


_CONTROL = _thread_control()
_LOCK = threading.Lock()
_POOL = None
_POOL_PID = None


def _pool() -> ThreadPoolExecutor:
    """The one-worker pool (made again in a forked child, whose copy has no thread)."""
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid():
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusenet-conv")
        _POOL_PID = os.getpid()
    return _POOL


def _call_with_errstate(err: dict, fn, lo: int, hi: int):
    """``fn(lo, hi)`` under the caller's floating-point error settings (they are per thread)."""
    with np.errstate(**err):
        return fn(lo, hi)


def split(items: int) -> list:
    """The ``(lo, hi)`` ranges :func:`split_run` gives: two halves of ``[0, items)`` (one range below 2)."""
    if items < 2:
        return [(0, items)]
    mid = (items + 1) // 2
    return [(0, mid), (mid, items)]


def split_run(fn, items: int, parallel: bool = True) -> list:
    """``[fn(lo, hi) for (lo, hi) in split(items)]``, the two calls on two threads when possible (and
    ``parallel``), with NumPy's OpenBLAS at one thread while they run. ``fn`` must write disjoint
    outputs for disjoint ranges."""
    ranges = split(items)
    if (len(ranges) < 2 or not parallel or WORKERS < 2 or _CONTROL is None
            or not _LOCK.acquire(blocking=False)):
        return [fn(lo, hi) for lo, hi in ranges]
    get, put = _CONTROL
    threads = get()
    if threads < 2:  # NumPy's BLAS limited to one thread (OPENBLAS_NUM_THREADS=1, threadpoolctl): so are we
        _LOCK.release()
        return [fn(lo, hi) for lo, hi in ranges]
    try:
        put(1)
        future = _pool().submit(_call_with_errstate, np.geterr(), fn, *ranges[1])
        try:
            first = fn(*ranges[0])
        except BaseException:
            future.exception()  # wait for the worker before leaving
            raise
        return [first, future.result()]
    finally:
        put(threads)
        _LOCK.release()
