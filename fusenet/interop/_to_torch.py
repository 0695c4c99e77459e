"""fusenet -> PyTorch: :func:`to_torch` (conventions in :mod:`fusenet.interop._torch`)."""

from __future__ import annotations

import math

import numpy as np

from .. import layers as L
from ..activations import functions as F
from ..layers._conv_ops import conv_padding
from ._torch import flat_order, torch_modules

__all__ = ["to_torch", "supported_fusenet_layers"]


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
    """The conversion state: the torch tensor's layout (channels-first or not) and rank, the modules so far."""

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
        perm = flat_order(array.shape[-1], self.flat_channels, "fusenet.interop.to_torch")
        out = np.empty_like(array)
        out[..., perm] = array
        return out

    # ------------------------------------------------------------ layers
    def convert(self, layer):
        nn = self.nn
        kind = type(layer)
        if self.flat_channels is not None and not _keeps_feature_order(layer):
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


def _keeps_feature_order(layer):
    """Whether ``layer`` may sit between a channels-first Flatten and the Dense that absorbs its feature
    permutation: per-feature layers (their parameters are permuted too) and permutation-equivariant ones."""
    per_feature = (L.Dense, L.BatchNormalization, L.LayerNormalization, L.PReLU, L.RReLU, L.Dropout, L.AlphaDropout,
                   *_IDENTITY_LAYERS)
    return isinstance(layer, per_feature) or (_is_function_layer(layer) and type(layer) is not L.GLU)


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
    torch, nn, tm = torch_modules()
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
