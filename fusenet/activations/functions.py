"""Every activation of Keras 3 and ``torch.nn``: a class per activation and a plain function per name.

Each class is an :class:`~fusenet.activations.ActivationFunction` (``forward(x)``,
``backward(x, y, dy)``, ``get_config()``, ``elementwise``) registered for
:func:`~fusenet.activations.get`; each plain function (``relu(x, ...)``, ``softmax(x, axis=-1)``,
...) has Keras' signature and returns ``forward(x)``. Inputs of any shape; the output keeps the
shape (GLU halves its axis) and the float dtype (integers and booleans become ``floatx()``).

Names (aliases in parentheses):

- piecewise linear: ``linear``, ``relu`` (Keras' ``negative_slope``, ``max_value``, ``threshold``),
  ``relu6``, ``leaky_relu`` (``negative_slope=0.2``), ``rrelu`` (the inference slope
  ``(lower + upper) / 2``; the random slopes live in ``layers.RReLU``), ``hard_sigmoid``
  (``hardsigmoid``), ``hard_silu`` (``hard_swish``, ``hardswish``), ``hard_tanh`` (``hardtanh``),
  ``hard_shrink`` (``hardshrink``), ``soft_shrink`` (``softshrink``), ``threshold``,
  ``sparse_plus``, ``sparse_sigmoid``;
- smooth: ``elu``, ``selu``, ``celu``, ``gelu`` (exact, or ``approximate=True``), ``gelu_tanh``,
  ``sigmoid``, ``log_sigmoid`` (``logsigmoid``), ``tanh``, ``tanh_shrink`` (``tanhshrink``),
  ``softplus``, ``squareplus``, ``softsign``, ``silu`` (``swish``), ``mish``, ``exponential``;
- along an axis (``elementwise = False``): ``softmax``, ``softmin``, ``log_softmax``,
  ``sparsemax``, ``glu``.

PReLU has a trainable slope and exists only as the layer ``layers.PReLU``.
"""

from . import _normalizing, _piecewise, _smooth
from ._normalizing import *  # noqa: F401,F403
from ._piecewise import *  # noqa: F401,F403
from ._smooth import *  # noqa: F401,F403

__all__ = [*_piecewise.__all__, *_smooth.__all__, *_normalizing.__all__]
