"""fusion.folding: pure folding math, checked against the unfolded computation."""

import numpy as np
import pytest

from fusenet.fusion import folding


def _bn(z, gamma, beta, mean, var, eps, axis=-1):
    shape = [1] * z.ndim
    shape[axis] = -1
    g = 1.0 if gamma is None else gamma.reshape(shape)
    b = 0.0 if beta is None else beta.reshape(shape)
    return (z - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * g + b


def _conv2d_valid(x, kernel, bias, groups=1):
    """A direct reference convolution (stride 1, 'valid'), written independently of fusenet's."""
    n, h, w, cin = x.shape
    kh, kw, cin_g, cout = kernel.shape
    cout_g = cout // groups
    ho, wo = h - kh + 1, w - kw + 1
    out = np.zeros((n, ho, wo, cout))
    for g in range(groups):
        xs = x[..., g * cin_g:(g + 1) * cin_g]
        ks = kernel[..., g * cout_g:(g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                out[..., g * cout_g:(g + 1) * cout_g] += xs[:, i:i + ho, j:j + wo, :] @ ks[i, j]
    return out + (0 if bias is None else bias)


def _bn_params(rng, c, center=True, scale=True):
    return (rng.normal(size=c) if scale else None, rng.normal(size=c) if center else None,
            rng.normal(size=c), rng.random(c) + 0.5)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_fold_batchnorm_dense(rng, use_bias, center, scale):
    w, b = rng.normal(size=(5, 4)), rng.normal(size=4) if use_bias else None
    gamma, beta, mean, var = _bn_params(rng, 4, center, scale)
    x = rng.normal(size=(6, 5))
    before = [a.copy() for a in (w, mean, var)]
    w2, b2 = folding.fold_batchnorm(w, b, gamma, beta, mean, var, 1e-3)
    expected = _bn(x @ w + (0 if b is None else b), gamma, beta, mean, var, 1e-3)
    np.testing.assert_allclose(x @ w2 + b2, expected, rtol=1e-12, atol=1e-12)
    for a, a0 in zip((w, mean, var), before):
        np.testing.assert_array_equal(a, a0)  # inputs never mutated


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_conv_and_input_affine(rng, groups):
    x = rng.normal(size=(2, 6, 5, 4))
    k, b = rng.normal(size=(3, 2, 4 // groups, 6)), rng.normal(size=6)
    gamma, beta, mean, var = _bn_params(rng, 6)
    k2, b2 = folding.fold_batchnorm(k, b, gamma, beta, mean, var, 1e-3)
    np.testing.assert_allclose(_conv2d_valid(x, k2, b2, groups),
                               _bn(_conv2d_valid(x, k, b, groups), gamma, beta, mean, var, 1e-3), rtol=1e-10, atol=1e-10)
    scale, shift = rng.normal(size=4), rng.normal(size=4)
    k3, b3 = folding.fold_input_affine(k, b, scale, shift, groups=groups)
    np.testing.assert_allclose(_conv2d_valid(x, k3, b3, groups), _conv2d_valid(x * scale + shift, k, b, groups),
                               rtol=1e-10, atol=1e-10)


def test_fold_batchnorm_depthwise_and_transpose(rng):
    k, b = rng.normal(size=(3, 3, 4, 2)), rng.normal(size=8)
    gamma, beta, mean, var = _bn_params(rng, 8)
    k2, b2 = folding.fold_batchnorm_depthwise(k, b, gamma, beta, mean, var, 1e-3)
    s = gamma / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(k2, k * s.reshape(4, 2))
    np.testing.assert_allclose(b2, (b - mean) * s + beta)
    kt = rng.normal(size=(3, 3, 8, 5))
    k3, b3 = folding.fold_batchnorm_transpose(kt, None, gamma, beta, mean, var, 1e-3)
    np.testing.assert_allclose(k3, kt * s[:, None])
    np.testing.assert_allclose(b3, -mean * s + beta)


def test_fold_dense_dense_and_pointwise(rng):
    x = rng.normal(size=(3, 5))
    w1, b1, w2, b2 = rng.normal(size=(5, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    w, b = folding.fold_dense_dense(w1, b1, w2, b2)
    np.testing.assert_allclose(x @ w + b, (x @ w1 + b1) @ w2 + b2, rtol=1e-12)
    img = rng.normal(size=(2, 5, 5, 3))
    p1, q1 = rng.normal(size=(1, 1, 3, 4)), rng.normal(size=4)
    p2, q2 = rng.normal(size=(3, 3, 4, 2)), rng.normal(size=2)
    k, b = folding.fold_pointwise_conv(p1, q1, p2, q2)
    np.testing.assert_allclose(_conv2d_valid(img, k, b), _conv2d_valid(_conv2d_valid(img, p1, q1), p2, q2), rtol=1e-10)


def test_inexact_folds_are_refused(rng):
    k = rng.normal(size=(3, 3, 2, 2))
    with pytest.raises(folding.FoldingError, match=r"padding='same' is not exact"):
        folding.fold_input_affine(k, None, np.ones(2), np.ones(2), padding="same")
    folding.fold_input_affine(k, None, np.full(2, 2.0), np.zeros(2), padding="same")  # a pure scale is exact
    with pytest.raises(folding.FoldingError, match=r"must be 1x1"):
        folding.fold_pointwise_conv(k, None, k, None)
    with pytest.raises(folding.FoldingError, match=r"padding='same'"):
        folding.fold_pointwise_conv(rng.normal(size=(1, 1, 2, 2)), np.ones(2), k, None, padding2="same")
    with pytest.raises(folding.FoldingError, match=r"3 channels but the kernel"):
        folding.fold_batchnorm(rng.normal(size=(4, 5)), None, None, None, np.zeros(3), np.ones(3), 1e-3)
