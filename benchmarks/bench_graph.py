"""Compiled execution (``fusenet.graph.compile``) against interpreted execution, on the reference models
of ``/work/shared/BENCHMARKS.md`` (``benchmarks/reference_models.py``), side by side in one run.

What is measured (targets of the graph issue in brackets):

- compile time: trace, optimise, lower, generate and compile the source, plan and bind the arrays
  for the reference batch (``CompiledModel.prepare``), for the cnn and the transformer [< 100 ms];
- inference at batch 1, 8 and 64 on the mlp and the cnn: interpreted unfused (``model(x)``),
  interpreted fused (``model.fuse()(x)``) and compiled (``graph.compile(model)(x)``) [compiled at
  least 1.5x faster than interpreted fused at batch 1 and 8, no slower at batch 64];
- peak memory of one inference on the cnn at batch 64 (``tracemalloc``: NumPy registers its
  buffers): interpreted unfused, fused, and compiled counted as the arrays the plan holds between
  calls plus the peak of a call [compiled at most half of unfused].

The machine is shared and noisy: the table mode times the variants interleaved (one call of each
per round, in alternating order, on the same input) and reports medians and the median of the
per-round ratios. Run::

    cd /work/main && /work/venv/bin/python benchmarks/bench_graph.py            # the table
    cd /work/main && /work/venv/bin/python benchmarks/bench_graph.py --threads 1  # BLAS on one thread
    cd /work/main && /work/venv/bin/python -m pytest benchmarks/bench_graph.py --benchmark-only \\
        --benchmark-columns=min,median,rounds --benchmark-sort=name

``--threads`` limits the BLAS thread pools (``threadpoolctl``); by default they keep their own
setting. Every GEMM of the plans runs on NumPy's own OpenBLAS (``fusenet._blas``: SciPy's pool, if
loaded, stays idle); the header shows the pools and the load average (on a loaded machine OpenBLAS's
2-thread GEMMs wait for each other: compare the "fastest" column, and repeat).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
import reference_models as rm  # noqa: E402
from measure import peak_bytes, ratio  # noqa: E402
from fusenet import graph  # noqa: E402

try:
    import pytest
except ImportError:  # the table mode needs no pytest
    pytest = None

BATCHES = (1, 8, 64)
SPEED_MODELS = ("mlp", "cnn")
COMPILE_MODELS = ("cnn", "transformer", "mlp", "resnet")
VARIANTS = ("unfused", "fused", "compiled")


# ---------------------------------------------------------------- the contenders
def _models(name):
    """``{variant: callable}`` for the reference model ``name`` (weights from seed 0)."""
    model = rm.build_fusenet(name)
    return {"unfused": model, "fused": model.fuse(), "compiled": graph.compile(model)}


def _batch(name, n):
    x, _ = rm.make_batch(name)
    if n > x.shape[0]:
        x = np.concatenate([x] * (n // x.shape[0] + 1))
    return np.ascontiguousarray(x[:n])


def compile_ms(name, repeats=5) -> float:
    """Median ms of compiling ``name`` and preparing its plan for the reference batch."""
    model = rm.build_fusenet(name)
    x = _batch(name, rm.SPECS[name]["batch"])
    model(x)
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        graph.compile(model).prepare(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def interleaved(calls: dict, rounds: int):
    """``({name: median ms}, {name: per-round times})``: one call of each per round, alternating order."""
    names = list(calls)
    for fn in calls.values():  # warm up (and build the plans)
        fn()
        fn()
    times = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else reversed(names)):
            start = time.perf_counter()
            calls[n]()
            times[n].append(time.perf_counter() - start)
    return {n: float(np.median(t)) * 1e3 for n, t in times.items()}, times


def memory_row(name="cnn"):
    """``(unfused, fused, compiled)`` peak bytes of one inference at the reference batch; compiled = the plan's
    arrays + the peak of a steady-state call."""
    variants = _models(name)
    x = _batch(name, rm.SPECS[name]["batch"])
    for fn in variants.values():
        fn(x)
    compiled = variants["compiled"]
    steady = peak_bytes(lambda: compiled(x))
    return peak_bytes(lambda: variants["unfused"](x)), peak_bytes(lambda: variants["fused"](x)), \
        compiled.buffer_nbytes(x) + steady, compiled.buffer_nbytes(x), steady


# ---------------------------------------------------------------- table mode
def _rounds(name, n, base):
    return max(15, base // (1 if n == 1 else 2 if n == 8 else 4) // (2 if name == "cnn" else 1))


def _blas_pools() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return "BLAS pools: unknown (threadpoolctl not installed)"
    pools = [f"{Path(p['filepath']).name.split('-')[0]} x{p['num_threads']}" for p in threadpool_info()
             if p.get("user_api") == "blas"]
    return "BLAS pools: " + ", ".join(pools)


def table(rounds=60) -> str:
    lines = [f"fusenet.graph.compile vs interpreted; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
             f"{_blas_pools()}", ""]
    lines.append("compile (trace, passes, lowering, source, arrays for the reference batch): median ms")
    for name in COMPILE_MODELS:
        lines.append(f"  {name:<12} batch {rm.SPECS[name]['batch']:<3} {compile_ms(name):8.1f} ms")
    lines += ["", "inference: median ms per call (interleaved); speed-up = median of the per-round ratios (and the",
              "ratio of the fastest calls, less sensitive to other processes taking the cores)",
              f"  {'model':<6} {'batch':>5} {'unfused':>9} {'fused':>9} {'compiled':>9} {'fused/compiled':>15} "
              f"{'(fastest)':>9} {'unfused/compiled':>17}"]
    for name in SPEED_MODELS:
        variants = _models(name)
        for n in BATCHES:
            x = _batch(name, n)
            medians, times = interleaved({k: (lambda fn=fn: fn(x)) for k, fn in variants.items()},
                                         _rounds(name, n, rounds))
            fastest = min(times["fused"]) / min(times["compiled"])
            lines.append(f"  {name:<6} {n:>5} {medians['unfused']:>9.3f} {medians['fused']:>9.3f} "
                         f"{medians['compiled']:>9.3f} {ratio(times, 'fused', 'compiled'):>14.2f}x {fastest:>8.2f}x "
                         f"{ratio(times, 'unfused', 'compiled'):>16.2f}x")
    unfused, fused, compiled, held, steady = memory_row("cnn")
    mib = 2 ** 20
    lines += ["", f"peak memory, cnn inference at batch {rm.SPECS['cnn']['batch']} (tracemalloc):",
              f"  unfused {unfused / mib:.1f} MiB, fused {fused / mib:.1f} MiB, compiled {compiled / mib:.1f} MiB "
              f"(plan arrays {held / mib:.1f} + call {steady / mib:.2f}); compiled/unfused = {compiled / unfused:.2f}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds at batch 1 (fewer for larger batches)")
    parser.add_argument("--threads", type=int, default=None, help="limit the BLAS thread pools (threadpoolctl)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.threads, user_api="blas"):
            print(table(args.rounds))
    else:
        print(table(args.rounds))
    return 0


# ---------------------------------------------------------------- pytest-benchmark
if pytest is not None:
    @pytest.fixture(scope="module")
    def contenders():
        return {name: _models(name) for name in SPEED_MODELS}

    @pytest.mark.parametrize("name", COMPILE_MODELS[:2])
    def test_compile_time(benchmark, name):
        model = rm.build_fusenet(name)
        x = _batch(name, rm.SPECS[name]["batch"])
        model(x)
        benchmark.group = "graph-compile"
        benchmark.pedantic(lambda: graph.compile(model).prepare(x), rounds=5, warmup_rounds=1, iterations=1)

    @pytest.mark.parametrize("variant", VARIANTS)
    @pytest.mark.parametrize("n", BATCHES)
    @pytest.mark.parametrize("name", SPEED_MODELS)
    def test_inference(benchmark, contenders, name, n, variant):
        fn = contenders[name][variant]
        x = _batch(name, n)
        benchmark.group = f"graph-{name}-batch{n}"
        rounds = _rounds(name, n, 60)
        y = benchmark.pedantic(lambda: fn(x), rounds=rounds, warmup_rounds=2, iterations=1)
        assert y.shape == (n, rm.CLASSES)

    def test_side_by_side(benchmark, contenders, capsys):
        """The interleaved ratios and the cnn's memory, recorded in ``extra_info`` and printed."""
        for name in SPEED_MODELS:
            for n in BATCHES:
                x = _batch(name, n)
                _, times = interleaved({k: (lambda fn=fn: fn(x)) for k, fn in contenders[name].items()},
                                       _rounds(name, n, 30))
                benchmark.extra_info[f"{name} batch {n} fused/compiled"] = round(ratio(times, "fused", "compiled"), 3)
        unfused, _, compiled, _, _ = memory_row("cnn")
        benchmark.extra_info["cnn memory compiled/unfused"] = round(compiled / unfused, 3)
        benchmark.group = "graph-side-by-side"
        x = _batch("cnn", 8)
        benchmark.pedantic(lambda: contenders["cnn"]["compiled"](x), rounds=5, warmup_rounds=1, iterations=1)
        with capsys.disabled():
            print("\n" + "\n".join(f"{k}: {v}" for k, v in benchmark.extra_info.items()))


if __name__ == "__main__":
    sys.exit(main())
