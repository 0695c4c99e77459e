"""Fusion patterns of the transformer family (registered when fusenet.fusion is imported).

=============================  ==============================================  ==============================
pattern name                   run of layers                                   fused layer
=============================  ==============================================  ==============================
``transformer_encoder_block``  ``TransformerEncoderBlock``                     FusedTransformerEncoderBlock
``self_attention``             ``MultiHeadAttention`` (one input)              FusedMultiHeadAttention
``layernorm_dense_activation`` ``LayerNormalization -> Dense -> activation``   FusedLayerNormDense
``layernorm_dense``            ``LayerNormalization -> Dense``                 FusedLayerNormDense
=============================  ==============================================  ==============================

Conditions (a refused run is left untouched and :func:`fusenet.fusion.report` says why): the
LayerNormalization normalises the last axis only (``rms_scaling``, ``center=False`` and
``scale=False`` are supported); the MultiHeadAttention was not built for cross-attention (inputs of
different widths); the encoder block's feed-forward activation is element-wise; no layer of the
run has an activity regularizer (it needs the layer's own output, which a fused run never forms). The two-input
:class:`~fusenet.fusion.FusedDenseResidualLayerNorm` has no sequence pattern (a Sequential passes
one array from layer to layer); it is used directly and inside the fused encoder block.
"""

from __future__ import annotations

from ..layers.attention import MultiHeadAttention, TransformerEncoderBlock
from ..layers.core import Dense
from ..layers.normalization import LayerNormalization
from .engine import LayerSpec, Pattern, register_pattern
from .patterns import ACTIVATION
from .transformer import (FusedLayerNormDense, FusedMultiHeadAttention, FusedTransformerEncoderBlock,
                          attention_condition, layernorm_condition)

__all__ = ["LAYERNORM", "SELF_ATTENTION", "ENCODER_BLOCK"]

LAYERNORM = LayerSpec(LayerNormalization, label="LayerNormalization")
SELF_ATTENTION = LayerSpec(MultiHeadAttention, label="MultiHeadAttention")
ENCODER_BLOCK = LayerSpec(TransformerEncoderBlock, label="TransformerEncoderBlock")


def _activity_reason(run):
    for layer in run:
        if layer.activity_regularizer is not None:
            return f"{layer.describe()} has an activity_regularizer, which needs the layer's own output"
    return None


def _layernorm_dense_condition(run, training):
    return _activity_reason(run) or layernorm_condition(run[0], f"{run[0].describe()}")


def _attention_condition(run, training):
    return _activity_reason(run) or attention_condition(run[0])


def _block_condition(run, training):
    fn = run[0].activation
    if not getattr(fn, "elementwise", False):
        return f"{run[0].describe()} uses the activation {fn.name!r}, which is not element-wise"
    return _activity_reason(run)


def _make(cls):
    return lambda run, training: cls(run)


for _pattern in [
    Pattern("transformer_encoder_block", (ENCODER_BLOCK,), _make(FusedTransformerEncoderBlock), _block_condition,
            FusedTransformerEncoderBlock.pattern),
    Pattern("self_attention", (SELF_ATTENTION,), _make(FusedMultiHeadAttention), _attention_condition,
            FusedMultiHeadAttention.pattern),
    Pattern("layernorm_dense_activation", (LAYERNORM, Dense, ACTIVATION), _make(FusedLayerNormDense),
            _layernorm_dense_condition, FusedLayerNormDense.pattern),
    Pattern("layernorm_dense", (LAYERNORM, Dense), _make(FusedLayerNormDense), _layernorm_dense_condition,
            FusedLayerNormDense.pattern),
]:
    register_pattern(_pattern)
