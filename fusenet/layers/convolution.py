"""Convolution layers: Conv1D, Conv2D, Conv3D, DepthwiseConv2D, SeparableConv2D, Conv1DTranspose, Conv2DTranspose.

Channels-last everywhere: inputs ``(batch, *spatial, channels)``. Keras weight layouts and
``get_weights()`` order:

- ``ConvND``: ``[kernel (*kernel_size, in_channels // groups, filters), bias (filters,)]``;
- ``DepthwiseConv2D``: ``[depthwise_kernel (kh, kw, in_channels, depth_multiplier), bias (in * multiplier,)]``;
- ``SeparableConv2D``: ``[depthwise_kernel (kh, kw, in, multiplier), pointwise_kernel (1, 1, in * multiplier, filters), bias]``;
- ``ConvNDTranspose``: ``[kernel (*kernel_size, filters, in_channels), bias (filters,)]``.

Output size per spatial axis (``eff = (kernel_size - 1) * dilation_rate + 1``):
``"valid"``: ``ceil((in - eff + 1) / strides)``; ``"same"`` and ``"causal"``: ``ceil(in / strides)``
(``"same"`` pads ``max((out - 1) * strides + eff - in, 0)`` zeros, the extra one at the end;
``"causal"`` pads ``eff - 1`` zeros at the start). The arithmetic lives in
:mod:`fusenet.layers._conv_ops` (im2col + one GEMM per cache-sized chunk and group, col2im with one
strided ``+=`` per kernel tap; stride-1 convolutions with 16+ input channels run their forward and
input gradient as one accumulating GEMM per kernel tap, :mod:`fusenet.layers._conv_taps_ops`).
"""

from __future__ import annotations

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from ..utils import check_positive_int, make_rng
from . import _conv_ops as ops
from ._conv_args import (check_groups, check_strides_dilation, checked_geometry, normalize_data_format,
                         normalize_padding, normalize_sizes, owner_name, spatial_output_sizes)
from ._conv_transpose import Conv1DTranspose, Conv2DTranspose
from ._depthwise_conv import DepthwiseConv2D, SeparableConv2D
from .base import InputSpec, Layer, check_input

__all__ = ["Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose"]


def _sum_but_last(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


class _Conv(Layer):
    """N-D convolution (cross-correlation) with ``groups``, ``dilation_rate`` and Keras padding.

    ``y = activation(conv(x, kernel) + bias)`` with ``x (batch, *spatial, in)``, ``kernel
    (*kernel_size, in // groups, filters)``, ``y (batch, *out_spatial, filters)``; output sizes as in
    the module docstring. Subclasses set ``rank`` and the allowed paddings.
    """

    rank = 2
    _paddings = ("valid", "same")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 seed=None, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.filters = check_positive_int(filters, "filters", owner)
        self.kernel_size = normalize_sizes(kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_sizes(strides, self.rank, "strides", owner)
        self.dilation_rate = normalize_sizes(dilation_rate, self.rank, "dilation_rate", owner)
        self.padding = normalize_padding(padding, self._paddings, owner)
        self.data_format = normalize_data_format(data_format, owner)
        self.groups = check_groups(groups, self.filters, owner)
        check_strides_dilation(self.strides, self.dilation_rate, owner)
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    # ------------------------------------------------------------ build and shapes
    def build(self, input_shape):
        check_input(self, input_shape, self.input_spec)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.describe()}: the channel axis (last) of the input must be known. "
                             f"Received input_shape={tuple(input_shape)}")
        if channels % self.groups:
            raise ValueError(
                f"{self.describe()}: the number of input channels must be divisible by groups. Received: "
                f"groups={self.groups}, but the input has {channels} channels (input shape {tuple(input_shape)})."
            )
        self.compute_output_shape(input_shape)
        self.add_weight("kernel", self.kernel_size + (channels // self.groups, self.filters), self.kernel_initializer,
                        rng=self._rng, regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        outs = spatial_output_sizes(self, input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (input_shape[0],) + outs + (self.filters,)

    def _geometry(self, shape) -> ops.ConvGeometry:
        return checked_geometry(self, shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)

    # ------------------------------------------------------------ forward and backward
    def forward(self, x, training=False):
        geom = self._geometry(x.shape)
        x = np.ascontiguousarray(x)
        xp = ops.pad_input(x, geom)
        linear = self.activation.name == "linear"
        epilogue = None
        if not training and not linear and self.activation.elementwise:
            act = self.activation

            def epilogue(chunk):
                chunk[...] = act.forward(chunk)

        z = ops.conv_forward(x, self._params["kernel"], geom, self.groups, bias=self._params.get("bias"),
                             epilogue=epilogue, xp=xp)
        y = z if (linear or epilogue is not None) else self.activation.forward(z)
        self._save_for_backward(training, xp, geom, None if linear else z, None if linear else y)
        return y

    def backward(self, dy):
        xp, geom, z, y = self._saved()
        dz = dy if z is None else self.activation.backward(z, y, dy)
        dz = np.asarray(dz, dtype=xp.dtype)
        # the engine clears _input_grad_needed on the layer reading a model's input (dx goes nowhere)
        dx, dk = ops.conv_backward(xp, dz, self._params["kernel"], geom, self.groups, need_dx=self._input_grad_needed)
        self._grads["kernel"] += dk
        if self.use_bias:
            self._grads["bias"] += _sum_but_last(dz)
        return dx

    # ------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            "activation": _activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": serialize_initializer(self.kernel_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": _constraints.serialize(self.kernel_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        })
        return config


class Conv1D(_Conv):
    """1-D convolution over ``(batch, steps, channels)``; ``padding`` also ``"causal"``
    (``(kernel_size - 1) * dilation_rate`` zeros before the sequence, so ``y[t]`` sees only ``x[<= t]``)."""

    rank = 1
    _paddings = ("valid", "same", "causal")


class Conv2D(_Conv):
    """2-D convolution over ``(batch, height, width, channels)``; kernel ``(kh, kw, in // groups, filters)``."""

    rank = 2


class Conv3D(_Conv):
    """3-D convolution over ``(batch, depth, height, width, channels)``; kernel ``(kd, kh, kw, in // groups, filters)``."""

    rank = 3
