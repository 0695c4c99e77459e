"""Private: independent chunks of work side by side on the cores NumPy's BLAS would use.

NumPy's element-wise ufuncs run on one core, and NumPy's OpenBLAS spreads each (small) GEMM over
its threads, leaving the copies and element-wise passes between GEMMs to one core (and on a busy
machine the BLAS threads of a small GEMM wait for each other). The fused layers, the blocked
convolution passes and the compiled plans instead run whole chunks of rows at once, one per core:
the calling thread and helper threads each take the next chunk, with NumPy's OpenBLAS set to one
thread meanwhile (NumPy releases the GIL inside ufunc loops and BLAS calls, ctypes around its calls,
so the chunks really run side by side). The thread count is restored on exit, also after an error.

- :func:`run_chunks` ``(fn, n_chunks)``: ``fn(i)`` for every chunk, chunks handed out as threads free up.
- :func:`split_run` ``(fn, items)``: ``[fn(lo, hi) for (lo, hi) in split(items)]``, two fixed halves.

Every chunk is computed by the same code on its own rows whichever thread runs it, and the cuts do
not depend on the number of threads, so the numbers do not depend on the scheduling (partial sums
of :func:`split_run` are added by the caller in a fixed order: one core gives the same result).

Both are opt-in (:data:`CHUNK_WORKERS`, :data:`SPLIT_WORKERS`, or a caller's explicit ``workers``):
measured on this 2-core machine, NumPy's own multi-threaded BLAS running the chunks one after the
other was faster whenever the machine was not loaded by other processes. The number of threads is
then at most the BLAS thread count in force when the call starts (``threadpoolctl`` and
``OPENBLAS_NUM_THREADS`` limits are respected), the CPUs this process may use and the number of
chunks. It runs serially with one thread, when NumPy's OpenBLAS thread control cannot be found,
from inside a chunk (no nesting), and while another thread of the process runs chunks (the BLAS
thread count is process-wide: two threads setting and restoring it would race).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._blas import openblas_thread_control

__all__ = ["run_chunks", "split", "split_run", "worker_count", "CHUNK_WORKERS", "SPLIT_WORKERS"]

#: threads :func:`run_chunks` may use (1: serial, the chunks one after the other on NumPy's own
#: multi-threaded BLAS). Off by default: on a quiet 2-core machine the fused cnn inference took 23.7 ms
#: serial against 36.8 ms on two chunk threads, the resnet 93 against 116 ms (A/B in one process,
#: medians of 10 and 6 alternating runs); only under heavy load from other processes did the
#: chunk threads win (OpenBLAS's threads then wait for each other at every small GEMM).
CHUNK_WORKERS = 1
#: threads :func:`split_run` may use (1: serial). Off by default: on a quiet 2-core machine the blocked
#: convolution passes ran faster with NumPy's own 2-thread OpenBLAS (reference cnn train step 124 ms
#: against 171 ms split), while under heavy load from other processes the split was up to 3x faster
#: (OpenBLAS's threads then wait for each other at every small GEMM). The numbers are the same either way.
SPLIT_WORKERS = 1

_CONTROL = openblas_thread_control()
_LOCAL = threading.local()
_RUNNING = threading.Lock()  # held by the thread whose chunks are running
_POOL = {"pid": None, "executor": None, "size": 0}
_POOL_LOCK = threading.Lock()


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def worker_count(n_chunks: int) -> int:
    """How many threads :func:`run_chunks` would use for ``n_chunks`` chunks right now."""
    if _CONTROL is None or n_chunks < 2 or CHUNK_WORKERS < 2 or getattr(_LOCAL, "busy", False):
        return 1
    return max(1, min(int(_CONTROL[0]()), _cpus(), n_chunks, CHUNK_WORKERS))


def _executor(helpers: int) -> ThreadPoolExecutor:
    """The persistent helper threads (made anew after a fork: the child has none of them)."""
    with _POOL_LOCK:
        if _POOL["pid"] != os.getpid() or _POOL["size"] < helpers:
            if _POOL["executor"] is not None and _POOL["pid"] == os.getpid():
                _POOL["executor"].shutdown(wait=False)
            _POOL.update(pid=os.getpid(), size=helpers,
                         executor=ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="fusenet-chunks"))
        return _POOL["executor"]


def _drain(fn, tickets, n_chunks: int, errstate=None) -> None:
    """Run chunks until the tickets pass ``n_chunks``; ``errstate`` (helper threads): the caller's
    ``np.geterr()``, which NumPy keeps per thread."""
    _LOCAL.busy = True
    try:
        with np.errstate(**errstate) if errstate is not None else contextlib.nullcontext():
            for i in tickets:  # itertools.count: next() is atomic under the GIL
                if i >= n_chunks:
                    return
                fn(i)
    finally:
        _LOCAL.busy = False


def run_chunks(fn, n_chunks: int, max_workers: int | None = None) -> None:
    """Call ``fn(i)`` for ``i in range(n_chunks)``, on up to :func:`worker_count` threads, or, with
    ``max_workers`` (which overrides :data:`CHUNK_WORKERS`), on up to that many.

    ``fn`` must only write its own chunk's outputs (the chunks are independent). Returns when all
    chunks are done; the first error of any chunk is raised here."""
    if max_workers is None:
        workers = worker_count(n_chunks)
    elif _CONTROL is None or n_chunks < 2 or getattr(_LOCAL, "busy", False):
        workers = 1
    else:
        workers = max(1, min(int(_CONTROL[0]()), _cpus(), n_chunks, max_workers))
    if workers < 2 or not _RUNNING.acquire(blocking=False):
        for i in range(n_chunks):
            fn(i)
        return
    get, put = _CONTROL
    try:
        before = int(get())
        tickets = itertools.count()
        put(1)
        try:
            executor = _executor(workers - 1)
            errstate = np.geterr()
            futures = [executor.submit(_drain, fn, tickets, n_chunks, errstate) for _ in range(workers - 1)]
            try:
                _drain(fn, tickets, n_chunks)
            finally:
                for future in futures:  # wait for every helper before the BLAS threads come back
                    future.exception()
            for future in futures:
                future.result()
        finally:
            put(before)
    finally:
        _RUNNING.release()


def split(items: int) -> list:
    """The ``(lo, hi)`` ranges :func:`split_run` gives: two halves of ``[0, items)`` (one range below 2)."""
    if items < 2:
        return [(0, items)]
    mid = (items + 1) // 2
    return [(0, mid), (mid, items)]


def split_run(fn, items: int, parallel: bool = True, workers: int | None = None) -> list:
    """``[fn(lo, hi) for (lo, hi) in split(items)]``, the calls side by side when possible: ``parallel``
    and ``workers`` (default :data:`SPLIT_WORKERS`) at least 2. ``fn`` must write disjoint outputs for
    disjoint ranges."""
    workers = SPLIT_WORKERS if workers is None else workers
    ranges = split(items)
    results = [None] * len(ranges)

    def chunk(i):
        results[i] = fn(*ranges[i])

    if parallel and workers > 1:
        run_chunks(chunk, len(ranges), max_workers=workers)
    else:
        for i in range(len(ranges)):
            chunk(i)
    return results
