"""fusenet (unfused and ``model.fuse()``) against PyTorch eager on the reference models, side by side.

Usage::

    python benchmarks/compare.py                      # all models, eval and train step, 15 repeats
    python benchmarks/compare.py --quick              # 5 repeats, 10 s per case at most (under 2 minutes)
    python benchmarks/compare.py --models cnn,resnet --modes eval --repeats 30 --json results.json

Everything runs in one process. For each model and mode the three contenders (fusenet, fused, PyTorch
with 2 threads, ``eval()`` under ``torch.inference_mode()`` for inference) are built with the same
weights (``benchmarks/reference_models.py``), warmed up, then run in rounds: one run of each per
round, in an order that rotates from round to round, so that a busy machine slows all of them alike;
the ratios are the medians of the ratios within each round.
NumPy's OpenBLAS keeps its worker threads spinning for a while (~0.1 s) after a call, and they would
take a core from a PyTorch run that follows at once, so when the library changes there is a short
pause and then one untimed call that wakes the new library's threads; runs of the same library follow
each other directly. Every timed run is thus a steady-state run, as in a training loop. The table gives the
median of each contender and the ratios of the medians (< 1x: faster than PyTorch); without torch
installed its columns read "–". The output is a stable markdown table, printed to stdout after a
header line naming the machine and the command; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import reference_models as rm  # noqa: E402
from measure import ratio  # noqa: E402

__all__ = ["main", "run_case", "format_table"]

MODES = ("eval", "train")
PAUSE_AFTER_NUMPY = 0.15  # s: OpenBLAS worker threads spin ~0.1 s after the last call
PAUSE_AFTER_TORCH = 0.02  # s: torch's OpenMP threads spin only briefly


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = f"Python {platform.python_version()}, NumPy {np.__version__}"
    if rm.torch is not None:
        versions += f", PyTorch {rm.torch.__version__.split('+')[0]}"
    return f"{model}, {os.cpu_count()} cores; {versions}"


def _contenders(name: str, mode: str, with_torch: bool) -> dict:
    """``{label: (library, callable)}`` for one model and mode, all holding the same weights."""
    training = mode == "train"
    model = rm.build_fusenet(name)
    x, y = rm.make_batch(name)
    fused = rm.compiled(model.fuse(training=training))
    if training:
        out = {"fusenet": ("numpy", lambda: rm.fusenet_train_step(model, x, y)),
               "fused": ("numpy", lambda: rm.fusenet_train_step(fused, x, y))}
    else:
        out = {"fusenet": ("numpy", lambda: rm.fusenet_eval(model, x)),
               "fused": ("numpy", lambda: rm.fusenet_eval(fused, x))}
    if with_torch:
        module = rm.build_torch(name, model)
        xt, yt = rm.torch_batch(name, x, y)
        if training:
            module.train()
            optimizer = rm.torch_optimizer(module)
            out["torch"] = ("torch", lambda: rm.torch_train_step(module, optimizer, xt, yt))
        else:
            module.eval()
            out["torch"] = ("torch", lambda: rm.torch_eval(module, xt))
    return out


def run_case(name: str, mode: str, repeats: int, warmup: int, with_torch: bool, budget=None) -> dict:
    """``{label: [seconds, ...]}`` of ``repeats`` rotating rounds for one model and mode.

    With a ``budget`` (seconds), rounds stop once the case has taken that long (at least 3 rounds), so
    that a quick run stays short on a busy machine."""
    contenders = _contenders(name, mode, with_torch)
    labels = list(contenders)
    last = None

    def run(label):
        nonlocal last
        library, fn = contenders[label]
        if last is not None and last != library:
            # let the other library's threads go idle, then wake this library's threads with an untimed call
            time.sleep(PAUSE_AFTER_NUMPY if last == "numpy" else PAUSE_AFTER_TORCH)
            fn()
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        last = library
        return elapsed

    for label in labels:
        for _ in range(warmup):
            run(label)
    times = {label: [] for label in labels}
    start = time.perf_counter()
    for r in range(repeats):
        if budget is not None and r >= 3 and time.perf_counter() - start > budget:
            break
        k = r % len(labels)
        for label in labels[k:] + labels[:k]:
            times[label].append(run(label))
    if last == "numpy":
        time.sleep(PAUSE_AFTER_NUMPY)
    return times


def _ms(seconds) -> float:
    return statistics.median(seconds) * 1e3


def format_table(results: dict) -> str:
    """The markdown table of ``{(model, mode): {label: [seconds]}}``: median times, and ratios as medians
    of the per-round ratios."""
    lines = [
        f"| model · mode | PyTorch eager (ms) | fusenet (ms) | fusenet fused (ms) | fusenet / PyTorch | "
        f"fused / PyTorch | fusion speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, mode), times in results.items():
        unfused, fused = _ms(times["fusenet"]), _ms(times["fused"])
        torch_ms = _ms(times["torch"]) if "torch" in times else None
        mode_label = "eval" if mode == "eval" else "train step"
        cells = [f"{name} · {mode_label}", "–" if torch_ms is None else f"{torch_ms:.2f}", f"{unfused:.2f}",
                 f"{fused:.2f}", "–" if torch_ms is None else f"{ratio(times, 'fusenet', 'torch'):.2f}x",
                 "–" if torch_ms is None else f"{ratio(times, 'fused', 'torch'):.2f}x",
                 f"{ratio(times, 'fusenet', 'fused'):.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python benchmarks/compare.py",
                                     description="fusenet (unfused, fused) vs PyTorch eager on the reference models.")
    parser.add_argument("--quick", action="store_true",
                        help="5 repeats, 1 warm-up run and a 10 s budget per model and mode (under 2 minutes)")
    parser.add_argument("--models", default=",".join(rm.MODELS), help=f"comma-separated subset of {','.join(rm.MODELS)}")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of eval,train")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per model and mode (default 15, quick 5)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up runs per contender (default 2, quick 1)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per model and mode after which no new round starts (at least 3 rounds; "
                             "default none, quick 10)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    parser.add_argument("--json", default=None, help="also write every timing to this JSON file")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in models if m not in rm.MODELS] + [m for m in modes if m not in MODES]
    if bad or not models or not modes:
        parser.error(f"unknown model or mode {bad}; models: {list(rm.MODELS)}, modes: {list(MODES)}")
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    budget = args.budget if args.budget is not None else (10.0 if args.quick else None)
    if repeats < 1 or warmup < 0 or (budget is not None and budget <= 0):
        parser.error(f"expected --repeats >= 1, --warmup >= 0 and --budget > 0. Received: repeats={repeats}, "
                     f"warmup={warmup}, budget={budget}")
    return args, models, modes, repeats, warmup, budget


def main(argv=None) -> int:
    args, models, modes, repeats, warmup, budget = _parse(argv)
    with_torch = rm.torch is not None and not args.no_torch
    if with_torch:
        rm.torch.set_num_threads(2)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    results = {}
    for name in models:
        for mode in modes:
            t0 = time.perf_counter()
            results[(name, mode)] = run_case(name, mode, repeats, warmup, with_torch, budget)
            print(f"{name} · {mode}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:] if argv is None else argv)
    runs = sorted({len(t) for times in results.values() for t in times.values()})
    runs_text = f"{runs[0]}" if len(runs) == 1 else f"{runs[0]}-{runs[-1]}"
    load = "" if load_before is None else f", load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after"
    print(f"Machine: {_machine()}. float32, PyTorch with 2 threads. Median times of {runs_text} alternating runs per "
          f"contender; ratios are medians of the per-round ratios (< 1x: faster than PyTorch eager). "
          f"Command: `{command.strip()}` ({elapsed:.0f} s{load}).")
    print()
    print(format_table(results))
    if args.json:
        payload = {"machine": _machine(), "repeats": repeats, "warmup": warmup, "seconds": elapsed,
                   "results": [{"model": n, "mode": m, "times_s": t} for (n, m), t in results.items()]}
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
