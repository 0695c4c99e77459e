"""Inference-only folds of a layer into the weighted layer after it.

- :class:`FusedAffineConv`: a per-channel affine map ``x * scale + shift`` (a BatchNormalization,
  ``Rescaling`` or ``Normalization``) before a Conv1D/2D/3D, DepthwiseConv2D or Dense (optionally
  followed by a BatchNormalization and an activation), folded into the kernel and bias with
  :func:`~fusenet.fusion.folding.fold_input_affine`.
- :class:`FusedPointwiseConv`: a 1x1 convolution before a convolution, folded into one kernel with
  :func:`~fusenet.fusion.folding.fold_pointwise_conv`.

Both are exact only where the second layer reads no zero padding (or the shift / first bias is 0);
the patterns refuse other runs, and the layers fall back to applying the first layer explicitly
when an input shape at run time brings padding in. In training the layers run the first layer as
it is and the rest as a fused conv stage (the patterns are registered for inference only).
"""

from __future__ import annotations

import numpy as np

from ..layers import _conv_ops as ops
from ..layers.normalization import BatchNormalization
from ..layers.preprocessing import Normalization, Rescaling
from .base import FusedLayer
from .folding import FoldingError, batchnorm_scale_shift, fold_input_affine, fold_pointwise_conv
from ._conv_stage import CONV_TYPES, act_epilogue, check_channels_axis, parse_stages

__all__ = ["FusedAffineConv", "FusedPointwiseConv", "affine_of", "reads_padding"]


def _per_channel(value, channels: int, what: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return np.full(channels, float(a))
    if all(d == 1 for d in a.shape[:-1]) and a.shape[-1] in (1, channels):
        return np.broadcast_to(a.reshape(-1), (channels,)).copy()
    raise FoldingError(f"{what} of shape {a.shape} is not a scalar or a per-channel vector of {channels} values")


def affine_of(layer, channels: int):
    """``(scale, shift)`` (float64 vectors of ``channels`` values) with ``layer(x) = x * scale + shift``.

    ``layer``: a built BatchNormalization over the channels axis (its inference map), a ``Rescaling``
    or a ``Normalization`` over the last axis. :class:`FoldingError` says why another layer does not fold.
    """
    if isinstance(layer, BatchNormalization):
        if not layer.built:
            raise FoldingError(f"{layer.describe()} is not built, so it has no moving statistics to fold")
        check_channels_axis(layer, layer.describe())
        return batchnorm_scale_shift(layer._params.get("gamma"), layer._params.get("beta"),
                                     layer._state["moving_mean"], layer._state["moving_variance"], layer.epsilon,
                                     np.float64)
    if isinstance(layer, Rescaling):
        return (_per_channel(layer.scale, channels, f"the scale of {layer.describe()}"),
                _per_channel(layer.offset, channels, f"the offset of {layer.describe()}"))
    if isinstance(layer, Normalization):
        if not layer.built:
            raise FoldingError(f"{layer.describe()} is not built, so it has no mean and variance to fold")
        mean = _per_channel(layer._state["mean"], channels, f"the mean of {layer.describe()}")
        std = np.sqrt(np.maximum(_per_channel(layer._state["variance"], channels, f"the variance of {layer.describe()}"),
                                 layer._EPSILON))
        return (std, mean) if layer.invert else (1.0 / std, -mean / std)
    raise FoldingError(f"{layer.describe()} is not a per-channel affine layer (BatchNormalization, Rescaling, Normalization)")


def reads_padding(geom) -> bool:
    """Whether a convolution of geometry ``geom`` reads zero padding (before or after the input)."""
    return any(geom.pad_before) or any(sp > n for sp, n in zip(geom.spans, geom.in_sizes))


class _FusedInputFold(FusedLayer):
    """``first -> stage``: a layer folded into the conv stage after it at inference."""

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        self.first = self.source_layers[0]
        stages = parse_stages(self.source_layers[1:], self._owner())
        if len(stages) != 1:
            raise ValueError(f"{self._owner()}: expected one weighted layer (with an optional BatchNormalization and "
                             f"activation) after {self.first.describe()}. Received: {self.describe_fusion()}")
        self.stage = stages[0]
        self._check_first()

    def _owner(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def _check_first(self) -> None:  # pragma: no cover - every subclass overrides
        pass

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        h = self.first(x, training=True)
        y, cache = self.stage.forward_train(h)
        self._save_for_backward(True, cache)
        return y

    def backward(self, dy):
        (cache,) = self._saved()
        return self.first.backward(self.stage.backward(dy, cache))


class FusedAffineConv(_FusedInputFold):
    """Pattern ``BatchNormalization/Rescaling/Normalization -> Conv/DepthwiseConv2D/Dense [-> BN] [-> activation]``
    (inference only).

    ``layer(x * scale + shift)`` with per-channel ``scale``, ``shift`` is ONE layer with
    ``kernel[..., i, o] * scale[i]`` and ``bias[o] + sum_{k, i} shift[i] * kernel[k, i, o]``
    (a following BatchNormalization folded on top). Exact when the convolution reads no zero
    padding (padding ``"valid"``, a 1x1 kernel, or a zero shift); otherwise the layer applies the
    affine map to the input first (one pass) and runs the folded rest.
    """

    pattern = "BatchNormalization/Rescaling/Normalization -> Conv/Dense [-> BatchNormalization] [-> activation]"

    def _check_first(self):
        if not isinstance(self.first, (BatchNormalization, Rescaling, Normalization)):
            raise TypeError(f"{self._owner()}: expected a BatchNormalization, Rescaling or Normalization first. "
                            f"Received: {self.first.describe()}")

    def _fold(self):
        op = self.stage.op
        kernel = op.kernel()
        channels = op.layer.build_input_shape[-1]
        scale, shift = affine_of(self.first, channels)
        k_in, b_in = fold_input_affine(kernel, op.bias(), scale, shift, groups=op.groups(channels), padding="valid")
        return self.stage.fold(k_in, b_in), self.stage.fold(), (scale.astype(kernel.dtype), shift.astype(kernel.dtype))

    def _inference(self, x):
        folded, plain, (scale, shift) = self.folded()
        _, geom, _ = self.stage.op.prepare(x)
        if reads_padding(geom) and np.any(shift != 0):
            return self.stage.infer(x * scale + shift, *plain)
        return self.stage.infer(x, *folded)


class FusedPointwiseConv(_FusedInputFold):
    """Pattern ``Conv 1x1 (stride 1, groups 1, no activation) -> Conv (groups 1) [-> BN] [-> activation]``
    (inference only).

    Two convolutions with no non-linearity between them are one:
    ``kernel[k, i, o] = sum_m kernel1[i, m] * kernel2[k, m, o]`` and
    ``bias = bias2 + sum_{k, m} bias1[m] * kernel2[k, m, o]``. The first bias folds exactly only when
    the second convolution reads no zero padding; otherwise (a non-zero first bias) the layer runs the
    1x1 convolution first and the folded rest.
    """

    pattern = "Conv 1x1 -> Conv [-> BatchNormalization] [-> activation]"

    def _check_first(self):
        first, op = self.first, self.stage.op
        if not (isinstance(first, CONV_TYPES) and all(k == 1 for k in first.kernel_size)
                and all(s == 1 for s in first.strides) and first.groups == 1 and first.activation.name == "linear"):
            raise ValueError(f"{self._owner()}: the first layer must be a 1x1 convolution with strides 1, groups 1 and no "
                             f"activation. Received: {first.describe()}")
        if op.kind != "conv" or op.layer.groups != 1 or op.layer.rank != first.rank:
            raise ValueError(f"{self._owner()}: the second layer must be a convolution of the same rank with groups=1. "
                             f"Received: {op.describe()}")

    def _fold(self):
        first, op = self.first, self.stage.op
        b1 = first._params.get("bias")
        k, b = fold_pointwise_conv(first._params["kernel"], b1, op.kernel(), op.bias(), padding2="valid")
        has_bias = b1 is not None and bool(np.any(b1 != 0))
        return self.stage.fold(k, b), self.stage.fold(), has_bias

    def _inference(self, x):
        folded, plain, has_bias = self.folded()
        conv = self.stage.op.layer
        geom = conv._geometry(x.shape)
        if has_bias and reads_padding(geom):
            return self.stage.infer(self.first(x), *plain)
        return ops.conv_forward(np.ascontiguousarray(x), folded[0], geom, 1, bias=folded[1],
                                epilogue=act_epilogue(self.stage.act))
