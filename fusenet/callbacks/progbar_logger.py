"""The Keras-style progress bar (:class:`Progbar`) and the callback that drives it (:class:`ProgbarLogger`).

On a terminal (``sys.stdout.isatty()`` or a Jupyter kernel) the bar is redrawn in place::

    Epoch 1/10
    12/50 [=====>........................] - ETA: 3s - loss: 0.2345 - accuracy: 0.9100

and finished with the epoch's time and the epoch logs (validation entries included)::

    50/50 [==============================] - 1s 20ms/step - loss: 0.2345 - accuracy: 0.9100 - val_loss: ...

When the output is not a terminal (a file, a pipe, a CI log), ``verbose=1`` writes only that
final line, one per epoch. ``verbose=2`` writes one short line per epoch
(``50/50 - 1s - 20ms/step - loss: ...``); ``verbose=0`` writes nothing.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from .callback import Callback

__all__ = ["Progbar", "ProgbarLogger"]


def _is_interactive(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # a closed stream
        return False
    return "ipykernel" in sys.modules


def _format_value(value) -> str:
    if np.ndim(value) == 0:
        v = float(value)
        return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"
    return np.array2string(np.asarray(value, dtype=np.float64), precision=4, separator=", ")


def _format_eta(seconds: float) -> str:
    s = int(seconds)
    if s > 3600:
        return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"
    if s > 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def _format_per_unit(seconds: float, unit: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


class Progbar:
    """A progress bar over ``target`` steps.

    Args:
        target: the number of steps (``None`` when unknown: the bar shows only the count).
        width: the bar's width in characters.
        verbose: 1 (the bar), 2 (one line at the end), 0 (silent).
        interval: the minimum time in seconds between two redraws on a terminal.
        unit_name: the name of a step, for the ``ms/step`` figure.
        stream: where to write; ``None`` means ``sys.stdout`` looked up at every write.
    """

    def __init__(self, target, width=30, verbose=1, interval=0.05, unit_name="step", stream=None):
        if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 0):
            raise ValueError(f"Progbar: expected target to be a non-negative int or None. Received: target={target!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: expected verbose to be 0, 1 or 2. Received: verbose={verbose!r}")
        self.target = target
        self.width = int(width)
        self.verbose = verbose
        self.interval = float(interval)
        self.unit_name = unit_name
        self._stream = stream
        self._values: dict = {}
        self._start = time.time()
        self._last_update = 0.0
        self._prev_width = 0
        self._seen = 0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def _write(self, text: str) -> None:
        stream = self.stream
        stream.write(text)
        stream.flush()

    def update(self, current: int, values=None, finalize=None) -> None:
        """Show step ``current`` with ``values`` (a list of ``(name, value)`` or a dict).

        The values are shown as given (the training loop passes running means already).
        ``finalize`` (default: ``current >= target``) ends the line.
        """
        if values is not None:
            for name, value in (values.items() if isinstance(values, dict) else values):
                self._values[name] = value
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._seen = current
        if self.verbose == 0:
            return
        now = time.time()
        elapsed = now - self._start
        per_unit = elapsed / current if current else 0.0
        metrics = "".join(f" - {name}: {_format_value(value)}" for name, value in self._values.items())
        interactive = _is_interactive(self.stream)

        if self.verbose == 2:
            if finalize:
                count = self._count(current)
                self._write(f"{count} - {elapsed:.0f}s - {_format_per_unit(per_unit, self.unit_name)}{metrics}\n")
            return

        if not finalize and (not interactive or now - self._last_update < self.interval):
            return
        self._last_update = now
        line = self._bar(current)
        if finalize:
            line += f" - {elapsed:.0f}s {_format_per_unit(per_unit, self.unit_name)}"
        elif self.target is not None and current:
            line += f" - ETA: {_format_eta(per_unit * (self.target - current))}"
        line += metrics
        if interactive:
            pad = max(self._prev_width - len(line), 0)
            self._prev_width = len(line)
            self._write("\r" + line + " " * pad + ("\n" if finalize else ""))
        else:
            self._write(line + "\n")

    def add(self, n: int, values=None) -> None:
        """Advance by ``n`` steps."""
        self.update(self._seen + n, values)

    def _count(self, current: int) -> str:
        if self.target is None:
            return f"{current}/Unknown"
        digits = int(math.log10(self.target)) + 1 if self.target > 0 else 1
        return f"{current:{digits}d}/{self.target}"

    def _bar(self, current: int) -> str:
        if self.target is None or self.target == 0:
            return self._count(current)
        fraction = min(current / self.target, 1.0)
        filled = int(self.width * fraction)
        bar = "=" * max(filled - 1, 0)
        if filled > 0:
            bar += ">" if current < self.target else "="
        bar += "." * (self.width - filled)
        return f"{self._count(current)} [{bar}]"


class ProgbarLogger(Callback):
    """Prints the progress bar of ``fit``, ``evaluate`` and ``predict`` (added by the model when
    ``verbose`` is not 0; Keras 3 semantics).

    ``verbose`` comes from the loop's params: 1 shows the bar (one line per epoch when the output
    is not a terminal), 2 one line per epoch. ``Epoch i/N`` heads every epoch when ``N > 1``.
    During ``fit`` the validation pass draws no bar of its own; its results appear on the
    epoch's line.
    """

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        super().set_params(params)
        verbose = params.get("verbose", 1)
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params.get("epochs", 1) or 1
        self.target = params.get("steps")

    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._reset_progbar()

    def on_predict_begin(self, logs=None):
        self._reset_progbar()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()
        if self.verbose and self.epochs > 1:
            sys.stdout.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            sys.stdout.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._update_progbar(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._finalize_progbar(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finalize_progbar(logs)

    def on_predict_end(self, logs=None):
        self._finalize_progbar(logs)

    def _reset_progbar(self):
        self.seen = 0
        self.progbar = None

    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step")

    def _update_progbar(self, batch, logs=None):
        self._maybe_init_progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            self.progbar.update(self.seen, _scalar_items(logs), finalize=False)

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, _scalar_items(logs), finalize=True)


def _scalar_items(logs):
    """The displayable entries of ``logs`` (predictions, under ``outputs``, are not shown)."""
    return [(k, v) for k, v in (logs or {}).items() if k != "outputs"]
