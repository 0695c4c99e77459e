"""The shared check that a fused layer equals the run of layers it replaces."""

from __future__ import annotations

import copy

import numpy as np

from fusenet.fusion import FusedLayer, LayerBuilder

TOL = {np.dtype(np.float64): dict(rtol=1e-10, atol=1e-10), np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6)}


def _run(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x


def _backward(layers, dy):
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return dy


def check_fused_equals_unfused(make_layers, x, training: bool, expected_class=None, steps: int = 2, seed: int = 0):
    """Fuse ``make_layers()`` with ``LayerBuilder.optimize_sequence(training=training)`` and compare
    with the unfused run: outputs, and in training also the input gradient, every parameter
    gradient and the state (moving statistics) after ``steps`` forward/backward passes.
    Returns the fused list."""
    dtype = np.dtype(x.dtype)
    tol = TOL[dtype]
    layers = make_layers()
    _run(layers, x, training=False)  # build
    rng = np.random.default_rng(seed)
    for layer in layers:  # non-trivial BN statistics
        for name, value in layer.state.items():
            value[...] = rng.uniform(0.5, 1.5, size=value.shape) if "variance" in name else rng.normal(size=value.shape)
    before = [copy.deepcopy(layer.get_weights()) for layer in layers]
    fused = LayerBuilder.optimize_sequence(layers, training=training)
    assert any(isinstance(f, FusedLayer) for f in fused), f"nothing was fused: {fused}"
    if expected_class is not None:
        assert any(isinstance(f, expected_class) for f in fused), f"expected a {expected_class.__name__} in {fused}"
    for layer, w0 in zip(layers, before):  # fusing never changes the source layers
        for a, b in zip(layer.get_weights(), w0):
            np.testing.assert_array_equal(a, b)
    unfused = copy.deepcopy(layers)
    for _ in range(steps):
        y_ref = _run(unfused, x, training)
        y = _run(fused, x, training)
        assert y.dtype == y_ref.dtype == dtype
        np.testing.assert_allclose(y, y_ref, **tol, err_msg="fused output")
        if not training:
            continue
        dy = rng.normal(size=y.shape).astype(dtype)
        for layer in unfused + fused:
            layer.zero_grad()
        dx_ref = _backward(unfused, dy)
        dx = _backward(fused, dy)
        np.testing.assert_allclose(dx, dx_ref, **tol, err_msg="fused input gradient")
        ref_grads = [g for layer in unfused for g in layer.grads.values()]
        got_grads = [g for layer in fused for g in layer.grads.values()]
        assert len(ref_grads) == len(got_grads)
        for g, r in zip(got_grads, ref_grads):
            np.testing.assert_allclose(g, r, **tol, err_msg="fused parameter gradient")
        for a, b in zip([w for layer in fused for w in layer.get_weights()],
                        [w for layer in unfused for w in layer.get_weights()]):
            np.testing.assert_allclose(a, b, **tol, err_msg="weights/state after the step")
    for f in fused:
        if isinstance(f, FusedLayer):
            for a, b in zip(f.unfuse(), f.source_layers):
                assert a is not b
    return fused
