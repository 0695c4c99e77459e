"""Plain and sign-based descent: SGD (momentum, Nesterov), Lion, Rprop, ASGD.

Each optimizer is a few lines over the shared step of :class:`~fusenet.optimizers.base.Optimizer`
(clipping, weight decay, slots, state). ``g`` is the (clipped) gradient, ``p`` the parameter,
``lr`` the learning rate of this update and ``t = iterations + 1``.
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer, check_float

__all__ = ["SGD", "Lion", "Rprop", "ASGD"]


class SGD(Optimizer):
    """Gradient descent with optional momentum (Keras 3 formulation).

    ``momentum == 0``: ``p -= lr * g``. Otherwise, with a velocity ``m`` (zeros at first)::

        m = momentum * m - lr * g
        p += m                              # nesterov=False
        p += momentum * m - lr * g          # nesterov=True

    With a constant learning rate this equals ``torch.optim.SGD`` (``m = -lr * buf``).
    """

    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.momentum = check_float("SGD", "momentum", momentum, low=0.0, high=1.0)
        self.nesterov = bool(nesterov)

    def _init_slots(self, p, name, lr):
        return {"momentum": np.zeros_like(p)} if self.momentum != 0 else {}

    def _update(self, g, p, s, lr, t):
        step = np.multiply(g, lr, out=self._tmp(p))  # lr * g
        if self.momentum == 0:
            p -= step
            return
        m = s["momentum"]
        m *= self.momentum
        m -= step
        if self.nesterov:
            np.multiply(m, self.momentum, out=self._tmp(p, 1))
            p += self._tmp(p, 1)
            p -= step
        else:
            p += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Lion(Optimizer):
    """Lion (Chen et al., 2023; Keras 3): the sign of an interpolated momentum.

    ::

        p -= lr * sign(beta_1 * m + (1 - beta_1) * g)
        m = beta_2 * m + (1 - beta_2) * g
    """

    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_1 = check_float("Lion", "beta_1", beta_1, low=0.0, high=1.0, low_open=True)
        self.beta_2 = check_float("Lion", "beta_2", beta_2, low=0.0, high=1.0)

    def _init_slots(self, p, name, lr):
        return {"momentum": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        m = s["momentum"]
        a, b = self._tmp(p), self._tmp(p, 1)
        np.multiply(m, self.beta_1, out=a)
        np.multiply(g, 1.0 - self.beta_1, out=b)
        a += b
        np.sign(a, out=a)
        a *= lr
        p -= a
        m *= self.beta_2
        np.multiply(g, 1.0 - self.beta_2, out=b)
        m += b

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


class Rprop(Optimizer):
    """Resilient backpropagation (``torch.optim.Rprop``): per-element step sizes from gradient signs.

    Step sizes start at ``learning_rate``. Each update, with ``q = sign(g * g_prev)``::

        step *= etas[1] where q > 0, etas[0] where q < 0; clip(step, *step_sizes)
        g' = 0 where q < 0 else g
        p -= sign(g') * step;  g_prev = g'

    ``etas = (etaminus, etaplus)`` with ``0 < etaminus < 1 < etaplus``; ``step_sizes = (min, max)``.
    """

    slot_names = ("prev", "step_size")

    def __init__(self, learning_rate=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        etas, step_sizes = self._pair("etas", etas), self._pair("step_sizes", step_sizes)
        self.etas = (check_float("Rprop", "etas[0]", etas[0], low=0.0, high=1.0, low_open=True, high_open=True),
                     check_float("Rprop", "etas[1]", etas[1], low=1.0, low_open=True))
        lo = check_float("Rprop", "step_sizes[0]", step_sizes[0], low=0.0)
        hi = check_float("Rprop", "step_sizes[1]", step_sizes[1], low=0.0)
        if lo > hi:
            raise ValueError(f"Rprop: expected step_sizes[0] <= step_sizes[1]. Received: step_sizes={step_sizes}")
        self.step_sizes = (lo, hi)

    @staticmethod
    def _pair(name, value):
        try:
            value = tuple(value)
        except TypeError:
            value = ()
        if len(value) != 2:
            raise ValueError(f"Rprop: expected {name} to be a pair of numbers. Received: {name}={value!r}")
        return value

    def _init_slots(self, p, name, lr):
        return {"prev": np.zeros_like(p), "step_size": np.full_like(p, lr)}

    def _update(self, g, p, s, lr, t):
        prev, step = s["prev"], s["step_size"]
        q = np.multiply(g, prev, out=self._tmp(p))
        np.sign(q, out=q)
        factor = np.where(q > 0, self.etas[1], np.where(q < 0, self.etas[0], 1.0)).astype(p.dtype, copy=False)
        step *= factor
        np.clip(step, self.step_sizes[0], self.step_sizes[1], out=step)
        np.copyto(prev, g)
        prev[q < 0] = 0
        np.sign(prev, out=q)
        q *= step
        p -= q

    def get_config(self):
        return {**super().get_config(), "etas": list(self.etas), "step_sizes": list(self.step_sizes)}


class ASGD(Optimizer):
    """Averaged SGD (``torch.optim.ASGD``), keeping the running average of the iterates in slot ``"ax"``.

    At update ``t`` (1-based), with ``eta = lr / (1 + lambd * lr * (t - 1)) ** alpha`` and
    ``mu = 1 / max(1, t - 1 - t0)``::

        p = p * (1 - lambd * eta) - eta * g
        ax += mu * (p - ax)            # ax = p while mu == 1

    :meth:`averaged_params` returns copies of the averages (``torch``'s ``state["ax"]``).
    ``weight_decay`` is the decoupled decay of every fusenet optimizer (torch adds it to the gradient).
    """

    slot_names = ("ax",)

    def __init__(self, learning_rate=0.01, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.lambd = check_float("ASGD", "lambd", lambd, low=0.0)
        self.alpha = check_float("ASGD", "alpha", alpha, low=0.0)
        self.t0 = check_float("ASGD", "t0", t0, low=0.0)

    def _init_slots(self, p, name, lr):
        return {"ax": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        eta = lr / (1.0 + self.lambd * lr * (t - 1)) ** self.alpha
        mu = 1.0 / max(1.0, t - 1 - self.t0)
        p *= 1.0 - self.lambd * eta
        a = np.multiply(g, eta, out=self._tmp(p))
        p -= a
        ax = s["ax"]
        if mu == 1.0:
            np.copyto(ax, p)
        else:
            np.subtract(p, ax, out=a)
            a *= mu
            ax += a

    def averaged_params(self) -> list:
        """Copies of the averaged parameters, in the order of the pairs."""
        if self._slots is None:
            raise ValueError("ASGD: no averages yet; they are created by the first update.")
        return [np.array(s["ax"], copy=True) for s in self._slots]

    def get_config(self):
        return {**super().get_config(), "lambd": self.lambd, "alpha": self.alpha, "t0": self.t0}
