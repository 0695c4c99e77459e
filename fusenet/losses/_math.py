"""Numerically stable element-wise helpers shared by the losses (no overflow at |x| = 1000)."""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "log_sigmoid", "softplus", "log_softmax", "pow_and_grad", "pnorm_and_grad"]


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: ``exp`` only of ``-|x|``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def softplus(x):
    """``log(1 + exp(x))`` as ``logaddexp(0, x)``."""
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def log_sigmoid(x):
    """``log(sigmoid(x)) = -softplus(-x)``."""
    return -softplus(-x)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis`` (max-shifted)."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def pow_and_grad(base, gamma: float):
    """``base ** gamma`` and its derivative ``gamma * base ** (gamma - 1)`` for ``base >= 0``.

    Where ``base == 0`` the derivative is taken as 0 (``gamma > 1``), 1 (``gamma == 1``) or 0
    (``gamma < 1``, where it is unbounded), so no division by zero is ever evaluated.
    """
    positive = base > 0
    safe = np.where(positive, base, 1.0)
    value = np.where(positive, safe**gamma, 0.0 if gamma > 0 else 1.0)
    if gamma == 0:
        return value.astype(base.dtype, copy=False), np.zeros_like(base)
    deriv = np.where(positive, gamma * safe ** (gamma - 1.0), 1.0 if gamma == 1 else 0.0)
    return value.astype(base.dtype, copy=False), deriv.astype(base.dtype, copy=False)


def pnorm_and_grad(v, p: float, axis=-1):
    """``||v||_p`` along ``axis`` and its gradient with respect to ``v`` (0 where the norm is 0)."""
    if p == 2:
        norm = np.sqrt(np.sum(v * v, axis=axis))
        safe = np.where(norm > 0, norm, 1.0)
        grad = np.where(np.expand_dims(norm > 0, axis), v / np.expand_dims(safe, axis), 0.0)
        return norm, grad.astype(v.dtype, copy=False)
    a = np.abs(v)
    norm = np.sum(a**p, axis=axis) ** (1.0 / p)
    safe = np.expand_dims(np.where(norm > 0, norm, 1.0), axis)
    grad = np.sign(v) * (a / safe) ** (p - 1.0)
    grad = np.where(np.expand_dims(norm > 0, axis), grad, 0.0)
    return norm, grad.astype(v.dtype, copy=False)
