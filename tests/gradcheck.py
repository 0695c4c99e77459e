"""Finite-difference gradient checks in float64, shared by every test module.

The error measure is ``||analytic - numeric|| / max(||analytic|| + ||numeric||, atol)``;
the default bound is 1e-6 with central differences of step 1e-6.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = [
    "numerical_gradient",
    "relative_error",
    "assert_gradients_close",
    "check_function_gradient",
    "check_layer_gradients",
    "check_loss_gradient",
]

EPS = 1e-6
TOL = 1e-6


def numerical_gradient(f, arr: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``arr``, perturbed in place."""
    grad = np.zeros(arr.shape, dtype=np.float64)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f()
        arr[idx] = old - eps
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(analytic, numeric, atol: float = 1e-10) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    diff = np.linalg.norm((analytic - numeric).ravel())
    scale = np.linalg.norm(analytic.ravel()) + np.linalg.norm(numeric.ravel())
    return float(diff / max(scale, atol))


def assert_gradients_close(analytic, numeric, what: str, tol: float = TOL) -> float:
    analytic = np.asarray(analytic)
    numeric = np.asarray(numeric)
    assert analytic.shape == numeric.shape, f"{what}: analytic gradient shape {analytic.shape} != {numeric.shape}"
    err = relative_error(analytic, numeric)
    assert err < tol, f"{what}: relative error {err:.3e} >= {tol:.0e}"
    return err


def check_function_gradient(forward, backward, x, seed: int = 0, tol: float = TOL, eps: float = EPS) -> float:
    """Check ``backward(x, y, dy)`` of an element-wise or shaped function ``y = forward(x)``."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    y = forward(x)
    r = rng.normal(size=np.shape(y))
    dx = backward(x, y, r)
    num = numerical_gradient(lambda: float(np.sum(forward(x) * r)), x, eps)
    return assert_gradients_close(dx, num, "d/dx", tol)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def check_layer_gradients(layer, x, training: bool = True, seed: int = 0, tol: float = TOL, eps: float = EPS,
                          check_input: bool = True, params=None) -> dict:
    """Check ``layer.backward`` against central differences, for the input(s) and every parameter.

    ``layer`` is built in float64 (from ``x`` if not built). Stochastic layers are copied with
    their generator before every evaluation, so each one sees the same random draws.
    ``x`` may be a list for multi-input layers. Returns ``{what: relative error}``.
    """
    multi = isinstance(x, (list, tuple))
    xs = [np.array(a) if np.asarray(a).dtype.kind in "iub" else np.array(a, dtype=np.float64) for a in _as_list(x)]
    inputs = (lambda arrs: list(arrs)) if multi else (lambda arrs: arrs[0])
    if not layer.built:
        # build only, with no draw from the layer's generator
        layer._build_for(xs[0].shape if not multi else [a.shape for a in xs], np.float64)
    template = copy.deepcopy(layer)
    y = copy.deepcopy(template)(inputs(xs), training=training)
    rng = np.random.default_rng(seed)
    r = [rng.normal(size=np.shape(t)) for t in _as_list(y)]

    def loss_of(model):
        out = _as_list(model(inputs(xs), training=training))
        return float(sum(np.sum(o * ri) for o, ri in zip(out, r)))

    analytic = copy.deepcopy(template)
    analytic.zero_grad()
    out = analytic(inputs(xs), training=training)
    dx = _as_list(analytic.backward(r if isinstance(out, (list, tuple)) else r[0]))
    errors = {}
    if check_input:
        for i, a in enumerate(xs):
            if a.dtype.kind != "f":
                continue
            num = numerical_gradient(lambda: loss_of(copy.deepcopy(template)), a, eps)
            errors[f"input {i}"] = assert_gradients_close(dx[i], num, f"{layer.describe()} d/d(input {i})", tol)
    names = list(template.params) if params is None else list(params)
    for name in names:
        num = numerical_gradient(lambda: loss_of(copy.deepcopy(template)), template.params[name], eps)
        errors[name] = assert_gradients_close(analytic.grads[name], num, f"{layer.describe()} d/d({name})", tol)
    return errors


def check_loss_gradient(loss, y_true, y_pred, sample_weight=None, tol: float = TOL, eps: float = EPS) -> float:
    """Check ``loss.gradient(y_true, y_pred, sample_weight)`` against central differences of ``loss(...)``."""
    y_pred = np.array(y_pred, dtype=np.float64)
    analytic = loss.gradient(y_true, y_pred, sample_weight=sample_weight)
    num = numerical_gradient(lambda: float(np.sum(loss(y_true, y_pred, sample_weight=sample_weight))), y_pred, eps)
    return assert_gradients_close(analytic, num, f"{type(loss).__name__} d/d(y_pred)", tol)
