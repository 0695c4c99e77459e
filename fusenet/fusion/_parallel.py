"""Private: run independent row chunks of a fused layer's inference on the cores BLAS would use.

NumPy's element-wise ufuncs run on one core, and NumPy's OpenBLAS spreads each (small) GEMM over
its threads. On the transformer's inference (GEMMs of a few hundred rows, GELU, softmax and layer
norms between them) that leaves one core idle during every element-wise pass, and on a busy machine
the BLAS threads of a small GEMM wait for each other. :func:`run_chunks` instead runs whole chunks
of rows at once, one per core: the calling thread and helper threads each take the next chunk,
with OpenBLAS set to one thread for the duration (NumPy releases the GIL inside ufunc loops and
BLAS calls, so the chunks really run side by side). Every chunk is computed by the same code on
its own rows whichever thread runs it, so the numbers do not depend on the scheduling.

The number of threads is the BLAS thread count in force when the call starts (``threadpoolctl``
and ``OPENBLAS_NUM_THREADS`` limits are respected), capped by the CPUs this process may use and the
number of chunks; with one, or when NumPy's OpenBLAS cannot be found, the chunks run in order in
the calling thread. The BLAS thread count is restored on exit, also after an error; an error
raised in any chunk is raised in the caller. Calls from inside a chunk run serially (no nesting),
and so do calls while another thread of the process runs chunks (the BLAS thread count is
process-wide: two threads setting and restoring it would race).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["run_chunks", "worker_count"]


def _openblas_threads():
    """``(get, set)`` of the thread count of NumPy's own OpenBLAS (ctypes), or ``(None, None)``."""
    try:
        import ctypes
        import glob

        root = os.path.dirname(np.__file__)
        paths = sorted(glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
                       + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
        for path in paths:
            lib = ctypes.CDLL(path)
            for get_name, set_name in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                                       ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                                       ("openblas_get_num_threads", "openblas_set_num_threads")):
                if hasattr(lib, get_name) and hasattr(lib, set_name):
                    get, put = getattr(lib, get_name), getattr(lib, set_name)
                    get.argtypes, get.restype = [], ctypes.c_int
                    put.argtypes, put.restype = [ctypes.c_int], None
                    return get, put
    except (ImportError, OSError, AttributeError):  # pragma: no cover - another NumPy build: run serially
        pass
    return None, None  # pragma: no cover - NumPy without a findable OpenBLAS


_GET_THREADS, _SET_THREADS = _openblas_threads()
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
    if _GET_THREADS is None or n_chunks < 2 or getattr(_LOCAL, "busy", False):
        return 1
    return max(1, min(int(_GET_THREADS()), _cpus(), n_chunks))


def _executor(helpers: int) -> ThreadPoolExecutor:
    """The persistent helper threads (created anew after a fork: the child has none of them)."""
    with _POOL_LOCK:
        if _POOL["pid"] != os.getpid() or _POOL["size"] < helpers:
            if _POOL["executor"] is not None and _POOL["pid"] == os.getpid():
                _POOL["executor"].shutdown(wait=False)
            _POOL.update(pid=os.getpid(), size=helpers,
                         executor=ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="fusenet-chunks"))
        return _POOL["executor"]


def _drain(fn, tickets, n_chunks, errstate=None):
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


def run_chunks(fn, n_chunks: int) -> None:
    """Call ``fn(i)`` for ``i in range(n_chunks)``, on up to :func:`worker_count` threads.

    ``fn`` must only write its own chunk's rows (the chunks are independent). Returns when all
    chunks are done; the first error of any chunk is raised here."""
    workers = worker_count(n_chunks)
    if workers < 2 or not _RUNNING.acquire(blocking=False):
        for i in range(n_chunks):
            fn(i)
        return
    try:
        before = int(_GET_THREADS())
        tickets = itertools.count()
        _SET_THREADS(1)
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
            _SET_THREADS(before)
    finally:
        _RUNNING.release()
