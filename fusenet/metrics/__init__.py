"""Metrics: stateful, batch-size independent objects with Keras 3 semantics, and ``get(name)``.

Every metric has ``update_state(y_true, y_pred, sample_weight=None)``, ``result()`` (a Python float,
or a float64 array where documented), ``reset_state()``, ``name`` and ``get_config``/``from_config``.
Modules: ``base`` (``Metric``, ``Mean``, ``Sum``, ``MeanMetricWrapper``), ``accuracy``, ``confusion``
(counts, precision, recall, F-scores, AUC), ``regression``, ``iou``.

``model.compile(metrics=[...])`` should turn each entry into a metric with :func:`resolve`, which
resolves ``"accuracy"`` from the loss and the shapes as Keras 3 does (:func:`resolve_accuracy`).
The model tracks its loss with ``Mean(name="loss")``: ``update_state(batch_loss, sample_weight=batch_size)``.
"""

from . import accuracy as _accuracy_module
from . import confusion as _confusion_module
from . import iou as _iou_module
from . import regression as _regression_module
from ._registry import (
    accuracy_kind,
    available,
    deserialize,
    function_name,
    get,
    get_function,
    resolve,
    resolve_accuracy,
    serialize,
)
from .accuracy import *  # noqa: F401,F403
from .base import FixedFunctionMetric, Mean, MeanMetricWrapper, Metric, Sum
from .confusion import *  # noqa: F401,F403
from .iou import *  # noqa: F401,F403
from .regression import *  # noqa: F401,F403

__all__ = [
    "Metric",
    "Mean",
    "Sum",
    "MeanMetricWrapper",
    "FixedFunctionMetric",
    *_accuracy_module.__all__,
    *_confusion_module.__all__,
    *_iou_module.__all__,
    *_regression_module.__all__,
    "available",
    "get",
    "serialize",
    "deserialize",
    "resolve",
    "resolve_accuracy",
    "accuracy_kind",
    "get_function",
    "function_name",
]
