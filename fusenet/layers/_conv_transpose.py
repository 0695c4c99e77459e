"""Transposed convolutions: Conv1DTranspose, Conv2DTranspose (Keras semantics, channels-last).

A transposed convolution is the adjoint (input gradient) of a convolution: input position ``i``
and kernel tap ``k`` add ``kernel[k] @ x[i]`` into output position ``i * strides + k * dilation -
crop``. Keras layout ``kernel (*kernel_size, filters, in_channels)``, ``bias (filters,)``. Output
size per axis (``eff = (kernel_size - 1) * dilation_rate + 1``):

- ``"valid"``: ``(in - 1) * strides + eff + output_padding`` (default ``output_padding =
  max(eff, strides) - eff``);
- ``"same"``: ``in * strides`` without ``output_padding``, else ``(in - 1) * strides + eff % 2 +
  output_padding``.

The forward is the col2im path of :mod:`fusenet.layers._conv_ops` (one GEMM per chunk, one strided
``+=`` per kernel tap), the backward the im2col path (one GEMM for the input gradient, one for the
kernel gradient, from the same gathered patches).
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
from ._conv_args import (check_strides_dilation, normalize_data_format, normalize_output_padding, normalize_padding,
                         normalize_sizes, owner_name)
from .base import InputSpec, Layer, check_input

__all__ = ["Conv1DTranspose", "Conv2DTranspose"]


class _ConvTranspose(Layer):
    """N-D transposed convolution; ``y = activation(conv_transpose(x, kernel) + bias)``.

    ``x (batch, *spatial, in)``, ``kernel (*kernel_size, filters, in)``, ``y (batch, *out_spatial, filters)``
    with the output sizes of the module docstring.
    """

    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, seed=None, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.filters = check_positive_int(filters, "filters", owner)
        self.kernel_size = normalize_sizes(kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_sizes(strides, self.rank, "strides", owner)
        self.dilation_rate = normalize_sizes(dilation_rate, self.rank, "dilation_rate", owner)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.output_padding = normalize_output_padding(output_padding, self.rank, self.strides, owner)
        self.data_format = normalize_data_format(data_format, owner)
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

    def build(self, input_shape):
        check_input(self, input_shape, self.input_spec)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.describe()}: the channel axis (last) of the input must be known. "
                             f"Received input_shape={tuple(input_shape)}")
        self.compute_output_shape(input_shape)
        self.add_weight("kernel", self.kernel_size + (self.filters, channels), self.kernel_initializer, rng=self._rng,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def _output_sizes(self, input_shape) -> tuple:
        outs = []
        for a, n in enumerate(tuple(input_shape)[1:-1]):
            if n is None:
                outs.append(None)
                continue
            op = None if self.output_padding is None else self.output_padding[a]
            out, _ = ops.conv_transpose_size(n, self.kernel_size[a], self.strides[a], self.dilation_rate[a],
                                             self.padding, op)
            if out <= 0:
                raise ValueError(
                    f"{self.describe()}: the output would have size {out} along spatial axis {a} "
                    f"(input size {n}, kernel_size={self.kernel_size}, strides={self.strides}, "
                    f"padding='{self.padding}', output_padding={self.output_padding}). Received input shape {tuple(input_shape)}."
                )
            outs.append(out)
        return tuple(outs)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        return (input_shape[0],) + self._output_sizes(input_shape) + (self.filters,)

    def forward(self, x, training=False):
        self._output_sizes(x.shape)
        geom = ops.conv_transpose_geometry(x.shape[1:-1], self.kernel_size, self.strides, self.dilation_rate,
                                           self.padding, self.output_padding)
        x = np.ascontiguousarray(x)
        z = ops.conv_transpose_forward(x, self._params["kernel"], geom, bias=self._params.get("bias"))
        linear = self.activation.name == "linear"
        y = z if linear else self.activation.forward(z)
        self._save_for_backward(training, x, geom, None if linear else z, None if linear else y)
        return y

    def backward(self, dy):
        x, geom, z, y = self._saved()
        dz = dy if z is None else self.activation.backward(z, y, dy)
        dz = np.asarray(dz, dtype=x.dtype)
        dx, dk = ops.conv_transpose_backward(x, dz, self._params["kernel"], geom)
        self._grads["kernel"] += dk
        if self.use_bias:
            self._grads["bias"] += dz.reshape(-1, dz.shape[-1]).sum(axis=0)
        return dx

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "output_padding": None if self.output_padding is None else list(self.output_padding),
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
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


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution over ``(batch, steps, channels)``; kernel ``(k, filters, in)``."""

    rank = 1


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution over ``(batch, height, width, channels)``; kernel ``(kh, kw, filters, in)``."""

    rank = 2
