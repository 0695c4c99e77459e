import numpy as np
import pytest

import fusenet


@pytest.fixture
def rng():
    """A seeded generator, the same in every test."""
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_fusenet():
    fusenet.set_random_seed(0)
    yield
