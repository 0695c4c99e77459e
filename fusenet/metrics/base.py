"""The metric contract and the reduction metrics: ``Metric``, ``Mean``, ``Sum``, ``MeanMetricWrapper``.

A metric is a stateful object (Keras 3 semantics):

- ``update_state(y_true, y_pred, sample_weight=None)`` accumulates statistics of one batch;
- ``result()`` turns the statistics into the metric value (a Python ``float``; a few metrics
  with several thresholds or classes return a float64 ``ndarray``, as their docstrings say);
- ``reset_state()`` zeroes the statistics; ``metric(y_true, y_pred)`` updates then returns ``result()``;
- ``name``, ``get_config()`` / ``from_config(config)``.

Every metric keeps sums (never per-batch means), so updating with the whole data set at once or
in batches of any size gives the same result. The statistics are float64 arrays; ``dtype``
(default: float64 inputs stay float64, everything else computes in ``floatx()``) is the precision
of the per-sample values computed from ``y_true`` and ``y_pred``.

Sample weights follow Keras: a weight per sample (shape ``(batch,)``) or any shape that broadcasts
against the per-sample values after Keras's squeeze/expand of a trailing size-1 axis.
One deliberate difference: a *scalar* ``sample_weight`` weights every sample of the batch
(Keras counts the whole batch as one sample of that weight, which depends on the batch size).
"""

from __future__ import annotations

import numbers
import re

import numpy as np

from ..utils import check_numeric, result_dtype, standardize_dtype

__all__ = ["Metric", "Mean", "Sum", "MeanMetricWrapper", "FixedFunctionMetric"]

#: Keras's ``backend.epsilon()``: the endpoint offset of the AUC thresholds.
EPSILON = 1e-7
#: Threshold that makes every filtered top-k prediction positive (Keras ``metrics_utils.NEG_INF``).
NEG_INF = -1e10


# ---------------------------------------------------------------- shared helpers
def to_snake_case(name: str) -> str:
    """Keras's ``to_snake_case``: ``"BinaryAccuracy"`` -> ``"binary_accuracy"``, ``"MeanIoU"`` -> ``"mean_io_u"``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def describe(obj) -> str:
    """How error messages name a metric: ``"Metric 'precision' (Precision)"``."""
    return f"Metric '{obj.name}' ({type(obj).__name__})"


def as_array(x, owner: str, what: str) -> np.ndarray:
    """``x`` as a numeric ndarray; ``TypeError`` naming ``owner`` and ``what`` otherwise."""
    try:
        return check_numeric(x, f"{owner}: {what}")
    except (TypeError, ValueError) as exc:  # ragged lists raise ValueError inside np.asarray
        raise TypeError(f"{owner}: expected {what} to be a numeric array. Received: {what}={x!r:.80}") from exc


def squeeze_or_expand_to_same_rank(x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True):
    """Keras's rank matching: when ranks differ by one and the longer has a trailing axis of 1,
    squeeze it (or, with ``expand_rank_1``, expand a rank-1 partner instead)."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def matched_pair(y_true, y_pred, owner: str):
    """``(y_true, y_pred)`` as arrays of one shape (after Keras's squeeze/expand), else ``ValueError``."""
    y_true = as_array(y_true, owner, "y_true")
    y_pred = as_array(y_pred, owner, "y_pred")
    t, p = squeeze_or_expand_to_same_rank(y_true, y_pred)
    if t.shape != p.shape:
        raise ValueError(
            f"{owner}: expected y_true and y_pred to have the same shape. "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    return t, p


def per_sample(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis when ``values`` has a feature axis (rank >= 2); rank 0/1 are already per sample."""
    return values.mean(axis=-1) if values.ndim >= 2 else values


def broadcast_weights(sample_weight, shape, owner: str) -> np.ndarray:
    """``sample_weight`` (float64) broadcast to ``shape``: trailing axes are appended (a ``(batch,)``
    weight covers every entry of its sample), surplus trailing size-1 axes squeezed."""
    sw = as_array(sample_weight, owner, "sample_weight").astype(np.float64)
    shape = tuple(shape)
    while sw.ndim > len(shape) and sw.shape[-1] == 1:
        sw = sw[..., 0]
    if 0 < sw.ndim < len(shape):
        sw = sw.reshape(sw.shape + (1,) * (len(shape) - sw.ndim))
    try:
        return np.broadcast_to(sw, shape)
    except ValueError as exc:
        raise ValueError(
            f"{owner}: sample_weight must broadcast to the shape {shape} of the predictions. "
            f"Received: sample_weight.shape={np.shape(sample_weight)}"
        ) from exc


def divide_no_nan(a, b) -> np.ndarray:
    """``a / b`` with 0 where ``b == 0`` (no warning)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    return np.divide(a, b, out=np.zeros(a.shape), where=b != 0)


def check_threshold_list(thresholds, owner: str, name: str = "thresholds") -> list[float]:
    """A float or a sequence of floats in ``[0, 1]`` as a list (Keras ``parse_init_thresholds``)."""
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    if not values:
        raise ValueError(f"{owner}: expected {name} to hold at least one value. Received: {name}={thresholds!r}")
    for t in values:
        if isinstance(t, bool) or not isinstance(t, numbers.Real):
            raise TypeError(f"{owner}: expected {name} to be floats in [0, 1]. Received: {name}={thresholds!r}")
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"{owner}: expected {name} to be in [0, 1]. Received: {name}={thresholds!r}")
    return [float(t) for t in values]


# ---------------------------------------------------------------- the contract
class Metric:
    """Base class of every metric: a name, a dtype and float64 state arrays.

    Subclasses create their statistics with :meth:`add_state` and implement
    :meth:`update_state` and :meth:`result`; :meth:`reset_state` zeroes every state array.
    """

    def __init__(self, name=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: expected name to be a string. Received: name={name!r}")
        self.name = name if name else to_snake_case(type(self).__name__)
        self.dtype = None if dtype is None else standardize_dtype(dtype).name
        self._state_names: list[str] = []

    # -- state
    def add_state(self, name: str, shape=()) -> np.ndarray:
        """Create (or re-create) a float64 statistic ``self.<name>`` of ``shape``, zero-filled."""
        arr = np.zeros(shape, dtype=np.float64)
        setattr(self, name, arr)
        if name not in self._state_names:
            self._state_names.append(name)
        return arr

    def remove_state(self, name: str) -> None:
        """Forget the statistic ``name`` (lazily built metrics un-build on :meth:`reset_state`)."""
        if name in self._state_names:
            self._state_names.remove(name)
            delattr(self, name)

    @property
    def variables(self) -> list[np.ndarray]:
        """The state arrays, in creation order (Keras ``metric.variables``)."""
        return [getattr(self, n) for n in self._state_names]

    def reset_state(self) -> None:
        """Zero every statistic (the shapes of lazily built ones are kept)."""
        for n in self._state_names:
            getattr(self, n)[...] = 0.0

    def update_state(self, *args, **kwargs) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the running :meth:`result` (Keras 3 ``Metric.__call__``)."""
        self.update_state(*args, **kwargs)
        return self.result()

    # -- helpers for subclasses
    def _compute_dtype(self, x) -> np.dtype:
        return result_dtype(x, self.dtype)

    @property
    def _owner(self) -> str:
        return describe(self)

    # -- config
    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict. Received: {config!r}")
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class Sum(Metric):
    """The running (weighted) sum of the values: ``sum(values * sample_weight)``.

    ``values`` of shape ``(batch, ...)`` are summed over every axis.
    """

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.add_state("total")

    def update_state(self, values, sample_weight=None) -> None:
        values = as_array(values, self._owner, "values")
        values = values.astype(self._compute_dtype(values), copy=False)
        if sample_weight is not None:
            values = values * broadcast_weights(sample_weight, values.shape, self._owner)
        self.total += np.sum(values, dtype=np.float64)

    def result(self) -> float:
        return float(self.total)


class Mean(Metric):
    """The running weighted mean ``sum(v_i * w_i) / sum(w_i)`` of per-sample values.

    ``values`` of shape ``(batch, ...)`` are first reduced to one value per sample (mean over the
    trailing axes, or over the axes the ``sample_weight`` does not cover, as Keras does).
    A scalar ``values`` with a scalar ``sample_weight`` adds ``values * w`` to the total and ``w`` to the
    count: that is how the model tracks a batch loss, ``loss_tracker.update_state(loss, sample_weight=batch_size)``.
    The result is ``0.0`` while the count is zero.
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.add_state("total")
        self.add_state("count")

    def update_state(self, values, sample_weight=None) -> None:
        owner = self._owner
        values = as_array(values, owner, "values")
        values = values.astype(self._compute_dtype(values), copy=False)
        if sample_weight is None:
            if values.ndim == 0:
                self.total += float(values)
                self.count += 1.0
                return
            if values.ndim > 1:
                values = values.mean(axis=tuple(range(1, values.ndim)))
            self.total += np.sum(values, dtype=np.float64)
            self.count += values.shape[0]
            return
        sw = as_array(sample_weight, owner, "sample_weight").astype(np.float64)
        if values.ndim == 0:
            if sw.ndim != 0:
                raise ValueError(
                    f"{owner}: a scalar value needs a scalar sample_weight. "
                    f"Received: sample_weight.shape={sw.shape}"
                )
            self.total += float(values) * float(sw)
            self.count += float(sw)
            return
        values, sw = squeeze_or_expand_to_same_rank(values, sw)
        if sw.ndim == 0:
            sw = np.broadcast_to(sw, values.shape[:1])
        if values.ndim > sw.ndim:
            values = values.mean(axis=tuple(range(sw.ndim, values.ndim)))
        try:
            sw = np.broadcast_to(sw, values.shape)
        except ValueError as exc:
            raise ValueError(
                f"{owner}: sample_weight must broadcast to the per-sample values of shape {values.shape}. "
                f"Received: sample_weight.shape={np.shape(sample_weight)}"
            ) from exc
        weighted = values * sw
        if sw.ndim > 1:
            axes = tuple(range(1, sw.ndim))
            weighted, sw = weighted.mean(axis=axes), sw.mean(axis=axes)
        self.total += np.sum(weighted, dtype=np.float64)
        self.count += np.sum(sw, dtype=np.float64)

    def result(self) -> float:
        return float(divide_no_nan(self.total, self.count))


def _function_name(fn) -> str | None:
    name = getattr(fn, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return None


class MeanMetricWrapper(Mean):
    """A :class:`Mean` of ``fn(y_true, y_pred, **kwargs)``: turns a per-sample function into a metric.

    ``fn`` returns one value per sample, shape ``(batch,)`` (or ``(batch, ...)``, averaged per
    sample); ``sample_weight`` weights those values. When ``fn`` returns a scalar (it reduced the batch
    itself, e.g. a loss object with ``sum_over_batch_size`` reduction), the scalar counts as the mean
    of the batch and is weighted by the batch size, so the running value stays batch-size independent;
    such an ``fn`` cannot take a separate ``sample_weight``.

    ``name`` defaults to ``fn``'s ``name`` or ``__name__``. ``get_config()["fn"]`` is the registered
    name of one of fusenet's metric functions, or the callable itself (which cannot be saved to a file).
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: expected fn to be callable. Received: fn={fn!r}")
        super().__init__(name=name or _function_name(fn) or "mean_metric_wrapper", dtype=dtype)
        self._fn = fn
        self._fn_kwargs = dict(kwargs)

    @property
    def fn(self):
        """The wrapped function."""
        return self._fn

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        values = np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs))
        if values.ndim == 0 and np.ndim(y_pred) >= 1:
            if sample_weight is not None:
                raise ValueError(
                    f"{self._owner}: fn returned a single value for the whole batch, so it cannot be weighted "
                    "per sample; make fn return one value per sample. "
                    f"Received: sample_weight.shape={np.shape(sample_weight)}"
                )
            batch = np.shape(y_pred)[0]
            if batch:
                super().update_state(values, sample_weight=float(batch))
            return
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict:
        from ._registry import function_name

        registered = function_name(self._fn)
        return {**super().get_config(), "fn": registered if registered else self._fn, **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: dict):
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict. Received: {config!r}")
        config = dict(config)
        fn = config.pop("fn", None)
        if isinstance(fn, str):
            from ._registry import get_function

            fn = get_function(fn)
        return cls(fn, **config)


class FixedFunctionMetric(MeanMetricWrapper):
    """A :class:`MeanMetricWrapper` whose function is fixed by the subclass (``Accuracy``,
    ``MeanSquaredError``, ...): its config holds only the subclass's own arguments."""

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        if not isinstance(config, dict):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict. Received: {config!r}")
        return cls(**config)
