"""Shared logic of the callbacks that watch one logged quantity (Keras 3 ``MonitorCallback``)."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .callback import Callback

__all__ = ["MonitorCallback", "check_mode", "check_number"]

_MODES = ("auto", "min", "max")
# Names of quantities that improve upward, for mode="auto" when the metric object does not say.
_UP_WORDS = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "fbeta", "top_k")


def check_mode(owner: str, mode) -> str:
    if mode not in _MODES:
        raise ValueError(f"{owner}: expected mode to be one of {list(_MODES)}. Received: mode={mode!r}")
    return mode


def check_number(owner: str, name: str, value, *, low=None, allow_none=False, integer=False):
    """``value`` as a finite number (an int with ``integer``) ``>= low``; ``None`` passes with ``allow_none``."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{owner}: expected {name} to be {what}. Received: {name}={value!r}")
    if not math.isfinite(value) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"{owner}: expected {name} to be a finite number{bound}. Received: {name}={value}")
    return int(value) if integer else float(value)


def metric_direction(model, name: str):
    """``"up"``/``"down"`` for ``name`` (without ``val_``) when it can be told, else ``None``.

    ``loss`` and loss-like names go down; a compiled metric object may say through a
    ``_direction`` attribute (Keras 3); otherwise names of accuracy-like quantities go up.
    """
    if name == "loss" or name.endswith("_loss"):
        return "down"
    for metric in getattr(model, "metrics", None) or []:
        if getattr(metric, "name", None) == name and getattr(metric, "_direction", None) in ("up", "down"):
            return metric._direction
    lowered = name.lower()
    if any(word in lowered for word in _UP_WORDS):
        return "up"
    if any(word in lowered for word in ("error", "mse", "mae", "mape", "msle", "crossentropy", "hinge", "divergence")):
        return "down"
    return None


class MonitorCallback(Callback):
    """Base of EarlyStopping and ModelCheckpoint: picks the comparison from ``mode`` and tells improvements.

    With ``mode="auto"`` the direction comes from the quantity's name (``loss`` goes down,
    ``accuracy`` up, ...; see :func:`metric_direction`); when it cannot be told a ``ValueError``
    asks for ``mode="min"`` or ``"max"``. An improvement is ``current - min_delta < best`` (min)
    or ``current + ... > best`` (max), with ``min_delta >= 0``.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0.0):
        super().__init__()
        owner = type(self).__name__
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{owner}: expected monitor to be the name of a logged quantity. Received: monitor={monitor!r}")
        self.monitor = monitor
        self.mode = check_mode(owner, mode)
        self.baseline = check_number(owner, "baseline", baseline, allow_none=True)
        self.min_delta = abs(check_number(owner, "min_delta", min_delta))
        self.best = self.baseline
        self.monitor_op = None
        self._delta = 0.0

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            direction = "down"
        elif self.mode == "max":
            direction = "up"
        else:
            direction = metric_direction(self.model, self.monitor.removeprefix("val_"))
            if direction is None:
                raise ValueError(
                    f"{type(self).__name__}: cannot tell whether monitor={self.monitor!r} should be minimized or "
                    "maximized. Pass mode='min' or mode='max'."
                )
        self.monitor_op = np.less if direction == "down" else np.greater
        self._delta = -self.min_delta if direction == "down" else self.min_delta
        if self.best is None:
            self.best = math.inf if direction == "down" else -math.inf

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        return bool(self.monitor_op(value - self._delta, reference))

    def _get_monitor_value(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__} is conditioned on {self.monitor!r}, which is not in the logs. "
                f"Available: {', '.join(sorted(logs or {}))}.",
                stacklevel=3,
            )
            return None
        return value
