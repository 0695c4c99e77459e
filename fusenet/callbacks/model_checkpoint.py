"""ModelCheckpoint: save the model (or its weights) during training (Keras 3)."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from ._monitor import MonitorCallback, check_number

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(MonitorCallback):
    """Save the model at the end of every epoch (or every ``save_freq`` batches).

    Args:
        filepath: where to save; may hold ``str.format`` fields filled with ``epoch`` (1-based)
            and the epoch's logs, e.g. ``"ckpt-{epoch:02d}-{val_loss:.2f}.fnet"``.
        monitor: the quantity compared with ``save_best_only``.
        verbose: 1 prints a message at each decision.
        save_best_only: save only when ``monitor`` improved on the best value so far.
        save_weights_only: ``model.save_weights(path)`` instead of ``model.save(path)``.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (see :class:`~fusenet.callbacks.EarlyStopping`).
        save_freq: ``"epoch"`` or a number of training batches.
        initial_value_threshold: the best value to beat at the start (with ``save_best_only``).

    Saving is atomic (the model's writer), so a checkpoint on disk is always a whole file.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor=monitor, mode=mode, baseline=initial_value_threshold)
        try:
            self.filepath = os.fspath(filepath)
        except TypeError as exc:
            raise TypeError(f"ModelCheckpoint: expected filepath to be a path. Received: filepath={filepath!r}") from exc
        if not self.filepath:
            raise ValueError("ModelCheckpoint: expected a non-empty filepath. Received: filepath=''")
        self.verbose = check_number("ModelCheckpoint", "verbose", verbose, low=0, integer=True)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        if save_freq != "epoch":
            check_number("ModelCheckpoint", "save_freq", save_freq, low=1, integer=True)
        self.save_freq = save_freq
        self.initial_value_threshold = self.best
        self._batches_since_save = 0
        self._current_epoch = 0

    def on_train_begin(self, logs=None):
        self.best = self.initial_value_threshold
        self.monitor_op = None
        self._batches_since_save = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _file_path(self, epoch, batch, logs) -> str:
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields.setdefault("batch", batch + 1)
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"ModelCheckpoint: cannot format filepath {self.filepath!r} with epoch={epoch + 1} and the logs "
                f"{sorted(logs or {})}: {exc!r}"
            ) from exc

    def _should_save(self, epoch, logs, path) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                sys.stdout.write(f"\nEpoch {epoch + 1}: saving model to {path}\n")
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"ModelCheckpoint: can save the best model only with {self.monitor!r} in the logs.",
                          stacklevel=3)
            return True
        current = float(current)
        best = "None" if self.best is None else f"{self.best:.5f}"
        if not np.isnan(current) and self._is_improvement(current, self.best):
            if self.verbose > 0:
                sys.stdout.write(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, saving model to {path}\n"
                )
            self.best = current
            return True
        if self.verbose > 0:
            sys.stdout.write(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}\n")
        return False

    def _save(self, epoch, batch, logs) -> None:
        path = self._file_path(epoch, batch, logs)
        if not self._should_save(epoch, logs, path):
            return
        if os.path.isdir(path):
            raise IsADirectoryError(f"ModelCheckpoint: the filepath is an existing directory: {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
