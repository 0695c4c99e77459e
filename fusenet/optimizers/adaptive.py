"""Per-element adaptive rates from accumulated squared gradients: Adagrad, RMSprop, Adadelta, Ftrl.

Keras 3 formulas (``epsilon`` is added *inside* the square root in Adagrad, RMSprop and
Adadelta, unlike ``torch.optim.Adagrad``/``RMSprop``, which add it to the root).
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer, check_float

__all__ = ["Adagrad", "RMSprop", "Adadelta", "Ftrl"]


class Adagrad(Optimizer):
    """Adagrad (Keras 3): ``acc += g**2``; ``p -= lr * g / sqrt(acc + epsilon)``.

    ``acc`` starts at ``initial_accumulator_value``.
    """

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.initial_accumulator_value = check_float("Adagrad", "initial_accumulator_value",
                                                     initial_accumulator_value, low=0.0)
        self.epsilon = check_float("Adagrad", "epsilon", epsilon, low=0.0)

    def _init_slots(self, p, name, lr):
        return {"accumulator": np.full_like(p, self.initial_accumulator_value)}

    def _update(self, g, p, s, lr, t):
        acc, a, b = s["accumulator"], self._tmp(p), self._tmp(p, 1)
        np.multiply(g, g, out=a)
        acc += a
        np.add(acc, self.epsilon, out=a)
        np.sqrt(a, out=a)
        np.multiply(g, lr, out=b)
        b /= a
        p -= b

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop (Keras 3), optionally centered and with momentum.

    ::

        v = rho * v + (1 - rho) * g**2
        a = rho * a + (1 - rho) * g                    # centered only
        d = v - a**2 + epsilon  (centered)  or  v + epsilon
        inc = lr * g / sqrt(d)
        mom = momentum * mom + inc; p -= mom           # momentum > 0
        p -= inc                                       # momentum == 0
    """

    slot_names = ("velocity", "momentum", "average_gradient")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = check_float("RMSprop", "rho", rho, low=0.0, high=1.0)
        self.momentum = check_float("RMSprop", "momentum", momentum, low=0.0, high=1.0)
        self.epsilon = check_float("RMSprop", "epsilon", epsilon, low=0.0)
        self.centered = bool(centered)

    def _init_slots(self, p, name, lr):
        slots = {"velocity": np.zeros_like(p)}
        if self.momentum > 0:
            slots["momentum"] = np.zeros_like(p)
        if self.centered:
            slots["average_gradient"] = np.zeros_like(p)
        return slots

    def _update(self, g, p, s, lr, t):
        v, a, b = s["velocity"], self._tmp(p), self._tmp(p, 1)
        rho = self.rho
        v *= rho
        np.multiply(g, g, out=a)
        a *= 1.0 - rho
        v += a
        if self.centered:
            avg = s["average_gradient"]
            avg *= rho
            np.multiply(g, 1.0 - rho, out=a)
            avg += a
            np.multiply(avg, avg, out=a)
            np.subtract(v, a, out=a)
            a += self.epsilon
        else:
            np.add(v, self.epsilon, out=a)
        np.sqrt(a, out=a)
        np.multiply(g, lr, out=b)
        b /= a  # the increment
        if self.momentum > 0:
            mom = s["momentum"]
            mom *= self.momentum
            mom += b
            p -= mom
        else:
            p -= b

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adadelta(Optimizer):
    """Adadelta (Keras 3; same as ``torch.optim.Adadelta``).

    ::

        acc_g = rho * acc_g + (1 - rho) * g**2
        d = -sqrt(acc_d + epsilon) / sqrt(acc_g + epsilon) * g
        acc_d = rho * acc_d + (1 - rho) * d**2
        p += lr * d
    """

    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.rho = check_float("Adadelta", "rho", rho, low=0.0, high=1.0)
        self.epsilon = check_float("Adadelta", "epsilon", epsilon, low=0.0)

    def _init_slots(self, p, name, lr):
        return {"accumulated_grad": np.zeros_like(p), "accumulated_delta_var": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        acc_g, acc_d = s["accumulated_grad"], s["accumulated_delta_var"]
        a, d = self._tmp(p), self._tmp(p, 1)
        rho, eps = self.rho, self.epsilon
        acc_g *= rho
        np.multiply(g, g, out=a)
        a *= 1.0 - rho
        acc_g += a
        np.add(acc_d, eps, out=d)
        np.sqrt(d, out=d)
        np.add(acc_g, eps, out=a)
        np.sqrt(a, out=a)
        d /= a
        d *= g  # d = -delta
        acc_d *= rho
        np.multiply(d, d, out=a)
        a *= 1.0 - rho
        acc_d += a
        d *= lr
        p -= d

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Ftrl(Optimizer):
    """FTRL-proximal (McMahan et al., 2013; Keras 3).

    With ``n`` (starts at ``initial_accumulator_value``), ``z`` (zeros), ``power = -learning_rate_power``,
    ``l2 = l2_regularization_strength + beta / (2 * lr)``::

        g_s = g + 2 * l2_shrinkage_regularization_strength * p
        n_new = n + g**2
        z += g_s - (n_new**power - n**power) / lr * p
        p = (clip(z, -l1, l1) - z) / (n_new**power / lr + 2 * l2)
        n = n_new

    The learning rate must be positive at every update.
    """

    slot_names = ("accumulator", "linear")

    def __init__(self, learning_rate=0.001, learning_rate_power=-0.5, initial_accumulator_value=0.1,
                 l1_regularization_strength=0.0, l2_regularization_strength=0.0,
                 l2_shrinkage_regularization_strength=0.0, beta=0.0, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.learning_rate_power = check_float("Ftrl", "learning_rate_power", learning_rate_power, high=0.0)
        self.initial_accumulator_value = check_float("Ftrl", "initial_accumulator_value",
                                                     initial_accumulator_value, low=0.0)
        self.l1_regularization_strength = check_float("Ftrl", "l1_regularization_strength",
                                                      l1_regularization_strength, low=0.0)
        self.l2_regularization_strength = check_float("Ftrl", "l2_regularization_strength",
                                                      l2_regularization_strength, low=0.0)
        self.l2_shrinkage_regularization_strength = check_float(
            "Ftrl", "l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength, low=0.0)
        self.beta = check_float("Ftrl", "beta", beta, low=0.0)

    def _init_slots(self, p, name, lr):
        return {"accumulator": np.full_like(p, self.initial_accumulator_value), "linear": np.zeros_like(p)}

    def _update(self, g, p, s, lr, t):
        if lr <= 0:
            raise ValueError(f"Ftrl: the learning rate must be positive at every update. Received: learning_rate={lr}")
        n, z = s["accumulator"], s["linear"]
        power = -self.learning_rate_power
        l1 = self.l1_regularization_strength
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        a, b = self._tmp(p), self._tmp(p, 1)
        # z += g + 2 * shrink * p - (n_new**power - n**power) / lr * p
        np.power(n, power, out=b)          # n**power
        n_new = n
        np.multiply(g, g, out=a)
        n_new += a                         # n is now n_new (in place)
        np.power(n_new, power, out=a)      # n_new**power
        b -= a                             # -(n_new**power - n**power)
        b *= p
        b /= lr
        b += g
        if self.l2_shrinkage_regularization_strength:
            c = np.multiply(p, 2.0 * self.l2_shrinkage_regularization_strength, out=self._tmp(p, 2))
            b += c
        z += b
        # p = (clip(z, -l1, l1) - z) / (n_new**power / lr + 2 * l2)
        a /= lr
        a += 2.0 * l2
        np.clip(z, -l1, l1, out=b)
        b -= z
        np.divide(b, a, out=p)

    def get_config(self):
        return {**super().get_config(), "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
                "beta": self.beta}
