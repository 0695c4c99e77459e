"""fusenet.autodiff with fusenet layers and losses: layer calls as tape nodes (gradients equal to the
layers' own backward), the hand-written training step, TapeLayer and TapeLoss (gradient checks,
torch parity, training in fit)."""

import copy
import math

import numpy as np
import pytest

import fusenet.autodiff as ad
import fusenet.autodiff._chain as ad_chain
import fusenet.autodiff.tape as ad_tape
from fusenet import layers, losses, models, optimizers
from fusenet.errors import BackwardBeforeForwardError
from fusenet.layers import base as layer_base
from tests.gradcheck import check_layer_gradients, check_loss_gradient
from tests.parity import assert_close, check_layer_parity, requires_torch, torch


def own_backward(layer, x, dy):
    """Input and parameter gradients of a fresh copy of ``layer`` from its own backward."""
    clone = copy.deepcopy(layer)
    clone.zero_grad()
    clone(x, training=True)
    dx = clone.backward(dy)
    return dx, {k: g.copy() for k, g in clone.grads.items()}


# ---------------------------------------------------------------- one layer call = one node
@pytest.mark.parametrize("make, shape", [
    (lambda: layers.Dense(4, activation="tanh", dtype="float64"), (3, 5)),
    (lambda: layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", dtype="float64"), (2, 6, 5, 2)),
    (lambda: layers.LayerNormalization(dtype="float64"), (2, 3, 4)),
], ids=["Dense", "Conv2D", "LayerNormalization"])
def test_layer_node_gives_the_layers_own_gradients(make, shape, rng):
    layer = make()
    x_arr = rng.normal(size=shape)
    layer(x_arr)  # build
    layer.zero_grad()
    x = ad.Tensor(x_arr)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        r = rng.normal(size=y.shape)
        loss = ad.sum(y * r)
    assert [n.op for n in tape.graph().nodes][0] == f"layer:{layer.name}" and len(tape.graph()) == 3
    names = list(layer.params)
    grads = tape.gradient(loss, [x] + [layer.params[k] for k in names])
    dx, pgrads = own_backward(layer, x_arr, r)
    assert_close(np.asarray(grads[0]), dx, np.float64, "d/dx")
    for k, g in zip(names, grads[1:]):
        assert_close(np.asarray(g), pgrads[k], np.float64, f"d/d{k} (tape result)")
        assert_close(layer.grads[k], pgrads[k], np.float64, f"d/d{k} (layer grads)")


def test_model_gradients_equal_the_layers_backward(rng):
    def build():
        return models.Sequential([
            layers.Input((6, 6, 2)),
            layers.Conv2D(3, 3, activation="relu", dtype="float64"),
            layers.BatchNormalization(dtype="float64"),
            layers.Flatten(),
            layers.Dense(5, activation="tanh", dtype="float64"),
            layers.Dense(2, dtype="float64"),
        ])

    model = build()
    x, y = rng.normal(size=(4, 6, 6, 2)), rng.normal(size=(4, 2))
    model(x)
    reference = build()
    reference(x)
    reference.set_weights(model.get_weights())
    mse = losses.get("mse")
    with ad.GradientTape() as tape:
        loss = ad.call_loss(mse, y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    # the same step by hand through every layer's backward
    out = x
    for layer in reference.layers:
        layer.zero_grad()
        out = layer(out, training=True)
    assert_close(loss.numpy(), mse(y, out), np.float64, "loss")
    dy = mse.gradient(y, out)
    for layer in reversed(reference.layers):
        dy = layer.backward(dy)
    expected = [g for layer in reference.layers for g in layer.grads.values()]
    assert len(grads) == len(expected) == 8
    for i, (g, e) in enumerate(zip(grads, expected)):
        assert_close(np.asarray(g), e, np.float64, f"weight {i}")
    np.testing.assert_array_equal(model.layers[1].state["moving_mean"], reference.layers[1].state["moving_mean"])


def test_handwritten_training_step_matches_train_on_batch(rng):
    def build():
        return models.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu", dtype="float64"),
                                  layers.Dense(3, dtype="float64")])

    a, b = build(), build()
    x, y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    b.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    loss_fn = losses.get("mse")
    opt = optimizers.SGD(learning_rate=0.1)
    for _ in range(3):
        with ad.GradientTape() as tape:
            loss = ad.call_loss(loss_fn, y, a(x, training=True))
        grads = tape.gradient(loss, a.trainable_weights)
        opt.apply_gradients(zip(grads, a.trainable_weights))
        b.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)


def _chain_model(dtypes=("float64", "float64", "float64")):
    return models.Sequential([layers.Input((5,)), layers.Dense(6, activation="tanh", dtype=dtypes[0], seed=1),
                              layers.Dense(4, activation="relu", dtype=dtypes[1], seed=2),
                              layers.Dense(3, dtype=dtypes[2], seed=3)])


def _chain_step(model, x, y, pick, disable):
    """``pick(model, x_tensor) -> sources`` after one recorded step; with ``disable`` the layer-chain
    paths are off (the general reverse pass). Returns the gradients (arrays or None), the layers' grads
    and how often the chain ran the layers' backward."""
    runs = []
    run = ad_chain._run

    def counting(*args):
        runs.append(1)
        return run(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ad_chain, "_run", counting)
        if disable:
            mp.setattr(ad_tape, "_FAST_GRADIENTS", [])
            mp.setattr(ad_tape, "_FAST_BACKPROPS", [])
        for layer in model.layers:  # stale values: a differentiated layer's grads are replaced
            for g in layer.grads.values():
                g.fill(7.0)
        xt = ad.Tensor(x)
        with ad.GradientTape() as tape:
            tape.watch(xt)
            h = xt
            for layer in model.layers:  # (a model call takes arrays: the chain's input would be a copy)
                h = layer(h, training=True)
            loss = ad.call_loss(losses.get("mse"), y, h)
        grads = tape.gradient(loss, pick(model, xt))
    own = [g.copy() for layer in model.layers for g in layer.grads.values()]
    return [None if g is None else np.array(g) for g in grads], own, len(runs)


@pytest.mark.parametrize("case", ["trainable_weights", "last_kernel", "middle_layer", "input_and_weights"])
@pytest.mark.parametrize("dtypes", [("float64",) * 3, ("float64", "float32", "float64")], ids=["float64", "mixed"])
def test_layer_chain_gradient_equals_the_general_pass(case, dtypes, rng):
    picks = {
        "trainable_weights": lambda m, xt: m.trainable_weights,
        "last_kernel": lambda m, xt: [m.layers[2].params["kernel"]],
        "middle_layer": lambda m, xt: list(m.layers[1].params.values()),
        "input_and_weights": lambda m, xt: [xt] + m.trainable_weights,
    }
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    fast_model, general_model = _chain_model(dtypes), _chain_model(dtypes)
    fast_model(x)
    general_model(x)
    general_model.set_weights(fast_model.get_weights())
    fast, fast_own, runs = _chain_step(fast_model, x, y, picks[case], disable=False)
    general, general_own, general_runs = _chain_step(general_model, x, y, picks[case], disable=True)
    assert runs == 1 and general_runs == 0
    assert len(fast) == len(general)
    for i, (a, b) in enumerate(zip(fast, general)):
        assert a is not None and b is not None and a.dtype == b.dtype, f"gradient {i}"
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{case}: gradient {i}")
    for i, (a, b) in enumerate(zip(fast_own, general_own)):  # layers before the first source keep 7.0
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"{case}: layer grads {i}")
    if case == "last_kernel":
        assert np.all(fast_own[0] == 7.0) and np.all(fast_own[3] == 7.0)


def test_layer_chain_path_declines_other_recordings(rng):
    model = _chain_model()
    x, y = rng.normal(size=(4, 5)), rng.normal(size=(4, 3))
    model(x)
    mse = losses.get("mse")
    runs = []
    run = ad_chain._run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ad_chain, "_run", lambda *args: runs.append(1) or run(*args))
        with ad.GradientTape(persistent=True) as tape:  # persistent: the general pass
            loss = ad.call_loss(mse, y, model(x, training=True))
        tape.gradient(loss, model.trainable_weights)
        with ad.GradientTape() as tape:  # an operation after the loss: the general pass
            loss = ad.call_loss(mse, y, model(x, training=True)) * 2.0
        tape.gradient(loss, model.trainable_weights)
        dense = layers.Dense(5, activation="tanh", dtype="float64")
        with ad.GradientTape() as tape:  # a layer called twice: the general pass
            loss = ad.call_loss(mse, x, dense(dense(x, training=True), training=True))
        shared = tape.gradient(loss, dense.trainable_weights)
        assert runs == [] and all(g is not None for g in shared)
        with ad.GradientTape() as tape:  # gradient inside the recording block: the chain, the same result
            loss = ad.call_loss(mse, y, model(x, training=True))
            grads = [np.array(g) for g in tape.gradient(loss, model.trainable_weights)]
        assert runs == [1]
    with ad.GradientTape(persistent=True) as tape:
        loss = ad.call_loss(mse, y, model(x, training=True))
    for g, e in zip(grads, tape.gradient(loss, model.trainable_weights)):
        np.testing.assert_allclose(g, np.asarray(e), rtol=1e-12)


def test_shared_layer_called_twice_on_one_tape(rng):
    dense = layers.Dense(3, activation="tanh", dtype="float64")
    x_arr = rng.normal(size=(2, 3))
    dense(x_arr)
    kernel = dense.params["kernel"]

    def loss_of():
        return float(np.sum(dense(dense(x_arr)) ** 2))

    with ad.GradientTape() as tape:
        out = dense(dense(x_arr, training=True), training=True)
        loss = ad.sum(out * out)
    g = tape.gradient(loss, kernel).numpy()
    from tests.gradcheck import assert_gradients_close, numerical_gradient

    assert_gradients_close(g, numerical_gradient(loss_of, kernel), "shared kernel")


def test_multi_input_and_multi_output_layers(rng):
    a, b = ad.Tensor(rng.normal(size=(2, 3))), ad.Tensor(rng.normal(size=(2, 3)))
    lstm = layers.LSTM(4, return_state=True, dtype="float64")
    seq = ad.Tensor(rng.normal(size=(2, 5, 3)))
    with ad.GradientTape() as tape:
        tape.watch([a, b, seq])
        s = layers.Multiply()([a, b], training=True)
        out, h, c = lstm(seq, training=True)
        loss = ad.sum(s * 3.0) + ad.sum(out) + ad.sum(c * 2.0)
    ga, gb, gseq = tape.gradient(loss, [a, b, seq])
    np.testing.assert_allclose(ga.numpy(), 3.0 * b.numpy())
    np.testing.assert_allclose(gb.numpy(), 3.0 * a.numpy())
    ref = copy.deepcopy(lstm)
    ref.zero_grad()
    ref(seq.numpy(), training=True)
    dseq = ref.backward([np.ones((2, 4)), np.zeros((2, 4)), np.full((2, 4), 2.0)])
    assert_close(gseq.numpy(), dseq, np.float64, "LSTM input gradient")


def test_layer_bridge_rules_and_errors(rng):
    dense = layers.Dense(2, name="head", dtype="float64")
    x = ad.Tensor(rng.normal(size=(3, 4)))
    original_call = layers.Layer.__call__
    assert type(dense(x)) is np.ndarray  # outside any tape a layer sees a plain array
    assert layer_base._CALL_HOOK is None
    with ad.GradientTape() as tape:
        tape.watch(x)
        assert layer_base._CALL_HOOK is not None  # the bridge's hook, not a patched Layer.__call__
        y = ad.sum(dense(x))  # training=False: kept nothing for backward
    assert layers.Layer.__call__ is original_call and layer_base._CALL_HOOK is None
    with pytest.raises(ad.TapeUsageError, match=r"layer 'head' \(Dense\) was called with training=False inside a recording GradientTape.*training=True"):
        tape.gradient(y, x)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = ad.sum(ad.tanh(dense(x, training=True)))
        gx = inner.gradient(y, x)
        z = ad.sum(gx * gx)
    with pytest.raises(NotImplementedError, match=r"Second-order gradients through layer 'head' \(Dense\) are not available"):
        outer.gradient(z, x)
    with pytest.raises(TypeError, match=r"call_layer: expected a fusenet Layer. Received: str"):
        ad.call_layer("dense", x)


def test_frozen_layer_weights_are_not_watched(rng):
    dense = layers.Dense(2, dtype="float64", trainable=False)
    x = ad.Tensor(rng.normal(size=(3, 4)))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.sum(dense(x, training=True))
    gx, gk = tape.gradient(y, [x, dense.params["kernel"]])
    assert gk is None and gx.shape == (3, 4)


# ---------------------------------------------------------------- the call hook
def test_call_hook_protocol_and_the_bridges_hook(rng):
    assert layer_base._CALL_HOOK is None
    with pytest.raises(TypeError, match=r"set_call_hook: expected a callable hook\(layer, x, training\) or None. Received: 'x'"):
        layer_base.set_call_hook("x")
    seen = []

    def spy(layer, x, training):
        seen.append((layer.name, type(x).__name__, training))
        return "short-circuit" if layer.name == "short" else NotImplemented

    dense = layers.Dense(2, name="spied", dtype="float64")
    flatten = layers.Flatten(name="flat")
    x = rng.normal(size=(3, 4))
    assert layer_base.set_call_hook(spy) is None
    try:
        assert layers.Identity(name="short")(x) == "short-circuit"
        assert dense(x).shape == (3, 2) and seen[-1] == ("spied", "ndarray", False)
        with ad.GradientTape() as tape:
            assert layer_base._CALL_HOOK is not spy  # the bridge's hook, chained to ours
            y = dense(x, training=True)  # a trainable layer: the bridge takes it (a tape node)
            z = flatten(x, training=True)  # no weights, plain array: declined, our hook sees it
        assert isinstance(y, ad.Tensor) and type(z) is np.ndarray and seen[-1] == ("flat", "ndarray", True)
        assert [n.op for n in tape.graph().nodes] == ["layer:spied"]
        assert layer_base._CALL_HOOK is spy  # put back when the last tape closed
    finally:
        assert layer_base.set_call_hook(None) is spy
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, dtype="float64")])
    with ad.GradientTape() as tape:  # a functional model built while a tape is open: symbolic calls pass
        inp = layers.Input((4,))
        functional = models.Model(inp, layers.Dense(2, dtype="float64")(inp))
        loss = ad.sum(functional(x, training=True)) + ad.sum(model(x, training=True))
    grads = tape.gradient(loss, functional.trainable_weights + model.trainable_weights)
    assert all(g is not None for g in grads) and layer_base._CALL_HOOK is None


# ---------------------------------------------------------------- where parameter gradients go
def _mlp(dtype="float64"):
    return models.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh", dtype=dtype),
                              layers.Dense(3, dtype=dtype)])


def _reference_grads(model, x, y, loss_fn):
    ref = _mlp()
    ref(x)
    ref.set_weights(model.get_weights())
    out = x
    for layer in ref.layers:
        layer.zero_grad()
        out = layer(out, training=True)
    dy = loss_fn.gradient(y, out)
    for layer in reversed(ref.layers):
        dy = layer.backward(dy)
    return [g.copy() for layer in ref.layers for g in layer.grads.values()]


def test_a_tape_sets_layer_grads_and_returns_them_without_copies(rng):
    model = _mlp()
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    model(x)
    mse = losses.get("mse")
    for layer in model.layers:  # stale values from elsewhere: a tape gradient replaces them
        for g in layer.grads.values():
            g.fill(7.0)
    for step in range(2):  # no zero_grad between steps (TensorFlow style)
        expected = _reference_grads(model, x, y, mse)
        with ad.GradientTape() as tape:
            loss = ad.call_loss(mse, y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        own = [g for layer in model.layers for g in layer.grads.values()]
        for i, (g, o, e) in enumerate(zip(grads, own, expected)):
            assert g.numpy() is o, f"gradient {i} is not the layer's own array"
            assert_close(o, e, np.float64, f"step {step}, gradient {i}")
        optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_weights))


def test_fresh_gradient_arrays_when_a_call_is_differentiated_again_or_shared(rng):
    dense = layers.Dense(3, activation="tanh", dtype="float64")
    x = rng.normal(size=(4, 3))
    dense(x)
    kernel = dense.params["kernel"]
    # persistent tape: two gradient computations, each sets the layer's grads to its result
    with ad.GradientTape(persistent=True) as tape:
        y = dense(x, training=True)
        a, b = ad.sum(y), ad.sum(y * y)
    ga = tape.gradient(a, kernel).numpy()
    ga_copy = ga.copy()
    gb = tape.gradient(b, kernel).numpy()
    assert ga is not dense.grads["kernel"] and gb is not dense.grads["kernel"]
    np.testing.assert_array_equal(ga, ga_copy)  # not overwritten by the second computation
    np.testing.assert_array_equal(dense.grads["kernel"], gb)
    _, own_b = own_backward(dense, x, 2 * np.asarray(y))
    assert_close(gb, own_b["kernel"], np.float64, "persistent d(b)/dkernel")
    # a layer called twice: each call's gradient separately, the layer's grads hold their sum
    dense.zero_grad()
    with ad.GradientTape() as tape:
        loss = ad.sum(dense(dense(x, training=True), training=True))
    g = tape.gradient(loss, kernel).numpy()
    assert g is not dense.grads["kernel"]
    np.testing.assert_allclose(dense.grads["kernel"], g, rtol=1e-12)
    # nested tapes record the call twice: the inner gradient is a fresh array
    with ad.GradientTape() as outer:
        with ad.GradientTape() as inner:
            y = ad.sum(dense(x, training=True))
        gi = inner.gradient(y, kernel).numpy()
    go = outer.gradient(y, kernel).numpy()
    assert gi is not dense.grads["kernel"]
    np.testing.assert_allclose(gi, go, rtol=1e-12)


def test_gradient_with_respect_to_inputs_only_still_sets_the_layer_grads(rng):
    dense = layers.Dense(2, dtype="float64")
    x_arr = rng.normal(size=(3, 4))
    dense(x_arr)
    dense.grads["kernel"].fill(5.0)
    x = ad.Tensor(x_arr)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.sum(dense(x, training=True))
    gx = tape.gradient(y, x)
    dx, pgrads = own_backward(dense, x_arr, np.ones((3, 2)))
    assert_close(gx.numpy(), dx, np.float64, "d/dx")
    assert_close(dense.grads["kernel"], pgrads["kernel"], np.float64, "kernel grads")


# ---------------------------------------------------------------- TapeLayer
class ScaledTanh(ad.TapeLayer):
    """``scale * tanh(x @ kernel + bias)``: forward in tape operations only."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), "glorot_uniform")
        self.bias = self.add_weight("bias", (self.units,), "zeros")
        self.scale = self.add_weight("scale", (), "ones")

    def call(self, x):
        return self.scale * ad.tanh(x @ self.kernel + self.bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class GatedBlock(ad.TapeLayer):
    """A fusenet Dense (tracked sublayer) used twice inside tape operations, plus a softmax gate."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.proj = self.track_layer("proj", layers.Dense(3, activation="relu"))

    def build(self, input_shape):
        self.gate = self.add_weight("gate", (3,), "ones")
        self.proj._build_for((None, 3), self.dtype)

    def call(self, x, training=False):
        h = self.proj(x, training=training)
        return self.proj(h, training=training) * ad.softmax(self.gate) + ad.logsumexp(x, axis=-1, keepdims=True)


def test_tape_layer_gradients_finite_differences(rng):
    check_layer_gradients(ScaledTanh(3), rng.normal(size=(4, 5)))
    errors = check_layer_gradients(GatedBlock(), rng.normal(size=(4, 3)))
    assert set(errors) == {"input 0", "gate", "proj/kernel", "proj/bias"}


@requires_torch
def test_tape_layer_parity_with_torch(rng):
    def torch_fn(x, p):
        return p["scale"] * torch.tanh(x @ p["kernel"] + p["bias"])

    check_layer_parity(ScaledTanh(4, dtype="float64"), rng.normal(size=(3, 5)), torch_fn, dtype=np.float64)
    check_layer_parity(ScaledTanh(4), rng.normal(size=(3, 5)).astype(np.float32), torch_fn, dtype=np.float32)


def test_tape_layer_contract(rng):
    layer = ScaledTanh(3, name="st")
    y = layer(rng.normal(size=(2, 5)).astype(np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 3) and type(y) is np.ndarray
    assert list(layer.params) == ["kernel", "bias", "scale"] and layer.count_params() == 19
    assert isinstance(layer.kernel, ad.Variable) and layer.kernel.numpy() is layer.params["kernel"]
    clone = ScaledTanh.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.units == 3
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'st' \(ScaledTanh\): backward\(\) was called without"):
        layer.backward(np.ones((2, 3), np.float32))
    assert GatedBlock().compute_output_shape((None, 3)) == (None, 3)


def test_tape_layer_copies_keep_no_tape(rng):
    layer = ScaledTanh(2, name="copied")
    x = rng.normal(size=(3, 4))
    layer(x, training=True)
    clone = copy.deepcopy(layer)
    np.testing.assert_array_equal(clone.kernel.numpy(), layer.params["kernel"])
    assert clone.kernel.numpy() is clone.params["kernel"] and clone.kernel.numpy() is not layer.params["kernel"]
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'copied' \(ScaledTanh\)"):
        clone.backward(np.ones((3, 2)))
    layer.backward(np.ones((3, 2), np.float32))  # the original still has its tape


def test_tape_layer_backward_adds_into_all_its_grads(rng):
    block = GatedBlock(dtype="float64")
    x = rng.normal(size=(4, 3))
    dy = rng.normal(size=(4, 3))
    block(x)
    block.zero_grad()
    block(x, training=True)
    block.backward(dy)
    once = {k: g.copy() for k, g in block.grads.items()}
    assert set(once) == {"gate", "proj/kernel", "proj/bias"} and all(np.any(g != 0) for g in once.values())
    block(x, training=True)
    block.backward(dy)  # a layer's backward adds (+=), also into its sublayers' grads
    for k, g in block.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12, err_msg=k)


def test_a_layer_used_alone_and_inside_a_composite_on_one_tape(rng):
    from tests.gradcheck import assert_gradients_close, numerical_gradient

    block = GatedBlock(dtype="float64")
    x = rng.normal(size=(4, 3))
    block(x)
    kernel = block.proj.params["kernel"]

    def loss_of():
        return float(np.sum(block(x) ** 2) + np.sum(np.tanh(block.proj(x))))

    for order in ("composite first", "alone first"):
        with ad.GradientTape() as tape:
            if order == "composite first":
                out = block(x, training=True)
                alone = block.proj(x, training=True)
            else:
                alone = block.proj(x, training=True)
                out = block(x, training=True)
            loss = ad.sum(out * out) + ad.sum(ad.tanh(alone))
        g = tape.gradient(loss, kernel).numpy()
        assert_gradients_close(g, numerical_gradient(loss_of, kernel), f"proj kernel ({order})")
        np.testing.assert_allclose(block.proj.grads["kernel"], g, rtol=1e-10, err_msg=order)


def test_tape_layer_trains_in_a_manual_loop_and_in_fit(rng):
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(5, 2))).astype(np.float32) * 1.5
    layer = ScaledTanh(2)
    layer(x)
    mse = losses.get("mse")
    opt = optimizers.Adam(learning_rate=0.05)
    first = None
    for _ in range(60):
        layer.zero_grad()
        out = layer(x, training=True)
        value, dy = mse.value_and_gradient(y, out)
        layer.backward(dy)
        opt.apply([layer])
        first = value if first is None else first
    assert value < 0.2 * first

    model = models.Sequential([layers.Input((5,)), ScaledTanh(8), layers.Dense(2)])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.02), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]


def test_tape_layer_inside_an_outer_tape_is_one_node(rng):
    layer = ScaledTanh(3, dtype="float64")
    x_arr = rng.normal(size=(4, 5))
    layer(x_arr)
    x = ad.Tensor(x_arr)
    with ad.GradientTape() as tape:
        tape.watch(x)
        loss = ad.sum(layer(x, training=True) ** 2)
    assert [n.op for n in tape.graph().nodes] == [f"layer:{layer.name}", "power", "sum"]
    gx, gk = tape.gradient(loss, [x, layer.kernel])
    out = layer(x_arr)
    dx, pgrads = own_backward(layer, x_arr, 2 * out)
    assert_close(gx.numpy(), dx, np.float64, "d/dx")
    assert_close(gk.numpy(), pgrads["kernel"], np.float64, "d/dkernel")


# ---------------------------------------------------------------- losses
def log_cosh(y_true, y_pred):
    d = y_pred - y_true
    return ad.mean(d + ad.softplus(-2.0 * d) - math.log(2.0), axis=-1)


def squared_error(y_true, y_pred):
    return ad.mean((y_pred - y_true) ** 2, axis=-1)


def test_tape_loss_gradient_and_keras_equivalence(rng):
    y_true, y_pred = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    sw = rng.uniform(0.0, 2.0, size=6)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "none"):
        tl = ad.TapeLoss(squared_error, reduction=reduction)
        ref = losses.MeanSquaredError(reduction=reduction)
        np.testing.assert_allclose(tl(y_true, y_pred, sample_weight=sw), ref(y_true, y_pred, sample_weight=sw), rtol=1e-12)
        np.testing.assert_allclose(tl.gradient(y_true, y_pred, sample_weight=sw),
                                   ref.gradient(y_true, y_pred, sample_weight=sw), rtol=1e-12)
        check_loss_gradient(tl, y_true, y_pred, sample_weight=sw)
    lc = ad.TapeLoss(log_cosh)
    np.testing.assert_allclose(lc(y_true, y_pred), losses.LogCosh()(y_true, y_pred), rtol=1e-12)
    check_loss_gradient(lc, y_true, y_pred)
    assert lc.name == "log_cosh" and ad.TapeLoss(lambda t, p: p).name == "tape_loss"


def test_tape_loss_aligns_ranks_as_keras(rng):
    y_true, y_pred = rng.normal(size=6), rng.normal(size=(6, 1))
    tl, ref = ad.TapeLoss(squared_error), losses.MeanSquaredError()
    np.testing.assert_allclose(tl(y_true, y_pred), ref(y_true, y_pred), rtol=1e-12)
    np.testing.assert_allclose(tl.gradient(y_true[:, None, None], y_pred), ref.gradient(y_true, y_pred), rtol=1e-12)
    assert tl.gradient(y_true, y_pred).shape == (6, 1)


def test_sparse_labels_in_a_tape_loss(rng):
    def sparse_ce(y_true, y_pred):
        logp = ad.log_softmax(y_pred, axis=-1)
        return -logp[np.arange(y_true.shape[0]), y_true.numpy()]

    labels, logits = rng.integers(0, 4, size=5), rng.normal(size=(5, 4))
    tl = ad.TapeLoss(sparse_ce)
    ref = losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(tl(labels, logits), ref(labels, logits), rtol=1e-12)
    np.testing.assert_allclose(tl.gradient(labels, logits), ref.gradient(labels, logits), rtol=1e-10)


def test_tape_loss_in_fit_and_on_a_tape(rng):
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1))).astype(np.float32)
    trained = []
    for loss in (ad.TapeLoss(log_cosh), "log_cosh"):
        model = models.Sequential([layers.Input((4,)), layers.Dense(1, seed=3)])
        model.compile(optimizer=optimizers.SGD(learning_rate=0.5), loss=loss)
        history = model.fit(x, y, batch_size=16, epochs=10, verbose=0, shuffle=False)
        assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
        trained.append(model.get_weights())
    for a, b in zip(*trained):  # the same training run as the built-in LogCosh
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # called on a Tensor inside a tape: a recorded scalar, differentiable twice
    p = ad.Tensor(rng.normal(size=(3, 2)))
    t = rng.normal(size=(3, 2))
    with ad.GradientTape() as outer:
        outer.watch(p)
        with ad.GradientTape() as inner:
            inner.watch(p)
            value = ad.TapeLoss(squared_error)(t, p)
        g = inner.gradient(value, p)
        z = ad.sum(g)
    np.testing.assert_allclose(value.numpy(), np.mean((p.numpy() - t) ** 2))
    np.testing.assert_allclose(g.numpy(), 2 * (p.numpy() - t) / 6)
    np.testing.assert_allclose(outer.gradient(z, p).numpy(), np.full((3, 2), 2 / 6))


def test_loss_errors(rng):
    with pytest.raises(TypeError, match=r"TapeLoss: expected fn to be a callable fn\(y_true, y_pred\). Received: fn=3"):
        ad.TapeLoss(3)
    with pytest.raises(ValueError, match=r"TapeLoss.from_config: a config cannot hold the loss function; pass it"):
        ad.TapeLoss.from_config(ad.TapeLoss(squared_error).get_config())
    clone = ad.TapeLoss.from_config(ad.TapeLoss(squared_error, reduction="sum").get_config(), fn=squared_error)
    assert clone == ad.TapeLoss(squared_error, reduction="sum")
    with pytest.raises(ValueError, match=r"call_loss: expected a loss that reduces to a scalar, but MeanSquaredError returned values of shape \(4,\)"):
        ad.call_loss(losses.MeanSquaredError(reduction="none"), np.ones((4, 2)), ad.Tensor(np.zeros((4, 2))))
    with pytest.raises(TypeError, match=r"call_loss: expected a fusenet loss object"):
        ad.call_loss(lambda a, b: 0.0, np.ones(2), ad.Tensor(np.ones(2)))
