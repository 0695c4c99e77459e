"""Element-wise activations for the recurrent loops: written into preallocated buffers.

The time loop of a recurrent layer applies its activations to small ``(batch, units)`` blocks
hundreds of times, so they must not allocate. ``tanh``, ``sigmoid`` and ``linear`` have in-place
fast paths whose derivatives need only the output ``y``; ``sigmoid`` is computed as
``0.5 + 0.5 * tanh(x / 2)`` (the same function, stable for any ``x``, and several times faster
than ``scipy.special.expit`` in float32). Any other element-wise activation of
:mod:`fusenet.activations` works through its ``forward``/``backward`` pair and then needs the
pre-activation ``x`` as well (``needs_input``).
"""

from __future__ import annotations

import numpy as np

from .. import activations as _activations

__all__ = []

_FAST = ("tanh", "sigmoid", "linear")


class _LoopActivation:
    """An activation usable inside a recurrent loop: ``apply(x, out)`` and ``derivative(x, y, out)``.

    Built from a name, a config dict or an activation object (``None`` means linear).
    """

    def __init__(self, identifier, owner, argname):
        if identifier is None:
            identifier = "linear"
        name = identifier if isinstance(identifier, str) else None
        if isinstance(identifier, _activations.ActivationFunction) and not identifier.get_config():
            name = identifier.name
        if name in _FAST:
            self.fast, self.function = name, None
        else:
            function = _activations.get(identifier)
            if not getattr(function, "elementwise", True):
                raise ValueError(f"{owner}: {argname} must be an element-wise activation. "
                                 f"Received: {argname}={identifier!r}")
            self.fast, self.function = None, function
        self.needs_input = self.fast is None

    def serialize(self):
        """The name (no hyper-parameters) or the config dict of the activation, for ``get_config``."""
        return self.fast if self.fast else _activations.serialize(self.function)

    def apply(self, x, out):
        """``out[...] = f(x)``; ``out`` may be ``x`` itself (then ``x`` is overwritten)."""
        if self.fast == "tanh":
            np.tanh(x, out=out)
        elif self.fast == "sigmoid":
            np.multiply(x, 0.5, out=out)
            np.tanh(out, out=out)
            out *= 0.5
            out += 0.5
        elif self.fast == "linear":
            if out is not x:
                np.copyto(out, x)
        else:
            np.copyto(out, self.function.forward(x))
        return out

    def derivative(self, x, y, out):
        """``out[...] = f'(x)`` given ``y = f(x)`` (``x`` is used only when ``needs_input``)."""
        if self.fast == "tanh":
            np.multiply(y, y, out=out)
            np.subtract(1.0, out, out=out)
        elif self.fast == "sigmoid":
            np.subtract(1.0, y, out=out)
            out *= y
        elif self.fast == "linear":
            out.fill(1.0)
        else:
            np.copyto(out, self.function.backward(x, y, np.ones_like(y)))
        return out
