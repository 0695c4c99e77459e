"""Conv2D forward/backward throughput next to a plain float32 GEMM of the same matrix shapes, and torch.

Sizes of the reference cnn (``/work/shared/BENCHMARKS.md``): batch 64, 3x3 "same", no bias,
``32x32, 32 -> 32`` and ``16x16, 64 -> 64``, float32, 2 threads.

- conv forward FLOPs: ``2 * N * Ho * Wo * kh * kw * Cin * Cout``; the GEMM baseline is ``A @ B`` with
  ``A (N * Ho * Wo, kh * kw * Cin)`` and ``B (kh * kw * Cin, Cout)`` (the im2col shapes), measured in
  the same run.
- conv backward FLOPs: twice the forward (kernel and input gradients); the GEMM baseline is the sum of
  the times of ``A^T @ dY`` and ``dY @ B^T`` at the same full shapes.
- torch: ``torch.nn.functional.conv2d`` (NCHW, ``torch.set_num_threads(2)``), forward under
  ``torch.inference_mode()``, backward = ``torch.autograd.grad`` for input and weight.

Run ``pytest benchmarks -k conv2d --benchmark-only`` (grouped per size and direction, fusenet next to
torch; GFLOP/s, the same-shape GEMM's GFLOP/s and the ratio, from interleaved rounds, in
``extra_info``: add ``--benchmark-json=out.json`` to keep them), or ``python benchmarks/bench_conv.py
[rounds]`` for a table from interleaved rounds (each round runs every operation once; the table
reports the fastest round of each operation, the most robust statistic on a shared machine, and the
median next to it).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import fusenet  # noqa: F401
except ImportError:  # running ``python benchmarks/bench_conv.py`` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusenet import layers

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is optional
    torch = None

CONFIGS = {
    "32x32_32to32": dict(batch=64, size=32, cin=32, cout=32),
    "16x16_64to64": dict(batch=64, size=16, cin=64, cout=64),
}
KERNEL = 3


class Case:
    """Arrays and callables for one configuration (fusenet layer, GEMM baseline, torch)."""

    def __init__(self, batch, size, cin, cout, seed=0):
        rng = np.random.default_rng(seed)
        self.shape = (batch, size, size, cin)
        self.flops = 2 * batch * size * size * KERNEL * KERNEL * cin * cout
        self.x = rng.standard_normal(self.shape, dtype=np.float32)
        self.layer = layers.Conv2D(cout, KERNEL, padding="same", use_bias=False, dtype="float32", seed=seed)
        self.layer(self.x)
        # a second layer with the same weights keeps the training cache that backward reads
        self.train_layer = layers.Conv2D(cout, KERNEL, padding="same", use_bias=False, dtype="float32")
        self.train_layer(self.x)
        self.train_layer.set_weights(self.layer.get_weights())
        self.dy = rng.standard_normal((batch, size, size, cout), dtype=np.float32)
        m, k = batch * size * size, KERNEL * KERNEL * cin
        self.a = rng.standard_normal((m, k), dtype=np.float32)
        self.b = np.ascontiguousarray(self.layer.params["kernel"].reshape(k, cout))
        self.gy = self.dy.reshape(m, cout)
        self.c = np.empty((m, cout), dtype=np.float32)
        if torch is not None:
            torch.set_num_threads(2)
            self.xt = torch.from_numpy(self.x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
            self.wt = torch.from_numpy(self.layer.params["kernel"].transpose(3, 2, 0, 1).copy()).requires_grad_(True)
            self.gt = torch.from_numpy(self.dy.transpose(0, 3, 1, 2).copy())
            self.yt = F.conv2d(self.xt, self.wt, padding=1)

    # fusenet
    def conv_forward(self):
        return self.layer(self.x, training=False)

    def conv_backward(self):
        return self.train_layer.backward(self.dy)

    def prepare_backward(self):
        self.train_layer(self.x, training=True)

    # GEMM baselines at the im2col shapes
    def gemm_forward(self):
        return np.matmul(self.a, self.b, out=self.c)

    def gemm_backward(self):
        return self.a.T @ self.gy, self.gy @ self.b.T

    # torch
    def torch_forward(self):
        with torch.inference_mode():
            return F.conv2d(self.xt, self.wt, padding=1)

    def torch_backward(self):
        return torch.autograd.grad(self.yt, (self.xt, self.wt), self.gt, retain_graph=True)


def _interleaved(ops: dict, rounds: int) -> dict:
    for fn in ops.values():  # warm up
        fn()
    times = {name: [] for name in ops}
    for _ in range(rounds):
        for name, fn in ops.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def measure(case: Case, rounds: int = 15) -> dict:
    """``{name: [seconds, ...]}``: fusenet and the GEMM baseline in interleaved rounds (every
    operation once per round), then torch in its own interleaved rounds.

    torch and NumPy's OpenBLAS each keep their worker threads spinning for a while after a call;
    interleaving the two libraries call by call would make each run against the other's spinning
    threads on a 2-core machine, so the libraries get separate phases with a pause in between.
    """
    case.prepare_backward()
    times = _interleaved({"conv_fwd": case.conv_forward, "gemm_fwd": case.gemm_forward,
                          "conv_bwd": case.conv_backward, "gemm_bwd": case.gemm_backward}, rounds)
    if torch is not None:
        time.sleep(0.3)
        times.update(_interleaved({"torch_fwd": case.torch_forward, "torch_bwd": case.torch_backward}, rounds))
        time.sleep(0.3)
    return times


def summarize(case: Case, times: dict) -> dict:
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"flops_forward": case.flops}
    for name, t in best.items():
        flops = case.flops * (2 if name.endswith("bwd") else 1)
        out[f"{name}_ms"] = round(t * 1e3, 3)
        out[f"{name}_median_ms"] = round(med[name] * 1e3, 3)
        out[f"{name}_gflops"] = round(flops / t / 1e9, 1)
    out["forward_ratio_to_gemm"] = round(best["gemm_fwd"] / best["conv_fwd"], 3)
    out["backward_ratio_to_gemm"] = round(best["gemm_bwd"] / best["conv_bwd"], 3)
    return out


# ---------------------------------------------------------------- pytest-benchmark
_CASES: dict = {}


def _case(name) -> Case:
    if name not in _CASES:
        _CASES[name] = Case(**CONFIGS[name])
    return _CASES[name]


_METHODS = {"conv_fwd": "conv_forward", "conv_bwd": "conv_backward", "torch_fwd": "torch_forward",
            "torch_bwd": "torch_backward"}


def _run(benchmark, name, op):
    """Time ``op`` with pytest-benchmark, then put GFLOP/s and the ratio to the same-shape GEMM,
    from interleaved rounds measured right after, into ``extra_info``."""
    import pytest

    if op.startswith("torch") and torch is None:
        pytest.skip("torch is not installed")
    case = _case(name)
    case.prepare_backward()
    time.sleep(0.3)  # let the other library's worker threads stop spinning (see measure)
    benchmark.pedantic(getattr(case, _METHODS[op]), rounds=10, iterations=1, warmup_rounds=2)
    kind = op[-3:]
    flops = case.flops * (2 if kind == "bwd" else 1)
    gemm = case.gemm_forward if kind == "fwd" else case.gemm_backward
    if op.startswith("torch"):
        gemm_times = _interleaved({"gemm": gemm}, 7)
        ratio = min(gemm_times["gemm"]) / benchmark.stats.stats.min
    else:
        times = _interleaved({"op": getattr(case, _METHODS[op]), "gemm": gemm}, 7)
        gemm_times = times
        ratio = min(times["gemm"]) / min(times["op"])
    benchmark.extra_info.update({
        "config": name,
        "gflops": round(flops / benchmark.stats.stats.min / 1e9, 1),
        "gemm_gflops_same_shapes": round(flops / min(gemm_times["gemm"]) / 1e9, 1),
        "ratio_to_gemm": round(ratio, 3),
    })


def pytest_generate_tests(metafunc):  # pragma: no cover - collection hook
    if "config_name" in metafunc.fixturenames:
        metafunc.parametrize("config_name", list(CONFIGS))


def test_conv2d_forward(benchmark, config_name):
    benchmark.group = f"conv2d forward {config_name}"
    _run(benchmark, config_name, "conv_fwd")


def test_conv2d_backward(benchmark, config_name):
    benchmark.group = f"conv2d backward {config_name}"
    _run(benchmark, config_name, "conv_bwd")


def test_torch_conv2d_forward(benchmark, config_name):
    benchmark.group = f"conv2d forward {config_name}"
    _run(benchmark, config_name, "torch_fwd")


def test_torch_conv2d_backward(benchmark, config_name):
    benchmark.group = f"conv2d backward {config_name}"
    _run(benchmark, config_name, "torch_bwd")


# ---------------------------------------------------------------- script
def main(rounds: int = 15) -> None:
    print(f"Conv2D 3x3 'same', no bias, float32; numpy GEMM threads: OpenBLAS default; torch threads: "
          f"{torch.get_num_threads() if torch is not None else '-'}; fastest of {rounds} interleaved rounds (median)")
    header = f"{'config':<14} {'op':<4} {'fusenet ms':>16} {'GFLOP/s':>8} {'GEMM ms':>16} {'GFLOP/s':>8} {'ratio':>6} {'torch ms':>16}"
    print(header)
    print("-" * len(header))
    for name, cfg in CONFIGS.items():
        case = Case(**cfg)
        s = summarize(case, measure(case, rounds))
        for kind in ("fwd", "bwd"):
            torch_col = (f"{s[f'torch_{kind}_ms']:7.2f} ({s[f'torch_{kind}_median_ms']:6.2f})"
                         if torch is not None else "-")
            ratio = s["forward_ratio_to_gemm" if kind == "fwd" else "backward_ratio_to_gemm"]
            print(f"{name:<14} {kind:<4} {s[f'conv_{kind}_ms']:7.2f} ({s[f'conv_{kind}_median_ms']:6.2f}) "
                  f"{s[f'conv_{kind}_gflops']:8.1f} {s[f'gemm_{kind}_ms']:7.2f} ({s[f'gemm_{kind}_median_ms']:6.2f}) "
                  f"{s[f'gemm_{kind}_gflops']:8.1f} {ratio:6.0%} {torch_col:>16}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
