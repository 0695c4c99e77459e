"""Models: :class:`Sequential`, functional models, the shared training engine (:class:`Model`), saving and loading.

``Sequential([...])`` stacks layers; ``Model(inputs=x, outputs=y)`` wires layers called on symbolic
tensors into a graph (a :class:`Functional`, as Keras); ``compile``/``fit``/``evaluate``/``predict`` follow Keras 3;
``model.save(path)`` writes one zip file atomically and :func:`load_model` reads it back without
executing anything from the file (see :mod:`fusenet.models.saving`).
"""

import json as _json

from .. import graph as _graph
from ..errors import ModelFileError as _ModelFileError
from .functional import Functional
from .model import Model
from .saving import load_model, load_weights, register_model_class, save_model, save_weights
from .sequential import Sequential

register_model_class(Sequential)
register_model_class(Functional)


def _sequential_structure(model):
    """The wiring of a Sequential for :func:`fusenet.graph.trace`: a chain of its layers."""
    return _graph.chain_graph(model._all_layers(), name=model.name, input_shape=model.input_shape,
                              input_dtype=model._current_dtype())


_graph.register_structure(Sequential, _sequential_structure)
_graph.register_structure(Functional, lambda model: model.graph)


def model_from_json(json_string):
    """A model (weights freshly initialised) from :meth:`Model.to_json`'s output; registries only.

    Raises ``ValueError`` for malformed JSON or an unknown class.
    """
    try:
        spec = _json.loads(json_string)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model_from_json: expected the JSON text of Model.to_json(). {exc}") from exc
    from .saving import _MODEL_CLASSES, _model_class

    try:
        cls, config = _model_class(spec, "<json>")
    except _ModelFileError as exc:
        raise ValueError(f"model_from_json: {exc} Known model classes: {sorted(_MODEL_CLASSES)}") from exc
    return cls.from_config(config)


__all__ = ["Model", "Sequential", "Functional", "load_model", "save_model", "save_weights", "load_weights", "model_from_json",
           "register_model_class"]
