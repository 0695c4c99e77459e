"""CSVLogger: write every epoch's logs as a row of a CSV file (Keras 3)."""

from __future__ import annotations

import collections.abc
import csv
import os

import numpy as np

from .callback import Callback

__all__ = ["CSVLogger"]


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (collections.abc.Iterable, np.ndarray)) and np.ndim(value) > 0:
        return f'"[{", ".join(str(v) for v in np.ravel(value))}]"'
    return float(value) if isinstance(value, (np.floating, np.ndarray)) else value


class CSVLogger(Callback):
    """Stream epoch results to ``filename``: a header ``epoch,<sorted log keys>`` then one row per epoch.

    Args:
        filename: the CSV file.
        separator: the field separator.
        append: keep an existing file and add rows to it (no second header); otherwise the file
            is overwritten when training begins.

    Each row is written and flushed at the end of its epoch, so an interrupted run keeps the rows
    of the epochs that finished. A key missing in a later epoch is written as ``NA``.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        try:
            self.filename = os.fspath(filename)
        except TypeError as exc:
            raise TypeError(f"CSVLogger: expected filename to be a path. Received: filename={filename!r}") from exc
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: expected separator to be one character. Received: separator={separator!r}")
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._header_written = False

    def on_train_begin(self, logs=None):
        self.keys = None
        exists = os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        if self.append and exists:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.sep), None)
            self._header_written = header is not None
            if header and header[0] == "epoch":
                self.keys = header[1:]
        else:
            with open(self.filename, "w", newline=""):
                pass
            self._header_written = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        row = {"epoch": epoch}
        row.update({key: _cell(logs[key]) if key in logs else "NA" for key in self.keys})
        with open(self.filename, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch"] + list(self.keys), delimiter=self.sep,
                                    extrasaction="ignore")
            if not self._header_written:
                writer.writeheader()
                self._header_written = True
            writer.writerow(row)
