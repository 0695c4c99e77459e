"""Depthwise and depthwise-separable 2-D convolutions (Keras semantics, channels-last).

- ``DepthwiseConv2D``: every input channel ``c`` is convolved with its own ``depth_multiplier``
  filters, ``y[..., c * m + j] = sum_k x[.., o * s + k * d - p, c] * depthwise_kernel[k, c, j]``;
  weights ``[depthwise_kernel (kh, kw, in, m), bias (in * m,)]``.
- ``SeparableConv2D``: the depthwise step (no bias) followed by a 1x1 convolution (a plain GEMM);
  weights ``[depthwise_kernel (kh, kw, in, m), pointwise_kernel (1, 1, in * m, filters), bias (filters,)]``.

Output sizes as for ``Conv2D`` (``"valid"``: ``ceil((in - eff + 1) / s)``, ``"same"``: ``ceil(in / s)``).
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
from ._conv_args import (check_strides_dilation, checked_geometry, normalize_data_format, normalize_padding,
                         normalize_sizes, owner_name, spatial_output_sizes)
from .base import InputSpec, Layer, check_input

__all__ = ["DepthwiseConv2D", "SeparableConv2D"]

class _Depthwise(Layer):
    """The depthwise 2-D convolution both public classes start from (hyper-parameters, weights, math)."""

    rank = 2

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, seed=None, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.kernel_size = normalize_sizes(kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_sizes(strides, self.rank, "strides", owner)
        self.dilation_rate = normalize_sizes(dilation_rate, self.rank, "dilation_rate", owner)
        self.padding = normalize_padding(padding, ("valid", "same"), owner)
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier", owner)
        self.data_format = normalize_data_format(data_format, owner)
        check_strides_dilation(self.strides, self.dilation_rate, owner)
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = get_initializer(depthwise_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.depthwise_regularizer = _regularizers.get(depthwise_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.depthwise_constraint = _constraints.get(depthwise_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(ndim=self.rank + 2)

    def _check_channels(self, input_shape):
        check_input(self, input_shape, self.input_spec)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.describe()}: the channel axis (last) of the input must be known. "
                             f"Received input_shape={tuple(input_shape)}")
        self.compute_output_shape(input_shape)
        return channels

    def build(self, input_shape):
        channels = self._check_channels(input_shape)
        self.add_weight("depthwise_kernel", self.kernel_size + (channels, self.depth_multiplier),
                        self.depthwise_initializer, rng=self._rng, regularizer=self.depthwise_regularizer,
                        constraint=self.depthwise_constraint)
        if self.use_bias:
            self.add_weight("bias", (channels * self.depth_multiplier,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def _out_channels(self, input_shape):
        c = input_shape[-1]
        return None if c is None else c * self.depth_multiplier

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        outs = spatial_output_sizes(self, input_shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (input_shape[0],) + outs + (self._out_channels(input_shape),)

    def _geometry(self, shape):
        return checked_geometry(self, shape, self.kernel_size, self.strides, self.dilation_rate, self.padding)

    def forward(self, x, training=False):
        geom = self._geometry(x.shape)
        xp = ops.pad_input(np.ascontiguousarray(x), geom)
        z = ops.depthwise_forward(xp, self._params["depthwise_kernel"], geom)
        if self.use_bias:
            z += self._params["bias"]
        linear = self.activation.name == "linear"
        y = z if linear else self.activation.forward(z)
        self._save_for_backward(training, xp, geom, None if linear else z, None if linear else y)
        return y

    def backward(self, dy):
        xp, geom, z, y = self._saved()
        dz = dy if z is None else self.activation.backward(z, y, dy)
        dz = np.asarray(dz, dtype=xp.dtype)
        dx, dk = ops.depthwise_backward(xp, dz, self._params["depthwise_kernel"], geom)
        self._grads["depthwise_kernel"] += dk
        if self.use_bias:
            self._grads["bias"] += dz.reshape(-1, dz.shape[-1]).sum(axis=0)
        return dx

    def _base_config(self):
        return {
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "depth_multiplier": self.depth_multiplier,
            "data_format": self.data_format,
            "dilation_rate": list(self.dilation_rate),
            "activation": _activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": serialize_initializer(self.depthwise_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "depthwise_regularizer": _regularizers.serialize(self.depthwise_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "depthwise_constraint": _constraints.serialize(self.depthwise_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        }

    def get_config(self):
        config = super().get_config()
        config.update(self._base_config())
        return config


class DepthwiseConv2D(_Depthwise):
    """Depthwise 2-D convolution: ``(batch, h, w, in)`` -> ``(batch, oh, ow, in * depth_multiplier)``.

    Weights ``depthwise_kernel (kh, kw, in, depth_multiplier)`` and ``bias (in * depth_multiplier,)``;
    output channel ``c * depth_multiplier + j`` is input channel ``c`` filtered by ``depthwise_kernel[..., c, j]``.
    ``y = activation(depthwise(x) + bias)``.
    """


class SeparableConv2D(_Depthwise):
    """Depthwise-separable 2-D convolution: depthwise (no bias), then a 1x1 convolution to ``filters``.

    ``(batch, h, w, in)`` -> ``(batch, oh, ow, filters)``; weights ``depthwise_kernel (kh, kw, in, m)``,
    ``pointwise_kernel (1, 1, in * m, filters)``, ``bias (filters,)``.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 pointwise_initializer="glorot_uniform", bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, seed=None, **kwargs):
        owner = owner_name(type(self).__name__, kwargs)
        self.filters = check_positive_int(filters, "filters", owner)
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, depthwise_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, depthwise_constraint=depthwise_constraint,
                         bias_constraint=bias_constraint, seed=seed, **kwargs)
        self.pointwise_initializer = get_initializer(pointwise_initializer)
        self.pointwise_regularizer = _regularizers.get(pointwise_regularizer)
        self.pointwise_constraint = _constraints.get(pointwise_constraint)

    def build(self, input_shape):
        channels = self._check_channels(input_shape)
        self.add_weight("depthwise_kernel", self.kernel_size + (channels, self.depth_multiplier),
                        self.depthwise_initializer, rng=self._rng, regularizer=self.depthwise_regularizer,
                        constraint=self.depthwise_constraint)
        self.add_weight("pointwise_kernel", (1, 1, channels * self.depth_multiplier, self.filters),
                        self.pointwise_initializer, rng=self._rng, regularizer=self.pointwise_regularizer,
                        constraint=self.pointwise_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=self.rank + 2, axes={-1: channels})

    def _out_channels(self, input_shape):
        return self.filters

    @staticmethod
    def _pointwise_geometry(geom):
        return ops.ConvGeometry(geom.out_sizes, geom.out_sizes, (1, 1), (1, 1), (1, 1), (0, 0))

    def forward(self, x, training=False):
        geom = self._geometry(x.shape)
        xp = ops.pad_input(np.ascontiguousarray(x), geom)
        h = ops.depthwise_forward(xp, self._params["depthwise_kernel"], geom)
        z = ops.conv_forward(h, self._params["pointwise_kernel"], self._pointwise_geometry(geom),
                             bias=self._params.get("bias"), xp=h)
        linear = self.activation.name == "linear"
        y = z if linear else self.activation.forward(z)
        self._save_for_backward(training, xp, geom, h, None if linear else z, None if linear else y)
        return y

    def backward(self, dy):
        xp, geom, h, z, y = self._saved()
        dz = dy if z is None else self.activation.backward(z, y, dy)
        dz = np.asarray(dz, dtype=xp.dtype)
        dh, dpw = ops.conv_backward(h, dz, self._params["pointwise_kernel"], self._pointwise_geometry(geom))
        dx, ddw = ops.depthwise_backward(xp, dh, self._params["depthwise_kernel"], geom)
        self._grads["depthwise_kernel"] += ddw
        self._grads["pointwise_kernel"] += dpw
        if self.use_bias:
            self._grads["bias"] += dz.reshape(-1, dz.shape[-1]).sum(axis=0)
        return dx

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "pointwise_initializer": serialize_initializer(self.pointwise_initializer),
            "pointwise_regularizer": _regularizers.serialize(self.pointwise_regularizer),
            "pointwise_constraint": _constraints.serialize(self.pointwise_constraint),
        })
        return config
