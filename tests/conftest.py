import numpy as np
import pytest

import fusenet

try:  # scikit-learn's dependency; present with the "examples" extra
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - without it the BLAS pools keep their default size
    threadpool_limits = None


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """One BLAS thread per pool while testing. NumPy and SciPy each bring an OpenBLAS pool; on a
    small shared machine their idle threads spin against each other and slow small GEMMs by 10-50x.
    Tests check numbers, not speed (speed is measured in benchmarks/, with the threads it states)."""
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def rng():
    """A seeded generator, the same in every test."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_fusenet():
    fusenet.set_random_seed(0)
    yield
