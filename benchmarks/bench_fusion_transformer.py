"""Transformer fusion benchmark: the unfused TransformerEncoderBlock against FusedTransformerEncoderBlock
(and torch.nn.TransformerEncoderLayer when torch is installed), side by side in one run.

Sizes (BENCHMARKS.md, model "transformer"): batch 32, sequence 64, d_model 128, 4 heads, feed-forward
512 with exact GELU, dropout 0.1, float32; the reference model is two pre-norm blocks, the mean over
the sequence and Dense 128 -> 10. "eval" = inference (torch: ``eval()`` under ``inference_mode``, its
fused fast path); "train" = forward + backward of one block (input and every parameter gradient).
torch runs with 2 threads; NumPy's BLAS uses its default (2 threads on the reference machine).

Run::

    cd /work/main && /work/venv/bin/python -m pytest benchmarks/bench_fusion_transformer.py --benchmark-only \
        --benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name

Each pytest-benchmark group shows unfused, fused (and torch) one after the other. The machine is
shared and noisy, so ``test_side_by_side`` also times unfused and fused *interleaved* (one call of
each per round, in alternating order, the same input) and prints a table: median times, the
speed-up (the median of the per-round unfused/fused ratios) and the peak memory of one call
(``tracemalloc``); these are stored in the benchmark's ``extra_info`` (``--benchmark-json``). Target: fused block
inference at least 1.3x faster than unfused.
"""

import copy
import time
import tracemalloc

import numpy as np
import pytest

from fusenet import layers
from fusenet.fusion import (FusedDenseResidualLayerNorm, FusedLayerNormDense, FusedMultiHeadAttention,
                            FusedTransformerEncoderBlock, LayerBuilder)

try:
    import torch
except ImportError:  # the torch rows are skipped
    torch = None

BATCH, STEPS, D_MODEL, HEADS, FF, DROPOUT = 32, 64, 128, 4, 512, 0.1
ROUNDS = 30
INTERLEAVED_ROUNDS = 60


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, STEPS, D_MODEL)).astype(np.float32)
    dy = rng.normal(size=(BATCH, STEPS, D_MODEL)).astype(np.float32)
    return x, dy


@pytest.fixture(scope="module", autouse=True)
def _torch_threads():
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _block(x, norm_first=True, seed=0):
    block = layers.TransformerEncoderBlock(D_MODEL, HEADS, FF, dropout=DROPOUT, norm_first=norm_first, seed=seed)
    block(x)
    rng = np.random.default_rng(seed)  # non-trivial LN and bias values
    block.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in block.get_weights()])
    return block


def _fused(block, training=False):
    (fused,) = LayerBuilder.optimize_sequence([block], training=training)
    assert isinstance(fused, FusedTransformerEncoderBlock)
    return fused


def _torch_block(norm_first=True):
    torch.manual_seed(0)
    return torch.nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout=DROPOUT, activation="gelu",
                                            batch_first=True, norm_first=norm_first)


def _reference_model(x):
    model = [_block(x, seed=1), _block(x, seed=2), layers.GlobalAveragePooling1D(), layers.Dense(10, seed=3)]
    y = x
    for layer in model:
        y = layer(y)
    return model


def _run(model, x, training=False):
    for layer in model:
        x = layer(x, training=training)
    return x


def _train_step(block, x, dy):
    block.zero_grad()
    block(x, training=True)
    return block.backward(dy)


# ---------------------------------------------------------------- pytest-benchmark groups
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
@pytest.mark.parametrize("variant", ["1-unfused", "2-fused"])
def test_block_eval(benchmark, data, norm_first, variant):
    x, _ = data
    benchmark.group = f"transformer-block-eval-{'pre' if norm_first else 'post'}-norm"
    block = _block(x, norm_first)
    layer = block if variant == "1-unfused" else _fused(block)
    y = benchmark.pedantic(lambda: layer(x), rounds=ROUNDS, warmup_rounds=2, iterations=1)
    np.testing.assert_allclose(y, block(x), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch is None, reason="torch is not installed")
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_block_eval_torch(benchmark, data, norm_first):
    x, _ = data
    benchmark.group = f"transformer-block-eval-{'pre' if norm_first else 'post'}-norm"
    module = _torch_block(norm_first).eval()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return module(xt)

    y = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    assert tuple(y.shape) == x.shape


@pytest.mark.parametrize("variant", ["1-unfused", "2-fused"])
def test_block_train(benchmark, data, variant):
    x, dy = data
    benchmark.group = "transformer-block-train-pre-norm (forward+backward)"
    block = _block(x)
    layer = block if variant == "1-unfused" else _fused(block, training=True)
    dx = benchmark.pedantic(lambda: _train_step(layer, x, dy), rounds=ROUNDS // 2, warmup_rounds=1, iterations=1)
    assert dx.shape == x.shape and np.isfinite(dx).all()


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_block_train_torch(benchmark, data):
    x, dy = data
    benchmark.group = "transformer-block-train-pre-norm (forward+backward)"
    module = _torch_block().train()
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def step():
        module.zero_grad()
        xt.grad = None
        module(xt).backward(dyt)
        return xt.grad

    dx = benchmark.pedantic(step, rounds=ROUNDS // 2, warmup_rounds=1, iterations=1)
    assert tuple(dx.shape) == x.shape


@pytest.mark.parametrize("variant", ["1-unfused", "2-fused"])
def test_reference_model_eval(benchmark, data, variant):
    x, _ = data
    benchmark.group = "transformer-model-eval (2 blocks, mean, Dense)"
    model = _reference_model(x)
    run = model if variant == "1-unfused" else LayerBuilder.optimize_sequence(model)
    y = benchmark.pedantic(lambda: _run(run, x), rounds=ROUNDS, warmup_rounds=2, iterations=1)
    assert y.shape == (BATCH, 10)


# ---------------------------------------------------------------- interleaved, one table
def _interleaved(calls, rounds):
    """``(median ms of each of the two callables, median of the per-round time ratios first/second)``.

    Each round times both, in alternating order, so that load changes on the shared machine hit
    both alike; the median of the per-round ratios is the robust speed-up estimate."""
    times = [[] for _ in calls]
    for fn in calls:  # warm up
        fn()
    for r in range(rounds):
        order = range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            start = time.perf_counter()
            calls[i]()
            times[i].append(time.perf_counter() - start)
    ratios = np.array(times[0]) / np.array(times[1])
    return [float(np.median(t)) * 1e3 for t in times], float(np.median(ratios))


def _peak_mib(fn):
    """Peak traced memory (NumPy registers its buffers with tracemalloc) of one call, in MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _layer_rows(x):
    """The single fused layers at the block's sizes: (name, make fused, unfused call, fused call)."""
    rng = np.random.default_rng(1)
    mha = layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, seed=0)
    mha(x)
    ln_dense = [layers.LayerNormalization(epsilon=1e-5), layers.Dense(FF, activation="gelu", seed=0)]
    hidden = ln_dense[1](ln_dense[0](x))
    skip = [layers.Dense(D_MODEL, seed=0), layers.LayerNormalization(epsilon=1e-5)]
    skip[1](skip[0](hidden))
    for layer in [mha] + ln_dense + skip:
        layer.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(w.dtype) for w in layer.get_weights()])
    return [
        ("MultiHeadAttention", lambda: FusedMultiHeadAttention([mha]), lambda: mha(x), lambda f: f(x)),
        ("LN -> Dense(gelu)", lambda: FusedLayerNormDense(ln_dense), lambda: ln_dense[1](ln_dense[0](x)),
         lambda f: f(x)),
        ("Dense + res -> LN", lambda: FusedDenseResidualLayerNorm(skip), lambda: skip[1](x + skip[0](hidden)),
         lambda f: f([hidden, x])),
    ]


def test_side_by_side(benchmark, data, capsys):
    """Unfused and fused timed interleaved in one run; prints the table and records the ratios."""
    x, dy = data
    rows = []
    for norm_first in (True, False):
        block = _block(x, norm_first)
        fused = _fused(block)
        (unfused_ms, fused_ms), ratio = _interleaved([lambda: block(x), lambda: fused(x)], INTERLEAVED_ROUNDS)
        rows.append((f"block {'pre' if norm_first else 'post'}-norm", "eval", unfused_ms, fused_ms, ratio,
                     _peak_mib(lambda: block(x)), _peak_mib(lambda: fused(x))))
    block = _block(x)
    trained = _fused(copy.deepcopy(block), training=True)
    (unfused_ms, fused_ms), ratio = _interleaved([lambda: _train_step(block, x, dy),
                                                  lambda: _train_step(trained, x, dy)], INTERLEAVED_ROUNDS // 2)
    rows.append(("block pre-norm", "train", unfused_ms, fused_ms, ratio, _peak_mib(lambda: _train_step(block, x, dy)),
                 _peak_mib(lambda: _train_step(trained, x, dy))))
    for what, make_fused, unfused_call, fused_call in _layer_rows(x):
        fused_layer = make_fused()
        (unfused_ms, fused_ms), ratio = _interleaved([unfused_call, lambda: fused_call(fused_layer)],
                                                      INTERLEAVED_ROUNDS)
        rows.append((what, "eval", unfused_ms, fused_ms, ratio, _peak_mib(unfused_call),
                     _peak_mib(lambda: fused_call(fused_layer))))
    model = _reference_model(x)
    fused_model = LayerBuilder.optimize_sequence(model)
    (unfused_ms, fused_ms), ratio = _interleaved([lambda: _run(model, x), lambda: _run(fused_model, x)],
                                                  INTERLEAVED_ROUNDS)
    rows.append(("model (2 blocks)", "eval", unfused_ms, fused_ms, ratio, _peak_mib(lambda: _run(model, x)),
                 _peak_mib(lambda: _run(fused_model, x))))
    benchmark.group = "transformer-side-by-side"
    benchmark.pedantic(lambda: _run(fused_model, x), rounds=5, warmup_rounds=1, iterations=1)
    lines = [f"{'what':<20} {'mode':<6} {'unfused ms':>11} {'fused ms':>9} {'speed-up':>9} "
             f"{'unfused peak MiB':>17} {'fused peak MiB':>15}"]
    for what, mode, u, f, ratio, mem_u, mem_f in rows:
        lines.append(f"{what:<20} {mode:<6} {u:>11.2f} {f:>9.2f} {ratio:>8.2f}x {mem_u:>17.1f} {mem_f:>15.1f}")
        benchmark.extra_info[f"{what} {mode} speed-up"] = round(ratio, 3)
        benchmark.extra_info[f"{what} {mode} peak MiB (unfused, fused)"] = [round(mem_u, 2), round(mem_f, 2)]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
