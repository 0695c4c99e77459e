"""Every GEMM-based layer at a realistic size: forward (inference), backward and one optimizer step.

Run::

    cd /work/main && /work/venv/bin/python -m pytest benchmarks/bench_layers.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name

Each layer case has its own group (``layer:<case>``). ``extra_info`` of the forward and backward rows:
``flops`` (:mod:`fusenet.profiling.flops`: ``2 * m * k * n`` per GEMM; backward twice the forward),
``gflops_per_s`` (over the benchmark's median), and ``gemm_gflops_per_s``: plain float32
``np.matmul`` on the layer's own matrix shapes, measured in the same run (``benchmarks/gemm_baseline.py``),
so ``of_gemm`` = ``gflops_per_s / gemm_gflops_per_s`` is the distance to what the BLAS reaches on those
shapes. The optimizer step (SGD with momentum 0.9 over the layer's parameters) has no GEMM; its rows
report the parameter count and the memory traffic ``bytes_per_s`` (read parameter, gradient and
velocity, write parameter and velocity: 20 bytes per float32 parameter).

Sizes follow the reference models (``/work/shared/BENCHMARKS.md``): the mlp's Dense 784->512 at batch
256, the transformer's feed-forward Dense 128->512 on 32 x 64 tokens, the cnn's 3x3 convolutions at
64 x 32 x 32 x 32 and 64 x 16 x 16 x 64, recurrent layers at batch 64, 100 steps, 128 -> 256, attention
at batch 32, sequence 64, d_model 128 with 4 heads.
"""

from __future__ import annotations

import numpy as np
import pytest

from fusenet import layers, optimizers
from gemm_baseline import flops_of, gemm_gflops, layer_gemms

# case -> (layer factory, input shape, rounds)
CASES = {
    "dense_784x512_b256": (lambda: layers.Dense(512), (256, 784), 20),
    "dense_ffn_128x512_t2048": (lambda: layers.Dense(512, activation="gelu"), (32, 64, 128), 20),
    "conv1d_k3_128x128": (lambda: layers.Conv1D(128, 3, padding="same"), (32, 128, 128), 10),
    "conv2d_3x3_32x32_c32": (lambda: layers.Conv2D(32, 3, padding="same", use_bias=False), (64, 32, 32, 32), 8),
    "conv2d_3x3_16x16_c64": (lambda: layers.Conv2D(64, 3, padding="same", use_bias=False), (64, 16, 16, 64), 8),
    "conv2d_1x1_s2_c64to128": (lambda: layers.Conv2D(128, 1, strides=2, padding="same", use_bias=False),
                               (64, 16, 16, 64), 10),
    "conv3d_3x3x3_16to32": (lambda: layers.Conv3D(32, 3, padding="same"), (4, 16, 16, 16, 16), 5),
    "depthwise_3x3_16x16_c128": (lambda: layers.DepthwiseConv2D(3, padding="same"), (64, 16, 16, 128), 8),
    "separable_3x3_16x16_c64": (lambda: layers.SeparableConv2D(64, 3, padding="same"), (64, 16, 16, 64), 8),
    "conv1d_transpose_k3_s2_128to64": (lambda: layers.Conv1DTranspose(64, 3, strides=2, padding="same"),
                                       (32, 128, 128), 10),
    "conv2d_transpose_3x3_s2_64to32": (lambda: layers.Conv2DTranspose(32, 3, strides=2, padding="same"),
                                       (64, 16, 16, 64), 5),
    "simple_rnn_128to256_t100": (lambda: layers.SimpleRNN(256), (64, 100, 128), 5),
    "lstm_128to256_t100": (lambda: layers.LSTM(256), (64, 100, 128), 5),
    "gru_128to256_t100": (lambda: layers.GRU(256), (64, 100, 128), 5),
    "bidirectional_lstm_128to128_t100": (lambda: layers.Bidirectional(layers.LSTM(128)), (64, 100, 128), 5),
    "mha_4x32_t64": (lambda: layers.MultiHeadAttention(4, 32), (32, 64, 128), 10),
    "transformer_block_128_ff512": (lambda: layers.TransformerEncoderBlock(128, 4, 512, dropout=0.1), (32, 64, 128), 8),
}


class Case:
    """A built layer, its input, an output gradient and the GEMM list of its forward and backward."""

    def __init__(self, name):
        make, shape, self.rounds = CASES[name]
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(shape, dtype=np.float32)
        self.layer = make()
        y = self.layer(self.x, training=True)
        self.dy = rng.standard_normal(y.shape, dtype=np.float32)
        self.forward_gemms = layer_gemms(self.layer, shape)
        self.backward_gemms = layer_gemms(self.layer, shape, training=True)[len(self.forward_gemms):]


_CASES: dict = {}


def _case(name) -> Case:
    if name not in _CASES:
        _CASES[name] = Case(name)
    return _CASES[name]


def _report(benchmark, gemms):
    median = benchmark.stats.stats.median
    flops = flops_of(gemms)
    gemm = gemm_gflops(gemms)
    rate = flops / median / 1e9
    benchmark.extra_info.update({
        "flops": flops, "gflops_per_s": round(rate, 2), "gemm_gflops_per_s": round(gemm, 2),
        "of_gemm": round(rate / gemm, 3),
    })


@pytest.mark.parametrize("name", list(CASES))
def test_forward(benchmark, name):
    case = _case(name)
    benchmark.group = f"layer:{name}"
    y = benchmark.pedantic(lambda: case.layer(case.x, training=False), rounds=case.rounds, warmup_rounds=1,
                           iterations=1)
    assert y.shape == case.dy.shape
    _report(benchmark, case.forward_gemms)


@pytest.mark.parametrize("name", list(CASES))
def test_backward(benchmark, name):
    case = _case(name)
    benchmark.group = f"layer:{name}"

    def setup():  # a training forward keeps what backward needs (not timed)
        case.layer.zero_grad()
        case.layer(case.x, training=True)

    dx = benchmark.pedantic(lambda: case.layer.backward(case.dy), setup=setup, rounds=case.rounds, warmup_rounds=1,
                            iterations=1)
    assert dx.shape == case.x.shape
    _report(benchmark, case.backward_gemms)


@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_step(benchmark, name):
    case = _case(name)
    benchmark.group = f"layer:{name}"
    optimizer = optimizers.SGD(learning_rate=1e-6, momentum=0.9)
    case.layer.zero_grad()
    case.layer(case.x, training=True)
    case.layer.backward(case.dy)
    benchmark.pedantic(lambda: optimizer.apply([case.layer]), rounds=20, warmup_rounds=2, iterations=1)
    n = sum(p.size for p in case.layer.params.values())
    benchmark.extra_info.update({
        "parameters": int(n), "bytes_per_s": round(20 * n / benchmark.stats.stats.median, 1),
    })
