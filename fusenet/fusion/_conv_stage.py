"""Private machinery of the fused convolution family: one *stage* is a weighted layer seen as a
convolution, then an optional BatchNormalization, then an optional element-wise activation.

Every fused conv layer is a chain of stages (plus a pool, a shortcut or an input fold):

- **Inference** runs the convolution on the *folded* kernel and bias (BatchNorm folded once by
  :func:`~fusenet.fusion.folding.fold_batchnorm`), with the activation as the conv's epilogue: applied
  in place on each output block while it is in cache. Stride-1 convolutions with enough channels
  run as one accumulating GEMM per kernel tap (:mod:`._conv_taps`, no im2col), the others through
  :func:`~fusenet.layers._conv_ops.conv_forward` (im2col + GEMM per cache-sized chunk).
- **Training** keeps the original parameters and reproduces the unfused run bit for bit. The
  convolution is the unfused conv's own :func:`~fusenet.layers._conv_ops.conv_forward` (per-tap GEMMs
  for stride-1 convs with 16+ channels, else im2col GEMMs). The BatchNormalization statistics use the
  layer's own blocked reductions (``bn._channels``, a widened ``(rows, channels * r)`` view):
  ``mean = sum(z) / m``, then one pass ``xc = z - mean`` (written over ``z``) with ``sum(xc^2)``,
  ``var = sum(xc^2) / m`` (biased), the moving statistics updated exactly as the layer does
  (``moving = momentum * moving + (1 - momentum) * stat``), and one blocked pass computes
  ``y = act(xc * k + beta)`` with ``inv = 1 / sqrt(var + epsilon)``, ``k = gamma * inv``. The unfused
  run allocates three arrays here (``xc``, ``y``, ``act(y)``) in five passes, the fused one one.

  The backward is one gradient buffer, then the conv backward:

  - one blocked pass: ``g = dy * (y > 0)`` (ReLU; other activations first, on their own), with
    ``dbeta = sum(g)`` and ``s = sum(g * xc)`` summed block by block (``dgamma = s * inv``), the
    layer's own :meth:`_Channels.grad_sums`;
  - one blocked pass, in place: ``dz = g * k + xc * a + b`` with ``a = -k * inv^2 * s / m`` and
    ``b = -k * dbeta / m`` (BatchNormalization's ``dx = k * (g - dbeta / m - xhat * dgamma / m)``);
  - the conv backward on ``dz``: :func:`~fusenet.layers._conv_ops.conv_backward`, as the unfused conv
    (the kernel gradient as im2col GEMMs, the input gradient of stride-1 convs with 16+ channels as
    per-tap GEMMs); skipped for the input when the caller passes ``need_dx=False``.

  The blocked passes can run their two halves on two threads (:mod:`fusenet._parallel`, opt-in).
  A frozen BatchNormalization (``trainable=False``) runs on its moving statistics in training too,
  as the unfused layer does (``a = b = 0``, statistics unchanged).

Element-wise passes treat arrays as ``(rows, channels)`` matrices and run in blocks of rows of about
:data:`BLOCK_BYTES`, so that the chain of operations on one block stays in the L2 cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers import _conv_ops as ops
from ..layers.base import check_input
from ..layers.convolution import Conv1D, Conv2D, Conv3D, DepthwiseConv2D, SeparableConv2D
from ..layers.core import Dense
from ..layers.normalization import BatchNormalization
from .dense import activation_of, is_plain_relu
from .._parallel import split_run
from ._conv_taps import bordered, conv_infer, padded_input, zero_border
from .folding import fold_batchnorm

__all__ = []  # private module

#: arrays below this size run their blocked passes on one thread (a worker's hand-off costs more)
PARALLEL_BYTES = 1 << 20
#: bytes of one block of rows in the element-wise passes (a few blocks fit the 2 MB L2 together)
BLOCK_BYTES = 1 << 18

CONV_TYPES = (Conv1D, Conv2D, Conv3D)


def as_rows(a: np.ndarray) -> np.ndarray:
    """``a`` (channels last) as a ``(rows, channels)`` matrix (a view of a contiguous array)."""
    return a.reshape(-1, a.shape[-1])


def row_blocks(rows: int, cols: int, itemsize: int) -> list:
    """Slices of about :data:`BLOCK_BYTES` over ``rows`` rows of ``cols`` values."""
    step = max(1, BLOCK_BYTES // max(1, cols * itemsize))
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def blockwise(a2: np.ndarray, fn) -> None:
    """``fn(rows)`` on every :func:`row_blocks` slice of the ``(rows, channels)`` matrix ``a2``, the two
    halves of the blocks on two threads (element-wise work: no effect on the numbers)."""
    blocks = row_blocks(a2.shape[0], a2.shape[1], a2.itemsize)

    def run(b0, b1):
        for sl in blocks[b0:b1]:
            fn(sl)

    split_run(run, len(blocks), parallel=a2.nbytes >= PARALLEL_BYTES)


def is_linear(fn) -> bool:
    return fn is None or fn.name == "linear"


def _relu_in_place(chunk: np.ndarray) -> None:
    np.maximum(chunk, 0, out=chunk)


def act_epilogue(fn):
    """The in-place epilogue applying ``fn`` to an output chunk (``None`` for the identity)."""
    if is_linear(fn):
        return None
    if is_plain_relu(fn):
        return _relu_in_place

    def apply(chunk):
        chunk[...] = fn.forward(chunk)

    return apply


# ---------------------------------------------------------------- a weighted layer as a convolution
class ConvOp:
    """A weighted layer seen as one convolution in ConvND layout.

    ``kind``: ``"conv"`` (Conv1D/2D/3D, kernel ``(*K, Cin // groups, F)``), ``"depthwise"``
    (DepthwiseConv2D or the depthwise half of SeparableConv2D: kernel ``(kh, kw, C, m)`` seen as
    ``(kh, kw, 1, C * m)`` with ``groups = C``), ``"pointwise"`` (the 1x1 half of SeparableConv2D)
    or ``"dense"`` (Dense over the last axis, seen as a 1x1 convolution over ``(rows, 1, in)``).
    """

    def __init__(self, layer, kind: str, kernel_name: str = "kernel", bias_name: str | None = "bias",
                 own_activation: bool = True):
        self.layer, self.kind = layer, kind
        self.kernel_name, self.bias_name = kernel_name, bias_name
        self.own_activation = own_activation

    @staticmethod
    def of(layer) -> list:
        """The ops of ``layer`` (two for a SeparableConv2D), or ``[]`` when it is not a weighted conv."""
        if isinstance(layer, SeparableConv2D):
            return [ConvOp(layer, "depthwise", "depthwise_kernel", None, own_activation=False),
                    ConvOp(layer, "pointwise", "pointwise_kernel", "bias")]
        if isinstance(layer, DepthwiseConv2D):
            return [ConvOp(layer, "depthwise", "depthwise_kernel")]
        if isinstance(layer, CONV_TYPES):
            return [ConvOp(layer, "conv")]
        if isinstance(layer, Dense):
            return [ConvOp(layer, "dense")]
        return []

    @property
    def activation(self):
        """The layer's own activation function when it belongs to this op (else ``None``)."""
        fn = self.layer.activation if self.own_activation else None
        return None if is_linear(fn) else fn

    def kernel(self) -> np.ndarray:
        """The kernel in ConvND layout (a view of the parameter)."""
        k = self.layer._params[self.kernel_name]
        if self.kind == "depthwise":
            kh, kw, c, m = k.shape
            return k.reshape(kh, kw, 1, c * m)
        if self.kind == "dense":
            return k.reshape((1,) + k.shape)
        return k

    def bias(self):
        return None if self.bias_name is None else self.layer._params.get(self.bias_name)

    def groups(self, channels: int) -> int:
        if self.kind == "conv":
            return self.layer.groups
        return channels if self.kind == "depthwise" else 1

    def prepare(self, x: np.ndarray):
        """``(x_view, geometry, groups)``: the input as the convolution sees it."""
        layer = self.layer
        if self.kind == "dense":
            check_input(layer, x.shape, layer.input_spec)
            return x.reshape(-1, 1, x.shape[-1]), ops.ConvGeometry((1,), (1,), (1,), (1,), (1,), (0,)), 1
        if self.kind == "pointwise":
            sizes = tuple(x.shape[1:-1])
            ones = (1,) * len(sizes)
            return x, ops.ConvGeometry(sizes, sizes, ones, ones, ones, (0,) * len(sizes)), 1
        check_input(layer, x.shape, layer.input_spec)
        return x, layer._geometry(x.shape), self.groups(x.shape[-1])

    def restore(self, y: np.ndarray, x_shape) -> np.ndarray:
        """The conv output in the layer's output shape (only Dense reshapes)."""
        if self.kind == "dense":
            return y.reshape(tuple(x_shape[:-1]) + (y.shape[-1],))
        return y

    def forward(self, xv: np.ndarray, geom, groups: int, xp: np.ndarray) -> np.ndarray:
        """The layer's own forward arithmetic (no activation): im2col GEMMs, or one GEMM for Dense."""
        if self.kind == "dense":  # xv is (rows, 1, in)
            z = xv.reshape(-1, xv.shape[-1]) @ self.layer._params["kernel"]
            if self.bias() is not None:
                z += self.bias()
            return z.reshape(xv.shape[:-1] + (z.shape[-1],))
        return ops.conv_forward(xv, self.kernel(), geom, groups, bias=self.bias(), xp=xp)

    def backward(self, xp: np.ndarray, dz: np.ndarray, geom, groups: int, need_dx: bool = True):
        """``(dx, dkernel)`` as the layer's own backward computes them (``dz`` shaped as the forward's output)."""
        if self.kind == "dense":
            kernel = self.layer._params["kernel"]
            rows = dz.reshape(-1, dz.shape[-1])
            dx = (rows @ kernel.T).reshape(xp.shape) if need_dx else None
            return dx, (xp.reshape(-1, xp.shape[-1]).T @ rows).reshape((1,) + kernel.shape)
        return ops.conv_backward(xp, dz, self.kernel(), geom, groups, need_dx=need_dx)

    def add_grads(self, dkernel: np.ndarray, dz_rows: np.ndarray) -> None:
        grads = self.layer._grads
        grads[self.kernel_name] += dkernel.reshape(grads[self.kernel_name].shape)
        if self.bias() is not None:
            grads[self.bias_name] += dz_rows.sum(axis=0)

    def describe(self) -> str:
        return self.layer.describe()


@dataclass
class Norm:
    """What the BatchNormalization of a stage used in a training forward."""

    channels: object  # the layer's _Channels helper for this shape (reductions on a widened view)
    inv: np.ndarray
    batch: bool  # batch statistics (else the moving statistics of a frozen layer)


@dataclass
class StageCache:
    """What a stage keeps from a training forward for its backward."""

    xp: np.ndarray  # the padded conv input
    geom: object
    groups: int
    x_shape: tuple
    conv_shape: tuple  # the conv output as conv_forward gives it
    xc: np.ndarray | None  # rows of z - mean (only with a BN)
    norm: Norm | None
    pre: np.ndarray | None  # activation input rows (only for activations other than ReLU)
    post: np.ndarray | None  # activation output rows (or the bordered output, see ``rows_per_sample``)
    rows_per_sample: int | None = None  # set when ``post`` is a bordered buffer's interior (samples, not rows)


# ---------------------------------------------------------------- the stage
class ConvStage:
    """``act(BN(conv(x)))`` with ``bn`` and ``act`` optional (``act``: an element-wise ActivationFunction)."""

    def __init__(self, op: ConvOp, bn: BatchNormalization | None = None, act=None):
        self.op, self.bn = op, bn
        self.act = None if is_linear(act) else act
        self.relu = is_plain_relu(self.act)

    # ------------------------------------------------------------ inference
    def fold(self, kernel=None, bias=None):
        """``(kernel, bias)`` with the BatchNormalization folded in (the op's own weights by default)."""
        if kernel is None:
            kernel, bias = self.op.kernel(), self.op.bias()
        bn = self.bn
        if bn is None:
            return kernel, bias
        gamma = bn._params["gamma"].reshape(-1) if bn.scale else None
        beta = bn._params["beta"].reshape(-1) if bn.center else None
        return fold_batchnorm(kernel, bias, gamma, beta, bn._state["moving_mean"].reshape(-1),
                              bn._state["moving_variance"].reshape(-1), bn.epsilon)

    def infer(self, x: np.ndarray, kernel: np.ndarray, bias, epilogue="act") -> np.ndarray:
        """The stage at inference on folded weights; ``epilogue="act"`` applies the activation in place
        per output chunk, ``None`` leaves the output before the activation, a callable replaces it."""
        xv, geom, groups = self.op.prepare(x)
        if isinstance(epilogue, str):
            epilogue = act_epilogue(self.act)
        y = conv_infer(xv, kernel, geom, groups, bias=bias, epilogue=epilogue)
        return self.op.restore(y, x.shape)

    # ------------------------------------------------------------ training forward
    def sample_rows(self, shape) -> int | None:
        """Working rows of the BN per sample when every block of the BN's blocked passes holds whole
        samples of the conv output ``shape`` (channels last, batch first), else ``None``."""
        chan = self.bn._channels(tuple(shape)) if self.bn is not None else None
        if chan is None or not chan.rep:
            return None
        pixels = int(np.prod(shape[1:-1]))
        if pixels % chan.rep:
            return None
        per_sample = pixels // chan.rep
        blocks = chan.row_blocks(np.broadcast_to(np.zeros(1, dtype=self.op.kernel().dtype), chan.wide))
        if any(sl.start % per_sample or sl.stop % per_sample for sl in blocks):
            return None
        return per_sample

    def forward_train_bordered(self, x: np.ndarray):
        """:meth:`forward_train` for a stage with a BN and ReLU, its output written block by block
        straight into a zero-bordered buffer (:func:`~._conv_taps.bordered`, which a following 3x3
        conv reads as its padded input); ``(interior, cache)``, or ``None`` when the BN's blocks do
        not hold whole samples (then nothing was computed)."""
        op = self.op
        if self.bn is None or not self.relu or op.kind != "conv":
            return None
        xv, geom, _ = op.prepare(x)
        shape = (x.shape[0],) + geom.out_sizes + (op.kernel().shape[-1],)
        per_sample = self.sample_rows(shape)
        if per_sample is None:
            return None
        buffer, interior = bordered(shape, op.kernel().dtype, zero=False)
        y, cache = self.forward_train(x, into=(interior, per_sample))
        zero_border(buffer)
        return y, cache

    def forward_train(self, x: np.ndarray, after=None, into=None):
        """``(y, cache)``: the stage on the source parameters, BN on batch statistics.

        ``after(rows, y_rows)``, with a BN, is called on each block of rows of the BN's working view
        (a slice) right after that block of ``y`` is written, while it is in cache."""
        op = self.op
        xv, geom, groups = op.prepare(x)
        xp = padded_input(xv, geom)  # the zero-bordered buffer x lives in (no copy), else a padded copy
        # the unfused conv's arithmetic (per-tap GEMMs or im2col GEMMs, as conv_forward decides), so
        # that BN sees the very same z
        zc = op.forward(xv, geom, groups, xp)
        z = op.restore(zc, x.shape)
        z2 = as_rows(z)
        act, pre, post, norm, xc = self.act, None, None, None, None
        if self.bn is None:
            y2 = z2
            if self.relu:
                _relu_blocks(z2)  # z itself is not needed by the backward
                post = z2
            elif act is not None:
                pre, post = z2, act.forward(z2)
                y2 = post
        else:
            norm, y2 = self._bn_forward(z, z2, after, into)
            xc = z2
            if into is not None:  # y is the bordered interior; the backward reads ReLU's mask off it
                cache = StageCache(xp, geom, groups, x.shape, zc.shape, xc, norm, None, into[0], into[1])
                return into[0], cache
            if self.relu:
                post = y2
            elif act is not None:
                pre, post = y2, act.forward(y2)
                y2 = post
        cache = StageCache(xp, geom, groups, x.shape, zc.shape, xc, norm, pre, post)
        return y2.reshape(z.shape), cache

    def _bn_forward(self, z: np.ndarray, z2: np.ndarray, after=None, into=None):
        """``(norm, y)``: BatchNormalization of ``z`` (``z`` becomes ``z - mean``), then ReLU when it is
        the stage's activation; the arithmetic of :meth:`BatchNormalization.forward` (its own blocked
        reductions), with one output array, on the layer's widened working view."""
        bn = self.bn
        chan = bn._channels(z.shape)
        zw = chan.work(z)
        gamma = bn._params["gamma"].reshape(-1) if bn.scale else None
        beta = bn._params["beta"].reshape(-1) if bn.center else None
        if bn.trainable:  # batch statistics
            count = chan.count
            mean = chan.sum(zw) * (1.0 / count)
            var = chan.center(zw, mean, zw) * (1.0 / count)
            momentum = bn.momentum
            for key, stat in (("moving_mean", mean), ("moving_variance", var)):
                moving = bn._state[key]
                moving *= momentum
                moving += (1.0 - momentum) * stat.reshape(moving.shape)
            shift = beta
        else:  # a frozen layer runs on its moving statistics: y = z * k + (beta - mean * k)
            var = bn._state["moving_variance"].reshape(-1)
            mean = bn._state["moving_mean"].reshape(-1)
        inv = 1.0 / np.sqrt(var + bn.epsilon)
        k = inv * gamma if bn.scale else inv
        if not bn.trainable:
            shift = -mean * k
            if bn.center:
                shift += beta
        if into is None:
            y2 = np.empty_like(z2)
            yw = chan.work(y2)
        else:  # each block computed in cache, then copied into its samples of the bordered interior
            y2, yw = None, None
            interior, per_sample = into
        kw = chan.param(k)
        shiftw = None if shift is None else chan.param(shift)
        meanw = None if bn.trainable else chan.param(mean)
        relu = self.relu

        def block(sl):
            yb = np.multiply(zw[sl], kw) if yw is None else np.multiply(zw[sl], kw, out=yw[sl])
            if shiftw is not None:
                yb += shiftw
            if relu:
                np.maximum(yb, 0, out=yb)
            if meanw is not None:
                zw[sl] -= meanw
            if yw is None:
                n0, n1 = sl.start // per_sample, sl.stop // per_sample
                interior[n0:n1] = yb.reshape((n1 - n0,) + interior.shape[1:])
            if after is not None:
                after(sl, y2)

        chan.blockwise(zw, block)
        return Norm(chan, inv, bn.trainable), y2

    # ------------------------------------------------------------ training backward
    def backward(self, dy: np.ndarray, cache: StageCache, own: bool = False, inner: bool = False,
                 need_dx: bool = True):
        """``dx`` from ``dy`` (the stage output's gradient); adds every parameter gradient.

        ``own=True`` lets the stage overwrite ``dy`` (its one gradient buffer); otherwise the
        buffer is allocated once (when an activation or BN needs it). ``inner=True``: ``dx`` feeds
        another stage of the same fused layer (see :meth:`conv_backward`). ``need_dx=False``: the
        input gradient is not wanted (the layer reads a model's input); returns ``None``.
        """
        dy2 = as_rows(np.ascontiguousarray(dy, dtype=cache.xp.dtype))
        if cache.norm is not None and (self.act is None or self.relu):
            dz2 = self.bn_backward(dy2, cache, own, relu=self.relu)  # ReLU's derivative in the BN's first pass
        else:
            g2, own = activation_grad(self.act, cache.pre, cache.post, dy2, own)
            dz2 = self.bn_backward(g2, cache, own)
        return self.conv_backward(dz2, cache, inner, need_dx=need_dx)

    def bn_backward(self, g2: np.ndarray, cache: StageCache, own: bool, relu: bool = False,
                    before=None) -> np.ndarray:
        """``dz`` from ``g`` (the gradient after the activation), BN grads added; in place when ``own``.

        With ``relu``, ``g2`` is the gradient *before* the ReLU and its derivative (``g * (y > 0)``)
        is applied block by block in the first pass. The arithmetic of :meth:`BatchNormalization.backward`
        (its own blocked sums), in two blocked passes over the layer's widened working view:
        ``g``, ``dbeta = sum(g)`` and ``s = sum(g * xc)``, then ``dz = g * k + xc * a + b``.
        ``before(rows)``, when given, writes each block of rows of ``g2`` (the buffer, owned) just
        before it is summed: ``g`` is then computed, summed and rescaled while it is in cache."""
        norm = cache.norm
        if norm is None:
            return g2
        bn, chan, inv = self.bn, norm.channels, norm.inv
        out = g2 if own else np.empty_like(g2)
        gw, xcw, ow = chan.work(g2), chan.work(cache.xc), chan.work(out)
        if before is not None:
            dbeta, s = chan.grad_sums(ow, xcw, before)
        elif relu and cache.rows_per_sample is not None:  # the output is a bordered interior: by samples
            post, per_sample = cache.post, cache.rows_per_sample

            def before(sl):
                n0, n1 = sl.start // per_sample, sl.stop // per_sample
                np.multiply(gw[sl], (post[n0:n1] > 0).reshape(sl.stop - sl.start, -1), out=ow[sl])

            dbeta, s = chan.grad_sums(ow, xcw, before)
            gw = ow
        elif relu:
            postw = chan.work(cache.post)

            def before(sl):  # (runs on two threads: no shared scratch)
                np.multiply(gw[sl], postw[sl] > 0, out=ow[sl])

            dbeta, s = chan.grad_sums(ow, xcw, before)
            gw = ow
        else:
            dbeta, s = chan.grad_sums(gw, xcw)
        if bn.scale:
            bn._grads["gamma"] += (s * inv).reshape(bn._grads["gamma"].shape)
        if bn.center:
            bn._grads["beta"] += dbeta.reshape(bn._grads["beta"].shape)
        k = inv * bn._params["gamma"].reshape(-1) if bn.scale else inv
        kw = chan.param(k)
        batch = norm.batch
        if batch:
            aw = chan.param(k * inv * inv * s * (-1.0 / chan.count))
            cw = chan.param(k * dbeta * (-1.0 / chan.count))

        def block(sl):
            ob = ow[sl]
            np.multiply(gw[sl], kw, out=ob)
            if batch:
                ob += xcw[sl] * aw
                ob += cw

        chan.blockwise(gw, block)
        return out

    def conv_backward(self, dz2: np.ndarray, cache: StageCache, inner: bool = False, need_dx: bool = True):
        """``dx`` of the convolution from ``dz`` (rows); adds the kernel and bias gradients.

        The arithmetic of the unfused conv (:func:`~fusenet.layers._conv_ops.conv_backward`: the kernel
        gradient as im2col GEMMs, the input gradient of stride-1 convs with 16+ channels as per-tap
        GEMMs), so that a ``dx`` feeding a BatchNormalization backward (whose batch sums spread any
        rounding difference over every element) is the unfused one bit for bit. ``need_dx=False``
        skips the input gradient and returns ``None``. ``inner`` is accepted for the callers and
        changes nothing.
        """
        dz = dz2.reshape(cache.conv_shape)
        dx, dk = self.op.backward(cache.xp, dz, cache.geom, cache.groups, need_dx=need_dx)
        self.op.add_grads(dk, dz2)
        return None if dx is None else dx.reshape(cache.x_shape)


def activation_grad(act, pre, post, dy2: np.ndarray, own: bool):
    """``(g, owned)`` with ``g = act'(dy)`` over rows, by blocks; ``act`` ``None`` gives ``dy`` back.

    ReLU reads its derivative off the output (``post > 0``); other activations call
    ``act.backward(pre, post, dy)`` block by block. ``g`` is written over ``dy`` when ``own``.
    """
    if act is None:
        return dy2, own
    g2 = dy2 if own else np.empty_like(dy2)
    if is_plain_relu(act):
        def block(sl):
            np.multiply(dy2[sl], post[sl] > 0, out=g2[sl])

        blockwise(dy2, block)
    else:
        for sl in row_blocks(dy2.shape[0], dy2.shape[1], dy2.itemsize):
            g2[sl] = act.backward(pre[sl], post[sl], dy2[sl])
    return g2, True


def add_and_activate(y2: np.ndarray, s2: np.ndarray, act):
    """``y = act(y + s)`` in place over rows, by blocks; returns ``(pre, post)`` as the backward needs
    them (``pre`` only for activations other than ReLU; ``post`` is ``y2`` unless ``act`` allocates)."""
    relu = is_plain_relu(act)

    def block(sl):
        yb = y2[sl]
        yb += s2[sl]
        if relu:
            np.maximum(yb, 0, out=yb)

    blockwise(y2, block)
    if act is None or relu:
        return None, y2
    return y2, act.forward(y2)


def _relu_blocks(a2: np.ndarray) -> None:
    def block(sl):
        np.maximum(a2[sl], 0, out=a2[sl])

    blockwise(a2, block)


# ---------------------------------------------------------------- parsing runs of layers into stages
def parse_stages(layers, owner: str) -> list:
    """Split ``layers`` into stages ``conv-like [BatchNormalization] [activation]``.

    ``TypeError`` for a layer that fits nowhere; ``ValueError`` when a conv with its own
    (non-linear) activation is followed by a BatchNormalization or an activation layer, or when a
    BatchNormalization does not normalise the channels (last) axis.
    """
    layers = list(layers)
    stages, i = [], 0
    while i < len(layers):
        conv_ops = ConvOp.of(layers[i])
        if not conv_ops:
            raise TypeError(f"{owner}: expected a convolution (Conv1D/2D/3D, DepthwiseConv2D, SeparableConv2D) or "
                            f"Dense at position {i}. Received: {layers[i].describe()}")
        conv = layers[i]
        i += 1
        bn = act = None
        if i < len(layers) and isinstance(layers[i], BatchNormalization):
            bn = layers[i]
            check_channels_axis(bn, owner)
            i += 1
        if i < len(layers) and activation_of(layers[i]) is not None:
            act = activation_of(layers[i])
            i += 1
        own = conv_ops[-1].activation
        if own is not None and (bn is not None or act is not None):
            raise ValueError(f"{owner}: {conv.describe()} has its own activation {own.name!r}; it must be linear when a "
                             "BatchNormalization or an activation layer follows it.")
        for op in conv_ops[:-1]:
            stages.append(ConvStage(op))
        stages.append(ConvStage(conv_ops[-1], bn, act if act is not None else own))
    return stages


def check_channels_axis(bn: BatchNormalization, owner: str) -> None:
    """``ValueError`` unless ``bn`` normalises the last (channels) axis only."""
    axis = bn.axis
    if isinstance(axis, list):
        if len(axis) != 1:
            raise ValueError(f"{owner}: {bn.describe()} normalises several axes {axis}; only the channels axis can be fused.")
        axis = axis[0]
    if bn.built:
        rank = len(bn.build_input_shape)
        if axis % rank != rank - 1:
            raise ValueError(f"{owner}: {bn.describe()} normalises axis {bn.axis}, not the last (channels) axis.")
    elif axis != -1:
        raise ValueError(f"{owner}: {bn.describe()} normalises axis {bn.axis}, not -1 (the channels axis).")
