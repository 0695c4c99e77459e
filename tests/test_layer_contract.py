"""Generic contract tests over every layer case of every family module."""

import importlib
import pkgutil

import numpy as np
import pytest

import fusenet
import fusenet.layers.base as base
import tests
from tests.contract import check_config_roundtrip, check_output_shape, check_weights_roundtrip


def _all_cases():
    cases = []
    for info in pkgutil.iter_modules(tests.__path__):
        if info.name.startswith("test_") and info.name != "test_layer_contract":
            module = importlib.import_module(f"tests.{info.name}")
            cases.extend(getattr(module, "CONTRACT_CASES", []))
    return cases


CASES = _all_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_config_roundtrip(case, rng):
    check_config_roundtrip(case, rng)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_weights_roundtrip(case, rng):
    check_weights_roundtrip(case, rng)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_output_shape(case, rng):
    check_output_shape(case, rng)


def test_every_registered_layer_has_a_case():
    covered = {type(c.make()).__name__ for c in CASES}
    registered = {name for name, cls in base._REGISTRY.items() if cls.__module__.startswith("fusenet.")}
    aliases = {"InputLayer"}
    missing = sorted(registered - covered - aliases)
    assert not missing, f"layer classes without a contract case: {missing}"
