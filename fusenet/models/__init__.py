"""Models: :class:`Sequential`, the shared training engine (:class:`Model`), saving and loading.

``Sequential([...])`` stacks layers; ``compile``/``fit``/``evaluate``/``predict`` follow Keras 3;
``model.save(path)`` writes one zip file atomically and :func:`load_model` reads it back without
executing anything from the file (see :mod:`fusenet.models.saving`).
"""

import json as _json

from ..errors import ModelFileError as _ModelFileError
from .model import Model
from .saving import load_model, load_weights, register_model_class, save_model, save_weights
from .sequential import Sequential

register_model_class(Sequential)


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


__all__ = ["Model", "Sequential", "load_model", "save_model", "save_weights", "load_weights", "model_from_json",
           "register_model_class"]
