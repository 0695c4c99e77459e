"""Sequential: a plain stack of layers, each feeding the next (Keras 3 ``Sequential``)."""

from __future__ import annotations

import copy

from .. import layers as _layers
from ..utils import floatx, result_dtype
from .model import Model

__all__ = ["Sequential"]


def _shape_tuple(shape):
    return tuple(None if d is None else int(d) for d in shape)


class Sequential(Model):
    """A linear stack of layers: ``y = layer_n(... layer_2(layer_1(x)))``.

    The input shape comes from ``layers.Input(shape)`` as the first layer, from the first layer's
    ``input_shape=`` argument, or from :meth:`build` / the first call on data. Once it is known,
    every added layer is built at :meth:`add` time and a layer whose input does not fit the
    previous layer's output raises ``ValueError`` naming both layers and shapes.

    Args:
        layers: the layers to :meth:`add`, in order.
        name: the model's name (default ``"sequential"``, ``"sequential_1"``, ...).

    Weights (``get_weights()``) are every layer's weights in layer order, each layer in its
    Keras order.
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name)
        self._layers: list = []
        self._input_shape = None  # (None, ...) once known
        self._output_shapes: list = []  # per entry of self._layers
        if layers is not None:
            if isinstance(layers, _layers.Layer):
                layers = [layers]
            try:
                layers = list(layers)
            except TypeError as exc:
                raise TypeError(f"Sequential: expected layers to be a list of Layer objects. Received: {layers!r}") from exc
            for layer in layers:
                self.add(layer)

    # ------------------------------------------------------------ structure
    @property
    def layers(self) -> list:
        """The model's layers, without the input layer (as Keras)."""
        if self._layers and isinstance(self._layers[0], _layers.Input):
            return self._layers[1:]
        return list(self._layers)

    def _all_layers(self) -> list:
        return self._layers

    @property
    def built(self) -> bool:
        return self._input_shape is not None

    @property
    def input_shape(self):
        """The input shape, batch dimension included (``None`` until known)."""
        return self._input_shape

    @property
    def output_shape(self):
        """The output shape, batch dimension included (``None`` until built)."""
        if not self.built:
            return None
        return self._output_shapes[-1] if self._output_shapes else self._input_shape

    def _layer_output_shapes(self) -> list:
        offset = len(self._layers) - len(self.layers)
        return self._output_shapes[offset:]

    def add(self, layer) -> None:
        """Append ``layer``; build it at once when the input shape is known.

        Raises ``TypeError`` for a non-layer, ``ValueError`` for a duplicate name, an ``Input`` that
        is not first, or a layer whose input does not fit the previous output (the model is then
        unchanged).
        """
        if not isinstance(layer, _layers.Layer):
            raise TypeError(
                f"{self.describe()}.add: expected a fusenet.layers.Layer instance. Received: {layer!r} "
                f"of type {type(layer).__name__}"
            )
        if isinstance(layer, _layers.Input):
            if self._layers:
                raise ValueError(
                    f"{self.describe()}.add: an Input layer can only be the first layer. Received {layer.describe()} "
                    f"after {len(self._layers)} layer(s)."
                )
            self._layers.append(layer)
            self._input_shape = _shape_tuple(layer.shape)
            self._output_shapes = [self._input_shape]
            return
        for existing in self._layers:
            if existing is layer:
                raise ValueError(f"{self.describe()}.add: {layer.describe()} is already in the model.")
            if existing.name == layer.name:
                raise ValueError(
                    f"{self.describe()}.add: all layers of a model need unique names; {layer.describe()} has the "
                    f"same name as {existing.describe()}. Pass name= to one of them."
                )
        if not self._layers and layer.input_shape_arg is not None:
            self.add(_layers.Input(shape=layer.input_shape_arg, dtype=layer.dtype))
        if self.built:
            out = self._fit_layer(layer, self.output_shape, self._current_dtype(), self._last_layer())
            self._layers.append(layer)
            self._output_shapes.append(out)
        else:
            self._layers.append(layer)

    def pop(self):
        """Remove and return the last layer (the input layer is never popped)."""
        if not self.layers:
            raise ValueError(f"{self.describe()}.pop: there are no layers in the model.")
        layer = self._layers.pop()
        if self.built:
            self._output_shapes.pop()
        return layer

    def _last_layer(self):
        return self._layers[-1] if self._layers else None

    def _current_dtype(self):
        for layer in reversed(self._layers):
            if layer.dtype is not None:
                return layer.dtype
        return None

    def _fit_layer(self, layer, shape, dtype, previous):
        """Check that ``layer`` accepts ``shape``, build it, and return its output shape."""
        prev = f"the output of {previous.describe()}" if previous is not None else "the model's input"
        try:
            _layers.check_input(layer, shape, layer.input_spec)
            if not layer.built:
                try:  # refuse a misfit before building when the layer can tell without weights
                    layer.compute_output_shape(shape)
                except ValueError:
                    raise
                except Exception:  # noqa: BLE001 - some layers know their output shape only once built
                    pass
                layer._build_for(shape, dtype)
                _layers.check_input(layer, shape, layer.input_spec)
            out = layer.compute_output_shape(shape)
        except ValueError as exc:
            raise ValueError(
                f"{self.describe()}: {layer.describe()} cannot take {prev}, which has shape {tuple(shape)}: {exc}"
            ) from exc
        return _shape_tuple(out)

    def build(self, input_shape=None) -> None:
        """Build every layer for ``input_shape`` (batch dimension included, e.g. ``(None, 64)``)."""
        if input_shape is None:
            if self.built:
                return
            raise ValueError(f"{self.describe()}.build: expected an input_shape such as (None, 64). Received: None")
        try:
            shape = _shape_tuple(input_shape)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{self.describe()}.build: expected input_shape to be a tuple of ints or None. Received: {input_shape!r}"
            ) from exc
        if len(shape) < 1:
            raise ValueError(f"{self.describe()}.build: input_shape must include the batch axis. Received: {input_shape!r}")
        self._build_layers(shape, None)

    def _build_layers(self, shape, dtype) -> None:
        shape = (None,) + tuple(shape[1:])
        if self.built:
            if self._input_shape[1:] != shape[1:] and not self._shape_fits(shape):
                raise ValueError(
                    f"{self.describe()}.build: the model is built for input shape {self._input_shape}. "
                    f"Received: input_shape={shape}"
                )
            return
        layers = list(self._layers)
        outputs = []
        current, previous = shape, None
        if dtype is None:
            dtype = next((layer.dtype for layer in layers if layer.dtype is not None), None) or floatx()
        for layer in layers:
            current = self._fit_layer(layer, current, dtype, previous)
            if layer.dtype is not None:
                dtype = layer.dtype
            outputs.append(current)
            previous = layer
        self._input_shape = shape
        self._output_shapes = outputs

    def _shape_fits(self, shape) -> bool:
        expected = self._input_shape
        return len(shape) == len(expected) and all(e is None or s is None or e == s for e, s in zip(expected[1:], shape[1:]))

    def _ensure_built(self, x) -> None:
        if not self.built:
            self._build_layers(x.shape, result_dtype(x))

    def _check_input(self, x, owner: str) -> None:
        if not self._shape_fits(x.shape):
            first = self._layers[0] if self._layers else None
            who = f"the first layer, {first.describe()}," if first is not None else "the model"
            raise ValueError(
                f"{owner}: {who} expects input of shape {self._input_shape}, but received x with shape {x.shape}."
            )

    # ------------------------------------------------------------ forward and backward
    def _forward(self, x, training=False):
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def _input_layers(self) -> list:
        return self.layers[:1]

    def _backward(self, dy):
        for layer in reversed(self._layers):
            dy = layer.backward(layer.activity_gradient(dy))
        return dy

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        """``{"name", "layers": [fusenet.layers.serialize(layer), ...], "build_input_shape"}`` (JSON-safe;
        the input layer, when there is one, is the first entry)."""
        return {
            "name": self.name,
            "layers": [_layers.serialize(layer) for layer in self._layers],
            "build_input_shape": None if self._input_shape is None else list(self._input_shape),
        }

    @classmethod
    def from_config(cls, config: dict):
        """A new model from :meth:`get_config`'s output; layers come only from fusenet's layer registry."""
        if not isinstance(config, dict):
            raise ValueError(f"Sequential.from_config: expected a dict. Received: {config!r}")
        layer_specs = config.get("layers", [])
        if not isinstance(layer_specs, list):
            raise ValueError(f"Sequential.from_config: expected 'layers' to be a list. Received: {layer_specs!r}")
        model = cls(name=config.get("name"))
        for spec in layer_specs:
            model.add(_layers.deserialize(spec))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(shape)
        return model

    # ------------------------------------------------------------ fusion
    def fuse(self, training: bool = False, report: bool = False):
        """A new, equivalent Sequential whose layers went through ``LayerBuilder.optimize_sequence``.

        ``training=False`` targets inference (BatchNorm folded into the weights, Dropout gone);
        ``training=True`` keeps separate parameters that train with fused backward passes. The model
        itself is not changed and shares no layer with the result (its layers are copied first).
        A compiled model's compile settings carry over (a fresh optimizer state). With
        ``report=True`` returns ``(fused_model, fusion.FusionReport)``.
        """
        from ..fusion import LayerBuilder  # models may import fusion; imported here to keep start-up light

        fused_layers, rep = LayerBuilder.optimize_sequence(copy.deepcopy(self._layers), training=training, report=True)
        model = Sequential(name=f"{self.name}_fused")
        for layer in fused_layers:
            model.add(layer)
        if self.built and not model.built:
            model.build(self._input_shape)
        if self.compiled:
            model.compile_from_config(self.get_compile_config())
        return (model, rep) if report else model

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` or at position ``index`` (in :attr:`layers`)."""
        if index is not None:
            if name is not None:
                raise ValueError(f"{self.describe()}.get_layer: pass name or index, not both.")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self.describe()}.get_layer: index {index} is out of range for {len(self.layers)} layers.")
            return self.layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"{self.describe()}.get_layer: no layer named {name!r}. Layers: {[layer.name for layer in self._layers]}"
        )

