"""Parity with PyTorch: the same operation, the same weights, the same upstream gradient.

Tests that use torch are marked ``@requires_torch`` and skip cleanly where torch is missing.
Tolerances: float64 to 1e-10 relative, float32 to 1e-5 relative (scaled by the largest
magnitude of the expected array, so values near zero are compared absolutely).
"""

from __future__ import annotations

import numpy as np
import pytest

try:  # pragma: no cover - depends on the environment
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["torch", "requires_torch", "tensor", "tolerance", "assert_close", "check_layer_parity"]

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def tensor(a, requires_grad: bool = False):
    """A torch tensor holding a copy of ``a`` with the same dtype."""
    t = torch.from_numpy(np.array(a, copy=True))
    if requires_grad:
        t.requires_grad_(True)
    return t


def tolerance(dtype) -> float:
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def assert_close(actual, expected, dtype, what: str = "value") -> None:
    """``actual`` (NumPy) against ``expected`` (NumPy or torch) at the dtype's tolerance."""
    if torch is not None and isinstance(expected, torch.Tensor):
        expected = expected.detach().cpu().numpy()
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    rtol = tolerance(dtype)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-30), err_msg=what)


def check_layer_parity(layer, x, torch_fn, training: bool = True, dtype=np.float64, seed: int = 0,
                       check_input: bool = True) -> None:
    """Compare ``layer``'s forward, input gradient and parameter gradients with ``torch_fn``.

    ``torch_fn(x_t, p)`` computes the same output with torch, where ``p`` maps every name of
    ``layer.params`` to a leaf tensor (fusenet layout; transpose inside ``torch_fn`` as the
    torch operation needs) and every name of ``layer.state`` to a tensor of its value before
    the forward. ``x`` may be a list (then ``x_t`` is a list).
    """
    dtype = np.dtype(dtype)
    multi = isinstance(x, (list, tuple))
    xs = [np.asarray(a) if np.asarray(a).dtype.kind in "iub" else np.asarray(a, dtype=dtype) for a in (x if multi else [x])]
    p = {k: tensor(v, requires_grad=True) for k, v in layer.params.items()} if layer.built else None
    state = {k: tensor(v) for k, v in layer.state.items()} if layer.built else None
    y = layer(list(xs) if multi else xs[0], training=training)
    if p is None:  # built by the call above: the weights are the ones it just created
        p = {k: tensor(v, requires_grad=True) for k, v in layer.params.items()}
        state = {k: tensor(v) for k, v in layer.state.items()}
    p.update(state)
    outs = list(y) if isinstance(y, (list, tuple)) else [y]
    rng = np.random.default_rng(seed)
    r = [rng.normal(size=o.shape).astype(o.dtype) for o in outs]
    layer.zero_grad()
    dx = layer.backward(r if isinstance(y, (list, tuple)) else r[0])
    dxs = list(dx) if isinstance(dx, (list, tuple)) else [dx]

    xts = [tensor(a, requires_grad=a.dtype.kind == "f") for a in xs]
    yt = torch_fn(xts if multi else xts[0], p)
    yts = list(yt) if isinstance(yt, (list, tuple)) else [yt]
    for i, (o, ot) in enumerate(zip(outs, yts)):
        assert_close(o, ot, dtype, f"{layer.describe()} output {i}")
    torch.autograd.backward(yts, [tensor(ri) for ri in r])
    if check_input:
        for i, (d, xt) in enumerate(zip(dxs, xts)):
            if xt.grad is not None:
                assert_close(d, xt.grad, dtype, f"{layer.describe()} d/d(input {i})")
    for name, g in layer.grads.items():
        gt = p[name].grad
        assert gt is not None, f"{layer.describe()}: torch_fn does not use parameter {name!r}"
        assert_close(g, gt, dtype, f"{layer.describe()} d/d({name})")
