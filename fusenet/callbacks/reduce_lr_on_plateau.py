"""ReduceLROnPlateau: multiply the learning rate by ``factor`` when a quantity stops improving (Keras 3)."""

from __future__ import annotations

import math
import sys

import numpy as np

from ._monitor import MonitorCallback, check_mode, check_number

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(MonitorCallback):
    """Reduce the optimizer's learning rate when ``monitor`` has not improved for ``patience`` epochs.

    ``new_lr = max(lr * factor, min_lr)``. With ``mode="auto"`` the quantity is maximized when its
    name contains ``"acc"`` and minimized otherwise (Keras). An improvement beats the best value by
    more than ``min_delta``. After a reduction, ``cooldown`` epochs pass before counting again.
    Every epoch's logs get the current ``learning_rate``.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        owner = "ReduceLROnPlateau"
        check_mode(owner, mode)
        super().__init__(monitor=monitor, mode=mode, min_delta=min_delta)
        self.factor = check_number(owner, "factor", factor, low=0.0)
        if self.factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received: factor={factor}")
        self.patience = check_number(owner, "patience", patience, low=0, integer=True)
        self.verbose = check_number(owner, "verbose", verbose, low=0, integer=True)
        self.cooldown = check_number(owner, "cooldown", cooldown, low=0, integer=True)
        self.min_lr = check_number(owner, "min_lr", min_lr, low=0.0)
        self._reset()

    def _reset(self) -> None:
        maximize = self.mode == "max" or (self.mode == "auto" and "acc" in self.monitor)
        self.monitor_op = np.greater if maximize else np.less
        self._delta = self.min_delta if maximize else -self.min_delta
        self.best = -math.inf if maximize else math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = self._get_monitor_value(logs)
        if current is None:
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        sys.stdout.write(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.\n")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
