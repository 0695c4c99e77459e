"""Embedding layers: token lookup (Embedding) and learned positions (PositionalEmbedding)."""

from __future__ import annotations

import numpy as np

from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import RandomUniform
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from ..utils import check_numeric, check_positive_int, make_rng
from .base import InputSpec, Layer, check_input

__all__ = ["Embedding", "PositionalEmbedding"]


def _embeddings_initializer(identifier):
    """Keras's ``"uniform"`` (the Embedding default) is ``RandomUniform(-0.05, 0.05)``."""
    if isinstance(identifier, str) and identifier == "uniform":
        return RandomUniform(-0.05, 0.05)
    return get_initializer(identifier)


def _scatter_rows(grad: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """``grad[ids[i]] += rows[i]`` for every ``i``, repeated ids summed (no unbuffered ``ufunc.at`` scatter).

    ``ids`` is 1-D of length ``n``, ``rows`` is ``(n, dim)``. The ids are sorted (stable),
    equal ids form contiguous runs, ``np.add.reduceat`` sums each run in one pass, and each
    distinct id receives its sum: ``O(n log n + n * dim)``.
    """
    if ids.size == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    sums = np.add.reduceat(rows[order], starts, axis=0)
    grad[sorted_ids[starts]] += sums


class Embedding(Layer):
    """Turns integer ids into dense vectors: ``y[..., :] = embeddings[x[...], :]`` (Keras 3 ``Embedding``).

    Input: integer ids of any shape ``(batch, ...)`` with ``0 <= id < input_dim`` (floats holding
    whole numbers are accepted; ids are never cast to the float dtype). Output ``(batch, ..., output_dim)``
    in the layer's dtype (float32 unless ``dtype=`` says otherwise; the dtype of the ids plays no part).
    Weight: ``embeddings (input_dim, output_dim)``, initialised by ``embeddings_initializer``
    (Keras's default ``"uniform"`` is ``RandomUniform(-0.05, 0.05)``).

    Backward: ``d embeddings[v] += sum of dy[i] over the positions i with x[i] == v`` (sorted ids
    and ``np.add.reduceat``); there is no gradient with respect to the integer input, so
    ``backward`` returns ``None``. An id outside ``[0, input_dim)`` raises ``ValueError``.
    """

    _cast_inputs = False

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, seed=None, **kwargs):
        owner = f"Embedding(name={kwargs.get('name')!r})" if kwargs.get("name") else "Embedding"
        self.input_dim = check_positive_int(input_dim, "input_dim", owner)
        self.output_dim = check_positive_int(output_dim, "output_dim", owner)
        super().__init__(**kwargs)
        self.embeddings_initializer = _embeddings_initializer(embeddings_initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = _constraints.get(embeddings_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(min_ndim=1)

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer, rng=self._rng,
                        regularizer=self.embeddings_regularizer, constraint=self.embeddings_constraint)

    def _prepare_input(self, x):
        x = check_numeric(x, f"Layer '{self.name}' ({type(self).__name__})")
        if not self.built:
            self._build_for(x.shape)  # the layer's dtype (floatx by default), never the ids' dtype
        check_input(self, x.shape, self.input_spec)
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or np.any(x != np.floor(x)):
                raise ValueError(
                    f"{self.describe()}: expected integer ids, but received a {x.dtype} input with non-integer values "
                    f"of shape {x.shape}"
                )
            x = x.astype(np.int64)
        elif x.dtype.kind == "b":
            x = x.astype(np.int64)
        if x.size:
            lo, hi = x.min(), x.max()
            if lo < 0 or hi >= self.input_dim:
                bad = int(lo) if lo < 0 else int(hi)
                raise ValueError(
                    f"{self.describe()}: expected ids in [0, input_dim) with input_dim={self.input_dim}, "
                    f"but received id {bad}"
                )
        return x

    def forward(self, x, training=False):
        y = np.take(self._params["embeddings"], x, axis=0)
        self._save_for_backward(training, x)
        return y

    def backward(self, dy):
        (ids,) = self._saved()
        dy = np.asarray(dy)
        _scatter_rows(self._grads["embeddings"], ids.reshape(-1), dy.reshape(-1, self.output_dim))
        return None

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": serialize_initializer(self.embeddings_initializer),
            "embeddings_regularizer": _regularizers.serialize(self.embeddings_regularizer),
            "embeddings_constraint": _constraints.serialize(self.embeddings_constraint),
            "seed": self.seed,
        })
        return config


class PositionalEmbedding(Layer):
    """Adds learned position vectors to a sequence: ``y[b, t, :] = x[b, t, :] + embeddings[t, :]``.

    After keras_hub's ``PositionEmbedding`` (same arguments and weight), with one difference:
    keras_hub returns the position vectors alone, broadcast to the input's shape, and leaves the
    addition to the caller; this layer returns the sum ``x + positions``, so it stacks in a
    Sequential model right after an :class:`Embedding`.

    Input ``(batch, ..., time, dim)`` with ``time <= sequence_length`` (the first ``time`` rows
    are used; the time axis is -2), output the same shape. Weight: ``embeddings
    (sequence_length, dim)``, initialised by ``initializer`` (keras_hub: ``"glorot_uniform"``).
    Backward: ``dx = dy``, ``d embeddings[:time] += dy`` summed over every leading axis.
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, seed=None, **kwargs):
        owner = f"PositionalEmbedding(name={kwargs.get('name')!r})" if kwargs.get("name") else "PositionalEmbedding"
        self.sequence_length = check_positive_int(sequence_length, "sequence_length", owner)
        super().__init__(**kwargs)
        self.initializer = get_initializer(initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = _constraints.get(embeddings_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(min_ndim=3)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"{self.describe()}: the last axis of the input must be known. Received input_shape={input_shape}")
        self.add_weight("embeddings", (self.sequence_length, dim), self.initializer, rng=self._rng,
                        regularizer=self.embeddings_regularizer, constraint=self.embeddings_constraint)
        self.input_spec = InputSpec(min_ndim=3, axes={-1: dim})

    def _prepare_input(self, x):
        x = super()._prepare_input(x)
        if x.shape[-2] > self.sequence_length:
            raise ValueError(
                f"{self.describe()}: expected at most sequence_length={self.sequence_length} steps on axis -2, "
                f"but received input with shape {x.shape}"
            )
        return x

    def forward(self, x, training=False):
        y = x + self._params["embeddings"][: x.shape[-2]]
        self._save_for_backward(training, x.shape[-2])
        return y

    def backward(self, dy):
        (steps,) = self._saved()
        dy = np.asarray(dy)
        self._grads["embeddings"][:steps] += dy.reshape(-1, steps, dy.shape[-1]).sum(axis=0)
        return dy

    def get_config(self):
        config = super().get_config()
        config.update({
            "sequence_length": self.sequence_length,
            "initializer": serialize_initializer(self.initializer),
            "embeddings_regularizer": _regularizers.serialize(self.embeddings_regularizer),
            "embeddings_constraint": _constraints.serialize(self.embeddings_constraint),
            "seed": self.seed,
        })
        return config
