"""The default fusion patterns. Each entry is data: a run of layer specs, a condition and the
fused layer class that replaces the run. Users add theirs with :func:`register_pattern`.

Conditions say why a run that has the right layer types is still left alone (inference: the
BatchNormalization has moving statistics; training: the BN is trainable so that it uses batch
statistics; the BN normalises the last axis, ...).
"""

from __future__ import annotations

from ..layers.core import Dense
from ..layers.normalization import BatchNormalization
from ..layers.regularization import Dropout
from .dense import (FusedAffineDense, FusedDenseActivation, FusedDenseBNActivation, FusedDenseDropoutActivation,
                    activation_of)
from ..layers.composite import Residual
from .engine import LayerSpec, Pattern, copy_composite, register_composite, register_pattern

__all__ = ["DENSE_LINEAR", "DENSE_ACTIVATED", "BATCHNORM", "ACTIVATION", "DROPOUT", "bn_condition"]

DENSE_LINEAR = LayerSpec(Dense, lambda layer: layer.activation.name == "linear", "Dense (no activation)")
DENSE_ACTIVATED = LayerSpec(Dense, lambda layer: layer.activation.name != "linear", "Dense (with an activation)")
BATCHNORM = LayerSpec(BatchNormalization, label="BatchNormalization")
ACTIVATION = LayerSpec(object, lambda layer: activation_of(layer) is not None, "an element-wise activation layer")
DROPOUT = LayerSpec(Dropout, lambda layer: type(layer) is Dropout and layer.noise_shape is None, "Dropout")


def bn_condition(bn, training, position="the BatchNormalization"):
    """Why ``bn`` cannot be fused (or ``None``): it must normalise the last (channels) axis only;
    in training it must be trainable (batch statistics); at inference it must be built (moving statistics)."""
    axis = bn.axis
    if isinstance(axis, list):
        if len(axis) != 1:
            return f"{position} normalises several axes {axis}; only the channels axis can be fused"
        axis = axis[0]
    if bn.built and axis % len(bn.build_input_shape) != len(bn.build_input_shape) - 1:
        return f"{position} normalises axis {bn.axis}, not the last (channels) axis"
    if not bn.built and axis != -1:
        return f"{position} normalises axis {bn.axis}, not -1 (the channels axis)"
    if training and not bn.trainable:
        return f"{position} is frozen (trainable=False) and runs on moving statistics; training-mode fusion needs batch statistics"
    if not training and not bn.built:
        return f"{position} is not built, so it has no moving statistics to fold"
    return None


def _dense_bn_condition(run, training):
    return bn_condition(run[1], training)


def _make(cls):
    return lambda run, training: cls(run)


for _pattern in [
    Pattern("dense_bn_activation_dropout", (DENSE_LINEAR, BATCHNORM, ACTIVATION, DROPOUT), _make(FusedDenseBNActivation),
            _dense_bn_condition, FusedDenseBNActivation.pattern),
    Pattern("dense_bn_activation", (DENSE_LINEAR, BATCHNORM, ACTIVATION), _make(FusedDenseBNActivation),
            _dense_bn_condition, FusedDenseBNActivation.pattern),
    Pattern("dense_bn", (DENSE_LINEAR, BATCHNORM), _make(FusedDenseBNActivation), _dense_bn_condition,
            FusedDenseBNActivation.pattern),
    Pattern("dense_dropout_activation", (DENSE_LINEAR, DROPOUT, ACTIVATION), _make(FusedDenseDropoutActivation),
            None, FusedDenseDropoutActivation.pattern),
    Pattern("dense_activation_dropout", (DENSE_LINEAR, ACTIVATION, DROPOUT), _make(FusedDenseActivation),
            None, FusedDenseActivation.pattern),
    Pattern("dense_activation", (DENSE_LINEAR, ACTIVATION), _make(FusedDenseActivation), None,
            FusedDenseActivation.pattern),
    Pattern("dense_with_activation_dropout", (DENSE_ACTIVATED, DROPOUT), _make(FusedDenseActivation), None,
            "Dense(activation=...) -> Dropout"),
    Pattern("dense_dense", (DENSE_LINEAR, Dense), _make(FusedAffineDense), None, FusedAffineDense.pattern),
]:
    register_pattern(_pattern)


def _rebuild_residual(block, optimize_list):
    """A copy of the Residual whose body and shortcut went through the matcher (``None`` if nothing fused).

    The block is copied first, so the new block shares no layer with the source model."""
    clone = copy_composite(block)
    body, shortcut = optimize_list(clone.body), optimize_list(clone.shortcut)
    if _same(body, clone.body) and _same(shortcut, clone.shortcut):
        return None
    new = Residual(body, shortcut=shortcut, merge=clone.merge, name=block.name, dtype=block.dtype)
    if block.built:
        new.built, new.build_input_shape = True, block.build_input_shape
    return new


def _same(new, old):
    return len(new) == len(old) and all(a is b for a, b in zip(new, old))


register_composite(Residual, _rebuild_residual)
