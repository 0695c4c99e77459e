"""History: the per-epoch logs of ``fit`` (returned by ``fit`` and kept as ``model.history``)."""

from __future__ import annotations

from .callback import Callback

__all__ = ["History"]


class History(Callback):
    """Records every epoch's logs.

    Attributes:
        epoch: the epoch indices (0-based) that ran, in order.
        history: ``{key: [value per epoch]}`` with keys ``loss``, the metric names, ``val_loss``,
            ``val_<metric>`` and whatever other callbacks added (e.g. ``learning_rate``).
    """

    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = {}

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self

    def __repr__(self):
        return f"<History epochs={len(self.epoch)} keys={sorted(self.history)}>"
