"""Recurrent layers: SimpleRNN, LSTM, GRU and Bidirectional.

Torch parity maps the Keras weights onto ``torch.nn.RNN/LSTM/GRU`` (see ``torch_params`` below and
the docstring of ``fusenet.layers.recurrent``) and runs the torch module with those tensors through
``torch.func.functional_call``, so autograd maps the parameter gradients back onto the Keras layout.
"""

import numpy as np
import pytest

from fusenet import layers
from fusenet.errors import BackwardBeforeForwardError
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import check_layer_parity, requires_torch, torch


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


CONTRACT_CASES = [
    LayerCase(lambda: layers.SimpleRNN(3), normal(2, 4, 3)),
    LayerCase(lambda: layers.SimpleRNN(2, return_sequences=True, use_bias=False), normal(2, 3, 4), id="SimpleRNN-seq"),
    LayerCase(lambda: layers.LSTM(3), normal(2, 4, 3)),
    LayerCase(lambda: layers.LSTM(2, return_sequences=True, return_state=True, go_backwards=True), normal(2, 3, 4),
              id="LSTM-seq-state-back"),
    LayerCase(lambda: layers.GRU(3), normal(2, 4, 3)),
    LayerCase(lambda: layers.GRU(2, reset_after=False, return_state=True), normal(2, 3, 4), id="GRU-reset-before"),
    LayerCase(lambda: layers.Bidirectional(layers.LSTM(2, return_sequences=True)), normal(2, 3, 4)),
    LayerCase(lambda: layers.Bidirectional(layers.GRU(2, return_state=True), merge_mode=None), normal(2, 3, 4),
              id="Bidirectional-GRU-none-state"),
    LayerCase(lambda: layers.Bidirectional(layers.SimpleRNN(2), merge_mode="ave",
                                           backward_layer=layers.SimpleRNN(2, go_backwards=True, activation="relu")),
              normal(2, 3, 4), id="Bidirectional-explicit-backward"),
]

CELLS = {
    "SimpleRNN": lambda **kw: layers.SimpleRNN(3, **kw),
    "LSTM": lambda **kw: layers.LSTM(3, **kw),
    "GRU": lambda **kw: layers.GRU(3, **kw),
    "GRU-reset-before": lambda **kw: layers.GRU(3, reset_after=False, **kw),
}
FLAGS = [
    {},
    {"return_sequences": True},
    {"go_backwards": True},
    {"return_sequences": True, "go_backwards": True},
    {"return_state": True},
    {"return_state": True, "return_sequences": True, "go_backwards": True},
]


# ---------------------------------------------------------------- gradients (float64)
@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c.id)
def test_gradients_float64(case, rng):
    check_layer_gradients(case.make(), case.make_input(rng))


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f) or "default")
def test_rnn_gradients(rng, cell, flags):
    layer = CELLS[cell](bias_initializer="random_normal", **flags)
    check_layer_gradients(layer, rng.normal(size=(2, 4, 3)))


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("options", [{"use_bias": False}, {"activation": "relu"}, {"activation": "softsign"}],
                         ids=["nobias", "relu", "softsign"])
def test_rnn_gradients_options(rng, cell, options):
    if cell != "SimpleRNN" and "activation" in options:
        options = {**options, "recurrent_activation": "hard_sigmoid"}
    layer = CELLS[cell](return_sequences=True, **options)
    check_layer_gradients(layer, rng.normal(size=(2, 3, 2)))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_gradients(rng, merge_mode, return_sequences):
    layer = layers.Bidirectional(layers.LSTM(2, return_sequences=return_sequences), merge_mode=merge_mode)
    check_layer_gradients(layer, rng.normal(size=(2, 3, 2)))


@pytest.mark.parametrize("merge_mode", ["concat", None])
def test_bidirectional_return_state_gradients(rng, merge_mode):
    layer = layers.Bidirectional(layers.LSTM(2, return_state=True, return_sequences=True), merge_mode=merge_mode)
    check_layer_gradients(layer, rng.normal(size=(2, 3, 2)))


def test_return_state_backward_accepts_none(rng):
    layer = layers.LSTM(3, return_state=True, dtype="float64")
    x = rng.normal(size=(2, 4, 2))
    out, h, c = layer(x, training=True)
    np.testing.assert_array_equal(out, h)
    dy = rng.normal(size=h.shape)
    dx_none = layer.backward([dy, None, None])
    layer.zero_grad()
    layer(x, training=True)
    dx_zero = layer.backward([dy, np.zeros_like(h), np.zeros_like(c)])
    np.testing.assert_allclose(dx_none, dx_zero, rtol=1e-14)
    plain = layers.LSTM(3, dtype="float64")
    plain.build(x.shape)
    plain.set_weights(layer.get_weights())
    plain(x, training=True)
    np.testing.assert_allclose(plain.backward(dy), dx_none, rtol=1e-14)


# ---------------------------------------------------------------- torch parity
def _blocks_to_torch(m, kind):
    """Keras gate blocks (first axis) to torch's order: LSTM i,f,c,o == torch i,f,g,o (unchanged);
    GRU z,r,h -> torch r,z,n."""
    if kind != "GRU":
        return m
    z, r, h = torch.chunk(m, 3, dim=0)
    return torch.cat([r, z, h], dim=0)


def torch_params(kind, p, prefix="", suffix=""):
    """torch parameter tensors (``weight_ih_l0`` ...) built from the Keras-layout tensors ``p``.

    weight_ih = kernel.T and weight_hh = recurrent_kernel.T (gate blocks reordered for the GRU);
    LSTM/SimpleRNN: bias_ih = bias, bias_hh = 0; GRU (reset_after=True): bias_ih = bias[0],
    bias_hh = bias[1]. Differentiable, so torch's gradients arrive in the Keras layout.
    """
    out = {
        f"weight_ih_l0{suffix}": _blocks_to_torch(p[prefix + "kernel"].T, kind),
        f"weight_hh_l0{suffix}": _blocks_to_torch(p[prefix + "recurrent_kernel"].T, kind),
    }
    bias = p.get(prefix + "bias")
    if bias is not None:
        if kind == "GRU":
            out[f"bias_ih_l0{suffix}"] = _blocks_to_torch(bias[0], kind)
            out[f"bias_hh_l0{suffix}"] = _blocks_to_torch(bias[1], kind)
        else:
            out[f"bias_ih_l0{suffix}"] = bias
            out[f"bias_hh_l0{suffix}"] = torch.zeros_like(bias)
    return out


def _torch_module(kind, in_dim, units, use_bias, dtype, bidirectional=False):
    cls = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind]
    return cls(in_dim, units, bias=use_bias, batch_first=True, bidirectional=bidirectional,
               dtype=torch.float64 if dtype == np.float64 else torch.float32)


def _torch_rnn_fn(kind, layer, in_dim):
    module = _torch_module(kind, in_dim, layer.units, layer.use_bias, np.dtype(layer.dtype))

    def fn(xt, p):
        xin = xt.flip(1) if layer.go_backwards else xt
        out, state = torch.func.functional_call(module, torch_params(kind, p), (xin,))
        h, c = state if kind == "LSTM" else (state, None)
        y = out if layer.return_sequences else out[:, -1]
        if not layer.return_state:
            return y
        return [y, h[0]] + ([c[0]] if kind == "LSTM" else [])
    return fn


def _make(kind, **kw):
    cls = {"SimpleRNN": layers.SimpleRNN, "LSTM": layers.LSTM, "GRU": layers.GRU}[kind]
    return cls(5, bias_initializer="random_normal", **kw)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(f) or "default")
def test_rnn_parity(rng, dtype, kind, flags):
    layer = _make(kind, dtype=dtype, **flags)
    x = rng.normal(size=(3, 6, 4)).astype(dtype)
    check_layer_parity(layer, x, _torch_rnn_fn(kind, layer, 4), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_rnn_parity_without_bias(rng, dtype, kind):
    layer = _make(kind, dtype=dtype, use_bias=False, return_sequences=True)
    check_layer_parity(layer, rng.normal(size=(2, 5, 3)).astype(dtype), _torch_rnn_fn(kind, layer, 3), dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_gru_reset_before_parity(rng, dtype, go_backwards):
    """reset_after=False has no torch module: compare with the same equations in torch autograd."""
    layer = layers.GRU(4, reset_after=False, return_sequences=True, go_backwards=go_backwards, dtype=dtype,
                       bias_initializer="random_normal")
    u = 4

    def fn(xt, p):
        k, rk, b = p["kernel"], p["recurrent_kernel"], p["bias"]
        xin = xt.flip(1) if go_backwards else xt
        h = torch.zeros(xt.shape[0], u, dtype=xt.dtype)
        outs = []
        for t in range(xin.shape[1]):
            xp = xin[:, t] @ k + b
            z = torch.sigmoid(xp[:, :u] + h @ rk[:, :u])
            r = torch.sigmoid(xp[:, u:2 * u] + h @ rk[:, u:2 * u])
            n = torch.tanh(xp[:, 2 * u:] + (r * h) @ rk[:, 2 * u:])
            h = z * h + (1 - z) * n
            outs.append(h)
        return torch.stack(outs, dim=1)

    check_layer_parity(layer, rng.normal(size=(3, 5, 3)).astype(dtype), fn, dtype=dtype)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_concat_parity(rng, dtype, kind):
    """Bidirectional(concat, return_sequences) == torch bidirectional=True (backward weights: *_reverse)."""
    layer = layers.Bidirectional(_make(kind, dtype=dtype, return_sequences=True))
    module = _torch_module(kind, 4, 5, True, np.dtype(dtype), bidirectional=True)

    def fn(xt, p):
        params = {**torch_params(kind, p, "forward/"), **torch_params(kind, p, "backward/", "_reverse")}
        out, _ = torch.func.functional_call(module, params, (xt,))
        return out

    check_layer_parity(layer, rng.normal(size=(3, 6, 4)).astype(dtype), fn, dtype=dtype)


# ---------------------------------------------------------------- behaviour
def test_keras_weight_layouts():
    lstm = layers.LSTM(4)
    lstm.build((None, 7, 3))
    assert [w.shape for w in lstm.get_weights()] == [(3, 16), (4, 16), (16,)]
    np.testing.assert_array_equal(lstm.params["bias"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert not layers.LSTM(4, unit_forget_bias=False)(np.zeros((1, 2, 3))).any()
    gru = layers.GRU(4)
    gru.build((None, 7, 3))
    assert [w.shape for w in gru.get_weights()] == [(3, 12), (4, 12), (2, 12)]
    gru_before = layers.GRU(4, reset_after=False)
    gru_before.build((None, 7, 3))
    assert gru_before.params["bias"].shape == (12,)
    rnn = layers.SimpleRNN(4, use_bias=False)
    rnn.build((None, 7, 3))
    assert [w.shape for w in rnn.get_weights()] == [(3, 4), (4, 4)]
    rk = rnn.params["recurrent_kernel"]
    np.testing.assert_allclose(rk @ rk.T, np.eye(4), atol=1e-6)  # orthogonal initializer


def test_bidirectional_weights_and_names():
    layer = layers.Bidirectional(layers.LSTM(3, name="enc"))
    layer.build((None, 5, 2))
    assert layer.forward_layer.name == "forward_enc" and layer.backward_layer.name == "backward_enc"
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    assert list(layer.params) == ["forward/kernel", "forward/recurrent_kernel", "forward/bias",
                                  "backward/kernel", "backward/recurrent_kernel", "backward/bias"]
    assert [w.shape for w in layer.get_weights()] == [(2, 12), (3, 12), (12,)] * 2
    assert len(layer.gradient_pairs()) == 6
    assert layer.compute_output_shape((None, 5, 2)) == (None, 6)


def test_bidirectional_sum_equals_forward_plus_reversed_backward(rng):
    x = rng.normal(size=(2, 5, 3))
    layer = layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode="sum")
    y = layer(x)
    yf = layer.forward_layer(x)
    yb = layer.backward_layer(x)
    np.testing.assert_allclose(y, yf + yb[:, ::-1], rtol=1e-12)
    a, b = layers.Bidirectional(layers.GRU(4, return_sequences=True), merge_mode=None)(x)
    assert a.shape == b.shape == (2, 5, 4)


def test_go_backwards_reverses_processing(rng):
    x = rng.normal(size=(2, 5, 3))
    fwd = layers.LSTM(4, return_sequences=True)
    back = layers.LSTM(4, return_sequences=True, go_backwards=True)
    fwd.build(x.shape)
    back.build(x.shape)
    back.set_weights(fwd.get_weights())
    np.testing.assert_allclose(back(x), fwd(x[:, ::-1]), rtol=1e-12)


def test_float32_default_and_float64_input(rng):
    x = rng.normal(size=(2, 3, 4))
    assert layers.LSTM(3)(x.astype(np.float32)).dtype == np.float32
    assert layers.GRU(3)(x).dtype == np.float64
    assert layers.SimpleRNN(3, dtype="float64")(x.astype(np.float32)).dtype == np.float64


def test_inference_keeps_nothing(rng):
    layer = layers.LSTM(3)
    layer(rng.normal(size=(2, 3, 4)), training=True)
    layer(rng.normal(size=(2, 3, 4)), training=False)
    assert layer._cache is None
    with pytest.raises(BackwardBeforeForwardError, match=r"\(LSTM\): backward\(\) was called without"):
        layer.backward(np.zeros((2, 3)))


SKIP_CASES = {
    "LSTM": lambda: layers.LSTM(3, bias_initializer="random_normal"),
    "LSTM-seq-back-softsign": lambda: layers.LSTM(3, return_sequences=True, go_backwards=True, activation="softsign"),
    "LSTM-state": lambda: layers.LSTM(3, return_state=True, use_bias=False),
    "GRU": lambda: layers.GRU(3),
    "SimpleRNN-seq": lambda: layers.SimpleRNN(3, return_sequences=True),
    "Bidirectional": lambda: layers.Bidirectional(layers.LSTM(2, return_sequences=True)),
}


@pytest.mark.parametrize("name", list(SKIP_CASES))
def test_input_gradient_skipped_when_not_needed(rng, name):
    """With ``_input_grad_needed = False`` (the engine's hint in a training step) backward returns
    None and the weight gradients are exactly those of a full backward."""
    layer = SKIP_CASES[name]()
    x = rng.normal(size=(2, 4, 3))
    y = layer(x, training=True)
    dy = [rng.normal(size=a.shape) for a in y] if isinstance(y, list) else rng.normal(size=y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    assert dx.shape == x.shape
    full = {key: value.copy() for key, value in layer.grads.items()}
    layer.zero_grad()
    layer(x, training=True)
    layer._input_grad_needed = False
    try:
        assert layer.backward(dy) is None
    finally:
        layer._input_grad_needed = True
    assert set(layer.grads) == set(full)
    for key, value in full.items():
        np.testing.assert_array_equal(layer.grads[key], value, err_msg=key)
    if name == "Bidirectional":
        assert layer.forward_layer._input_grad_needed and layer.backward_layer._input_grad_needed


@pytest.mark.parametrize("flags", [{}, {"return_sequences": True, "return_state": True, "go_backwards": True}],
                         ids=["last", "seq-state-back"])
def test_lstm_two_threads_equal_one(rng, monkeypatch, flags):
    """A batch big enough for the two-thread split (uneven halves) gives exactly the numbers of the
    same split run on one thread, and agrees with running the samples one at a time."""
    import fusenet.layers.recurrent as recurrent
    from fusenet import _parallel

    monkeypatch.setattr(_parallel, "SPLIT_WORKERS", 2)
    monkeypatch.setattr(_parallel, "_CONTROL", (lambda: 2, lambda n: None))  # two threads even under a BLAS limit
    monkeypatch.setattr(_parallel, "_cpus", lambda: 2)
    batch = 17
    x = rng.normal(size=(batch, 5, 3))
    layer = layers.LSTM(4, bias_initializer="random_normal", dtype="float64", **flags)
    layer(x)
    y = layer(x, training=True)
    outputs = y if isinstance(y, list) else [y]
    dy = [rng.normal(size=a.shape) for a in outputs]
    results = []
    for threshold in (1, batch * 4 + 1):  # threaded, then serial
        monkeypatch.setattr(recurrent, "_SPLIT_MIN_VALUES", threshold)
        layer.zero_grad()
        out = layer(x, training=True)
        dx = layer.backward(dy if isinstance(y, list) else dy[0])
        grads = {key: value.copy() for key, value in layer.grads.items()}
        results.append((out if isinstance(out, list) else [out], dx, grads))
    (out_a, dx_a, g_a), (out_b, dx_b, g_b) = results
    for a, b in zip(out_a + [dx_a] + list(g_a.values()), out_b + [dx_b] + list(g_b.values())):
        np.testing.assert_array_equal(a, b)
    layer.zero_grad()
    single = [layer(x[n:n + 1]) for n in range(batch)]
    if isinstance(y, list):
        single = [np.concatenate([s[j] for s in single]) for j in range(len(outputs))]
    else:
        single = [np.concatenate(single)]
    for a, b in zip(out_a, single):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_lstm_float16_follows_float64(rng):
    """float16 (no BLAS gemm for it: the fallback accumulation) computes the same LSTM to float16 precision."""
    x = rng.normal(size=(2, 5, 3))
    wide = layers.LSTM(4, return_sequences=True, bias_initializer="random_normal", dtype="float64")
    wide(x)
    half = layers.LSTM(4, return_sequences=True, dtype="float16")
    half(x)
    half.set_weights(wide.get_weights())
    dy = rng.normal(size=(2, 5, 4))
    outputs, grads = [], []
    for layer in (wide, half):
        outputs.append(layer(x, training=True))
        grads.append(layer.backward(dy))
    assert outputs[1].dtype == np.float16 and grads[1].dtype == np.float16
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=0, atol=1e-2)
    np.testing.assert_allclose(grads[1], grads[0], rtol=0, atol=5e-2)
    for key in wide.grads:
        np.testing.assert_allclose(half.grads[key], wide.grads[key], rtol=0, atol=5e-2, err_msg=key)


def test_lstm_classifier_trains_end_to_end(rng):
    """LSTM -> Dense on the last state, softmax cross-entropy, plain SGD: the loss falls."""
    n, steps = 64, 8
    x = rng.normal(size=(n, steps, 2))
    labels = (x[:, :, 0].sum(axis=1) > 0).astype(int)
    lstm = layers.LSTM(8, seed=1, dtype="float64")
    head = layers.Dense(2, seed=2, dtype="float64")

    def step(update):
        h = lstm(x, training=True)
        logits = head(h, training=True)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(n), labels]).mean()
        if update:
            dlogits = p.copy()
            dlogits[np.arange(n), labels] -= 1.0
            dlogits /= n
            for layer in (lstm, head):
                layer.zero_grad()
            lstm.backward(head.backward(dlogits))
            for layer in (lstm, head):
                for grad, param in layer.gradient_pairs():
                    param -= 0.5 * grad
        return loss

    first = step(True)
    for _ in range(40):
        step(True)
    last = step(False)
    assert last < 0.6 * first, (first, last)


def test_regularizers_and_constraints_are_wired(rng):
    layer = layers.LSTM(3, kernel_regularizer="l2", recurrent_regularizer="l1", bias_regularizer="l2",
                        recurrent_constraint="non_neg")
    layer(rng.normal(size=(2, 3, 4)))
    assert layer.regularization_loss() > 0
    layer.apply_constraints()
    assert (layer.params["recurrent_kernel"] >= 0).all()
    config = layer.get_config()
    assert config["recurrent_regularizer"] is not None and config["recurrent_constraint"] is not None


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.LSTM(0), r"LSTM: expected units to be a positive integer. Received: units=0"),
        (lambda: layers.GRU(-2, name="g"), r"GRU\(name='g'\).*units=-2"),
        (lambda: layers.SimpleRNN(3, activation="nope"), r"Unknown activation: 'nope'"),
        (lambda: layers.LSTM(3, recurrent_activation="softmax"), r"element-wise activation.*softmax"),
        (lambda: layers.Bidirectional(layers.LSTM(2), merge_mode="max"),
         r"Bidirectional: expected merge_mode to be one of \['concat', 'sum', 'mul', 'ave', None\]. "
         r"Received: merge_mode='max'"),
        (lambda: layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2)), r"different go_backwards"),
        (lambda: layers.Bidirectional(layers.LSTM(2), backward_layer=layers.LSTM(2, go_backwards=True,
                                                                              return_sequences=True)),
         r"same return_sequences"),
    ],
)
def test_invalid_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types():
    with pytest.raises(TypeError, match=r"units=2.5"):
        layers.SimpleRNN(2.5)
    with pytest.raises(TypeError, match=r"return_sequences='yes'"):
        layers.LSTM(2, return_sequences="yes")
    with pytest.raises(TypeError, match=r"Bidirectional: expected layer to be a SimpleRNN, LSTM or GRU"):
        layers.Bidirectional(layers.Dense(3))
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['dropout'\]"):
        layers.LSTM(2, dropout=0.5)


def test_wrong_input_rank_and_size():
    with pytest.raises(ValueError, match=r"layer 'seq' \(LSTM\).*expected ndim=3.*\(4, 5\)"):
        layers.LSTM(2, name="seq")(np.zeros((4, 5)))
    layer = layers.GRU(2, name="g2")
    layer(np.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match=r"layer 'g2' \(GRU\).*axis -1 of input shape to have value 5.*\(1, 3, 4\)"):
        layer(np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match=r"\(SimpleRNN\): expected at least one time step.*\(2, 0, 3\)"):
        layers.SimpleRNN(2)(np.zeros((2, 0, 3)))
    with pytest.raises(ValueError, match=r"Bidirectional.*expected ndim=3"):
        layers.Bidirectional(layers.GRU(2))(np.zeros((2, 3)))


def test_return_state_backward_needs_the_list():
    layer = layers.LSTM(2, return_state=True, name="st")
    out = layer(np.zeros((1, 3, 2)), training=True)
    with pytest.raises(ValueError, match=r"layer 'st' \(LSTM\): with return_state=True, backward expects a list of 3"):
        layer.backward(out[0])
    bi = layers.Bidirectional(layers.LSTM(2, return_state=True))
    bi(np.zeros((1, 3, 2)), training=True)
    with pytest.raises(ValueError, match=r"backward expects a list of 5 gradients"):
        bi.backward([np.zeros((1, 4))])


def test_activation_with_hyperparameters_round_trips(rng):
    from fusenet import activations

    elu = activations.get({"class_name": "elu", "config": {"alpha": 0.5}})
    layer = layers.GRU(3, activation=elu, return_sequences=True)
    x = rng.normal(size=(2, 4, 3))
    y = layer(x)
    clone = layers.deserialize(layers.serialize(layer))
    assert clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)
    check_layer_gradients(layers.GRU(3, activation=elu, return_sequences=True), x)
