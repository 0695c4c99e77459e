"""Tape-based automatic differentiation on NumPy (TensorFlow 2's ``GradientTape`` model).

::

    import fusenet.autodiff as ad

    w = ad.Variable(np.random.default_rng(0).normal(size=(3, 2)))
    x = ad.Tensor(np.ones((4, 3)))
    with ad.GradientTape() as tape:
        loss = ad.mean(ad.tanh(x @ w) ** 2)
    dw = tape.gradient(loss, w)          # a Tensor shaped like w

- :class:`Tensor` (immutable, wraps an ndarray) and :class:`Variable` (trainable, in place);
- :class:`GradientTape` (``watch``, ``persistent``, nested tapes for higher orders,
  ``graph().to_dot()``), :func:`stop_gradient`;
- the primitive operations (:mod:`fusenet.autodiff.ops`), all broadcasting like NumPy;
- fusenet layers inside tapes, :class:`TapeLayer` (a layer from its forward only),
  :class:`TapeLoss` and :func:`call_loss` for losses.

The core (tensor, tape, ops) imports only NumPy; the bridges to fusenet's layers and losses
are :mod:`fusenet.autodiff.layers_bridge` and :mod:`fusenet.autodiff.losses_bridge`.
"""

from . import ops
from .layers_bridge import TapeLayer, call_layer, layer_variables
from .losses_bridge import TapeLoss, call_loss
from . import _chain  # noqa: E402,F401  (registers the layer-chain gradient with the tape)
from .ops import (
    abs, add, broadcast_to, cast, clip, concatenate, conv2d, cos, divide, einsum, exp, expand_dims, getitem, log,
    log1p, log_softmax, logsumexp, matmul, max, maximum, mean, min, minimum, multiply, negative, pad, power, relu,
    reshape, sigmoid, sin, softmax, softplus, split, sqrt, square, squeeze, stack, subtract, sum, swapaxes, take,
    tanh, transpose, where,
)
from .tape import ComputationNode, GradientTape, Graph, TapeUsageError, stop_gradient
from .tensor import Tensor, Variable, as_tensor, constant

__all__ = [
    "Tensor", "Variable", "as_tensor", "constant",
    "GradientTape", "ComputationNode", "Graph", "TapeUsageError", "stop_gradient",
    "TapeLayer", "call_layer", "layer_variables", "TapeLoss", "call_loss",
    "ops",
    "add", "subtract", "multiply", "divide", "negative", "power", "square",
    "exp", "log", "log1p", "sqrt", "abs", "sin", "cos",
    "maximum", "minimum", "where", "clip", "relu", "sigmoid", "tanh", "softplus", "cast",
    "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax",
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to",
    "concatenate", "stack", "split", "pad", "getitem", "take",
    "matmul", "einsum", "conv2d",
]
