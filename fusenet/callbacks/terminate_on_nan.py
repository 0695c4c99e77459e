"""TerminateOnNaN: stop ``fit`` as soon as a batch's loss is NaN or infinite (Keras 3)."""

from __future__ import annotations

import math
import sys

from .callback import Callback

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite.

    Prints ``Batch <i>: Invalid loss, terminating training`` and sets ``model.stop_training``;
    ``fit`` then ends after that batch (the epoch's logs still reach ``History``).

    Attributes:
        terminated_batch: ``(epoch, batch)`` where the invalid loss appeared, else ``None``.
    """

    def __init__(self):
        super().__init__()
        self.terminated_batch = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.terminated_batch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            sys.stdout.write(f"Batch {batch}: Invalid loss, terminating training\n")
            sys.stdout.flush()
            self.terminated_batch = (self._epoch, batch)
            self.model.stop_training = True
