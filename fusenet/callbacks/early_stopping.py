"""EarlyStopping: stop ``fit`` when a monitored quantity has stopped improving (Keras 3)."""

from __future__ import annotations

import math
import sys

from ._monitor import MonitorCallback, check_number

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: the logged quantity to watch (default ``"val_loss"``).
        min_delta: a change smaller than this (in absolute value) is no improvement.
        patience: epochs without improvement before stopping.
        verbose: 1 prints a message when stopping and when restoring weights.
        mode: ``"auto"`` (from the name), ``"min"`` or ``"max"``.
        baseline: training stops unless the quantity beats this value within ``patience`` epochs.
        restore_best_weights: at the end of training, set the weights of the best epoch (the
            best seen, whether or not it beat ``baseline``).
        start_from_epoch: epochs of warm-up before watching starts.

    Attributes:
        stopped_epoch: the epoch (0-based) at which training stopped (0 when it did not).
        best, best_epoch, wait: the best value, its epoch, epochs since the last improvement.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor=monitor, mode=mode, baseline=None, min_delta=min_delta)
        owner = "EarlyStopping"
        self.patience = check_number(owner, "patience", patience, low=0, integer=True)
        self.verbose = check_number(owner, "verbose", verbose, low=0, integer=True)
        self.baseline = check_number(owner, "baseline", baseline, allow_none=True)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = check_number(owner, "start_from_epoch", start_from_epoch, low=0, integer=True)
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights = None
        self.best_epoch = 0
        self.best = None
        self.monitor_op = None

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self._get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if not math.isnan(current) and self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            sys.stdout.write(f"Epoch {self.stopped_epoch + 1}: early stopping\n")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                sys.stdout.write(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.\n")
            self.model.set_weights(self.best_weights)
