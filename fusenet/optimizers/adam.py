"""Adam and its relatives: Adam (AMSGrad), AdamW, Adamax, Nadam (Keras 3), RAdam (``torch.optim.RAdam``).

All keep a first moment ``m`` and a second moment ``v`` (or an infinity norm ``u``), updated
with ``m += (1 - beta_1) * (g - m)`` and ``v += (1 - beta_2) * (g**2 - v)``.

Keras's ``epsilon`` ("epsilon hat") is added to ``sqrt(v)`` *before* the bias correction of
``v``, i.e. ``p -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)``;
``torch.optim.Adam`` adds it after (``sqrt(v / (1 - beta_2**t)) + eps``). Both agree at
``epsilon = 0``.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Optimizer, check_float

__all__ = ["Adam", "AdamW", "Adamax", "Nadam", "RAdam"]


def _moments(opt, g, m, v, a):
    """``m += (1 - beta_1)(g - m)``, ``v += (1 - beta_2)(g**2 - v)`` using the scratch array ``a``."""
    np.subtract(g, m, out=a)
    a *= 1.0 - opt.beta_1
    m += a
    np.multiply(g, g, out=a)
    a -= v
    a *= 1.0 - opt.beta_2
    v += a


class _AdamBase(Optimizer):
    def __init__(self, learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue, global_clipnorm,
                 name):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        owner = type(self).__name__
        self.beta_1 = check_float(owner, "beta_1", beta_1, low=0.0, high=1.0, high_open=True)
        self.beta_2 = check_float(owner, "beta_2", beta_2, low=0.0, high=1.0, high_open=True)
        self.epsilon = check_float(owner, "epsilon", epsilon, low=0.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adam(_AdamBase):
    """Adam (Kingma & Ba, 2014; Keras 3), optionally AMSGrad.

    ::

        m += (1 - beta_1) * (g - m);  v += (1 - beta_2) * (g**2 - v)
        v_max = max(v_max, v)                                        # amsgrad: use v_max below
        p -= lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)
    """

    slot_names = ("momentum", "velocity", "velocity_hat")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)
        self.amsgrad = bool(amsgrad)

    def _init_slots(self, p, name, lr):
        slots = {"momentum": np.zeros_like(p), "velocity": np.zeros_like(p)}
        if self.amsgrad:
            slots["velocity_hat"] = np.zeros_like(p)
        return slots

    def _update(self, g, p, s, lr, t):
        m, v, a = s["momentum"], s["velocity"], self._tmp(p)
        _moments(self, g, m, v, a)
        if self.amsgrad:
            np.maximum(s["velocity_hat"], v, out=s["velocity_hat"])
            v = s["velocity_hat"]
        alpha = lr * math.sqrt(1.0 - self.beta_2**t) / (1.0 - self.beta_1**t)
        np.sqrt(v, out=a)
        a += self.epsilon
        np.divide(m, a, out=a)
        a *= alpha
        p -= a

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; Keras 3): ``weight_decay``
    defaults to 0.004 and must be a number. Equals ``torch.optim.AdamW`` at ``epsilon = 0``."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        if weight_decay is None:
            raise ValueError("AdamW: expected weight_decay to be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)


class Adamax(_AdamBase):
    """Adamax (Kingma & Ba, 2014, section 7.1; Keras 3): Adam with an infinity norm.

    ::

        m += (1 - beta_1) * (g - m);  u = max(beta_2 * u, |g|)
        p -= lr / (1 - beta_1**t) * m / (u + epsilon)

    (``torch.optim.Adamax`` uses ``u = max(beta_2 * u, |g| + eps)``; equal at ``epsilon = 0``.)
    """

    slot_names = ("momentum", "norm")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)

    def _init_slots(self, p, name, lr):
        return {"momentum": np.zeros_like(p), "norm": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        m, u, a = s["momentum"], s["norm"], self._tmp(p)
        np.subtract(g, m, out=a)
        a *= 1.0 - self.beta_1
        m += a
        u *= self.beta_2
        np.abs(g, out=a)
        np.maximum(u, a, out=u)
        np.add(u, self.epsilon, out=a)
        np.divide(m, a, out=a)
        a *= lr / (1.0 - self.beta_1**t)
        p -= a


class Nadam(_AdamBase):
    """Nadam (Dozat, 2015; Keras 3): Adam with Nesterov momentum and a momentum schedule.

    With ``u_t = beta_1 * (1 - 0.5 * 0.96**t)`` and ``U_t = u_1 * ... * u_t`` (kept in the state)::

        m += (1 - beta_1) * (g - m);  v += (1 - beta_2) * (g**2 - v)
        m_hat = u_{t+1} * m / (1 - U_t * u_{t+1}) + (1 - u_t) * g / (1 - U_t)
        p -= lr * m_hat / (sqrt(v / (1 - beta_2**t)) + epsilon)

    Equals ``torch.optim.NAdam(momentum_decay=1.0)`` (torch's ``0.96 ** (t * momentum_decay)``).
    """

    slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)
        self.u_product = 1.0

    def _before_step(self, lr, t):
        self.u_product *= self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def _init_slots(self, p, name, lr):
        return {"momentum": np.zeros_like(p), "velocity": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        m, v, a, b = s["momentum"], s["velocity"], self._tmp(p), self._tmp(p, 1)
        _moments(self, g, m, v, a)
        u_t = self.beta_1 * (1.0 - 0.5 * 0.96**t)
        u_next = self.beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        prod, prod_next = self.u_product, self.u_product * u_next
        np.multiply(m, u_next / (1.0 - prod_next), out=a)
        np.multiply(g, (1.0 - u_t) / (1.0 - prod), out=b)
        a += b  # m_hat
        np.divide(v, 1.0 - self.beta_2**t, out=b)
        np.sqrt(b, out=b)
        b += self.epsilon
        a /= b
        a *= lr
        p -= a

    def _get_extra_state(self):
        return {"u_product": float(self.u_product)}

    def _check_extra_state(self, state):
        u = state.get("u_product", 1.0)
        return {"u_product": check_float("Nadam.set_state", "u_product", u, low=0.0, high=1.0)}

    def _set_extra_state(self, extra):
        self.u_product = extra["u_product"]


class RAdam(_AdamBase):
    """Rectified Adam (Liu et al., 2020), as ``torch.optim.RAdam``.

    With ``rho_inf = 2 / (1 - beta_2) - 1`` and ``rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)``::

        m += (1 - beta_1) * (g - m);  v += (1 - beta_2) * (g**2 - v)
        m_hat = m / (1 - beta_1**t)
        if rho_t > 5:
            r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p -= lr * m_hat * r * sqrt(1 - beta_2**t) / (sqrt(v) + epsilon)
        else:
            p -= lr * m_hat

    ``weight_decay`` is decoupled (torch's ``decoupled_weight_decay=True``). Defaults are torch's.
    """

    slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, name)

    def _init_slots(self, p, name, lr):
        return {"momentum": np.zeros_like(p), "velocity": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        m, v, a = s["momentum"], s["velocity"], self._tmp(p)
        _moments(self, g, m, v, a)
        b1, b2 = self.beta_1, self.beta_2
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            np.sqrt(v, out=a)
            a += self.epsilon
            np.divide(m, a, out=a)
            a *= lr * rect * math.sqrt(bc2) / bc1
        else:
            np.multiply(m, lr / bc1, out=a)
        p -= a
