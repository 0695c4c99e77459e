"""Names of the metrics: ``get``, ``serialize``/``deserialize``, and the compile-time resolution of ``"accuracy"``."""

from __future__ import annotations

import inspect

from . import accuracy as _acc
from . import regression as _reg
from .accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
)
from .base import Mean, MeanMetricWrapper, Metric, Sum, to_snake_case
from .confusion import AUC, F1Score, FalseNegatives, FalsePositives, FBetaScore, Precision, Recall, TrueNegatives, TruePositives
from .iou import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from .regression import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
)

__all__ = [
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

_ALL_CLASSES = (
    Mean, Sum, MeanMetricWrapper,
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall,
    FBetaScore, F1Score, AUC,
    IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU,
    MeanSquaredError, RootMeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, LogCoshError, CosineSimilarity, R2Score,
)  # fmt: skip

#: Class names (``"MeanSquaredError"``) -> classes: the only classes ``deserialize`` builds.
CLASSES = {cls.__name__: cls for cls in _ALL_CLASSES}

#: Every string ``get`` accepts: class names, their Keras snake_case names, and the Keras/brief aliases.
ALIASES = {**CLASSES, **{to_snake_case(name): cls for name, cls in CLASSES.items()}}
ALIASES.update(
    {
        "acc": Accuracy,
        "mse": MeanSquaredError, "MSE": MeanSquaredError,
        "rmse": RootMeanSquaredError, "RMSE": RootMeanSquaredError,
        "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
        "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
        "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
        "logcosh": LogCoshError,
        "fbeta_score": FBetaScore,
        "iou": IoU, "mean_iou": MeanIoU, "binary_iou": BinaryIoU,
        "one_hot_iou": OneHotIoU, "one_hot_mean_iou": OneHotMeanIoU,
    }
)  # fmt: skip

#: The per-sample functions a ``MeanMetricWrapper`` config may name.
FUNCTIONS = {
    name: getattr(module, name)
    for module in (_acc, _reg)
    for name in module.__all__
    if name[0].islower()
}


def available() -> list[str]:
    """Every metric name :func:`get` accepts, sorted."""
    return sorted(ALIASES)


def get_function(name: str):
    """The per-sample metric function registered as ``name`` (e.g. ``"binary_accuracy"``)."""
    if name not in FUNCTIONS:
        raise ValueError(f"Unknown metric function: {name!r}. Expected one of {sorted(FUNCTIONS)}.")
    return FUNCTIONS[name]


def function_name(fn) -> str | None:
    """The registered name of ``fn`` if it is one of fusenet's metric functions, else ``None``."""
    for name, registered in FUNCTIONS.items():
        if fn is registered:
            return name
    return None


def _instantiate(cls, identifier) -> Metric:
    required = [
        p.name
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        args = ", ".join(f"{r}=..." for r in required)
        raise ValueError(
            f"Metric {identifier!r} ({cls.__name__}) needs the argument(s) {required}: "
            f"pass an object such as fusenet.metrics.{cls.__name__}({args}) or a config dict."
        )
    return cls()


def get(identifier):
    """A metric from a name (``"precision"``, ``"Precision"``, ``"mse"``), a config dict
    (``{"class_name": "AUC", "config": {...}}``), a ``Metric`` object (returned as is), a ``Metric``
    subclass (instantiated) or a plain function ``fn(y_true, y_pred)`` (wrapped in ``MeanMetricWrapper``).

    ``None`` gives ``None`` (Keras). ``"accuracy"`` gives the exact-match :class:`Accuracy`, as
    ``keras.metrics.get`` does; ``model.compile`` resolves it with :func:`resolve` instead.
    """
    if identifier is None:
        return None
    if isinstance(identifier, Metric):
        return identifier
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return _instantiate(identifier, identifier.__name__)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = ALIASES.get(identifier)
        if cls is None:
            raise ValueError(
                f"Unknown metric: {identifier!r}. Expected one of {available()}, a config dict or a Metric object."
            )
        return _instantiate(cls, identifier)
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(
        f"Expected a metric name, config dict, Metric object or function. Received: {identifier!r} "
        f"of type {type(identifier).__name__}"
    )


def serialize(metric: Metric) -> dict:
    """``{"class_name": ..., "config": ...}`` of a metric (JSON-safe for every built-in metric)."""
    if not isinstance(metric, Metric):
        raise TypeError(f"serialize: expected a fusenet Metric. Received: {metric!r}")
    config = metric.get_config()
    if callable(config.get("fn")):
        raise TypeError(
            f"Metric '{metric.name}' ({type(metric).__name__}) wraps {config['fn']!r}, which is not one of "
            f"fusenet's metric functions {sorted(FUNCTIONS)}, so it cannot be serialized."
        )
    return {"class_name": type(metric).__name__, "config": config}


def deserialize(config: dict) -> Metric:
    """Inverse of :func:`serialize`; only fusenet's own metric classes are built."""
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = CLASSES.get(name)
    if cls is None:
        raise ValueError(f"Unknown metric class: {name!r}. Expected one of {sorted(CLASSES)}.")
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise ValueError(f"Expected the 'config' of metric class {name!r} to be a dict. Received: {inner!r}")
    return cls.from_config(dict(inner))


# ---------------------------------------------------------------- "accuracy" at compile time
def _loss_kind(loss) -> str | None:
    """``"sparse"``, ``"binary"``, ``"categorical"`` or ``None`` from a loss name, class or object."""
    if loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    elif inspect.isfunction(loss) or inspect.isclass(loss):
        name = loss.__name__
    else:
        name = type(loss).__name__
    snake = to_snake_case(name)
    if "sparse" in snake:
        return "sparse"
    if "binary" in snake or snake in ("bce", "hinge", "squared_hinge"):
        return "binary"
    if "categorical" in snake or snake in ("cce", "kl_divergence", "kld"):
        return "categorical"
    return None


def accuracy_kind(loss=None, y_true_shape=None, y_pred_shape=None) -> str:
    """Which accuracy ``"accuracy"`` means: ``"binary"``, ``"sparse"`` or ``"categorical"``.

    Keras 3 ``compile_utils`` rules on the shapes (batch axis included):
    binary when ``y_pred``'s last dimension is 1; otherwise sparse when ``y_true`` has fewer dimensions
    than ``y_pred`` or a last dimension of 1; otherwise categorical. A rank-1 ``y_pred`` (one score per
    sample) is binary (Keras would read its batch size as the last dimension). When ``y_true_shape`` is
    unknown, the loss decides between sparse and categorical; with no shape at all, the loss decides
    (``sparse_*`` -> sparse, ``binary_*``/hinge -> binary, ``categorical_*`` -> categorical).
    """
    if y_pred_shape is not None:
        yp = tuple(y_pred_shape)
        if len(yp) <= 1 or yp[-1] == 1:
            return "binary"
        if y_true_shape is not None:
            yt = tuple(y_true_shape)
            if len(yt) < len(yp) or (len(yt) >= 1 and yt[-1] == 1):
                return "sparse"
            return "categorical"
        return "sparse" if _loss_kind(loss) == "sparse" else "categorical"
    kind = _loss_kind(loss)
    if kind is None:
        raise ValueError(
            "Cannot tell which accuracy 'accuracy' means: pass y_pred_shape (and y_true_shape) or a "
            f"classification loss. Received: loss={loss!r}, y_true_shape={y_true_shape}, y_pred_shape={y_pred_shape}"
        )
    return kind


_ACCURACY_CLASSES = {"binary": BinaryAccuracy, "sparse": SparseCategoricalAccuracy, "categorical": CategoricalAccuracy}


def resolve_accuracy(loss=None, y_true_shape=None, y_pred_shape=None, name="accuracy") -> Metric:
    """The accuracy metric ``compile(metrics=["accuracy"])`` means, named ``name``:
    ``BinaryAccuracy``, ``SparseCategoricalAccuracy`` or ``CategoricalAccuracy`` (see :func:`accuracy_kind`)."""
    return _ACCURACY_CLASSES[accuracy_kind(loss, y_true_shape, y_pred_shape)](name=name)


def resolve(identifier, loss=None, y_true_shape=None, y_pred_shape=None) -> Metric:
    """Keras 3 ``compile_utils.get_metric``: the metric object ``compile(metrics=[identifier])`` tracks.

    ``"accuracy"``/``"acc"`` (any case) go through :func:`resolve_accuracy`; anything else through
    :func:`get`. A string identifier also becomes the metric's name (``"mse"`` logs as ``"mse"``).
    """
    if identifier is None:
        raise ValueError("Expected a metric, received None.")
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return resolve_accuracy(loss, y_true_shape, y_pred_shape, name=identifier)
    metric = get(identifier)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric
