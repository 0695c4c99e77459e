"""The generic layer-contract checks, and the case list every family test module contributes.

Each ``tests/test_*.py`` module of a layer family defines ``CONTRACT_CASES``, a list of
:class:`LayerCase`; ``tests/test_layer_contract.py`` gathers them all, checks that every
registered fusenet layer class has at least one, and runs the round trips below on each.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fusenet import layers


@dataclass
class LayerCase:
    """``make()`` builds a fresh layer; ``make_input(rng)`` an input for it (float64 unless integer)."""

    make: Callable[[], layers.Layer]
    make_input: Callable[[np.random.Generator], object]
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = type(self.make()).__name__


def check_config_roundtrip(case: LayerCase, rng) -> None:
    layer = case.make()
    x = case.make_input(rng)
    y = layer(x)
    config = layer.get_config()
    spec = layers.serialize(layer)
    clone = layers.deserialize(copy.deepcopy(spec))
    assert type(clone) is type(layer)
    assert clone.get_config() == config, f"{case.id}: config changed in the round trip"
    clone(x)
    clone.set_weights(layer.get_weights())
    out_a, out_b = y, clone(x)
    for a, b in zip(out_a if isinstance(out_a, (list, tuple)) else [out_a], out_b if isinstance(out_b, (list, tuple)) else [out_b]):
        np.testing.assert_array_equal(a, b)


def check_weights_roundtrip(case: LayerCase, rng) -> None:
    layer = case.make()
    x = case.make_input(rng)
    layer(x)
    weights = layer.get_weights()
    assert len(weights) == len(layer.weights)
    for w, ref in zip(weights, layer.weights):
        assert w is not ref and w.shape == ref.shape
    perturbed = [w + 1.0 for w in weights]
    layer.set_weights(perturbed)
    for w, ref in zip(perturbed, layer.get_weights()):
        np.testing.assert_array_equal(w.astype(ref.dtype), ref)
    assert layer.count_params() == sum(w.size for w in weights)
    if weights:
        bad = [np.zeros(w.shape + (1,)) for w in weights]
        before = layer.get_weights()
        try:
            layer.set_weights(bad)
        except ValueError as exc:
            assert layer.name in str(exc)
        else:
            raise AssertionError(f"{case.id}: set_weights accepted arrays of the wrong shape")
        for a, b in zip(before, layer.get_weights()):
            np.testing.assert_array_equal(a, b)
        try:
            layer.set_weights(weights[:-1])
        except ValueError as exc:
            assert layer.name in str(exc)
        else:
            raise AssertionError(f"{case.id}: set_weights accepted too few arrays")


def check_output_shape(case: LayerCase, rng) -> None:
    layer = case.make()
    x = case.make_input(rng)
    y = layer(x)
    shapes = [np.shape(a) for a in x] if isinstance(x, (list, tuple)) else np.shape(x)
    expected = layer.compute_output_shape(shapes)
    if isinstance(y, (list, tuple)):
        for yi, ei in zip(y, expected):
            assert tuple(yi.shape) == tuple(ei)
    else:
        assert tuple(y.shape) == tuple(expected), f"{case.id}: output {y.shape} vs compute_output_shape {expected}"
