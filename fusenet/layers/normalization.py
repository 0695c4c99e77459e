"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization, UnitNormalization.

All of them follow Keras 3 (arguments, defaults, weight shapes and ``get_weights()`` order) and
work on any rank. Every reduction runs on a *view* of the input in which consecutive axes of the
same kind (normalised / kept) are merged, so that channels-last BatchNormalization over
``(batch, h, w, c)`` is a reduction over the rows of a ``(batch*h*w, c)`` matrix, and
LayerNormalization over the last axis a reduction over the columns of a ``(rows, features)``
matrix. There is no Python loop over samples, pixels or channels.

Notation used in the docstrings: ``mean`` and ``var`` are the mean and the *biased* variance over
the normalised axes, ``inv = 1 / sqrt(var + epsilon)``, ``xhat = (x - mean) * inv``, and the
output is ``y = gamma * xhat + beta``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from .._blas import ones_sum
from .._parallel import split_run
from .base import InputSpec, Layer

__all__ = ["BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization"]


# ---------------------------------------------------------------- helpers
def _owner(cls_name, kwargs):
    name = kwargs.get("name")
    return f"{cls_name}(name={name!r})" if name else cls_name


def _check_axis_arg(axis, owner):
    """``axis`` as an int or a list of ints (Keras accepts both); ``TypeError`` otherwise."""
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return int(axis)
    if isinstance(axis, (list, tuple)) and axis and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
        return [int(a) for a in axis]
    raise TypeError(f"{owner}: expected axis to be an int or a non-empty list of ints. Received: axis={axis!r}")


def _resolve_axes(axis, ndim, describe, input_shape):
    """Positive axes (in the given order) of an int or list ``axis`` for an input of rank ``ndim``."""
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{describe}: axis {a} is out of range for an input of rank {ndim} "
                f"(valid axes are {-ndim}..{ndim - 1}). Received: axis={axis}, input_shape={tuple(input_shape)}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{describe}: expected distinct axes. Received: axis={axis} for an input of rank {ndim}")
    return out


def _check_epsilon(value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or not np.isfinite(value):
        raise ValueError(f"{owner}: expected epsilon to be a non-negative finite number. Received: epsilon={value!r}")
    return float(value)


def _merged_view(shape, marked):
    """Merge runs of consecutive axes that are all marked or all unmarked.

    Returns ``(view_shape, marked_axes, unmarked_axes)`` where the axes index ``view_shape``.
    ``x.reshape(view_shape)`` is then a free reshape of a C-contiguous ``x``.
    """
    view, flags = [], []
    for i, size in enumerate(shape):
        flag = i in marked
        if flags and flags[-1] == flag:
            view[-1] *= size
        else:
            view.append(size)
            flags.append(flag)
    on = tuple(j for j, f in enumerate(flags) if f)
    off = tuple(j for j, f in enumerate(flags) if not f)
    return tuple(view), on, off


def _param_view(view, keep):
    """Broadcast shape of a parameter living on the view axes ``keep``."""
    return tuple(v if j in keep else 1 for j, v in enumerate(view))


def _reduce_sum(a, axes):
    """``a.sum(axes, keepdims=True)``; rows of a matrix are summed with a BLAS GEMV (faster, more accurate)."""
    if a.ndim == 2 and axes == (0,):
        return ones_sum(a, 0)[None, :]
    if a.ndim == 2 and axes == (1,):
        return ones_sum(a, 1)[:, None]
    return a.sum(axis=axes, keepdims=True)


def _reduce_sum_prod(a, b, axes):
    """``(a * b).sum(axes, keepdims=True)`` without the temporary for matrices (one pass)."""
    if a.ndim == 2 and axes == (0,):
        return np.einsum("ij,ij->j", a, b)[None, :]
    if a.ndim == 2 and axes == (1,):
        return np.einsum("ij,ij->i", a, b)[:, None]
    return np.multiply(a, b).sum(axis=axes, keepdims=True)


def _standardize(x, axes, count, epsilon):
    """``(xhat, inv, mean, var)`` of ``x`` normalised over ``axes`` (keepdims), biased variance."""
    mean = _reduce_sum(x, axes)
    mean *= 1.0 / count
    xhat = x - mean
    var = _reduce_sum_prod(xhat, xhat, axes)
    var *= 1.0 / count
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat *= inv
    return xhat, inv, mean, var


def _standardize_backward(dxhat, xhat, inv, axes, count):
    """Gradient through ``xhat = (x - mean(x)) / sqrt(var(x) + eps)`` over ``axes``.

    ``dx = inv * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))`` (means over ``axes``).
    """
    m1 = _reduce_sum(dxhat, axes)
    m1 *= 1.0 / count
    m2 = _reduce_sum_prod(dxhat, xhat, axes)
    m2 *= 1.0 / count
    dx = xhat * m2
    np.subtract(dxhat, dx, out=dx)
    dx -= m1
    dx *= inv
    return dx


#: bytes of one block of rows in BatchNormalization's blocked passes (a few blocks fit the L2 cache)
BLOCK_BYTES = 1 << 18


#: arrays below this size run their blocked passes on one thread (a worker's hand-off costs more)
PARALLEL_BYTES = 1 << 20


def _big(a) -> bool:
    return a.nbytes >= PARALLEL_BYTES


def _add_parts(parts):
    """The partial sums of :func:`~fusenet._parallel.split_run`, added in their order."""
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


class _Channels:
    """Per-channel reductions and broadcasts for BatchNormalization on a merged view.

    Channel vectors are flat arrays of length ``p`` (the product of the normalised axes). The
    common channels-last case is a ``(m, p)`` matrix reduced over its rows; it is worked on as a
    *wider* matrix ``(m / r, p * r)`` (a free reshape, ``r`` a power of two dividing ``m``) with the
    channel vectors tiled ``r`` times, so that broadcasting ufuncs run long inner loops even for
    few channels, and row sums are BLAS GEMVs folded back to ``p`` entries.

    The passes that need a sum of what they just computed (:meth:`center`, :meth:`grad_sums`) run by
    blocks of rows of about :data:`BLOCK_BYTES` and add up per-block sums, so that each block is summed
    while it is in cache; the blocks are cut in two fixed halves that can run on two threads
    (:func:`~fusenet._parallel.split_run`, opt-in: the same sums on one core). The fused
    convolution layers call the very same methods, so that they reproduce the layer's numbers bit for bit.
    """

    def __init__(self, view, red, pshape):
        self.view, self.red, self.pshape = view, red, pshape
        self.p = int(np.prod(pshape))
        self.count = int(np.prod(view)) // max(self.p, 1)
        self.rep = 0  # 0: general keepdims path
        if len(view) == 2 and red == (0,):
            m, p = view
            rep = 1
            while p * rep < 2048 and m % (2 * rep) == 0:
                rep *= 2
            self.rep = rep
            self.wide = (m // rep, p * rep)

    def work(self, a):
        """``a`` (input-shaped) as the working array."""
        return a.reshape(self.wide if self.rep else self.view)

    def param(self, v):
        """A flat channel vector, broadcastable against the working array."""
        if self.rep:
            return np.tile(v, self.rep) if self.rep > 1 else v
        return v.reshape(self.pshape)

    def _fold(self, s):
        return s.reshape(self.rep, self.p).sum(axis=0) if self.rep > 1 else s

    def sum(self, a):
        """Per-channel sum of a working array (matrices: BLAS GEMVs over the blocks of rows, the two
        halves of the blocks on two threads, partial sums added in order)."""
        if not self.rep:
            return a.sum(axis=self.red).reshape(-1)
        blocks = self.row_blocks(a)
        ones = np.ones(blocks[0].stop - blocks[0].start, dtype=a.dtype)

        def run(b0, b1):
            acc = np.zeros(a.shape[1], dtype=a.dtype)
            for sl in blocks[b0:b1]:
                acc += ones[:sl.stop - sl.start] @ a[sl]
            return acc

        return self._fold(_add_parts(split_run(run, len(blocks), parallel=_big(a))))

    def sum_prod(self, a, b):
        """Per-channel ``sum(a * b)`` of two working arrays (no temporary for matrices)."""
        if self.rep:
            return self._fold(np.einsum("ij,ij->j", a, b))
        return np.multiply(a, b).sum(axis=self.red).reshape(-1)

    def row_blocks(self, a) -> list:
        """Slices of about :data:`BLOCK_BYTES` over the rows of the working matrix ``a`` (one slice over
        everything in the general keepdims case)."""
        if not self.rep:
            return [slice(None)]
        step = max(1, BLOCK_BYTES // max(1, a.shape[1] * a.itemsize))
        return [slice(r, min(r + step, a.shape[0])) for r in range(0, a.shape[0], step)]

    def center(self, xw, mean, out):
        """``out = xw - mean`` (``out`` may be ``xw`` itself) and the per-channel ``sum(out ** 2)``, in one
        pass by blocks of rows."""
        m = self.param(mean)
        if not self.rep:
            np.subtract(xw, m, out=out)
            return self.sum_prod(out, out)
        blocks = self.row_blocks(out)

        def run(b0, b1):
            acc = np.zeros(out.shape[1], dtype=out.dtype)
            for sl in blocks[b0:b1]:
                ob = out[sl]
                np.subtract(xw[sl], m, out=ob)
                acc += np.einsum("ij,ij->j", ob, ob)
            return acc

        return self._fold(_add_parts(split_run(run, len(blocks), parallel=_big(out))))

    def grad_sums(self, g, xc, before=None):
        """``(sum(g), sum(g * xc))`` per channel, in one pass by blocks of rows; ``before(rows)``, when
        given, is called first on each block (e.g. to compute that block of ``g``)."""
        if not self.rep:
            if before is not None:
                before(slice(None))
            return self.sum(g), self.sum_prod(g, xc)
        blocks = self.row_blocks(g)
        ones = np.ones(blocks[0].stop - blocks[0].start, dtype=g.dtype)

        def run(b0, b1):
            acc = np.zeros((2, g.shape[1]), dtype=g.dtype)
            for sl in blocks[b0:b1]:
                if before is not None:
                    before(sl)
                gb = g[sl]
                acc[0] += ones[:gb.shape[0]] @ gb
                acc[1] += np.einsum("ij,ij->j", gb, xc[sl])
            return acc

        acc = _add_parts(split_run(run, len(blocks), parallel=_big(g)))
        return self._fold(acc[0]), self._fold(acc[1])

    def blockwise(self, a, fn) -> None:
        """``fn(rows)`` on every block of rows of the working matrix ``a`` (element-wise work: the two
        halves of the blocks on two threads, see :mod:`fusenet._parallel`)."""
        blocks = self.row_blocks(a)

        def run(b0, b1):
            for sl in blocks[b0:b1]:
                fn(sl)

        split_run(run, len(blocks), parallel=_big(a))


class _GammaBetaMixin:
    """Shared storage, weight creation and config of the ``gamma``/``beta`` arguments."""

    def _init_gamma_beta(self, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer, beta_constraint, gamma_constraint):
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = get_initializer(beta_initializer)
        self.gamma_initializer = get_initializer(gamma_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.beta_constraint = _constraints.get(beta_constraint)
        self.gamma_constraint = _constraints.get(gamma_constraint)

    def _add_gamma(self, shape):
        self.add_weight("gamma", shape, self.gamma_initializer, regularizer=self.gamma_regularizer,
                        constraint=self.gamma_constraint)

    def _add_beta(self, shape):
        self.add_weight("beta", shape, self.beta_initializer, regularizer=self.beta_regularizer,
                        constraint=self.beta_constraint)

    def _gamma_beta_config(self):
        return {
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": serialize_initializer(self.beta_initializer),
            "gamma_initializer": serialize_initializer(self.gamma_initializer),
            "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": _constraints.serialize(self.beta_constraint),
            "gamma_constraint": _constraints.serialize(self.gamma_constraint),
        }


# ---------------------------------------------------------------- BatchNormalization
class BatchNormalization(_GammaBetaMixin, Layer):
    """Batch normalization (Ioffe & Szegedy, 2015), as Keras 3.

    ``axis`` (int or list of ints, default ``-1``: channels-last) names the feature axes that keep
    their own statistics and parameters; mean and variance are taken over every other axis.

    Training (``training=True`` and ``trainable``): ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``
    with the batch mean and the *biased* batch variance; then
    ``moving_mean = momentum * moving_mean + (1 - momentum) * mean`` and the same for
    ``moving_variance`` with the biased ``var`` (Keras stores the biased variance; PyTorch's
    ``running_var`` is unbiased and its momentum is ``1 - momentum``).
    Inference (or ``trainable=False``, as Keras): the same affine map with the moving statistics.

    Input: any rank ``(batch, ..., channels)``; output: same shape. Weights (Keras order):
    ``gamma (c,)`` if ``scale``, ``beta (c,)`` if ``center`` (trainable), ``moving_mean (c,)``,
    ``moving_variance (c,)`` (in ``state``). With a list ``axis`` the weights have shape
    ``tuple(input_shape[a] for a in sorted(axis))``.

    Backward after a training forward (the compact formula; ``m`` = number of reduced entries):
    ``dbeta = sum(dy)``, ``dgamma = sum(dy * xhat)``,
    ``dx = gamma * inv / m * (m * dy - dbeta - xhat * dgamma)``.
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, **kwargs):
        owner = _owner("BatchNormalization", kwargs)
        self.axis = _check_axis_arg(axis, owner)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{owner}: expected momentum to be a number in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = _check_epsilon(epsilon, owner)
        super().__init__(**kwargs)
        self._init_gamma_beta(center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                              gamma_regularizer, beta_constraint, gamma_constraint)
        self.moving_mean_initializer = get_initializer(moving_mean_initializer)
        self.moving_variance_initializer = get_initializer(moving_variance_initializer)
        self.input_spec = InputSpec(min_ndim=1)

    def build(self, input_shape):
        ndim = len(input_shape)
        axes = sorted(_resolve_axes(self.axis, ndim, self.describe(), input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if any(s is None for s in shape):
            raise ValueError(f"{self.describe()}: the normalised axes {axes} of the input must be known. "
                             f"Received: input_shape={tuple(input_shape)}")
        self._axes = axes
        if self.scale:
            self._add_gamma(shape)
        if self.center:
            self._add_beta(shape)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer, trainable=False)
        self.input_spec = InputSpec(ndim=ndim, axes={a: input_shape[a] for a in axes})
        super().build(input_shape)

    def _channels(self, shape):
        view, keep, red = _merged_view(shape, set(self._axes))
        return _Channels(view, red, _param_view(view, keep))

    def forward(self, x, training=False):
        ops = self._channels(x.shape)
        xw = ops.work(x)
        flat = {k: v.reshape(-1) for k, v in self._params.items()}
        if training and self.trainable:
            count = ops.count
            mean = ops.sum(xw) * (1.0 / count)
            xc = np.empty_like(xw)
            var = ops.center(xw, mean, xc) * (1.0 / count)
            mom = self.momentum
            for key, stat in (("moving_mean", mean), ("moving_variance", var)):
                moving = self._state[key]
                moving *= mom
                moving += (1.0 - mom) * stat.reshape(moving.shape)
            saved_mean = None
        else:  # the moving statistics: inference, or a frozen layer (trainable=False, as Keras)
            var = self._state["moving_variance"].reshape(-1)
            saved_mean = self._state["moving_mean"].reshape(-1)
        inv = 1.0 / np.sqrt(var + self.epsilon)
        k = inv * flat["gamma"] if self.scale else inv
        if saved_mean is None:
            # y = gamma * xhat + beta = xc * k + beta
            y = xc * ops.param(k)
            if self.center:
                y += ops.param(flat["beta"])
            self._save_for_backward(True, xc, inv, True)
            return y.reshape(x.shape)
        # the affine map y = x * k + (beta - mean * k)
        b = -saved_mean * k
        if self.center:
            b += flat["beta"]
        y = xw * ops.param(k)
        y += ops.param(b)
        if training:
            self._save_for_backward(True, xw - ops.param(saved_mean), inv, False)
        else:
            self._save_for_backward(False)
        return y.reshape(x.shape)

    def backward(self, dy):
        xc, inv, batch_stats = self._saved()
        ops = self._channels(dy.shape)
        dyw = ops.work(dy)
        dbeta, s = ops.grad_sums(dyw, xc)  # sum(dy), sum(dy * (x - mean)); dgamma = s * inv
        if self.scale:
            self._grads["gamma"] += (s * inv).reshape(self._grads["gamma"].shape)
        if self.center:
            self._grads["beta"] += dbeta.reshape(self._grads["beta"].shape)
        k = inv * self._params["gamma"].reshape(-1) if self.scale else inv
        dx = dyw * ops.param(k)
        if batch_stats:
            # dx = k * (dy - dbeta / m - xhat * dgamma / m) = dy * k + xc * a + b
            a = k * inv * inv * s * (-1.0 / ops.count)
            t = xc * ops.param(a)
            dx += t
            dx += ops.param(k * dbeta * (-1.0 / ops.count))
        return dx.reshape(dy.shape)

    def compute_output_shape(self, input_shape):
        _resolve_axes(self.axis, len(input_shape), self.describe(), input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            **self._gamma_beta_config(),
            "moving_mean_initializer": serialize_initializer(self.moving_mean_initializer),
            "moving_variance_initializer": serialize_initializer(self.moving_variance_initializer),
        })
        return config


# ---------------------------------------------------------------- LayerNormalization
class LayerNormalization(_GammaBetaMixin, Layer):
    """Layer normalization (Ba et al., 2016), as Keras 3.

    Each sample is normalised over ``axis`` (int or list, default ``-1``):
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the mean and biased variance over
    ``axis``. With ``rms_scaling=True`` (Keras 3's definition, ``center`` and ``scale`` ignored):
    ``y = gamma * x / sqrt(var + epsilon)`` (no mean is subtracted from ``x``; ``var`` is still the
    centred variance, exactly as Keras computes it), and there is no ``beta``.

    Input: any rank; output: same shape. Weights (Keras order): ``gamma``, ``beta``, each of shape
    ``tuple(input_shape[a] for a in axis)``, broadcast (reshaped) over the sorted axes as Keras does.
    Statistics are per sample, so training and inference compute the same function.

    Backward: ``dxhat = gamma * dy``; ``dx = inv * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``.
    """

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, **kwargs):
        owner = _owner("LayerNormalization", kwargs)
        self.axis = _check_axis_arg(axis, owner)
        self.epsilon = _check_epsilon(epsilon, owner)
        super().__init__(**kwargs)
        self._init_gamma_beta(center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                              gamma_regularizer, beta_constraint, gamma_constraint)
        self.rms_scaling = bool(rms_scaling)
        self.input_spec = InputSpec(min_ndim=1)

    @property
    def _has_gamma(self):
        return self.scale or self.rms_scaling

    @property
    def _has_beta(self):
        return self.center and not self.rms_scaling

    def build(self, input_shape):
        ndim = len(input_shape)
        axes = _resolve_axes(self.axis, ndim, self.describe(), input_shape)
        shape = tuple(input_shape[a] for a in axes)
        if any(s is None for s in shape):
            raise ValueError(f"{self.describe()}: the normalised axes {sorted(axes)} of the input must be known. "
                             f"Received: input_shape={tuple(input_shape)}")
        self._axes = sorted(axes)
        if self._has_gamma:
            self._add_gamma(shape)
        if self._has_beta:
            self._add_beta(shape)
        self.input_spec = InputSpec(ndim=ndim, axes={a: input_shape[a] for a in axes})
        super().build(input_shape)

    def _view(self, shape):
        view, norm, batch = _merged_view(shape, set(self._axes))
        return view, norm, batch, _param_view(view, norm)

    def forward(self, x, training=False):
        view, norm, batch, pshape = self._view(x.shape)
        xv = x.reshape(view)
        count = int(np.prod([view[j] for j in norm]))
        gamma = self._params["gamma"].reshape(pshape) if self._has_gamma else None
        if self.rms_scaling:
            _, inv, _, _ = _standardize(xv, norm, count, self.epsilon)
            xhat = xv * inv
        else:
            xhat, inv, _, _ = _standardize(xv, norm, count, self.epsilon)
        if training:
            y = xhat * gamma if gamma is not None else xhat.copy()
        else:  # nothing is kept: finish in place
            y = xhat
            if gamma is not None:
                y *= gamma
        if self._has_beta:
            y += self._params["beta"].reshape(pshape)
        self._save_for_backward(training, xv, xhat, inv, count)
        return y.reshape(x.shape)

    def backward(self, dy):
        xv, xhat, inv, count = self._saved()
        view, norm, batch, pshape = self._view(dy.shape)
        dyv = dy.reshape(view)
        if self._has_gamma:
            dg = _reduce_sum_prod(dyv, xhat, batch) if batch else dyv * xhat
            self._grads["gamma"] += dg.reshape(self._grads["gamma"].shape)
            dxhat = dyv * self._params["gamma"].reshape(pshape)
        else:
            dxhat = dyv
        if self._has_beta:
            db = _reduce_sum(dyv, batch) if batch else dyv
            self._grads["beta"] += db.reshape(self._grads["beta"].shape)
        if self.rms_scaling:
            # y0 = x * inv with inv = (var(x) + eps)^-1/2: dx = inv * (dxhat - xc*inv * mean(dxhat * y0))
            m = _reduce_sum_prod(dxhat, xhat, norm)
            m *= 1.0 / count
            xc = xv - _reduce_sum(xv, norm) * (1.0 / count)
            xc *= inv
            xc *= m
            dx = dxhat - xc
            dx *= inv
        else:
            dx = _standardize_backward(dxhat, xhat, inv, norm, count)
        return dx.reshape(dy.shape)

    def compute_output_shape(self, input_shape):
        _resolve_axes(self.axis, len(input_shape), self.describe(), input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon, "rms_scaling": self.rms_scaling,
                       **self._gamma_beta_config()})
        return config


# ---------------------------------------------------------------- GroupNormalization
class GroupNormalization(_GammaBetaMixin, Layer):
    """Group normalization (Wu & He, 2018), as Keras 3.

    The ``c`` channels on ``axis`` (default ``-1``, channels-last) are split into ``groups``
    consecutive groups of ``c // groups`` channels; each sample is normalised over every
    non-batch axis within its group (``groups=-1``: one group per channel, instance normalization;
    ``groups=1``: layer normalization over all non-batch axes). Then ``y = gamma * xhat + beta``
    per channel. Input: ``(batch, ..., c, ...)`` of rank >= 2; output: same shape.
    Weights (Keras order): ``gamma (c,)`` if ``scale``, ``beta (c,)`` if ``center``.
    PyTorch's ``F.group_norm`` computes the same on channels-first data.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        owner = _owner("GroupNormalization", kwargs)
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
            raise TypeError(f"{owner}: expected groups to be a positive integer or -1. Received: groups={groups!r}")
        if groups == 0 or groups < -1:
            raise ValueError(f"{owner}: expected groups to be a positive integer or -1. Received: groups={groups}")
        self.groups = int(groups)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{owner}: expected axis to be an int. Received: axis={axis!r}")
        self.axis = int(axis)
        self.epsilon = _check_epsilon(epsilon, owner)
        super().__init__(**kwargs)
        self._init_gamma_beta(center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                              gamma_regularizer, beta_constraint, gamma_constraint)
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        ndim = len(input_shape)
        if ndim < 2:
            raise ValueError(f"{self.describe()}: expected an input of rank >= 2 (batch, ..., channels). "
                             f"Received: input_shape={tuple(input_shape)}")
        (axis,) = _resolve_axes(self.axis, ndim, self.describe(), input_shape)
        if axis == 0:
            raise ValueError(f"{self.describe()}: axis must not be the batch axis. Received: axis={self.axis}")
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"{self.describe()}: axis {self.axis} of the input must be known. "
                             f"Received: input_shape={tuple(input_shape)}")
        groups = channels if self.groups == -1 else self.groups
        if groups > channels:
            raise ValueError(f"{self.describe()}: the number of groups ({groups}) cannot be more than the number "
                             f"of channels ({channels}). Received: groups={self.groups}, input_shape={tuple(input_shape)}")
        if channels % groups:
            raise ValueError(f"{self.describe()}: the number of groups ({groups}) must divide the number of "
                             f"channels ({channels}). Received: groups={self.groups}, input_shape={tuple(input_shape)}")
        self._axis, self._groups = axis, groups
        if self.scale:
            self._add_gamma((channels,))
        if self.center:
            self._add_beta((channels,))
        self.input_spec = InputSpec(ndim=ndim, axes={axis: channels})
        super().build(input_shape)

    def _view(self, shape):
        """``(batch, before, groups, channels // groups, after)``; statistics over axes 1, 3, 4."""
        a, g = self._axis, self._groups
        before = int(np.prod(shape[1:a]))
        after = int(np.prod(shape[a + 1:]))
        return (shape[0], before, g, shape[a] // g, after)

    def forward(self, x, training=False):
        view = self._view(x.shape)
        xv = x.reshape(view)
        pshape = (1, 1, view[2], view[3], 1)
        count = view[1] * view[3] * view[4]
        xhat, inv, _, _ = _standardize(xv, (1, 3, 4), count, self.epsilon)
        y = xhat * self._params["gamma"].reshape(pshape) if self.scale else xhat.copy()
        if self.center:
            y += self._params["beta"].reshape(pshape)
        self._save_for_backward(training, xhat, inv, count)
        return y.reshape(x.shape)

    def backward(self, dy):
        xhat, inv, count = self._saved()
        view = self._view(dy.shape)
        dyv = dy.reshape(view)
        pshape = (1, 1, view[2], view[3], 1)
        if self.scale:
            self._grads["gamma"] += np.einsum("nbgca,nbgca->gc", dyv, xhat).reshape(-1)
            dxhat = dyv * self._params["gamma"].reshape(pshape)
        else:
            dxhat = dyv
        if self.center:
            self._grads["beta"] += dyv.sum(axis=(0, 1, 4)).reshape(-1)
        dx = _standardize_backward(dxhat, xhat, inv, (1, 3, 4), count)
        return dx.reshape(dy.shape)

    def compute_output_shape(self, input_shape):
        _resolve_axes(self.axis, len(input_shape), self.describe(), input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                       **self._gamma_beta_config()})
        return config


# ---------------------------------------------------------------- UnitNormalization
class UnitNormalization(Layer):
    """Scale each sample to unit L2 norm over ``axis`` (int or list, default ``-1``), as Keras 3.

    ``y = x / sqrt(max(sum(x**2, axis), 1e-12))``. Input: any rank; output: same shape; no weights.
    Backward: ``dx = inv * (dy - y * sum(dy * y))`` where the norm exceeds the floor, ``inv * dy`` where
    it is clipped.
    """

    _FLOOR = 1e-12

    def __init__(self, axis=-1, **kwargs):
        owner = _owner("UnitNormalization", kwargs)
        self.axis = _check_axis_arg(axis, owner)
        super().__init__(**kwargs)
        self.input_spec = InputSpec(min_ndim=1)

    def build(self, input_shape):
        self._axes = sorted(_resolve_axes(self.axis, len(input_shape), self.describe(), input_shape))
        self.input_spec = InputSpec(ndim=len(input_shape))
        super().build(input_shape)

    def forward(self, x, training=False):
        view, norm, _ = _merged_view(x.shape, set(self._axes))
        xv = x.reshape(view)
        sq = _reduce_sum_prod(xv, xv, norm)
        clipped = sq < self._FLOOR
        inv = 1.0 / np.sqrt(np.maximum(sq, self._FLOOR))
        y = xv * inv
        self._save_for_backward(training, y, inv, clipped)
        return y.reshape(x.shape)

    def backward(self, dy):
        y, inv, clipped = self._saved()
        view, norm, _ = _merged_view(dy.shape, set(self._axes))
        dyv = dy.reshape(view)
        proj = _reduce_sum_prod(dyv, y, norm)
        proj[clipped] = 0.0
        dx = y * proj
        np.subtract(dyv, dx, out=dx)
        dx *= inv
        return dx.reshape(dy.shape)

    def compute_output_shape(self, input_shape):
        _resolve_axes(self.axis, len(input_shape), self.describe(), input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config
