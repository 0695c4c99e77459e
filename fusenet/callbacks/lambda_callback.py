"""LambdaCallback: a callback made of plain functions (Keras 3)."""

from __future__ import annotations

from .callback import HOOKS, Callback

__all__ = ["LambdaCallback"]


class LambdaCallback(Callback):
    """A callback whose hooks are the given functions; the others do nothing.

    The functions take the hook's arguments: ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_begin(logs)``, ``on_train_end(logs)``,
    ``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)``, and through
    keyword arguments any other hook (``on_test_begin=...``, ``on_predict_batch_end=...``).

    Example::

        LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        for name in kwargs:
            if name not in HOOKS:
                raise TypeError(f"LambdaCallback: unknown hook {name!r}. Valid hooks: {list(HOOKS)}")
        hooks.update(kwargs)
        for name, fn in hooks.items():
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: expected {name} to be a function. Received: {name}={fn!r}")
            setattr(self, name, _bind(name, fn))


def _bind(name, fn):
    if name in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end", "on_predict_begin", "on_predict_end"):
        return lambda logs=None: fn(logs)
    return lambda index, logs=None: fn(index, logs)
