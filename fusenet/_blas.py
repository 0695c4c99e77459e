"""Private: NumPy's own BLAS ``?gemm`` with ``beta`` (accumulating, in place), for the hot paths.

``np.matmul`` cannot accumulate into an existing array (``c += a @ b`` allocates the product and adds
it in a second pass). SciPy's ``scipy.linalg.blas`` can, but SciPy ships its own OpenBLAS with its own
worker threads: after a call, each library's idle workers spin for a while, and alternating the two
libraries (as a model does, layer after layer) made both run up to 2-3x slower on two cores. So
:func:`gemm` calls the OpenBLAS that NumPy itself uses (the ILP64 library of the NumPy wheels, found
next to the package and called through ctypes), and SciPy's only where that library cannot be found.

``gemm(a, b, c, beta=0.0, trans_a=False, trans_b=False)`` computes ``c = op(a) @ op(b) + beta * c``
in place, for float32 or float64 row-major 2-D arrays whose last axis has unit stride (the leading
stride may be anything, so row ranges and column blocks of bigger arrays are fine);
``op(a) = a.T`` when ``trans_a``. :data:`GEMM_DTYPES` lists the dtypes it takes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gemm", "numpy_gemm", "scipy_gemm", "GEMM_DTYPES", "NUMPY_BLAS", "numpy_openblas", "openblas_thread_control", "ones_sum"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def numpy_openblas():
    """NumPy's own OpenBLAS (the library of the NumPy wheels) as a ``ctypes.CDLL``, or ``None``."""
    global _LIBRARY
    if _LIBRARY is False:
        _LIBRARY = None
        try:
            import ctypes
            import glob
            import os

            root = os.path.dirname(np.__file__)
            paths = sorted(glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
                           + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
            if paths:
                _LIBRARY = ctypes.CDLL(paths[0])
        except (ImportError, OSError):  # pragma: no cover - another NumPy build
            _LIBRARY = None
    return _LIBRARY


_LIBRARY = False  # not looked for yet


def _symbol(lib, *names):
    """The first of ``names`` that ``lib`` exports, or ``None``."""
    for name in names:
        fn = getattr(lib, name, None) if lib is not None else None
        if fn is not None:
            return fn
    return None


def _numpy_cblas() -> dict:
    """``{dtype: raw cblas ?gemm}`` of NumPy's own OpenBLAS through ctypes, or ``{}``."""
    import ctypes

    lib = numpy_openblas()
    out = {}
    for letter, dtype, real in (("s", np.float32, ctypes.c_float), ("d", np.float64, ctypes.c_double)):
        fn = _symbol(lib, f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_")
        if fn is None:
            return {}  # pragma: no cover - another NumPy build: SciPy's BLAS
        index = ctypes.c_int64
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, real,
                       ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
        fn.restype = None
        out[np.dtype(dtype)] = fn
    return out


def openblas_thread_control():
    """``(get, set)``: the thread count of NumPy's own OpenBLAS, through ctypes; ``None`` if not found."""
    import ctypes

    lib = numpy_openblas()
    get = _symbol(lib, "scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")
    put = _symbol(lib, "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
    if get is None or put is None:
        return None  # pragma: no cover - another NumPy build
    get.argtypes, get.restype = [], ctypes.c_int
    put.argtypes, put.restype = [ctypes.c_int], None
    return get, put


_CBLAS = _numpy_cblas()
#: whether :func:`gemm` runs on NumPy's own BLAS (else on SciPy's)
NUMPY_BLAS = bool(_CBLAS)
GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check(name: str, m: np.ndarray, dtype) -> None:
    if m.ndim != 2 or m.dtype != dtype or (m.strides[1] != m.itemsize and m.shape[1] > 1):
        raise ValueError(f"gemm: {name} must be a 2-D {dtype} array with unit column stride; "
                         f"received shape {m.shape}, dtype {m.dtype}, strides {m.strides}")


def _shapes(a, b, c, trans_a, trans_b):
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb or c.shape != (m, n):
        raise ValueError(f"gemm: shapes do not agree: op(a) {(m, k)} @ op(b) {(kb, n)} into c {c.shape}")
    return m, n, k


def numpy_gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0, trans_a: bool = False,
               trans_b: bool = False) -> np.ndarray:
    """``c = op(a) @ op(b) + beta * c`` in place on NumPy's own OpenBLAS (see the module doc); returns ``c``."""
    dtype = c.dtype
    fn = _CBLAS.get(dtype)
    if fn is None:
        raise ValueError(f"gemm: c must be float32 or float64 (and NumPy's BLAS found); received dtype {dtype}")
    for name, arr in (("a", a), ("b", b), ("c", c)):
        _check(name, arr, dtype)
    m, n, k = _shapes(a, b, c, trans_a, trans_b)
    if m == 0 or n == 0:
        return c
    item = c.itemsize
    fn(_ROW_MAJOR, _TRANS if trans_a else _NO_TRANS, _TRANS if trans_b else _NO_TRANS, m, n, k, 1.0,
       a.ctypes.data, max(a.strides[0] // item, a.shape[1], 1), b.ctypes.data,
       max(b.strides[0] // item, b.shape[1], 1), beta, c.ctypes.data, max(c.strides[0] // item, n, 1))
    return c


def scipy_gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray, beta: float = 0.0, trans_a: bool = False,
               trans_b: bool = False) -> np.ndarray:
    """The same through ``scipy.linalg.blas`` (SciPy's OpenBLAS: the fallback); returns ``c``."""
    from scipy.linalg import blas

    fn = {np.dtype(np.float32): blas.sgemm, np.dtype(np.float64): blas.dgemm}.get(c.dtype)
    if fn is None:
        raise ValueError(f"gemm: c must be float32 or float64; received dtype {c.dtype}")
    for name, arr in (("a", a), ("b", b), ("c", c)):
        _check(name, arr, c.dtype)
    _shapes(a, b, c, trans_a, trans_b)
    # column-major view: c^T = op(b)^T @ op(a)^T; f2py writes in place only into a contiguous c
    target = c if c.flags.c_contiguous else np.ascontiguousarray(c)
    result = fn(1.0, b.T, a.T, beta=beta, c=target.T, overwrite_c=1, trans_a=int(trans_b), trans_b=int(trans_a))
    if target is not c or not np.shares_memory(result, c):
        c[...] = result.T
    return c


#: ``gemm(a, b, c, beta=0.0, trans_a=False, trans_b=False)``: NumPy's BLAS where found, else SciPy's
gemm = numpy_gemm if NUMPY_BLAS else scipy_gemm


def ones_sum(a: np.ndarray, axis: int) -> np.ndarray:
    """Column sums (``axis=0``, shape ``(cols,)``) or row sums (``axis=1``, shape ``(rows,)``) of the 2-D
    float array ``a`` as a BLAS GEMV with a vector of ones (faster than ``a.sum(axis)`` on NumPy's
    strided reductions). OpenBLAS's GEMV kernels can raise a spurious floating-point "invalid" flag on
    finite data (numpy/numpy#24067, OpenMathLib/OpenBLAS#1924: vector loads that touch memory past
    the operands), which NumPy then reports as "invalid value encountered in matmul" depending on
    what happens to lie there; that flag is ignored here (a NaN in ``a`` still gives a NaN sum)."""
    with np.errstate(invalid="ignore"):
        if axis == 0:
            return np.ones(a.shape[0], dtype=a.dtype) @ a
        return a @ np.ones(a.shape[1], dtype=a.dtype)
