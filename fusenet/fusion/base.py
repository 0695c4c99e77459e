"""The base of every fused layer: it owns copies of the layers it replaces.

A fused layer is an ordinary :class:`~fusenet.layers.Layer`. It holds the layers of the run
it replaces (deep copies: fusing never touches the source layers) as tracked sublayers, so

- ``get_weights()``/``set_weights()`` use exactly the weights of the replaced layers, in their
  order, and a fused model saves, loads and converts back (:meth:`FusedLayer.unfuse`);
- in training mode the fused layer trains those very parameters (an optimizer sees the same
  ``params``/``grads`` as for the unfused run) with its own fused forward and backward;
- in inference mode it runs on *folded* weights (e.g. BatchNorm folded into the kernel),
  computed once and recomputed when the source weights may have changed: after a training
  forward (an optimizer step may follow), after ``set_weights``, or on :meth:`refold`.
"""

from __future__ import annotations

import copy

from ..layers.base import Layer, _unique_name, deserialize, serialize

__all__ = ["FusedLayer"]


class FusedLayer(Layer):
    """Base class of the fused layers. Subclasses set ``pattern`` (a short description of the
    run they replace, e.g. ``"Conv2D -> BatchNormalization -> ReLU"``), implement ``forward`` and
    ``backward``, and, when they fold weights for inference, ``_fold()``, which returns the folded
    arrays (cached in ``self._folded`` until the sources change).
    """

    pattern = ""
    abstract_layer = True

    def __init__(self, layers, copy_layers=True, **kwargs):
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError(f"{type(self).__name__}: expected a non-empty list of Layers. Received: {layers!r}")
        if kwargs.get("name") is None:
            kwargs["name"] = _unique_name(f"fused_{layers[0].name}")
        super().__init__(**kwargs)
        self.source_layers = [copy.deepcopy(layer) for layer in layers] if copy_layers else layers
        for i, layer in enumerate(self.source_layers):
            layer._cache = None
            self.track_layer(f"{i}_{layer.name}", layer)
        if all(layer.built for layer in self.source_layers):
            self.built = True
            self.dtype = self.dtype or self.source_layers[0].dtype
            self.build_input_shape = self.source_layers[0].build_input_shape
        self._folded = None

    # ------------------------------------------------------------ life cycle
    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.source_layers:
            if not layer.built:
                layer._build_for(shape, self.dtype)
            shape = tuple(layer.compute_output_shape(shape))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.source_layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def _prepare_input(self, x):
        x = self.source_layers[0]._prepare_input(x)
        if not self.built:
            self._build_for(x.shape, x.dtype)
        return x

    # ------------------------------------------------------------ folded weights
    def folded(self):
        """The folded inference weights (computed on first use and after the sources change)."""
        if self._folded is None:
            self._folded = self._fold()
        return self._folded

    def _fold(self):
        return None

    def refold(self) -> None:
        """Forget the folded weights: the next inference call folds the current source weights."""
        self._folded = None

    def __call__(self, x, training: bool = False):
        if training:  # an optimizer step may follow: fold again before the next inference call
            self._folded = None
        return super().__call__(x, training=training)

    def set_weights(self, weights) -> None:
        super().set_weights(weights)
        self.refold()

    # ------------------------------------------------------------ conversion back
    def unfuse(self) -> list:
        """Copies of the replaced layers, with the current weights."""
        return [copy.deepcopy(layer) for layer in self.source_layers]

    def describe_fusion(self) -> str:
        """``"Conv2D(conv2d) + BatchNormalization(bn) + ReLU(re_lu)"``: what this layer replaced."""
        return " + ".join(f"{type(layer).__name__}({layer.name})" for layer in self.source_layers)

    # ------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config["layers"] = [serialize(layer) for layer in self.source_layers]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [deserialize(spec) for spec in config["layers"]]
        config["copy_layers"] = False
        return super().from_config(config)
