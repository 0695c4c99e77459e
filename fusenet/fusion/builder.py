"""``LayerBuilder``: the user-facing entry points of fusion.

``LayerBuilder.optimize_sequence(layers)`` fuses any list of layers; the factories build
drop-in fused layers from scratch (``LayerBuilder.dense_bn_activation(128)``).
"""

from __future__ import annotations

from ..layers.activation import Activation
from ..layers.core import Dense
from ..layers.normalization import BatchNormalization
from ..layers.regularization import Dropout
from . import conv as _conv
from .dense import FusedDenseActivation, FusedDenseBNActivation, FusedDenseDropoutActivation
from .engine import FusionReport, optimize

__all__ = ["LayerBuilder", "report"]


def report(layers, training: bool = False) -> FusionReport:
    """Which runs of ``layers`` would be fused by which pattern (with the estimated saving), and
    which were not, and why. Nothing is changed."""
    rep = FusionReport()
    optimize(list(layers), training=training, report=rep)
    return rep


class LayerBuilder:
    """Fusion entry points (all static)."""

    @staticmethod
    def optimize_sequence(layers, training: bool = False, report: bool = False):
        """Replace every run of ``layers`` that matches a registered pattern by its fused layer.

        Layers outside any run come back as the same objects; the source layers are never
        changed (fused layers hold copies). ``training=False`` targets inference (BatchNorm
        folded into the weights); ``training=True`` keeps separate parameters that train with a
        fused backward. With ``report=True`` returns ``(layers, FusionReport)``.
        """
        rep = FusionReport() if report else None
        out = optimize(list(layers), training=training, report=rep)
        return (out, rep) if report else out

    @staticmethod
    def dense_bn_activation(units, activation="relu", dropout=None, use_bias=True, momentum=0.99, epsilon=1e-3,
                            **dense_kwargs) -> FusedDenseBNActivation:
        """``Dense(units) -> BatchNormalization -> Activation(activation) [-> Dropout(dropout)]``, fused."""
        run = [Dense(units, use_bias=use_bias, **dense_kwargs), BatchNormalization(momentum=momentum, epsilon=epsilon),
               Activation(activation)]
        if dropout:
            run.append(Dropout(dropout))
        return FusedDenseBNActivation(run, copy_layers=False)

    @staticmethod
    def dense_dropout_activation(units, rate, activation="relu", **dense_kwargs) -> FusedDenseDropoutActivation:
        """``Dense(units) -> Dropout(rate) -> Activation(activation)``, fused."""
        return FusedDenseDropoutActivation([Dense(units, **dense_kwargs), Dropout(rate), Activation(activation)],
                                           copy_layers=False)

    @staticmethod
    def dense_activation(units, activation="gelu", dropout=None, **dense_kwargs) -> FusedDenseActivation:
        """``Dense(units) -> Activation(activation) [-> Dropout]``, fused (bias-GELU by default)."""
        run = [Dense(units, **dense_kwargs), Activation(activation)]
        if dropout:
            run.append(Dropout(dropout))
        return FusedDenseActivation(run, copy_layers=False)

    # the convolution family (fusenet/fusion/conv.py)
    conv_bn_activation = staticmethod(_conv.conv_bn_activation)
    conv_bn_relu = staticmethod(_conv.conv_bn_relu)
    conv_bn_relu_pool = staticmethod(_conv.conv_bn_relu_pool)
    depthwise_separable_bn_activation = staticmethod(_conv.depthwise_separable_bn_activation)
    residual_conv_block = staticmethod(_conv.residual_conv_block)
