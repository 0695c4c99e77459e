"""Fused transformer layers equal the layers they replace; patterns, conditions, report, gradients."""

import copy

import numpy as np
import pytest

from fusenet import layers
from fusenet.errors import BackwardBeforeForwardError
from fusenet.fusion import (FusedDenseResidualLayerNorm, FusedLayerNormDense, FusedMultiHeadAttention,
                            FusedTransformerEncoderBlock, LayerBuilder, report)
from tests.contract import LayerCase
from tests.fusion_check import TOL, check_fused_equals_unfused
from tests.gradcheck import check_layer_gradients


def normal(*shape):
    return lambda rng: rng.normal(size=shape)


def normals(*shapes):
    return lambda rng: [rng.normal(size=s) for s in shapes]


CONTRACT_CASES = [
    LayerCase(lambda: FusedLayerNormDense([layers.LayerNormalization(), layers.Dense(4, activation="gelu")]),
              normal(2, 3, 5)),
    LayerCase(lambda: FusedDenseResidualLayerNorm([layers.Dense(4), layers.LayerNormalization()]),
              normals((2, 3, 5), (2, 3, 4))),
    LayerCase(lambda: FusedMultiHeadAttention([layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=6)]),
              normal(2, 4, 5)),
    LayerCase(lambda: FusedTransformerEncoderBlock([layers.TransformerEncoderBlock(4, 2, 6, dropout=0.1, seed=1)]),
              normal(2, 3, 4)),
]


def with_head(layer, units=3):
    """``[layer, LayerNormalization, Dense]``: a one-to-one replacement (attention, encoder block)
    followed by a norm and a head, so that the fused list is shorter than the source list (which
    ``check_fused_equals_unfused`` asserts) and the LN -> Dense pattern is exercised on its output."""
    return [layer, layers.LayerNormalization(), layers.Dense(units)]


def built_and_perturbed(run, x, seed=7):
    """Build ``run`` on ``x`` and move every weight away from its initial value (LN gamma off 1,
    beta and biases off 0), so that folding is not trivially exact."""
    rng = np.random.default_rng(seed)
    for layer in run:
        x = layer(x)
        layer.set_weights([w + rng.normal(scale=0.3, size=w.shape) for w in layer.get_weights()])
    return run


# training/dropout combinations: inference (dropout irrelevant), training without and with dropout
MODES = [pytest.param(False, 0.0, id="inference"), pytest.param(True, 0.0, id="train"),
         pytest.param(True, 0.25, id="train-dropout")]
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


# ---------------------------------------------------------------- LayerNormalization -> Dense
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("center, scale, rms", [(True, True, False), (False, False, False), (True, False, False),
                                                (False, True, False), (True, True, True)])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("tail", ["none", "dense_gelu", "relu_layer", "gelu_tanh_layer"])
def test_layernorm_dense(rng, dtype, training, center, scale, rms, use_bias, tail):
    def make():
        act = "gelu" if tail == "dense_gelu" else None
        run = [layers.LayerNormalization(center=center, scale=scale, rms_scaling=rms, epsilon=1e-3, dtype=dtype),
               layers.Dense(6, activation=act, use_bias=use_bias)]
        if tail == "relu_layer":
            run.append(layers.ReLU())
        elif tail == "gelu_tanh_layer":
            run.append(layers.GELU(approximate="tanh"))
        return built_and_perturbed(run, x)

    x = rng.normal(loc=0.5, size=(2, 7, 5)).astype(dtype)
    fused = check_fused_equals_unfused(make, x, training, FusedLayerNormDense)
    assert len(fused) == 1


def test_layernorm_dense_folds_gamma_and_beta_exactly(rng):
    norm, dense = built_and_perturbed([layers.LayerNormalization(dtype="float64"), layers.Dense(3)],
                                      rng.normal(size=(4, 5)))
    fused = FusedLayerNormDense([norm, dense])
    kernel, bias = fused.folded()
    gamma, beta = norm.get_weights()
    w, b = dense.get_weights()
    np.testing.assert_allclose(kernel, gamma[:, None] * w, rtol=1e-15)
    np.testing.assert_allclose(bias, beta @ w + b, rtol=1e-14)
    np.testing.assert_array_equal(norm.get_weights()[0], gamma)  # the sources are not touched


# ---------------------------------------------------------------- the skip layer norm (two inputs)
def _skip_ln_reference(dense, norm, x, res, training):
    return norm(res + dense(x, training=training), training=training)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("center, scale, rms", [(True, True, False), (False, False, False), (True, True, True)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_residual_layernorm_equals_unfused(rng, dtype, training, center, scale, rms, use_bias):
    tol = TOL[np.dtype(dtype)]
    x = rng.normal(size=(3, 4, 5)).astype(dtype)
    res = rng.normal(size=(3, 4, 6)).astype(dtype)
    dense, norm = layers.Dense(6, use_bias=use_bias, dtype=dtype), layers.LayerNormalization(
        center=center, scale=scale, rms_scaling=rms)
    norm(dense(x))
    dense, norm = built_and_perturbed([dense, norm], x)
    before = [w.copy() for w in dense.get_weights() + norm.get_weights()]
    fused = FusedDenseResidualLayerNorm([dense, norm])
    ref_dense, ref_norm = copy.deepcopy(dense), copy.deepcopy(norm)
    for _ in range(2):
        y_ref = _skip_ln_reference(ref_dense, ref_norm, x, res, training)
        y = fused([x, res], training=training)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, y_ref, **tol)
        if not training:
            continue
        dy = rng.normal(size=y.shape).astype(dtype)
        for layer in (ref_dense, ref_norm, fused):
            layer.zero_grad()
        ds = ref_norm.backward(dy)
        dx_ref = ref_dense.backward(ds)
        dx, dres = fused.backward(dy)
        np.testing.assert_allclose(dx, dx_ref, **tol)
        np.testing.assert_allclose(dres, ds, **tol)
        for g, r in zip(fused.grads.values(), list(ref_dense.grads.values()) + list(ref_norm.grads.values())):
            np.testing.assert_allclose(g, r, **tol)
    for a, b in zip(dense.get_weights() + norm.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- multi-head attention
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training, dropout", MODES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("heads, key_dim, value_dim, output_shape", [(2, 3, None, None), (3, 2, 4, 7)])
def test_multi_head_attention(rng, dtype, training, dropout, causal, use_bias, heads, key_dim, value_dim, output_shape):
    def make():
        mha = layers.MultiHeadAttention(heads, key_dim, value_dim=value_dim, output_shape=output_shape, dropout=dropout,
                                        use_bias=use_bias, use_causal_mask=causal, seed=3, dtype=dtype)
        return built_and_perturbed(with_head(mha), x)

    x = rng.normal(size=(2, 5, 6)).astype(dtype)
    check_fused_equals_unfused(make, x, training, FusedMultiHeadAttention)


def test_multi_head_attention_inference_in_chunks_of_sequences(rng, monkeypatch):
    monkeypatch.setattr(FusedMultiHeadAttention, "INFERENCE_CHUNK_ROWS", 9)  # 2 sequences of 4 per chunk
    x = rng.normal(size=(5, 4, 6))
    (mha,) = built_and_perturbed([layers.MultiHeadAttention(2, 3, use_causal_mask=True, dtype="float64")], x)
    np.testing.assert_allclose(FusedMultiHeadAttention([mha])(x), mha(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_head_attention_inference_with_scores_beyond_the_unshifted_softmax_bound(rng, monkeypatch, dtype):
    """Inference skips the max subtraction only while every score of a chunk is within
    SCORE_BOUND; chunks with larger scores (here one sequence of three, scaled up) take the
    shifted softmax, and both equal the unfused layer without overflow."""
    from fusenet.fusion import _transformer_ops as ops

    monkeypatch.setattr(FusedMultiHeadAttention, "INFERENCE_CHUNK_ROWS", 4)  # one sequence per chunk
    x = rng.normal(size=(3, 4, 6)).astype(dtype)
    (mha,) = built_and_perturbed([layers.MultiHeadAttention(2, 3, dtype=dtype)], x)
    x[1] *= 400.0
    kernel, bias, _, _ = FusedMultiHeadAttention([mha]).folded()
    proj = x[1] @ kernel + bias
    q, k = proj[:, :6].reshape(4, 2, 3), proj[:, 6:12].reshape(4, 2, 3)
    assert np.abs(np.einsum("shk,thk->hst", k, q)).max() > ops.SCORE_BOUND  # the shifted path is taken
    assert np.isfinite(ops.attention_inference(proj[None], 2, 3, 3)).all()
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(FusedMultiHeadAttention([mha])(x), mha(x), **tol)


def test_multi_head_attention_packs_qkv_once(rng):
    (mha,) = built_and_perturbed([layers.MultiHeadAttention(2, 3, value_dim=4)], rng.normal(size=(2, 3, 5)))
    fused = FusedMultiHeadAttention([mha])
    kernel, bias, w_out, b_out = fused.folded()
    # [q | k | v_1 1 | v_2 1]: each value head is followed by a column of ones (kernel 0, bias 1)
    assert kernel.shape == (5, 2 * (3 + 3 + 4 + 1)) and bias.shape == (22,) and w_out.shape == (8, 5)
    ones = [12 + 4, 12 + 5 + 4]
    np.testing.assert_array_equal(kernel[:, ones], 0)
    np.testing.assert_array_equal(bias[ones], 1)
    np.testing.assert_allclose(kernel[:, :6], mha.get_weights()[0].reshape(5, 6) / np.sqrt(3), rtol=1e-14)
    assert fused.folded()[0] is kernel  # cached until the weights change
    fused.set_weights(fused.get_weights())
    assert fused.folded()[0] is not kernel


# ---------------------------------------------------------------- the encoder block
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training, dropout", MODES)
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_transformer_encoder_block(rng, dtype, training, dropout, norm_first, activation):
    def make():
        block = layers.TransformerEncoderBlock(8, 2, 12, dropout=dropout, norm_first=norm_first, activation=activation,
                                               seed=5, dtype=dtype)
        return built_and_perturbed(with_head(block), x)

    x = rng.normal(size=(3, 5, 8)).astype(dtype)
    check_fused_equals_unfused(make, x, training, FusedTransformerEncoderBlock)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "tanh"])
def test_block_inference_in_chunks_of_sequences(rng, monkeypatch, dtype, norm_first, activation):
    """Inference runs on chunks of whole sequences: 2 sequences (6 rows) per chunk here, the last one shorter."""
    monkeypatch.setattr(FusedTransformerEncoderBlock, "INFERENCE_CHUNK_ROWS", 7)
    x = rng.normal(size=(5, 3, 8)).astype(dtype)
    (block,) = built_and_perturbed([layers.TransformerEncoderBlock(8, 2, 12, norm_first=norm_first,
                                                                   activation=activation, dtype=dtype)], x)
    fused = FusedTransformerEncoderBlock([block])
    np.testing.assert_allclose(fused(x), block(x), **TOL[np.dtype(dtype)])


def test_float32_gelu_in_place_is_the_activation_bitwise(rng):
    """The fused layers' in-place float32 GELU gives the activation's own values, bit for bit."""
    from fusenet import activations
    from fusenet.activations._smooth import gelu_float32_inplace as gelu_float32_
    from fusenet.fusion._activation import apply_activation_

    gelu = activations.get("gelu")
    z = np.concatenate([rng.normal(scale=3.0, size=70_000), np.linspace(-12, 12, 2001),
                        [0.0, -0.0, 1e-38, -1e-38, 1e30, -1e30]]).astype(np.float32)
    np.testing.assert_array_equal(gelu_float32_(z.copy()), gelu.forward(z))
    out = z.copy()
    assert apply_activation_(gelu, out) is out  # in place at inference
    assert apply_activation_(gelu, z, keep_input=True) is not z  # training keeps the GEMM output


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [False, True])
def test_reference_transformer_model_fuses_and_matches(rng, dtype, training):
    """The reference model's layout (two pre-norm blocks, mean over the sequence, Dense), small sizes:
    a one-to-one replacement, compared directly (output, input gradient, every parameter gradient)."""
    tol = TOL[np.dtype(dtype)]
    x = rng.normal(size=(4, 6, 16)).astype(dtype)
    model = built_and_perturbed([layers.TransformerEncoderBlock(16, 4, 32, dropout=0.1, seed=1, dtype=dtype),
                                 layers.TransformerEncoderBlock(16, 4, 32, dropout=0.1, seed=2, dtype=dtype),
                                 layers.GlobalAveragePooling1D(), layers.Dense(5)], x)
    fused = LayerBuilder.optimize_sequence(model, training=training)
    assert [type(f).__name__ for f in fused] == ["FusedTransformerEncoderBlock", "FusedTransformerEncoderBlock",
                                                 "GlobalAveragePooling1D", "Dense"]
    assert fused[2] is model[2] and fused[3] is model[3]  # untouched layers are the same objects
    unfused = copy.deepcopy(model)
    y_ref, y = x, x
    for a, b in zip(unfused, fused):
        y_ref, y = a(y_ref, training=training), b(y, training=training)
    np.testing.assert_allclose(y, y_ref, **tol)
    if training:
        dy = rng.normal(size=y.shape).astype(dtype)
        for a, b in zip(reversed(unfused), reversed(fused)):
            dy_ref, dy = a.backward(dy if a is unfused[-1] else dy_ref), b.backward(dy)
        np.testing.assert_allclose(dy, dy_ref, **tol)
        for a, b in zip(unfused, fused):
            for g, r in zip(b.grads.values(), a.grads.values()):
                np.testing.assert_allclose(g, r, **tol)


def test_block_refolds_after_set_weights_and_training(rng):
    x = rng.normal(size=(2, 4, 8))
    (block,) = built_and_perturbed([layers.TransformerEncoderBlock(8, 2, 12, seed=1)], x)
    (fused,) = LayerBuilder.optimize_sequence([block])
    np.testing.assert_allclose(fused(x), block(x), rtol=1e-10, atol=1e-12)
    weights = [w * 1.1 for w in fused.get_weights()]
    fused.set_weights(weights)
    block.set_weights(weights)
    np.testing.assert_allclose(fused(x), block(x), rtol=1e-10, atol=1e-12)
    y = fused(x, training=True)  # an optimizer step follows a training forward
    fused.backward(np.ones_like(y))
    for p, g in zip(fused.params.values(), fused.grads.values()):
        p -= 0.01 * g
    (unfused,) = fused.unfuse()
    assert isinstance(unfused, layers.TransformerEncoderBlock)
    np.testing.assert_allclose(fused(x), unfused(x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- gradient checks (float64, small)
def _without_key_bias(layer):
    """The key bias has a zero gradient in exact arithmetic (softmax is shift invariant), so it is
    left out of the relative-error check (as in tests/test_attention.py)."""
    return [name for name in layer.params if not name.endswith("key_bias")]


@pytest.mark.parametrize("rms", [False, True])
def test_gradients_layernorm_dense(rng, rms):
    x = rng.normal(size=(2, 3, 4))
    run = built_and_perturbed([layers.LayerNormalization(rms_scaling=rms, dtype="float64"),
                               layers.Dense(3, activation="tanh")], x)
    check_layer_gradients(FusedLayerNormDense(run), x)


def test_gradients_dense_residual_layernorm(rng):
    x, res = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 5))
    dense, norm = layers.Dense(5, dtype="float64"), layers.LayerNormalization()
    norm(dense(x))
    check_layer_gradients(FusedDenseResidualLayerNorm(built_and_perturbed([dense, norm], x)), [x, res])


@pytest.mark.parametrize("causal, dropout", [(False, 0.0), (True, 0.3)])
def test_gradients_multi_head_attention(rng, causal, dropout):
    x = rng.normal(size=(2, 3, 4))
    run = built_and_perturbed([layers.MultiHeadAttention(2, 2, value_dim=3, dropout=dropout, use_causal_mask=causal,
                                                         seed=4, dtype="float64")], x)
    fused = FusedMultiHeadAttention(run)
    check_layer_gradients(fused, x, params=_without_key_bias(fused))


@pytest.mark.parametrize("norm_first", [True, False])
def test_gradients_transformer_encoder_block(rng, norm_first):
    x = rng.normal(size=(2, 3, 4))
    run = built_and_perturbed([layers.TransformerEncoderBlock(4, 2, 5, dropout=0.2, norm_first=norm_first, seed=6,
                                                              dtype="float64")], x)
    fused = FusedTransformerEncoderBlock(run)
    check_layer_gradients(fused, x, params=_without_key_bias(fused))


# ---------------------------------------------------------------- patterns, conditions and the report
def test_patterns_match_and_report(rng):
    x = rng.normal(size=(2, 4, 8))
    seq = [layers.LayerNormalization(), layers.Dense(8), layers.GELU(), layers.MultiHeadAttention(2, 4),
           layers.TransformerEncoderBlock(8, 2, 16), layers.LayerNormalization(), layers.Dense(3)]
    for layer in seq:
        x = layer(x)
    out, rep = LayerBuilder.optimize_sequence(seq, report=True)
    assert [type(f).__name__ for f in out] == ["FusedLayerNormDense", "FusedMultiHeadAttention",
                                               "FusedTransformerEncoderBlock", "FusedLayerNormDense"]
    assert [e.pattern for e in rep.fused] == ["layernorm_dense_activation", "self_attention",
                                              "transformer_encoder_block", "layernorm_dense"]


def test_report_explains_refusals(rng):
    x = rng.normal(size=(2, 4, 6))
    seq = [layers.LayerNormalization(axis=1), layers.Dense(6), layers.LayerNormalization(axis=[1, 2]), layers.Dense(6)]
    for layer in seq:
        x = layer(x)
    text = str(report(seq))
    assert "normalises axis 1, not the last (features) axis" in text
    assert "normalises several axes [1, 2]" in text
    assert not report(seq).fused

    cross = layers.MultiHeadAttention(2, 3)
    cross([rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 3, 6))])
    rep = report([cross])
    assert "built for cross-attention" in str(rep) and not rep.fused

    softmax_block = layers.TransformerEncoderBlock(4, 2, 6, activation="softmax")
    rep = report([softmax_block])
    assert "'softmax', which is not element-wise" in str(rep) and not rep.fused

    assert "normalises axis 0, not -1" in str(report([layers.LayerNormalization(axis=0), layers.Dense(3)]))
    rep = report([layers.LayerNormalization(), layers.Dense(3, activity_regularizer="l2")])
    assert "has an activity_regularizer, which needs the layer's own output" in str(rep) and not rep.fused


def test_unbuilt_layers_fuse_and_build_on_first_call(rng):
    seq = [layers.LayerNormalization(), layers.Dense(4), layers.TransformerEncoderBlock(4, 2, 6)]
    out = LayerBuilder.optimize_sequence(seq)
    assert [type(f).__name__ for f in out] == ["FusedLayerNormDense", "FusedTransformerEncoderBlock"]
    y = out[1](out[0](rng.normal(size=(2, 3, 5))))
    assert out[0].built and out[1].built
    assert y.shape == (2, 3, 4) and y.dtype == np.float64  # a float64 input builds float64 layers


# ---------------------------------------------------------------- errors
def test_errors(rng):
    skip = FusedDenseResidualLayerNorm([layers.Dense(4), layers.LayerNormalization()])
    with pytest.raises(ValueError, match=r"expected two inputs \[x, residual\]. Received: an array of shape \(2, 3\)"):
        skip(rng.normal(size=(2, 3)))
    with pytest.raises(ValueError, match=r"expected the residual to have shape \(2, 4\).*input with shape \(2, 5\)"):
        skip([rng.normal(size=(2, 3)), rng.normal(size=(2, 5))])
    with pytest.raises(ValueError, match="the Dense layer must have no activation.*Received: activation='relu'"):
        FusedDenseResidualLayerNorm([layers.Dense(4, activation="relu"), layers.LayerNormalization()])
    with pytest.raises(TypeError, match=r"expected \[LayerNormalization, Dense\].*Received: \['Dense', 'LayerNorm"):
        FusedLayerNormDense([layers.Dense(4), layers.LayerNormalization()])
    with pytest.raises(TypeError, match="the third layer must be an element-wise activation layer. Received: Dense"):
        FusedLayerNormDense([layers.LayerNormalization(), layers.Dense(4), layers.Dense(2)])
    with pytest.raises(ValueError, match="normalises axis 0, not -1.*Received: axis=0"):
        FusedLayerNormDense([layers.LayerNormalization(axis=0), layers.Dense(4)])
    mha = FusedMultiHeadAttention([layers.MultiHeadAttention(2, 3)])
    with pytest.raises(ValueError, match="runs self-attention on one input.*Received: a list of 2 inputs"):
        mha([rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 3, 5))])
    cross = layers.MultiHeadAttention(2, 3)
    cross([rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 3, 6))])
    with pytest.raises(ValueError, match="built for cross-attention"):
        FusedMultiHeadAttention([cross])
    with pytest.raises(TypeError, match=r"expected \[TransformerEncoderBlock\]"):
        FusedTransformerEncoderBlock([layers.Dense(3)])
    block = FusedTransformerEncoderBlock([layers.TransformerEncoderBlock(4, 2, 6)])
    block(rng.normal(size=(2, 3, 4)))
    with pytest.raises(BackwardBeforeForwardError):
        block.backward(np.ones((2, 3, 4)))
