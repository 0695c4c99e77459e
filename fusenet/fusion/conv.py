"""Fused layers of the convolution family, and their factories.

- :class:`FusedConvBNActivation`: ``Conv1D/2D/3D/DepthwiseConv2D -> [BatchNormalization] -> [activation]``;
- :class:`FusedConvBNActivationPool`: ``Conv -> [BatchNormalization] -> ReLU -> MaxPooling``;
- :class:`FusedDepthwiseSeparableBNActivation`: the MobileNet block;
- :class:`FusedResidualConvBlock`: the ResNet basic block (``Residual`` + ReLU);
- :class:`FusedAffineConv`, :class:`FusedPointwiseConv`: inference-only folds of an affine layer or
  a 1x1 convolution into the next weighted layer.

The factories (``conv_bn_activation(32, 3)`` and friends) build a fused layer from scratch; the
shared arithmetic is in :mod:`fusenet.fusion._conv_stage`.
"""

from __future__ import annotations

from ..layers.activation import Activation
from ..layers.composite import Residual
from ..layers.convolution import Conv1D, Conv2D, Conv3D, DepthwiseConv2D
from ..layers.normalization import BatchNormalization
from ..layers.pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from ._conv_chain import FusedConvBNActivation, FusedConvBNActivationPool, FusedDepthwiseSeparableBNActivation
from ._conv_input_fold import FusedAffineConv, FusedPointwiseConv
from ._conv_residual import FusedResidualConvBlock

__all__ = [
    "FusedConvBNActivation", "FusedConvBNActivationPool", "FusedDepthwiseSeparableBNActivation",
    "FusedResidualConvBlock", "FusedAffineConv", "FusedPointwiseConv",
    "conv_bn_activation", "conv_bn_relu", "conv_bn_relu_pool", "depthwise_separable_bn_activation",
    "residual_conv_block",
]

_CONVS = {1: Conv1D, 2: Conv2D, 3: Conv3D}
_POOLS = {1: MaxPooling1D, 2: MaxPooling2D, 3: MaxPooling3D}


def _conv_class(rank):
    if rank not in _CONVS:
        raise ValueError(f"fusion conv factory: expected rank to be one of [1, 2, 3]. Received: rank={rank!r}")
    return _CONVS[rank]


def _bn(momentum, epsilon):
    return BatchNormalization(momentum=momentum, epsilon=epsilon)


def conv_bn_activation(filters, kernel_size, strides=1, padding="same", activation="relu", use_bias=False,
                       momentum=0.99, epsilon=1e-3, rank=2, **conv_kwargs) -> FusedConvBNActivation:
    """``ConvND(filters, kernel_size) -> BatchNormalization -> Activation(activation)``, fused
    (``rank`` 1, 2 or 3; ``activation=None`` leaves it out; ``conv_kwargs`` go to the conv)."""
    run = [_conv_class(rank)(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, **conv_kwargs),
           _bn(momentum, epsilon)]
    if activation is not None:
        run.append(Activation(activation))
    return FusedConvBNActivation(run, copy_layers=False)


def conv_bn_relu(filters, kernel_size, strides=1, padding="same", use_bias=False, momentum=0.99, epsilon=1e-3,
                 rank=2, **conv_kwargs) -> FusedConvBNActivation:
    """``ConvND -> BatchNormalization -> ReLU``, fused (the CNN building block)."""
    return conv_bn_activation(filters, kernel_size, strides=strides, padding=padding, activation="relu",
                              use_bias=use_bias, momentum=momentum, epsilon=epsilon, rank=rank, **conv_kwargs)


def conv_bn_relu_pool(filters, kernel_size, pool_size=2, pool_strides=None, strides=1, padding="same",
                      use_bias=False, momentum=0.99, epsilon=1e-3, rank=2, **conv_kwargs) -> FusedConvBNActivationPool:
    """``ConvND -> BatchNormalization -> ReLU -> MaxPoolingND(pool_size, pool_strides)``, fused."""
    run = [_conv_class(rank)(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias, **conv_kwargs),
           _bn(momentum, epsilon), Activation("relu"), _POOLS[rank](pool_size, strides=pool_strides)]
    return FusedConvBNActivationPool(run, copy_layers=False)


def depthwise_separable_bn_activation(filters, kernel_size=3, strides=1, padding="same", depth_multiplier=1,
                                      activation="relu", pointwise_activation="same", momentum=0.99, epsilon=1e-3,
                                      use_bias=False) -> FusedDepthwiseSeparableBNActivation:
    """The MobileNet block ``DepthwiseConv2D -> BN -> act -> Conv2D 1x1 (filters) -> BN -> act``, fused.

    ``pointwise_activation`` is the activation after the 1x1 convolution (``"same"``: as
    ``activation``; ``None``: the linear bottleneck of MobileNetV2).
    """
    run = [DepthwiseConv2D(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                           use_bias=use_bias), _bn(momentum, epsilon), Activation(activation),
           Conv2D(filters, 1, use_bias=use_bias), _bn(momentum, epsilon)]
    second = activation if pointwise_activation == "same" else pointwise_activation
    if second is not None:
        run.append(Activation(second))
    return FusedDepthwiseSeparableBNActivation(run, copy_layers=False)


def residual_conv_block(filters, kernel_size=3, strides=1, projection=None, activation="relu", momentum=0.99,
                        epsilon=1e-3, rank=2) -> FusedResidualConvBlock:
    """The ResNet basic block ``Residual([Conv, BN, act, Conv, BN], shortcut) -> act``, fused.

    The shortcut is a 1x1 convolution (stride ``strides``, no bias) + BN when ``projection`` is true
    (default: when ``strides != 1``; pass ``True`` when the input has another number of channels),
    the identity otherwise.
    """
    conv = _conv_class(rank)
    if projection is None:
        projection = strides not in (1, (1,) * rank, [1] * rank)
    body = [conv(filters, kernel_size, strides=strides, padding="same", use_bias=False), _bn(momentum, epsilon),
            Activation(activation), conv(filters, kernel_size, padding="same", use_bias=False), _bn(momentum, epsilon)]
    shortcut = [conv(filters, 1, strides=strides, use_bias=False), _bn(momentum, epsilon)] if projection else None
    return FusedResidualConvBlock([Residual(body, shortcut=shortcut), Activation(activation)], copy_layers=False)
