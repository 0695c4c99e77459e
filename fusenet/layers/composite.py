"""Composite layers that hold other layers: Residual (so that a Sequential can hold a ResNet)
and TimeDistributed."""

from __future__ import annotations

import numpy as np

from .base import Layer, deserialize, serialize
from .merging import Add, Concatenate, Multiply, _Merge

__all__ = ["Residual", "TimeDistributed"]

_MERGES = {"add": Add, "concatenate": Concatenate, "multiply": Multiply}


def _as_layer_list(value, what, owner):
    if value is None:
        return []
    if isinstance(value, Layer):
        return [value]
    try:
        items = list(value)
    except TypeError as exc:
        raise TypeError(f"{owner}: expected {what} to be a Layer or a list of Layers. Received: {value!r}") from exc
    for item in items:
        if not isinstance(item, Layer):
            raise TypeError(f"{owner}: expected {what} to hold only Layers. Received an item {item!r}")
    return items


def _run(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x


def _run_backward(layers, dy):
    for layer in reversed(layers):
        dy = layer.backward(layer.activity_gradient(dy))
    return dy


def _chain_shape(layers, shape, dtype=None):
    for layer in layers:
        if not layer.built:
            layer._build_for(shape, dtype)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


class Residual(Layer):
    """``y = merge([body(x), shortcut(x)])``: a residual block inside a Sequential model.

    ``layers`` is the body, applied in order. ``shortcut`` is ``None`` (identity) or a layer or
    list of layers (e.g. a 1x1 ``Conv2D`` + ``BatchNormalization`` projection). ``merge`` is
    ``"add"`` (default; the ResNet block), ``"concatenate"`` (DenseNet style, channels) or
    ``"multiply"`` (gating), or a merge layer object. The ResNet basic block is
    ``Residual([Conv2D, BatchNormalization, ReLU, Conv2D, BatchNormalization])`` followed by ``ReLU``.

    Weights: the body's in order, then the shortcut's. ``backward`` returns ``dbody + dshortcut``.
    """

    def __init__(self, layers, shortcut=None, merge="add", **kwargs):
        body = _as_layer_list(layers, "layers", "Residual")
        if not body:
            raise ValueError("Residual: expected at least one layer in the body. Received: layers=[]")
        short = _as_layer_list(shortcut, "shortcut", "Residual")
        if isinstance(merge, str):
            if merge not in _MERGES:
                raise ValueError(f"Residual: expected merge to be one of {sorted(_MERGES)} or a merge layer. Received: merge={merge!r}")
            merge = _MERGES[merge]()
        if not isinstance(merge, _Merge):
            raise TypeError(f"Residual: expected merge to be a merge layer such as Add(). Received: merge={merge!r}")
        super().__init__(**kwargs)
        self.body = body
        self.shortcut = short
        self.merge = merge
        for i, layer in enumerate(body):
            self.track_layer(f"body{i}_{layer.name}", layer)
        for i, layer in enumerate(short):
            self.track_layer(f"shortcut{i}_{layer.name}", layer)

    def build(self, input_shape):
        body_shape = _chain_shape(self.body, input_shape, self.dtype)
        short_shape = _chain_shape(self.shortcut, input_shape, self.dtype)
        self.merge._build_for([body_shape, short_shape], self.dtype)
        self.merge._check_shapes([body_shape, short_shape])

    def forward(self, x, training=False):
        y_body = _run(self.body, x, training)
        y_short = _run(self.shortcut, x, training)
        self._save_for_backward(training, True)
        return self.merge([y_body, y_short], training=training)

    def backward(self, dy):
        self._saved()
        d_body, d_short = self.merge.backward(dy)
        dx = _run_backward(self.body, d_body)
        dx_short = _run_backward(self.shortcut, d_short)
        return dx + dx_short

    def compute_output_shape(self, input_shape):
        body_shape = _chain_shape(self.body, input_shape, self.dtype)
        short_shape = _chain_shape(self.shortcut, input_shape, self.dtype)
        return tuple(self.merge.compute_output_shape([body_shape, short_shape]))

    def get_config(self):
        config = super().get_config()
        config.update({
            "layers": [serialize(layer) for layer in self.body],
            "shortcut": [serialize(layer) for layer in self.shortcut],
            "merge": serialize(self.merge),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [deserialize(spec) for spec in config["layers"]]
        config["shortcut"] = [deserialize(spec) for spec in config.get("shortcut") or []]
        merge = config.get("merge", "add")
        config["merge"] = deserialize(merge) if isinstance(merge, dict) else merge
        return super().from_config(config)


class TimeDistributed(Layer):
    """Apply ``layer`` to every time step: ``(batch, time, ...) -> (batch, time, ...out)``.

    The batch and time axes are merged into one, so the wrapped layer runs once on
    ``(batch * time, ...)`` (one GEMM for a Dense), then the result is split again.
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed: expected a Layer to wrap. Received: layer={layer!r}")
        super().__init__(**kwargs)
        self.layer = self.track_layer("layer", layer)

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"{self.describe()} expects inputs of rank >= 3 (batch, time, ...), but received input_shape {tuple(input_shape)}."
            )
        inner = (None,) + tuple(input_shape[2:])
        if not self.layer.built:
            self.layer._build_for(inner, self.dtype)

    def forward(self, x, training=False):
        b, t = x.shape[:2]
        y = self.layer(x.reshape((b * t,) + x.shape[2:]), training=training)
        self._save_for_backward(training, b, t)
        return y.reshape((b, t) + y.shape[1:])

    def backward(self, dy):
        b, t = self._saved()
        dx = self.layer.backward(self.layer.activity_gradient(dy.reshape((b * t,) + dy.shape[2:])))
        return dx.reshape((b, t) + dx.shape[1:])

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def get_config(self):
        config = super().get_config()
        config["layer"] = serialize(self.layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize(config["layer"])
        return super().from_config(config)
