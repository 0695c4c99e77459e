"""Matrix-aware optimizers: Adafactor (factored second moment) and Muon (orthogonalised momentum), Keras 3."""

from __future__ import annotations

import math
import re

import numpy as np

from .base import Optimizer, check_float

__all__ = ["Adafactor", "Muon"]


def _rms(x) -> float:
    return math.sqrt(float(np.mean(np.square(x)))) if x.size else 0.0


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern, 2018; Keras 3).

    For a parameter of rank >= 2 the second moment is factored over the last two axes: a row
    statistic ``r`` (shape ``p.shape[:-1]``) and a column statistic ``c``
    (``p.shape[:-2] + p.shape[-1:]``); lower ranks keep a full ``v``. With
    ``rho = min(lr, 1/sqrt(t))``, ``alpha = max(epsilon_2, rms(p)) * rho``,
    ``beta = 1 - t**beta_2_decay`` and ``G = g**2 + epsilon_1``::

        r = beta r + (1 - beta) mean(G, -1);  c = beta c + (1 - beta) mean(G, -2)
        v = (r / mean(r, -1))[..., None] * c[..., None, :]      # rank >= 2
        v = beta v + (1 - beta) G                               # rank < 2
        u = g / sqrt(v);  u /= max(1, rms(u) / clip_threshold)
        p -= alpha * u

    ``relative_step`` is kept for Keras compatibility; the step is already bounded by
    ``1/sqrt(t)`` through ``rho``.
    """

    slot_names = ("r", "c", "v")

    def __init__(self, learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0,
                 relative_step=True, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.beta_2_decay = check_float("Adafactor", "beta_2_decay", beta_2_decay, high=0.0)
        self.epsilon_1 = check_float("Adafactor", "epsilon_1", epsilon_1, low=0.0)
        self.epsilon_2 = check_float("Adafactor", "epsilon_2", epsilon_2, low=0.0)
        self.clip_threshold = check_float("Adafactor", "clip_threshold", clip_threshold, low=0.0, low_open=True)
        self.relative_step = bool(relative_step)

    def _slot_shape(self, slot, param_shape):
        param_shape = tuple(param_shape)
        if slot == "r":
            return param_shape[:-1]
        if slot == "c":
            return param_shape[:-2] + param_shape[-1:]
        return param_shape

    def _init_slots(self, p, name, lr):
        slots = {"v": np.zeros_like(p)}
        if p.ndim >= 2:
            slots["r"] = np.zeros(self._slot_shape("r", p.shape), dtype=p.dtype)
            slots["c"] = np.zeros(self._slot_shape("c", p.shape), dtype=p.dtype)
        return slots

    def _update(self, g, p, s, lr, t):
        rho = min(lr, 1.0 / math.sqrt(t))
        alpha = max(self.epsilon_2, _rms(p)) * rho
        beta = 1.0 - float(t) ** self.beta_2_decay
        sq = np.multiply(g, g, out=self._tmp(p))
        sq += self.epsilon_1
        v = s["v"]
        if p.ndim >= 2:
            r, c = s["r"], s["c"]
            r *= beta
            r += (1.0 - beta) * sq.mean(axis=-1)
            c *= beta
            c += (1.0 - beta) * sq.mean(axis=-2)
            np.multiply((r / r.mean(axis=-1, keepdims=True))[..., None], c[..., None, :], out=v)
        else:
            v *= beta
            sq *= 1.0 - beta
            v += sq
        u = np.sqrt(v, out=self._tmp(p))
        np.divide(g, u, out=u)
        u *= alpha / max(1.0, _rms(u) / self.clip_threshold)
        p -= u

    def get_config(self):
        return {**super().get_config(), "beta_2_decay": self.beta_2_decay, "epsilon_1": self.epsilon_1,
                "epsilon_2": self.epsilon_2, "clip_threshold": self.clip_threshold,
                "relative_step": self.relative_step}


def newton_schulz(x, steps: int, a: float = 3.4445, b: float = -4.7750, c: float = 2.0315) -> np.ndarray:
    """Approximate orthogonalisation of a matrix (the quintic Newton-Schulz iteration of Muon).

    Works on the wide orientation (transposes when rows > columns): ``X = x / (||x||_F + 1e-7)``,
    then ``steps`` times ``A = X X^T``, ``X = a X + (b A + c A A) X``. Returns a new array.
    """
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = np.swapaxes(x, -1, -2)
    x = x / (np.linalg.norm(x, axis=(-2, -1), keepdims=True) + 1e-7)
    for _ in range(steps):
        gram = x @ np.swapaxes(x, -1, -2)
        poly = b * gram + c * (gram @ gram)
        x = a * x + poly @ x
    return np.swapaxes(x, -1, -2) if tall else x


class Muon(Optimizer):
    """Muon (Keras 3): Newton-Schulz orthogonalised momentum for 2-D kernels, Adam for the rest.

    A parameter uses the Muon step when it is 2-D and its name (``"layer/weight"``, known through
    :meth:`apply`) matches neither ``exclude_layers`` (regular expressions) nor, with
    ``exclude_embeddings``, ``"embedding"``. Muon step (``m`` starts at zero)::

        m = momentum * m + g
        u = g + momentum * m  (nesterov)  or  m
        p -= lr * NS(u) * sqrt(max(rows, cols)) * rms_rate       # rms_rate=None: no scaling

    ``NS`` is :func:`newton_schulz` with ``ns_steps`` steps and coefficients ``muon_a, muon_b,
    muon_c`` (3.4445, -4.7750, 2.0315 as Keras and the reference implementation). Other
    parameters take Keras's Adam step with ``adam_beta_1``, ``adam_beta_2``, ``epsilon`` and the
    learning rate ``lr * adam_lr_ratio``. Decoupled weight decay: ``weight_decay`` for Muon
    parameters, ``adam_weight_decay`` for Adam ones (both with ``lr``).
    """

    slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=0.001, adam_beta_1=0.9, adam_beta_2=0.999, adam_weight_decay=0.004,
                 epsilon=1e-7, weight_decay=0.004, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 exclude_layers=None, exclude_embeddings=True, muon_a=3.4445, muon_b=-4.7750, muon_c=2.0315,
                 adam_lr_ratio=1.0, momentum=0.95, ns_steps=5, nesterov=True, rms_rate=0.2):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name)
        self.adam_beta_1 = check_float("Muon", "adam_beta_1", adam_beta_1, low=0.0, high=1.0, high_open=True)
        self.adam_beta_2 = check_float("Muon", "adam_beta_2", adam_beta_2, low=0.0, high=1.0, high_open=True)
        self.adam_weight_decay = check_float("Muon", "adam_weight_decay", adam_weight_decay, low=0.0,
                                             allow_none=True)
        self.epsilon = check_float("Muon", "epsilon", epsilon, low=0.0)
        if exclude_layers is None:
            exclude_layers = []
        if isinstance(exclude_layers, str) or not all(isinstance(k, str) for k in exclude_layers):
            raise TypeError(f"Muon: expected exclude_layers to be a list of strings. Received: exclude_layers={exclude_layers!r}")
        self.exclude_layers = list(exclude_layers)
        self.exclude_embeddings = bool(exclude_embeddings)
        self.muon_a = check_float("Muon", "muon_a", muon_a)
        self.muon_b = check_float("Muon", "muon_b", muon_b)
        self.muon_c = check_float("Muon", "muon_c", muon_c)
        self.adam_lr_ratio = check_float("Muon", "adam_lr_ratio", adam_lr_ratio, low=0.0)
        self.momentum = check_float("Muon", "momentum", momentum, low=0.0, high=1.0)
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 0:
            raise ValueError(f"Muon: expected ns_steps to be a non-negative int. Received: ns_steps={ns_steps!r}")
        self.ns_steps = ns_steps
        self.nesterov = bool(nesterov)
        self.rms_rate = check_float("Muon", "rms_rate", rms_rate, low=0.0, allow_none=True)

    def uses_adam(self, shape, name=None) -> bool:
        """Whether a parameter of ``shape`` called ``name`` takes the Adam step (Keras's rule)."""
        if len(shape) != 2:
            return True
        if name is not None:
            if self.exclude_embeddings and "embedding" in name.lower():
                return True
            if any(re.search(k, name) for k in self.exclude_layers):
                return True
        return False

    def _init_slots(self, p, name, lr):
        slots = {"momentum": np.zeros_like(p)}
        if self.uses_adam(p.shape, name):
            slots["velocity"] = np.zeros_like(p)
        return slots

    def _weight_decay_for(self, index):
        if not self._decay_mask[index]:
            return None
        return self.adam_weight_decay if "velocity" in self._slots[index] else self.weight_decay

    def _update(self, g, p, s, lr, t):
        m, a = s["momentum"], self._tmp(p)
        if "velocity" in s:  # Keras's Adam step
            v = s["velocity"]
            b1, b2 = self.adam_beta_1, self.adam_beta_2
            np.subtract(g, m, out=a)
            a *= 1.0 - b1
            m += a
            np.multiply(g, g, out=a)
            a -= v
            a *= 1.0 - b2
            v += a
            alpha = lr * self.adam_lr_ratio * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
            np.sqrt(v, out=a)
            a += self.epsilon
            np.divide(m, a, out=a)
            a *= alpha
            p -= a
            return
        m *= self.momentum
        m += g
        if self.nesterov:
            np.multiply(m, self.momentum, out=a)
            a += g
        else:
            np.copyto(a, m)
        update = newton_schulz(a, self.ns_steps, self.muon_a, self.muon_b, self.muon_c)
        scale = lr if self.rms_rate is None else lr * math.sqrt(max(p.shape[0], p.shape[1])) * self.rms_rate
        update *= scale
        p -= update

    def get_config(self):
        return {**super().get_config(), "adam_beta_1": self.adam_beta_1, "adam_beta_2": self.adam_beta_2,
                "epsilon": self.epsilon, "exclude_layers": list(self.exclude_layers), "muon_a": self.muon_a,
                "muon_b": self.muon_b, "muon_c": self.muon_c, "adam_lr_ratio": self.adam_lr_ratio,
                "momentum": self.momentum, "ns_steps": self.ns_steps, "nesterov": self.nesterov,
                "exclude_embeddings": self.exclude_embeddings, "adam_weight_decay": self.adam_weight_decay,
                "rms_rate": self.rms_rate}
