"""fusenet.autodiff tape semantics: higher-order gradients (against torch and finite differences),
persistence, watching, stop_gradient, the DAG and its topological order, to_dot, the Tensor type
and misuse errors."""

import re

import numpy as np
import pytest

import fusenet.autodiff as ad
from tests.gradcheck import assert_gradients_close, numerical_gradient
from tests.parity import assert_close, requires_torch, tensor, torch


# ---------------------------------------------------------------- second order
def _positive(rng, *shape):
    return rng.uniform(0.5, 2.0, size=shape)


SECOND_ORDER = [
    # id, fusenet f(x, w) -> scalar, torch f, shapes of x and w, positive inputs
    ("multiply-exp", lambda x, w: ad.sum(ad.exp(x * w)), lambda x, w: torch.sum(torch.exp(x * w)), (3, 4), (4,), False),
    ("divide-log", lambda x, w: ad.sum(ad.log(x) / w + x / (w * w)), lambda x, w: torch.sum(torch.log(x) / w + x / (w * w)), (3, 4), (3, 1), True),
    ("power-sqrt", lambda x, w: ad.sum(x ** w + ad.sqrt(x * w) + x ** 3), lambda x, w: torch.sum(x ** w + torch.sqrt(x * w) + x ** 3), (2, 3), (2, 3), True),
    ("tanh-sigmoid", lambda x, w: ad.sum(ad.tanh(x) * ad.sigmoid(w - x)), lambda x, w: torch.sum(torch.tanh(x) * torch.sigmoid(w - x)), (4,), (4,), False),
    ("sin-cos-softplus", lambda x, w: ad.sum(ad.sin(x) * ad.cos(w) + ad.softplus(x * w) + ad.log1p(x * x)),
     lambda x, w: torch.sum(torch.sin(x) * torch.cos(w) + torch.nn.functional.softplus(x * w) + torch.log1p(x * x)), (3, 2), (2,), False),
    ("negative-square-subtract", lambda x, w: ad.sum(ad.square(x - w) * -x), lambda x, w: torch.sum(torch.square(x - w) * -x), (2, 3), (3,), False),
    ("matmul-tanh", lambda x, w: ad.sum(ad.tanh(x @ w) ** 2), lambda x, w: torch.sum(torch.tanh(x @ w) ** 2), (3, 4), (4, 2), False),
    ("matmul-batched", lambda x, w: ad.sum(ad.sigmoid(x @ w) * (x @ w)), lambda x, w: torch.sum(torch.sigmoid(x @ w) * (x @ w)), (2, 3, 4), (4, 3), False),
    ("matmul-vector", lambda x, w: ad.sum(ad.exp((x @ w) * 0.3)), lambda x, w: torch.sum(torch.exp((x @ w) * 0.3)), (4,), (4, 3), False),
    ("softmax-logsumexp", lambda x, w: ad.sum(ad.softmax(x * w[0]) * x) + ad.logsumexp(x @ w.T),
     lambda x, w: torch.sum(torch.softmax(x * w[0], -1) * x) + torch.logsumexp((x @ w.T).reshape(-1), 0), (3, 4), (2, 4), False),
    ("log_softmax-mean", lambda x, w: ad.mean(ad.log_softmax(x @ w, axis=0) ** 2),
     lambda x, w: torch.mean(torch.log_softmax(x @ w, 0) ** 2), (3, 4), (4, 2), False),
    ("einsum-reshape", lambda x, w: ad.sum(ad.tanh(ad.einsum("ij,jk->ik", x, w)).reshape(-1) ** 2),
     lambda x, w: torch.sum(torch.tanh(torch.einsum("ij,jk->ik", x, w)).reshape(-1) ** 2), (2, 3), (3, 2), False),
    ("conv2d", lambda x, w: ad.sum(ad.tanh(ad.conv2d(x, w, padding="same"))),
     lambda x, w: torch.sum(torch.tanh(torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1), padding=1))),
     (1, 4, 4, 2), (3, 3, 2, 2), False),
]


def _second_order(fn, x, w, vx, vw):
    """``H @ (vx, vw)`` of the scalar ``fn`` via nested tapes; also returns the first gradients."""
    xt, wt = ad.Tensor(x), ad.Tensor(w)
    with ad.GradientTape() as outer:
        outer.watch([xt, wt])
        with ad.GradientTape() as inner:
            inner.watch([xt, wt])
            y = fn(xt, wt)
        gx, gw = inner.gradient(y, [xt, wt])
        z = ad.sum(gx * vx) + ad.sum(gw * vw)
    hx, hw = outer.gradient(z, [xt, wt])
    return y, (gx, gw), (hx, hw)


def _inputs(rng, sx, sw, positive):
    make = (lambda *s: _positive(rng, *s)) if positive else (lambda *s: rng.normal(size=s))
    return make(*sx), make(*sw), rng.normal(size=sx), rng.normal(size=sw)


@requires_torch
@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c[0])
def test_second_order_matches_torch(case, rng):
    _, fn, tfn, sx, sw, positive = case
    x, w, vx, vw = _inputs(rng, sx, sw, positive)
    y, (gx, gw), (hx, hw) = _second_order(fn, x, w, vx, vw)
    xt, wt = tensor(x, True), tensor(w, True)
    yt = tfn(xt, wt)
    gxt, gwt = torch.autograd.grad(yt, [xt, wt], create_graph=True)
    zt = torch.sum(gxt * tensor(vx)) + torch.sum(gwt * tensor(vw))
    hxt, hwt = torch.autograd.grad(zt, [xt, wt])
    assert_close(np.asarray(y), yt, np.float64, "value")
    assert_close(np.asarray(gx), gxt, np.float64, "d/dx")
    assert_close(np.asarray(gw), gwt, np.float64, "d/dw")
    assert_close(np.asarray(hx), hxt, np.float64, "H_x v")
    assert_close(np.asarray(hw), hwt, np.float64, "H_w v")


@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c[0])
def test_second_order_matches_finite_differences(case, rng):
    _, fn, _, sx, sw, positive = case
    x, w, vx, vw = _inputs(rng, sx, sw, positive)
    _, _, (hx, hw) = _second_order(fn, x, w, vx, vw)

    def directional_first():
        xt, wt = ad.Tensor(x), ad.Tensor(w)
        with ad.GradientTape() as tape:
            tape.watch([xt, wt])
            y = fn(xt, wt)
        gx, gw = tape.gradient(y, [xt, wt])
        return float(np.sum(gx.numpy() * vx) + np.sum(gw.numpy() * vw))

    assert_gradients_close(hx.numpy(), numerical_gradient(directional_first, x), "H_x v", tol=1e-6)
    assert_gradients_close(hw.numpy(), numerical_gradient(directional_first, w), "H_w v", tol=1e-6)


def test_third_order_of_a_polynomial():
    x = ad.Tensor(np.array([1.0, 2.0, -3.0]))
    with ad.GradientTape() as t3:
        t3.watch(x)
        with ad.GradientTape() as t2:
            t2.watch(x)
            with ad.GradientTape() as t1:
                t1.watch(x)
                y = ad.sum(x ** 4)
            d1 = t1.gradient(y, x)
            s1 = ad.sum(d1)  # recorded by t2 and t3 (an operation after a tape exits is not recorded by it)
        d2 = t2.gradient(s1, x)
        s2 = ad.sum(d2)
    d3 = t3.gradient(s2, x)
    np.testing.assert_allclose(d1.numpy(), 4 * x.numpy() ** 3)
    np.testing.assert_allclose(d2.numpy(), 12 * x.numpy() ** 2)
    np.testing.assert_allclose(d3.numpy(), 24 * x.numpy())


# ---------------------------------------------------------------- persistence and watching
def test_non_persistent_tape_refuses_a_second_gradient():
    x = ad.Variable(np.array([1.0, 2.0]))
    with ad.GradientTape() as tape:
        y = ad.sum(x * x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [2.0, 4.0])
    with pytest.raises(ad.TapeUsageError, match=r"a non-persistent GradientTape can compute only one set of gradients.*persistent=True"):
        tape.gradient(y, x)
    with pytest.raises(ad.TapeUsageError, match=r"GradientTape.graph: a non-persistent GradientTape"):
        tape.graph()


def test_a_released_tape_stops_recording():
    x = ad.Variable(np.array([1.0, 2.0]))
    with ad.GradientTape() as tape:
        y = ad.sum(x * x)
        tape.gradient(y, x)
        z = x * 3.0
    assert tape._nodes == [] and z.shape == (2,)
    with pytest.raises(ad.TapeUsageError, match=r"GradientTape.watch: a non-persistent GradientTape"):
        tape.watch(x)


def test_persistent_tape_gives_several_gradients():
    x = ad.Variable(np.array([1.0, 2.0, 3.0]))
    with ad.GradientTape(persistent=True) as tape:
        y = x * x
        z = ad.sum(y * y)
        s = ad.sum(y)
    np.testing.assert_allclose(tape.gradient(z, x).numpy(), 4 * x.numpy() ** 3)
    np.testing.assert_allclose(tape.gradient(z, y).numpy(), 2 * y.numpy())
    np.testing.assert_allclose(tape.gradient(s, x).numpy(), 2 * x.numpy())
    assert tape.gradient(ad.sum(y * 3.0), x) is None  # recorded after the tape exited: a constant to it
    tape.reset()
    assert tape.gradient(z, x) is None


def test_watch_and_accessed_variables():
    t = ad.Tensor(np.array([1.0, 2.0]))
    v = ad.Variable(np.array([3.0, 4.0]))
    frozen = ad.Variable(np.array([1.0, 1.0]), trainable=False)
    with ad.GradientTape(persistent=True) as tape:
        y = ad.sum(t * v * frozen)
    assert tape.gradient(y, t) is None  # a Tensor is followed only when watched
    np.testing.assert_allclose(tape.gradient(y, v).numpy(), [1.0, 2.0])
    assert tape.gradient(y, frozen) is None
    assert tape.watched_variables() == [v] or tape.watched_variables()[0] is v
    with ad.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(t)
        y = ad.sum(t * v)
    gt, gv = tape.gradient(y, [t, v])
    np.testing.assert_allclose(gt.numpy(), v.numpy())
    assert gv is None
    with ad.GradientTape() as tape:
        tape.watch([frozen])
        y = ad.sum(frozen * 2.0)
    np.testing.assert_allclose(tape.gradient(y, frozen).numpy(), [2.0, 2.0])


def test_unconnected_sources_are_none_or_zero():
    a, b = ad.Variable(np.ones(3)), ad.Variable(np.ones((2, 2)))
    never_seen = ad.Variable(np.ones(4))
    with ad.GradientTape(persistent=True) as tape:
        y = ad.sum(a * 2.0)
        _ = b * 3.0
    assert tape.gradient(y, [a, b, never_seen])[1:] == [None, None]
    ga, gb, gn = tape.gradient(y, [a, b, never_seen], unconnected_gradients="zero")
    np.testing.assert_array_equal(gb.numpy(), np.zeros((2, 2)))
    np.testing.assert_array_equal(gn.numpy(), np.zeros(4))
    with pytest.raises(ValueError, match=r"unconnected_gradients to be one of \['none', 'zero'\]"):
        tape.gradient(y, a, unconnected_gradients="ignore")


def test_stop_gradient_and_stop_recording():
    x = ad.Variable(np.array([1.0, 2.0]))
    with ad.GradientTape() as tape:
        y = ad.sum(x * ad.stop_gradient(x))  # d/dx = stop(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [1.0, 2.0])
    with ad.GradientTape() as tape:
        a = x * 2.0
        with tape.stop_recording():
            b = a * 3.0  # a constant to the tape
        y = ad.sum(a + b)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [2.0, 2.0])


def test_source_structures_and_several_targets():
    a, b, c = ad.Variable(np.ones(2)), ad.Variable(np.full(3, 2.0)), ad.Variable(np.array(3.0))
    with ad.GradientTape(persistent=True) as tape:
        y1 = ad.sum(a) * c
        y2 = ad.sum(b * b)
    grads = tape.gradient(y1, {"a": a, "rest": [c, (b,)]})
    assert set(grads) == {"a", "rest"} and isinstance(grads["rest"][1], tuple)
    np.testing.assert_allclose(grads["a"].numpy(), [3.0, 3.0])
    np.testing.assert_allclose(grads["rest"][0].numpy(), 2.0)
    assert grads["rest"][1][0] is None
    ga, gb = tape.gradient([y1, y2], [a, b])  # several targets: gradients add
    np.testing.assert_allclose(ga.numpy(), [3.0, 3.0])
    np.testing.assert_allclose(gb.numpy(), [4.0, 4.0, 4.0])


def test_output_gradients_and_a_target_that_is_a_source():
    x = ad.Variable(np.array([[1.0, 2.0], [3.0, 4.0]]))
    with ad.GradientTape(persistent=True) as tape:
        y = x * x
    up = np.array([[1.0, 0.0], [2.0, -1.0]])
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=up).numpy(), 2 * x.numpy() * up)
    np.testing.assert_allclose(tape.gradient(y, y, output_gradients=up).numpy(), up)


def test_parameter_arrays_as_sources_share_memory_with_variables():
    arr = np.array([1.0, 2.0, 3.0])
    v = ad.Variable(arr)
    assert v.numpy() is arr
    other = ad.Variable(arr)  # a second Variable on the same memory
    with ad.GradientTape() as tape:
        y = ad.sum(v * 2.0) + ad.sum(other * other)
    g_arr, g_v = tape.gradient(y, [arr, v])[0], None
    np.testing.assert_allclose(np.asarray(g_arr), 2.0 + 2 * arr)
    v.assign_sub(np.asarray(g_arr) * 0.1)  # in place: arr changes too
    np.testing.assert_allclose(arr, [1.0, 2.0, 3.0] - 0.1 * (2.0 + 2 * np.array([1.0, 2.0, 3.0])))
    assert g_v is None


def test_assigning_a_used_variable_makes_its_gradient_raise():
    v = ad.Variable(np.array([1.0, 2.0]), name="w")
    with ad.GradientTape() as tape:
        y = ad.sum(v * v)
    v.assign([5.0, 5.0])
    with pytest.raises(ad.TapeUsageError, match=r"Variable w \(shape \(2,\)\) was assigned after operation 'multiply' used it"):
        tape.gradient(y, v)


def test_only_assigning_a_used_variable_after_recording_matters():
    v, w = ad.Variable(np.array([1.0, 2.0])), ad.Variable(np.array([3.0]))
    v.assign([2.0, 3.0])  # before recording: the node uses the new value
    with ad.GradientTape(persistent=True) as tape:
        y = ad.sum(v * v)
    w.assign([4.0])  # another Variable: no effect on y's gradient
    np.testing.assert_allclose(tape.gradient(y, v).numpy(), [4.0, 6.0])
    v.assign_add([1.0, 1.0])
    with pytest.raises(ad.TapeUsageError, match=r"Variable <unnamed> \(shape \(2,\)\) was assigned after operation"):
        tape.gradient(y, v)


def test_the_gradient_of_a_scalar_target_with_respect_to_itself_is_a_fresh_array():
    x = ad.Variable(np.array(2.0))
    with ad.GradientTape(persistent=True) as tape:
        y = x * x
    g = tape.gradient(y, y).numpy()
    assert g == 1.0 and g.flags.writeable
    g[...] = 5.0  # the caller owns it: later gradients are unaffected
    assert tape.gradient(y, y).numpy() == 1.0 and tape.gradient(y, x).numpy() == 4.0


def test_deep_chain_has_no_recursion_limit():
    x = ad.Variable(np.array([0.5]))
    with ad.GradientTape() as tape:
        y = x
        for _ in range(5000):
            y = y * 1.0001 + 0.0
        total = ad.sum(y)
    g = tape.gradient(total, x)
    np.testing.assert_allclose(g.numpy(), [1.0001 ** 5000], rtol=1e-10)


# ---------------------------------------------------------------- the graph
def test_graph_topological_order_and_dot():
    x = ad.Tensor(np.ones((2, 3)), name="x")
    w = ad.Variable(np.ones((3, 4)), name="w")
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = ad.relu(x @ w)
        y = ad.sum(h * h + h)  # a diamond: h feeds two branches
    graph = tape.graph()
    order = graph.topological_order()
    assert [n.op for n in order][0] == "matmul" and order[-1].op == "sum" and len(graph) == 5
    position = {id(n): i for i, n in enumerate(order)}
    producer = {id(t): n for n in order for t in n.outputs}
    for node in order:
        for t in node.inputs:
            if id(t) in producer:
                assert position[id(producer[id(t)])] < position[id(node)]
    dot = graph.to_dot()
    assert dot.startswith("digraph tape {") and dot.rstrip().endswith("}")
    assert re.search(r'label="x\\n\(2, 3\) float64", shape=ellipse, tooltip="Tensor", style=filled', dot)
    assert re.search(r'label="w\\n\(3, 4\) float64", shape=ellipse, tooltip="Variable", style=filled', dot)
    for op in ("matmul", "relu", "multiply", "add", "sum"):
        assert f'label="{op}' in dot
    edges = re.findall(r"^  (\w+) -> (\w+);$", dot, flags=re.M)
    assert len(edges) == sum(len(n.inputs) + len(n.outputs) for n in order)
    assert tape.gradient(y, w) is not None


def test_topological_order_of_an_out_of_order_node_list():
    a = ad.Variable(np.ones(2))
    with ad.GradientTape() as tape:
        b = a * 2.0
        c = ad.exp(b)
        d = b + c
    nodes = tape.graph().nodes
    shuffled = ad.Graph(list(reversed(nodes)), [a])
    assert [n.op for n in shuffled.topological_order()] == ["multiply", "exp", "add"]
    assert d.shape == (2,)


# ---------------------------------------------------------------- the Tensor type
def test_tensor_dtypes_and_attributes(rng):
    assert ad.Tensor([1, 2, 3]).dtype == np.float32
    assert ad.Tensor(2.5).dtype == np.float32
    assert ad.Tensor([1.0], dtype="float64").dtype == np.float64
    arr64 = rng.normal(size=(2, 3))
    t = ad.Tensor(arr64)
    assert t.numpy() is arr64 and t.dtype == np.float64 and t.shape == (2, 3) and t.ndim == 2 and t.size == 6
    assert ad.Tensor(np.arange(3)).dtype == np.int64
    assert ad.Variable([1, 2]).dtype == np.float32 and ad.Variable(np.arange(2)).dtype == np.float32
    assert ad.Variable(np.ones(2, np.float32), dtype="float64").dtype == np.float64
    assert t.T.shape == (3, 2) and len(t) == 2 and [r.shape for r in t] == [(3,), (3,)]
    assert float(ad.Tensor(np.array([1.5]))[0]) == 1.5 and ad.Tensor(np.array(2.0)).item() == 2.0
    assert np.asarray(t) is arr64 and "shape=(2, 3)" in repr(t) and "trainable=True" in repr(ad.Variable(arr64))
    assert (ad.Tensor(np.ones((2, 3), np.float32)) * 2.0).dtype == np.float32
    assert (ad.Tensor(np.ones(2, np.float32)) + np.ones(2)).dtype == np.float64
    with pytest.raises(TypeError, match=r"Tensor: expected a numeric value \(bool, int or float\). Received: an array of dtype <U1"):
        ad.Tensor(np.array(["a"]))
    with pytest.raises(TypeError, match=r"Variable: expected a float dtype such as 'float32' or 'float64'. Received: dtype='int32'"):
        ad.Variable([1.0], dtype="int32")
    with pytest.raises(ValueError, match=r"Variable.assign: expected a value that broadcasts to the variable's shape \(2,\)"):
        ad.Variable(np.ones(2)).assign(np.ones(3))


# ---------------------------------------------------------------- misuse
def test_non_scalar_target_needs_output_gradients():
    x = ad.Variable(np.ones((3, 2)))
    with ad.GradientTape() as tape:
        y = x * 2.0
    with pytest.raises(ValueError, match=r"the target has shape \(3, 2\), which is not a scalar; pass output_gradients"):
        tape.gradient(y, x)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=np.ones((3, 2))).numpy(), np.full((3, 2), 2.0))


def test_misuse_errors():
    x = ad.Variable(np.ones(3))
    with ad.GradientTape(persistent=True) as tape:
        y = ad.sum(x)
        with pytest.raises(ad.TapeUsageError, match=r"this tape is already entered"):
            tape.__enter__()
    with pytest.raises(TypeError, match=r"GradientTape.watch: expected a Tensor or Variable .* Received: ndarray"):
        tape.watch(np.ones(3))
    with pytest.raises(TypeError, match=r"expected the target to be a Tensor .* Received: float"):
        tape.gradient(1.0, x)
    with pytest.raises(TypeError, match=r"expected every source to be a Tensor, a Variable or a parameter ndarray .* Received: str"):
        tape.gradient(y, "x")
    with pytest.raises(ValueError, match=r"expected output_gradients shaped like the target. Received: target.shape=\(\), output_gradients.shape=\(2,\)"):
        tape.gradient(y, x, output_gradients=np.ones(2))
    with pytest.raises(TypeError, match=r"GradientTape: expected persistent to be True or False"):
        ad.GradientTape(persistent="yes")
