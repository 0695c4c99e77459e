"""A training step through ``fusenet.autodiff.GradientTape`` against the same step through the layers'
hand-written backward, side by side (the autodiff issue's targets: time within 1.1x, peak memory
within 1.2x).

The model is the MLP 784-256-128-10 (ReLU, float32, SGD, sparse categorical cross-entropy on
logits). Both contenders hold the same weights, see the same batch and take the same optimizer
step; per step:

- hand: ``zero_grad()`` on every layer, ``model(x, training=True)``, the loss's
  ``value_and_gradient``, every layer's ``backward`` in reverse order (the first layer told that
  its input gradient is not wanted, ``Layer._input_grad_needed = False``, as the model engine's
  training step does), ``optimizer.apply_gradients`` on the layers' ``gradient_pairs()``;
- tape (TensorFlow style, as in the issue)::

      with GradientTape() as tape:
          loss = call_loss(loss_fn, y, model(x, training=True))
      grads = tape.gradient(loss, model.trainable_weights)
      optimizer.apply_gradients(zip(grads, model.trainable_weights))

Time: the two steps run interleaved (one of each per round, the order alternating from round to
round, so that a busy machine slows both alike) after a warm-up; the table gives the median of
each and the median of the per-round ratios tape/hand. Memory: the ``tracemalloc`` peak of one
steady-state step of each (NumPy registers its buffers with tracemalloc; arrays that live across
steps, such as the weights and their gradients, are not part of a step's peak). The two models
stay equal (the last column is the largest weight difference after all rounds: both do the same
arithmetic).

The machine is shared (2 cores, several processes): BLAS runs on ONE thread by default
(``threadpoolctl``; ``--threads`` to change it), so that the comparison does not depend on how the
other processes share the cores, and the tape's own cost (Python bookkeeping, serial) is not hidden
behind a second BLAS thread. Run::

    cd /work/main && /work/venv/bin/python benchmarks/bench_autodiff.py             # the table
    cd /work/main && /work/venv/bin/python benchmarks/bench_autodiff.py --rounds 2000
    cd /work/main && /work/venv/bin/python -m pytest benchmarks/bench_autodiff.py --benchmark-only \\
        --benchmark-columns=min,median,rounds --benchmark-group-by=group
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, _ROOT)
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import fusenet.autodiff as ad  # noqa: E402
from fusenet import layers, losses, models, optimizers  # noqa: E402
from measure import peak_bytes, ratio  # noqa: E402

try:
    import pytest
except ImportError:  # the table mode needs no pytest
    pytest = None

__all__ = ["build_mlp", "make_steps", "interleaved", "peak_bytes", "table", "main"]

BATCHES = (32, 128, 512)
UNITS = (784, 256, 128, 10)
THREADS = 1
TARGET_TIME, TARGET_MEMORY = 1.1, 1.2


# ---------------------------------------------------------------- the two steps
def build_mlp(seed: int = 0):
    """The MLP 784-256-128-10 (ReLU between the Dense layers), float32, weights from ``seed``."""
    return models.Sequential(
        [layers.Input((UNITS[0],))]
        + [layers.Dense(u, activation="relu", seed=seed + i) for i, u in enumerate(UNITS[1:-1])]
        + [layers.Dense(UNITS[-1], seed=seed + len(UNITS))]
    )


def make_steps(batch: int, seed: int = 0):
    """``(hand_step, tape_step, models)``: two models with the same weights, one batch, one SGD each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, UNITS[0])).astype(np.float32)
    y = rng.integers(0, UNITS[-1], size=batch)
    hand_model, tape_model = build_mlp(seed), build_mlp(seed)
    hand_model(x)
    tape_model(x)
    tape_model.set_weights(hand_model.get_weights())
    loss_fn = losses.SparseCategoricalCrossentropy(from_logits=True)
    hand_opt, tape_opt = optimizers.SGD(learning_rate=0.01), optimizers.SGD(learning_rate=0.01)
    hand_layers = hand_model.layers

    first = hand_layers[0]

    def hand_step():
        for layer in hand_layers:
            layer.zero_grad()
        y_pred = hand_model(x, training=True)
        _, dy = loss_fn.value_and_gradient(y, y_pred)
        first._input_grad_needed = False  # as the model engine does: nobody reads the input's gradient
        try:
            for layer in reversed(hand_layers):
                dy = layer.backward(dy)
        finally:
            first._input_grad_needed = True
        hand_opt.apply_gradients([pair for layer in hand_layers for pair in layer.gradient_pairs()])

    def tape_step():
        with ad.GradientTape() as tape:
            loss = ad.call_loss(loss_fn, y, tape_model(x, training=True))
        grads = tape.gradient(loss, tape_model.trainable_weights)
        tape_opt.apply_gradients(zip(grads, tape_model.trainable_weights))

    return hand_step, tape_step, (hand_model, tape_model)


# ---------------------------------------------------------------- measuring
def interleaved(calls: dict, rounds: int, warmup: int = 20) -> dict:
    """``{name: [seconds per round]}``: one call of each per round, the order alternating."""
    names = list(calls)
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            start = clock()
            calls[n]()
            times[n].append(clock() - start)
    return times


def _blas() -> str:
    from threadpoolctl import threadpool_info

    pools = [f"{Path(p['filepath']).name.split('-')[0]} x{p['num_threads']}" for p in threadpool_info()
             if p.get("user_api") == "blas"]
    return ", ".join(pools) or "none found"


def row(batch: int, rounds: int) -> dict:
    """Times, ratios and memory peaks of the two steps at ``batch``."""
    hand, tape, (hand_model, tape_model) = make_steps(batch)
    times = interleaved({"hand": hand, "tape": tape}, rounds)
    peaks = {"hand": peak_bytes(hand), "tape": peak_bytes(tape)}
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(hand_model.get_weights(), tape_model.get_weights()))
    return {
        "batch": batch, "rounds": rounds,
        "hand_ms": float(np.median(times["hand"])) * 1e3, "tape_ms": float(np.median(times["tape"])) * 1e3,
        "time_ratio": ratio(times, "tape", "hand"),
        "hand_kib": peaks["hand"] / 1024, "tape_kib": peaks["tape"] / 1024,
        "memory_ratio": peaks["tape"] / peaks["hand"], "max_weight_diff": diff,
    }


def _rounds(batch: int, base: int) -> int:
    return max(20, base * 32 // batch if batch > 32 else base)


def table(rounds: int = 1000, batches=BATCHES) -> str:
    """The markdown table (header line first)."""
    from threadpoolctl import threadpool_info  # noqa: F401  (fails early without threadpoolctl)

    lines = [
        f"MLP {'-'.join(map(str, UNITS))} float32 train step, GradientTape vs hand-written backward; "
        f"BLAS {_blas()}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"targets: time <= {TARGET_TIME}x, memory <= {TARGET_MEMORY}x",
        "",
        "| batch | rounds | hand ms | tape ms | tape/hand time | hand peak KiB | tape peak KiB | tape/hand memory "
        "| max weight diff |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in batches:
        r = row(batch, _rounds(batch, rounds))
        lines.append(
            f"| {r['batch']} | {r['rounds']} | {r['hand_ms']:.3f} | {r['tape_ms']:.3f} | {r['time_ratio']:.3f}x "
            f"| {r['hand_kib']:.0f} | {r['tape_kib']:.0f} | {r['memory_ratio']:.3f}x | {r['max_weight_diff']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1000, help="interleaved rounds at batch 32 (scaled down for larger batches)")
    parser.add_argument("--threads", type=int, default=THREADS, help="BLAS threads (threadpoolctl); default 1")
    parser.add_argument("--batches", type=lambda s: tuple(int(v) for v in s.split(",")), default=BATCHES,
                        help="comma-separated batch sizes (default 32,128,512)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(table(args.rounds, args.batches))
    return 0


# ---------------------------------------------------------------- pytest-benchmark
if pytest is not None:
    @pytest.fixture(scope="module", autouse=True)
    def _one_blas_thread():
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=THREADS, user_api="blas"):
            yield

    @pytest.fixture(scope="module")
    def steps():
        return {batch: make_steps(batch)[:2] for batch in BATCHES}

    @pytest.mark.parametrize("kind", ["hand", "tape"])
    @pytest.mark.parametrize("batch", BATCHES)
    def test_mlp_train_step(benchmark, steps, batch, kind):
        step = steps[batch][0 if kind == "hand" else 1]
        benchmark.group = f"autodiff-mlp-batch{batch}"
        benchmark.name = f"{kind} b{batch}"
        benchmark.pedantic(step, rounds=max(20, 6400 // batch), warmup_rounds=5, iterations=1)


if __name__ == "__main__":
    sys.exit(main())
