import numpy as np
import pytest

import fusenet
from fusenet import initializers


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                                  "lecun_normal", "zeros", "ones", "random_normal", "random_uniform",
                                  "truncated_normal", "orthogonal", "variance_scaling"])
def test_by_name_shape_and_roundtrip(name):
    init = initializers.get(name)
    w = init((30, 20), dtype="float64")
    assert w.shape == (30, 20) and w.dtype == np.float64
    clone = initializers.deserialize(initializers.serialize(init))
    assert clone == init


def test_statistics_match_keras_formulas():
    rng = np.random.default_rng(0)
    w = initializers.get("glorot_uniform")((400, 600), rng=rng)
    limit = np.sqrt(6 / 1000)
    assert w.max() <= limit and w.min() >= -limit and abs(w.std() - limit / np.sqrt(3)) < 1e-3
    w = initializers.get("he_normal")((3, 3, 64, 128), rng=rng)
    assert abs(w.std() - np.sqrt(2 / (9 * 64))) < 0.005
    q = initializers.Orthogonal()((50, 30), rng=rng)
    np.testing.assert_allclose(q.T @ q, np.eye(30), atol=1e-5)


def test_seeded_by_set_random_seed():
    fusenet.set_random_seed(3)
    a = initializers.get("he_uniform")((5, 5))
    fusenet.set_random_seed(3)
    b = initializers.get("he_uniform")((5, 5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(initializers.HeUniform(seed=1)((4,)), initializers.HeUniform(seed=1)((4,)))


def test_keras_short_aliases():
    assert isinstance(initializers.get("uniform"), initializers.RandomUniform)
    assert isinstance(initializers.get("normal"), initializers.RandomNormal)


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match=r"Unknown initializer: 'glorot'. Expected one of \[.*'he_normal'"):
        initializers.get("glorot")


def test_bad_config():
    with pytest.raises(ValueError, match="mode"):
        initializers.VarianceScaling(mode="fan_max")
    with pytest.raises(ValueError, match="Unknown initializer class: 'os.system'"):
        initializers.deserialize({"class_name": "os.system", "config": {}})
