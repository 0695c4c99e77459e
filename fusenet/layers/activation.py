"""Activation layers: ``Activation(name)``, Keras' dedicated layers and one layer per ``torch.nn`` activation.

Every layer keeps the input's shape (``GLU`` halves its axis) and works on any rank.

- Keras 3: :class:`Activation`, :class:`ReLU`, :class:`LeakyReLU` (``negative_slope=0.3``),
  :class:`PReLU` (trainable ``alpha``), :class:`ELU`, :class:`Softmax` (``axis`` an int or a list).
- ``torch.nn`` (torch's hyper-parameter names, ``dim`` spelled ``axis``): :class:`RReLU`,
  :class:`ReLU6`, :class:`GELU`, :class:`SiLU`, :class:`Mish`, :class:`SELU`, :class:`CELU`,
  :class:`Sigmoid`, :class:`Tanh`, :class:`Softplus`, :class:`Softsign`, :class:`Hardtanh`,
  :class:`Hardswish`, :class:`Hardsigmoid`, :class:`LogSigmoid`, :class:`Softmin`,
  :class:`LogSoftmax`, :class:`Softmax2d`, :class:`GLU`, :class:`Tanhshrink`, :class:`Hardshrink`,
  :class:`Softshrink`, :class:`Threshold`; and :class:`Sparsemax`.

The layers that apply a fixed function share one forward/backward (:class:`_FunctionLayer`):
``forward`` keeps ``(x, y)`` for ``backward`` only when training.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..activations import functions as _fn
from ..activations._common import blend, check_real, config_axis, resolve_axes
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from ..utils import check_in, make_rng
from .base import InputSpec, Layer

__all__ = [
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "RReLU", "ReLU6", "GELU", "SiLU", "Mish", "SELU", "CELU", "Sigmoid", "Tanh", "Softplus", "Softsign",
    "Hardtanh", "Hardswish", "Hardsigmoid", "LogSigmoid", "Softmin", "LogSoftmax", "Softmax2d", "Sparsemax",
    "GLU", "Tanhshrink", "Hardshrink", "Softshrink", "Threshold",
]


class _FunctionLayer(Layer):
    """A layer applying one :class:`~fusenet.activations.ActivationFunction`, ``self.function``.

    Subclasses validate their hyper-parameters by building the function with
    ``_owner=self.describe()`` (so that messages name the layer) and list them in ``_hyper``
    for ``get_config``. Invariant that fusion relies on: ``forward``/``backward`` compute exactly
    ``function.forward``/``function.backward`` (layers with any other behaviour, such as the
    random RReLU or the trainable PReLU, do not derive from this class).
    """

    _hyper: tuple[str, ...] = ()

    def __init__(self, function, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def forward(self, x, training=False):
        y = self.function.forward(x)
        self._save_for_backward(training, x, y)
        return y

    def backward(self, dy):
        x, y = self._saved()
        return self.function.backward(x, y, dy)

    def compute_output_shape(self, input_shape):
        shape_fn = getattr(self.function, "compute_output_shape", None)
        return tuple(input_shape) if shape_fn is None else shape_fn(tuple(input_shape))

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._hyper})
        return config


class _AxisLayer(_FunctionLayer):
    """A :class:`_FunctionLayer` along ``axis``: checks the axis against every input's rank."""

    @property
    def axis(self):
        """The axis (an int, or a tuple of ints for the softmax family)."""
        return self.function.axis

    def forward(self, x, training=False):
        resolve_axes(self.axis, x.shape, self.describe())
        return super().forward(x, training)

    def get_config(self):
        config = super().get_config()
        config["axis"] = config_axis(self.axis)
        return config


# ---------------------------------------------------------------- Keras 3 layers
class Activation(_FunctionLayer):
    """Applies an activation given by name (``"relu"``), config dict or ActivationFunction object.

    ``get_config`` stores it with :func:`fusenet.activations.serialize`.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(_activations.get(activation), **kwargs)

    @property
    def activation(self):
        return self.function

    def get_config(self):
        config = super().get_config()
        config["activation"] = _activations.serialize(self.function)
        return config


class ReLU(_FunctionLayer):
    """Keras' ReLU layer: ``f(x) = max_value`` for ``x >= max_value``, ``x`` for ``threshold <= x < max_value``,
    ``negative_slope * (x - threshold)`` otherwise (see :class:`fusenet.activations.ReLU`).

    ``max_value`` (None = unbounded), ``negative_slope`` and ``threshold`` must be >= 0, as in Keras.
    """

    _hyper = ("max_value", "negative_slope", "threshold")

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(None, **kwargs)
        owner = self.describe()
        self.max_value = check_real(max_value, "max_value", owner, low=0.0, allow_none=True)
        self.negative_slope = check_real(negative_slope, "negative_slope", owner, low=0.0)
        self.threshold = check_real(threshold, "threshold", owner, low=0.0)
        self.function = _fn.ReLU(self.negative_slope, self.max_value, self.threshold, _owner=owner)


class LeakyReLU(_FunctionLayer):
    """``f(x) = x`` for ``x > 0``, ``negative_slope * x`` otherwise; ``negative_slope >= 0`` (Keras default 0.3)."""

    _hyper = ("negative_slope",)

    def __init__(self, negative_slope=0.3, **kwargs):
        super().__init__(None, **kwargs)
        self.negative_slope = check_real(negative_slope, "negative_slope", self.describe(), low=0.0)
        self.function = _fn.LeakyReLU(self.negative_slope, _owner=self.describe())


class ELU(_FunctionLayer):
    """``f(x) = x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""

    _hyper = ("alpha",)

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.ELU(alpha, _owner=self.describe())
        self.alpha = self.function.alpha


class Softmax(_AxisLayer):
    """``exp(x - max) / sum(exp(x - max))`` over ``axis`` (an int or a list of ints, as Keras).

    An axis outside the input's rank raises ``ValueError`` naming the layer.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.Softmax(axis, _owner=self.describe())


class PReLU(Layer):
    """Parametric ReLU: ``f(x) = x`` for ``x > 0``, ``alpha * x`` otherwise, with a trainable ``alpha``.

    Weight (Keras layout): ``alpha`` of shape ``input_shape[1:]`` with every axis in
    ``shared_axes`` (>= 1; axis 0 is the batch) set to 1, e.g. ``shared_axes=[1, 2]`` on
    ``(batch, height, width, channels)`` gives one slope per channel. Gradient:
    ``d alpha = sum over the batch and shared axes of dy * min(x, 0)``.
    """

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None, shared_axes=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.alpha_initializer = get_initializer(alpha_initializer)
        self.alpha_regularizer = _regularizers.get(alpha_regularizer)
        self.alpha_constraint = _constraints.get(alpha_constraint)
        self.shared_axes = self._check_shared_axes(shared_axes)
        self._reduce_axes = None

    def _check_shared_axes(self, shared_axes):
        if shared_axes is None:
            return None
        axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
        if not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
            raise TypeError(
                f"{self.describe()}: expected shared_axes to be an int or a list of ints. Received: shared_axes={shared_axes!r}"
            )
        if any(a < 1 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(
                f"{self.describe()}: expected shared_axes to be distinct axes >= 1 (axis 0 is the batch). "
                f"Received: shared_axes={shared_axes!r}"
            )
        return [int(a) for a in axes]

    def build(self, input_shape):
        rank = len(input_shape)
        shared = self.shared_axes or []
        if rank < 2 or any(a >= rank for a in shared):
            raise ValueError(
                f"{self.describe()}: shared_axes must be axes of the input (1 to {rank - 1}). "
                f"Received: shared_axes={self.shared_axes!r} for input_shape={tuple(input_shape)}"
            )
        param_shape = [1 if i in shared else d for i, d in enumerate(input_shape) if i > 0]
        if any(d is None for d in param_shape):
            raise ValueError(
                f"{self.describe()}: every axis not in shared_axes must have a known size. "
                f"Received: input_shape={tuple(input_shape)}, shared_axes={self.shared_axes!r}"
            )
        self.add_weight("alpha", param_shape, self.alpha_initializer, regularizer=self.alpha_regularizer,
                        constraint=self.alpha_constraint)
        self._reduce_axes = (0, *sorted(shared))
        self.input_spec = InputSpec(ndim=rank, axes={i: input_shape[i] for i in range(1, rank) if i not in shared})

    def forward(self, x, training=False):
        y = np.maximum(x, 0) + self._params["alpha"] * np.minimum(x, 0)
        self._save_for_backward(training, x)
        return y

    def backward(self, dy):
        (x,) = self._saved()
        alpha = self._params["alpha"]
        self._grads["alpha"] += np.sum(dy * np.minimum(x, 0), axis=self._reduce_axes, keepdims=True)[0]
        return blend(x > 0, dy, alpha * dy)

    def get_config(self):
        config = super().get_config()
        config.update({
            "alpha_initializer": serialize_initializer(self.alpha_initializer),
            "alpha_regularizer": _regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": _constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        })
        return config


# ---------------------------------------------------------------- torch.nn layers
class RReLU(Layer):
    """Randomized leaky ReLU (``torch.nn.RReLU``): ``f(x) = x`` for ``x > 0``, ``a * x`` otherwise.

    In training ``a`` is drawn per element from ``U(lower, upper)``: the layer's generator
    (``seed``, else :func:`fusenet.set_random_seed`) draws ``rng.uniform(lower, upper, x.shape)``
    at every training forward, and backward uses those slopes. At inference ``a = (lower + upper) / 2``.
    """

    def __init__(self, lower=1.0 / 8.0, upper=1.0 / 3.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.function = _fn.RReLU(lower, upper, _owner=self.describe())
        self.lower, self.upper = self.function.lower, self.function.upper
        self.seed = seed
        self._rng = make_rng(seed)

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self.function.forward(x)
        slopes = self._rng.uniform(self.lower, self.upper, size=x.shape).astype(x.dtype, copy=False)
        self._save_for_backward(True, x, slopes)
        return np.maximum(x, 0) + slopes * np.minimum(x, 0)

    def backward(self, dy):
        x, slopes = self._saved()
        return blend(x > 0, dy, slopes * dy)

    def get_config(self):
        config = super().get_config()
        config.update({"lower": self.lower, "upper": self.upper, "seed": self.seed})
        return config


class ReLU6(_FunctionLayer):
    """``f(x) = min(max(x, 0), 6)``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.ReLU6(), **kwargs)


class GELU(_FunctionLayer):
    """``f(x) = x * Phi(x)``; ``approximate="tanh"`` uses ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    _hyper = ("approximate",)

    def __init__(self, approximate="none", **kwargs):
        super().__init__(None, **kwargs)
        self.approximate = check_in(approximate, ("none", "tanh"), "approximate", self.describe())
        self.function = _fn.GELU(approximate == "tanh", _owner=self.describe())


class SiLU(_FunctionLayer):
    """``f(x) = x * sigmoid(x)``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.SiLU(), **kwargs)


class Mish(_FunctionLayer):
    """``f(x) = x * tanh(softplus(x))``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.Mish(), **kwargs)


class SELU(_FunctionLayer):
    """``f(x) = scale * (x if x > 0 else alpha * (exp(x) - 1))`` with the SELU constants."""

    def __init__(self, **kwargs):
        super().__init__(_fn.SELU(), **kwargs)


class CELU(_FunctionLayer):
    """``f(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``, ``alpha > 0``."""

    _hyper = ("alpha",)

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.CELU(alpha, _owner=self.describe())
        self.alpha = self.function.alpha


class Sigmoid(_FunctionLayer):
    """``f(x) = 1 / (1 + exp(-x))``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.Sigmoid(), **kwargs)


class Tanh(_FunctionLayer):
    """``f(x) = tanh(x)``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.Tanh(), **kwargs)


class Softplus(_FunctionLayer):
    """``f(x) = log(1 + exp(beta x)) / beta``, and ``x`` where ``beta * x > threshold`` (torch defaults 1, 20)."""

    _hyper = ("beta", "threshold")

    def __init__(self, beta=1.0, threshold=20.0, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.Softplus(beta, threshold, _owner=self.describe())
        self.beta, self.threshold = self.function.beta, self.function.threshold


class Softsign(_FunctionLayer):
    """``f(x) = x / (1 + |x|)``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.Softsign(), **kwargs)


class Hardtanh(_FunctionLayer):
    """``f(x) = clip(x, min_val, max_val)``, ``min_val <= max_val``."""

    _hyper = ("min_val", "max_val")

    def __init__(self, min_val=-1.0, max_val=1.0, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.HardTanh(min_val, max_val, _owner=self.describe())
        self.min_val, self.max_val = self.function.min_val, self.function.max_val


class Hardswish(_FunctionLayer):
    """``f(x) = x * relu6(x + 3) / 6``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.HardSiLU(), **kwargs)


class Hardsigmoid(_FunctionLayer):
    """``f(x) = relu6(x + 3) / 6``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.HardSigmoid(), **kwargs)


class LogSigmoid(_FunctionLayer):
    """``f(x) = log(sigmoid(x))``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.LogSigmoid(), **kwargs)


class Softmin(_AxisLayer):
    """``f(x) = softmax(-x)`` over ``axis``."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.Softmin(axis, _owner=self.describe())


class LogSoftmax(_AxisLayer):
    """``f(x) = x - logsumexp(x)`` over ``axis``."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.LogSoftmax(axis, _owner=self.describe())


class Softmax2d(_FunctionLayer):
    """Softmax over the channels at every pixel: input ``(batch, height, width, channels)``.

    ``torch.nn.Softmax2d`` on channels-last data (torch normalises axis -3 of ``(N, C, H, W)``).
    """

    def __init__(self, **kwargs):
        super().__init__(_fn.Softmax(-1), **kwargs)
        self.input_spec = InputSpec(ndim=4)


class Sparsemax(_AxisLayer):
    """Sparsemax over one ``axis``: the Euclidean projection onto the probability simplex."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.Sparsemax(axis, _owner=self.describe())


class GLU(_AxisLayer):
    """Gated linear unit: ``a * sigmoid(b)`` with ``a, b`` the halves of ``axis`` (even size); output halves it."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(None, **kwargs)
        self.function = _fn.GLU(axis, _owner=self.describe())


class Tanhshrink(_FunctionLayer):
    """``f(x) = x - tanh(x)``."""

    def __init__(self, **kwargs):
        super().__init__(_fn.TanhShrink(), **kwargs)


class Hardshrink(_FunctionLayer):
    """``f(x) = x`` for ``|x| > lambd``, else 0 (``lambd >= 0``)."""

    _hyper = ("lambd",)

    def __init__(self, lambd=0.5, **kwargs):
        super().__init__(None, **kwargs)
        self.lambd = check_real(lambd, "lambd", self.describe(), low=0.0)
        self.function = _fn.HardShrink(self.lambd, _owner=self.describe())


class Softshrink(_FunctionLayer):
    """``f(x) = x - lambd`` for ``x > lambd``, ``x + lambd`` for ``x < -lambd``, else 0 (``lambd >= 0``)."""

    _hyper = ("lambd",)

    def __init__(self, lambd=0.5, **kwargs):
        super().__init__(None, **kwargs)
        self.lambd = check_real(lambd, "lambd", self.describe(), low=0.0)
        self.function = _fn.SoftShrink(self.lambd, _owner=self.describe())


class Threshold(_FunctionLayer):
    """``f(x) = x`` for ``x > threshold``, else ``value`` (``torch.nn.Threshold``; both required)."""

    _hyper = ("threshold", "value")

    def __init__(self, threshold, value, **kwargs):
        super().__init__(None, **kwargs)
        owner = self.describe()
        self.threshold = check_real(threshold, "threshold", owner)
        self.value = check_real(value, "value", owner)
        self.function = _fn.Threshold(self.threshold, self.value, _owner=owner)
