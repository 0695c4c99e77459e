"""Fusion patterns of the convolution family (registered when fusenet.fusion is imported).

Each entry is data: a run of layer specs, a condition that may refuse a matching run with a
reason (shown by ``fusion.report``), and the fused layer class that replaces the run.

- ``conv_bn_relu_pool``, ``conv_relu_pool``: Conv -> [BN] -> ReLU -> MaxPooling (:class:`FusedConvBNActivationPool`);
- ``conv_bn_act``, ``conv_bn``, ``conv_act``: :class:`FusedConvBNActivation`;
- ``depthwise_separable_bn_act``, ``depthwise_separable_bn``, ``separable_bn_act``, ``separable_bn``,
  ``separable_act``: :class:`FusedDepthwiseSeparableBNActivation`;
- ``residual_conv_block``: Residual (basic block) -> activation (:class:`FusedResidualConvBlock`);
- inference only: ``affine_conv_bn_act``, ``affine_conv_bn``, ``affine_conv_act``, ``affine_conv``
  (:class:`FusedAffineConv`) and ``pointwise_conv_bn_act``, ``pointwise_conv_bn``, ``pointwise_conv_act``,
  ``pointwise_conv`` (:class:`FusedPointwiseConv`).

Conditions: every BatchNormalization normalises the channels axis only, is trainable in training
(a frozen one runs on moving statistics) and built at inference (moving statistics to fold); no
layer of the run has an activity regularizer (it needs the layer's own output); the folds are
exact (no zero padding read after a shift or a bias) and, for ``pointwise_conv``, cheaper.
"""

from __future__ import annotations

import math

import numpy as np

from ..layers.composite import Residual
from ..layers.convolution import Conv1D, Conv2D, Conv3D, DepthwiseConv2D, SeparableConv2D
from ..layers.core import Dense
from ..layers.normalization import BatchNormalization
from ..layers.pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from ..layers.preprocessing import Normalization, Rescaling
from ._conv_input_fold import affine_of, reads_padding
from ._conv_residual import residual_block_problem
from .conv import (FusedAffineConv, FusedConvBNActivation, FusedConvBNActivationPool,
                   FusedDepthwiseSeparableBNActivation, FusedPointwiseConv, FusedResidualConvBlock)
from .dense import activation_of, is_plain_relu
from .engine import LayerSpec, Pattern, register_pattern
from .folding import FoldingError
from .patterns import ACTIVATION, BATCHNORM, bn_condition

__all__ = ["CONV", "RELU", "MAXPOOL", "RESIDUAL_CONV", "AFFINE", "conv_run_condition"]

_CONVS = (Conv1D, Conv2D, Conv3D)


def _linear(layer) -> bool:
    return layer.activation.name == "linear"


def _is_pointwise_first(layer) -> bool:
    return (_linear(layer) and all(k == 1 for k in layer.kernel_size) and all(s == 1 for s in layer.strides)
            and layer.groups == 1)


def _starts_with_conv(block) -> bool:
    return bool(block.body) and isinstance(block.body[0], _CONVS + (DepthwiseConv2D, SeparableConv2D))


CONV = LayerSpec(_CONVS + (DepthwiseConv2D,), label="Conv1D/2D/3D or DepthwiseConv2D")
DEPTHWISE = LayerSpec(DepthwiseConv2D, label="DepthwiseConv2D")
POINTWISE_LINEAR = LayerSpec(Conv2D, _is_pointwise_first,
                             "Conv2D 1x1 (strides 1, groups 1, no activation)")
SEPARABLE = LayerSpec(SeparableConv2D, label="SeparableConv2D")
RELU = LayerSpec(object, lambda layer: is_plain_relu(activation_of(layer)), "ReLU")
MAXPOOL = LayerSpec((MaxPooling1D, MaxPooling2D, MaxPooling3D), label="MaxPooling1D/2D/3D")
RESIDUAL_CONV = LayerSpec(Residual, _starts_with_conv, "Residual (body starting with a convolution)")
AFFINE = LayerSpec((BatchNormalization, Rescaling, Normalization), label="BatchNormalization/Rescaling/Normalization")
WEIGHTED = LayerSpec(_CONVS + (DepthwiseConv2D, Dense), label="Conv1D/2D/3D, DepthwiseConv2D or Dense")
POINTWISE_FIRST = LayerSpec(_CONVS, _is_pointwise_first, "Conv 1x1 (strides 1, groups 1, no activation)")
CONV_G1 = LayerSpec(_CONVS, lambda layer: layer.groups == 1, "Conv (groups 1)")

_INFERENCE_ONLY = ("folding {what} into the next weighted layer is for inference only: in training both keep "
                   "their own parameters (call optimize_sequence with training=False)")


# ---------------------------------------------------------------- conditions
def _inner_layers(layers):
    for layer in layers:
        if isinstance(layer, Residual):
            yield from _inner_layers(layer.body + layer.shortcut)
        yield layer


def conv_run_condition(run, training):
    """Why ``run`` cannot be fused (or ``None``): every weighted layer followed by another layer of
    the run has no activation of its own, every BatchNormalization passes
    :func:`~fusenet.fusion.patterns.bn_condition`, and no layer has an activity regularizer."""
    for layer, after in zip(run[:-1], run[1:]):
        if isinstance(layer, _CONVS + (DepthwiseConv2D, SeparableConv2D, Dense)) and not _linear(layer):
            return (f"{layer.describe()} has its own activation {layer.activation.name!r}; it must be linear to fuse "
                    f"with the {type(after).__name__} after it")
    for layer in _inner_layers(run):
        if layer.activity_regularizer is not None:
            return f"{layer.describe()} has an activity_regularizer, which needs the layer's own output"
        if isinstance(layer, BatchNormalization):
            reason = bn_condition(layer, training, layer.describe())
            if reason:
                return reason
    return None


def _residual_condition(run, training):
    return residual_block_problem(run[0]) or conv_run_condition(run, training)


def _input_shape(layer):
    shape = layer.build_input_shape
    if shape is None or any(d is None for d in shape[1:]):
        return None
    return tuple(shape)


def _affine_condition(run, training):
    first, weighted = run[0], run[1]
    if training:
        return _INFERENCE_ONLY.format(what=type(first).__name__)
    reason = conv_run_condition(run, training)
    if reason:
        return reason
    if not weighted.built:
        return f"{weighted.describe()} is not built, so its kernel cannot take the fold"
    try:
        _, shift = affine_of(first, weighted.build_input_shape[-1])
    except FoldingError as exc:
        return str(exc)
    if isinstance(weighted, Dense) or not np.any(shift != 0):
        return None
    shape = _input_shape(weighted)
    if shape is None:
        return (f"the input size of {weighted.describe()} is not fully known, so it is unknown whether its "
                f"padding={weighted.padding!r} reads zero padding after the shift of {first.describe()}")
    if reads_padding(weighted._geometry(shape)):
        return (f"a shift before {weighted.describe()} with padding={weighted.padding!r} is not exact: the zero-padded "
                f"border would see the shift of {first.describe()}; only padding='valid' (or a zero shift) folds exactly")
    return None


def _pointwise_condition(run, training):
    first, second = run[0], run[1]
    if training:
        return _INFERENCE_ONLY.format(what="a 1x1 convolution")
    reason = conv_run_condition(run, training)
    if reason:
        return reason
    if first.rank != second.rank:
        return f"{first.describe()} and {second.describe()} have different ranks"
    if not (first.built and second.built):
        return f"{first.describe()} or {second.describe()} is not built, so the kernels cannot be folded"
    cin, cmid, cout = first.build_input_shape[-1], first.filters, second.filters
    taps, stride = math.prod(second.kernel_size), math.prod(second.strides)
    unfused, fused = cin * cmid * stride + taps * cmid * cout, taps * cin * cout
    if fused > unfused:
        return (f"folding would cost more: {fused} multiply-adds per output position instead of {unfused} "
                f"({cin} -> {cmid} -> {cout} channels, {taps} taps)")
    bias = first._params.get("bias")
    if bias is not None and np.any(bias != 0):
        shape = _input_shape(second)
        if shape is None or reads_padding(second._geometry(shape)):
            return (f"the bias of {first.describe()} cannot be folded through the zero padding of {second.describe()} "
                    f"(padding={second.padding!r}): the padded border of the intermediate map is 0, not the bias")
    return None


def _make(cls):
    return lambda run, training: cls(run)


# ---------------------------------------------------------------- the registry entries
_ENTRIES = [
    ("conv_bn_relu_pool", (CONV, BATCHNORM, RELU, MAXPOOL), FusedConvBNActivationPool, conv_run_condition),
    ("conv_relu_pool", (CONV, RELU, MAXPOOL), FusedConvBNActivationPool, conv_run_condition),
    ("conv_bn_act", (CONV, BATCHNORM, ACTIVATION), FusedConvBNActivation, conv_run_condition),
    ("conv_bn", (CONV, BATCHNORM), FusedConvBNActivation, conv_run_condition),
    ("conv_act", (CONV, ACTIVATION), FusedConvBNActivation, conv_run_condition),
    ("depthwise_separable_bn_act", (DEPTHWISE, BATCHNORM, ACTIVATION, POINTWISE_LINEAR, BATCHNORM, ACTIVATION),
     FusedDepthwiseSeparableBNActivation, conv_run_condition),
    ("depthwise_separable_bn", (DEPTHWISE, BATCHNORM, ACTIVATION, POINTWISE_LINEAR, BATCHNORM),
     FusedDepthwiseSeparableBNActivation, conv_run_condition),
    ("separable_bn_act", (SEPARABLE, BATCHNORM, ACTIVATION), FusedDepthwiseSeparableBNActivation,
     conv_run_condition),
    ("separable_bn", (SEPARABLE, BATCHNORM), FusedDepthwiseSeparableBNActivation, conv_run_condition),
    ("separable_act", (SEPARABLE, ACTIVATION), FusedDepthwiseSeparableBNActivation, conv_run_condition),
    ("residual_conv_block", (RESIDUAL_CONV, ACTIVATION), FusedResidualConvBlock, _residual_condition),
    ("affine_conv_bn_act", (AFFINE, WEIGHTED, BATCHNORM, ACTIVATION), FusedAffineConv, _affine_condition),
    ("affine_conv_bn", (AFFINE, WEIGHTED, BATCHNORM), FusedAffineConv, _affine_condition),
    ("affine_conv_act", (AFFINE, WEIGHTED, ACTIVATION), FusedAffineConv, _affine_condition),
    ("affine_conv", (AFFINE, WEIGHTED), FusedAffineConv, _affine_condition),
    ("pointwise_conv_bn_act", (POINTWISE_FIRST, CONV_G1, BATCHNORM, ACTIVATION), FusedPointwiseConv,
     _pointwise_condition),
    ("pointwise_conv_bn", (POINTWISE_FIRST, CONV_G1, BATCHNORM), FusedPointwiseConv, _pointwise_condition),
    ("pointwise_conv_act", (POINTWISE_FIRST, CONV_G1, ACTIVATION), FusedPointwiseConv, _pointwise_condition),
    ("pointwise_conv", (POINTWISE_FIRST, CONV_G1), FusedPointwiseConv, _pointwise_condition),
]

for _name, _sequence, _cls, _condition in _ENTRIES:
    register_pattern(Pattern(_name, _sequence, _make(_cls), _condition, _cls.pattern))
