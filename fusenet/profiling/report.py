"""The profiler's result: :class:`ProfileReport` (a table, ``to_dict()``, ``to_csv()``) and its parts."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TimeStats", "LayerProfile", "FusionRun", "ProfileReport"]


@dataclass
class TimeStats:
    """Median and spread of repeated timings, in milliseconds.

    ``iqr_ms`` is the interquartile range (75th minus 25th percentile): the spread that one slow
    repeat on a busy machine does not inflate; ``min_ms``/``max_ms`` bound all repeats.
    """

    median_ms: float
    iqr_ms: float
    min_ms: float
    max_ms: float
    samples_ms: list = field(default_factory=list, repr=False)

    @classmethod
    def from_seconds(cls, seconds) -> "TimeStats":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        q25, q50, q75 = np.percentile(ms, [25, 50, 75])
        return cls(float(q50), float(q75 - q25), float(ms.min()), float(ms.max()), [float(v) for v in ms])

    def to_dict(self) -> dict:
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "min_ms": self.min_ms, "max_ms": self.max_ms,
                "samples_ms": list(self.samples_ms)}


def _gflops(flops, stats):
    if flops is None or stats is None or stats.median_ms <= 0:
        return None
    return flops / (stats.median_ms * 1e-3) / 1e9


@dataclass
class LayerProfile:
    """One layer's line: nested layers (``depth > 0``) are the sublayers of the nearest line above
    with a smaller depth, and their times are part of that line's times.

    Attributes:
        path: position in the model, e.g. ``"3"`` or ``"3/body0_conv2d_4"`` (sublayer key of a composite).
        name, class_name, depth: the layer's name and class, and its nesting depth (0 = a model layer).
        output_shape: the shape of the layer's output on the profiled input (a list of shapes for lists).
        forward, backward: :class:`TimeStats` of one call (``backward`` is ``None`` at inference).
        share: the fraction of the model's measured total time (forward + backward) this layer takes.
        forward_flops, backward_flops: GEMM FLOPs per call (:mod:`fusenet.profiling.flops`), ``None``
            for layers without GEMMs.
        forward_alloc_bytes, backward_alloc_bytes: peak bytes allocated during the call above the
            level at its start (``tracemalloc``, measured in a separate, untimed pass).
        forward_retained_bytes: bytes still allocated after the forward (output and backward cache).
        replaces: for a fused layer, what it replaced (``"Conv2D(c) + BatchNormalization(bn) + ReLU(r)"``).
        self_ms: for a layer with sublayers, its median time (forward + backward) minus its sublayers'.
    """

    path: str
    name: str
    class_name: str
    depth: int
    output_shape: object
    forward: TimeStats
    backward: TimeStats | None = None
    share: float = 0.0
    forward_flops: int | None = None
    backward_flops: int | None = None
    forward_alloc_bytes: int | None = None
    backward_alloc_bytes: int | None = None
    forward_retained_bytes: int | None = None
    replaces: str | None = None
    self_ms: float | None = None

    @property
    def time_ms(self) -> float:
        """Median forward time plus median backward time (ms)."""
        return self.forward.median_ms + (self.backward.median_ms if self.backward is not None else 0.0)

    @property
    def flops(self):
        """Forward plus backward FLOPs (``None`` for layers without GEMMs)."""
        if self.forward_flops is None:
            return None
        return self.forward_flops + (self.backward_flops or 0)

    @property
    def forward_gflops_per_s(self):
        return _gflops(self.forward_flops, self.forward)

    @property
    def backward_gflops_per_s(self):
        return _gflops(self.backward_flops, self.backward)

    @property
    def gflops_per_s(self):
        """Achieved GFLOP/s over forward and backward together."""
        if self.flops is None or self.time_ms <= 0:
            return None
        return self.flops / (self.time_ms * 1e-3) / 1e9

    def to_dict(self) -> dict:
        return {
            "path": self.path, "name": self.name, "class_name": self.class_name, "depth": self.depth,
            "output_shape": _jsonable_shape(self.output_shape),
            "forward": self.forward.to_dict(), "backward": None if self.backward is None else self.backward.to_dict(),
            "time_ms": self.time_ms, "share": self.share, "self_ms": self.self_ms,
            "forward_flops": self.forward_flops, "backward_flops": self.backward_flops,
            "forward_gflops_per_s": self.forward_gflops_per_s, "backward_gflops_per_s": self.backward_gflops_per_s,
            "forward_alloc_bytes": self.forward_alloc_bytes, "backward_alloc_bytes": self.backward_alloc_bytes,
            "forward_retained_bytes": self.forward_retained_bytes, "replaces": self.replaces,
        }


@dataclass
class FusionRun:
    """A run of layers that a fusion pattern matches (``fusion.report``), with what it costs now.

    ``position`` is the :attr:`LayerProfile.path` of the run's first layer.

    ``time_ms``/``share``: the run's summed median time and its fraction of the model's total;
    ``fused_time_ms``: the median time of the fused layer that replaces it in ``model.fuse()``,
    measured in the same run; ``saving_ms`` = ``time_ms - fused_time_ms`` (the estimated saving of
    fusing this run) and ``saving_share`` its fraction of the total; ``estimate``: the fusion
    engine's own note (intermediate arrays avoided).
    """

    position: str
    layers: list
    pattern: str
    time_ms: float | None
    share: float | None
    fused_time_ms: float | None = None
    saving_ms: float | None = None
    saving_share: float | None = None
    estimate: str = ""

    def to_dict(self) -> dict:
        return {"position": self.position, "layers": list(self.layers), "pattern": self.pattern,
                "time_ms": self.time_ms, "share": self.share, "fused_time_ms": self.fused_time_ms,
                "saving_ms": self.saving_ms, "saving_share": self.saving_share, "estimate": self.estimate}


def _jsonable_shape(shape):
    if shape is None:
        return None
    if isinstance(shape, list):
        return [list(s) for s in shape]
    return list(shape)


def _fmt_shape(shape) -> str:
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(str(tuple(s)) for s in shape)
    return str(tuple(shape))


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fmt_num(value, fmt) -> str:
    return "-" if value is None else format(value, fmt)


_CSV_COLUMNS = [
    "path", "depth", "name", "class_name", "output_shape", "forward_median_ms", "forward_iqr_ms", "forward_min_ms",
    "backward_median_ms", "backward_iqr_ms", "backward_min_ms", "time_ms", "share", "self_ms", "forward_flops",
    "backward_flops", "gflops_per_s", "forward_alloc_bytes", "backward_alloc_bytes", "forward_retained_bytes",
    "replaces",
]


@dataclass
class ProfileReport:
    """What :func:`fusenet.profiling.profile` measured. ``print(report)`` shows the table;
    :meth:`to_dict` and :meth:`to_csv` give the same data for programs and spreadsheets.

    Attributes:
        model_name, input_shape, dtype, training, repeats: what was profiled, and how.
        layers: :class:`LayerProfile` lines in model order, sublayers right after their parent.
        total: :class:`TimeStats` of the whole model (forward, and in training loss and backward),
            measured the same way in the same repeats, without per-layer timers.
        loss: :class:`TimeStats` of the loss value and gradient (training with ``y`` only).
        pass_sum: :class:`TimeStats` of the per-layer passes, each the sum of its model layers' (and
            the loss's) times; ``samples_ms[i]`` was measured next to ``total.samples_ms[i]``.
        fusion_runs: the runs a fusion pattern matches (:class:`FusionRun`).
        fusion_notes: runs that were not fused, and why (``{"position", "layers", "pattern", "reason"}``;
            ``position`` as in :class:`FusionRun`).
        fused_total: :class:`TimeStats` of ``model.fuse()`` on the same input (``None`` if not measured).
    """

    model_name: str
    input_shape: tuple
    dtype: str
    training: bool
    repeats: int
    layers: list
    total: TimeStats
    loss: TimeStats | None = None
    pass_sum: TimeStats | None = None
    fusion_runs: list = field(default_factory=list)
    fusion_notes: list = field(default_factory=list)
    fused_total: TimeStats | None = None

    # ------------------------------------------------------------ derived figures
    @property
    def top_level(self) -> list:
        """The model's own layers (depth 0)."""
        return [row for row in self.layers if row.depth == 0]

    @property
    def layer_sum_ms(self) -> float:
        """Sum of the median times of the model's layers (and of the loss), the figures of the table."""
        return sum(row.time_ms for row in self.top_level) + (self.loss.median_ms if self.loss is not None else 0.0)

    @property
    def coverage(self) -> float:
        """How well the per-layer times add up to the model's total: the median over the repeats of
        (sum of the layer times of a per-layer pass) / (the total measured next to it); 1.0 = exactly.

        Pairing passes that ran side by side keeps a busy machine's slow spells out of the ratio; on a
        quiet machine it equals ``layer_sum_ms / total.median_ms``.
        """
        if self.pass_sum is None:
            return self.layer_sum_ms / self.total.median_ms if self.total.median_ms > 0 else float("nan")
        ratios = [s / t for s, t in zip(self.pass_sum.samples_ms, self.total.samples_ms) if t > 0]
        return float(np.median(ratios)) if ratios else float("nan")

    @property
    def total_flops(self):
        """GEMM FLOPs of one pass (forward, plus backward in training), ``None`` when no layer has GEMMs."""
        values = [row.flops for row in self.top_level if row.flops is not None]
        return sum(values) if values else None

    @property
    def fuse_speedup(self):
        """Model total over ``model.fuse()`` total (> 1: the fused model is faster)."""
        if self.fused_total is None or self.fused_total.median_ms <= 0:
            return None
        return self.total.median_ms / self.fused_total.median_ms

    # ------------------------------------------------------------ output
    def to_dict(self) -> dict:
        """Everything as plain Python values (JSON-safe)."""
        return {
            "model": self.model_name, "input_shape": list(self.input_shape), "dtype": self.dtype,
            "training": self.training, "repeats": self.repeats,
            "layers": [row.to_dict() for row in self.layers],
            "total": self.total.to_dict(), "loss": None if self.loss is None else self.loss.to_dict(),
            "layer_sum_ms": self.layer_sum_ms, "pass_sum": None if self.pass_sum is None else self.pass_sum.to_dict(),
            "coverage": self.coverage, "total_flops": self.total_flops,
            "fusion_runs": [run.to_dict() for run in self.fusion_runs], "fusion_notes": [dict(n) for n in self.fusion_notes],
            "fused_total": None if self.fused_total is None else self.fused_total.to_dict(),
            "fuse_speedup": self.fuse_speedup,
        }

    def to_csv(self, path=None) -> str:
        """One CSV line per layer (columns: path, depth, name, class_name, output_shape, the forward
        and backward median/IQR/min in ms, time_ms, share, self_ms, FLOPs, gflops_per_s, the bytes,
        replaces). Returns the text and, when ``path`` is given, also writes it there."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for row in self.layers:
            back = row.backward
            writer.writerow([
                row.path, row.depth, row.name, row.class_name, _fmt_shape(row.output_shape),
                row.forward.median_ms, row.forward.iqr_ms, row.forward.min_ms,
                "" if back is None else back.median_ms, "" if back is None else back.iqr_ms,
                "" if back is None else back.min_ms, row.time_ms, row.share,
                "" if row.self_ms is None else row.self_ms, _blank(row.forward_flops), _blank(row.backward_flops),
                _blank(row.gflops_per_s), _blank(row.forward_alloc_bytes), _blank(row.backward_alloc_bytes),
                _blank(row.forward_retained_bytes), row.replaces or "",
            ])
        text = buffer.getvalue()
        if path is not None:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                fh.write(text)
        return text

    def __str__(self) -> str:
        mode = "training (forward + backward)" if self.training else "inference"
        lines = [
            f"Profile of {self.model_name} on input {tuple(self.input_shape)} {self.dtype}, {mode}, "
            f"{self.repeats} repeats (median ms; ± = interquartile range)",
        ]
        labels = [f"{'  ' * row.depth}{row.name} ({row.class_name})" for row in self.layers]
        shapes = [_fmt_shape(row.output_shape) for row in self.layers]
        lw = min(max([len("(loss value and gradient)")] + [len(s) for s in labels]), 64)
        sw = min(max([len("Output shape")] + [len(s) for s in shapes]), 32)
        head = (f"{'Layer (type)':<{lw}} {'Output shape':<{sw}} {'Fwd ms':>9} {'±':>7} {'Bwd ms':>9} {'±':>7} "
                f"{'Share':>6} {'GFLOP':>8} {'GFLOP/s':>8} {'Alloc':>10}")
        lines += [head, "-" * len(head)]
        for row, label, shape in zip(self.layers, labels, shapes):
            back = row.backward
            flops = row.flops
            lines.append(
                f"{label:<{lw}.{lw}} {shape:<{sw}.{sw}} {_fmt_ms(row.forward.median_ms):>9} "
                f"{_fmt_ms(row.forward.iqr_ms):>7} {_fmt_ms(None if back is None else back.median_ms):>9} "
                f"{_fmt_ms(None if back is None else back.iqr_ms):>7} {row.share:>6.1%} "
                f"{_fmt_num(None if flops is None else flops / 1e9, '.3f'):>8} {_fmt_num(row.gflops_per_s, '.1f'):>8} "
                f"{_fmt_bytes(_alloc(row)):>10}"
            )
            if row.replaces:
                lines.append(f"{'  ' * row.depth}    replaces: {row.replaces}")
        if self.loss is not None:
            lines.append(f"{'(loss value and gradient)':<{lw}} {'':<{sw}} {_fmt_ms(self.loss.median_ms):>9} "
                         f"{_fmt_ms(self.loss.iqr_ms):>7} {'':>9} {'':>7} {self.loss.median_ms / self.total.median_ms:>6.1%}")
        lines.append("-" * len(head))
        flops = self.total_flops
        rate = "" if flops is None else (f"; GEMM work {flops / 1e9:.3f} GFLOP, "
                                         f"{flops / (self.total.median_ms * 1e-3) / 1e9:.1f} GFLOP/s overall")
        lines.append(f"Model total {self.total.median_ms:.3f} ms (± {self.total.iqr_ms:.3f}); the layers' medians add up "
                     f"to {self.layer_sum_ms:.3f} ms; per pass the layers add up to {self.coverage:.1%} of the total "
                     f"measured next to it{rate}")
        if self.fusion_runs or self.fusion_notes:
            lines.append("Fusion (fusion.report):")
        for run in self.fusion_runs:
            what = " -> ".join(run.layers)
            lines.append(f"  [{run.position}] {what}")
            cost = f"{run.time_ms:.3f} ms, {run.share:.1%} of the time" if run.time_ms is not None else "time not measured"
            saving = ""
            if run.saving_ms is not None:
                saving = (f"; fused layer {run.fused_time_ms:.3f} ms, saving {run.saving_ms:.3f} ms "
                          f"({run.saving_share:.1%} of the total)")
            lines.append(f"      pattern {run.pattern}: {cost}{saving}")
        for note in self.fusion_notes:
            lines.append(f"  [{note['position']}] not fused ({note['pattern']}): {note['reason']}")
        if self.fused_total is not None:
            lines.append(f"model.fuse(): {self.total.median_ms:.3f} ms -> {self.fused_total.median_ms:.3f} ms "
                         f"(speed-up {self.fuse_speedup:.2f}x, measured side by side)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<ProfileReport {self.model_name} {'training' if self.training else 'inference'} "
                f"total={self.total.median_ms:.3f}ms layers={len(self.layers)}>")


def _alloc(row):
    values = [v for v in (row.forward_alloc_bytes, row.backward_alloc_bytes) if v is not None]
    return max(values) if values else None


def _blank(value):
    return "" if value is None else value
