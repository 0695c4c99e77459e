"""Private: the inference arithmetic of compiled plans, written into preallocated arrays.

Each runner here is built once per plan and batch size (the shape-specialised work: convolution
geometry, chunking, GEMM layouts, the views of every block and kernel tap) and then called on
every inference with no allocation of its own: its input, output and workspaces are arrays the
plan owns (:mod:`fusenet.graph._memory`). The arithmetic is that of the layers' own inference
paths (:func:`fusenet.layers._conv_ops.conv_forward`, :mod:`fusenet.fusion._conv_taps`), so
compiled and interpreted execution agree to float rounding.

A convolution reads a *staged* input: ``(batch, *spans, channels)`` with the padding zeros
around the input (:func:`~fusenet.layers._conv_ops.pad_input`'s layout). The stage is either the
input buffer itself (no padding), or a workspace into which the runner copies its input and
whose border it zeroes, or -- when the producer of the input can write into a strided view --
the producer writes straight into the stage's interior and the copy disappears. When that stage is
the zero-bordered grid of the producer's own padded input (3x3 "same" chains: per-tap GEMMs and the
few-channel stem), the producer writes whole grid rows into it, as
:func:`fusenet.fusion._conv_taps.bordered_gemms` does: no scratch block and no copy; the values computed
past the output land on the border, which the reading convolution zeroes before it runs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..fusion._conv_taps import BLOCK_ROWS, TapGemms, narrow_taps, use_taps, writes_bordered
from ..layers import _conv_ops as ops

__all__ = []  # private module

#: budget in bytes of one im2col chunk in compiled plans (smaller than the layers' CHUNK_BYTES: the
#: chunk is a workspace of the plan, counted in its memory, and 1 MB chunks run as fast here)
COL_BYTES = 1 << 20


# ---------------------------------------------------------------- staging (padding)
class Stage:
    """Where a convolution reads its input: ``shape(batch)`` ``(batch, *spans, channels)``; ``dst``/``src`` the
    index tuples of the copied region (``stage[dst] = x[src]``); ``borders`` the index tuples zeroed
    before each call (the padding). ``identity``: no padding and nothing cut, the input itself will do."""

    def __init__(self, x_shape, geom):
        spans = geom.spans
        self.tail = tuple(spans) + (x_shape[-1],)
        src, dst, borders = [slice(None)], [slice(None)], []
        for a, (n, sp, p) in enumerate(zip(geom.in_sizes, spans, geom.pad_before)):
            keep = max(0, min(n, sp - p))
            src.append(slice(0, keep))
            dst.append(slice(p, p + keep))
            lead = (slice(None),) * (a + 1)
            if p > 0:
                borders.append(lead + (slice(0, p),))
            if p + keep < sp:
                borders.append(lead + (slice(p + keep, sp),))
        self.src, self.dst, self.borders = tuple(src), tuple(dst), borders
        self.identity = not borders and tuple(spans) == tuple(geom.in_sizes)
        #: the whole input is copied (so a producer may write into ``stage[dst]`` instead)
        self.covers_input = all(s.stop == n for s, n in zip(src[1:], geom.in_sizes))

    def shape(self, batch) -> tuple:
        return (batch,) + self.tail

    def borders_output(self, out_sizes) -> bool:
        """Whether the stage is the zero-bordered grid of ``out_sizes`` (one position of padding on each side of
        an input of exactly that size): a producer of that output size may write its rows straight into it."""
        return (tuple(self.tail[:-1]) == tuple(o + 2 for o in out_sizes)
                and all(d.start == 1 and d.stop == o + 1 for d, o in zip(self.dst[1:], out_sizes))
                and self.covers_input)


# ---------------------------------------------------------------- max pooling into out
class MaxPoolInto:
    """``out = max over the window taps`` (:func:`fusenet.layers._pool_ops.max_pool_forward` into ``out``)."""

    def __init__(self, geom):
        self.geom = geom
        regions = []
        for tap in ops._taps(geom):
            ranges = ops._tap_ranges(geom, tap)
            if ranges is None:
                continue
            regions.append(((slice(None),) + tuple(o for o, _ in ranges) + (slice(None),),
                            (slice(None),) + tuple(i for _, i in ranges) + (slice(None),)))
        first = regions[0] if regions else None
        self.first_full = first is not None and all(
            o.start == 0 and o.stop == n for o, n in zip(first[0][1:-1], geom.out_sizes))
        self.regions = regions[1:] if self.first_full else regions
        self.first = first
        #: windows that tile the input (strides = pool size, no padding) over exactly two pooled axes: reduced one
        #: axis after the other (the first into a scratch array), as :func:`fusenet.fusion._conv_chain.max_pool_into`
        #: (the first, largest pass reads long contiguous runs: about 40% faster than the window taps)
        axes = [a for a in range(geom.rank) if geom.kernel_sizes[a] > 1]
        self.axes = axes if (len(axes) == 2 and not any(geom.pad_before)
                             and tuple(geom.strides) == tuple(geom.kernel_sizes)) else None

    def scratch_shape(self, x_shape):
        """The shape of the scratch array :meth:`separable` needs for an input of ``x_shape``, or ``None``."""
        if self.axes is None:
            return None
        a = self.axes[0]
        return tuple(x_shape[:a + 1]) + (self.geom.out_sizes[a],) + tuple(x_shape[a + 2:])

    def separable(self, x, out, tmp):
        """``out = maxpool(x)`` one pooled axis after the other, the first into ``tmp`` (:meth:`scratch_shape`)."""
        cur = x
        for target, a in ((tmp, self.axes[0]), (out, self.axes[1])):
            k, o = self.geom.kernel_sizes[a], self.geom.out_sizes[a]
            lead = (slice(None),) * (a + 1)
            views = [cur[lead + (slice(t, t + k * (o - 1) + 1, k),)] for t in range(k)]
            np.maximum(views[0], views[1], out=target)
            for view in views[2:]:
                np.maximum(target, view, out=target)
            cur = target

    def __call__(self, x, out):
        if self.first_full:
            np.copyto(out, x[self.first[1]])
        else:
            out.fill(-np.inf)
        for o, i in self.regions:
            region = out[o]
            np.maximum(region, x[i], out=region)


# ---------------------------------------------------------------- convolution
def conv_method(geom, groups, channels, dtype) -> str:
    """``"depthwise"``, ``"pointwise"``, ``"taps"`` or ``"im2col"``: the layers' own choice for this convolution."""
    if groups > 1 and channels == groups:
        return "depthwise"
    if ops._is_pointwise(geom):
        return "pointwise"
    if use_taps(geom, groups, channels, dtype):
        return "taps"
    return "im2col"


class ConvSpec:
    """A convolution for one input shape (batch size aside): ``act(conv(x) + bias [+ residual])``,
    or with ``pool`` (a max-pool geometry) ``relu(maxpool(conv(x)) + bias)`` (ReLU commutes with max).

    ``kernel`` in ConvND layout ``(*K, C // groups, F)`` (a DepthwiseConv2D kernel as ``(kh, kw, 1, C * m)``
    with ``groups = C``), in the computation dtype; ``epilogue`` an in-place activation or ``None``.
    """

    def __init__(self, x_shape, kernel, bias, geom, groups, dtype, epilogue=None, pool=None, residual=False):
        self.dtype = np.dtype(dtype)
        self.kernel = np.ascontiguousarray(kernel, dtype=self.dtype)
        self.bias = None if bias is None else np.asarray(bias, dtype=self.dtype)
        self.geom, self.groups = geom, int(groups)
        self.channels, self.filters = int(x_shape[-1]), int(kernel.shape[-1])
        self.epilogue, self.residual = epilogue, bool(residual)
        self.pool = None if pool is None else MaxPoolInto(pool)
        self.method = conv_method(geom, self.groups, self.channels, self.dtype)
        #: few input channels (the 3-channel stem): patches gathered per block of grid rows, one GEMM
        self.narrow = self.method == "im2col" and narrow_taps(geom, self.groups, self.channels, self.dtype)
        #: the GEMMs may write the rows of the grid straight into a zero-bordered stage of the next convolution
        self.can_border = ((self.method == "taps" or self.narrow) and writes_bordered(geom) and pool is None
                           and not self.residual)
        self.stage = Stage(x_shape, geom)
        self.conv_shape = (x_shape[0],) + tuple(geom.out_sizes) + (self.filters,)
        self.out_shape = (x_shape[0],) + (tuple(pool.out_sizes) if pool is not None else tuple(geom.out_sizes)) + (
            self.filters,)
        if self.method == "taps" or self.narrow:
            spans = geom.spans
            pitch = [math.prod(spans[a + 1:]) for a in range(len(spans))]
            taps = list(itertools.product(*(range(k) for k in geom.kernel_sizes)))
            self.offsets = [sum(k * d * p for k, d, p in zip(tap, geom.dilations, pitch)) for tap in taps]
            w = self.kernel.reshape(len(taps), self.channels, self.filters)
            self.w_taps = [w[t] for t in range(len(taps))]  # (C, F), contiguous
            self.w_narrow = self.kernel.reshape(len(taps) * self.channels, self.filters)
            if self.bias is not None:  # the bias as one more row, times a column of ones in the patches
                self.w_narrow = np.concatenate([self.w_narrow, self.bias.reshape(1, -1)])
            self.per_sample = math.prod(spans)
            self.pitch = pitch
        if self.method == "depthwise":
            mult = self.filters // self.channels
            self.k2 = self.kernel.reshape(geom.taps, self.channels, mult)
            self.mult = mult
        elif self.method != "taps":
            self.w = ops._kernel_gemm(self.kernel, self.groups)

    def _im2col_chunks(self, batch):
        row_bytes = ops._row_bytes(self.geom, self.channels, self.dtype.itemsize)
        return list(ops._chunks(batch, self.geom, row_bytes, COL_BYTES))

    def _pool_whole(self, batch) -> bool:
        """Pooling needs the whole convolution output first (depthwise, or GEMM chunks that split samples)."""
        if self.pool is None or self.method == "taps":
            return False
        if self.method == "depthwise":
            return True
        return any(r0 != 0 or r1 != self.geom.out_sizes[0] for _, _, r0, r1 in self._im2col_chunks(batch))

    def _tap_step(self, batch) -> int:
        """Samples per block of the per-tap path: about :data:`BLOCK_ROWS` grid rows, the blocks evened out."""
        step = max(1, BLOCK_ROWS // self.per_sample)
        count = -(-max(batch, 1) // step)
        return -(-max(batch, 1) // count)

    def _border_blocks(self, batch) -> list:
        """``[(q0, q1)]``: the blocks of grid rows of the bordered path (about :data:`BLOCK_ROWS` each)."""
        total = batch * self.per_sample
        last_row = total - max(max(self.offsets), sum(self.pitch))
        if last_row <= 0:
            return []
        count = -(-last_row // BLOCK_ROWS)
        size = -(-last_row // count)
        return [(q, min(q + size, last_row)) for q in range(0, last_row, size)]

    def workspaces(self, batch, strided_out=True, bordered=False) -> dict:
        """``{name: (shape, dtype)}``: the scratch arrays one call needs (besides the stage); ``strided_out``:
        the output will be a strided view (another convolution's stage interior); ``bordered``: that stage is
        the zero-bordered grid of the output (:meth:`Stage.borders_output`)."""
        dt, f = self.dtype, self.filters
        ws = {}
        if bordered and self.can_border:
            if self.narrow:
                blocks = self._border_blocks(batch)
                rows = max((q1 - q0 for q0, q1 in blocks), default=1)
                ws["cols"] = ((rows, self.w_narrow.shape[0]), dt)
            return ws  # the stages are contiguous: no fallback to the paths below
        full_conv = self._pool_whole(batch)
        if full_conv:  # the whole convolution output, then the pool
            ws["conv"] = ((batch,) + self.conv_shape[1:], dt)
        if self.method == "taps":
            step = self._tap_step(batch)
            ws["block"] = ((min(step, max(batch, 1)) * self.per_sample, f), dt)
            scratch = None if self.pool is None else self.pool.scratch_shape(
                (min(step, max(batch, 1)),) + self.conv_shape[1:])
            if scratch is not None:
                ws["pool"] = (scratch, dt)
        elif self.method in ("im2col", "pointwise"):
            chunks = self._im2col_chunks(batch)
            if chunks:
                n0, n1, r0, r1 = chunks[0]
                m = (n1 - n0) * (r1 - r0) * math.prod(self.geom.out_sizes[1:])
                if self.method == "im2col":
                    ws["col"] = ((m * self.w.shape[0] * self.w.shape[1],), dt)
                if (self.pool is not None and not full_conv) or (self.pool is None and strided_out):
                    ws["gemm"] = ((m, f), dt)  # a GEMM chunk finished (pooled) into the output from there
        elif self.method == "depthwise":
            per_sample = math.prod(self.geom.out_sizes) * f * dt.itemsize
            nb = max(1, min(max(batch, 1), (1 << 20) // max(1, per_sample)))
            ws["tap"] = ((nb,) + tuple(self.geom.out_sizes) + (self.channels, self.mult), dt)
            if not full_conv and strided_out:
                ws["dw"] = ((batch,) + self.conv_shape[1:], dt)  # the output is a strided view: finish from here
        return ws

    def bind(self, xp, out, ws, residual=None, border=None):
        """A runner ``run()`` computing into ``out`` from the staged input ``xp`` (both fixed arrays); ``border``:
        the zero-bordered stage whose interior ``out`` is (when :meth:`workspaces` was asked with ``bordered``)."""
        return ConvRunner(self, xp, out, ws, residual, border)


class ConvRunner:
    """One convolution bound to its arrays: every view of every block is made here, once."""

    def __init__(self, spec: ConvSpec, xp, out, ws, residual, border=None):
        self.spec, self.xp, self.out, self.residual = spec, xp, out, residual
        self.pool = spec.pool
        batch = xp.shape[0]
        if border is not None and spec.can_border:
            if not (xp.flags.c_contiguous and border.flags.c_contiguous):  # pragma: no cover - stages are contiguous
                raise ValueError(f"ConvRunner: contiguous stages expected; received strides {xp.strides} and "
                                 f"{border.strides}")
            self._bind_bordered(border, ws)
            return
        full = ws.get("conv")  # pooled non-tap paths: the whole convolution output
        contiguous = out.flags.c_contiguous
        if spec.method == "taps":
            per_sample = spec.per_sample
            rows_x = xp.reshape(batch * per_sample, spec.channels)
            last_row = batch * per_sample - max(spec.offsets)
            step = spec._tap_step(batch)
            buf = ws["block"]
            valid_index = (slice(None),) + tuple(slice(0, o) for o in spec.geom.out_sizes)
            shape = tuple(spec.geom.spans) + (spec.filters,)
            gemms = TapGemms(spec.filters, spec.dtype)  # raw cblas calls, pointers computed here once
            for w, off in zip(spec.w_taps, spec.offsets):
                gemms.add(rows_x, off, w)
            blocks = []
            for n0 in range(0, batch, step):
                n1 = min(n0 + step, batch)
                q0, q1 = n0 * per_sample, min(n1 * per_sample, last_row)
                valid = buf[:(n1 - n0) * per_sample].reshape((n1 - n0,) + shape)[valid_index]
                tmp = ws.get("pool")
                blocks.append((q0, q1, buf[:q1 - q0], self._finisher(valid, (slice(n0, n1),),
                                                                     None if tmp is None else tmp[:n1 - n0])))
            self._blocks, self._gemms = blocks, gemms
            self._run = self._run_taps
        elif spec.method == "depthwise":
            tmp = ws["tap"]
            target = full if full is not None else (out if contiguous else ws["dw"])
            y = target.reshape((batch,) + tuple(spec.geom.out_sizes) + (spec.channels, spec.mult))
            taps = ops._taps(spec.geom)
            nb = tmp.shape[0]
            self._chunks = []
            for n0 in range(0, batch, nb):
                yc, xc = y[n0:n0 + nb], xp[n0:n0 + nb]
                self._chunks.append((yc, [ops._tap_view(xc, spec.geom, tap)[..., None] for tap in taps],
                                     tmp[:yc.shape[0]]))
            self._whole = self._finisher(target, (slice(None),))
            self._run = self._run_depthwise
        else:
            g, ck = spec.w.shape[0], spec.w.shape[1]
            fg = spec.filters // g
            self._chunks = []
            for n0, n1, r0, r1 in spec._im2col_chunks(batch):
                index = (slice(n0, n1), slice(r0, r1))
                m = (n1 - n0) * (r1 - r0) * math.prod(spec.geom.out_sizes[1:])
                if spec.method == "pointwise":
                    col2, gather = xp[n0:n1, r0:r1].reshape(m, g, ck), None
                else:
                    col2, gather = ws["col"][:m * g * ck].reshape(m, g, ck), (xp[n0:n1], (r0, r1))
                if full is not None:
                    y = full[index]
                    finish = None
                elif self.pool is not None:  # whole samples: pool each chunk from the GEMM buffer
                    y = ws["gemm"][:m].reshape((n1 - n0,) + tuple(spec.geom.out_sizes) + (spec.filters,))
                    finish = self._finisher(y, (slice(n0, n1),))
                elif contiguous:
                    y = out[index]
                    finish = self._finisher(y, index)
                else:  # the output is a strided view: GEMM into a scratch chunk, finish from there
                    y = ws["gemm"][:m].reshape(out[index].shape)
                    finish = self._finisher(y, index)
                self._chunks.append((gather, col2, y.reshape(m, g, fg), finish))
            self._whole = self._finisher(full, (slice(None),)) if full is not None else None
            self._run = self._run_gemm

    def _bind_bordered(self, border, ws):
        """The grid rows straight into ``border`` (the next convolution's zero-bordered stage, same grid as the
        staged input: output ``o`` at grid row ``q`` goes to row ``q + lead``), bias and activation in place per
        block of rows (:func:`fusenet.fusion._conv_taps.bordered_gemms`'s arithmetic); the positions computed past
        the output land on the border, which the next convolution zeroes before it reads."""
        spec, xp = self.spec, self.xp
        batch, c, f = xp.shape[0], spec.channels, spec.filters
        total = batch * spec.per_sample
        lead = sum(spec.pitch)
        rows_y = border.reshape(total, f)
        gemms = TapGemms(f, spec.dtype)
        blocks = []
        if spec.narrow:
            geom, item = spec.geom, xp.itemsize
            k, d = geom.kernel_sizes, geom.dilations
            if d[-1] == 1:  # the last tap axis and the channels as one opaque run (as narrow_conv_bordered)
                inner, inner_strides, run = (), (), k[-1] * c
            else:
                inner, inner_strides, run = (k[-1],), (d[-1] * spec.pitch[-1] * c * item,), c
            unit = np.dtype((np.void, run * item))
            shape = (total - max(spec.offsets),) + tuple(k[:-1]) + inner
            strides = ((c * item,) + tuple(da * pa * c * item for da, pa in zip(d[:-1], spec.pitch[:-1]))
                       + inner_strides)
            patches = np.ndarray(shape, dtype=unit, buffer=xp, strides=strides)
            cols = ws["cols"]  # (rows, taps * C [+ 1: the ones that multiply the bias row of the kernel])
            width, patch = cols.shape[1], geom.taps * c
            gemms.add(cols, 0, spec.w_narrow)
            inner_shape = shape[1:]
            unit_strides = tuple(math.prod(inner_shape[a + 1:]) * unit.itemsize for a in range(len(inner_shape)))
            for q0, q1 in spec._border_blocks(batch):
                m = q1 - q0
                dst = np.ndarray((m,) + inner_shape, dtype=unit, buffer=cols, strides=(width * item,) + unit_strides)
                ones = cols[:m, patch] if width > patch else None
                blocks.append((dst, patches[q0:q1], ones, 0, m, rows_y[q0 + lead:q1 + lead]))
            self._bias = None  # in the GEMM
        else:
            rows_x = xp.reshape(total, c)
            for w, off in zip(spec.w_taps, spec.offsets):
                gemms.add(rows_x, off, w)
            for q0, q1 in spec._border_blocks(batch):
                blocks.append((None, None, None, q0, q1, rows_y[q0 + lead:q1 + lead]))
            self._bias = spec.bias
        self._blocks, self._gemms = blocks, gemms
        self._run = self._run_bordered

    def _run_bordered(self):
        run, bias, epilogue = self._gemms.run, self._bias, self.spec.epilogue
        for dst, src, ones, q0, q1, out in self._blocks:
            if dst is not None:
                np.copyto(dst, src)  # the patches of these rows, in cache
                if ones is not None:
                    ones.fill(1)
            run(q0, q1, out)
            if bias is not None:
                np.add(out, bias, out=out)
            if epilogue is not None:
                epilogue(out)

    def _finisher(self, src, index, pool_tmp=None):
        """The finishing steps from ``src`` (the raw convolution of the samples/rows ``index``) into ``out[index]``:
        bias, residual, activation -- or pool, bias and ReLU -- as a list of argument-free calls; ``pool_tmp``: the
        scratch of :meth:`MaxPoolInto.separable` for these samples."""
        spec, bias = self.spec, self.spec.bias
        if self.pool is not None:
            out = self.out[index[:1]]
            if pool_tmp is not None:
                steps = [lambda: self.pool.separable(src, out, pool_tmp)]
            else:
                steps = [lambda: self.pool(src, out)]
            if bias is not None:
                steps.append(lambda: np.add(out, bias, out=out))
            steps.append(lambda: np.maximum(out, 0, out=out))
            return steps
        out = self.out[index]
        same = np.shares_memory(src, out) and src.shape == out.shape
        steps = []
        # finish in ``src`` (a scratch block in cache, or the output itself), then one copy into the output
        if bias is not None:
            steps.append(lambda: np.add(src, bias, out=src))
        if self.residual is not None:
            res = self.residual[index]
            steps.append(lambda: np.add(src, res, out=src))
        if spec.epilogue is not None:
            epilogue = spec.epilogue
            steps.append(lambda: epilogue(src))
        if not same:
            steps.append(lambda: np.copyto(out, src))
        return steps

    # ------------------------------------------------------------ the four methods
    def _run_taps(self):
        run = self._gemms.run
        for q0, q1, out, finish in self._blocks:
            run(q0, q1, out)  # out = sum over taps of rows q0 + off .. q1 + off of the input @ the tap's kernel
            for f in finish:
                f()

    def _run_depthwise(self):
        k2 = self.spec.k2
        for yc, views, tmp in self._chunks:
            np.multiply(views[0], k2[0], out=yc)
            for t in range(1, len(views)):
                np.multiply(views[t], k2[t], out=tmp)
                yc += tmp
        for f in self._whole:
            f()

    def _run_gemm(self):
        spec = self.spec
        w = spec.w
        for gather, col2, y2, finish in self._chunks:
            if gather is not None:
                ops.im2col(gather[0], spec.geom, spec.groups, out=col2.reshape(-1), rows=gather[1])
            ops._gemm(col2, w, y2)
            if finish is not None:
                for f in finish:
                    f()
        if self._whole is not None:
            for f in self._whole:
                f()

    def __call__(self):
        self._run()


class StagedConv:
    """A convolution step: stage the input (copy it into the padded workspace and zero the border,
    unless the producer wrote it there already), then run the convolution."""

    __slots__ = ("copy", "borders", "run", "interior", "src", "residual")

    def __init__(self, runner, stage_array, stage, copy, residual=None):
        self.run = runner
        self.copy = copy
        self.borders = [stage_array[b] for b in stage.borders] if stage_array is not None else []
        self.interior = stage_array[stage.dst] if stage_array is not None else None
        self.src = stage.src
        self.residual = residual  # a workspace the residual is copied into (when the plan does not own it)

    def __call__(self, x, residual=None):
        if self.copy:
            np.copyto(self.interior, x[self.src])
        for b in self.borders:
            b.fill(0)
        if self.residual is not None:
            np.copyto(self.residual, residual)
        self.run()
