"""Activations: every function pair of fusenet.activations and every layer of fusenet.layers.activation."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from fusenet import activations as A
from fusenet import initializers, layers
from fusenet.errors import BackwardBeforeForwardError
from tests.contract import LayerCase
from tests.gradcheck import check_function_gradient, check_layer_gradients
from tests.parity import assert_close, check_layer_parity, requires_torch, tensor, torch

F = torch.nn.functional if torch is not None else None
DTYPES = [np.float64, np.float32]


def away(x, kinks, gap=0.1):
    """``x`` with every entry closer than ``gap`` to a kink moved to ``kink +- gap``."""
    x = np.array(x, dtype=np.float64)
    for k in kinks:
        d = x - k
        x = np.where(np.abs(d) < gap, k + np.copysign(gap, d), x)
    return x


def sample(*shape, kinks=(), low=-4.0, high=4.0):
    """``make_input(rng)``: uniform on ``[low, high)``, kept away from ``kinks``."""
    return lambda rng: away(rng.uniform(low, high, size=shape), kinks)


def sparsemax_input(*shape, axis=-1, margin=0.05):
    """Inputs whose entries all stay ``margin`` away from the sparsemax threshold ``tau``."""

    def make(rng):
        while True:
            x = rng.uniform(-1.5, 1.5, size=shape)
            y = A.sparsemax(x, axis=axis)
            support = y > 0
            tau = np.max(np.where(support, x - y, -np.inf), axis=axis, keepdims=True)
            if np.min(np.abs(x - tau)) > margin:
                return x

    return make


# ---------------------------------------------------------------- torch references
def torch_relu(negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras' relu written with torch operations."""

    def fn(t):
        pos = torch.where(t > threshold, t, 0.0) if threshold else torch.relu(t)
        if max_value is not None:
            pos = torch.clamp(pos, 0.0, max_value)
        return pos - negative_slope * torch.relu(threshold - t)

    return fn


def torch_hardsigmoid(t):
    """``F.hardsigmoid`` forward; its float64 backward multiplies by 1/6 rounded to float32
    (see :func:`test_torch_hardsigmoid_backward_is_float32_rounded`), so the gradient comes from
    the same function written as ``relu6(t + 3) / 6``."""
    exact = F.relu6(t + 3) / 6
    return exact + (F.hardsigmoid(t) - exact).detach()


def torch_softmax_axes(axes):
    return lambda t: torch.exp(t - torch.logsumexp(t, dim=axes, keepdim=True))


# ---------------------------------------------------------------- function cases
@dataclass
class FnCase:
    """An activation object, an input maker (away from its kinks) and, when torch has it, torch's version."""

    make: Callable[[], A.ActivationFunction]
    make_input: Callable[[np.random.Generator], np.ndarray]
    torch_fn: Callable | None = None
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = self.make().name


def _t(name, *args, **kwargs):
    """``torch.nn.functional.<name>(t, *args, **kwargs)`` (resolved when called, so that torch stays optional)."""
    return lambda t: getattr(F, name)(t, *args, **kwargs)


FN_CASES = [
    FnCase(A.Linear, sample(3, 4), lambda t: t * 1.0),
    FnCase(A.ReLU, sample(3, 4, kinks=(0,)), _t("relu")),
    FnCase(lambda: A.ReLU(negative_slope=0.1, max_value=2.0, threshold=0.5), sample(3, 4, kinks=(0, 0.5, 2)),
           lambda t: torch_relu(0.1, 2.0, 0.5)(t), id="relu-all-options"),
    FnCase(lambda: A.ReLU(max_value=6.0), sample(3, 4, kinks=(0, 6), high=8), _t("relu6"), id="relu-max6"),
    FnCase(lambda: A.ReLU(negative_slope=0.3), sample(3, 4, kinks=(0,)), _t("leaky_relu", 0.3), id="relu-slope"),
    FnCase(lambda: A.ReLU(threshold=-0.5), sample(3, 4, kinks=(-0.5, 0)),
           lambda t: torch_relu(0.0, None, -0.5)(t), id="relu-negative-threshold"),
    FnCase(A.ReLU6, sample(3, 4, kinks=(0, 6), high=8), _t("relu6")),
    FnCase(A.LeakyReLU, sample(3, 4, kinks=(0,)), _t("leaky_relu", 0.2)),
    FnCase(A.RReLU, sample(3, 4, kinks=(0,)), _t("rrelu", 1 / 8, 1 / 3, training=False)),
    FnCase(lambda: A.RReLU(0.1, 0.5), sample(3, 4, kinks=(0,)), _t("rrelu", 0.1, 0.5, training=False), id="rrelu-bounds"),
    FnCase(A.ELU, sample(3, 4, kinks=(0,)), _t("elu")),
    FnCase(lambda: A.ELU(alpha=0.5), sample(3, 4, kinks=(0,)), _t("elu", 0.5), id="elu-alpha"),
    FnCase(A.SELU, sample(3, 4, kinks=(0,)), _t("selu")),
    FnCase(A.CELU, sample(3, 4, kinks=(0,)), _t("celu")),
    FnCase(lambda: A.CELU(alpha=2.5), sample(3, 4, kinks=(0,)), _t("celu", 2.5), id="celu-alpha"),
    FnCase(A.GELU, sample(3, 4, low=-6, high=6), _t("gelu")),
    FnCase(lambda: A.GELU(approximate=True), sample(3, 4, low=-6, high=6), _t("gelu", approximate="tanh"),
           id="gelu-approximate"),
    FnCase(A.GELUTanh, sample(3, 4), _t("gelu", approximate="tanh")),
    FnCase(A.GLU, sample(3, 4), _t("glu", -1)),
    FnCase(lambda: A.GLU(axis=0), sample(4, 3), _t("glu", 0), id="glu-axis0"),
    FnCase(A.Sigmoid, sample(3, 4, low=-8, high=8), lambda t: torch.sigmoid(t)),
    FnCase(A.LogSigmoid, sample(3, 4, low=-8, high=8), _t("logsigmoid")),
    FnCase(A.HardSigmoid, sample(3, 4, kinks=(-3, 3), low=-5, high=5), lambda t: torch_hardsigmoid(t)),
    FnCase(A.HardSiLU, sample(3, 4, kinks=(-3, 3), low=-5, high=5), _t("hardswish")),
    FnCase(A.Tanh, sample(3, 4), lambda t: torch.tanh(t)),
    FnCase(A.HardTanh, sample(3, 4, kinks=(-1, 1)), _t("hardtanh")),
    FnCase(lambda: A.HardTanh(-0.5, 2.0), sample(3, 4, kinks=(-0.5, 2)), _t("hardtanh", -0.5, 2.0), id="hard_tanh-range"),
    FnCase(A.TanhShrink, sample(3, 4), _t("tanhshrink")),
    FnCase(A.HardShrink, sample(3, 4, kinks=(-0.5, 0.5)), _t("hardshrink")),
    FnCase(lambda: A.HardShrink(1.2), sample(3, 4, kinks=(-1.2, 1.2)), _t("hardshrink", 1.2), id="hard_shrink-1.2"),
    FnCase(A.SoftShrink, sample(3, 4, kinks=(-0.5, 0.5)), _t("softshrink")),
    FnCase(lambda: A.SoftShrink(1.2), sample(3, 4, kinks=(-1.2, 1.2)), _t("softshrink", 1.2), id="soft_shrink-1.2"),
    FnCase(A.Threshold, sample(3, 4, kinks=(0,)), _t("threshold", 0.0, 0.0)),
    FnCase(lambda: A.Threshold(0.5, -2.0), sample(3, 4, kinks=(0.5,)), _t("threshold", 0.5, -2.0), id="threshold-value"),
    FnCase(A.Softmax, sample(3, 5), _t("softmax", -1)),
    FnCase(lambda: A.Softmax(axis=0), sample(3, 5), _t("softmax", 0), id="softmax-axis0"),
    FnCase(lambda: A.Softmax(axis=(0, 2)), sample(2, 3, 4), torch_softmax_axes((0, 2)), id="softmax-axes02"),
    FnCase(A.Softmin, sample(3, 5), _t("softmin", -1)),
    FnCase(lambda: A.Softmin(axis=1), sample(2, 3, 4), _t("softmin", 1), id="softmin-axis1"),
    FnCase(A.LogSoftmax, sample(3, 5), _t("log_softmax", -1)),
    FnCase(lambda: A.LogSoftmax(axis=-2), sample(2, 3, 4), _t("log_softmax", -2), id="log_softmax-axis-2"),
    FnCase(A.Sparsemax, sparsemax_input(4, 5)),
    FnCase(lambda: A.Sparsemax(axis=1), sparsemax_input(2, 5, 3, axis=1), id="sparsemax-axis1"),
    FnCase(A.Softplus, sample(3, 4, low=-8, high=8), _t("softplus")),
    FnCase(lambda: A.Softplus(beta=2.0, threshold=3.0), sample(3, 4, kinks=(1.5,)), _t("softplus", 2.0, 3.0),
           id="softplus-beta-threshold"),
    FnCase(A.Squareplus, sample(3, 4)),
    FnCase(lambda: A.Squareplus(b=0.0), sample(3, 4, kinks=(0,)), id="squareplus-b0"),
    FnCase(A.SparsePlus, sample(3, 4, kinks=(-1, 1))),
    FnCase(A.SparseSigmoid, sample(3, 4, kinks=(-1, 1))),
    FnCase(A.Softsign, sample(3, 4), _t("softsign")),
    FnCase(A.SiLU, sample(3, 4, low=-8, high=8), _t("silu")),
    FnCase(A.Mish, sample(3, 4, low=-8, high=8), _t("mish")),
    FnCase(A.Exponential, sample(3, 4), lambda t: torch.exp(t)),
]
TORCH_FN_CASES = [c for c in FN_CASES if c.torch_fn is not None]
PRIMARY_NAMES = sorted({A.get(name).name for name in A.available()})


def test_every_registered_activation_has_a_case():
    covered = {case.make().name for case in FN_CASES}
    assert not set(PRIMARY_NAMES) - covered, f"activations without a test case: {sorted(set(PRIMARY_NAMES) - covered)}"
    assert len(PRIMARY_NAMES) >= 30


@pytest.mark.parametrize("name", A.available())
def test_get_serialize_roundtrip(name):
    fn = A.get(name)
    assert isinstance(fn, A.ActivationFunction)
    assert A.get(fn) is fn
    again = A.deserialize(copy.deepcopy(A.serialize(fn)))
    assert again == fn and type(again) is type(fn)


@pytest.mark.parametrize("case", FN_CASES, ids=lambda c: c.id)
def test_function_gradient_float64(case, rng):
    fn = case.make()
    check_function_gradient(fn.forward, fn.backward, case.make_input(rng))


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", TORCH_FN_CASES, ids=lambda c: c.id)
def test_function_torch_parity(case, dtype, rng):
    fn = case.make()
    x = case.make_input(rng).astype(dtype)
    y = fn.forward(x)
    dy = rng.normal(size=y.shape).astype(dtype)
    dx = fn.backward(x, y, dy)
    xt = tensor(x, requires_grad=True)
    yt = case.torch_fn(xt)
    yt.backward(tensor(dy))
    assert_close(y, yt, dtype, f"{case.id} forward")
    assert_close(dx, xt.grad, dtype, f"{case.id} backward")


EXTREME = np.array([[-1000.0, -30.0, -0.75, 0.75, 30.0, 1000.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FN_CASES, ids=lambda c: c.id)
def test_stable_at_1000(case, dtype, rng):
    fn = case.make()
    shape = case.make_input(rng).shape
    x = np.resize(EXTREME, shape).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = fn.forward(x)
            dx = fn.backward(x, y, np.ones_like(y))
    if fn.name == "exponential":
        # the one activation whose value leaves the float range: exp(1000) is +inf, as IEEE exp gives
        assert (y[x == 1000] == np.inf).all() and np.isfinite(y[x < 1000]).all() and (y[x == -1000] == 0).all()
        assert not np.isnan(dx).any()
        return
    assert np.isfinite(y).all(), f"{case.id}: forward not finite: {y}"
    assert np.isfinite(dx).all(), f"{case.id}: backward not finite: {dx}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "fn, x, expected",
    [
        (A.softplus, [-1000.0, 1000.0], [0.0, 1000.0]),
        (A.log_sigmoid, [-1000.0, 1000.0], [-1000.0, 0.0]),
        (A.sigmoid, [-1000.0, 1000.0], [0.0, 1.0]),
        (A.silu, [-1000.0, 1000.0], [0.0, 1000.0]),
        (A.mish, [-1000.0, 1000.0], [0.0, 1000.0]),
        (A.gelu, [-1000.0, 1000.0], [0.0, 1000.0]),
        (A.elu, [-1000.0, 1000.0], [-1.0, 1000.0]),
        (A.squareplus, [-1000.0, 1000.0], [2 / (np.sqrt(1e6 + 4) + 1000), (1000 + np.sqrt(1e6 + 4)) / 2]),
        (A.softmax, [-1000.0, 1000.0], [0.0, 1.0]),
        (A.log_softmax, [-1000.0, 1000.0], [-2000.0, 0.0]),
        (A.sparsemax, [-1000.0, 1000.0], [0.0, 1.0]),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_values_at_1000(fn, x, expected, dtype):
    y = fn(np.array(x, dtype=dtype))
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("case", FN_CASES, ids=lambda c: c.id)
def test_dtype_preserved(case, dtype, rng):
    fn = case.make()
    x = case.make_input(rng).astype(dtype)
    y = fn.forward(x)
    assert y.dtype == dtype, f"{case.id}: {dtype.__name__} in, {y.dtype} out"
    assert fn.backward(x, y, np.ones_like(y)).dtype == dtype


def test_integer_input_becomes_floatx():
    assert A.relu(np.array([-2, 3])).dtype == np.float32
    np.testing.assert_array_equal(A.relu([-2, 3]), [0.0, 3.0])
    assert A.softmax(np.array([[1, 2]])).dtype == np.float32


def test_keras_relu_options_values():
    x = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
    np.testing.assert_allclose(A.relu(x), [0, 0, 0, 5, 10])
    np.testing.assert_allclose(A.relu(x, negative_slope=0.5), [-5, -2.5, 0, 5, 10])
    np.testing.assert_allclose(A.relu(x, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_allclose(A.relu(x, threshold=5.0), [0, 0, 0, 0, 10])
    np.testing.assert_allclose(layers.ReLU(max_value=10, negative_slope=0.5)(x), [-5, -2.5, 0, 5, 10])


def test_definitions():
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(A.hard_sigmoid(x), np.clip(x / 6 + 0.5, 0, 1), atol=1e-15)
    np.testing.assert_allclose(A.hard_silu(x), x * np.clip(x / 6 + 0.5, 0, 1), atol=1e-15)
    np.testing.assert_allclose(A.sparse_sigmoid(x), np.clip((x + 1) / 2, 0, 1))
    np.testing.assert_allclose(A.squareplus(x, b=4), (x + np.sqrt(x * x + 4)) / 2, rtol=1e-14)
    np.testing.assert_allclose(A.sparse_plus(np.array([-2.0, 0.0, 2.0])), [0.0, 0.25, 2.0])
    np.testing.assert_allclose(A.threshold(x, 1.0, -7.0), np.where(x > 1, x, -7.0))
    np.testing.assert_allclose(A.rrelu(x, 0.1, 0.3), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(A.leaky_relu(x), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(A.gelu(x, approximate=True), A.get("gelu_tanh")(x))
    assert A.get("swish") == A.get("silu") and A.get("hard_swish") == A.get("hard_silu")
    s = A.sparsemax(np.array([[0.1, 1.1, 0.2], [3.0, -1.0, 2.5], [0.1, 2.1, 0.2]]))
    np.testing.assert_allclose(s, [[0.0, 0.95, 0.05], [0.75, 0.0, 0.25], [0.0, 1.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(A.glu(np.array([[1.0, 2.0, 0.0, 1.0]])), [[0.5, 2.0 / (1 + np.exp(-1))]])
    assert not A.get("softmax").elementwise and A.get("relu").elementwise


def test_config_lists_only_non_defaults():
    assert A.serialize(A.get("softplus")) == "softplus" and A.ELU(alpha=1) == A.get("elu")
    assert A.serialize(A.LeakyReLU(0.1)) == {"class_name": "leaky_relu", "config": {"negative_slope": 0.1}}
    assert A.serialize(A.Softmax(axis=(1, 2))) == {"class_name": "softmax", "config": {"axis": [1, 2]}}
    assert A.deserialize({"class_name": "threshold", "config": {"threshold": 0.5}}) == A.Threshold(0.5, 0.0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown activation: 'nope'. Expected one of \[.*'gelu'.*'relu'.*'sparsemax'"):
        A.get("nope")
    with pytest.raises(ValueError, match=r"Unknown activation: 'nope'"):
        A.deserialize({"class_name": "nope", "config": {}})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: A.ELU(alpha=float("nan")), ValueError, r"activations.elu: .*finite.*Received: alpha=nan"),
        (lambda: A.CELU(alpha=0), ValueError, r"activations.celu: expected alpha > 0.0. Received: alpha=0"),
        (lambda: A.HardTanh(1.0, -1.0), ValueError, r"min_val <= max_val. Received: min_val=1.0, max_val=-1.0"),
        (lambda: A.HardShrink(-0.1), ValueError, r"Received: threshold=-0.1"),
        (lambda: A.SoftShrink(-0.1), ValueError, r"Received: threshold=-0.1"),
        (lambda: A.RReLU(0.5, 0.1), ValueError, r"lower <= upper. Received: lower=0.5, upper=0.1"),
        (lambda: A.Softplus(beta=0), ValueError, r"Received: beta=0"),
        (lambda: A.Squareplus(b=-1), ValueError, r"Received: b=-1"),
        (lambda: A.relu(np.ones(2), max_value=float("inf")), ValueError, r"Received: max_value=inf"),
        (lambda: A.ELU(alpha="1"), TypeError, r"expected alpha to be a number. Received: alpha='1'"),
        (lambda: A.LeakyReLU(negative_slope=True), TypeError, r"Received: negative_slope=True"),
        (lambda: A.GELU(approximate="tanh"), TypeError, r"expected approximate to be a bool. Received: approximate='tanh'"),
        (lambda: A.Softmax(axis=1.5), TypeError, r"Received: axis=1.5"),
        (lambda: A.Softmax(axis=[]), ValueError, r"Received: axis=\[\]"),
        (lambda: A.GLU(axis=(0, 1)), TypeError, r"expected axis to be an int. Received: axis=\(0, 1\)"),
        (lambda: A.softmax(np.ones((2, 3)), axis=2), ValueError,
         r"activations.softmax: axis 2 is out of range for an input of rank 2 \(shape \(2, 3\)\). Received: axis=2"),
        (lambda: A.softmax(np.ones((2, 3)), axis=(1, -1)), ValueError, r"distinct axes.*Received: axis=\(1, -1\)"),
        (lambda: A.glu(np.ones((2, 3))), ValueError, r"activations.glu: expected the size of axis -1 to be even.*\(2, 3\)"),
        (lambda: A.relu(np.array(["a"])), TypeError, r"activations.relu expected a numeric array"),
        (lambda: A.get(3), TypeError, r"Received: 3"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---------------------------------------------------------------- layers
@dataclass
class LayerSpec:
    """A layer, an input maker (away from kinks) and torch's version ``torch_fn(x_t, params)``."""

    make: Callable[[], layers.Layer]
    make_input: Callable[[np.random.Generator], np.ndarray]
    torch_fn: Callable | None = None
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = type(self.make()).__name__


def _lt(name, *args, **kwargs):
    return lambda t, p: getattr(F, name)(t, *args, **kwargs)


def _channels_last(fn):
    """Apply a channels-first torch function to a channels-last (N, H, W, C) tensor."""
    return lambda t, p: fn(t.permute(0, 3, 1, 2), p).permute(0, 2, 3, 1)


def _prelu_alpha():
    return initializers.RandomUniform(0.05, 0.6, seed=3)


LAYER_SPECS = [
    LayerSpec(lambda: layers.Activation("relu"), sample(3, 4, kinks=(0,)), _lt("relu")),
    LayerSpec(lambda: layers.Activation(A.ELU(alpha=0.5)), sample(3, 4, kinks=(0,)), _lt("elu", 0.5),
              id="Activation-elu-object"),
    LayerSpec(lambda: layers.Activation({"class_name": "softmax", "config": {"axis": 1}}), sample(2, 3, 4),
              _lt("softmax", 1), id="Activation-softmax-dict"),
    LayerSpec(lambda: layers.Activation("glu"), sample(3, 6), _lt("glu", -1), id="Activation-glu"),
    LayerSpec(lambda: layers.ReLU(), sample(3, 4, kinks=(0,)), _lt("relu")),
    LayerSpec(lambda: layers.ReLU(max_value=2.0, negative_slope=0.2, threshold=0.5), sample(3, 4, kinks=(0, 0.5, 2)),
              lambda t, p: torch_relu(0.2, 2.0, 0.5)(t), id="ReLU-options"),
    LayerSpec(lambda: layers.LeakyReLU(), sample(3, 4, kinks=(0,)), _lt("leaky_relu", 0.3)),
    LayerSpec(lambda: layers.PReLU(alpha_initializer=_prelu_alpha()), sample(5, 4, kinks=(0,)),
              lambda t, p: F.prelu(t, p["alpha"]), id="PReLU-2d"),
    LayerSpec(lambda: layers.PReLU(alpha_initializer=_prelu_alpha(), shared_axes=[1, 2]), sample(2, 3, 2, 4, kinks=(0,)),
              _channels_last(lambda t, p: F.prelu(t, p["alpha"].reshape(-1))), id="PReLU-shared-spatial"),
    LayerSpec(lambda: layers.PReLU(alpha_initializer=_prelu_alpha(), shared_axes=[1, 2]), sample(3, 4, 2, kinks=(0,)),
              lambda t, p: F.prelu(t, p["alpha"].reshape(1)), id="PReLU-shared-all"),
    LayerSpec(lambda: layers.PReLU(alpha_initializer=_prelu_alpha()), sample(2, 3, 4, kinks=(0,)),
              lambda t, p: torch.where(t > 0, t, p["alpha"] * t), id="PReLU-full"),
    LayerSpec(lambda: layers.ELU(alpha=0.7), sample(3, 4, kinks=(0,)), _lt("elu", 0.7)),
    LayerSpec(lambda: layers.Softmax(), sample(3, 5), _lt("softmax", -1)),
    LayerSpec(lambda: layers.Softmax(axis=[1, 2]), sample(2, 3, 4), lambda t, p: torch_softmax_axes((1, 2))(t),
              id="Softmax-axes"),
    LayerSpec(lambda: layers.RReLU(seed=5), sample(3, 4, kinks=(0,))),
    LayerSpec(lambda: layers.RReLU(0.2, 0.2, seed=5), sample(3, 4, kinks=(0,)),
              lambda t, p: F.rrelu(t, 0.2, 0.2, training=True), id="RReLU-fixed-slope"),
    LayerSpec(lambda: layers.ReLU6(), sample(3, 4, kinks=(0, 6), high=8), _lt("relu6")),
    LayerSpec(lambda: layers.GELU(), sample(3, 4), _lt("gelu")),
    LayerSpec(lambda: layers.GELU(approximate="tanh"), sample(3, 4), _lt("gelu", approximate="tanh"), id="GELU-tanh"),
    LayerSpec(lambda: layers.SiLU(), sample(3, 4), _lt("silu")),
    LayerSpec(lambda: layers.Mish(), sample(3, 4), _lt("mish")),
    LayerSpec(lambda: layers.SELU(), sample(3, 4, kinks=(0,)), _lt("selu")),
    LayerSpec(lambda: layers.CELU(alpha=0.5), sample(3, 4, kinks=(0,)), _lt("celu", 0.5)),
    LayerSpec(lambda: layers.Sigmoid(), sample(3, 4), lambda t, p: torch.sigmoid(t)),
    LayerSpec(lambda: layers.Tanh(), sample(3, 4), lambda t, p: torch.tanh(t)),
    LayerSpec(lambda: layers.Softplus(), sample(3, 4), _lt("softplus")),
    LayerSpec(lambda: layers.Softplus(beta=2.0, threshold=3.0), sample(3, 4, kinks=(1.5,)), _lt("softplus", 2.0, 3.0),
              id="Softplus-beta-threshold"),
    LayerSpec(lambda: layers.Softsign(), sample(3, 4), _lt("softsign")),
    LayerSpec(lambda: layers.Hardtanh(-0.5, 2.0), sample(3, 4, kinks=(-0.5, 2)), _lt("hardtanh", -0.5, 2.0)),
    LayerSpec(lambda: layers.Hardswish(), sample(3, 4, kinks=(-3, 3), low=-5, high=5), _lt("hardswish")),
    LayerSpec(lambda: layers.Hardsigmoid(), sample(3, 4, kinks=(-3, 3), low=-5, high=5), lambda t, p: torch_hardsigmoid(t)),
    LayerSpec(lambda: layers.LogSigmoid(), sample(3, 4), _lt("logsigmoid")),
    LayerSpec(lambda: layers.Softmin(axis=0), sample(3, 4), _lt("softmin", 0)),
    LayerSpec(lambda: layers.LogSoftmax(), sample(3, 5), _lt("log_softmax", -1)),
    LayerSpec(lambda: layers.Softmax2d(), sample(2, 2, 3, 4), _channels_last(lambda t, p: torch.nn.Softmax2d()(t))),
    LayerSpec(lambda: layers.Sparsemax(), sparsemax_input(3, 5)),
    LayerSpec(lambda: layers.GLU(axis=1), sample(2, 4, 3), _lt("glu", 1)),
    LayerSpec(lambda: layers.Tanhshrink(), sample(3, 4), _lt("tanhshrink")),
    LayerSpec(lambda: layers.Hardshrink(0.7), sample(3, 4, kinks=(-0.7, 0.7)), _lt("hardshrink", 0.7)),
    LayerSpec(lambda: layers.Softshrink(0.7), sample(3, 4, kinks=(-0.7, 0.7)), _lt("softshrink", 0.7)),
    LayerSpec(lambda: layers.Threshold(0.2, -1.0), sample(3, 4, kinks=(0.2,)), _lt("threshold", 0.2, -1.0)),
]
TORCH_LAYER_SPECS = [s for s in LAYER_SPECS if s.torch_fn is not None]

CONTRACT_CASES = [LayerCase(s.make, s.make_input, s.id) for s in LAYER_SPECS]


def test_every_activation_layer_has_a_case():
    import fusenet.layers.activation as module

    covered = {type(s.make()).__name__ for s in LAYER_SPECS}
    assert set(module.__all__) <= covered, f"layers without a case: {sorted(set(module.__all__) - covered)}"


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: s.id)
def test_layer_gradients_float64(spec, rng):
    check_layer_gradients(spec.make(), spec.make_input(rng))


@pytest.mark.parametrize("spec", LAYER_SPECS, ids=lambda s: s.id)
def test_layer_training_and_inference_agree(spec, rng):
    """Training and inference give the same output for every deterministic layer."""
    layer = spec.make()
    x = spec.make_input(rng)
    if isinstance(layer, layers.RReLU):
        pytest.skip("RReLU draws random slopes in training")
    np.testing.assert_array_equal(layer(x, training=False), layer(x, training=True))


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", TORCH_LAYER_SPECS, ids=lambda s: s.id)
def test_layer_torch_parity(spec, dtype, rng):
    check_layer_parity(spec.make(), spec.make_input(rng), spec.torch_fn, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_rrelu_training_uses_the_drawn_slopes(dtype, rng):
    lower, upper, seed = 0.1, 0.4, 11
    x = away(rng.normal(size=(4, 5)), (0,)).astype(dtype)
    slopes = np.random.default_rng(seed).uniform(lower, upper, size=x.shape).astype(dtype)
    check_layer_parity(layers.RReLU(lower, upper, seed=seed), x,
                       lambda t, p: torch.where(t > 0, t, t * tensor(slopes)), dtype=dtype)
    negative = x < 0
    y = layers.RReLU(lower, upper, seed=seed)(x, training=True)
    ratio = y[negative] / x[negative]
    assert ((ratio >= lower - 1e-6) & (ratio <= upper + 1e-6)).all() and np.ptp(ratio) > 0


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_rrelu_inference_parity(dtype, rng):
    """At inference RReLU is the function ``rrelu`` (whose gradient parity is tested above) and keeps nothing."""
    x = away(rng.normal(size=(4, 5)), (0,)).astype(dtype)
    layer = layers.RReLU(0.1, 0.4)
    assert_close(layer(x), F.rrelu(tensor(x), 0.1, 0.4, training=False), dtype, "RReLU inference")
    assert layer._cache is None


@requires_torch
def test_torch_hardsigmoid_backward_is_float32_rounded(rng):
    """Why the hard_sigmoid parity takes torch's gradient from ``relu6(t + 3) / 6``: torch's float64
    kernel multiplies by ``1.0f / 6.0f``; fusenet's gradient is the exact 1/6."""
    x = rng.uniform(-2.5, 2.5, size=(20,))
    xt = tensor(x, requires_grad=True)
    F.hardsigmoid(xt).backward(torch.ones(20, dtype=torch.float64))
    np.testing.assert_array_equal(xt.grad.numpy(), np.full(20, float(np.float32(1.0 / 6.0))))
    np.testing.assert_array_equal(A.HardSigmoid().backward(x, None, np.ones(20)), np.full(20, 1.0 / 6.0))


def test_rrelu_seeded_and_fresh_draws(rng):
    x = -np.ones((3, 50))
    a = layers.RReLU(seed=2)(x, training=True)
    b = layers.RReLU(seed=2)(x, training=True)
    np.testing.assert_array_equal(a, b)
    layer = layers.RReLU(seed=2)
    assert not np.array_equal(layer(x, training=True), layer(x, training=True))
    np.testing.assert_allclose(layers.RReLU()(x), -(1 / 8 + 1 / 3) / 2 * np.ones_like(x), rtol=1e-6)


def test_prelu_weights_and_alpha_gradient(rng):
    layer = layers.PReLU(shared_axes=[1, 2])
    x = away(rng.normal(size=(2, 3, 4, 5)), (0,))
    layer(x, training=True)
    assert [w.shape for w in layer.get_weights()] == [(1, 1, 5)] and not layer.params["alpha"].any()
    layer.backward(np.ones_like(x))
    np.testing.assert_allclose(layer.grads["alpha"], np.minimum(x, 0).sum(axis=(0, 1, 2), keepdims=True)[0])
    with pytest.raises(ValueError, match=r"layer 'p_re_lu.*' \(PReLU\).*expected axis 3 of input shape to have value 5"):
        layer(np.ones((2, 3, 4, 6)))
    assert layers.PReLU(shared_axes=2).shared_axes == [2]


def test_layer_dtype_and_inference_cache(rng):
    layer = layers.GELU()
    x = rng.normal(size=(2, 3)).astype(np.float32)
    assert layer(x).dtype == np.float32
    assert layers.Softmax()(x.astype(np.float64)).dtype == np.float64
    layer(x, training=True)
    layer(x, training=False)
    assert layer._cache is None
    with pytest.raises(BackwardBeforeForwardError, match=r"\(GELU\): backward\(\) was called without"):
        layer.backward(np.ones((2, 3)))


def test_activation_layer_config():
    layer = layers.Activation(A.Softmax(axis=(0, 1)), name="act")
    assert layer.get_config()["activation"] == {"class_name": "softmax", "config": {"axis": [0, 1]}}
    clone = layers.deserialize(layers.serialize(layer))
    assert clone.activation == layer.activation
    assert layers.Activation("relu").get_config()["activation"] == "relu"
    assert layers.Activation(A.ReLU(max_value=6)).get_config()["activation"] == {
        "class_name": "relu", "config": {"max_value": 6.0}}
    assert layers.Dense(2, activation="gelu").get_config()["activation"] == "gelu"
    assert layers.Activation("glu").compute_output_shape((None, 4, 6)) == (None, 4, 3)
    assert layers.GLU(axis=1).compute_output_shape((None, 4, 6)) == (None, 2, 6)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.ReLU(max_value=-1), ValueError, r"\(ReLU\): expected max_value >= 0.0. Received: max_value=-1"),
        (lambda: layers.ReLU(negative_slope=-0.1), ValueError, r"\(ReLU\).*Received: negative_slope=-0.1"),
        (lambda: layers.ReLU(threshold=-1), ValueError, r"\(ReLU\).*Received: threshold=-1"),
        (lambda: layers.LeakyReLU(negative_slope=-1), ValueError, r"\(LeakyReLU\).*Received: negative_slope=-1"),
        (lambda: layers.ELU(alpha=float("inf")), ValueError, r"\(ELU\).*Received: alpha=inf"),
        (lambda: layers.CELU(alpha=-1), ValueError, r"\(CELU\): expected alpha > 0.0. Received: alpha=-1"),
        (lambda: layers.RReLU(0.5, 0.2), ValueError, r"\(RReLU\): expected lower <= upper. Received: lower=0.5, upper=0.2"),
        (lambda: layers.GELU(approximate="fast"), ValueError, r"\(GELU\).*\['none', 'tanh'\]. Received: approximate='fast'"),
        (lambda: layers.Softplus(beta=-2), ValueError, r"\(Softplus\).*Received: beta=-2"),
        (lambda: layers.Hardtanh(1, 0), ValueError, r"\(Hardtanh\).*Received: min_val=1, max_val=0"),
        (lambda: layers.Hardshrink(-1), ValueError, r"\(Hardshrink\): expected lambd >= 0.0. Received: lambd=-1"),
        (lambda: layers.Softshrink(-1), ValueError, r"\(Softshrink\).*Received: lambd=-1"),
        (lambda: layers.Threshold("a", 0), TypeError, r"\(Threshold\).*Received: threshold='a'"),
        (lambda: layers.Softmax(axis="last"), TypeError, r"\(Softmax\).*Received: axis='last'"),
        (lambda: layers.PReLU(shared_axes=[0, 1]), ValueError, r"\(PReLU\).*>= 1.*Received: shared_axes=\[0, 1\]"),
        (lambda: layers.PReLU(shared_axes="1"), TypeError, r"\(PReLU\).*Received: shared_axes='1'"),
        (lambda: layers.Activation("nope"), ValueError, r"Unknown activation: 'nope'. Expected one of"),
        (lambda: layers.RReLU(seed=-1), ValueError, r"Received: seed=-1"),
    ],
)
def test_layer_bad_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "layer, shape, match",
    [
        (lambda: layers.Softmax(axis=3, name="sm"), (2, 3),
         r"layer 'sm' \(Softmax\): axis 3 is out of range for an input of rank 2 \(shape \(2, 3\)\). Received: axis=3"),
        (lambda: layers.Softmax(axis=[1, -3], name="sm2"), (2, 3), r"layer 'sm2' \(Softmax\): axis -3 is out of range"),
        (lambda: layers.LogSoftmax(axis=-4, name="ls"), (2, 3, 4), r"layer 'ls' \(LogSoftmax\): axis -4 is out of range"),
        (lambda: layers.Sparsemax(axis=2, name="sp"), (2, 3), r"layer 'sp' \(Sparsemax\): axis 2 is out of range"),
        (lambda: layers.GLU(name="g"), (2, 3), r"layer 'g' \(GLU\): expected the size of axis -1 to be even"),
        (lambda: layers.Softmax2d(name="s2"), (2, 3), r"layer 's2' \(Softmax2d\).*expected ndim=4"),
        (lambda: layers.PReLU(shared_axes=[3], name="pr"), (2, 3),
         r"layer 'pr' \(PReLU\): shared_axes must be axes of the input \(1 to 1\)"),
    ],
)
def test_layer_input_errors_name_the_layer(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer()(np.ones(shape))


def test_fast_float32_erf_accuracy():
    from scipy import special

    from fusenet.activations._smooth import erf_float32

    grid = np.linspace(-8, 8, 200001).astype(np.float32)
    err = np.abs(erf_float32(grid).astype(np.float64) - special.erf(grid.astype(np.float64)))
    assert err.max() < 5e-7
    assert erf_float32(np.zeros((3, 0), np.float32)).shape == (3, 0)


def test_fast_float32_gelu_accuracy_and_in_place():
    from scipy import special

    from fusenet.activations._smooth import gelu_float32_inplace

    grid = np.concatenate([np.linspace(-12, 12, 200001), [-1e30, -1000.0, -6.0, 6.0, 1000.0, 1e30]]).astype(np.float32)
    exact = grid.astype(np.float64) * special.ndtr(grid.astype(np.float64))
    z = grid.copy()
    y = gelu_float32_inplace(z)
    assert y is z and y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - exact)
    assert err.max() < 1.5e-6 and (err / np.maximum(1.0, np.abs(grid.astype(np.float64)))).max() < 3e-7
    assert y[-6] == 0.0 and y[-5] == 0.0 and y[-1] == np.float32(1e30)
    small = (np.abs(grid) < 1) & (grid != 0)
    assert (err[small] / np.abs(exact[small])).max() < 1e-6
    np.testing.assert_array_equal(A.gelu(grid.reshape(-1, 3)), y.reshape(-1, 3))  # the activation's own float32 path


def test_fast_float32_gelu_derivative_accuracy(rng):
    from scipy import special

    from fusenet.activations._smooth import gelu_grad_float32

    x = np.concatenate([np.linspace(-12, 12, 100001), [-1e30, -1000.0, 1000.0, 1e30]]).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = dy * (special.ndtr(x64) + x64 * np.exp(-0.5 * np.minimum(x64 * x64, 1e4)) / np.sqrt(2 * np.pi))
    g = gelu_grad_float32(x, dy)
    assert g.dtype == np.float32 and g.shape == x.shape
    assert (np.abs(g - exact) / np.maximum(1.0, np.abs(dy))).max() < 5e-7
    np.testing.assert_array_equal(A.GELU().backward(x.reshape(-1, 5), None, dy.reshape(-1, 5)), g.reshape(-1, 5))
