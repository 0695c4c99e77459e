"""Fused chains of convolution stages: Conv-BN-activation, Conv-BN-ReLU-MaxPool and the
depthwise-separable (MobileNet) block. The arithmetic of a stage is in :mod:`._conv_stage`."""

from __future__ import annotations

import math

import numpy as np

from ..layers import _conv_ops as ops
from ..layers import _pool_ops as pool_ops
from ..layers._conv_args import checked_geometry
from ..layers.pooling import MaxPooling1D, MaxPooling2D, MaxPooling3D
from .base import FusedLayer
from ._conv_stage import act_epilogue, as_rows, parse_stages
from ._conv_taps import bordered, conv_blocks, epilogue_of, zero_border

__all__ = ["FusedConvBNActivation", "FusedConvBNActivationPool", "FusedDepthwiseSeparableBNActivation"]


class _FusedConvChain(FusedLayer):
    """A chain of conv stages (``conv [-> BN] [-> activation]``, in the order of the source layers).

    Inference runs each stage on its folded kernel and bias with the activation as the conv's
    in-place epilogue; training runs the stages on the source parameters (batch statistics) and
    the backward runs them in reverse, each with one gradient buffer. Subclasses check the shape
    of the chain and may replace the inference path.
    """

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        self.stages = parse_stages(self._stage_layers(), self._owner())
        self._check_chain()

    def _owner(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def _stage_layers(self):
        return self.source_layers

    def _check_chain(self) -> None:  # pragma: no cover - every subclass overrides
        pass

    # ------------------------------------------------------------ inference
    def _fold(self):
        return [stage.fold() for stage in self.stages]

    def _inference(self, x):
        for stage, (kernel, bias) in zip(self.stages, self.folded()):
            x = stage.infer(x, kernel, bias, epilogue=epilogue_of(stage.act))
        return x

    # ------------------------------------------------------------ forward and backward
    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        caches = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            done = stage.forward_train_bordered(x) if i == last and type(self) is FusedConvBNActivation else None
            x, cache = done if done is not None else stage.forward_train(x)
            caches.append(cache)
        self._save_for_backward(True, caches)
        return x

    def backward(self, dy):
        (caches,) = self._saved()
        own = False
        for i in range(len(self.stages) - 1, -1, -1):
            dy = self.stages[i].backward(dy, caches[i], own, inner=i > 0, need_dx=i > 0 or self._input_grad_needed)
            own = True
        return dy


class FusedConvBNActivation(_FusedConvChain):
    """Pattern ``Conv1D/Conv2D/Conv3D/DepthwiseConv2D -> [BatchNormalization] -> [activation]``.

    Any strides, padding, dilation, groups and bias; the conv's own activation must be linear when
    a BatchNormalization or an activation layer follows; the BN normalises the channels axis.
    ``(batch, *spatial, in)`` -> ``(batch, *out_spatial, filters)``.

    Inference: the BN is folded into the kernel and bias once
    (``kernel' = kernel * s``, ``bias' = (bias - moving_mean) * s + beta``, ``s = gamma / sqrt(var + eps)``);
    one conv with the bias and the activation applied in place on each output block while it is in
    cache: stride-1 convs with 16+ channels as one accumulating GEMM per kernel tap, written straight
    into a zero-bordered buffer that a following 3x3 conv reads as its padded input (the layer then
    returns a strided view), others as im2col GEMMs over cache-sized chunks. Training: the unfused
    conv, the BN statistics and one blocked normalise-and-activate pass with BatchNormalization's own
    arithmetic, and one fused backward (activation derivative, BN backward and conv backward over one
    gradient buffer; the input gradient as per-tap GEMMs where they apply). With a BN and ReLU, when
    the BN's blocks of rows hold whole samples, each normalised block is written straight into a
    zero-bordered output buffer (a following 3x3 conv reads it unpadded) and the backward reads
    ReLU's mask off that output, sample block by sample block.
    """

    pattern = "Conv1D/Conv2D/Conv3D/DepthwiseConv2D -> [BatchNormalization] -> [activation]"

    def _check_chain(self):
        kinds = [stage.op.kind for stage in self.stages]
        if kinds not in (["conv"], ["depthwise"]) or len(self.source_layers) > 3:
            raise ValueError(f"{self._owner()}: expected one Conv1D/2D/3D or DepthwiseConv2D, optionally followed by a "
                             f"BatchNormalization and an activation. Received: {self.describe_fusion()}")


class FusedConvBNActivationPool(_FusedConvChain):
    """Pattern ``Conv -> [BatchNormalization] -> ReLU -> MaxPooling1D/2D/3D`` (any pool size, strides, padding).

    ReLU is non-decreasing, so ``maxpool(relu(y)) = relu(maxpool(y))``: the fused layer pools the
    BN output first and applies ReLU to the pooled map only. Gradients are those of the unfused
    run: where a window's maximum is not positive, ReLU's derivative is 0 for every element of it.
    Inference: the conv on folded weights; per block of samples, while the conv output is in cache,
    the pool, then the folded bias and ReLU on the pooled block (adding a per-channel bias commutes
    with max too), so the full-size map is never written; the pooled map is written into a
    zero-bordered buffer that a following 3x3 convolution reads as its padded input. Training: the
    conv stage with batch statistics (without its activation); when the pool windows tile the conv
    output and the BN's blocks of rows hold whole samples, each block is pooled (and ReLU applied to the
    pooled block) right after it is normalised, and the output is written into a zero-bordered buffer
    (a following 3x3 conv reads it without padding it). The backward routes ``dy * (pooled > 0)`` to
    each window's first maximum block by block inside the BN backward's first pass (the same blocks
    and sums as the unfused BatchNormalization), then runs the conv backward; otherwise (or with NaN
    in the pooled map) the pooling ops' separate passes.
    """

    pattern = "Conv -> [BatchNormalization] -> ReLU -> MaxPooling"

    def _stage_layers(self):
        return self.source_layers[:-1]

    def _check_chain(self):
        pool = self.source_layers[-1]
        stage = self.stages[0] if len(self.stages) == 1 else None
        if (stage is None or stage.op.kind not in ("conv", "depthwise") or not stage.relu
                or not isinstance(pool, (MaxPooling1D, MaxPooling2D, MaxPooling3D))):
            raise ValueError(f"{self._owner()}: expected a convolution, optionally a BatchNormalization, a plain ReLU and "
                             f"a MaxPooling layer. Received: {self.describe_fusion()}")
        if pool.rank != len(stage.op.layer.kernel_size):
            raise ValueError(f"{self._owner()}: {pool.describe()} pools {pool.rank} spatial axes but "
                             f"{stage.op.describe()} has {len(stage.op.layer.kernel_size)}.")
        self.pool = pool
        stage.act, stage.relu = None, False  # ReLU runs after the pool

    def _pool_geometry(self, shape):
        pool = self.pool
        return checked_geometry(pool, shape, pool.pool_size, pool.strides, (1,) * pool.rank, pool.padding, what="pool")

    def _inference(self, x):
        ((kernel, bias),) = self.folded()
        xv, geom, groups = self.stages[0].op.prepare(x)
        filters = kernel.shape[-1]
        pool_geom = self._pool_geometry((x.shape[0],) + geom.out_sizes + (filters,))
        _, p = bordered((x.shape[0],) + pool_geom.out_sizes + (filters,), x.dtype)  # the next conv's padded input

        def finish(valid, n0, n1):  # the pool first: bias and ReLU commute with max, on 1/4 of the values
            out = p[n0:n1]
            max_pool_into(out, valid, pool_geom)
            if bias is not None:
                out += bias
            np.maximum(out, 0, out=out)

        conv_blocks(xv, kernel, geom, groups, finish)
        return p

    def _blocked_plan(self, x):
        """``(geom, rows_per_sample, conv_shape)`` when the pool can run inside the BN's blocked passes:
        a BN on the channels of a matrix view, pool windows that tile the conv output exactly, and
        blocks of the BN's working rows that hold whole samples; else ``None``."""
        stage = self.stages[0]
        op = stage.op
        if stage.bn is None or op.kind not in ("conv", "depthwise"):
            return None
        xv, cgeom, _ = op.prepare(x)
        shape = (x.shape[0],) + cgeom.out_sizes + (op.kernel().shape[-1],)
        geom = self._pool_geometry(shape)
        if (any(geom.pad_before) or geom.strides != geom.kernel_sizes
                or any(o * k != n for o, k, n in zip(geom.out_sizes, geom.kernel_sizes, geom.in_sizes))):
            return None
        per_sample = stage.sample_rows(shape)
        if per_sample is None:
            return None
        return geom, per_sample, shape

    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        stage = self.stages[0]
        plan = self._blocked_plan(x)
        if plan is None:
            y, cache = stage.forward_train(x)
            geom = self._pool_geometry(y.shape)
            pooled = pool_ops.max_pool_forward(y, geom)
            self._save_for_backward(True, cache, geom, y, pooled, None)
            return np.maximum(pooled, 0)
        geom, per_sample, shape = plan
        arrays = {}

        def after(sl, y2):  # this block of the BN output is in cache: pool it, then ReLU on the pooled block
            if not arrays:
                arrays["y"] = y2.reshape(shape)
                arrays["pooled"] = np.empty((shape[0],) + geom.out_sizes + (shape[-1],), dtype=y2.dtype)
                arrays["buffer"], arrays["out"] = bordered(arrays["pooled"].shape, y2.dtype, zero=False)
            n0, n1 = sl.start // per_sample, sl.stop // per_sample
            block = arrays["pooled"][n0:n1]
            max_pool_into(block, arrays["y"][n0:n1], geom)
            np.maximum(block, 0, out=arrays["out"][n0:n1])

        y, cache = stage.forward_train(x, after=after)
        zero_border(arrays["buffer"])  # the output is the interior: a following 3x3 conv reads the buffer unpadded
        pooled = arrays["pooled"]
        self._save_for_backward(True, cache, geom, y, pooled, per_sample)
        return arrays["out"]

    def backward(self, dy):
        cache, geom, y, pooled, per_sample = self._saved()
        stage = self.stages[0]
        if per_sample is None or np.isnan(pooled).any():
            gp = np.multiply(dy, pooled > 0, dtype=pooled.dtype)
            gy = pool_ops.max_pool_backward(gp, y, pooled, geom)
            return stage.backward(gy, cache, own=True, need_dx=self._input_grad_needed)
        dy = np.asarray(dy, dtype=pooled.dtype)
        g = self._gradient_buffer(y)
        taps = pool_ops._taps(geom)

        def before(sl):  # route dy * (pooled > 0) to each window's first maximum, for these rows only
            n0, n1 = sl.start // per_sample, sl.stop // per_sample
            pb = pooled[n0:n1]
            rest = np.multiply(dy[n0:n1], pb > 0, dtype=pb.dtype)
            pool_ops.route_to_first_max(g, y, pb, rest, np.empty(pb.shape, dtype=bool), n0, n1, taps, geom)

        dz2 = stage.bn_backward(g.reshape(-1, g.shape[-1]), cache, own=True, before=before)
        return stage.conv_backward(dz2, cache, need_dx=self._input_grad_needed)

    def _gradient_buffer(self, y):
        """The layer's gradient buffer shaped like ``y``, kept between steps (no fresh pages per step;
        it never leaves the layer: the conv backward returns new arrays)."""
        buf = getattr(self, "_gbuf", None)
        if buf is None or buf.shape != y.shape or buf.dtype != y.dtype:
            buf = np.empty_like(y)
            self._gbuf = buf
        return buf


def max_pool_into(out: np.ndarray, x: np.ndarray, geom) -> None:
    """``out = maxpool(x)``. Windows that tile the input (strides = pool size, no padding) are reduced
    one spatial axis after the other, each axis with ``np.maximum`` over its strided taps, so that the
    first (largest) passes read long contiguous runs; other windows use the pooling ops."""
    if any(p for p in geom.pad_before) or geom.strides != geom.kernel_sizes:
        np.copyto(out, pool_ops.max_pool_forward(x, geom))
        return
    cur = x
    axes = [a for a in range(geom.rank) if geom.kernel_sizes[a] > 1]
    if not axes:
        np.copyto(out, x[(slice(None),) + tuple(slice(0, o) for o in geom.out_sizes)])
        return
    for i, a in enumerate(axes):
        k, o = geom.kernel_sizes[a], geom.out_sizes[a]
        lead = (slice(None),) * (a + 1)
        views = [cur[lead + (slice(t, t + k * (o - 1) + 1, k),)] for t in range(k)]
        if i == len(axes) - 1:
            target = out
        else:
            target = np.empty(views[0].shape, dtype=x.dtype)
        np.maximum(views[0], views[1], out=target)
        for view in views[2:]:
            np.maximum(target, view, out=target)
        cur = target


class FusedDepthwiseSeparableBNActivation(_FusedConvChain):
    """The MobileNet block: ``DepthwiseConv2D -> BatchNormalization -> activation -> Conv2D 1x1 ->
    BatchNormalization [-> activation]``, or ``SeparableConv2D -> [BatchNormalization] -> [activation]``.

    ``(batch, h, w, in)`` -> ``(batch, oh, ow, filters)``. Inference: both BNs folded (into the
    depthwise kernel and into the 1x1 kernel); cache-sized groups of samples run the depthwise conv
    (bias and activation in place) and, while its output is in cache, the 1x1 GEMM (bias and
    activation in place): the intermediate map never exists whole. Training: two fused stages.
    """

    pattern = "DepthwiseConv2D -> BN -> activation -> Conv2D 1x1 -> BN [-> activation] (or SeparableConv2D -> BN -> activation)"

    def _check_chain(self):
        ok = len(self.stages) == 2 and self.stages[0].op.kind == "depthwise"
        if ok:
            op = self.stages[1].op
            layer = op.layer
            ok = op.kind == "pointwise" or (
                op.kind == "conv" and layer.rank == 2 and layer.kernel_size == (1, 1) and layer.strides == (1, 1)
                and layer.groups == 1)
        if not ok:
            raise ValueError(f"{self._owner()}: expected DepthwiseConv2D [-> BatchNormalization] [-> activation] -> Conv2D "
                             "1x1 (stride 1, groups 1) [-> BatchNormalization] [-> activation], or SeparableConv2D "
                             f"[-> BatchNormalization] [-> activation]. Received: {self.describe_fusion()}")

    def _inference(self, x):
        (k1, b1), (k2, b2) = self.folded()
        first, second = self.stages
        xv, geom, groups = first.op.prepare(x)
        xv = np.ascontiguousarray(xv)
        batch, mid, filters = x.shape[0], k1.shape[-1], k2.shape[-1]
        w2 = k2.reshape(mid, filters)
        y = np.empty((batch,) + geom.out_sizes + (filters,), dtype=x.dtype)
        ep1, ep2 = act_epilogue(first.act), act_epilogue(second.act)
        per_sample = math.prod(geom.out_sizes) * mid * x.dtype.itemsize
        step = max(1, (ops.CHUNK_BYTES // 4) // max(1, per_sample))
        for n0 in range(0, batch, step):
            h = ops.conv_forward(xv[n0:n0 + step], k1, geom, groups, bias=b1, epilogue=ep1)
            y2 = as_rows(y[n0:n0 + step])
            np.matmul(as_rows(h), w2, out=y2)
            if b2 is not None:
                y2 += b2
            if ep2 is not None:
                ep2(y2)
        return y
