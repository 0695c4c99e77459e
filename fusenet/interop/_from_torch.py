"""PyTorch -> fusenet: :func:`from_torch` (conventions in :mod:`fusenet.interop._torch`)."""

from __future__ import annotations

import numpy as np

from .. import layers as L
from ._torch import as_numpy, flat_order, pair, torch_modules

__all__ = ["from_torch", "supported_torch_modules"]


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
        return flat_order(n, self.flat_channels, f"fusenet.interop.from_torch ({type(m).__name__})")

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
            self.cf = self.rank >= 3 and (isinstance(layout, cf_family)
                                          or (isinstance(layout, nn.BatchNorm1d) and self.rank == 3)
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
        kernel = as_numpy(m.weight).T
        perm = self.perm(m.in_features, m)
        if perm is not None:
            kernel = kernel[perm]
        self.flat_channels = None
        self.add(layer, [kernel] + ([as_numpy(m.bias)] if m.bias is not None else []))

    def _conv(self, m):
        self.need_cf(m)
        n = 1 if isinstance(m, self.nn.Conv1d) else 2
        if m.padding_mode != "zeros":
            self.refuse(m, f"padding_mode={m.padding_mode!r} (only 'zeros')")
        k, s, d = pair(m.kernel_size, n), pair(m.stride, n), pair(m.dilation, n)
        if max(s) > 1 and max(d) > 1:
            self.refuse(m, "fusenet (as Keras) does not combine strides > 1 with dilation > 1")
        p = m.padding
        if p == "valid" or (not isinstance(p, str) and not any(pair(p, n))):
            padding = "valid"
        elif p == "same" or (max(s) == 1 and all(2 * pi == (ki - 1) * di for pi, ki, di in zip(pair(p, n), k, d))):
            padding = "same"
        else:
            pairs = tuple((pi, pi) for pi in pair(p, n))
            self.add((L.ZeroPadding1D if n == 1 else L.ZeroPadding2D)(pairs[0] if n == 1 else pairs, dtype=self.dtype))
            padding = "valid"
        cls = L.Conv1D if n == 1 else L.Conv2D
        layer = cls(m.out_channels, k, strides=s, padding=padding, dilation_rate=d, groups=m.groups,
                    use_bias=m.bias is not None, dtype=self.dtype)
        kernel = np.transpose(as_numpy(m.weight), tuple(range(2, n + 2)) + (1, 0))
        self.channels = m.out_channels
        self.add(layer, [kernel] + ([as_numpy(m.bias)] if m.bias is not None else []))

    def _batchnorm(self, m):
        if not m.track_running_stats or m.running_mean is None:
            self.refuse(m, "track_running_stats=False normalises with batch statistics at inference")
        momentum = 0.99 if m.momentum is None else round(1.0 - float(m.momentum), 12)
        axis = -1
        if isinstance(m, self.nn.BatchNorm2d):
            self.need_cf(m)
        elif self.rank == 3 and not self.cf:
            axis = 1  # BatchNorm1d normalises axis 1 of (N, C, L): here the time axis of a channels-last tensor
        arrays = [as_numpy(m.weight), as_numpy(m.bias)] if m.affine else []
        arrays += [as_numpy(m.running_mean), as_numpy(m.running_var)]
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
        k = pair(m.kernel_size, n)
        s = k if m.stride is None or m.stride == () else pair(m.stride, n)
        if any(pair(m.padding, n)) or m.ceil_mode:
            self.refuse(m, "only padding=0 and ceil_mode=False have a Keras equivalent")
        if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
            if any(di != 1 for di in pair(m.dilation, n)) or m.return_indices:
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
        if any(o != 1 for o in pair(m.output_size, n)):
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
            w_ih, w_hh = (as_numpy(getattr(m, f"weight_{k}_l{layer_index}")) for k in ("ih", "hh"))
            arrays = [w_ih[order].T, w_hh[order].T]
            if m.bias:
                b_ih, b_hh = (as_numpy(getattr(m, f"bias_{k}_l{layer_index}"))[order] for k in ("ih", "hh"))
                arrays.append(np.stack([b_ih, b_hh]) if gru else b_ih + b_hh)
            self.add(layer, arrays)
        self.rank = 3 if return_sequences else 2
        return uses

    def _embedding(self, m):
        if m.max_norm is not None:
            self.refuse(m, "max_norm renormalises rows at lookup time")
        self.add(L.Embedding(m.num_embeddings, m.embedding_dim, dtype=self.dtype), [as_numpy(m.weight)])
        self.rank = None if self.rank is None else self.rank + 1
        self.cf = False

    def _layernorm(self, m):
        k = len(m.normalized_shape)
        if self.cf:
            self.refuse(m, "it normalises the trailing axes of a channels-first tensor; put ToChannelsLast() before it")
        axis = -1 if k == 1 else list(range(-k, 0))
        weight = None if m.weight is None else as_numpy(m.weight)
        bias = None if getattr(m, "bias", None) is None else as_numpy(m.bias)
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
        alpha = as_numpy(m.weight)
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
    _, nn, tm = torch_modules()
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
    torch, nn, tm = torch_modules()
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
