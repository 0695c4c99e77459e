"""Pure folding math: affine maps merged into the kernels and biases of Dense and convolution layers.

Every function takes arrays and returns NEW arrays; none mutates its inputs (the first tier
of fusion, as ``torch.nn.utils.fusion.fuse_conv_bn_weights``). Layouts are Keras's:

- Dense kernel ``(in, out)``; ConvND kernel ``(k1, ..., kN, in // groups, out)``: output channel last.
- DepthwiseConv2D kernel ``(kh, kw, in, multiplier)``: output channel ``c * multiplier + m``.
- Conv1DTranspose/Conv2DTranspose kernel ``(k..., out, in)``: output channel on axis -2.

A BatchNormalization at inference is the per-channel affine map ``y = x * s + t`` with
``s = gamma / sqrt(moving_variance + epsilon)`` and ``t = beta - moving_mean * s``
(:func:`batchnorm_scale_shift`). Folding it *after* a layer scales each output channel of the
kernel by ``s`` and maps the bias ``b`` to ``b * s + t``; a missing bias counts as 0, a missing
``gamma`` (``scale=False``) as 1 and a missing ``beta`` (``center=False``) as 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FoldingError",
    "batchnorm_scale_shift",
    "fold_batchnorm",
    "fold_batchnorm_depthwise",
    "fold_batchnorm_transpose",
    "fold_input_affine",
    "fold_dense_dense",
    "fold_pointwise_conv",
]


class FoldingError(ValueError):
    """The requested fold is not exact for these layers (the message says why)."""


def batchnorm_scale_shift(gamma, beta, moving_mean, moving_variance, epsilon, dtype=None):
    """``(s, t)`` with ``BN(x) = x * s + t`` at inference; ``gamma``/``beta`` may be ``None``.

    Computed in float64 and returned in ``dtype`` (default: the dtype of ``moving_mean``).
    """
    mean = np.asarray(moving_mean)
    dtype = np.dtype(dtype or mean.dtype)
    var = np.asarray(moving_variance, dtype=np.float64)
    if var.shape != mean.shape:
        raise FoldingError(f"moving_mean {mean.shape} and moving_variance {var.shape} must have the same shape.")
    s = 1.0 / np.sqrt(var + float(epsilon))
    if gamma is not None:
        s = s * np.asarray(gamma, dtype=np.float64)
    t = -mean.astype(np.float64) * s
    if beta is not None:
        t = t + np.asarray(beta, dtype=np.float64)
    return s.astype(dtype), t.astype(dtype)


def _fold_output_affine(kernel, bias, s, t, channel_axis):
    kernel = np.asarray(kernel)
    channels = kernel.shape[channel_axis]
    if s.shape != (channels,):
        raise FoldingError(
            f"the BatchNormalization has {s.shape[0] if s.ndim else 1} channels but the kernel of shape "
            f"{kernel.shape} produces {channels}."
        )
    shape = [1] * kernel.ndim
    shape[channel_axis] = channels
    new_kernel = (kernel.astype(np.float64) * s.astype(np.float64).reshape(shape)).astype(kernel.dtype)
    b = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    new_bias = (b * s + t).astype(kernel.dtype)
    return new_kernel, new_bias


def fold_batchnorm(kernel, bias, gamma, beta, moving_mean, moving_variance, epsilon):
    """Fold an inference BatchNormalization that FOLLOWS a Dense or ConvND layer.

    ``kernel`` is ``(in, out)`` or ``(k..., in // groups, out)``; ``bias`` is ``(out,)`` or ``None``.
    Returns ``(kernel', bias')`` with ``kernel' = kernel * s`` (per output channel) and
    ``bias' = (bias - moving_mean) * s + beta`` where ``s = gamma / sqrt(moving_variance + epsilon)``.
    """
    s, t = batchnorm_scale_shift(gamma, beta, moving_mean, moving_variance, epsilon, np.float64)
    return _fold_output_affine(kernel, bias, s, t, -1)


def fold_batchnorm_depthwise(kernel, bias, gamma, beta, moving_mean, moving_variance, epsilon):
    """Fold a BatchNormalization that follows a DepthwiseConv2D (kernel ``(kh, kw, in, multiplier)``)."""
    kernel = np.asarray(kernel)
    kh, kw, cin, mult = kernel.shape
    s, t = batchnorm_scale_shift(gamma, beta, moving_mean, moving_variance, epsilon, np.float64)
    flat, new_bias = _fold_output_affine(kernel.reshape(kh, kw, cin * mult), bias, s, t, -1)
    return flat.reshape(kh, kw, cin, mult), new_bias


def fold_batchnorm_transpose(kernel, bias, gamma, beta, moving_mean, moving_variance, epsilon):
    """Fold a BatchNormalization that follows a ConvNDTranspose (kernel ``(k..., out, in)``)."""
    s, t = batchnorm_scale_shift(gamma, beta, moving_mean, moving_variance, epsilon, np.float64)
    return _fold_output_affine(kernel, bias, s, t, -2)


def fold_input_affine(kernel, bias, scale, shift, groups=1, padding="valid"):
    """Fold ``x * scale + shift`` (per input channel, or scalars) that PRECEDES a Dense or ConvND.

    ``layer(x * scale + shift) == layer'(x)`` with ``kernel'[..., i, o] = kernel[..., i, o] * scale[i]``
    and ``bias'[o] = bias[o] + sum_{k, i} shift[i] * kernel[k, i, o]``. Exact for Dense and for
    convolutions with ``padding="valid"``; with zero padding the padded border would see
    ``shift`` instead of 0, so any other padding with a non-zero shift raises :class:`FoldingError`.
    This folds a BatchNormalization placed before the layer, and ``Rescaling``/``Normalization``
    preprocessing into the first layer.
    """
    kernel = np.asarray(kernel)
    k64 = kernel.astype(np.float64)
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    cin = cin_g * groups
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (cin,)) if np.ndim(scale) <= 1 else None
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (cin,)) if np.ndim(shift) <= 1 else None
    if scale is None or shift is None:
        raise FoldingError("only per-channel (or scalar) scale and shift can be folded into a following layer.")
    if padding != "valid" and np.any(shift != 0):
        raise FoldingError(
            f"a shift before a convolution with padding={padding!r} is not exact: the zero-padded border "
            "would see the shift; only padding='valid' (or a zero shift) folds exactly."
        )
    if cout % groups:
        raise FoldingError(f"groups={groups} does not divide the {cout} output channels.")
    cout_g = cout // groups
    # per group g, input channels g*cin_g .. and output channels g*cout_g ..
    sc = scale.reshape(groups, cin_g)
    sh = shift.reshape(groups, cin_g)
    kg = k64.reshape(kernel.shape[:-2] + (cin_g, groups, cout_g))
    new_kernel = kg * np.moveaxis(sc, 0, 1)[..., None]
    extra = np.einsum("kigo,ig->go", kg.reshape((-1,) + kg.shape[-3:]), np.moveaxis(sh, 0, 1))  # k: spatial taps
    b = np.zeros(cout) if bias is None else np.asarray(bias, dtype=np.float64)
    new_bias = b + extra.reshape(cout)
    return new_kernel.reshape(kernel.shape).astype(kernel.dtype), new_bias.astype(kernel.dtype)


def fold_dense_dense(kernel1, bias1, kernel2, bias2):
    """Two Dense layers with no activation between them as one: ``(x @ W1 + b1) @ W2 + b2``.

    Returns ``(W1 @ W2, b1 @ W2 + b2)``; missing biases count as 0.
    """
    w1, w2 = np.asarray(kernel1), np.asarray(kernel2)
    if w1.shape[1] != w2.shape[0]:
        raise FoldingError(f"the first kernel {w1.shape} does not feed the second {w2.shape}.")
    w64 = w1.astype(np.float64) @ w2.astype(np.float64)
    b = np.zeros(w2.shape[1]) if bias2 is None else np.asarray(bias2, dtype=np.float64)
    if bias1 is not None:
        b = b + np.asarray(bias1, dtype=np.float64) @ w2.astype(np.float64)
    return w64.astype(w2.dtype), b.astype(w2.dtype)


def fold_pointwise_conv(kernel1, bias1, kernel2, bias2, padding2="valid"):
    """A 1x1 convolution (stride 1, groups 1, kernel ``(1, ..., 1, cin, cmid)``) followed by a
    convolution (kernel ``(k..., cmid, cout)``, groups 1) as one convolution.

    ``kernel'[k, i, o] = sum_m kernel1[i, m] * kernel2[k, m, o]``; the first bias enters as
    ``bias2 + sum_{k, m} bias1[m] * kernel2[k, m, o]``, exact only when the second convolution
    has ``padding2="valid"`` or the first bias is 0 (:class:`FoldingError` otherwise).
    """
    k1, k2 = np.asarray(kernel1), np.asarray(kernel2)
    if any(d != 1 for d in k1.shape[:-2]):
        raise FoldingError(f"the first convolution must be 1x1; its kernel has shape {k1.shape}.")
    if k1.shape[-1] != k2.shape[-2]:
        raise FoldingError(f"the first kernel {k1.shape} does not feed the second {k2.shape} (groups are not supported).")
    w1 = k1.reshape(k1.shape[-2], k1.shape[-1]).astype(np.float64)
    new_kernel = np.einsum("im,...mo->...io", w1, k2.astype(np.float64))
    b = np.zeros(k2.shape[-1]) if bias2 is None else np.asarray(bias2, dtype=np.float64)
    if bias1 is not None and np.any(np.asarray(bias1) != 0):
        if padding2 != "valid":
            raise FoldingError(
                f"the first convolution's bias cannot be folded through padding={padding2!r}: the padded border "
                "of the intermediate map is 0, not the bias."
            )
        taps = k2.astype(np.float64).reshape((-1,) + k2.shape[-2:])
        b = b + np.einsum("m,kmo->o", np.asarray(bias1, dtype=np.float64), taps)
    return new_kernel.astype(k2.dtype), b.astype(k2.dtype)
