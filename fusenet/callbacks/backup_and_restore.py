"""BackupAndRestore: resume an interrupted ``fit`` where it stopped, bit for bit (Keras 3)."""

from __future__ import annotations

import os

from .callback import Callback

__all__ = ["BackupAndRestore"]

_BACKUP_FILE = "latest.backup"


class BackupAndRestore(Callback):
    """Back up the training state at the end of every epoch; restore it when ``fit`` starts again.

    The backup (one file, ``<backup_dir>/latest.backup``, written atomically) holds the model's
    weights, the optimizer's state (moments, iteration count, learning rate), the random state
    of every layer (dropout masks, noise) and of the shuffling, and the number of finished
    epochs. A new ``fit`` on the same model (or a new one with the same architecture and compile
    settings) loads it at ``on_train_begin`` and continues at the epoch after the last backup,
    so the interrupted and resumed run ends with the same weights as an uninterrupted one.
    When ``fit`` completes, the backup is deleted (``delete_checkpoint=True``).

    Args:
        backup_dir: the folder for the backup (created when needed); use one folder per run.
        save_freq: only ``"epoch"`` is supported (a backup at the end of every epoch).
        delete_checkpoint: delete the backup when training completes.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        try:
            backup_dir = os.fspath(backup_dir)
        except TypeError as exc:
            raise TypeError(f"BackupAndRestore: expected backup_dir to be a path. Received: backup_dir={backup_dir!r}") from exc
        if not backup_dir:
            raise ValueError("BackupAndRestore: expected a non-empty backup_dir. Received: backup_dir=''")
        if save_freq != "epoch":
            raise ValueError(
                f"BackupAndRestore: only save_freq='epoch' is supported (a backup at every epoch end). "
                f"Received: save_freq={save_freq!r}"
            )
        self.backup_dir = backup_dir
        self.save_freq = save_freq
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = os.path.join(backup_dir, _BACKUP_FILE)
        self.restored_epoch = None

    @property
    def backup_path(self) -> str:
        """The backup file."""
        return self._path

    def on_train_begin(self, logs=None):
        self.restored_epoch = None
        if os.path.exists(self._path):
            metadata = self.model._load_training_state(self._path)
            self.restored_epoch = int(metadata["epoch"])
            self.model._initial_epoch = self.restored_epoch

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model._save_training_state(self._path, {"epoch": epoch + 1})

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self._path):
            os.remove(self._path)
            try:
                os.rmdir(self.backup_dir)
            except OSError:  # the folder holds other files: leave it
                pass
