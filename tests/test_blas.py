"""fusenet._blas.gemm: c = op(a) @ op(b) + beta * c in place, on NumPy's BLAS and on SciPy's fallback."""

import numpy as np
import pytest

from fusenet import _blas

IMPLS = [pytest.param(_blas.numpy_gemm, id="numpy", marks=pytest.mark.skipif(not _blas.NUMPY_BLAS,
                                                                             reason="NumPy's OpenBLAS not found")),
         pytest.param(_blas.scipy_gemm, id="scipy")]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_matches_matmul_on_views(impl, dtype, trans_a, trans_b, beta):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7) if trans_a else (7, 5)).astype(dtype)
    b = rng.normal(size=(9, 5) if trans_b else (5, 9)).astype(dtype)
    big = rng.normal(size=(20, 30)).astype(dtype)
    c = big[2:9, 3:12]  # a view with a leading stride of 30
    before, untouched = c.copy(), big.copy()
    out = impl(a, b, c, beta=beta, trans_a=trans_a, trans_b=trans_b)
    assert out is c
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b) + beta * before
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    untouched[2:9, 3:12] = c
    np.testing.assert_array_equal(big, untouched)  # nothing outside the view was written


@pytest.mark.parametrize("impl", IMPLS)
def test_gemm_row_range_of_a_bigger_matrix(impl):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(50, 8)).astype(np.float32)
    w = rng.normal(size=(8, 4)).astype(np.float32)
    c = np.zeros((20, 4), np.float32)
    impl(rows[10:30], w, c)
    impl(rows[11:31], w, c, beta=1.0)
    np.testing.assert_allclose(c, rows[10:30] @ w + rows[11:31] @ w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_gemm_errors(impl):
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="shapes do not agree"):
        impl(a, np.ones((5, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="float32 or float64"):
        impl(a.astype(np.int32), np.ones((4, 2), np.int32), np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="unit column stride"):
        impl(np.ones((3, 8), np.float32)[:, ::2], np.ones((4, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="2-D float32"):
        impl(a, np.ones((4, 2), np.float64), np.zeros((3, 2), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ones_sum_rows_and_columns_without_spurious_warnings(dtype):
    """Row and column sums through a GEMV equal np.sum; a floating-point "invalid" flag raised inside
    BLAS does not become a RuntimeWarning (errors under pytest), a NaN still gives a NaN sum."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(14, 5)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(_blas.ones_sum(a, 0), a.sum(0), rtol=tol, atol=tol)
    np.testing.assert_allclose(_blas.ones_sum(a, 1), a.sum(1), rtol=tol, atol=tol)
    a[3, 2] = np.nan
    assert np.isnan(_blas.ones_sum(a, 1)[3]) and np.isnan(_blas.ones_sum(a, 0)[2])
    b = np.array([[np.inf, -np.inf, 1.0]], dtype=dtype)  # raises FE_INVALID inside the GEMV
    assert np.isnan(_blas.ones_sum(b, 1)[0])
