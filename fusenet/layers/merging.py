"""Merge layers: combine a list of arrays into one (Add, Subtract, Multiply, Average, Maximum,
Minimum, Concatenate, Dot), as in Keras 3.

Each is called on a list ``[x0, x1, ...]`` (the same shape, except along ``axis`` for
Concatenate) and its ``backward(dy)`` returns the list of gradients ``[dx0, dx1, ...]``.
"""

from __future__ import annotations

import numpy as np

from ..utils import check_numeric, result_dtype
from .base import Layer

__all__ = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
           "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot"]


class _Merge(Layer):
    """Base of the merge layers: checks a list of at least ``_min_inputs`` arrays."""

    _min_inputs = 2
    _max_inputs = None

    def _prepare_input(self, x):
        if not isinstance(x, (list, tuple)):
            raise ValueError(
                f"{self.describe()} expects a list of at least {self._min_inputs} arrays, "
                f"but received a single input of shape {np.shape(x)}."
            )
        owner = f"Layer '{self.name}' ({type(self).__name__})"
        xs = [check_numeric(a, owner) for a in x]
        n = len(xs)
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            expected = self._min_inputs if self._max_inputs == self._min_inputs else f"at least {self._min_inputs}"
            raise ValueError(f"{self.describe()} expects {expected} inputs, but received {n}.")
        if not self.built:
            self._build_for([a.shape for a in xs], result_dtype(xs[0], self.dtype))
        self._check_shapes([a.shape for a in xs])
        return [a.astype(self.dtype, copy=False) for a in xs]

    def _check_shapes(self, shapes):
        first = tuple(shapes[0])
        for i, s in enumerate(shapes[1:], start=1):
            if tuple(s) != first:
                raise ValueError(
                    f"{self.describe()} expects inputs of the same shape, but input 0 has shape {first} "
                    f"and input {i} has shape {tuple(s)}."
                )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


class Add(_Merge):
    """``y = x0 + x1 + ...``."""

    def forward(self, x, training=False):
        self._save_for_backward(training, len(x))
        out = x[0].copy()
        for a in x[1:]:
            out += a
        return out

    def backward(self, dy):
        (n,) = self._saved()
        return [dy] * n


class Subtract(_Merge):
    """``y = x0 - x1`` (exactly two inputs)."""

    _max_inputs = 2

    def forward(self, x, training=False):
        self._save_for_backward(training, True)
        return x[0] - x[1]

    def backward(self, dy):
        self._saved()
        return [dy, -dy]


class Multiply(_Merge):
    """``y = x0 * x1 * ...`` (element-wise)."""

    def forward(self, x, training=False):
        self._save_for_backward(training, x)
        out = x[0].copy()
        for a in x[1:]:
            out *= a
        return out

    def backward(self, dy):
        (xs,) = self._saved()
        grads = []
        for i in range(len(xs)):
            g = dy.copy()
            for j, a in enumerate(xs):
                if j != i:
                    g *= a
            grads.append(g)
        return grads


class Average(_Merge):
    """``y = (x0 + x1 + ...) / n``."""

    def forward(self, x, training=False):
        self._save_for_backward(training, len(x))
        out = x[0].copy()
        for a in x[1:]:
            out += a
        out /= len(x)
        return out

    def backward(self, dy):
        (n,) = self._saved()
        g = dy / n
        return [g] * n


class _Extremum(_Merge):
    """Element-wise maximum/minimum; the gradient goes to the first input that attains it."""

    _pick = None

    def forward(self, x, training=False):
        stacked = np.stack(x)
        index = self._pick(stacked, axis=0)
        self._save_for_backward(training, index, len(x))
        return np.take_along_axis(stacked, index[None], axis=0)[0]

    def backward(self, dy):
        index, n = self._saved()
        return [np.where(index == i, dy, 0).astype(dy.dtype) for i in range(n)]


class Maximum(_Extremum):
    """``y = max(x0, x1, ...)`` element-wise (ties: the first input gets the gradient)."""

    _pick = staticmethod(np.argmax)


class Minimum(_Extremum):
    """``y = min(x0, x1, ...)`` element-wise (ties: the first input gets the gradient)."""

    _pick = staticmethod(np.argmin)


class Concatenate(_Merge):
    """Concatenate along ``axis`` (default -1, the channels); other axes must agree."""

    def __init__(self, axis=-1, **kwargs):
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate: expected axis to be an int. Received: axis={axis!r}")
        if axis == 0:
            raise ValueError("Concatenate: axis 0 is the batch axis and cannot be concatenated. Received: axis=0")
        super().__init__(**kwargs)
        self.axis = axis

    def _check_shapes(self, shapes):
        rank = len(shapes[0])
        if not -rank <= self.axis < rank:
            raise ValueError(f"{self.describe()}: axis {self.axis} is out of range for inputs of rank {rank}.")
        ax = self.axis % rank
        first = tuple(shapes[0])
        for i, s in enumerate(shapes[1:], start=1):
            s = tuple(s)
            if len(s) != rank or s[:ax] + s[ax + 1:] != first[:ax] + first[ax + 1:]:
                raise ValueError(
                    f"{self.describe()} expects inputs that match except along axis {self.axis}, but input 0 has "
                    f"shape {first} and input {i} has shape {s}."
                )

    def forward(self, x, training=False):
        self._save_for_backward(training, np.cumsum([a.shape[self.axis] for a in x])[:-1])
        return np.concatenate(x, axis=self.axis)

    def backward(self, dy):
        (splits,) = self._saved()
        return np.split(dy, splits, axis=self.axis)

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        ax = self.axis % len(shapes[0])
        sizes = [s[ax] for s in shapes]
        total = None if any(d is None for d in sizes) else sum(sizes)
        return shapes[0][:ax] + (total,) + shapes[0][ax + 1:]

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis
        return config


class Dot(_Merge):
    """Batched dot product of two inputs ``(batch, n)``/``(batch, t, n)`` along ``axes`` (Keras ``Dot``).

    ``axes`` is an int or a pair (one axis per input, batch axis excluded); ``normalize=True``
    L2-normalises both along those axes first (cosine proximity). 2-D inputs give ``(batch, 1)``.
    """

    _max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        if isinstance(axes, int):
            axes = (axes, axes)
        axes = tuple(axes)
        if len(axes) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise ValueError(f"Dot: expected axes to be an int or a pair of ints. Received: axes={axes!r}")
        if 0 in axes:
            raise ValueError(f"Dot: axes may not include the batch axis 0. Received: axes={axes}")
        super().__init__(**kwargs)
        self.axes = axes
        self.normalize = bool(normalize)

    def _check_shapes(self, shapes):
        a, b = (tuple(s) for s in shapes)
        if len(a) not in (2, 3) or len(b) not in (2, 3):
            raise ValueError(f"{self.describe()} supports inputs of rank 2 or 3, but received shapes {a} and {b}.")
        ia, ib = self.axes[0] % len(a), self.axes[1] % len(b)
        if a[ia] != b[ib] or a[0] != b[0]:
            raise ValueError(
                f"{self.describe()}: dimension {a[ia]} of input 0 (axis {self.axes[0]}) does not match dimension "
                f"{b[ib]} of input 1 (axis {self.axes[1]}); shapes {a} and {b}."
            )

    @staticmethod
    def _as3d(x, axis):
        """Move ``axis`` last and make the array ``(batch, rows, n)``."""
        if x.ndim == 2:
            return x[:, None, :]
        return x if axis % 3 == 2 else np.swapaxes(x, 1, 2)

    def forward(self, x, training=False):
        a, b = x
        norms = None
        if self.normalize:
            na = np.sqrt(np.maximum(np.sum(a * a, axis=self.axes[0], keepdims=True), 1e-12))
            nb = np.sqrt(np.maximum(np.sum(b * b, axis=self.axes[1], keepdims=True), 1e-12))
            norms = (a, b, na, nb)
            a, b = a / na, b / nb
        a3, b3 = self._as3d(a, self.axes[0]), self._as3d(b, self.axes[1])
        out = a3 @ np.swapaxes(b3, 1, 2)  # (batch, ra, rb)
        self._save_for_backward(training, a3, b3, x[0].shape, x[1].shape, norms)
        if x[0].ndim == 2 and x[1].ndim == 2:
            return out.reshape(out.shape[0], 1)
        if x[0].ndim == 2:
            return out[:, 0, :]
        if x[1].ndim == 2:
            return out[:, :, 0]
        return out

    def backward(self, dy):
        a3, b3, sa, sb, norms = self._saved()
        d = dy.reshape(dy.shape[0], a3.shape[1], b3.shape[1])
        da3, db3 = d @ b3, np.swapaxes(d, 1, 2) @ a3
        da = self._from3d(da3, sa, self.axes[0])
        db = self._from3d(db3, sb, self.axes[1])
        if norms is not None:
            a, b, na, nb = norms
            ua, ub = a / na, b / nb
            da = (da - ua * np.sum(da * ua, axis=self.axes[0], keepdims=True)) / na
            db = (db - ub * np.sum(db * ub, axis=self.axes[1], keepdims=True)) / nb
        return [da, db]

    @staticmethod
    def _from3d(g, shape, axis):
        if len(shape) == 2:
            return g[:, 0, :]
        return g if axis % 3 == 2 else np.swapaxes(g, 1, 2)

    def compute_output_shape(self, input_shape):
        a, b = (tuple(s) for s in input_shape)
        if len(a) == 2 and len(b) == 2:
            return (a[0], 1)
        rest_a = tuple(d for i, d in enumerate(a[1:], start=1) if i != self.axes[0] % len(a))
        rest_b = tuple(d for i, d in enumerate(b[1:], start=1) if i != self.axes[1] % len(b))
        return (a[0],) + rest_a + rest_b

    def get_config(self):
        config = super().get_config()
        config.update({"axes": list(self.axes), "normalize": self.normalize})
        return config


def _functional(cls):
    def apply(inputs, **kwargs):
        return cls(**kwargs)(inputs)

    apply.__name__ = cls.__name__.lower()
    apply.__doc__ = f"``{cls.__name__}(**kwargs)(inputs)``."
    return apply


add, subtract, multiply, average = _functional(Add), _functional(Subtract), _functional(Multiply), _functional(Average)
maximum, minimum, concatenate, dot = _functional(Maximum), _functional(Minimum), _functional(Concatenate), _functional(Dot)
