"""The callback contract: :class:`Callback` (every hook a no-op) and :class:`CallbackList`.

A callback sees the training loop through hooks called by ``fit``, ``evaluate`` and
``predict`` (Keras 3 names and order)::

    on_train_begin
      on_epoch_begin(epoch)            # epoch counts from 0
        on_train_batch_begin(batch)    # batch counts from 0 within the epoch
        on_train_batch_end(batch, logs)  # logs: running means of loss and metrics so far
        ...
        on_test_begin ... on_test_end  # the validation pass, when there is validation data
      on_epoch_end(epoch, logs)        # logs: loss, metrics, val_loss, val_<metric>
    on_train_end(logs)

and ``on_test_begin/on_test_batch_begin/on_test_batch_end/on_test_end``,
``on_predict_begin/on_predict_batch_begin/on_predict_batch_end/on_predict_end``.
``on_batch_begin``/``on_batch_end`` are the Keras aliases of the training-batch hooks.

A callback reaches the model only through ``self.model`` (set by :meth:`Callback.set_model`) and
the loop's settings through ``self.params`` (``{"verbose", "epochs", "steps"}``). Setting
``model.stop_training = True`` ends ``fit`` after the current batch.
"""

from __future__ import annotations

__all__ = ["Callback", "CallbackList", "HOOKS"]

#: every hook name a callback may implement
HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


class Callback:
    """Base class of callbacks: every hook does nothing; subclasses override the ones they need.

    Attributes:
        model: the model being trained (``None`` until :meth:`set_model`).
        params: the loop's settings: ``verbose``, ``epochs`` and ``steps`` (batches per epoch).
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = dict(params)

    # ------------------------------------------------------------ training
    def on_train_begin(self, logs=None):
        """Start of ``fit``. Stateful callbacks reset their state here."""

    def on_train_end(self, logs=None):
        """End of a ``fit`` that completed (not called when an exception ends it)."""

    def on_epoch_begin(self, epoch, logs=None):
        """Start of epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch, logs=None):
        """End of epoch ``epoch``; ``logs`` holds the epoch's loss, metrics and ``val_`` entries.

        A callback may add entries (e.g. ``learning_rate``); callbacks later in the list, the
        History and the progress bar see them.
        """

    def on_train_batch_begin(self, batch, logs=None):
        """Start of training batch ``batch`` (0-based within the epoch). Calls :meth:`on_batch_begin`."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """End of training batch ``batch``; ``logs`` holds the running means. Calls :meth:`on_batch_end`."""
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        """Keras alias of :meth:`on_train_batch_begin`."""

    def on_batch_end(self, batch, logs=None):
        """Keras alias of :meth:`on_train_batch_end`."""

    # ------------------------------------------------------------ evaluation
    def on_test_begin(self, logs=None):
        """Start of ``evaluate`` (also the validation pass inside ``fit``)."""

    def on_test_end(self, logs=None):
        """End of ``evaluate``; ``logs`` holds the loss and metrics."""

    def on_test_batch_begin(self, batch, logs=None):
        """Start of evaluation batch ``batch``."""

    def on_test_batch_end(self, batch, logs=None):
        """End of evaluation batch ``batch``."""

    # ------------------------------------------------------------ prediction
    def on_predict_begin(self, logs=None):
        """Start of ``predict``."""

    def on_predict_end(self, logs=None):
        """End of ``predict``."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Start of prediction batch ``batch``."""

    def on_predict_batch_end(self, batch, logs=None):
        """End of prediction batch ``batch``; ``logs["outputs"]`` holds its predictions."""


class CallbackList(Callback):
    """Calls each hook on every callback of a list, in order (Keras ``CallbackList``).

    ``add_history`` appends a :class:`~fusenet.callbacks.History` and ``add_progbar`` a
    :class:`~fusenet.callbacks.ProgbarLogger` unless the list already holds one (the progress bar
    is added only when ``verbose`` is not 0). ``model`` and the remaining keyword arguments
    (``verbose``, ``epochs``, ``steps``) are passed to every callback.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        else:
            try:
                callbacks = list(callbacks)
            except TypeError as exc:
                raise TypeError(f"CallbackList: expected a list of Callback objects. Received: callbacks={callbacks!r}") from exc
        for i, cb in enumerate(callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"CallbackList: expected every callback to be a fusenet.callbacks.Callback. "
                    f"Received: callbacks[{i}]={cb!r}"
                )
        self.callbacks = callbacks
        self._add_default_callbacks(add_history, add_progbar and params.get("verbose", 0) != 0)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def _add_default_callbacks(self, add_history: bool, add_progbar: bool) -> None:
        from .history import History
        from .progbar_logger import ProgbarLogger

        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)

    @property
    def history(self):
        """The list's :class:`~fusenet.callbacks.History` (``None`` when it has none)."""
        return self._history

    def append(self, callback) -> None:
        if not isinstance(callback, Callback):
            raise TypeError(f"CallbackList.append: expected a fusenet.callbacks.Callback. Received: {callback!r}")
        self.callbacks.append(callback)

    def set_model(self, model) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def _call(self, hook: str, *args, logs=None):
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs=logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs=logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs=logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs=logs)
