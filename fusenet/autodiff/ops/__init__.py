"""The primitive operations of :mod:`fusenet.autodiff`, by family.

- element-wise (broadcasting): add, subtract, multiply, divide, negative, power, square, exp,
  log, log1p, sqrt, abs, sin, cos, maximum, minimum, where, clip, relu, sigmoid, tanh, softplus, cast;
- reductions and normalisations: sum, mean, max, min, logsumexp, softmax, log_softmax;
- shapes: reshape, transpose, swapaxes, expand_dims, squeeze, broadcast_to, concatenate, stack,
  split, pad;
- indexing: getitem (``x[idx]``), take;
- products: matmul, einsum; convolution: conv2d.

Each takes Tensors (or arrays and numbers, which are constants), computes with NumPy, and
records its vector-Jacobian product on every recording tape that tracks an input.
"""

import numpy as np

from .conv import conv2d
from .elementwise import (
    abs, add, cast, clip, cos, divide, exp, log, log1p, maximum, minimum, multiply, negative, power, relu,
    sigmoid, sin, softplus, sqrt, square, subtract, tanh, where,
)
from .indexing import getitem, take
from .linalg import einsum, matmul
from .reduction import log_softmax, logsumexp, max, mean, min, softmax, sum
from .shape import broadcast_to, concatenate, expand_dims, pad, reshape, split, squeeze, stack, swapaxes, transpose

__all__ = [
    "add", "subtract", "multiply", "divide", "negative", "power", "square",
    "exp", "log", "log1p", "sqrt", "abs", "sin", "cos",
    "maximum", "minimum", "where", "clip", "relu", "sigmoid", "tanh", "softplus", "cast",
    "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax",
    "reshape", "transpose", "swapaxes", "expand_dims", "squeeze", "broadcast_to",
    "concatenate", "stack", "split", "pad", "getitem", "take",
    "matmul", "einsum", "conv2d",
    "UFUNC_OPS",
]

#: NumPy ufuncs that dispatch to a tape operation when a Tensor takes part (``np.exp(t)``, ``array + t``)
UFUNC_OPS = {
    np.add: add,
    np.subtract: subtract,
    np.multiply: multiply,
    np.true_divide: divide,
    np.negative: negative,
    np.power: power,
    np.square: square,
    np.exp: exp,
    np.log: log,
    np.log1p: log1p,
    np.sqrt: sqrt,
    np.absolute: abs,
    np.sin: sin,
    np.cos: cos,
    np.tanh: tanh,
    np.maximum: maximum,
    np.minimum: minimum,
    np.matmul: matmul,
}
