"""Losses and gradient tapes: custom losses written with tape operations, and fusenet losses on a tape.

**TapeLoss.** ``TapeLoss(fn)`` turns a function ``fn(y_true, y_pred) -> per-sample losses``
written with tape operations (both arguments are Tensors) into a fusenet loss: calling it gives
the reduced value (sample weights and reductions exactly as :class:`fusenet.losses.Loss`), and
``gradient(y_true, y_pred)`` comes from the tape, so it plugs into ``compile``/``fit``::

    def log_cosh(y_true, y_pred):
        d = y_pred - y_true
        return ad.mean(d + ad.softplus(-2.0 * d) - math.log(2.0), axis=-1)

    model.compile(optimizer="adam", loss=TapeLoss(log_cosh))

Called on a Tensor ``y_pred`` inside a tape, a TapeLoss returns a Tensor (the same reduced
value, recorded), so it also serves hand-written training steps and higher-order gradients.

**call_loss.** ``call_loss(loss, y_true, y_pred)`` evaluates any fusenet loss on a Tensor
``y_pred`` inside a tape as one node whose gradient is the loss's own ``gradient`` (a reducing
loss: its value must be a scalar). Like layer nodes, it cannot be differentiated twice.
"""

from __future__ import annotations

import numpy as np

from ..losses.base import Loss
from ..utils import check_numeric
from . import ops
from .tape import _STATE, ComputationNode, GradientTape, accumulate, is_seed, non_differentiable
from .tensor import ASSIGNMENTS, Tensor

__all__ = ["TapeLoss", "call_loss"]

_new_loss_node = object.__new__


def _function_name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


class TapeLoss(Loss):
    """A loss from a function written with tape operations; its gradient comes from the tape.

    Args:
        fn: ``fn(y_true, y_pred) -> losses``, both arguments Tensors (``y_true`` keeps an integer
            dtype for sparse labels, float labels take ``y_pred``'s dtype; as in Keras, a ``y_true``
            one rank below a ``y_pred`` whose last axis is 1 gets that axis, and a trailing axis of
            size 1 of a ``y_true`` one rank above is dropped), returning the per-sample losses,
            e.g. shape ``(batch,)`` (a scalar is accepted without sample weights).
        reduction: as every fusenet loss (``"sum_over_batch_size"`` by default).
        name: defaults to the function's name (``"tape_loss"`` for lambdas).
    """

    _default_name = "tape_loss"

    def __init__(self, fn, reduction="sum_over_batch_size", name=None):
        if not callable(fn):
            raise TypeError(f"TapeLoss: expected fn to be a callable fn(y_true, y_pred). Received: fn={fn!r}")
        fn_name = getattr(fn, "__name__", None)
        if name is None and isinstance(fn_name, str) and fn_name.isidentifier():
            name = fn_name
        super().__init__(reduction=reduction, name=name)
        self.fn = fn

    # ------------------------------------------------------------ the Loss hooks
    def _prepare(self, y_true, yp):
        if y_true is None:
            raise TypeError(f"{self.describe()}: expected y_true to be a numeric array. Received: y_true=None")
        if isinstance(y_true, Tensor):
            y_true = y_true._value
        yt = check_numeric(y_true, f"{self.describe()}: y_true")
        if yt.dtype.kind == "f" and yt.dtype != yp.dtype:
            yt = yt.astype(yp.dtype)
        # Keras's squeeze_or_expand_to_same_rank: (batch,) labels meet (batch, 1) predictions
        if yt.ndim == yp.ndim - 1 and yp.shape[-1] == 1:
            yt = yt[..., None]
        elif yt.ndim == yp.ndim + 1 and yt.shape[-1] == 1:
            yt = yt[..., 0]
        return yt, yp

    def _losses(self, yt: np.ndarray, y_pred: Tensor) -> Tensor:
        losses = self.fn(Tensor(yt), y_pred)
        if not isinstance(losses, Tensor):
            losses = Tensor._wrap(np.asarray(losses, dtype=y_pred.dtype))
        return losses

    def _forward(self, yt, yp):
        ypt = Tensor(yp)
        tape = GradientTape(watch_accessed_variables=False)
        tape._replace_layer_grads = False  # layers called in fn add to their grads, as a backward does
        with tape:
            tape.watch(ypt)
            losses = self._losses(yt, ypt)
        return losses._value, {"tape": tape, "yp": ypt, "losses": losses}

    def _backward(self, yt, yp, cache, dlosses):
        losses = cache["losses"]
        g = cache["tape"].gradient(losses, cache["yp"], output_gradients=np.reshape(dlosses, losses.shape))
        return np.zeros_like(yp) if g is None else g._value

    # ------------------------------------------------------------ on a tape
    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss: a Python float for arrays, a recorded Tensor for a Tensor ``y_pred``."""
        if not isinstance(y_pred, Tensor):
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        if y_pred.dtype.kind != "f":
            y_pred = ops.cast(y_pred, np.float32)
        yt, _ = self._prepare(y_true, y_pred._value)
        losses = self._losses(yt, y_pred)
        weights = self._weights(sample_weight, losses._value, None, losses.dtype)
        values = losses if weights is None else ops.multiply(losses, weights)
        if self.reduction == "none":
            return values
        divisor = self._divisor(losses._value, weights)
        total = ops.sum(values)
        return ops.multiply(total, 0.0) if divisor == 0 else ops.divide(total, divisor)

    # ------------------------------------------------------------ config
    def get_config(self) -> dict:
        """``name``, ``reduction`` and ``function`` (the function's qualified name, for reference)."""
        return {"name": self.name, "reduction": self.reduction, "function": _function_name(self.fn)}

    @classmethod
    def from_config(cls, config: dict, fn=None):
        """Rebuild from :meth:`get_config`; the function itself is not in a config, pass it as ``fn``."""
        if fn is None:
            raise ValueError(
                "TapeLoss.from_config: a config cannot hold the loss function; pass it, "
                f"e.g. TapeLoss.from_config(config, fn=my_loss). Received: config={config!r}, fn=None"
            )
        config = dict(config)
        config.pop("function", None)
        return cls(fn, **config)


def call_loss(loss, y_true, y_pred, sample_weight=None) -> Tensor:
    """``loss(y_true, y_pred, sample_weight)`` as a recorded scalar Tensor.

    A :class:`TapeLoss` records its own operations. Any other fusenet loss (an object with
    ``__call__`` and ``gradient``, e.g. ``fusenet.losses.get("mse")``) is one node whose gradient
    is ``g * loss.gradient(y_true, y_pred, sample_weight)``; its reduction must give a scalar.
    """
    if isinstance(loss, TapeLoss):
        return loss(y_true, y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred), sample_weight=sample_weight)
    if not callable(loss) or not callable(getattr(loss, "gradient", None)):
        raise TypeError(
            "call_loss: expected a fusenet loss object (with __call__ and gradient) or a TapeLoss. "
            f"Received: loss={loss!r}"
        )
    yp = y_pred if isinstance(y_pred, Tensor) else Tensor(y_pred)
    y_true = y_true._value if isinstance(y_true, Tensor) else y_true
    both = getattr(loss, "value_and_gradient", None)
    if both is not None:
        value, grad = both(y_true, yp._value, sample_weight=sample_weight)
    else:
        value = loss(y_true, yp._value, sample_weight=sample_weight)
        grad = loss.gradient(y_true, yp._value, sample_weight=sample_weight)
    if type(value) is not float and np.ndim(value) != 0:
        raise ValueError(
            f"call_loss: expected a loss that reduces to a scalar, but {type(loss).__name__} returned values of shape "
            f"{np.shape(value)} (reduction='none'). Use a reducing loss, or a TapeLoss for per-sample values."
        )
    dtype = yp._value.dtype
    if dtype.kind != "f":
        dtype = np.dtype(np.float32)
    if type(grad) is not np.ndarray or grad.dtype != dtype:
        grad = np.asarray(grad, dtype=dtype)
    out = Tensor._wrap(np.asarray(value, dtype=dtype))
    tapes = _STATE.recording
    if tapes:
        node = None
        for tape in tapes:
            known = tape._tensors
            if id(yp) in known or tape._tracks_any((yp,)):
                if node is None:
                    node = _new_loss_node(_LossNode)  # (_LossNode.__init__, written out)
                    node.inputs = (yp,)
                    node.outputs = (out,)
                    node._vjp = None
                    node._stamp = ASSIGNMENTS[0]
                    node.loss = loss
                    node.grad = grad
                    node.n_recorders = 1
                else:
                    node.n_recorders += 1
                tape._nodes.append(node)
                known[id(out)] = out
    return out


class _LossNode(ComputationNode):
    """A fusenet loss on a tape: its gradient is ``g * loss.gradient(...)``, computed when recorded.

    (``op`` and ``attrs`` are made when asked for: most nodes are never displayed.)"""

    __slots__ = ("loss", "grad", "n_recorders")
    _adds_into_grads = True

    def __init__(self, loss, grad, yp, out):
        self.inputs = (yp,)
        self.outputs = (out,)
        self._vjp = None
        self._stamp = ASSIGNMENTS[0]
        self.loss = loss
        self.grad = grad
        self.n_recorders = 1

    @property
    def op(self) -> str:
        return f"loss:{getattr(self.loss, 'name', type(self.loss).__name__)}"

    @property
    def attrs(self) -> dict:
        return {}

    def backward(self, grads: tuple, needs) -> tuple:
        g = grads[0]
        if not needs[0]:
            return (None,)
        if not _STATE.recording:
            return (Tensor._wrap(g._value * self.grad),)
        loss = self.loss
        reason = (
            f"Second-order gradients through loss {getattr(loss, 'name', '?')!r} ({type(loss).__name__}) are not "
            "available: its gradient is hand-written NumPy. Write the loss with tape operations (TapeLoss) to "
            "differentiate it twice."
        )
        return tuple(non_differentiable(f"backward:{self.op[5:]}", [g._value * self.grad], (g,) + self.inputs, reason))

    def _backward_into(self, grads: tuple, needs, table: dict) -> None:
        if needs[0] and is_seed(grads[0]) and not _STATE.recording and self.n_recorders == 1 and _STATE.backprop.once:
            # d(loss)/d(loss) = 1 and this is the node's only gradient computation: the loss's own
            # gradient array is the gradient (nothing reads it again)
            t = self.inputs[0]
            grad, value = self.grad, t._value
            if id(t) not in table and grad.dtype is value.dtype and grad.shape == value.shape:
                table[id(t)] = Tensor._wrap(grad)
                return
            g = Tensor._wrap(grad)
        else:
            (g,) = self.backward(grads, needs)
        if g is not None:
            accumulate(table, self.inputs[0], g, self)
