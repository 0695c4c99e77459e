"""Fused Dense blocks: Dense -> [BatchNormalization] -> [activation] -> [Dropout] and friends.

Inference: the BatchNormalization is folded into the kernel and bias once
(:func:`~fusenet.fusion.folding.fold_batchnorm`), and the folded kernel is kept transposed,
``(units, in)`` contiguous, next to it (OpenBLAS runs ``x @ W`` as ``x @ (W^T)^T`` markedly faster on
2 threads at the MLP's shapes: 1.3-1.4 ms against 1.65 for the three GEMMs of the reference MLP at
256 rows; on fewer than :data:`NT_ROWS` rows ``np.matmul`` on ``W`` is the faster one). So the block
is: the bias broadcast into a fresh output array, one accumulating GEMM on NumPy's own BLAS
(:func:`fusenet._blas.gemm`, ``out = x @ W + out``) and the activation in place on that output while
it is in cache (ReLU with ``out=``); Dropout is the identity and costs nothing.

Training: the same parameters as the unfused layers (the Dense kernel and bias, BN gamma and
beta, which keep receiving their own gradients) with batch statistics, the moving statistics
updated exactly as BatchNormalization does and Dropout masks drawn from the Dropout layer's own
generator, so the numbers equal the unfused run. The backward is one pass that reuses a single
gradient buffer: dropout mask, activation derivative, BN backward and the two GEMMs.
"""

from __future__ import annotations

import numpy as np

from .._blas import GEMM_DTYPES, gemm, ones_sum
from ..layers.core import Dense
from ..layers.normalization import BatchNormalization, _standardize
from ..layers.regularization import Dropout
from ._activation import activation_backward, activation_of, apply_activation_, is_plain_relu
from .base import FusedLayer
from .folding import fold_batchnorm, fold_dense_dense

__all__ = ["FusedDenseBNActivation", "FusedDenseDropoutActivation", "FusedDenseActivation", "FusedAffineDense",
           "is_plain_relu", "activation_of", "NT_ROWS", "dense_into"]

#: rows from which the inference GEMM runs on the transposed kernel through :func:`fusenet._blas.gemm`
#: (measured, 2 threads: 256 rows 1.31-1.39 ms against 1.65 for np.matmul; 8 and 64 rows: np.matmul faster)
NT_ROWS = 128


def dense_into(x2, out, kernel, kernel_t, bias):
    """``out = x2 @ kernel + bias`` (2-D, ``out`` preallocated): for :data:`NT_ROWS` rows or more and unit-stride
    rows, the bias broadcast into ``out`` and one accumulating GEMM ``out = x2 @ kernel_t^T + out`` on NumPy's
    own BLAS; otherwise ``np.matmul`` and the bias added in place. Returns ``out``."""
    if (kernel_t is not None and x2.shape[0] >= NT_ROWS and x2.dtype == out.dtype == kernel_t.dtype
            and out.dtype in GEMM_DTYPES and (x2.strides[1] == x2.itemsize or x2.shape[1] == 1)
            and out.strides[1] == out.itemsize):
        if bias is None:
            return gemm(x2, kernel_t, out, 0.0, trans_b=True)
        np.copyto(out, bias)
        return gemm(x2, kernel_t, out, 1.0, trans_b=True)
    np.matmul(x2, kernel, out=out)
    if bias is not None:
        np.add(out, bias, out=out)
    return out


def _accumulate_kernel_grad(x2, g2, grad):
    """``grad += x2^T @ g2`` (``grad`` the kernel's gradient, ``(in, units)``): one accumulating GEMM on NumPy's own
    BLAS (no product array and no second pass) where the layouts allow, else NumPy."""
    if (grad.dtype in GEMM_DTYPES and x2.dtype == g2.dtype == grad.dtype and grad.flags.c_contiguous
            and x2.strides[1] == x2.itemsize and g2.strides[1] == g2.itemsize):
        gemm(x2, g2, grad, 1.0, trans_a=True)
    else:
        grad += x2.T @ g2


class _FusedDenseStages(FusedLayer):
    """Dense, then some of BN / activation / Dropout in the order of the source layers.

    Subclasses only name the pattern; the stage list is read off the source layers.
    """

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        src = self.source_layers
        if not isinstance(src[0], Dense):
            raise TypeError(f"{type(self).__name__}: the first layer must be Dense. Received: {type(src[0]).__name__}")
        self.dense = src[0]
        self.bn = None
        self.activation = None if self.dense.activation.name == "linear" else self.dense.activation
        self.dropout = None
        self.dropout_before_activation = False
        for layer in src[1:]:
            if isinstance(layer, BatchNormalization):
                if self.bn is not None or self.activation is not None or self.dropout is not None:
                    raise ValueError(f"{type(self).__name__}: BatchNormalization must directly follow the Dense layer.")
                self.bn = layer
            elif type(layer) is Dropout:
                if self.dropout is not None:
                    raise ValueError(f"{type(self).__name__}: at most one Dropout.")
                self.dropout = layer
                self.dropout_before_activation = self.activation is None
            elif activation_of(layer) is not None:
                if self.activation is not None:
                    raise ValueError(f"{type(self).__name__}: at most one activation.")
                self.activation = activation_of(layer)
            else:
                raise TypeError(f"{type(self).__name__}: cannot fuse {layer.describe()}.")
        if self.dropout is not None and self.activation is None:
            self.dropout_before_activation = False
        self._relu = is_plain_relu(self.activation)  # (the check reads the config: once, not per call)
        self._gemm_weights = None  # (folded, kernel^T, bias) for the inference GEMM

    # ------------------------------------------------------------ inference
    def _fold(self):
        kernel = self.dense._params["kernel"]
        bias = self.dense._params.get("bias")
        if self.bn is None:
            return kernel, bias
        bn = self.bn
        return fold_batchnorm(kernel, bias, bn._params.get("gamma"), bn._params.get("beta"),
                              bn._state["moving_mean"], bn._state["moving_variance"], bn.epsilon)

    def _inference_weights(self):
        """``(kernel, kernel^T (units, in) contiguous, bias)`` of the current folded weights (made once per fold)."""
        folded = self.folded()
        cached = self._gemm_weights
        if cached is None or cached[0] is not folded:
            kernel, bias = folded
            cached = (folded, kernel, np.ascontiguousarray(kernel.T), bias)
            self._gemm_weights = cached
        return cached[1:]

    def _inference(self, x):
        kernel, kernel_t, bias = self._inference_weights()
        width, units = kernel.shape
        x2 = x.reshape(-1, width) if x.ndim != 2 else x
        if x.dtype == kernel.dtype:
            z = dense_into(x2, np.empty((x2.shape[0], units), dtype=kernel.dtype), kernel, kernel_t, bias)
            if x.ndim != 2:
                z = z.reshape(x.shape[:-1] + (units,))
        else:  # (a direct forward call on another dtype: NumPy's promotion, as the Dense layer)
            z = x @ kernel
            if bias is not None:
                z += bias
        if self._relu:
            return np.maximum(z, 0, out=z)
        return apply_activation_(self.activation, z)

    # ------------------------------------------------------------ training
    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        self._folded = self._gemm_weights = None  # an optimizer step may follow (also when called without __call__)
        dense = self.dense
        z = x @ dense._params["kernel"]
        if dense.use_bias:
            z += dense._params["bias"]
        bn_cache = None
        if self.bn is not None:
            bn = self.bn
            rows = z.reshape(-1, z.shape[-1])
            xhat, inv, mean, var = _standardize(rows, (0,), rows.shape[0], bn.epsilon)
            y = xhat * bn._params["gamma"] if bn.scale else xhat.copy()
            if bn.center:
                y += bn._params["beta"]
            for key, stat in (("moving_mean", mean), ("moving_variance", var)):
                moving = bn._state[key]
                moving *= bn.momentum
                moving += (1.0 - bn.momentum) * stat.reshape(moving.shape)
            bn_cache = (xhat, inv, rows.shape[0])
            z = y.reshape(z.shape)
        mask = None
        dropping = self.dropout is not None and self.dropout.rate > 0
        if dropping and self.dropout_before_activation:
            mask = self.dropout.draw_mask(z.shape, z.dtype)
            z *= mask
        in_place = self.activation is None or self.activation.name == "linear" or is_plain_relu(self.activation)
        pre = None if in_place else z  # ReLU's derivative is read off its output
        post = apply_activation_(self.activation, z, keep_input=pre is not None)
        out = post
        if dropping and not self.dropout_before_activation:
            mask = self.dropout.draw_mask(post.shape, post.dtype)
            out = post * mask
        self._save_for_backward(True, x, bn_cache, mask, pre, post)
        return out

    def backward(self, dy):
        return self._backward_into(dy, None)

    def _backward_into(self, dy, out):
        """:meth:`backward`, with the input gradient written into ``out`` (an array of the input's shape the
        caller owns, e.g. a buffer of a compiled training plan) when given; ``dy`` is only read."""
        x, bn_cache, mask, pre, post = self._saved()
        g = np.array(dy, dtype=post.dtype, copy=True)
        if mask is not None and not self.dropout_before_activation:
            g *= mask
        if self.activation is not None:
            g = activation_backward(self.activation, pre, post, g)
        if mask is not None and self.dropout_before_activation:
            g *= mask
        if bn_cache is not None:
            g = self._bn_backward(g, bn_cache)
        dense = self.dense
        g2 = g.reshape(-1, g.shape[-1])
        _accumulate_kernel_grad(x.reshape(-1, x.shape[-1]), g2, dense._grads["kernel"])
        if dense.use_bias:
            dense._grads["bias"] += g2.sum(axis=0)
        if not self._input_grad_needed:  # the model's input: nobody reads this gradient
            return None
        if out is None:
            return g @ dense._params["kernel"].T
        if not out.flags.c_contiguous:
            out[...] = (g2 @ dense._params["kernel"].T).reshape(out.shape)
            return out
        np.matmul(g2, dense._params["kernel"].T, out=out.reshape(g2.shape[0], -1))
        return out

    def _bn_backward(self, g, cache):
        xhat, inv, count = cache
        bn = self.bn
        rows = g.reshape(-1, g.shape[-1])
        dbeta = ones_sum(rows, 0)[None, :]
        dgamma = np.einsum("ij,ij->j", rows, xhat)[None, :]
        if bn.scale:
            bn._grads["gamma"] += dgamma.reshape(bn._grads["gamma"].shape)
        if bn.center:
            bn._grads["beta"] += dbeta.reshape(bn._grads["beta"].shape)
        k = inv * bn._params["gamma"] if bn.scale else inv
        rows *= k
        scale = k * (1.0 / count)
        rows -= xhat * (dgamma * scale)
        rows -= dbeta * scale
        return rows.reshape(g.shape)


class FusedDenseBNActivation(_FusedDenseStages):
    """Pattern ``Dense -> BatchNormalization -> activation [-> Dropout]`` (BN and activation each optional).

    Inference: one GEMM with BN folded into the kernel and bias, the activation in place, no Dropout.
    Training: batch statistics and moving-statistics updates as BatchNormalization, one fused backward.
    """

    pattern = "Dense -> BatchNormalization -> activation [-> Dropout]"


class FusedDenseDropoutActivation(_FusedDenseStages):
    """Pattern ``Dense -> Dropout -> activation``: the mask and the activation in the same pass over
    the GEMM output; at inference the Dropout is gone and the activation runs in place."""

    pattern = "Dense -> Dropout -> activation"


class FusedDenseActivation(_FusedDenseStages):
    """Pattern ``Dense -> activation`` (also ``Dense(activation=...) -> Dropout``): bias and activation
    applied in place on the GEMM output. With GELU this is the transformer's bias-GELU."""

    pattern = "Dense -> activation"


class FusedAffineDense(FusedLayer):
    """Pattern ``Dense -> Dense`` with no activation on the first: at inference ONE Dense with
    ``W = W1 @ W2`` and ``b = b1 @ W2 + b2`` (:func:`~fusenet.fusion.folding.fold_dense_dense`), then
    the second layer's activation; in training, the two GEMMs on the original parameters."""

    pattern = "Dense(linear) -> Dense"

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        self.first, self.second = self.source_layers
        if self.first.activation.name != "linear":
            raise ValueError(f"{type(self).__name__}: the first Dense must have no activation.")

    def _fold(self):
        return fold_dense_dense(self.first._params["kernel"], self.first._params.get("bias"),
                                self.second._params["kernel"], self.second._params.get("bias"))

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            kernel, bias = self.folded()
            z = x @ kernel
            z += bias
            return apply_activation_(self.second.activation, z)
        self._save_for_backward(True, True)
        return self.second.forward(self.first.forward(x, training=True), training=True)

    def backward(self, dy):
        self._saved()
        return self.first.backward(self.second.backward(dy))
