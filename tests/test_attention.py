"""Attention layers: MultiHeadAttention (self and cross, causal, dropout) and TransformerEncoderBlock.

Keras-to-PyTorch weight mapping used by the parity tests (``d`` model width, ``h`` heads,
``k`` key_dim, ``v`` value_dim):

- query/key/value kernel ``(d, h, k)`` -> torch projection weight ``(h*k, d) = kernel.reshape(d, h*k).T``
  (head-major rows: row ``i*k + j`` is head ``i``, channel ``j``, as torch splits heads);
- query/key/value bias ``(h, k)`` -> ``bias.reshape(h*k)``; torch's packed ``in_proj_weight``
  ``(3*h*k, d)`` stacks the query, key and value rows, ``in_proj_bias`` the biases likewise;
- output kernel ``(h, v, d_out)`` -> ``out_proj.weight (d_out, h*v) = kernel.reshape(h*v, d_out).T``,
  output bias unchanged;
- Dense kernel ``(in, out)`` -> ``linear.weight = kernel.T``; LayerNormalization gamma/beta -> weight/bias.

The key bias has a zero gradient in exact arithmetic (adding ``q . b_k`` to every score of a row
leaves the softmax unchanged), so it is compared absolutely, on the scale of the query bias's gradient.
"""

import copy

import numpy as np
import pytest

from fusenet import layers
from fusenet.errors import BackwardBeforeForwardError
from tests.contract import LayerCase
from tests.gradcheck import check_layer_gradients
from tests.parity import assert_close, requires_torch, tensor, tolerance, torch


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


def normals(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


CONTRACT_CASES = [
    LayerCase(lambda: layers.MultiHeadAttention(2, 3), normal(2, 4, 5)),
    LayerCase(lambda: layers.MultiHeadAttention(2, 3, use_causal_mask=True, use_bias=False, name="causal"),
              normal(2, 4, 5), id="MultiHeadAttention-causal-nobias"),
    LayerCase(lambda: layers.MultiHeadAttention(3, 2, dropout=0.2, seed=3), normals((2, 4, 5), (2, 3, 6)),
              id="MultiHeadAttention-cross"),
    LayerCase(lambda: layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=7, kernel_regularizer="l2"),
              normals((2, 4, 5), (2, 3, 6), (2, 3, 2)), id="MultiHeadAttention-cross-qvk"),
    LayerCase(lambda: layers.TransformerEncoderBlock(4, 2, 6), normal(2, 3, 4)),
    LayerCase(lambda: layers.TransformerEncoderBlock(6, 3, 5, dropout=0.1, norm_first=False, activation="relu",
                                                     layer_norm_epsilon=1e-3, seed=2, name="post"),
              normal(2, 4, 6), id="TransformerEncoderBlock-post-norm"),
]


def _build64(layer, x):
    layer._build_for([np.shape(a) for a in x] if isinstance(x, list) else np.shape(x), np.float64)
    return layer


def _check_mha_gradients(layer, x, **kwargs):
    """Gradient check of every input and parameter but the key bias (zero gradient, checked absolutely)."""
    _build64(layer, x)
    names = [n for n in layer.params if n != "key_bias"]
    errors = check_layer_gradients(layer, x, params=names, **kwargs)
    if layer.use_bias:
        probe = copy.deepcopy(layer)
        y = probe(x, training=True)
        probe.backward(np.random.default_rng(1).normal(size=y.shape))
        scale = np.abs(probe.grads["query_bias"]).max()
        assert np.abs(probe.grads["key_bias"]).max() < 1e-12 * max(scale, 1.0)
    return errors


# ---------------------------------------------------------------- gradients
MHA_CONFIGS = {
    "self": (dict(), [(2, 4, 4)]),
    "self-causal": (dict(use_causal_mask=True), [(2, 4, 4)]),
    "self-nobias": (dict(use_bias=False), [(2, 3, 4)]),
    "self-value_dim-output_shape": (dict(value_dim=2, output_shape=5), [(2, 3, 4)]),
    "cross-qv": (dict(), [(2, 4, 4), (2, 3, 5)]),
    "cross-qvk-causal": (dict(use_causal_mask=True, value_dim=4), [(2, 4, 4), (2, 5, 3), (2, 5, 2)]),
    "cross-qv-causal-longer-query": (dict(use_causal_mask=True), [(2, 5, 4), (2, 3, 3)]),
    "cross-qvk-nobias-output_shape": (dict(use_bias=False, output_shape=3), [(2, 2, 4), (2, 3, 5), (2, 3, 2)]),
}


def _inputs(rng, shapes):
    xs = [rng.normal(size=s) for s in shapes]
    return xs[0] if len(xs) == 1 else xs


@pytest.mark.parametrize("config", list(MHA_CONFIGS), ids=str)
def test_mha_gradients_float64(rng, config):
    kwargs, shapes = MHA_CONFIGS[config]
    _check_mha_gradients(layers.MultiHeadAttention(2, 3, **kwargs), _inputs(rng, shapes))


@pytest.mark.parametrize("inputs", [[(2, 3, 4)], [(2, 3, 4), (2, 4, 3)]], ids=["self", "cross"])
def test_mha_gradients_with_attention_dropout(rng, inputs):
    # the gradient check copies the layer and its generator per evaluation, so the masks repeat
    _check_mha_gradients(layers.MultiHeadAttention(2, 2, dropout=0.4, seed=5), _inputs(rng, inputs))


# ---------------------------------------------------------------- torch parity
def torch_mha(layer, xs, p):
    """The layer's computation from torch ops on the Keras-layout weights ``p``."""
    query = xs[0]
    value = xs[1] if len(xs) > 1 else query
    key = xs[2] if len(xs) > 2 else value

    def project(x, role):
        y = torch.einsum("btd,dhk->bhtk", x, p[f"{role}_kernel"])
        if layer.use_bias:
            y = y + p[f"{role}_bias"][None, :, None, :]
        return y

    q = project(query, "query") / np.sqrt(layer.key_dim)
    k, v = project(key, "key"), project(value, "value")
    scores = q @ k.transpose(-1, -2)
    if layer.use_causal_mask:
        t, s = scores.shape[-2:]
        allowed = torch.ones(t, s, dtype=torch.bool).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    attn = torch.softmax(scores, dim=-1)
    out = torch.einsum("bhts,bhsv->bhtv", attn, v)
    y = torch.einsum("bhtv,hvo->bto", out, p["output_kernel"])
    if layer.use_bias:
        y = y + p["output_bias"]
    return y


def check_parity(layer, x, torch_fn, dtype, training=True, zero_grad_params=()):
    """Forward, input gradients and every parameter gradient against ``torch_fn(xs_t, p)``.

    Like ``tests.parity.check_layer_parity``, except that parameters in ``zero_grad_params``
    (zero gradient in exact arithmetic) are compared absolutely on the scale of all gradients.
    """
    dtype = np.dtype(dtype)
    multi = isinstance(x, list)
    xs = [np.asarray(a, dtype=dtype) for a in (x if multi else [x])]
    y = layer(list(xs) if multi else xs[0], training=training)
    p = {name: tensor(w, requires_grad=True) for name, w in layer.params.items()}
    r = np.random.default_rng(0).normal(size=y.shape).astype(dtype)
    layer.zero_grad()
    dx = layer.backward(r)
    dxs = dx if multi else [dx]
    xts = [tensor(a, requires_grad=True) for a in xs]
    yt = torch_fn(xts, p)
    assert_close(y, yt, dtype, f"{layer.describe()} output")
    yt.backward(tensor(r))
    for i, (d, xt) in enumerate(zip(dxs, xts)):
        assert_close(d, xt.grad, dtype, f"{layer.describe()} d/d(input {i})")
    scale = max(float(np.abs(g).max()) for g in layer.grads.values())
    for name, g in layer.grads.items():
        if name in zero_grad_params:
            assert np.abs(g).max() <= tolerance(dtype) * scale and p[name].grad.abs().max() <= tolerance(dtype) * scale
        else:
            assert_close(g, p[name].grad, dtype, f"{layer.describe()} d/d({name})")


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", list(MHA_CONFIGS), ids=str)
def test_mha_parity_explicit_torch(rng, config, dtype):
    kwargs, shapes = MHA_CONFIGS[config]
    layer = layers.MultiHeadAttention(2, 3, dtype=dtype, bias_initializer="random_normal", **kwargs)
    check_parity(layer, _inputs(rng, shapes), lambda xs, p: torch_mha(layer, xs, p), dtype,
                 zero_grad_params=("key_bias",))


def _in_proj(p, role):
    kernel = p[f"{role}_kernel"]
    return kernel.reshape(kernel.shape[0], -1).T


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_mha_parity_torch_multi_head_attention_forward(rng, dtype, causal, cross):
    """Against ``torch.nn.functional.multi_head_attention_forward`` with the mapped weights
    (torch needs ``heads * key_dim = heads * value_dim = d_q = d_out``)."""
    h, k, d = 2, 3, 6
    layer = layers.MultiHeadAttention(h, k, use_causal_mask=causal, dtype=dtype, bias_initializer="random_normal")
    x = [rng.normal(size=(3, 4, d)), rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 2))] if cross \
        else rng.normal(size=(3, 4, d))

    def torch_fn(xs, p):
        query = xs[0]
        value = xs[1] if len(xs) > 1 else query
        key = xs[2] if len(xs) > 2 else value
        t, s = query.shape[1], key.shape[1]
        mask = torch.ones(t, s, dtype=torch.bool).triu(1) if causal else None  # True = may not attend
        out, _ = torch.nn.functional.multi_head_attention_forward(
            query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1), d, h,
            in_proj_weight=None,
            in_proj_bias=torch.cat([p[f"{r}_bias"].reshape(-1) for r in ("query", "key", "value")]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=p["output_kernel"].reshape(h * k, d).T, out_proj_bias=p["output_bias"],
            training=False, need_weights=False, attn_mask=mask, use_separate_proj_weight=True,
            q_proj_weight=_in_proj(p, "query"), k_proj_weight=_in_proj(p, "key"), v_proj_weight=_in_proj(p, "value"))
        return out.transpose(0, 1)

    check_parity(layer, x, torch_fn, dtype, zero_grad_params=("key_bias",))


# ---------------------------------------------------------------- behaviour
def test_mha_keras_weight_layout_and_order(rng):
    layer = layers.MultiHeadAttention(4, 3, value_dim=5, output_shape=7)
    y = layer([rng.normal(size=(2, 6, 8)), rng.normal(size=(2, 9, 10)), rng.normal(size=(2, 9, 11))])
    assert y.shape == (2, 6, 7) and y.dtype == np.float64  # float64 input: float64 weights
    assert layers.MultiHeadAttention(2, 3)(np.ones((1, 2, 4), dtype=np.float32)).dtype == np.float32
    assert [w.shape for w in layer.get_weights()] == [
        (8, 4, 3), (4, 3), (11, 4, 3), (4, 3), (10, 4, 5), (4, 5), (4, 5, 7), (7,)]
    assert list(layer.params) == ["query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel",
                                  "value_bias", "output_kernel", "output_bias"]
    assert layer.compute_output_shape([(None, 6, 8), (None, 9, 10)]) == (None, 6, 7)
    nobias = layers.MultiHeadAttention(2, 3, use_bias=False)
    nobias(rng.normal(size=(1, 2, 4)))
    assert [w.shape for w in nobias.get_weights()] == [(4, 2, 3), (4, 2, 3), (4, 2, 3), (2, 3, 4)]
    assert nobias.compute_output_shape((None, 2, 4)) == (None, 2, 4)


def test_mha_self_attention_equals_list_of_same_array(rng):
    x = rng.normal(size=(2, 5, 4))
    layer = layers.MultiHeadAttention(2, 3, dtype="float64", bias_initializer="random_normal")
    twin = copy.deepcopy(layer)
    dy = rng.normal(size=(2, 5, 4))
    y = layer(x, training=True)
    dx = layer.backward(dy)
    y2 = twin([x, x, x], training=True)
    dxs = twin.backward(dy)
    np.testing.assert_allclose(y, y2, rtol=1e-12)
    assert isinstance(dxs, list) and len(dxs) == 3
    np.testing.assert_allclose(dx, dxs[0] + dxs[1] + dxs[2], rtol=1e-10, atol=1e-12)
    for name in layer.grads:
        np.testing.assert_allclose(layer.grads[name], twin.grads[name], rtol=1e-10, atol=1e-12)


def test_mha_causal_output_ignores_future_steps(rng):
    layer = layers.MultiHeadAttention(2, 3, use_causal_mask=True)
    x = rng.normal(size=(2, 6, 4)).astype(np.float32)
    y = layer(x)
    x2 = x.copy()
    x2[:, 3:] = rng.normal(size=(2, 3, 4))
    y2 = layer(x2)
    np.testing.assert_array_equal(y[:, :3], y2[:, :3])
    assert not np.allclose(y[:, 3:], y2[:, 3:])


def test_mha_attention_dropout_seeded_and_training_only(rng):
    x = rng.normal(size=(3, 6, 4))
    a = layers.MultiHeadAttention(2, 3, dropout=0.5, seed=11, dtype="float64")
    b = layers.MultiHeadAttention(2, 3, dropout=0.5, seed=11, dtype="float64")
    plain = layers.MultiHeadAttention(2, 3, dropout=0.0, dtype="float64")
    a(x), b(x), plain(x)
    plain.set_weights(a.get_weights())
    np.testing.assert_array_equal(a(x, training=True), b(x, training=True))
    np.testing.assert_allclose(a(x, training=False), plain(x, training=True), rtol=1e-12)
    assert not np.allclose(a(x, training=True), plain(x, training=False))


def test_mha_large_scores_stay_finite():
    layer = layers.MultiHeadAttention(1, 2, use_causal_mask=True, dtype="float32")
    x = np.full((1, 4, 2), 1e3, dtype=np.float32)
    x[0, :, 1] = np.arange(4) * 1e3
    layer(x)
    layer.set_weights([np.eye(2)[:, None, :] * 30, np.zeros((1, 2)), np.eye(2)[:, None, :] * 30, np.zeros((1, 2)),
                       np.eye(2)[:, None, :], np.zeros((1, 2)), np.eye(2)[None], np.zeros(2)])
    y = layer(x, training=True)
    dx = layer.backward(np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()


def test_mha_inference_keeps_nothing_and_backward_needs_training_forward(rng):
    layer = layers.MultiHeadAttention(2, 2, name="att")
    layer(rng.normal(size=(1, 3, 4)), training=True)
    layer(rng.normal(size=(1, 3, 4)), training=False)
    assert layer._cache is None
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'att' \(MultiHeadAttention\): backward\(\)"):
        layer.backward(np.zeros((1, 3, 4)))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.MultiHeadAttention(0, 4), ValueError,
         r"MultiHeadAttention: expected num_heads to be a positive integer. Received: num_heads=0"),
        (lambda: layers.MultiHeadAttention(2, -1), ValueError, r"key_dim=-1"),
        (lambda: layers.MultiHeadAttention(2, 0, name="att"), ValueError, r"MultiHeadAttention\(name='att'\).*key_dim=0"),
        (lambda: layers.MultiHeadAttention(2, 4, value_dim=0), ValueError, r"value_dim=0"),
        (lambda: layers.MultiHeadAttention(2, 4, output_shape=0), ValueError, r"output_shape=0"),
        (lambda: layers.MultiHeadAttention(2, 4, dropout=1.5), ValueError, r"dropout=1.5"),
        (lambda: layers.MultiHeadAttention("2", 4), TypeError, r"num_heads='2'"),
        (lambda: layers.MultiHeadAttention(2, 4, kernel_initializer="nope"), ValueError, r"Unknown initializer: 'nope'"),
        (lambda: layers.MultiHeadAttention(2, 4, attention_axes=(1,)), TypeError, r"unexpected keyword arguments \['attention_axes'\]"),
    ],
)
def test_mha_invalid_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_mha_input_errors_name_layer_and_shapes():
    layer = layers.MultiHeadAttention(2, 3, name="att")
    with pytest.raises(ValueError, match=r"Input 0 of layer 'att' \(MultiHeadAttention\).*expected ndim=3.*\(2, 4\)"):
        layer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"Input 1 of layer 'att' \(MultiHeadAttention\).*expected ndim=3.*\(2, 3, 4, 1\)"):
        layer([np.zeros((2, 3, 4)), np.zeros((2, 3, 4, 1))])
    assert not layer.built
    layer([np.zeros((2, 3, 4)), np.zeros((2, 5, 6))])
    with pytest.raises(ValueError, match=r"Input 0 of layer 'att'.*axis -1 of input shape to have value 4.*\(2, 3, 5\)"):
        layer([np.zeros((2, 3, 5)), np.zeros((2, 5, 6))])
    with pytest.raises(ValueError, match=r"Input 1 of layer 'att'.*axis -1 of input shape to have value 6.*\(2, 5, 4\)"):
        layer([np.zeros((2, 3, 4)), np.zeros((2, 5, 4))])
    with pytest.raises(ValueError, match=r"Input 0 of layer 'att'.*axis -1 of input shape to have value 6.*\(2, 3, 4\)"):
        layer(np.zeros((2, 3, 4)))  # self-attention needs d_q = d_v = d_k
    with pytest.raises(ValueError, match=r"layer 'att'.*value and key except the last must be equal. "
                                         r"Received: value_shape=\(2, 5, 6\), key_shape=\(2, 4, 6\)"):
        layer([np.zeros((2, 3, 4)), np.zeros((2, 5, 6)), np.zeros((2, 4, 6))])
    with pytest.raises(ValueError, match=r"layer 'att'.*same batch size. Received: query_shape=\(3, 3, 4\), value_shape=\(2, 5, 6\)"):
        layer([np.zeros((3, 3, 4)), np.zeros((2, 5, 6))])
    with pytest.raises(ValueError, match=r"layer 'att'.*\[query, value, key\]. Received: a list of 4 inputs"):
        layer([np.zeros((2, 3, 4))] * 4)
    with pytest.raises(TypeError, match=r"Layer 'att' \(MultiHeadAttention\) expected a numeric array"):
        layer([np.zeros((2, 3, 4)), np.array([["a"]])])


# ---------------------------------------------------------------- TransformerEncoderBlock
ZERO_GRAD = ("attention/key_bias",)


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_block_gradients_float64(rng, norm_first, dropout):
    block = layers.TransformerEncoderBlock(4, 2, 5, dropout=dropout, norm_first=norm_first, seed=4)
    x = rng.normal(size=(2, 3, 4))
    _build64(block, x)
    # random LayerNormalization and bias values, so that no gradient is checked at a special point
    block.set_weights([w + rng.normal(scale=0.3, size=w.shape) for w in block.get_weights()])
    errors = check_layer_gradients(block, x, params=[n for n in block.params if n not in ZERO_GRAD])
    assert len(errors) == 1 + 15


def _torch_encoder_layer(block, dtype):
    return torch.nn.TransformerEncoderLayer(
        block.d_model, block.num_heads, block.ff_dim, dropout=0.0, activation="gelu", batch_first=True,
        norm_first=block.norm_first, layer_norm_eps=block.layer_norm_epsilon, dtype=torch.float64 if dtype == np.float64
        else torch.float32).eval()


def _torch_params(p, d):
    """The block's parameters (fusenet names, Keras layouts) as torch TransformerEncoderLayer parameters."""
    return {
        "self_attn.in_proj_weight": torch.cat([_in_proj(p, f"attention/{r}") for r in ("query", "key", "value")]),
        "self_attn.in_proj_bias": torch.cat([p[f"attention/{r}_bias"].reshape(-1) for r in ("query", "key", "value")]),
        "self_attn.out_proj.weight": p["attention/output_kernel"].reshape(d, d).T,
        "self_attn.out_proj.bias": p["attention/output_bias"],
        "linear1.weight": p["feedforward_intermediate/kernel"].T,
        "linear1.bias": p["feedforward_intermediate/bias"],
        "linear2.weight": p["feedforward_output/kernel"].T,
        "linear2.bias": p["feedforward_output/bias"],
        "norm1.weight": p["attention_norm/gamma"],
        "norm1.bias": p["attention_norm/beta"],
        "norm2.weight": p["feedforward_norm/gamma"],
        "norm2.bias": p["feedforward_norm/beta"],
    }


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_encoder_block_parity_torch_transformer_encoder_layer(rng, norm_first, dtype):
    d = 8
    block = layers.TransformerEncoderBlock(d, 2, 12, norm_first=norm_first, dtype=dtype, bias_initializer="random_normal")
    x = rng.normal(size=(3, 5, d))
    block(x.astype(dtype))
    block.set_weights([w + rng.normal(scale=0.2, size=w.shape) if w.ndim == 1 else w for w in block.get_weights()])
    module = _torch_encoder_layer(block, dtype)

    def torch_fn(xs, p):
        return torch.func.functional_call(module, _torch_params(p, d), (xs[0],))

    names = {n for n, _ in module.named_parameters()}
    assert names == set(_torch_params({k: tensor(v) for k, v in block.params.items()}, d))
    check_parity(block, x, torch_fn, dtype, zero_grad_params=ZERO_GRAD)


def test_encoder_block_structure_and_weights(rng):
    block = layers.TransformerEncoderBlock(8, 4, 16, name="enc")
    y = block(rng.normal(size=(2, 3, 8)).astype(np.float32))
    assert y.shape == (2, 3, 8) and y.dtype == np.float32
    assert list(block._sublayers) == ["attention", "attention_norm", "attention_dropout", "feedforward_norm",
                                      "feedforward_intermediate", "feedforward_output", "feedforward_dropout"]
    attention = block._sublayers["attention"]
    assert (attention.num_heads, attention.key_dim, attention.value_dim) == (4, 2, 2)
    assert block._sublayers["attention_norm"].epsilon == 1e-5
    assert [w.shape for w in block.get_weights()] == [
        (8, 4, 2), (4, 2), (8, 4, 2), (4, 2), (8, 4, 2), (4, 2), (4, 2, 8), (8,),
        (8,), (8,), (8,), (8,), (8, 16), (16,), (16, 8), (8,)]
    # the block's arrays are the sublayers' own objects
    assert block.params["feedforward_intermediate/kernel"] is block._sublayers["feedforward_intermediate"].params["kernel"]
    assert len(block.gradient_pairs()) == 16
    assert block.compute_output_shape((None, 3, 8)) == (None, 3, 8)
    assert layers.TransformerEncoderBlock(8, 4, 16, dtype="float64")(np.ones((1, 2, 8))).dtype == np.float64


def test_encoder_block_same_seed_same_block(rng):
    x = rng.normal(size=(2, 4, 6))
    a = layers.TransformerEncoderBlock(6, 2, 8, dropout=0.2, seed=9)
    b = layers.TransformerEncoderBlock(6, 2, 8, dropout=0.2, seed=9)
    np.testing.assert_array_equal(a(x, training=True), b(x, training=True))
    np.testing.assert_array_equal(a(x), b(x))
    a(x, training=False)
    assert all(sub._cache is None for sub in a._sublayers.values()) and a._cache is None


def _cross_entropy(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    grad = np.exp(logp)
    grad[np.arange(len(labels)), labels] -= 1.0
    return float(-logp[np.arange(len(labels)), labels].mean()), grad / len(labels)


def test_small_transformer_classifier_trains(rng):
    """Embedding -> positions -> encoder block -> mean over time -> Dense, plain SGD: the loss falls."""
    vocab, steps, d, classes = 6, 5, 8, 3
    x = rng.integers(0, vocab, size=(32, steps))
    labels = x[:, 0] % classes  # the class is decided by the first token
    model = [layers.Embedding(vocab, d, seed=1), layers.PositionalEmbedding(steps, seed=2),
             layers.TransformerEncoderBlock(d, 2, 16, dropout=0.1, seed=3)]
    head = layers.Dense(classes, seed=4)
    losses = []
    for _ in range(40):
        h = x
        for layer in model:
            h = layer(h, training=True)
        logits = head(h.mean(axis=1), training=True)
        loss, dlogits = _cross_entropy(logits, labels)
        losses.append(loss)
        for layer in [*model, head]:
            layer.zero_grad()
        dh = head.backward(dlogits)
        dh = np.repeat(dh[:, None, :] / steps, steps, axis=1)
        for layer in reversed(model):
            dh = layer.backward(dh)
        for layer in [*model, head]:
            for grad, param in layer.gradient_pairs():
                param -= 0.2 * grad
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: layers.TransformerEncoderBlock(10, 4, 8), ValueError,
         r"TransformerEncoderBlock: expected num_heads to divide d_model.*Received: d_model=10, num_heads=4"),
        (lambda: layers.TransformerEncoderBlock(0, 1, 8), ValueError, r"d_model=0"),
        (lambda: layers.TransformerEncoderBlock(8, 0, 8), ValueError, r"num_heads=0"),
        (lambda: layers.TransformerEncoderBlock(8, 2, -2, name="enc"), ValueError,
         r"TransformerEncoderBlock\(name='enc'\): expected ff_dim to be a positive integer. Received: ff_dim=-2"),
        (lambda: layers.TransformerEncoderBlock(8, 2, 8, dropout=1.0), ValueError, r"dropout=1.0"),
        (lambda: layers.TransformerEncoderBlock(8, 2, 8, layer_norm_epsilon=0.0), ValueError, r"layer_norm_epsilon=0.0"),
        (lambda: layers.TransformerEncoderBlock(8, 2, 8, layer_norm_epsilon="1e-5"), TypeError, r"layer_norm_epsilon='1e-5'"),
        (lambda: layers.TransformerEncoderBlock(8, 2, 8, activation="nope"), ValueError, r"Unknown activation: 'nope'"),
    ],
)
def test_encoder_block_invalid_hyperparameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_encoder_block_input_errors():
    block = layers.TransformerEncoderBlock(8, 2, 8, name="enc")
    with pytest.raises(ValueError, match=r"Input 0 of layer 'enc' \(TransformerEncoderBlock\).*axis -1 of input shape to have value 8.*\(2, 3, 6\)"):
        block(np.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match=r"layer 'enc' \(TransformerEncoderBlock\).*expected ndim=3.*\(2, 8\)"):
        block(np.zeros((2, 8)))
    with pytest.raises(BackwardBeforeForwardError, match=r"layer 'enc' \(TransformerEncoderBlock\)"):
        block.backward(np.zeros((2, 3, 8)))
