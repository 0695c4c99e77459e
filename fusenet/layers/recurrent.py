"""Recurrent layers: SimpleRNN, LSTM, GRU and the Bidirectional wrapper (Keras 3 layouts).

Input ``(batch, time, features)``. Output ``(batch, time, units)`` with ``return_sequences``,
else the last state ``(batch, units)``; with ``return_state`` the layer returns a list
``[output, h]`` (SimpleRNN, GRU) or ``[output, h, c]`` (LSTM), and ``backward`` takes a list of
gradients of the same structure (``None`` for unused entries). ``go_backwards`` processes the
sequence in reverse and returns the output sequence in processing order (as Keras). The initial
state is zero. ``dropout``/``recurrent_dropout`` and masking are not implemented.

How the computation is organised. SimpleRNN and GRU:

* the input projection of all time steps is ONE GEMM, ``x.reshape(-1, in) @ kernel`` on the
  time-major copy of the input (the input bias rides in it as an extra kernel row against a column
  of ones, so that no separate pass adds it);
* the loop over time steps is the only Python loop; inside it run only the recurrent GEMM
  ``h_{t-1} @ recurrent_kernel`` and element-wise work written with ``out=`` into preallocated
  buffers (activations, gates and states of every step are kept for backward in training);
* backward-through-time runs the loop in reverse and produces the gradient of every step's
  pre-activations; after the loop the kernel gradient (``x^T @ d_pre``, with the input-bias
  gradient as its extra row), the recurrent-kernel
  gradient (``h_prev^T @ d_pre``) and the input gradient (``d_pre @ kernel^T``) are each ONE GEMM
  over all time steps.

LSTM (the reference benchmark model) runs its loop **transposed**: every per-step array is
``(rows, batch)`` and C-contiguous, with the gate rows in the order o, i, f, c, so that each of the
~8 (forward) and ~13 (backward) element-wise calls per step runs over one contiguous block (NumPy
is about twice as slow on column blocks of a ``(batch, 4*units)`` row). Per step there is ONE GEMM
forward, ``g_t^T = [R^T | K^T | b^T] @ [h_{t-1}^T; x_t^T; 1]`` (the input projection, bias
included, rides in the recurrent GEMM), and in backward ``dh_{t-1}^T = R @ dg_t^T`` plus one
accumulating GEMM ``dW^T += dg_t^T @ [h_{t-1}^T; x_t^T; 1]^T`` that gathers the kernel,
recurrent-kernel and bias gradients while ``dg_t`` is in cache. The two halves of the batch are
independent sequences, so each runs its whole loop (forward, and backward with its own partial
``dW``, added in a fixed order) on its own thread through :func:`fusenet._parallel.split_run` (BLAS at one
thread meanwhile): per step GEMMs are too small to keep two BLAS threads busy, and the element-wise
work would otherwise stay on one core (see :class:`LSTM`).

Every layer skips its input gradient (``backward`` returns ``None``) when the model engine sets
``Layer._input_grad_needed`` to False (the layer reads the model input in a training step).

Weights and the Keras-to-PyTorch mapping (``torch.nn.RNN/LSTM/GRU``, one layer, ``batch_first``):

* SimpleRNN ``[kernel (in, u), recurrent_kernel (u, u), bias (u,)]``:
  ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.
  torch: ``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``, ``bias_ih_l0 = bias``,
  ``bias_hh_l0 = 0``.
* LSTM ``[kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,)]``, column blocks in the Keras gate
  order **i, f, c, o** (input, forget, cell candidate, output)::

      z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias
      i = rec_act(z_i); f = rec_act(z_f); g = act(z_c); o = rec_act(z_o)
      c_t = f * c_{t-1} + i * g;  h_t = o * act(c_t)

  torch's gate order i, f, g, o is the same order (Keras "c" is torch "g"), so
  ``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``, ``bias_ih_l0 = bias``,
  ``bias_hh_l0 = 0`` (torch's two biases add up; Keras has one). ``unit_forget_bias=True`` sets the
  forget block of the initial bias to 1.
* GRU ``[kernel (in, 3u), recurrent_kernel (u, 3u), bias]``, column blocks in the Keras order
  **z, r, h** (update, reset, candidate). ``reset_after=True`` (default, bias ``(2, 3u)``: row 0 the
  input bias, row 1 the recurrent bias)::

      xz, xr, xh = x_t @ kernel + bias[0];   hz, hr, hh = h_{t-1} @ recurrent_kernel + bias[1]
      z = rec_act(xz + hz); r = rec_act(xr + hr); n = act(xh + r * hh)
      h_t = z * h_{t-1} + (1 - z) * n

  torch orders the blocks **r, z, n**: ``weight_ih_l0 = kernel.T`` with the row blocks permuted
  ``[r, z, h]`` (i.e. ``kernel[:, [u:2u, 0:u, 2u:3u]].T``), the same for ``weight_hh_l0`` from
  ``recurrent_kernel``, ``bias_ih_l0 = bias[0]`` and ``bias_hh_l0 = bias[1]`` permuted likewise.
  ``reset_after=False`` (bias ``(3u,)``, input bias only) applies the reset gate before the
  recurrent GEMM: ``n = act(xh + (r * h_{t-1}) @ recurrent_kernel_h)``; torch has no such cell.
"""

from __future__ import annotations

import numpy as np

from .. import constraints as _constraints
from .. import regularizers as _regularizers
from ..initializers import get as get_initializer
from ..initializers import serialize as serialize_initializer
from .._blas import GEMM_DTYPES, gemm, ones_sum
from ..utils import check_in, check_positive_int, make_rng
from .._parallel import split_run
from ._rnn_activation import _LoopActivation
from .base import InputSpec, Layer, deserialize, serialize

__all__ = ["SimpleRNN", "LSTM", "GRU", "Bidirectional"]


#: the two batch halves of an LSTM run on two threads from this many ``batch * units`` values per
#: state on (below, the loop is bound by Python's per-call overhead, which holds the GIL, and the
#: halves run one after the other: the same split, the same numbers)
_SPLIT_MIN_VALUES = 2048
#: threads for the batch halves in training (forward and backward): measured on the reference LSTM
#: (batch 64, 100 steps, 256 units) on a quiet 2-core machine, two halves side by side took 77 ms per
#: train step against 92 ms one after the other on NumPy's 2-thread BLAS (median of 10 alternating
#: runs). Inference keeps the default of :data:`fusenet._parallel.SPLIT_WORKERS` (one thread): there
#: the split was no faster in the median (39.5 against 32.5 ms).
_TRAIN_WORKERS = 2


def _gemm_fallback(a, b, c, beta=1.0, trans_b=False):
    """``c = a @ op(b) + beta * c`` for dtypes :func:`fusenet._blas.gemm` does not take (float16)."""
    c *= beta
    c += a @ (b.T if trans_b else b)
    return c


def _owner(cls_name, kwargs):
    name = kwargs.get("name")
    return f"{cls_name}(name={name!r})" if name else cls_name


def _check_bool(value, name, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: expected {name} to be True or False. Received: {name}={value!r}")
    return bool(value)


class _RNNBase(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU: arguments, weights, the input GEMM,
    output assembly and the GEMMs after backward-through-time. Subclasses implement
    ``_loop(G, training)`` and ``_loop_backward(H, saved, dYt, dh, dc)``, or (LSTM, with its
    transposed loop) ``forward`` and ``backward`` themselves."""

    _gates = 1
    _state_count = 1  # 2 for LSTM (h and c)

    def _setup(self, units, owner, activation, recurrent_activation, use_bias, kernel_initializer,
               recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
               bias_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, return_sequences,
               return_state, go_backwards, seed):
        self.activation = _LoopActivation(activation, owner, "activation")
        self.recurrent_activation = (None if recurrent_activation is None
                                     else _LoopActivation(recurrent_activation, owner, "recurrent_activation"))
        self.use_bias = _check_bool(use_bias, "use_bias", owner)
        self.kernel_initializer = get_initializer(kernel_initializer)
        self.recurrent_initializer = get_initializer(recurrent_initializer)
        self.bias_initializer = get_initializer(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = _regularizers.get(recurrent_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.recurrent_constraint = _constraints.get(recurrent_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.return_sequences = _check_bool(return_sequences, "return_sequences", owner)
        self.return_state = _check_bool(return_state, "return_state", owner)
        self.go_backwards = _check_bool(go_backwards, "go_backwards", owner)
        self.seed = seed
        self._rng = make_rng(seed)
        self.input_spec = InputSpec(ndim=3)

    # ------------------------------------------------------------ weights
    def _bias_shape(self):
        return (self._gates * self.units,)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"{self.describe()}: the last axis of the input (features) must be known. "
                             f"Received: input_shape={tuple(input_shape)}")
        k = self._gates * self.units
        self.add_weight("kernel", (in_dim, k), self.kernel_initializer, rng=self._rng,
                        regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.add_weight("recurrent_kernel", (self.units, k), self.recurrent_initializer, rng=self._rng,
                        regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint)
        if self.use_bias:
            self.add_weight("bias", self._bias_shape(), self.bias_initializer, rng=self._rng,
                            regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.input_spec = InputSpec(ndim=3, axes={-1: in_dim})
        super().build(input_shape)

    def _input_bias(self):
        """The part of the bias added to the input projection, and its gradient (views)."""
        return self._params["bias"], self._grads["bias"]

    def _input_weights(self):
        """``(kernel, input bias or None)`` of the input GEMM (a cell may rescale columns)."""
        return self._params["kernel"], self._input_bias()[0] if self.use_bias else None

    # ------------------------------------------------------------ forward
    def forward(self, x, training=False):
        batch, steps, in_dim = x.shape
        if steps == 0:
            raise ValueError(f"{self.describe()}: expected at least one time step. Received input with shape {x.shape}")
        xs = (x[:, ::-1] if self.go_backwards else x).transpose(1, 0, 2)  # (time, batch, in)
        kernel, bias = self._input_weights()
        if bias is None:
            xt = np.ascontiguousarray(xs)
        else:  # the bias rides in the GEMM as a row of the kernel against a column of ones
            xt = np.empty((steps, batch, in_dim + 1), dtype=x.dtype)
            xt[:, :, :in_dim] = xs
            xt[:, :, in_dim] = 1.0
            kernel = np.concatenate([kernel, bias[None, :]], axis=0)
        G = xt.reshape(steps * batch, -1) @ kernel  # the one input GEMM, all time steps
        H, saved = self._loop(G.reshape(steps, batch, -1), training)
        if self.return_sequences:
            out = np.ascontiguousarray(H[1:].transpose(1, 0, 2))
        else:
            out = H[steps].copy()
        self._save_for_backward(training, xt, H, saved)
        if not self.return_state:
            return out
        return [out, H[steps].copy()]

    # ------------------------------------------------------------ backward
    def _split_gradients(self, dy):
        n = 1 + self._state_count
        if self.return_state:
            if not isinstance(dy, (list, tuple)) or len(dy) != n:
                raise ValueError(f"{self.describe()}: with return_state=True, backward expects a list of {n} "
                                 f"gradients (output and states, None for unused ones). Received: {type(dy).__name__}"
                                 f" of length {len(dy) if isinstance(dy, (list, tuple)) else 1}")
            return dy[0], list(dy[1:])
        return dy, [None] * self._state_count

    def backward(self, dy):
        xt, H, saved = self._saved()
        steps, batch = xt.shape[:2]
        dout, dstates = self._split_gradients(dy)
        dtype = xt.dtype
        dYt = None
        dh = np.zeros((batch, self.units), dtype=dtype)
        if dout is not None:
            dout = np.asarray(dout, dtype=dtype)
            if self.return_sequences:
                dYt = np.ascontiguousarray(dout.transpose(1, 0, 2))
            else:
                dh += dout
        if dstates[0] is not None:
            dh += dstates[0]
        dG = self._loop_backward(H, saved, dYt, dh, None)
        dG2 = dG.reshape(steps * batch, -1)
        kernel = self._params["kernel"]
        in_dim = kernel.shape[0]
        grad = xt.reshape(steps * batch, -1).T @ dG2  # kernel (and input-bias) gradient: one GEMM
        self._grads["kernel"] += grad[:in_dim]
        if self.use_bias:
            grad_bias = self._input_bias()[1]
            grad_bias += grad[in_dim]
        if not self._input_grad_needed:  # the engine says nobody reads the input gradient
            return None
        dx = (dG2 @ kernel.T).reshape(steps, batch, in_dim).transpose(1, 0, 2)
        if self.go_backwards:
            dx = dx[:, ::-1]
        return np.ascontiguousarray(dx)

    def _recurrent_grad(self, H, dG, out):
        """``out += sum_t h_{t-1}^T @ dG_t`` as one GEMM over all steps."""
        steps, batch, units = H.shape[0] - 1, H.shape[1], H.shape[2]
        out += H[:-1].reshape(steps * batch, units).T @ dG.reshape(steps * batch, -1)

    # ------------------------------------------------------------ shapes and config
    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units)] * self._state_count
        return out

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "activation": self.activation.serialize(),
            "use_bias": self.use_bias,
            "kernel_initializer": serialize_initializer(self.kernel_initializer),
            "recurrent_initializer": serialize_initializer(self.recurrent_initializer),
            "bias_initializer": serialize_initializer(self.bias_initializer),
            "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": _regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": _constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": _constraints.serialize(self.recurrent_constraint),
            "bias_constraint": _constraints.serialize(self.bias_constraint),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "seed": self.seed,
        })
        if self.recurrent_activation is not None:
            config["recurrent_activation"] = self.recurrent_activation.serialize()
        return config


# ---------------------------------------------------------------- SimpleRNN
class SimpleRNN(_RNNBase):
    """Fully connected RNN: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Input ``(batch, time, in)``; output ``(batch, time, units)`` or ``(batch, units)``.
    Weights: ``kernel (in, units)``, ``recurrent_kernel (units, units)``, ``bias (units,)``.
    Backward: ``dz_t = (dh_t) * activation'(z_t)``, ``dh_{t-1} = dz_t @ recurrent_kernel^T``.
    """

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, return_sequences=False, return_state=False,
                 go_backwards=False, seed=None, **kwargs):
        owner = _owner("SimpleRNN", kwargs)
        self.units = check_positive_int(units, "units", owner)
        super().__init__(**kwargs)
        self._setup(units, owner, activation, None, use_bias, kernel_initializer, recurrent_initializer,
                    bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                    kernel_constraint, recurrent_constraint, bias_constraint, return_sequences, return_state,
                    go_backwards, seed)

    def _loop(self, G, training):
        steps, batch, units = G.shape
        R = np.ascontiguousarray(self._params["recurrent_kernel"])  # orthogonal init is F-ordered
        act = self.activation
        H = np.empty((steps + 1, batch, units), dtype=G.dtype)
        H[0] = 0.0
        Z = np.empty_like(G) if act.needs_input and training else None
        for t in range(steps):
            h = H[t + 1]
            np.matmul(H[t], R, out=h)
            h += G[t]
            if Z is not None:
                np.copyto(Z[t], h)
            act.apply(h, out=h)
        return H, (Z,)

    def _loop_backward(self, H, saved, dYt, dh, dc):
        (Z,) = saved
        steps = H.shape[0] - 1
        RT = np.ascontiguousarray(self._params["recurrent_kernel"].T)
        act = self.activation
        dZ = np.empty_like(H[1:])
        for t in range(steps - 1, -1, -1):
            if dYt is not None:
                dh += dYt[t]
            d = dZ[t]
            act.derivative(Z[t] if Z is not None else None, H[t + 1], out=d)
            d *= dh
            np.matmul(d, RT, out=dh)
        self._recurrent_grad(H, dZ, self._grads["recurrent_kernel"])
        return dZ


# ---------------------------------------------------------------- LSTM
class LSTM(_RNNBase):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), Keras 3 layout.

    Gates in the Keras order i, f, c, o (see the module docstring for the equations and the
    mapping to ``torch.nn.LSTM``). Input ``(batch, time, in)``; output ``(batch, time, units)`` or
    ``(batch, units)``; with ``return_state``: ``[output, h, c]``.
    Weights: ``kernel (in, 4*units)``, ``recurrent_kernel (units, 4*units)``, ``bias (4*units,)``.

    Backward through time (``dh``, ``dc``: gradients reaching ``h_t``, ``c_t``)::

        dc += dh * o * act'(c_t);  do = dh * act(c_t) * rec_act'(z_o)
        di = dc * g * rec_act'(z_i); df = dc * c_{t-1} * rec_act'(z_f); dg = dc * i * act'(z_c)
        dc_{t-1} = dc * f;  dh_{t-1} = [di, df, dg, do] @ recurrent_kernel^T
    """

    _gates = 4
    _state_count = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None, return_sequences=False,
                 return_state=False, go_backwards=False, seed=None, **kwargs):
        owner = _owner("LSTM", kwargs)
        self.units = check_positive_int(units, "units", owner)
        super().__init__(**kwargs)
        self._setup(units, owner, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                    bias_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, return_sequences,
                    return_state, go_backwards, seed)
        self.unit_forget_bias = _check_bool(unit_forget_bias, "unit_forget_bias", owner)

    def build(self, input_shape):
        super().build(input_shape)
        if self.use_bias and self.unit_forget_bias:
            self._params["bias"][self.units:2 * self.units] = 1.0

    def _fast_gates(self):
        """True for the default sigmoid/tanh cell: then sigmoid(z) = 0.5 + 0.5 * tanh(z / 2) lets ONE
        tanh over the whole contiguous ``(batch, 4*units)`` gate row serve all four gates, with the
        o, i, f columns of the weights pre-scaled by 1/2."""
        return self.recurrent_activation.fast == "sigmoid" and self.activation.fast == "tanh"

    def _internal(self, w, scaled=False):
        """``w`` (columns in the Keras gate order i, f, c, o) with its columns in the loop's order
        **o, i, f, c**: the three sigmoid gates contiguous, and the three gates that ``dc`` scales in
        backward contiguous too. ``scaled``: the o, i, f columns halved (see ``_fast_gates``)."""
        u = self.units
        out = np.empty(w.shape, dtype=w.dtype)
        if scaled:
            np.multiply(w[..., 3 * u:], 0.5, out=out[..., :u])
            np.multiply(w[..., :2 * u], 0.5, out=out[..., u:3 * u])
            out[..., 3 * u:] = w[..., 2 * u:3 * u]
        else:
            out[..., :u] = w[..., 3 * u:]
            out[..., u:] = w[..., :3 * u]
        return out

    def _add_internal(self, target, grad):
        """``target += grad`` where ``grad`` has its columns in the loop's order (``_internal``)."""
        u = self.units
        target[..., 3 * u:] += grad[..., :u]
        target[..., :3 * u] += grad[..., u:]

    def forward(self, x, training=False):
        """The time loop runs transposed: every per-step array is ``(rows, batch)`` and C-contiguous
        (``g_t^T``: ``(4*units, batch)`` with the row blocks o, i, f, c), so each element-wise call
        runs over one contiguous block. ``XH`` ``(time+1, units+in+1, batch)`` stacks, per step,
        ``h_{t-1}^T`` over ``x_t^T`` and a row of ones, and ``W = [R^T | K^T | b^T]``
        ``(4*units, units+in+1)``, so ``g_t^T = W @ XH[t]`` is ONE GEMM per step (recurrent and
        input projection together, bias included) and the loop writes ``h_t^T`` straight into
        ``XH[t+1]``. The two halves of the batch are independent sequences: each runs its whole
        loop on its own thread in training (``fusenet._parallel.split_run``: the calling thread and one
        worker, BLAS at one thread meanwhile; the same split, hence the same numbers, on one core)."""
        batch, steps, in_dim = x.shape
        if steps == 0:
            raise ValueError(f"{self.describe()}: expected at least one time step. Received input with shape {x.shape}")
        u = self.units
        fast = self._fast_gates()
        rows = u + in_dim + (1 if self.use_bias else 0)
        W = np.empty((4 * u, rows), dtype=x.dtype)
        W[:, :u] = self._internal(self._params["recurrent_kernel"], fast).T
        W[:, u:u + in_dim] = self._internal(self._params["kernel"], fast).T
        if self.use_bias:
            W[:, u + in_dim] = self._internal(self._params["bias"], fast)
        xs = x[:, ::-1] if self.go_backwards else x
        parts = split_run(lambda lo, hi: self._forward_part(xs[lo:hi], W, training), batch,
                          parallel=batch * self.units >= _SPLIT_MIN_VALUES,
                          workers=_TRAIN_WORKERS if training else None)
        if self.return_sequences:
            out = np.concatenate([XH[1:, :u].transpose(2, 0, 1) for XH, *_ in parts], axis=0)
        else:
            out = np.concatenate([XH[steps, :u].T for XH, *_ in parts], axis=0)
        self._save_for_backward(training, parts, in_dim)
        if not self.return_state:
            return out
        return [out, np.concatenate([XH[steps, :u].T for XH, *_ in parts], axis=0),
                np.concatenate([C[-1].T for _, _, C, *_ in parts], axis=0)]

    def _forward_part(self, x, W, training):
        """The loop over one part of the batch, ``x`` ``(batch_part, time, in)`` in processing
        order. Returns ``(XH, G, C, TC, Z)`` (the last four only as long as training needs them)."""
        batch, steps, in_dim = x.shape
        u, s3 = self.units, 3 * self.units
        dtype = x.dtype
        act, rec = self.activation, self.recurrent_activation
        fast = self._fast_gates()
        XH = np.empty((steps + 1, W.shape[1], batch), dtype=dtype)
        XH[:steps, u:u + in_dim] = x.transpose(1, 2, 0)
        XH[steps, u:] = 0.0
        if self.use_bias:
            XH[:steps, u + in_dim] = 1.0
        XH[0, :u] = 0.0
        G = np.empty((steps if training else 1, 4 * u, batch), dtype=dtype)  # gates (after activation)
        C = np.zeros((steps + 1 if training else 1, u, batch), dtype=dtype)  # c_t^T
        TC = np.empty((steps if training else 1, u, batch), dtype=dtype)  # act(c_t)^T
        Z = np.empty_like(G) if (act.needs_input or rec.needs_input) and training else None
        tmpu = np.empty((u, batch), dtype=dtype)
        for t in range(steps):
            k = t if training else 0
            g = G[k]
            np.matmul(W, XH[t], out=g)
            if Z is not None:
                np.copyto(Z[t], g)
            if fast:  # tanh over all four gates; o, i, f: 0.5 + 0.5 * tanh(z / 2)
                np.tanh(g, out=g)
                sig = g[:s3]
                sig *= 0.5
                sig += 0.5
            else:
                rec.apply(g[:s3], out=g[:s3])
                act.apply(g[s3:], out=g[s3:])
            c = C[k + 1 if training else 0]
            np.multiply(g[2 * u:s3], C[k], out=c)  # f * c_{t-1}
            np.multiply(g[u:2 * u], g[s3:], out=tmpu)  # i * candidate
            c += tmpu
            act.apply(c, out=TC[k])
            np.multiply(g[:u], TC[k], out=XH[t + 1, :u])  # h_t = o * act(c_t)
        return XH, G, C, TC, Z

    def backward(self, dy):
        """Backward through time, transposed like the forward and on the same two halves of the
        batch: per step the gate gradients ``dg_t^T`` ``(4*units, batch)`` (rows o, i, f, c), then
        ``dW^T += dg_t^T @ XH[t]^T`` (the recurrent-kernel, kernel and bias gradients together,
        accumulated in place by one GEMM while ``dg_t`` is in cache), ``dh_{t-1}^T = R @ dg_t^T``
        and, when the input gradient is wanted, ``dx_t^T = K @ dg_t^T``. The two halves' ``dW``
        are added in a fixed order."""
        parts, in_dim = self._saved()
        u = self.units
        dtype = parts[0][0].dtype
        batch = sum(part[0].shape[2] for part in parts)
        dout, (dh_last, dc_last) = self._split_gradients(dy)
        dh = np.zeros((batch, u), dtype=dtype)
        dc = np.zeros((batch, u), dtype=dtype)
        dY = None
        if dout is not None:
            dout = np.asarray(dout, dtype=dtype)
            if self.return_sequences:
                dY = dout
            else:
                dh += dout
        if dh_last is not None:
            dh += dh_last
        if dc_last is not None:
            dc += dc_last
        want_dx = self._input_grad_needed
        R = self._internal(self._params["recurrent_kernel"])  # (u, 4u), unscaled
        K = self._internal(self._params["kernel"]) if want_dx else None  # (in, 4u)
        offsets = np.cumsum([0] + [part[0].shape[2] for part in parts])

        def run(lo, hi):  # lo, hi index the parts (one part per call)
            (part,) = parts[lo:hi]
            a, b = offsets[lo], offsets[hi]
            return self._backward_part(part, dh[a:b], dc[a:b], None if dY is None else dY[a:b], R, K)

        results = split_run(run, len(parts), parallel=batch * self.units >= _SPLIT_MIN_VALUES, workers=_TRAIN_WORKERS)
        dWT = results[0][0]
        for other, _ in results[1:]:
            dWT += other
        self._add_internal(self._grads["recurrent_kernel"], dWT[:, :u].T)
        self._add_internal(self._grads["kernel"], dWT[:, u:u + in_dim].T)
        if self.use_bias:
            self._add_internal(self._grads["bias"], dWT[:, u + in_dim])
        if not want_dx:
            return None
        dx = np.concatenate([dXT.transpose(2, 0, 1) for _, dXT in results], axis=0)
        if self.go_backwards:
            dx = dx[:, ::-1]
        return np.ascontiguousarray(dx)

    def _backward_part(self, saved, dh_last, dc_last, dY, R, K):
        """Backward through one part of the batch: ``dh_last``/``dc_last`` ``(batch_part, units)``,
        ``dY`` ``(batch_part, time, units)`` or ``None``. Returns ``(dW^T, dx^T or None)``."""
        XH, G, C, TC, Z = saved
        steps, batch = G.shape[0], XH.shape[2]
        u, s3 = self.units, 3 * self.units
        dtype = XH.dtype
        act, rec = self.activation, self.recurrent_activation
        dh = np.ascontiguousarray(dh_last.T)
        dc = np.ascontiguousarray(dc_last.T)
        dYT = None if dY is None else np.ascontiguousarray(dY.transpose(1, 2, 0))  # (time, units, batch)
        dXT = np.empty((steps, K.shape[0], batch), dtype=dtype) if K is not None else None
        dWT = np.zeros((4 * u, XH.shape[1]), dtype=dtype)
        accumulate = gemm if dtype in GEMM_DTYPES else _gemm_fallback
        d = np.empty((4 * u, batch), dtype=dtype)
        tmpu = np.empty((u, batch), dtype=dtype)
        for t in range(steps - 1, -1, -1):
            if dYT is not None:
                dh += dYT[t]
            g = G[t]
            z = Z[t] if Z is not None else g
            o, i, f, cand = g[:u], g[u:2 * u], g[2 * u:s3], g[s3:]
            # dc += dh * o * act'(c_t)
            act.derivative(C[t + 1], TC[t], out=tmpu)
            tmpu *= o
            tmpu *= dh
            dc += tmpu
            # gate derivatives times what each gate multiplies, then times dc (i, f, c) or dh (o)
            rec.derivative(z[:s3], g[:s3], out=d[:s3])
            act.derivative(z[s3:], cand, out=d[s3:])
            d[:u] *= TC[t]
            d[:u] *= dh
            d[u:2 * u] *= cand
            d[2 * u:s3] *= C[t]
            d[s3:] *= i
            dv = d[u:].reshape(3, u, batch)
            dv *= dc
            dc *= f
            accumulate(d, XH[t], dWT, beta=1.0, trans_b=True)
            np.matmul(R, d, out=dh)
            if dXT is not None:
                np.matmul(K, d, out=dXT[t])
        return dWT, dXT

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


# ---------------------------------------------------------------- GRU
class GRU(_RNNBase):
    """Gated recurrent unit (Cho et al., 2014), Keras 3 layout.

    Gates in the Keras order z, r, h (see the module docstring for the equations and the mapping
    to ``torch.nn.GRU``). ``reset_after=True`` (default, the cuDNN/PyTorch variant): bias
    ``(2, 3*units)`` (input bias, recurrent bias), reset applied after the recurrent GEMM;
    ``reset_after=False``: bias ``(3*units,)``, reset applied to ``h_{t-1}`` before it.
    Input ``(batch, time, in)``; output ``(batch, time, units)`` or ``(batch, units)``; with
    ``return_state``: ``[output, h]``. Weights: ``kernel (in, 3*units)``,
    ``recurrent_kernel (units, 3*units)``, ``bias``.

    Backward (``dh``: gradient reaching ``h_t``): ``dz = dh * (h_{t-1} - n) * rec_act'``,
    ``dn = dh * (1 - z) * act'``, ``dr = dn * hh * rec_act'`` (reset_after) or
    ``dr = (dn @ Rh^T) * h_{t-1} * rec_act'`` (reset before), and ``dh_{t-1}`` collects
    ``dh * z`` and the recurrent GEMM(s) transposed.
    """

    _gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, return_sequences=False, return_state=False,
                 go_backwards=False, reset_after=True, seed=None, **kwargs):
        owner = _owner("GRU", kwargs)
        self.units = check_positive_int(units, "units", owner)
        super().__init__(**kwargs)
        self._setup(units, owner, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                    bias_regularizer, kernel_constraint, recurrent_constraint, bias_constraint, return_sequences,
                    return_state, go_backwards, seed)
        self.reset_after = _check_bool(reset_after, "reset_after", owner)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        if self.reset_after:
            return self._params["bias"][0], self._grads["bias"][0]
        return self._params["bias"], self._grads["bias"]

    def _loop(self, G, training):
        steps, batch, _ = G.shape
        u = self.units
        R = np.ascontiguousarray(self._params["recurrent_kernel"])  # orthogonal init is F-ordered
        act, rec = self.activation, self.recurrent_activation
        dtype = G.dtype
        H = np.empty((steps + 1, batch, u), dtype=dtype)
        H[0] = 0.0
        Z = np.empty_like(G) if (act.needs_input or rec.needs_input) and training else None
        tmpu = np.empty((batch, u), dtype=dtype)
        if self.reset_after:
            REC = np.empty_like(G)  # h_{t-1} @ recurrent_kernel + bias[1], kept for backward
            rbias = self._params["bias"][1] if self.use_bias else None
        else:
            RH = np.empty((steps, batch, u), dtype=dtype)  # r * h_{t-1}, kept for backward
            Rzr = np.ascontiguousarray(R[:, :2 * u])
            Rh = np.ascontiguousarray(R[:, 2 * u:])
            tmp2 = np.empty((batch, 2 * u), dtype=dtype)
        for t in range(steps):
            g = G[t]
            gv = g.reshape(batch, 3, u)
            zv = Z[t].reshape(batch, 3, u) if Z is not None else None
            if self.reset_after:
                rv = REC[t].reshape(batch, 3, u)
                np.matmul(H[t], R, out=REC[t])
                if rbias is not None:
                    REC[t] += rbias
                gv[:, 0:2] += rv[:, 0:2]
            else:
                np.matmul(H[t], Rzr, out=tmp2)
                g[:, :2 * u] += tmp2
            if zv is not None:
                np.copyto(zv[:, 0:2], gv[:, 0:2])
            rec.apply(gv[:, 0:2], out=gv[:, 0:2])  # z, r
            if self.reset_after:
                np.multiply(gv[:, 1], rv[:, 2], out=tmpu)
            else:
                np.multiply(gv[:, 1], H[t], out=RH[t])
                np.matmul(RH[t], Rh, out=tmpu)
            gv[:, 2] += tmpu
            if zv is not None:
                np.copyto(zv[:, 2], gv[:, 2])
            n = act.apply(gv[:, 2], out=gv[:, 2])
            # h_t = z * h_{t-1} + (1 - z) * n = n + z * (h_{t-1} - n)
            np.subtract(H[t], n, out=tmpu)
            tmpu *= gv[:, 0]
            np.add(n, tmpu, out=H[t + 1])
        return H, (G, REC if self.reset_after else RH, Z)

    def _loop_backward(self, H, saved, dYt, dh, dc):
        G, kept, Z = saved
        steps, batch, _ = G.shape
        u = self.units
        act, rec = self.activation, self.recurrent_activation
        R = self._params["recurrent_kernel"]
        dtype = G.dtype
        dG = np.empty_like(G)
        tmpu = np.empty((batch, u), dtype=dtype)
        tmpz = np.empty((batch, u), dtype=dtype)
        if self.reset_after:
            REC = kept
            dREC = np.empty_like(G)
            RT = np.ascontiguousarray(R.T)
        else:
            RH = kept
            drh = np.empty((batch, u), dtype=dtype)
            RzrT = np.ascontiguousarray(R[:, :2 * u].T)
            RhT = np.ascontiguousarray(R[:, 2 * u:].T)
        for t in range(steps - 1, -1, -1):
            if dYt is not None:
                dh += dYt[t]
            gv = G[t].reshape(batch, 3, u)
            zv = Z[t].reshape(batch, 3, u) if Z is not None else gv
            dv = dG[t].reshape(batch, 3, u)
            z, r, n = gv[:, 0], gv[:, 1], gv[:, 2]
            rec.derivative(zv[:, 0:2], gv[:, 0:2], out=dv[:, 0:2])
            # dz = dh * (h_{t-1} - n) * rec_act'(z)
            np.subtract(H[t], n, out=tmpu)
            tmpu *= dh
            dv[:, 0] *= tmpu
            # dn (pre-activation) = dh * (1 - z) * act'(n)
            act.derivative(zv[:, 2], n, out=dv[:, 2])
            np.subtract(1.0, z, out=tmpu)
            tmpu *= dh
            dv[:, 2] *= tmpu
            np.multiply(dh, z, out=tmpz)  # the direct path h_{t-1} -> h_t
            if self.reset_after:
                rv = REC[t].reshape(batch, 3, u)
                drv = dREC[t].reshape(batch, 3, u)
                np.multiply(dv[:, 2], r, out=drv[:, 2])
                np.multiply(dv[:, 2], rv[:, 2], out=tmpu)
                dv[:, 1] *= tmpu
                np.copyto(drv[:, 0:2], dv[:, 0:2])
                np.matmul(dREC[t], RT, out=dh)
            else:
                np.matmul(dv[:, 2], RhT, out=drh)  # gradient of r * h_{t-1}
                np.multiply(drh, H[t], out=tmpu)
                dv[:, 1] *= tmpu
                drh *= r
                tmpz += drh
                np.matmul(dG[t][:, :2 * u], RzrT, out=dh)
            dh += tmpz
        gR = self._grads["recurrent_kernel"]
        if self.reset_after:
            self._recurrent_grad(H, dREC, gR)
            if self.use_bias:
                self._grads["bias"][1] += ones_sum(dREC.reshape(steps * batch, -1), 0)
        else:
            dG2 = dG.reshape(steps * batch, 3 * u)
            gR[:, :2 * u] += H[:-1].reshape(steps * batch, u).T @ dG2[:, :2 * u]
            gR[:, 2 * u:] += RH.reshape(steps * batch, u).T @ dG2[:, 2 * u:]
        return dG

    def get_config(self):
        config = super().get_config()
        config["reset_after"] = self.reset_after
        return config


# ---------------------------------------------------------------- Bidirectional
_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _removeprefix(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else name


class Bidirectional(Layer):
    """Run a recurrent layer forwards and a copy of it backwards over the sequence, and merge.

    ``layer`` is a SimpleRNN, LSTM or GRU (only its config is used: the forward layer is a fresh
    copy named ``forward_<name>``); the backward layer is ``backward_layer`` or a copy of
    ``layer`` with ``go_backwards`` flipped, named ``backward_<name>``. With ``return_sequences``
    the backward output is reversed in time before merging, so both align with the input.
    ``merge_mode``: ``"concat"`` (last axis, ``2*units``), ``"sum"``, ``"mul"``, ``"ave"``, or
    ``None`` (a list ``[forward_output, backward_output]``). With ``return_state`` the output list is
    followed by the forward states and then the backward states (as Keras).
    Weights: the forward layer's, then the backward layer's (params ``forward/...``, ``backward/...``).
    """

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        owner = _owner("Bidirectional", kwargs)
        if not isinstance(layer, _RNNBase):
            raise TypeError(f"{owner}: expected layer to be a SimpleRNN, LSTM or GRU layer. Received: layer={layer!r}")
        check_in(merge_mode, _MERGE_MODES, "merge_mode", owner)
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        config = layer.get_config()
        config["name"] = "forward_" + _removeprefix(layer.name, "forward_")
        forward_layer = type(layer).from_config(config)
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = not layer.go_backwards
            config["name"] = "backward_" + _removeprefix(layer.name, "forward_")
            backward_layer = type(layer).from_config(config)
        else:
            if not isinstance(backward_layer, _RNNBase):
                raise TypeError(f"{owner}: expected backward_layer to be a SimpleRNN, LSTM or GRU layer. "
                                f"Received: backward_layer={backward_layer!r}")
            if backward_layer.go_backwards == forward_layer.go_backwards:
                raise ValueError(f"{owner}: the forward and backward layers must have different go_backwards. "
                                 f"Received: go_backwards={forward_layer.go_backwards} for both")
            for attr in ("return_sequences", "return_state"):
                if getattr(backward_layer, attr) != getattr(forward_layer, attr):
                    raise ValueError(f"{owner}: the forward and backward layers must have the same {attr}. "
                                     f"Received: {getattr(forward_layer, attr)} and {getattr(backward_layer, attr)}")
        self.forward_layer = self.track_layer("forward", forward_layer)
        self.backward_layer = self.track_layer("backward", backward_layer)
        self.return_sequences = forward_layer.return_sequences
        self.return_state = forward_layer.return_state
        self.input_spec = InputSpec(ndim=3)

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            sub._build_for(input_shape, self.dtype)
        self.input_spec = InputSpec(ndim=3, axes={-1: input_shape[-1]})
        super().build(input_shape)

    def forward(self, x, training=False):
        yf = self.forward_layer.forward(x, training=training)
        yb = self.backward_layer.forward(x, training=training)
        sf = sb = []
        if self.return_state:
            yf, *sf = yf
            yb, *sb = yb
        if self.return_sequences:
            yb = yb[:, ::-1]
        mode = self.merge_mode
        if mode == "concat":
            out = np.concatenate([yf, yb], axis=-1)
        elif mode == "sum":
            out = yf + yb
        elif mode == "ave":
            out = (yf + yb) * 0.5
        elif mode == "mul":
            out = yf * yb
        else:
            out = [yf, np.ascontiguousarray(yb)]
        self._save_for_backward(training, yf, yb if mode == "mul" else None)
        outputs = out if isinstance(out, list) else [out]
        return outputs + sf + sb if self.return_state else out

    def backward(self, dy):
        yf, yb = self._saved()
        n_out = 2 if self.merge_mode is None else 1
        n_states = self.forward_layer._state_count
        if self.return_state or self.merge_mode is None:
            expected = n_out + (2 * n_states if self.return_state else 0)
            if not isinstance(dy, (list, tuple)) or len(dy) != expected:
                raise ValueError(f"{self.describe()}: backward expects a list of {expected} gradients (outputs, then "
                                 f"forward and backward states; None for unused ones). Received: {type(dy).__name__}"
                                 f" of length {len(dy) if isinstance(dy, (list, tuple)) else 1}")
            douts, dstates = list(dy[:n_out]), list(dy[n_out:])
        else:
            douts, dstates = [dy], []
        mode = self.merge_mode
        d = douts[0]
        if mode is None:
            dyf, dyb = douts
        elif d is None:
            dyf = dyb = None
        elif mode == "concat":
            u = yf.shape[-1]
            dyf, dyb = d[..., :u], d[..., u:]
        elif mode == "sum":
            dyf = dyb = d
        elif mode == "ave":
            dyf = dyb = np.multiply(d, 0.5)
        else:
            dyf, dyb = d * yb, d * yf
        if self.return_sequences and dyb is not None:
            dyb = dyb[:, ::-1]
        grads = []
        skip = not self._input_grad_needed  # pass the engine's hint on to both directions
        for sub, dout, dst, like in ((self.forward_layer, dyf, dstates[:n_states], yf),
                                     (self.backward_layer, dyb, dstates[n_states:], yb)):
            before = sub._input_grad_needed
            sub._input_grad_needed = before and not skip
            try:
                if sub.return_state:
                    grads.append(sub.backward([dout, *dst]))
                else:
                    grads.append(sub.backward(np.zeros_like(like) if dout is None else dout))
            finally:
                sub._input_grad_needed = before
        return None if skip else grads[0] + grads[1]

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        out, states = (shape[0], shape[1:]) if self.return_state else (shape, [])
        if self.merge_mode == "concat":
            outs = [tuple(out[:-1]) + (out[-1] * 2,)]
        elif self.merge_mode is None:
            outs = [tuple(out), tuple(out)]
        else:
            outs = [tuple(out)]
        if self.return_state:
            return outs + list(states) * 2
        return outs if self.merge_mode is None else outs[0]

    def get_config(self):
        config = super().get_config()
        config.update({
            "layer": serialize(self.forward_layer),
            "merge_mode": self.merge_mode,
            "backward_layer": serialize(self.backward_layer),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = deserialize(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize(config["backward_layer"])
        return super().from_config(config)
