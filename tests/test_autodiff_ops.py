"""fusenet.autodiff primitives: float64 finite-difference gradients (broadcasting in every argument
position) and parity with torch.autograd (values and gradients, float64 to 1e-10)."""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest

import fusenet.autodiff as ad
from tests.gradcheck import assert_gradients_close, numerical_gradient
from tests.parity import assert_close, requires_torch, tensor, torch

F = torch.nn.functional if torch is not None else None


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, size=shape)


@dataclass
class Case:
    id: str
    fn: Callable
    torch_fn: Optional[Callable]
    inputs: tuple  # one generator per input

    def arrays(self, rng):
        return [np.array(make(rng), dtype=np.float64) for make in self.inputs]


CASES = []


def case(id, fn, torch_fn, *inputs):
    CASES.append(Case(id, fn, torch_fn, inputs))


# ---------------------------------------------------------------- binary element-wise, every broadcast position
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (3, 4)), ((3, 1), (1, 4)), ((2, 1, 4), (3, 1)), ((), (3,)), ((2, 3), ())]
BINARY = [
    ("add", ad.add, lambda a, b: a + b, normal, normal),
    ("subtract", ad.subtract, lambda a, b: a - b, normal, normal),
    ("multiply", ad.multiply, lambda a, b: a * b, normal, normal),
    ("divide", ad.divide, lambda a, b: a / b, normal, positive),
    ("power", ad.power, lambda a, b: a ** b, positive, normal),
    ("maximum", ad.maximum, lambda a, b: torch.maximum(a, b), normal, normal),
    ("minimum", ad.minimum, lambda a, b: torch.minimum(a, b), normal, normal),
]
for name, fn, tfn, left, right in BINARY:
    for sa, sb in BROADCAST_SHAPES:
        case(f"{name}-{sa}-{sb}", fn, tfn, left(*sa), right(*sb))
    case(f"{name}-scalar-right", lambda a, fn=fn: fn(a, 1.5), lambda a, tfn=tfn: tfn(a, torch.tensor(1.5, dtype=a.dtype)), left(3, 2))
    case(f"{name}-scalar-left", lambda b, fn=fn: fn(1.5, b), lambda b, tfn=tfn: tfn(torch.tensor(1.5, dtype=b.dtype), b), right(3, 2))

# operators on Tensors, mixed with arrays
case("operators", lambda a, b, c: (a @ b + c) * 2.0 - a.sum() / 3.0 + (-c) ** 2,
     lambda a, b, c: (a @ b + c) * 2.0 - a.sum() / 3.0 + (-c) ** 2, normal(3, 4), normal(4, 2), normal(2))
case("array-left-operators", lambda a: np.ones((3, 1)) + a * np.arange(2.0) - np.full(2, 0.5) / (a ** 2 + 1.0),
     lambda a: torch.ones(3, 1, dtype=a.dtype) + a * torch.arange(2.0, dtype=a.dtype) - torch.full((2,), 0.5, dtype=a.dtype) / (a ** 2 + 1.0),
     normal(3, 2))
case("ufunc-dispatch", lambda a: np.exp(a) + np.maximum(a, 0.1) * np.tanh(a), lambda a: torch.exp(a) + torch.clamp(a, min=0.1) * torch.tanh(a), normal(3, 3))

# ---------------------------------------------------------------- unary element-wise
UNARY = [
    ("negative", ad.negative, torch.neg if torch else None, normal),
    ("exp", ad.exp, torch.exp if torch else None, normal),
    ("log", ad.log, torch.log if torch else None, positive),
    ("log1p", ad.log1p, torch.log1p if torch else None, positive),
    ("sqrt", ad.sqrt, torch.sqrt if torch else None, positive),
    ("abs", ad.abs, torch.abs if torch else None, normal),
    ("sin", ad.sin, torch.sin if torch else None, normal),
    ("cos", ad.cos, torch.cos if torch else None, normal),
    ("square", ad.square, torch.square if torch else None, normal),
    ("relu", ad.relu, torch.relu if torch else None, normal),
    ("sigmoid", ad.sigmoid, torch.sigmoid if torch else None, lambda *s: (lambda rng: 4 * rng.normal(size=s))),
    ("tanh", ad.tanh, torch.tanh if torch else None, normal),
    ("softplus", ad.softplus, F.softplus if torch else None, lambda *s: (lambda rng: 4 * rng.normal(size=s))),
]
for name, fn, tfn, dom in UNARY:
    case(name, fn, tfn, dom(3, 4))
case("clip", lambda a: ad.clip(a, -0.5, 0.7), lambda a: torch.clamp(a, -0.5, 0.7), normal(4, 5))
case("clip-lo-only", lambda a: ad.clip(a, lo=0.0), lambda a: torch.clamp(a, min=0.0), normal(4, 5))
case("clip-tensor-bound", lambda a, lo: ad.clip(a, lo, 1.0), lambda a, lo: torch.clamp(torch.maximum(a, lo), max=1.0), normal(3, 4), normal(4))

MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])
case("where", lambda a, b: ad.where(MASK, a, b), lambda a, b: torch.where(torch.from_numpy(MASK), a, b), normal(3, 4), normal(3, 4))
case("where-broadcast", lambda a, b: ad.where(MASK, a, b), lambda a, b: torch.where(torch.from_numpy(MASK), a, b), normal(4), normal(3, 1))
case("where-condition-broadcast", lambda a, b: ad.where(MASK[:, :1], a, b), lambda a, b: torch.where(torch.from_numpy(MASK[:, :1]), a, b), normal(1, 4), normal(3, 4))
case("clip-array-bounds", lambda a: ad.clip(a, np.array([-0.5, 0.0, -1.0]), np.array([0.5, 1.0, 0.2])),
     lambda a: torch.clamp(a, torch.tensor([-0.5, 0.0, -1.0], dtype=a.dtype), torch.tensor([0.5, 1.0, 0.2], dtype=a.dtype)), normal(4, 3))
case("where-scalar", lambda a: ad.where(MASK, a, 0.0), lambda a: torch.where(torch.from_numpy(MASK), a, torch.zeros((), dtype=a.dtype)), normal(3, 4))

# ---------------------------------------------------------------- reductions and normalisations
for axis, keep in [(None, False), (0, False), ((0, 2), True), (-1, False)]:
    dims = None if axis is None else axis
    case(f"sum-{axis}-{keep}", lambda a, axis=axis, keep=keep: ad.sum(a, axis=axis, keepdims=keep),
         lambda a, dims=dims, keep=keep: a.sum() if dims is None else torch.sum(a, dim=dims, keepdim=keep), normal(2, 3, 4))
    case(f"mean-{axis}-{keep}", lambda a, axis=axis, keep=keep: ad.mean(a, axis=axis, keepdims=keep),
         lambda a, dims=dims, keep=keep: a.mean() if dims is None else torch.mean(a, dim=dims, keepdim=keep), normal(2, 3, 4))
case("max-axis", lambda a: ad.max(a, axis=1), lambda a: torch.max(a, dim=1).values, normal(3, 5, 2))
case("max-all", lambda a: ad.max(a), lambda a: torch.max(a), normal(3, 4))
case("max-axes-keepdims", lambda a: ad.max(a, axis=(0, 2), keepdims=True), lambda a: torch.amax(a, dim=(0, 2), keepdim=True), normal(3, 2, 4))
case("min-axis", lambda a: ad.min(a, axis=0, keepdims=True), lambda a: torch.min(a, dim=0, keepdim=True).values, normal(4, 3))
case("logsumexp-last", lambda a: ad.logsumexp(a, axis=-1), lambda a: torch.logsumexp(a, dim=-1), normal(3, 5))
case("logsumexp-all-keep", lambda a: ad.logsumexp(a, keepdims=True), lambda a: torch.logsumexp(a.reshape(-1), 0).reshape(1, 1), normal(3, 5))
case("softmax-last", lambda a: ad.softmax(a), lambda a: torch.softmax(a, -1), normal(3, 5))
case("softmax-axis0", lambda a: ad.softmax(a, axis=0), lambda a: torch.softmax(a, 0), normal(4, 3))
case("log_softmax", lambda a: ad.log_softmax(a, axis=1), lambda a: torch.log_softmax(a, 1), normal(2, 5, 3))

# ---------------------------------------------------------------- shapes
case("reshape", lambda a: ad.reshape(a, (4, -1)) * np.arange(6.0), lambda a: a.reshape(4, -1) * torch.arange(6.0, dtype=a.dtype), normal(2, 3, 4))
case("transpose", lambda a: ad.transpose(a, (2, 0, 1)), lambda a: a.permute(2, 0, 1), normal(2, 3, 4))
case("transpose-T", lambda a: a.T, lambda a: a.permute(2, 1, 0), normal(2, 3, 4))
case("swapaxes", lambda a: ad.swapaxes(a, 0, -1), lambda a: a.transpose(0, -1), normal(2, 3, 4))
case("expand_dims", lambda a: ad.expand_dims(a, (0, 2)) * np.ones((2, 1, 1, 1)), lambda a: a[None, :, None] * torch.ones(2, 1, 1, 1, dtype=a.dtype), normal(3, 4))
case("squeeze", lambda a: ad.squeeze(a, axis=1), lambda a: a.squeeze(1), normal(3, 1, 4, 1))
case("squeeze-all", lambda a: ad.squeeze(a), lambda a: a.squeeze(), normal(3, 1, 4, 1))
case("broadcast_to", lambda a: ad.broadcast_to(a, (2, 3, 4)), lambda a: a.expand(2, 3, 4), normal(3, 1))
case("concatenate", lambda a, b, c: ad.concatenate([a, b, c], axis=1), lambda a, b, c: torch.cat([a, b, c], 1), normal(2, 1, 3), normal(2, 4, 3), normal(2, 2, 3))
case("stack", lambda a, b: ad.stack([a, b], axis=1), lambda a, b: torch.stack([a, b], 1), normal(3, 4), normal(3, 4))
case("split", lambda a: ad.concatenate([p * (k + 1.0) for k, p in enumerate(ad.split(a, [1, 3], axis=1))], axis=1),
     lambda a: torch.cat([p * (k + 1.0) for k, p in enumerate(torch.split(a, [1, 2, 2], dim=1))], 1), normal(3, 5))
case("split-sections", lambda a: ad.stack(ad.split(a, 2, axis=0), axis=-1), lambda a: torch.stack(torch.split(a, 2, dim=0), -1), normal(4, 3))
case("pad", lambda a: ad.pad(a, ((1, 2), (0, 3)), constant_values=0.5), lambda a: F.pad(a, (0, 3, 1, 2), value=0.5), normal(3, 4))

# ---------------------------------------------------------------- indexing
IDS = np.array([2, 0, 2, 3, 2])
case("getitem-basic", lambda a: a[1:, ::2, None, -1], lambda a: a[1:, ::2, None, -1], normal(3, 5, 4))
case("getitem-int-ellipsis", lambda a: a[..., 1] + a[0], lambda a: a[..., 1] + a[0], normal(4, 4))
case("getitem-negative-step", lambda a: a[::-1, 1:4:2], lambda a: a.flip(0)[:, 1:4:2], normal(3, 5))
case("getitem-rows-repeats", lambda a: a[IDS], lambda a: a[torch.from_numpy(IDS)], normal(4, 3))
case("getitem-rows-2d-ids", lambda a: a[np.array([[0, 1], [1, 1]])], lambda a: a[torch.tensor([[0, 1], [1, 1]])], normal(3, 2))
case("getitem-mask", lambda a: a[MASK], lambda a: a[torch.from_numpy(MASK)], normal(3, 4))
case("getitem-advanced-mixed", lambda a: a[:, IDS], lambda a: a[:, torch.from_numpy(IDS)], normal(3, 4))
case("getitem-advanced-pairs", lambda a: a[np.array([0, 2, 0]), np.array([1, 1, 1])], lambda a: a[torch.tensor([0, 2, 0]), torch.tensor([1, 1, 1])], normal(3, 2))
case("getitem-tensor-index", lambda a: a[ad.Tensor(IDS)], lambda a: a[torch.from_numpy(IDS)], normal(4, 2))
case("take-axis1", lambda a: ad.take(a, np.array([[1, 0], [1, 1]]), axis=1), lambda a: a[:, torch.tensor([[1, 0], [1, 1]])], normal(3, 2, 2))
case("take-negative", lambda a: ad.take(a, np.array([-1, 0, -1])), lambda a: a[torch.tensor([2, 0, 2])], normal(3, 4))

# ---------------------------------------------------------------- products
case("matmul", ad.matmul, torch.matmul if torch else None, normal(3, 4), normal(4, 2))
case("matmul-batched", ad.matmul, torch.matmul if torch else None, normal(2, 3, 4), normal(2, 4, 5))
case("matmul-batch-broadcast", ad.matmul, torch.matmul if torch else None, normal(2, 1, 3, 4), normal(3, 4, 2))
case("matmul-batch-left", ad.matmul, torch.matmul if torch else None, normal(3, 4), normal(2, 4, 5))
case("matmul-vector-left", ad.matmul, torch.matmul if torch else None, normal(4), normal(2, 4, 3))
case("matmul-vector-right", ad.matmul, torch.matmul if torch else None, normal(2, 3, 4), normal(4))
case("matmul-dot", ad.matmul, torch.matmul if torch else None, normal(4), normal(4))
case("einsum-matmul", lambda a, b: ad.einsum("ij,jk->ik", a, b), lambda a, b: torch.einsum("ij,jk->ik", a, b), normal(3, 4), normal(4, 2))
case("einsum-batched", lambda a, b: ad.einsum("bij,bjk->bik", a, b), lambda a, b: torch.einsum("bij,bjk->bik", a, b), normal(2, 3, 4), normal(2, 4, 2))
case("einsum-implicit", lambda a, b: ad.einsum("ij,jk", a, b), lambda a, b: torch.einsum("ij,jk", a, b), normal(3, 4), normal(4, 2))
case("einsum-ellipsis-broadcast", lambda a, b: ad.einsum("...ij,...jk->...ik", a, b), lambda a, b: torch.einsum("...ij,...jk->...ik", a, b), normal(2, 3, 4), normal(4, 5))
case("einsum-outer", lambda a, b: ad.einsum("i,j->ij", a, b), lambda a, b: torch.einsum("i,j->ij", a, b), normal(3), normal(4))
case("einsum-trace-diag", lambda a: ad.einsum("ii->i", a) + ad.einsum("ii", a), lambda a: torch.einsum("ii->i", a) + torch.einsum("ii", a), normal(3, 3))
case("einsum-sum-out", lambda a: ad.einsum("ijk->kj", a), lambda a: torch.einsum("ijk->kj", a), normal(2, 3, 4))
case("einsum-three", lambda a, b, c: ad.einsum("ij,jk,kl->il", a, b, c), lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c), normal(2, 3), normal(3, 4), normal(4, 2))
case("einsum-label-broadcast", lambda a, b: ad.einsum("ij,ij->i", a, b), None, normal(3, 4), normal(1, 4))
case("einsum-attention", lambda q, k: ad.einsum("bqhd,bkhd->bhqk", q, k), lambda q, k: torch.einsum("bqhd,bkhd->bhqk", q, k), normal(2, 3, 2, 2), normal(2, 4, 2, 2))


def _torch_conv(x, k, strides, padding, dilation):
    kh, kw = k.shape[:2]
    pads = []
    for n, kk, s, d in zip(x.shape[1:3], (kh, kw), strides, dilation):
        if padding == "same":
            out = -(-n // s)
            total = max((out - 1) * s + (kk - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append((0, 0))
    xt = F.pad(x.permute(0, 3, 1, 2), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    y = F.conv2d(xt, k.permute(3, 2, 0, 1), stride=strides, dilation=dilation)
    return y.permute(0, 2, 3, 1)


for strides, padding, dilation, ks in [((1, 1), "valid", (1, 1), (3, 3)), ((2, 2), "same", (1, 1), (3, 3)),
                                       ((1, 1), "valid", (2, 2), (2, 2)), ((2, 1), "same", (1, 1), (2, 3))]:
    case(f"conv2d-{strides}-{padding}-{dilation}-{ks}",
         lambda x, k, s=strides, p=padding, d=dilation: ad.conv2d(x, k, strides=s, padding=p, dilation_rate=d),
         lambda x, k, s=strides, p=padding, d=dilation: _torch_conv(x, k, s, p, d), normal(2, 5, 6, 2), normal(*ks, 2, 3))


# ---------------------------------------------------------------- helpers
def tape_gradients(fn, arrays, seed=0):
    ts = [ad.Tensor(a) for a in arrays]
    with ad.GradientTape() as tape:
        tape.watch(ts)
        y = fn(*ts)
    r = np.random.default_rng(seed).normal(size=y.shape)
    grads = tape.gradient(y, ts, output_gradients=r)
    return y, r, grads


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(c, rng):
    arrays = c.arrays(rng)
    y, r, grads = tape_gradients(c.fn, arrays)
    assert y.dtype == np.float64
    for i, (a, g) in enumerate(zip(arrays, grads)):
        num = numerical_gradient(lambda: float(np.sum(np.asarray(c.fn(*[ad.Tensor(b) for b in arrays])) * r)), a)
        assert g is not None, f"{c.id}: no gradient for input {i}"
        assert g.shape == a.shape and g.dtype == np.float64
        assert_gradients_close(np.asarray(g), num, f"{c.id} d/d(input {i})")


@requires_torch
@pytest.mark.parametrize("c", [c for c in CASES if c.torch_fn is not None], ids=lambda c: c.id)
def test_matches_torch_autograd(c, rng):
    arrays = c.arrays(rng)
    y, r, grads = tape_gradients(c.fn, arrays)
    tts = [tensor(a, requires_grad=True) for a in arrays]
    yt = c.torch_fn(*tts)
    assert_close(np.asarray(y), yt, np.float64, f"{c.id} value")
    yt.backward(tensor(r))
    for i, (g, tt) in enumerate(zip(grads, tts)):
        assert_close(np.asarray(g), tt.grad, np.float64, f"{c.id} d/d(input {i})")


# ---------------------------------------------------------------- dtypes and numerics
@pytest.mark.parametrize("c", [c for c in CASES if c.id.split("-")[0] in ("add", "matmul", "softmax", "conv2d", "getitem", "einsum", "sigmoid")],
                         ids=lambda c: c.id)
def test_float32_stays_float32(c, rng):
    arrays = [a.astype(np.float32) for a in c.arrays(rng)]
    y, r, grads = tape_gradients(c.fn, arrays)
    assert y.dtype == np.float32
    for g in grads:
        assert g.dtype == np.float32


@requires_torch
def test_float32_parity(rng):
    a, b = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    fn = lambda x, w: ad.log_softmax(ad.tanh(x @ w) * 3.0, axis=-1)  # noqa: E731
    y, r, (ga, gb) = tape_gradients(fn, [a, b])
    ta, tb = tensor(a, True), tensor(b, True)
    yt = torch.log_softmax(torch.tanh(ta @ tb) * 3.0, -1)
    yt.backward(tensor(r.astype(np.float32)))
    assert_close(np.asarray(y), yt, np.float32)
    assert_close(np.asarray(ga), ta.grad, np.float32)
    assert_close(np.asarray(gb), tb.grad, np.float32)


def test_stable_functions_do_not_overflow():
    x = ad.Tensor(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        s = ad.sigmoid(x)
        sp = ad.softplus(x)
        sm = ad.softmax(x)
        ls = ad.log_softmax(x)
        lse = ad.logsumexp(x)
        total = ad.sum(s) + ad.sum(sp) * 1e-3 + ad.sum(sm * np.arange(5.0)) + ad.sum(ls) * 1e-3 + lse
    np.testing.assert_allclose(s.numpy(), [0.0, 1 / (1 + np.exp(30.0)), 0.5, 1 / (1 + np.exp(-30.0)), 1.0])
    np.testing.assert_allclose(sp.numpy()[[0, 4]], [0.0, 1000.0])
    np.testing.assert_allclose(sm.numpy(), [0, 0, 0, 0, 1], atol=1e-300)
    assert lse.item() == 1000.0
    assert np.isfinite(ls.numpy()).all() and np.isfinite(tape.gradient(total, x).numpy()).all()
    all_neg_inf = ad.logsumexp(ad.Tensor(np.full(3, -np.inf)))
    assert all_neg_inf.item() == -np.inf


def test_max_gradient_goes_to_first_argmax():
    x = ad.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        m = ad.max(x, axis=1)
    np.testing.assert_array_equal(tape.gradient(m, x, output_gradients=np.array([1.0, 2.0])).numpy(), [[0, 1, 0], [2, 0, 0]])


def test_maximum_splits_ties_and_relu_at_zero_is_zero():
    a, b = ad.Tensor(np.array([1.0, 2.0, 3.0])), ad.Tensor(np.array([1.0, 1.0, 4.0]))
    x = ad.Tensor(np.array([-1.0, 0.0, 2.0]))
    with ad.GradientTape(persistent=True) as tape:
        tape.watch([a, b, x])
        m = ad.sum(ad.maximum(a, b))
        r = ad.sum(ad.relu(x))
    ga, gb = tape.gradient(m, [a, b])
    np.testing.assert_array_equal(ga.numpy(), [0.5, 1, 0])
    np.testing.assert_array_equal(gb.numpy(), [0.5, 0, 1])
    np.testing.assert_array_equal(tape.gradient(r, x).numpy(), [0, 0, 1])


def test_indexing_scatter_sums_repeated_rows_of_a_large_table(rng):
    table = ad.Variable(rng.normal(size=(50, 4)))
    ids = rng.integers(0, 50, size=(8, 30))
    with ad.GradientTape() as tape:
        out = ad.sum(table[ids] * 2.0)
    expected = np.zeros((50, 4))
    counts = np.bincount(ids.ravel(), minlength=50)
    expected += 2.0 * counts[:, None]
    np.testing.assert_allclose(tape.gradient(out, table).numpy(), expected)


def test_cast_moves_gradients_between_dtypes(rng):
    x = ad.Variable(rng.normal(size=(3, 2)))
    with ad.GradientTape() as tape:
        y32 = ad.cast(x, "float32")
        out = ad.sum(ad.cast(y32 * np.float32(2.0), np.float64) + x)
    assert y32.dtype == np.float32 and out.dtype == np.float64
    g = tape.gradient(out, x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g.numpy(), np.full((3, 2), 3.0))
    assert ad.cast(x, np.float64) is x


def test_comparisons_return_plain_arrays():
    t = ad.Tensor(np.array([1.0, 2.0, 3.0]))
    for result in (t > 1.5, t <= 2.0, t == 2.0, t != 2.0, t < np.array([2.0, 2.0, 2.0]), t >= 3):
        assert type(result) is np.ndarray and result.dtype == bool
    np.testing.assert_array_equal(t > 1.5, [False, True, True])


# ---------------------------------------------------------------- errors
def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: the last axis of a \(size 3\) must match the second-to-last axis of b "
                                         r"\(size 4\)\. Received: a.shape=\(2, 3\), b.shape=\(4, 5\)"):
        ad.matmul(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"batch axes \(2,\) and \(3,\) do not broadcast"):
        ad.Tensor(np.ones((2, 3, 4))) @ np.ones((3, 4, 5))
    with pytest.raises(ValueError, match=r"rank 1 or more"):
        ad.matmul(np.ones(()), np.ones((3,)))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"add: the operand shapes do not broadcast together\. Received: x.shape=\(2, 3\), y.shape=\(4,\)"):
        ad.Tensor(np.ones((2, 3))) + np.ones(4)
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\)"):
        ad.reshape(np.ones((2, 3)), (4, 2))
    with pytest.raises(ValueError, match=r"squeeze: expected the squeezed axes to have size 1, but axis 0 has size 2"):
        ad.squeeze(np.ones((2, 1)), axis=0)
    with pytest.raises(ValueError, match=r"sum: axis 2 is out of range for a tensor of rank 2"):
        ad.sum(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match=r"concatenate: expected tensors of the same rank"):
        ad.concatenate([np.ones((2, 3)), np.ones((3, 2))], axis=0)
    with pytest.raises(ValueError, match=r"split: expected a number of sections that divides the axis size 5"):
        ad.split(np.ones(5), 2)
    with pytest.raises(ValueError, match=r"einsum: the subscripts name 2 operands, but 1 were given"):
        ad.einsum("ij,jk->ik", np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"conv2d: the input has 3 channels, but the kernel expects 2"):
        ad.conv2d(np.ones((1, 4, 4, 3)), np.ones((3, 3, 2, 4)))
    with pytest.raises(ValueError, match=r"conv2d: expected padding to be one of \['valid', 'same'\]"):
        ad.conv2d(np.ones((1, 4, 4, 2)), np.ones((3, 3, 2, 4)), padding="full")
    with pytest.raises(IndexError, match=r"take: index 3 is out of bounds for axis 0 with size 3"):
        ad.take(np.ones((3, 2)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"clip: expected at least one of lo and hi"):
        ad.clip(np.ones(2))
    with pytest.raises(TypeError, match=r"Tensors are immutable"):
        ad.Tensor(np.ones(2))[0] = 1.0
