"""Core layers: Input, Identity and Dense."""

from __future__ import annotations

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from ..utils import check_positive_int, make_rng
from .base import InputSpec, Layer

__all__ = ["Input", "InputLayer", "Identity", "Dense"]


class Input(Layer):
    """Declares the input shape of a model: ``Input(shape=(784,))``; passes data through unchanged.

    ``shape`` excludes the batch dimension; ``batch_size`` may fix it. Calling the layer checks
    that the data has that shape (``None`` entries accept any size).
    """

    def __init__(self, shape=None, batch_size=None, name=None, dtype=None, **kwargs):
        if shape is None:
            shape = kwargs.pop("input_shape", None)
        if shape is None:
            raise ValueError("Input: expected shape, a tuple of ints without the batch size. Received: shape=None")
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(None if d is None else int(d) for d in shape)
        except TypeError as exc:
            raise TypeError(f"Input: expected shape to be a tuple of ints. Received: shape={shape!r}") from exc
        if any(d is not None and d <= 0 for d in shape):
            raise ValueError(f"Input: expected every dimension of shape to be positive or None. Received: shape={shape}")
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size", "Input")
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.shape = (batch_size,) + shape
        self.batch_size = batch_size
        self.input_spec = InputSpec(ndim=len(self.shape), axes={i: d for i, d in enumerate(self.shape) if d is not None})

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"shape": list(self.shape[1:]), "batch_size": self.batch_size})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


InputLayer = Input


class Identity(Layer):
    """``y = x``, any shape."""

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy


class Dense(Layer):
    """Fully connected layer: ``y = activation(x @ kernel + bias)``.

    Input ``(batch, ..., in)``, output ``(batch, ..., units)``. Weights (Keras layout and order):
    ``kernel (in, units)``, ``bias (units,)``. The GEMM runs over all leading axes at once.
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, seed=None, **kwargs):
        owner = f"Dense(name={kwargs.get('name')!r})" if kwargs.get("name") else "Dense"
        self.units = check_positive_int(units, "units", owner)
        super().__init__(**kwargs)
        self.activation = _activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{self.describe()}: the last axis of the input must be known. Received input_shape={input_shape}")
        self.add_weight("kernel", (in_dim, self.units), self.kernel_initializer, rng=self._rng,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(min_ndim=2, axes={-1: in_dim})

    def forward(self, x, training=False):
        z = x @ self._params["kernel"]
        if self.use_bias:
            z += self._params["bias"]
        y = self.activation.forward(z)
        self._save_for_backward(training, x, z, y)
        return y

    def backward(self, dy):
        return self._backward_into(dy, None)

    def _backward_into(self, dy, out):
        """:meth:`backward` with the input gradient written into ``out`` (an array of the input's shape the
        caller owns, e.g. a buffer of a compiled training plan) when given."""
        x, z, y = self._saved()
        dz = self.activation.backward(z, y, dy)
        kernel = self._params["kernel"]
        dz2 = dz.reshape(-1, dz.shape[-1])
        self._grads["kernel"] += x.reshape(-1, x.shape[-1]).T @ dz2
        if self.use_bias:
            self._grads["bias"] += dz2.sum(axis=0)
        if not self._input_grad_needed:  # the model's input: nobody reads this gradient (see Layer)
            return None
        if out is None:
            return dz @ kernel.T
        if not out.flags.c_contiguous:
            out[...] = (dz2 @ kernel.T).reshape(out.shape)
            return out
        np.matmul(dz2, kernel.T, out=out.reshape(dz2.shape[0], -1))
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": _activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": serialize_initializer(self.kernel_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": _constraints.serialize(self.kernel_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        })
        return config
