"""The loss contract: :class:`Loss`, reductions, sample weights, input checks and the registry.

A loss is an object called as ``loss(y_true, y_pred, sample_weight=None)``. It computes one
loss value per sample (the *per-sample losses*, e.g. shape ``(batch,)``), multiplies them by
``sample_weight`` and reduces them as ``loss.reduction`` says, exactly as Keras 3 does:

- ``"sum_over_batch_size"`` (default; ``"mean"`` is an alias): ``sum(w * l) / l.size``;
- ``"sum"``: ``sum(w * l)``;
- ``"mean_with_sample_weight"``: ``sum(w * l) / sum(w)`` with ``w`` broadcast to ``l``'s shape
  (0 when the weights sum to 0; without weights it is ``"sum_over_batch_size"``);
- ``"none"`` (or ``None``): no reduction, the array ``w * l`` is returned.

The reduced value is returned as a Python ``float``. ``loss.gradient(y_true, y_pred,
sample_weight=None)`` returns the gradient of that same value with respect to ``y_pred``, an
array shaped like ``y_pred`` with its float dtype; with ``"none"`` it is the gradient of the
*sum* of the weighted per-sample losses.

``sample_weight`` is per sample: shape ``(batch,)``, or any shape that broadcasts to the shape
of the per-sample losses once trailing axes are appended (``(batch, 1)`` is squeezed as Keras
does). Losses that mask entries (``ignore_index``, Circle's empty rows) fold the mask into the
weights as Keras does, so ``"sum_over_batch_size"`` then divides by the number of valid
entries.

Dtypes: the loss computes in float64 when ``y_pred`` is float64, otherwise in ``y_pred``'s
float dtype (integer ``y_pred`` in :func:`fusenet.floatx`; float16 is computed in float32 and
returned as float16).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..utils import check_numeric, result_dtype

__all__ = [
    "REDUCTIONS",
    "EPSILON",
    "Loss",
    "ElementwiseLoss",
    "register_loss",
    "available",
    "get",
    "serialize",
    "deserialize",
]

REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", "mean_with_sample_weight")
EPSILON = 1e-7  # Keras ``backend.epsilon()``: the clipping bound of probabilities

_CLASSES: dict[str, type] = {}
_ALIASES: dict[str, type] = {}


class Loss:
    """Base class of every loss.

    Subclasses set ``_default_name`` and implement three hooks, all on NumPy arrays of the
    compute dtype:

    - ``_prepare(y_true, y_pred) -> (yt, yp)``: convert and check the labels, check the
      shapes; may return a reshaped *view* of ``y_pred`` (the gradient is reshaped back);
    - ``_forward(yt, yp) -> (losses, cache)``: the per-sample losses and a dict of what
      ``_backward`` needs (``cache["mask"]``, when present, is a boolean array shaped like
      ``losses`` marking the valid entries);
    - ``_backward(yt, yp, cache, dlosses) -> dyp``: the gradient with respect to ``yp`` given
      ``dlosses``, the gradient of the reduced value with respect to every per-sample loss.

    Args:
        reduction: ``"sum_over_batch_size"`` (default), ``"mean"``, ``"sum"``, ``"none"``/``None``
            or ``"mean_with_sample_weight"``.
        name: name of the instance; defaults to the Keras name of the loss.
    """

    _default_name = "loss"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction is None:
            reduction = "none"
        if not isinstance(reduction, str) or reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: expected reduction to be one of {list(REDUCTIONS)} or None. "
                f"Received: reduction={reduction!r}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: expected name to be a string or None. Received: name={name!r}")
        self.reduction = reduction
        self.name = name or self._default_name

    # ------------------------------------------------------------ public API
    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss (a Python float), or the weighted per-sample losses with ``"none"``."""
        return self._value(self._evaluate(y_true, y_pred, sample_weight))

    def gradient(self, y_true, y_pred, sample_weight=None) -> np.ndarray:
        """The gradient of ``self(y_true, y_pred, sample_weight)`` with respect to ``y_pred``.

        With reduction ``"none"`` it is the gradient of the sum of the weighted per-sample
        losses. The result has ``y_pred``'s shape and float dtype.
        """
        return self._gradient(self._evaluate(y_true, y_pred, sample_weight))

    def value_and_gradient(self, y_true, y_pred, sample_weight=None):
        """``(self(...), self.gradient(...))`` from one forward pass (what a training step needs)."""
        ev = self._evaluate(y_true, y_pred, sample_weight)
        return self._value(ev), self._gradient(ev)

    def describe(self) -> str:
        """``"loss 'name' (Class)"``, for messages."""
        return f"loss '{self.name}' ({type(self).__name__})"

    def get_config(self) -> dict:
        """Constructor arguments (JSON-safe): ``name``, ``reduction`` and the loss's own."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**dict(config))

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ hooks
    def _prepare(self, y_true, yp):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, yt, yp):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, yt, yp, cache, dlosses):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ machinery
    def _value(self, ev):
        values = ev["losses"] if ev["weights"] is None else ev["losses"] * ev["weights"]
        if self.reduction == "none":
            return values.astype(ev["out_dtype"], copy=False)
        divisor = self._divisor(ev["losses"], ev["weights"])
        if divisor == 0:
            return 0.0
        return float(np.sum(values) / divisor)

    def _gradient(self, ev):
        losses, weights = ev["losses"], ev["weights"]
        dtype = losses.dtype
        divisor = 1 if self.reduction == "none" else self._divisor(losses, weights)
        if divisor == 0:
            dl = np.zeros(losses.shape, dtype=dtype)
        elif weights is None:
            dl = np.full(losses.shape, 1.0 / divisor, dtype=dtype)
        else:
            dl = (weights / divisor).astype(dtype, copy=False)
        grad = self._backward(ev["yt"], ev["yp"], ev["cache"], dl)
        return np.asarray(grad).reshape(ev["shape"]).astype(ev["out_dtype"], copy=False)

    def _evaluate(self, y_true, y_pred, sample_weight) -> dict:
        y_pred = check_numeric(y_pred, f"{self.describe()}: y_pred")
        out_dtype = result_dtype(y_pred)
        dtype = np.dtype(np.float32) if out_dtype == np.float16 else out_dtype
        yp = y_pred.astype(dtype, copy=False)
        yt, yp_view = self._prepare(y_true, yp)
        losses, cache = self._forward(yt, yp_view)
        losses = np.asarray(losses, dtype=dtype)
        weights = self._weights(sample_weight, losses, cache.get("mask"), dtype)
        return {"yt": yt, "yp": yp_view, "losses": losses, "cache": cache, "weights": weights,
                "out_dtype": out_dtype, "shape": y_pred.shape}

    def _weights(self, sample_weight, losses, mask, dtype):
        """The sample weights broadcast to ``losses.shape`` with the mask folded in (Keras ``apply_mask``)."""
        weights = None
        if sample_weight is not None:
            sw = check_numeric(sample_weight, f"{self.describe()}: sample_weight").astype(dtype, copy=False)
            if sw.ndim == losses.ndim + 1 and sw.shape[-1] == 1:
                sw = sw[..., 0]
            while sw.ndim < losses.ndim:
                sw = sw[..., None]
            try:
                weights = np.broadcast_to(sw, losses.shape)
            except ValueError:
                raise ValueError(
                    f"{self.describe()}: expected sample_weight to broadcast to the per-sample loss shape "
                    f"{losses.shape}. Received: sample_weight.shape={np.shape(sample_weight)}"
                ) from None
        if mask is not None:
            m = np.asarray(mask, dtype=dtype)
            if self.reduction in ("sum_over_batch_size", "mean"):
                valid = float(np.sum(m))
                m = m * (m.size / valid if valid > 0 else 0.0)
            weights = m if weights is None else weights * m
        return weights

    def _divisor(self, losses, weights) -> float:
        if self.reduction == "sum":
            return 1.0
        if self.reduction == "mean_with_sample_weight" and weights is not None:
            return float(np.sum(weights))
        return float(losses.size)


# ---------------------------------------------------------------- shared input helpers
def as_float(loss: Loss, x, dtype, what: str = "y_true") -> np.ndarray:
    """``x`` as a float array of ``dtype``; ``TypeError`` naming ``loss`` when not numeric."""
    if x is None:
        raise TypeError(f"{loss.describe()}: expected {what} to be a numeric array. Received: {what}=None")
    return check_numeric(x, f"{loss.describe()}: {what}").astype(dtype, copy=False)


def as_labels(loss: Loss, x, what: str = "y_true") -> np.ndarray:
    """``x`` as an int64 array of class labels (floats must hold whole numbers)."""
    if x is None:
        raise TypeError(f"{loss.describe()}: expected {what} to be an array of integer labels. Received: {what}=None")
    arr = check_numeric(x, f"{loss.describe()}: {what}")
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        whole = finite & (arr == np.round(np.where(finite, arr, 0)))
        if not np.all(whole):
            bad = arr[~whole].flat[0]
            raise ValueError(f"{loss.describe()}: expected {what} to hold integer class labels. Received: label {bad}")
    return arr.astype(np.int64)


def check_label_range(loss: Loss, labels: np.ndarray, num_classes: int, valid=None, low: int = 0) -> None:
    """``ValueError`` naming the first label outside ``[low, num_classes)`` (entries where ``valid`` is False are skipped)."""
    bad = (labels < low) | (labels >= num_classes)
    if valid is not None:
        bad &= valid
    if np.any(bad):
        label = int(labels[bad].flat[0])
        raise ValueError(
            f"{loss.describe()}: expected every label in [{low}, {num_classes}) for {num_classes} classes. "
            f"Received: label {label}"
        )


def match_shapes(loss: Loss, yt: np.ndarray, yp: np.ndarray):
    """``(yt, yp)`` of equal shapes, else ``ValueError`` naming both shapes.

    As Keras, ``y_true`` of shape ``(batch,)`` matches ``y_pred`` of shape ``(batch, 1)`` and
    ``y_true`` of shape ``(batch, 1)`` matches ``y_pred`` of shape ``(batch,)``.
    """
    if yt.shape == yp.shape:
        return yt, yp
    if yt.ndim == yp.ndim - 1 and yp.shape[-1] == 1 and yp.shape[:-1] == yt.shape:
        return yt[..., None], yp
    if yt.ndim == yp.ndim + 1 and yt.shape[-1] == 1 and yt.shape[:-1] == yp.shape:
        return yt[..., 0], yp
    raise ValueError(
        f"{loss.describe()}: expected y_true and y_pred to have the same shape. "
        f"Received: y_true.shape={yt.shape}, y_pred.shape={yp.shape}"
    )


def normalize_axis(loss: Loss, axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (int, tuple of ints or None for all axes) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{loss.describe()}: axis {a} is out of range for inputs of rank {ndim}. Received: axis={axis!r}"
            )
        out.append(int(a) % ndim)
    return tuple(sorted(set(out)))


def check_axis_arg(owner: str, axis, allow_none: bool = False, allow_tuple: bool = False):
    """Validate an ``axis`` constructor argument; returns it JSON-safe (tuples become lists)."""
    if axis is None and allow_none:
        return None
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return int(axis)
    if allow_tuple and isinstance(axis, (tuple, list)) and axis and all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis
    ):
        return [int(a) for a in axis]
    expected = "an int" + (", a tuple of ints" if allow_tuple else "") + (" or None" if allow_none else "")
    raise TypeError(f"{owner}: expected axis to be {expected}. Received: axis={axis!r}")


def check_number(owner: str, value, name: str, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """``value`` as a float within the given bounds, else ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: expected {name} to be a number. Received: {name}={value!r}")
    v = float(value)
    ok = np.isfinite(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ValueError(f"{owner}: expected {name} to be a finite number in {interval}. Received: {name}={value!r}")
    return v


def check_bool(owner: str, value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be True or False. Received: {name}={value!r}")
    return bool(value)


# ---------------------------------------------------------------- registry
def register_loss(cls: type, *aliases: str) -> type:
    """Register ``cls`` under its class name, its default name and every alias; returns ``cls``."""
    _CLASSES[cls.__name__] = cls
    for key in (cls._default_name, *aliases):
        _ALIASES[key] = cls
    return cls


def available() -> list[str]:
    """Every name :func:`get` accepts (aliases and class names), sorted."""
    return sorted(set(_ALIASES) | set(_CLASSES))


def get(identifier):
    """A loss object from a name (``"mse"``, ``"MeanSquaredError"``), a config dict or a :class:`Loss`.

    ``None`` gives ``None`` (as Keras). Unknown names raise ``ValueError`` listing the valid ones;
    plain callables raise ``TypeError`` (fusenet needs the loss's gradient).
    """
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown loss: {identifier!r}. Expected one of {available()}.")
        return cls()
    raise TypeError(
        "Expected a loss name, a config dict or a fusenet.losses.Loss object "
        f"(plain functions have no gradient). Received: {identifier!r}"
    )


def serialize(loss: Loss) -> dict:
    """``{"class_name": ..., "config": ...}`` of a loss (JSON-safe)."""
    if not isinstance(loss, Loss):
        raise TypeError(f"Expected a fusenet.losses.Loss object. Received: {loss!r}")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config):
    """Inverse of :func:`serialize` (a name string is passed to :func:`get`); only fusenet's own loss classes are built."""
    if isinstance(config, str):
        return get(config)
    name = config.get("class_name") if isinstance(config, dict) else None
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"Unknown loss class: {name!r}. Expected one of {sorted(_CLASSES)}.")
    inner = config.get("config", {})
    if not isinstance(inner, dict):
        raise ValueError(f"Expected the config of loss class {name!r} to be a dict. Received: {inner!r}")
    return cls.from_config(inner)


# ---------------------------------------------------------------- element-wise family
class ElementwiseLoss(Loss):
    """A loss ``l = mean(e(y_true, y_pred), axis)`` of an element-wise term ``e`` (Keras layout).

    ``y_true`` and ``y_pred`` have the same shape ``(batch, ..., d)``; the per-sample losses
    have shape ``(batch, ...)`` (the mean, or the sum for ``_reduce_op = "sum"``, over
    ``axis``, the last one unless the loss has an ``axis`` argument). For 1-D inputs
    ``(batch,)`` every element is one sample. Subclasses implement
    ``_elementwise(yt, yp) -> (e, de/dyp)``.
    """

    _reduce_op = "mean"

    def _prepare(self, y_true, yp):
        return match_shapes(self, as_float(self, y_true, yp.dtype), yp)

    def _elementwise(self, yt, yp):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward(self, yt, yp):
        e, de = self._elementwise(yt, yp)
        if e.ndim < 2:
            return e, {"de": de, "axis": None, "n": 1}
        ax = normalize_axis(self, getattr(self, "axis", -1), e.ndim)[0]
        n = e.shape[ax] if self._reduce_op == "mean" else 1
        losses = np.sum(e, axis=ax) / n if n != 1 else np.sum(e, axis=ax)
        return losses, {"de": de, "axis": ax, "n": n}

    def _backward(self, yt, yp, cache, dl):
        if cache["axis"] is None:
            return cache["de"] * dl
        return cache["de"] * (np.expand_dims(dl, cache["axis"]) / cache["n"])
