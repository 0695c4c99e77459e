"""2-D convolution, channels-last, Keras layout, as a tape operation.

``conv2d(x, kernel)``: ``x`` is ``(batch, height, width, in_channels)``, ``kernel`` is
``(kh, kw, in_channels, filters)`` (Keras), the result ``(batch, out_h, out_w, filters)`` with

    y[n, o, p, f] = sum_{i, j, c} x[n, o*sh + i*dh - pad_top, p*sw + j*dw - pad_left, c] * kernel[i, j, c, f]

(zeros outside the input). Padding as Keras: ``"valid"`` gives ``out = ceil((n - (k-1)*d) / s)``,
``"same"`` gives ``out = ceil(n / s)`` with the total padding ``max((out-1)*s + (k-1)*d + 1 - n, 0)``
split with the smaller half first.

The arithmetic is im2col + one GEMM: ``sliding_window_view`` gathers the patches
``(batch, out_h, out_w, kh, kw, in)``, which multiply the kernel reshaped to
``(kh*kw*in, filters)``. The input gradient is ``dcol = g @ kernel^T`` scattered back with one
strided-slice ``+=`` per kernel tap (a loop over the ``kh*kw`` taps, never over samples or
pixels); the kernel gradient is ``col^T @ g``.

The convolution is bilinear, so its two gradients are convolutions of the same geometry
again: ``conv2d_input_grad(g, kernel)`` and ``conv2d_kernel_grad(x, g)`` are tape operations
whose gradients are ``conv2d``, ``conv2d_input_grad`` and ``conv2d_kernel_grad`` — the
convolution is differentiable to any order.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._common import lift_tensor, record
from ..tensor import Tensor

__all__ = ["conv2d"]


class _Geometry(NamedTuple):
    in_hw: tuple
    out_hw: tuple
    kernel_hw: tuple
    strides: tuple
    dilations: tuple
    pads: tuple  # ((top, bottom), (left, right))


def _pair(value, name: str) -> tuple:
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(value)
        except TypeError:
            raise TypeError(f"conv2d: expected {name} to be an int or a pair of ints. Received: {name}={value!r}") from None
        if len(pair) != 2 or not all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in pair):
            raise ValueError(f"conv2d: expected {name} to be an int or a pair of ints. Received: {name}={value!r}")
        pair = tuple(int(v) for v in pair)
    if min(pair) <= 0:
        raise ValueError(f"conv2d: expected {name} to be positive. Received: {name}={value!r}")
    return pair


def _geometry(x_shape, k_shape, strides, padding, dilations) -> _Geometry:
    outs, pads = [], []
    for n, k, s, d in zip(x_shape[1:3], k_shape[:2], strides, dilations):
        eff = (k - 1) * d + 1
        if padding == "valid":
            out = -(-(n - eff + 1) // s)
            before = after = 0
        else:
            out = -(-n // s)
            total = max((out - 1) * s + eff - n, 0)
            before, after = total // 2, total - total // 2
        if out <= 0:
            raise ValueError(
                f"conv2d: the (dilated) kernel {tuple(k_shape[:2])} does not fit the input of spatial size "
                f"{tuple(x_shape[1:3])} with padding='valid'. Received: x.shape={tuple(x_shape)}, kernel.shape={tuple(k_shape)}"
            )
        outs.append(out)
        pads.append((before, after))
    return _Geometry(tuple(x_shape[1:3]), tuple(outs), tuple(k_shape[:2]), tuple(strides), tuple(dilations), tuple(pads))


def _patches(x: np.ndarray, geom: _Geometry) -> np.ndarray:
    """The im2col view ``(batch, out_h, out_w, kh, kw, in)`` of ``x`` (a copy only for padding)."""
    (pt, pb), (pl, pr) = geom.pads
    if pt or pb or pl or pr:
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel_hw, geom.strides, geom.dilations
    oh, ow = geom.out_hw
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    win = win[:, ::sh, ::sw, :, ::dh, ::dw][:, :oh, :ow]
    return win.transpose(0, 1, 2, 4, 5, 3)


def _forward_value(x: np.ndarray, kernel: np.ndarray, geom: _Geometry) -> np.ndarray:
    n = x.shape[0]
    oh, ow = geom.out_hw
    filters = kernel.shape[-1]
    cols = _patches(x, geom).reshape(n * oh * ow, -1)
    return (cols @ kernel.reshape(-1, filters)).reshape(n, oh, ow, filters)


def _input_grad_value(g: np.ndarray, kernel: np.ndarray, geom: _Geometry, x_shape: tuple) -> np.ndarray:
    n, oh, ow, filters = g.shape
    kh, kw, channels, _ = kernel.shape
    (pt, pb), (pl, pr) = geom.pads
    (sh, sw), (dh, dw) = geom.strides, geom.dilations
    h, w = geom.in_hw
    dcol = (g.reshape(-1, filters) @ kernel.reshape(-1, filters).T).reshape(n, oh, ow, kh, kw, channels)
    dxp = np.zeros((n, h + pt + pb, w + pl + pr, channels), dtype=dcol.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :] += dcol[:, :, :, i, j, :]
    return np.ascontiguousarray(dxp[:, pt: pt + h, pl: pl + w, :])


def _kernel_grad_value(x: np.ndarray, g: np.ndarray, geom: _Geometry, k_shape: tuple) -> np.ndarray:
    filters = g.shape[-1]
    cols = _patches(x, geom).reshape(-1, math.prod(k_shape[:3]))
    return (cols.T @ g.reshape(-1, filters)).reshape(k_shape)


def _conv(x: Tensor, kernel: Tensor, geom: _Geometry) -> Tensor:
    out = _forward_value(x._value, kernel._value, geom)
    return record("conv2d", out, (x, kernel), (
        lambda g: _conv_input_grad(g, kernel, geom, x.shape),
        lambda g: _conv_kernel_grad(x, g, geom, kernel.shape),
    ), {"strides": geom.strides, "pads": geom.pads})


def _conv_input_grad(g: Tensor, kernel: Tensor, geom: _Geometry, x_shape: tuple) -> Tensor:
    out = _input_grad_value(g._value, kernel._value, geom, x_shape)
    return record("conv2d_input_grad", out, (g, kernel), (
        lambda xb: _conv(xb, kernel, geom),
        lambda xb: _conv_kernel_grad(xb, g, geom, kernel.shape),
    ))


def _conv_kernel_grad(x: Tensor, g: Tensor, geom: _Geometry, k_shape: tuple) -> Tensor:
    out = _kernel_grad_value(x._value, g._value, geom, k_shape)
    return record("conv2d_kernel_grad", out, (x, g), (
        lambda kb: _conv_input_grad(g, kb, geom, x.shape),
        lambda kb: _conv(x, kb, geom),
    ))


def conv2d(x, kernel, strides=1, padding="valid", dilation_rate=1) -> Tensor:
    """2-D convolution (cross-correlation, as Keras and PyTorch), channels-last.

    Args:
        x: ``(batch, height, width, in_channels)``.
        kernel: ``(kh, kw, in_channels, filters)``.
        strides: an int or ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"`` (Keras).
        dilation_rate: an int or ``(dh, dw)``.

    Returns:
        ``(batch, out_h, out_w, filters)``; add a bias with ``+``.
    """
    x, kernel = lift_tensor(x), lift_tensor(kernel)
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(
            "conv2d: expected x of shape (batch, height, width, channels) and kernel of shape (kh, kw, in, out). "
            f"Received: x.shape={x.shape}, kernel.shape={kernel.shape}"
        )
    if x.shape[-1] != kernel.shape[2]:
        raise ValueError(
            f"conv2d: the input has {x.shape[-1]} channels, but the kernel expects {kernel.shape[2]} (its axis 2). "
            f"Received: x.shape={x.shape}, kernel.shape={kernel.shape}"
        )
    pad_mode = padding.lower() if isinstance(padding, str) else padding
    if pad_mode not in ("valid", "same"):
        raise ValueError(f"conv2d: expected padding to be one of ['valid', 'same']. Received: padding={padding!r}")
    geom = _geometry(x.shape, kernel.shape, _pair(strides, "strides"), pad_mode, _pair(dilation_rate, "dilation_rate"))
    return _conv(x, kernel, geom)
