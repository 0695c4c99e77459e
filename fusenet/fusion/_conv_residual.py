"""The ResNet basic block as one fused layer: ``Residual(Conv-BN-ReLU-Conv-BN, shortcut) -> ReLU``."""

from __future__ import annotations

import numpy as np

from ..layers.composite import Residual
from ..layers.merging import Add
from .base import FusedLayer
from .dense import activation_of
from ._conv_stage import activation_grad, add_and_activate, as_rows, parse_stages
from ._conv_taps import (_add_bias, bordered, bordered_taps, bordered_workspace, conv_blocks, epilogue_of,
                         s2d_conv_bordered, s2d_pointwise_term, s2d_taps, space_to_depth, tap_conv_bordered)

__all__ = ["FusedResidualConvBlock", "residual_block_problem"]


def residual_block_problem(block) -> str | None:
    """Why ``block`` is not a fusable basic block (``None`` when it is): a ``Residual`` with an
    ``Add`` merge, a body ``conv [-> BN] -> activation -> conv [-> BN]`` and a shortcut that is the
    identity or ``conv [-> BN]``, every conv a Conv1D/2D/3D, DepthwiseConv2D or SeparableConv2D."""
    if not isinstance(block, Residual):
        return f"{block.describe()} is not a Residual"
    if type(block.merge) is not Add:
        return f"{block.describe()} merges with {type(block.merge).__name__}, not Add"
    try:
        body = parse_stages(block.body, block.describe())
        short = parse_stages(block.shortcut, block.describe())
    except (TypeError, ValueError) as exc:
        return str(exc)
    if any(stage.op.kind == "dense" for stage in body + short):
        return f"{block.describe()} holds Dense layers, not convolutions"
    if len(body) != 2 or body[0].act is None or body[1].act is not None:
        return (f"the body of {block.describe()} is not conv [-> BN] -> activation -> conv [-> BN] "
                f"(received {[type(layer).__name__ for layer in block.body]})")
    if len(short) > 1 or (short and short[0].act is not None):
        return (f"the shortcut of {block.describe()} is not the identity or conv [-> BN] "
                f"(received {[type(layer).__name__ for layer in block.shortcut]})")
    return None


class FusedResidualConvBlock(FusedLayer):
    """Pattern ``Residual([Conv, BN, ReLU, Conv, BN], shortcut=None | [Conv 1x1, BN]) -> ReLU``:
    the ResNet basic block as one layer (any element-wise activations, BNs optional, any conv geometry).

    ``y = act(BN2(conv2(act1(BN1(conv1(x))))) + shortcut(x))``, ``shortcut(x) = x`` or ``BN_s(conv_s(x))``.

    Inference: the three BNs folded into their kernels; the shortcut is computed first, then the
    second conv adds its bias, the shortcut's matching block and the final activation to each block
    of samples of its output while the block is in cache. When the first conv has stride 2 it runs
    on the space-to-depth grid of ``x`` (:func:`._conv_taps.s2d_conv_bordered`, its output in a
    reused zero-bordered scratch buffer), and a 1x1 stride-2 projection shortcut is one more GEMM
    term of the second conv on that grid (its folded bias added to the second conv's). Training: fused stages with batch statistics;
    the add and the final ReLU in place on the second stage's output; the backward computes the
    ReLU derivative once and sends it to the body and to the shortcut.
    """

    pattern = "Residual(Conv -> BN -> ReLU -> Conv -> BN [+ Conv -> BN shortcut]) -> ReLU"

    def __init__(self, layers, **kwargs):
        super().__init__(layers, **kwargs)
        owner = f"{type(self).__name__}(name={self.name!r})"
        src = self.source_layers
        if len(src) != 2 or not isinstance(src[0], Residual) or activation_of(src[1]) is None:
            raise TypeError(f"{owner}: expected [Residual, activation layer]. Received: {self.describe_fusion()}")
        problem = residual_block_problem(src[0])
        if problem:
            raise ValueError(f"{owner}: {problem}.")
        self.block = src[0]
        self.body = parse_stages(self.block.body, owner)
        self.shortcut = parse_stages(self.block.shortcut, owner)
        self.act = activation_of(src[1])
        if self.act.name == "linear":
            self.act = None

    # ------------------------------------------------------------ inference
    def _fold(self):
        return [stage.fold() for stage in self.body + self.shortcut]

    def _shortcut_infer(self, x, folded):
        if not self.shortcut:
            return x
        kernel, bias = folded[2]
        return self.shortcut[0].infer(x, kernel, bias, epilogue=None)

    def _check_merge(self, y_shape, s_shape):
        if tuple(y_shape) != tuple(s_shape):
            raise ValueError(f"{self.describe()}: the body gives shape {tuple(y_shape)} but the shortcut gives "
                             f"{tuple(s_shape)}; Add needs equal shapes.")

    def _first_infer(self, x, kernel, bias):
        """``(h, grid)``: the body's first stage at inference (``h`` in a zero-bordered scratch buffer
        where the tap paths apply) and the space-to-depth grid of ``x`` when that stage is a
        stride-2 convolution run on it (``None`` otherwise)."""
        first = self.body[0]
        if first.op.kind != "conv":
            return first.infer(x, kernel, bias, epilogue=epilogue_of(first.act)), None
        xv, geom, groups = first.op.prepare(x)
        channels, dtype = xv.shape[-1], xv.dtype
        act = epilogue_of(first.act)
        shape = (xv.shape[0],) + tuple(geom.out_sizes) + (kernel.shape[-1],)
        if s2d_taps(geom, groups, channels, dtype):
            grid = space_to_depth(xv, geom)
            buffer, _ = bordered_workspace("residual_h", shape, dtype)
            return s2d_conv_bordered(xv, kernel, geom, bias=bias, epilogue=act, grid=grid, buffer=buffer), grid
        if bordered_taps(geom, groups, channels, dtype):
            buffer, _ = bordered_workspace("residual_h", shape, dtype)
            return tap_conv_bordered(xv, kernel, geom, bias=bias, epilogue=act, buffer=buffer), None
        return first.infer(x, kernel, bias, epilogue=epilogue_of(first.act)), None

    def _projection_term(self, x, grid, first_geom, out_shape, folded):
        """The 1x1 stride-2 projection shortcut as one more GEMM term of the second convolution, on the
        space-to-depth grid of the first (``(term, bias)``), or ``None`` when it does not fit."""
        op = self.shortcut[0].op
        if grid is None or op.kind != "conv":
            return None
        xv, geom, groups = op.prepare(x)
        kernel, bias = folded[2]
        if groups != 1 or tuple(out_shape) != (x.shape[0],) + tuple(geom.out_sizes) + (kernel.shape[-1],):
            return None
        term = s2d_pointwise_term(grid, geom, first_geom, kernel, x.dtype)
        return None if term is None else (term, bias)

    def _inference(self, x):
        folded = self.folded()
        second = self.body[1]
        h, grid = self._first_infer(x, *folded[0])
        hv, geom, groups = second.op.prepare(h)
        kernel, bias = folded[1]
        out_shape = (h.shape[0],) + geom.out_sizes + (kernel.shape[-1],)
        act = epilogue_of(self.act)
        taps = bordered_taps(geom, groups, hv.shape[-1], hv.dtype)
        if taps and self.shortcut and grid is not None:
            projection = self._projection_term(x, grid, self.body[0].op.prepare(x)[1], out_shape, folded)
            if projection is not None:  # the shortcut GEMM accumulates into the second conv's blocks
                term, short_bias = projection
                return tap_conv_bordered(hv, kernel, geom, bias=_add_bias(bias, short_bias), epilogue=act,
                                         extra=(term,))
        s = self._shortcut_infer(x, folded)
        self._check_merge(out_shape, s.shape)
        if taps:
            # the second conv writes into a zero-bordered buffer; bias, shortcut and activation per block
            return tap_conv_bordered(hv, kernel, geom, bias=bias, epilogue=act, addend=s)
        _, y = bordered(out_shape, h.dtype)  # the next block's padded input

        def finish(valid, n0, n1):  # bias, shortcut and activation on each block while it is in cache
            out = y[n0:n1]
            if bias is None:
                np.copyto(out, valid)
            else:
                np.add(valid, bias, out=out)
            out += s[n0:n1]
            if act is not None:
                act(out)

        conv_blocks(hv, kernel, geom, groups, finish)
        return y

    # ------------------------------------------------------------ training
    def forward(self, x, training=False):
        if not training:
            self._save_for_backward(False)
            return self._inference(x)
        first, second = self.body
        h, c1 = first.forward_train(x)
        y, c2 = second.forward_train(h)
        if self.shortcut:
            s, cs = self.shortcut[0].forward_train(x)
        else:
            s, cs = x, None
        self._check_merge(y.shape, s.shape)
        pre, post = add_and_activate(as_rows(y), as_rows(np.ascontiguousarray(s)), self.act)
        self._save_for_backward(True, c1, c2, cs, pre, post)
        return post.reshape(y.shape)

    def backward(self, dy):
        c1, c2, cs, pre, post = self._saved()
        first, second = self.body
        dy2 = as_rows(np.ascontiguousarray(dy, dtype=c2.xp.dtype))
        g2, owned = activation_grad(self.act, pre, post, dy2, own=False)
        # the body first, without overwriting g: the shortcut needs it afterwards
        dz2 = second.bn_backward(g2, c2, own=False)
        dx = first.backward(second.conv_backward(dz2, c2, inner=True), c1, own=True)
        if self.shortcut:
            dx += self.shortcut[0].backward(g2.reshape(c2.conv_shape), cs, own=owned)
        else:
            dx += g2.reshape(dx.shape)
        return dx
