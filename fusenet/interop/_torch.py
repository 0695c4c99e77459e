"""PyTorch <-> fusenet: :func:`from_torch` and :func:`to_torch` for sequential models.

Layouts. fusenet is channels-last (images ``(N, H, W, C)``), PyTorch channels-first
(``(N, C, H, W)``). A converted model takes its data in its own framework's layout: the fusenet
model of a torch CNN takes channels-last images, the torch model of a fusenet CNN takes
channels-first ones, and both give the same numbers. What that needs:

- kernels: torch ``Conv2d`` weight ``(out, in // groups, kh, kw)`` <-> Keras ``(kh, kw, in // groups, out)``;
  ``Linear`` weight ``(out, in)`` <-> Dense kernel ``(in, out)``;
- Flatten: torch flattens ``(C, H, W)``, fusenet ``(H, W, C)``. Feature ``f = s * C + c`` of
  fusenet (``s`` the flat spatial position) is feature ``t = c * S + s`` of torch, so the first
  Linear after a Flatten of channels-first data gets its kernel rows permuted (and so do the
  per-feature parameters of a BatchNorm1d, LayerNorm or PReLU in between). ``S`` is read off the
  Linear's ``in_features``, so no input size is needed;
- recurrent gates: torch LSTM ``i, f, g, o`` is Keras ``i, f, c, o`` (same order; torch's two biases
  add up into Keras's one); torch GRU ``r, z, n`` is Keras ``z, r, h`` with ``reset_after=True``
  (the first two blocks swap; ``b_ih``/``b_hh`` are the rows of Keras's ``(2, 3u)`` bias);
- BatchNorm: torch ``momentum=m`` is Keras ``momentum=1-m``; ``eps``, ``weight``/``bias``,
  ``running_mean``/``running_var`` map one to one (at inference both compute
  ``(x - mean) / sqrt(var + eps) * gamma + beta``).

An ``nn.LSTM``/``nn.GRU`` inside an ``nn.Sequential`` must be followed by
:class:`fusenet.interop.RNNOutput` (it returns ``(output, state)``); ``RNNOutput(False)`` is Keras's
``return_sequences=False`` (the last step). :class:`~fusenet.interop.ToChannelsFirst` /
:class:`~fusenet.interop.ToChannelsLast` mark a change from a sequence part to a convolutional one.
"""

from __future__ import annotations

import math

import numpy as np

from .. import layers as L
from ..activations import functions as F
from ..layers._conv_ops import conv_padding

__all__ = ["from_torch", "to_torch", "supported_torch_modules", "supported_fusenet_layers"]


def _torch():
    try:
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("fusenet.interop.from_torch/to_torch need PyTorch: pip install torch "
                          "(the fusenet extra 'torch').") from exc
    from . import _torch_modules as tm

    return torch, nn, tm


def _np(t):
    return t.detach().cpu().numpy().copy()


def _pair(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _flat_order(n, channels, owner):
    """``perm`` with fusenet feature ``f`` = torch feature ``perm[f]`` after flattening ``channels`` channels."""
    if n % channels:
        raise ValueError(f"{owner}: {n} features cannot come from flattening {channels} channels.")
    spatial = n // channels
    f = np.arange(n)
    s, c = np.divmod(f, channels)
    return c * spatial + s


# ---------------------------------------------------------------- torch -> fusenet
class _FromTorch:
    """The conversion state: the torch tensor's layout (channels-first or not), rank and channels."""

    def __init__(self, nn, tm, dtype):
        self.nn, self.tm, self.dtype = nn, tm, dtype
        self.cf = False
        self.rank = None
        self.channels = None
        self.flat_channels = None  # set by a Flatten of channels-first data until the next Linear
        self.layers: list = []
        self.weights: list = []

    # ------------------------------------------------------------ helpers
    def add(self, layer, weights=None):
        self.layers.append(layer)
        if weights is not None:
            self.weights.append((layer, [np.asarray(w) for w in weights]))
        return layer

    def prebuilt(self, layer, features):
        """``layer`` built for ``(batch, features)`` when the input is a matrix: after a Flatten of
        unknown spatial size the model cannot tell the number of features, the torch module can."""
        if self.rank == 2:
            layer._build_for((None, features), self.dtype)
        return layer

    def refuse(self, m, why):
        raise ValueError(f"fusenet.interop.from_torch: cannot convert {type(m).__name__} ({m}): {why}.")

    def perm(self, n, m):
        if self.flat_channels is None:
            return None
        return _flat_order(n, self.flat_channels, f"fusenet.interop.from_torch ({type(m).__name__})")

    def axis(self, dim, m):
        """The fusenet axis of torch's ``dim``."""
        if dim is None:
            self.refuse(m, "an implicit dim (dim=None) is ambiguous; pass dim=")
        if self.rank is None:
            if dim == -1 and not self.cf:
                return -1
            self.refuse(m, "the rank of its input is unknown; pass input_shape= to from_torch")
        d = dim % self.rank
        if d == 0:
            self.refuse(m, "it works along the batch axis")
        if not self.cf:
            return d
        return -1 if d == 1 else d - 1

    def need_cf(self, m):
        if not self.cf and self.rank is not None and self.rank >= 3:
            self.refuse(m, "its input is channels-last; put fusenet.interop.ToChannelsFirst() before it")
        if self.rank is not None and self.rank < 3:
            self.refuse(m, f"it needs a (N, C, ...) input, but its input has rank {self.rank}")
        self.cf = True

    # ------------------------------------------------------------ input
    def start(self, mods, input_shape):
        """The fusenet input shape (without batch), from ``input_shape`` (torch layout) or the first module."""
        nn = self.nn
        first = mods[0]
        cf_family = (nn.Conv1d, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
                     nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                     nn.Softmax2d, nn.Dropout1d, nn.Dropout2d, self.tm.ToChannelsLast)
        if input_shape is not None:
            shape = tuple(None if d is None else int(d) for d in input_shape)
            self.rank = len(shape) + 1
            layout = next((m for m in mods if type(m) not in _elementwise_modules(nn)), first)
            self.cf = self.rank >= 3 and (isinstance(layout, cf_family) or (isinstance(layout, nn.BatchNorm1d) and self.rank == 3)
                                          or (isinstance(layout, nn.Flatten) and self.rank >= 4))
            if self.cf:
                self.channels = shape[0]
                return shape[1:] + shape[:1]
            return shape
        if isinstance(first, nn.Linear):
            self.rank = 2
            return (first.in_features,)
        if isinstance(first, (nn.Conv1d, nn.Conv2d)):
            n = 1 if isinstance(first, nn.Conv1d) else 2
            self.rank, self.cf, self.channels = n + 2, True, first.in_channels
            return (None,) * n + (first.in_channels,)
        if isinstance(first, nn.BatchNorm2d):
            self.rank, self.cf, self.channels = 4, True, first.num_features
            return (None, None, first.num_features)
        if isinstance(first, nn.BatchNorm1d):
            self.rank = 2
            return (first.num_features,)
        if isinstance(first, (nn.LSTM, nn.GRU)):
            self.rank = 3
            return (None, first.input_size)
        if isinstance(first, nn.Embedding):
            self.rank = 2
            return (None,)
        if isinstance(first, nn.LayerNorm):
            self.rank = len(first.normalized_shape) + 1
            return tuple(first.normalized_shape)
        raise ValueError(f"fusenet.interop.from_torch: cannot tell the input shape from the first module "
                         f"{type(first).__name__}; pass input_shape= (torch layout, without the batch axis).")

    # ------------------------------------------------------------ modules
    def convert(self, m, nxt) -> int:
        """Convert module ``m`` (``nxt`` follows it); returns how many modules were used (1 or 2)."""
        nn, tm = self.nn, self.tm
        kind = type(m)
        if self.flat_channels is not None and kind not in _per_feature_modules(nn) and kind not in _elementwise_modules(nn):
            self.refuse(m, "between a Flatten of channels-first data and the next Linear only activations, "
                           "Dropout, BatchNorm1d, LayerNorm and PReLU are supported")
        if kind in (nn.Identity, nn.Dropout, nn.AlphaDropout, nn.Dropout1d, nn.Dropout2d):
            self._dropout(m)
        elif kind is nn.Linear:
            self._linear(m)
        elif kind in (nn.Conv1d, nn.Conv2d):
            self._conv(m)
        elif kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            self._batchnorm(m)
        elif kind in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d):
            self._pool(m)
        elif kind in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d):
            self._adaptive_pool(m)
        elif kind is nn.Flatten:
            self._flatten(m)
        elif kind in (nn.LSTM, nn.GRU):
            return self._recurrent(m, nxt)
        elif kind is nn.Embedding:
            self._embedding(m)
        elif kind is nn.LayerNorm:
            self._layernorm(m)
        elif kind is nn.PReLU:
            self._prelu(m)
        elif kind is tm.ToChannelsFirst:
            if self.cf:
                self.refuse(m, "its input is already channels-first")
            self.cf, self.channels = True, None
        elif kind is tm.ToChannelsLast:
            if not self.cf:
                self.refuse(m, "its input is not channels-first")
            self.cf = False
        elif kind in _activation_makers(nn):
            self.add(_activation_makers(nn)[kind](m, self))
        else:
            raise ValueError(f"fusenet.interop.from_torch: {kind.__module__}.{kind.__name__} is not supported. "
                             f"Supported modules: {supported_torch_modules()}")
        return 1

    def _dropout(self, m):
        nn = self.nn
        kind = type(m)
        if kind is nn.Identity:
            return
        if kind is nn.Dropout:
            self.add(L.Dropout(m.p, dtype=self.dtype))
        elif kind is nn.AlphaDropout:
            self.add(L.AlphaDropout(m.p, dtype=self.dtype))
        else:
            self.need_cf(m)
            self.add((L.SpatialDropout1D if kind is nn.Dropout1d else L.SpatialDropout2D)(m.p, dtype=self.dtype))

    def _linear(self, m):
        if self.cf and (self.rank or 0) >= 3:
            self.refuse(m, "torch applies it to the last (spatial) axis of a channels-first tensor; flatten first")
        layer = L.Dense(m.out_features, use_bias=m.bias is not None, dtype=self.dtype)
        layer._build_for((None, m.in_features), self.dtype)  # the input size may be unknown until data arrives
        kernel = _np(m.weight).T
        perm = self.perm(m.in_features, m)
        if perm is not None:
            kernel = kernel[perm]
        self.flat_channels = None
        self.add(layer, [kernel] + ([_np(m.bias)] if m.bias is not None else []))

    def _conv(self, m):
        self.need_cf(m)
        n = 1 if isinstance(m, self.nn.Conv1d) else 2
        if m.padding_mode != "zeros":
            self.refuse(m, f"padding_mode={m.padding_mode!r} (only 'zeros')")
        k, s, d = _pair(m.kernel_size, n), _pair(m.stride, n), _pair(m.dilation, n)
        if max(s) > 1 and max(d) > 1:
            self.refuse(m, "fusenet (as Keras) does not combine strides > 1 with dilation > 1")
        p = m.padding
        if p == "valid" or (not isinstance(p, str) and not any(_pair(p, n))):
            padding = "valid"
        elif p == "same" or (max(s) == 1 and all(2 * pi == (ki - 1) * di for pi, ki, di in zip(_pair(p, n), k, d))):
            padding = "same"
        else:
            pairs = tuple((pi, pi) for pi in _pair(p, n))
            self.add((L.ZeroPadding1D if n == 1 else L.ZeroPadding2D)(pairs[0] if n == 1 else pairs, dtype=self.dtype))
            padding = "valid"
        cls = L.Conv1D if n == 1 else L.Conv2D
        layer = cls(m.out_channels, k, strides=s, padding=padding, dilation_rate=d, groups=m.groups,
                    use_bias=m.bias is not None, dtype=self.dtype)
        kernel = np.transpose(_np(m.weight), tuple(range(2, n + 2)) + (1, 0))
        self.channels = m.out_channels
        self.add(layer, [kernel] + ([_np(m.bias)] if m.bias is not None else []))

    def _batchnorm(self, m):
        if not m.track_running_stats or m.running_mean is None:
            self.refuse(m, "track_running_stats=False normalises with batch statistics at inference")
        momentum = 0.99 if m.momentum is None else round(1.0 - float(m.momentum), 12)
        axis = -1
        if isinstance(m, self.nn.BatchNorm2d):
            self.need_cf(m)
        elif self.rank == 3 and not self.cf:
            axis = 1  # BatchNorm1d normalises axis 1 of (N, C, L): here the time axis of a channels-last tensor
        arrays = ([_np(m.weight), _np(m.bias)] if m.affine else []) + [_np(m.running_mean), _np(m.running_var)]
        perm = self.perm(m.num_features, m)
        if perm is not None:
            arrays = [a[perm] for a in arrays]
        if self.cf:
            self.channels = m.num_features
        layer = L.BatchNormalization(axis=axis, momentum=momentum, epsilon=m.eps, center=m.affine, scale=m.affine,
                                     dtype=self.dtype)
        self.add(self.prebuilt(layer, m.num_features), arrays)

    def _pool(self, m):
        self.need_cf(m)
        nn = self.nn
        n = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
        k = _pair(m.kernel_size, n)
        s = k if m.stride is None or m.stride == () else _pair(m.stride, n)
        if any(_pair(m.padding, n)) or m.ceil_mode:
            self.refuse(m, "only padding=0 and ceil_mode=False have a Keras equivalent")
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            if any(di != 1 for di in _pair(m.dilation, n)) or m.return_indices:
                self.refuse(m, "dilation and return_indices have no Keras equivalent")
            cls = L.MaxPooling1D if n == 1 else L.MaxPooling2D
        else:
            if getattr(m, "divisor_override", None) is not None:
                self.refuse(m, "divisor_override has no Keras equivalent")
            cls = L.AveragePooling1D if n == 1 else L.AveragePooling2D
        self.add(cls(k, strides=s, padding="valid", dtype=self.dtype))

    def _adaptive_pool(self, m):
        self.need_cf(m)
        nn = self.nn
        n = 1 if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)) else 2
        if any(o != 1 for o in _pair(m.output_size, n)):
            self.refuse(m, "only output_size=1 (global pooling) has a Keras equivalent")
        avg = isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d))
        cls = {(1, True): L.GlobalAveragePooling1D, (2, True): L.GlobalAveragePooling2D,
               (1, False): L.GlobalMaxPooling1D, (2, False): L.GlobalMaxPooling2D}[(n, avg)]
        self.add(cls(keepdims=True, dtype=self.dtype))

    def _flatten(self, m):
        if m.start_dim != 1 or m.end_dim != -1:
            self.refuse(m, "only Flatten(start_dim=1, end_dim=-1)")
        if self.cf and (self.rank is None or self.rank >= 3):
            if self.channels is None:
                self.refuse(m, "the number of channels before it is unknown; pass input_shape= to from_torch")
            self.flat_channels = self.channels
        self.cf, self.rank = False, 2
        self.add(L.Flatten(dtype=self.dtype))

    def _recurrent(self, m, nxt) -> int:
        nn, tm = self.nn, self.tm
        if not m.batch_first:
            self.refuse(m, "only batch_first=True (fusenet's (batch, time, features) layout)")
        if m.bidirectional or getattr(m, "proj_size", 0):
            self.refuse(m, "bidirectional and proj_size are not supported")
        if self.cf:
            self.refuse(m, "its input is channels-first; put fusenet.interop.ToChannelsLast() before it")
        uses = 2 if isinstance(nxt, tm.RNNOutput) else 1
        return_sequences = nxt.return_sequences if uses == 2 else True
        u = m.hidden_size
        gru = isinstance(m, nn.GRU)
        order = np.r_[u:2 * u, 0:u, 2 * u:3 * u] if gru else np.arange(4 * u)
        for layer_index in range(m.num_layers):
            last = layer_index == m.num_layers - 1
            kw = dict(return_sequences=return_sequences if last else True, use_bias=m.bias, dtype=self.dtype)
            layer = L.GRU(u, reset_after=True, **kw) if gru else L.LSTM(u, unit_forget_bias=False, **kw)
            w_ih, w_hh = (_np(getattr(m, f"weight_{k}_l{layer_index}")) for k in ("ih", "hh"))
            arrays = [w_ih[order].T, w_hh[order].T]
            if m.bias:
                b_ih, b_hh = (_np(getattr(m, f"bias_{k}_l{layer_index}"))[order] for k in ("ih", "hh"))
                arrays.append(np.stack([b_ih, b_hh]) if gru else b_ih + b_hh)
            self.add(layer, arrays)
        self.rank = 3 if return_sequences else 2
        return uses

    def _embedding(self, m):
        if m.max_norm is not None:
            self.refuse(m, "max_norm renormalises rows at lookup time")
        self.add(L.Embedding(m.num_embeddings, m.embedding_dim, dtype=self.dtype), [_np(m.weight)])
        self.rank = None if self.rank is None else self.rank + 1
        self.cf = False

    def _layernorm(self, m):
        k = len(m.normalized_shape)
        if self.cf:
            self.refuse(m, "it normalises the trailing axes of a channels-first tensor; put ToChannelsLast() before it")
        axis = -1 if k == 1 else list(range(-k, 0))
        weight = None if m.weight is None else _np(m.weight)
        bias = None if getattr(m, "bias", None) is None else _np(m.bias)
        perm = self.perm(int(np.prod(m.normalized_shape)), m) if k == 1 else None
        if perm is not None:
            weight = None if weight is None else weight[perm]
            bias = None if bias is None else bias[perm]
        layer = L.LayerNormalization(axis=axis, epsilon=m.eps, center=bias is not None, scale=weight is not None,
                                     dtype=self.dtype)
        if k == 1:
            self.prebuilt(layer, m.normalized_shape[0])
        self.add(layer, [a for a in (weight, bias) if a is not None])

    def _prelu(self, m):
        alpha = _np(m.weight)
        if self.rank is None:
            self.refuse(m, "the rank of its input is unknown; pass input_shape= to from_torch")
        r = self.rank
        if self.cf:
            shared = list(range(1, r - 1)) if m.num_parameters > 1 else list(range(1, r))
            alpha = alpha.reshape((1,) * (r - 2) + (-1,)) if m.num_parameters > 1 else alpha.reshape((1,) * (r - 1))
        else:
            if m.num_parameters > 1 and r != 2:
                self.refuse(m, "per-channel slopes on a channels-last tensor of rank > 2")
            shared = None if m.num_parameters > 1 else list(range(1, r))
            alpha = alpha if m.num_parameters > 1 else alpha.reshape((1,) * (r - 1))
            perm = self.perm(m.num_parameters, m) if m.num_parameters > 1 else None
            if perm is not None:
                alpha = alpha[perm]
        layer = L.PReLU(shared_axes=shared, dtype=self.dtype)
        if not self.cf and m.num_parameters > 1:
            self.prebuilt(layer, m.num_parameters)
        self.add(layer, [alpha])


def _elementwise_modules(nn):
    return tuple(k for k in _activation_makers(nn) if k not in (nn.Softmax2d, nn.GLU)) + (
        nn.Identity, nn.Dropout, nn.AlphaDropout)


def _per_feature_modules(nn):
    return (nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.PReLU)


def _activation_makers(nn):
    """torch activation module -> ``maker(module, state)`` of the fusenet layer."""
    def axis_layer(cls):
        return lambda m, s: cls(axis=s.axis(m.dim, m), dtype=s.dtype)

    return {
        nn.ReLU: lambda m, s: L.ReLU(dtype=s.dtype),
        nn.ReLU6: lambda m, s: L.ReLU6(dtype=s.dtype),
        nn.LeakyReLU: lambda m, s: L.LeakyReLU(negative_slope=m.negative_slope, dtype=s.dtype),
        nn.ELU: lambda m, s: L.ELU(alpha=m.alpha, dtype=s.dtype),
        nn.SELU: lambda m, s: L.SELU(dtype=s.dtype),
        nn.CELU: lambda m, s: L.CELU(alpha=m.alpha, dtype=s.dtype),
        nn.GELU: lambda m, s: L.GELU(approximate=m.approximate, dtype=s.dtype),
        nn.SiLU: lambda m, s: L.SiLU(dtype=s.dtype),
        nn.Mish: lambda m, s: L.Mish(dtype=s.dtype),
        nn.Sigmoid: lambda m, s: L.Sigmoid(dtype=s.dtype),
        nn.Tanh: lambda m, s: L.Tanh(dtype=s.dtype),
        nn.Softplus: lambda m, s: L.Softplus(beta=m.beta, threshold=m.threshold, dtype=s.dtype),
        nn.Softsign: lambda m, s: L.Softsign(dtype=s.dtype),
        nn.Hardtanh: lambda m, s: L.Hardtanh(m.min_val, m.max_val, dtype=s.dtype),
        nn.Hardswish: lambda m, s: L.Hardswish(dtype=s.dtype),
        nn.Hardsigmoid: lambda m, s: L.Hardsigmoid(dtype=s.dtype),
        nn.LogSigmoid: lambda m, s: L.LogSigmoid(dtype=s.dtype),
        nn.Tanhshrink: lambda m, s: L.Tanhshrink(dtype=s.dtype),
        nn.Hardshrink: lambda m, s: L.Hardshrink(m.lambd, dtype=s.dtype),
        nn.Softshrink: lambda m, s: L.Softshrink(m.lambd, dtype=s.dtype),
        nn.Threshold: lambda m, s: L.Threshold(m.threshold, m.value, dtype=s.dtype),
        nn.RReLU: lambda m, s: L.RReLU(m.lower, m.upper, dtype=s.dtype),
        nn.Softmax: axis_layer(L.Softmax),
        nn.LogSoftmax: axis_layer(L.LogSoftmax),
        nn.Softmin: axis_layer(L.Softmin),
        nn.GLU: axis_layer(L.GLU),
        nn.Softmax2d: lambda m, s: (s.need_cf(m), L.Softmax2d(dtype=s.dtype))[1],
    }


def _leaves(module, nn, tm):
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child, nn, tm)]
    return [module]


def supported_torch_modules() -> list:
    """The names of the ``torch.nn`` modules :func:`from_torch` converts."""
    _, nn, tm = _torch()
    names = {k.__name__ for k in _activation_makers(nn)}
    names |= {"Sequential", "Identity", "Dropout", "AlphaDropout", "Dropout1d", "Dropout2d", "Linear", "Conv1d",
              "Conv2d", "BatchNorm1d", "BatchNorm2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
              "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "Flatten", "LSTM",
              "GRU", "Embedding", "LayerNorm", "PReLU", "RNNOutput", "ToChannelsFirst", "ToChannelsLast"}
    return sorted(names)


def from_torch(module, input_shape=None, name=None):
    """A fusenet :class:`~fusenet.models.Sequential` computing what ``module`` computes in eval mode.

    Args:
        module: a ``torch.nn.Sequential`` (nested Sequentials are flattened) or a single module of
            the supported kinds (:func:`supported_torch_modules`).
        input_shape: the input shape in torch's layout without the batch axis, e.g. ``(3, 32, 32)``;
            optional when the first module tells it (Linear, Conv1d/2d, BatchNorm, LSTM/GRU,
            Embedding, LayerNorm; spatial sizes then stay unknown).
        name: the model's name.

    The model takes channels-last data where the torch module takes channels-first data (see the
    module docstring); its weights are copies. Raises ``ValueError`` naming a module that has no
    fusenet equivalent (and listing the supported ones).
    """
    torch, nn, tm = _torch()
    if not isinstance(module, nn.Module):
        raise TypeError(f"fusenet.interop.from_torch: expected a torch.nn.Module. Received: {type(module).__name__}")
    mods = _leaves(module, nn, tm)
    if not mods:
        raise ValueError("fusenet.interop.from_torch: the module is empty.")
    param = next(module.parameters(), None)
    dtype = "float64" if param is not None and param.dtype == torch.float64 else "float32"
    conv = _FromTorch(nn, tm, dtype)
    shape = conv.start(mods, input_shape)
    i = 0
    while i < len(mods):
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(mods[i], tm.RNNOutput):
            conv.refuse(mods[i], "it must directly follow an nn.LSTM or nn.GRU")
        i += conv.convert(mods[i], nxt)
    from ..models import Sequential

    model = Sequential([L.Input(shape, dtype=dtype)] + conv.layers, name=name)
    for layer, arrays in conv.weights:
        layer.set_weights(arrays)
    return model


# ---------------------------------------------------------------- fusenet -> torch
def _expand(layers):
    from ..fusion.base import FusedLayer

    out = []
    for layer in layers:
        if isinstance(layer, FusedLayer):
            out.extend(_expand(layer.unfuse()))
        elif not isinstance(layer, L.Input):
            out.append(layer)
    return out


_IDENTITY_LAYERS = (L.Identity, L.GaussianNoise, L.GaussianDropout, L.ActivityRegularization)


class _ToTorch:
    def __init__(self, nn, tm, rank, cf, dtype):
        import torch

        self.nn, self.tm = nn, tm
        self.np_dtype = np.dtype(dtype)
        self.torch_dtype = torch.float64 if self.np_dtype == np.float64 else torch.float32
        self.rank = rank
        self.cf = cf
        self.flat_channels = None  # set by a Flatten of channels-first data until the next Dense
        self.modules: list = []

    def refuse(self, layer, why):
        raise ValueError(f"fusenet.interop.to_torch: cannot convert {layer.describe()}: {why}.")

    def to_cf(self):
        if not self.cf and self.rank >= 3:
            self.modules.append(self.tm.ToChannelsFirst())
            self.cf = True

    def to_native(self):
        if self.cf:
            self.modules.append(self.tm.ToChannelsLast())
            self.cf = False

    def axis(self, a, layer):
        a = a % self.rank
        if not self.cf:
            return a
        return 1 if a == self.rank - 1 else a + 1

    def set(self, module, **arrays):
        """Copy NumPy ``arrays`` into the named parameters/buffers of ``module`` (in the model's dtype)."""
        import torch

        module.to(self.torch_dtype)
        with torch.no_grad():
            for key, value in arrays.items():
                getattr(module, key).copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=self.np_dtype)))
        return module

    def permuted(self, array):
        """``array`` (features on its last axis, fusenet order) in torch's feature order, after a
        Flatten of channels-first data (the number of features gives the flattened spatial size)."""
        if self.flat_channels is None:
            return array
        perm = _flat_order(array.shape[-1], self.flat_channels, "fusenet.interop.to_torch")
        out = np.empty_like(array)
        out[..., perm] = array
        return out

    # ------------------------------------------------------------ layers
    def convert(self, layer):
        nn = self.nn
        kind = type(layer)
        if self.flat_channels is not None and kind not in (L.Dense, L.BatchNormalization, L.Dropout, L.LayerNormalization,
                                                          L.PReLU, L.RReLU) \
                and not (_is_function_layer(layer) and kind is not L.GLU):
            self.refuse(layer, "between a Flatten of channels-first data and the next Dense only activations, "
                               "Dropout, BatchNormalization, LayerNormalization and PReLU are supported")
        if kind in _IDENTITY_LAYERS:
            return
        if kind is L.Dense:
            self._dense(layer)
        elif kind in (L.Conv1D, L.Conv2D, L.Conv3D):
            self._conv(layer)
        elif kind is L.DepthwiseConv2D:
            self._depthwise(layer)
        elif kind is L.BatchNormalization:
            self._batchnorm(layer)
        elif kind in (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D):
            self._pool(layer)
        elif kind in (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D):
            self._global_pool(layer)
        elif kind is L.Flatten:
            self._flatten(layer)
        elif kind in (L.Dropout, L.AlphaDropout, L.SpatialDropout1D, L.SpatialDropout2D):
            self._dropout(layer)
        elif kind in (L.LSTM, L.GRU):
            self._recurrent(layer)
        elif kind is L.Embedding:
            self.to_native()
            m = nn.Embedding(layer.input_dim, layer.output_dim)
            self.modules.append(self.set(m, weight=layer._params["embeddings"]))
            self.rank += 1
        elif kind is L.LayerNormalization:
            self._layernorm(layer)
        elif kind in (L.ZeroPadding1D, L.ZeroPadding2D):
            self.to_cf()
            pads = [v for pair in reversed(layer.padding) for v in pair]
            self.modules.append(nn.ConstantPad1d(tuple(pads), 0.0) if kind is L.ZeroPadding1D else nn.ZeroPad2d(tuple(pads)))
        elif kind is L.UpSampling2D:
            self.to_cf()
            self.modules.append(nn.Upsample(scale_factor=tuple(float(s) for s in layer.size), mode="nearest"))
        elif kind is L.PReLU:
            self._prelu(layer)
        elif kind is L.RReLU:
            self.modules.append(nn.RReLU(layer.lower, layer.upper))
        elif _is_function_layer(layer):
            if type(layer) is L.Softmax2d:
                self.to_cf()
            self._activation(layer.function, layer)
        else:
            raise ValueError(f"fusenet.interop.to_torch: {layer.describe()} has no torch.nn equivalent in a Sequential. "
                             f"Supported layers: {supported_fusenet_layers()}")

    def _activation(self, fn, layer):
        module = _torch_activation(self.nn, fn, self, layer)
        if module is not None:
            self.modules.append(module)

    def _dense(self, layer):
        self.to_native()
        kernel = layer._params["kernel"]
        m = self.nn.Linear(kernel.shape[0], layer.units, bias=layer.use_bias)
        self.set(m, weight=self.permuted(kernel.T))
        if layer.use_bias:
            self.set(m, bias=layer._params["bias"])
        self.flat_channels = None
        self.modules.append(m)
        self._activation(layer.activation, layer)

    def _same_pads(self, layer, kernel, strides, dilations):
        """``[(before, after), ...]`` of Keras "same" padding, from the layer's known input size."""
        spatial = layer.build_input_shape[1:-1]
        if any(n is None for n in spatial):
            self.refuse(layer, "padding='same' with strides > 1 needs known spatial input sizes")
        return [conv_padding(n, k, s, d, "same")[1:] for n, k, s, d in zip(spatial, kernel, strides, dilations)]

    def _pad_module(self, pairs):
        flat = tuple(v for pair in reversed(pairs) for v in pair)
        n = len(pairs)
        return {1: self.nn.ConstantPad1d, 2: self.nn.ConstantPad2d, 3: self.nn.ConstantPad3d}[n](flat, 0.0)

    def _conv(self, layer):
        nn = self.nn
        self.to_cf()
        r = layer.rank
        kernel = layer._params["kernel"]
        padding = 0
        if layer.padding == "same":
            if max(layer.strides) == 1:
                padding = "same"
            else:
                self.modules.append(self._pad_module(self._same_pads(layer, layer.kernel_size, layer.strides,
                                                                     layer.dilation_rate)))
        elif layer.padding == "causal":
            eff = (layer.kernel_size[0] - 1) * layer.dilation_rate[0] + 1
            self.modules.append(self._pad_module([(eff - 1, 0)]))
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[r]
        m = cls(kernel.shape[-2] * layer.groups, layer.filters, layer.kernel_size, stride=layer.strides,
                padding=padding, dilation=layer.dilation_rate, groups=layer.groups, bias=layer.use_bias)
        self.set(m, weight=np.transpose(kernel, (r + 1, r) + tuple(range(r))))
        if layer.use_bias:
            self.set(m, bias=layer._params["bias"])
        self.modules.append(m)
        self._activation(layer.activation, layer)

    def _depthwise(self, layer):
        self.to_cf()
        dk = layer._params["depthwise_kernel"]
        kh, kw, cin, mult = dk.shape
        padding = 0
        if layer.padding == "same":
            if max(layer.strides) == 1:
                padding = "same"
            else:
                self.modules.append(self._pad_module(self._same_pads(layer, layer.kernel_size, layer.strides,
                                                                     layer.dilation_rate)))
        m = self.nn.Conv2d(cin, cin * mult, layer.kernel_size, stride=layer.strides, padding=padding,
                           dilation=layer.dilation_rate, groups=cin, bias=layer.use_bias)
        self.set(m, weight=np.transpose(dk.reshape(kh, kw, 1, cin * mult), (3, 2, 0, 1)))
        if layer.use_bias:
            self.set(m, bias=layer._params["bias"])
        self.modules.append(m)
        self._activation(layer.activation, layer)

    def _batchnorm(self, layer):
        nn = self.nn
        rank = len(layer.build_input_shape)
        if list(layer._axes) != [rank - 1]:
            self.refuse(layer, f"it normalises axis {layer.axis}; torch's BatchNorm normalises the channels")
        if rank >= 3:
            self.to_cf()
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
        if cls is None:
            self.refuse(layer, f"inputs of rank {rank} have no torch BatchNorm")
        mean = layer._state["moving_mean"]
        m = cls(mean.shape[0], eps=layer.epsilon, momentum=round(1.0 - layer.momentum, 12))
        gamma = layer._params.get("gamma", np.ones_like(mean))
        beta = layer._params.get("beta", np.zeros_like(mean))
        self.set(m, weight=self.permuted(gamma), bias=self.permuted(beta), running_mean=self.permuted(mean),
                 running_var=self.permuted(layer._state["moving_variance"]))
        self.modules.append(m)

    def _pool(self, layer):
        nn = self.nn
        self.to_cf()
        if layer.padding == "same":
            pads = self._same_pads(layer, layer.pool_size, layer.strides, (1,) * layer.rank)
            if any(a or b for a, b in pads):
                self.refuse(layer, "padding='same' pads this input; torch pools pad symmetrically and count differently")
        n = layer.rank
        if layer.mode == "max":
            cls = nn.MaxPool1d if n == 1 else nn.MaxPool2d
        else:
            cls = nn.AvgPool1d if n == 1 else nn.AvgPool2d
        self.modules.append(cls(layer.pool_size, stride=layer.strides))

    def _global_pool(self, layer):
        nn = self.nn
        self.to_cf()
        n = layer.rank
        avg = layer.mode != "max"
        cls = {(1, True): nn.AdaptiveAvgPool1d, (2, True): nn.AdaptiveAvgPool2d, (1, False): nn.AdaptiveMaxPool1d,
               (2, False): nn.AdaptiveMaxPool2d}[(n, avg)]
        self.modules.append(cls(1))
        if not layer.keepdims:
            self.modules.append(nn.Flatten())
            self.rank, self.cf = 2, False

    def _flatten(self, layer):
        shape = layer.build_input_shape
        if len(shape) <= 2:
            return
        if self.cf:
            self.flat_channels = shape[-1]
        self.modules.append(self.nn.Flatten())
        self.rank, self.cf = 2, False

    def _dropout(self, layer):
        nn = self.nn
        kind = type(layer)
        if kind is L.Dropout:
            self.modules.append(nn.Dropout(layer.rate))
        elif kind is L.AlphaDropout:
            self.modules.append(nn.AlphaDropout(layer.rate))
        else:
            self.to_cf()
            self.modules.append(nn.Dropout1d(layer.rate) if kind is L.SpatialDropout1D else nn.Dropout2d(layer.rate))

    def _recurrent(self, layer):
        nn = self.nn
        self.to_native()
        if layer.return_state or layer.go_backwards:
            self.refuse(layer, "return_state and go_backwards have no torch.nn.Sequential equivalent")
        if layer.activation.fast != "tanh" or layer.recurrent_activation.fast != "sigmoid":
            self.refuse(layer, "torch's cells use tanh and sigmoid only")
        gru = isinstance(layer, L.GRU)
        if gru and not layer.reset_after:
            self.refuse(layer, "reset_after=False has no torch equivalent")
        kernel, rec = layer._params["kernel"], layer._params["recurrent_kernel"]
        u = layer.units
        order = np.r_[u:2 * u, 0:u, 2 * u:3 * u] if gru else np.arange(4 * u)
        m = (nn.GRU if gru else nn.LSTM)(kernel.shape[0], u, batch_first=True, bias=layer.use_bias)
        self.set(m, weight_ih_l0=kernel[:, order].T, weight_hh_l0=rec[:, order].T)
        if layer.use_bias:
            bias = layer._params["bias"]
            if gru:
                self.set(m, bias_ih_l0=bias[0][order], bias_hh_l0=bias[1][order])
            else:
                self.set(m, bias_ih_l0=bias, bias_hh_l0=np.zeros_like(bias))
        self.modules += [m, self.tm.RNNOutput(layer.return_sequences)]
        self.rank = 3 if layer.return_sequences else 2

    def _layernorm(self, layer):
        rank = len(layer.build_input_shape)
        axes = sorted(layer._axes)
        if layer.rms_scaling or axes != list(range(axes[0], rank)):
            self.refuse(layer, "torch's LayerNorm normalises trailing axes without rms_scaling")
        self.to_native()
        shape = tuple(layer.build_input_shape[a] for a in axes)
        m = self.nn.LayerNorm(shape, eps=layer.epsilon, bias=layer.center)
        gamma = np.reshape(layer._params["gamma"], shape) if layer.scale else np.ones(shape)
        self.set(m, weight=self.permuted(gamma))
        if layer.center:
            self.set(m, bias=self.permuted(np.reshape(layer._params["beta"], shape)))
        self.modules.append(m)

    def _prelu(self, layer):
        alpha = layer._params["alpha"]
        rank = len(layer.build_input_shape)
        shared = set(layer.shared_axes or [])
        if alpha.size == 1:
            m = self.nn.PReLU(1)
            self.set(m, weight=alpha.reshape(1))
        elif shared == set(range(1, rank - 1)) or rank == 2:
            if rank >= 3:
                self.to_cf()
            m = self.nn.PReLU(alpha.size)
            self.set(m, weight=self.permuted(alpha.reshape(-1)))
        else:
            self.refuse(layer, "torch's PReLU has one slope or one per channel")
        self.modules.append(m)


def _is_function_layer(layer):
    from ..layers.activation import _FunctionLayer

    return isinstance(layer, _FunctionLayer)


def _torch_activation(nn, fn, state, layer):
    """The torch module of the activation function ``fn`` (``None`` for linear)."""
    kind = type(fn)
    if kind is F.Linear:
        return None
    if kind is F.ReLU:
        if fn.threshold or fn.negative_slope:
            state.refuse(layer, "torch has no ReLU with a threshold or a negative slope")
        if fn.max_value is None:
            return nn.ReLU()
        return nn.ReLU6() if fn.max_value == 6 else nn.Hardtanh(0.0, fn.max_value)
    simple = {F.ReLU6: nn.ReLU6, F.SELU: nn.SELU, F.SiLU: nn.SiLU, F.Mish: nn.Mish, F.Sigmoid: nn.Sigmoid,
              F.Tanh: nn.Tanh, F.Softsign: nn.Softsign, F.HardSiLU: nn.Hardswish, F.HardSigmoid: nn.Hardsigmoid,
              F.LogSigmoid: nn.LogSigmoid, F.TanhShrink: nn.Tanhshrink}
    if kind in simple:
        return simple[kind]()
    if kind is F.LeakyReLU:
        return nn.LeakyReLU(fn.negative_slope)
    if kind is F.RReLU:
        return nn.RReLU(fn.lower, fn.upper)
    if kind is F.ELU:
        return nn.ELU(fn.alpha)
    if kind is F.CELU:
        return nn.CELU(fn.alpha)
    if kind in (F.GELU, F.GELUTanh):
        return nn.GELU(approximate="tanh" if fn.approximate else "none")
    if kind is F.Softplus:
        return nn.Softplus(fn.beta, math.inf if fn.threshold is None else fn.threshold)
    if kind is F.HardTanh:
        return nn.Hardtanh(fn.min_val, fn.max_val)
    if kind is F.HardShrink:
        return nn.Hardshrink(fn.threshold)
    if kind is F.SoftShrink:
        return nn.Softshrink(fn.threshold)
    if kind is F.Threshold:
        return nn.Threshold(fn.threshold, fn.default_value)
    along = {F.Softmax: nn.Softmax, F.LogSoftmax: nn.LogSoftmax, F.Softmin: nn.Softmin, F.GLU: nn.GLU}
    if kind in along and isinstance(fn.axis, int):
        return along[kind](dim=state.axis(fn.axis, layer))
    state.refuse(layer, f"the activation {fn.name!r} has no torch.nn module")


def supported_fusenet_layers() -> list:
    """The names of the fusenet layers :func:`to_torch` converts (fused layers go through their sources)."""
    names = ["Dense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "BatchNormalization", "MaxPooling1D",
             "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
             "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Dropout", "AlphaDropout", "SpatialDropout1D",
             "SpatialDropout2D", "LSTM", "GRU", "Embedding", "LayerNormalization", "ZeroPadding1D", "ZeroPadding2D",
             "UpSampling2D", "PReLU", "RReLU", "Input", "Identity", "GaussianNoise", "GaussianDropout",
             "ActivityRegularization", "Activation and the activation layers"]
    return sorted(names)


def _first_layout(layers, rank):
    """Whether the torch model takes channels-first data: the first layout-sensitive layer is convolutional."""
    if rank < 3:
        return False
    cf_kinds = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
                L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
                L.GlobalMaxPooling2D, L.ZeroPadding1D, L.ZeroPadding2D, L.UpSampling2D, L.BatchNormalization,
                L.SpatialDropout1D, L.SpatialDropout2D, L.Softmax2d)
    for layer in layers:
        if isinstance(layer, cf_kinds):
            return True
        if not (_is_function_layer(layer) or isinstance(layer, (L.Dropout, *_IDENTITY_LAYERS))):
            return isinstance(layer, L.Flatten) and rank >= 4
    return False


def to_torch(model):
    """A ``torch.nn.Sequential`` (eval mode) computing what the fusenet ``model`` computes at inference.

    Fused layers are converted through the layers they replaced (their current weights). The
    torch model takes channels-first images where the fusenet model takes channels-last ones
    (see the module docstring); recurrent layers become ``nn.LSTM``/``nn.GRU`` followed by
    :class:`fusenet.interop.RNNOutput`. Raises ``ValueError`` naming a layer with no torch
    equivalent (and listing the supported ones).
    """
    torch, nn, tm = _torch()
    from ..models import Sequential

    if not isinstance(model, Sequential):
        raise TypeError(f"fusenet.interop.to_torch: expected a fusenet Sequential model. Received: {type(model).__name__}")
    model._require_built("to_torch()")
    layers = _expand(model._all_layers())
    rank = len(model.input_shape)
    dtype = next((np.dtype(layer.dtype) for layer in layers if layer.dtype is not None), np.dtype("float32"))
    state = _ToTorch(nn, tm, rank, _first_layout(layers, rank), dtype)
    for layer in layers:
        state.convert(layer)
    seq = nn.Sequential(*state.modules)
    seq.to(state.torch_dtype)
    return seq.eval()

