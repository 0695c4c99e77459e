"""Conv fusion benchmark: the reference cnn and resnet of BENCHMARKS.md, fusenet unfused vs fused vs
PyTorch eager, inference and one training step, measured side by side in one process.

Models (float32, batch 64, 32x32x3; fusenet channels-last, torch channels-first):

- ``cnn``: [Conv2D 3x3 "same" no bias -> BN -> ReLU] x 2 (32), MaxPool 2, [..] x 2 (64), MaxPool 2,
  Flatten, Dense 4096->128, ReLU, Dropout 0.3, Dense 128->10 (torch gets the same weights; its
  output is checked against fusenet's);
- ``resnet``: stem Conv 3x3 (32) + BN + ReLU; three stages of two basic blocks (32, 64, 128; the first
  block of stages 2 and 3 has stride 2 and a 1x1 conv + BN projection); global average pooling;
  Dense 128->10 (torch: the usual ``padding=1`` ResNet, same FLOPs; Keras "same" with stride 2 pads
  one zero at the end only, so the outputs are not compared).

Modes: ``eval`` = inference (fusenet ``predict_on_batch``; torch ``model.eval()`` under
``torch.inference_mode()``); ``train`` = one step (forward, sparse categorical cross-entropy on the
logits, backward, SGD with momentum 0.9; fusenet ``train_on_batch``, torch ``zero_grad``/``backward``/``step``).
torch runs with 2 threads (``torch.set_num_threads(2)``); NumPy's BLAS with its default (2 threads here).
The fused models are ``model.fuse()`` (inference) and ``model.fuse(training=True)``.

Run the table (each round runs every variant once, in turn, so that load changes on the shared
machine hit all alike; medians and the ratios of medians)::

    cd /work/main && /work/venv/bin/python benchmarks/bench_fusion_conv.py [rounds]

or the pytest-benchmark groups (one group per model and mode)::

    /work/venv/bin/python -m pytest benchmarks/bench_fusion_conv.py --benchmark-only \\
        --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

Targets (issue 7): fused cnn inference no slower than torch eager and >= 1.5x faster than unfused;
fused cnn train step >= 1.2x faster than unfused and within 1.5x of torch.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

try:
    import fusenet  # noqa: F401
except ImportError:  # ``python benchmarks/bench_fusion_conv.py`` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusenet import layers, models, optimizers  # noqa: E402

try:
    import torch
    from torch import nn
except ImportError:  # the torch columns are skipped
    torch = nn = None

BATCH, SIZE, CLASSES = 64, 32, 10
LEARNING_RATE, MOMENTUM = 0.01, 0.9
ROUNDS = 20
PAUSE = 0.25


# ---------------------------------------------------------------- fusenet models
def _conv_bn_relu(filters, strides=1):
    return [layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU()]


def _basic_block(filters, strides):
    body = _conv_bn_relu(filters, strides) + [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                                              layers.BatchNormalization()]
    shortcut = None
    if strides != 1:
        shortcut = [layers.Conv2D(filters, 1, strides=strides, use_bias=False), layers.BatchNormalization()]
    return [layers.Residual(body, shortcut=shortcut), layers.ReLU()]


def fusenet_layers(name):
    """The layer list of the reference model ``name`` (``"cnn"`` or ``"resnet"``)."""
    if name == "cnn":
        return (_conv_bn_relu(32) + _conv_bn_relu(32) + [layers.MaxPooling2D(2)] + _conv_bn_relu(64)
                + _conv_bn_relu(64) + [layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(128), layers.ReLU(),
                                       layers.Dropout(0.3, seed=0), layers.Dense(CLASSES)])
    out = _conv_bn_relu(32)
    for width, strides in ((32, 1), (64, 2), (128, 2)):
        out += _basic_block(width, strides) + _basic_block(width, 1)
    return out + [layers.GlobalAveragePooling2D(), layers.Dense(CLASSES)]


def build_fusenet(name, seed=0):
    """A built, compiled float32 Sequential with non-trivial BN statistics."""
    import fusenet

    fusenet.set_random_seed(seed)
    model = models.Sequential([layers.Input((SIZE, SIZE, 3))] + fusenet_layers(name))
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 1:  # gamma, beta, moving mean and variance: away from 1 / 0
            w = (rng.uniform(0.5, 1.5, size=w.shape) if np.all(w == 1) else rng.normal(0, 0.1, size=w.shape))
        weights.append(w.astype(np.float32))
    model.set_weights(weights)
    model.compile(optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM), "sparse_categorical_crossentropy")
    return model


def fuse(model, training):
    fused = model.fuse(training=training)
    fused.compile(optimizers.SGD(learning_rate=LEARNING_RATE, momentum=MOMENTUM), "sparse_categorical_crossentropy")
    return fused


# ---------------------------------------------------------------- torch models
def build_torch(name, model):
    """The torch twin of a fusenet reference model (same weights; channels-first)."""
    torch.manual_seed(0)
    if name == "cnn":
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
                    nn.ReLU()]

        net = nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4096, 128), nn.ReLU(), nn.Dropout(0.3),
                            nn.Linear(128, CLASSES))
        _copy_cnn_weights(net, model)
        return net

    class Basic(nn.Module):
        def __init__(self, cin, cout, strides):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, strides, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                                      nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, strides, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
                          if strides != 1 else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    stack = [nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU()]
    cin = 32
    for width, strides in ((32, 1), (64, 2), (128, 2)):
        stack += [Basic(cin, width, strides), Basic(width, width, 1)]
        cin = width
    return nn.Sequential(*stack, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, CLASSES))


def _copy_cnn_weights(net, model):
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    bns = [m for m in net if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    f_convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    f_bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    f_dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    with torch.no_grad():
        for c, f in zip(convs, f_convs):
            c.weight.copy_(torch.from_numpy(f.get_weights()[0].transpose(3, 2, 0, 1).copy()))
        for b, f in zip(bns, f_bns):
            gamma, beta, mean, var = f.get_weights()
            for t, v in ((b.weight, gamma), (b.bias, beta), (b.running_mean, mean), (b.running_var, var)):
                t.copy_(torch.from_numpy(v))
        kernel, bias = f_dense[0].get_weights()  # rows in (h, w, c) order; torch flattens (c, h, w)
        kernel = kernel.reshape(8, 8, 64, -1).transpose(2, 0, 1, 3).reshape(4096, -1)
        linears[0].weight.copy_(torch.from_numpy(kernel.T.copy()))
        linears[0].bias.copy_(torch.from_numpy(bias))
        kernel, bias = f_dense[1].get_weights()
        linears[1].weight.copy_(torch.from_numpy(kernel.T.copy()))
        linears[1].bias.copy_(torch.from_numpy(bias))


# ---------------------------------------------------------------- one case: callables of every variant
class Case:
    """Data, models and the timed callables of one reference model."""

    def __init__(self, name, seed=0):
        rng = np.random.default_rng(seed)
        self.name = name
        self.x = rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32)
        self.y = rng.integers(0, CLASSES, size=BATCH)
        self.unfused = build_fusenet(name, seed)
        self.fused_eval = fuse(self.unfused, training=False)
        self.unfused_train = build_fusenet(name, seed)
        self.fused_train = fuse(self.unfused_train, training=True)
        self.torch_eval = self.torch_train = None
        if torch is not None:
            self.xt = torch.from_numpy(self.x.transpose(0, 3, 1, 2).copy())
            self.yt = torch.from_numpy(self.y)
            self.torch_eval = build_torch(name, self.unfused).eval()
            self.torch_train = build_torch(name, self.unfused).train()
            self.torch_opt = torch.optim.SGD(self.torch_train.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    def eval_calls(self):
        calls = {"unfused": lambda: self.unfused.predict_on_batch(self.x),
                 "fused": lambda: self.fused_eval.predict_on_batch(self.x)}
        if self.torch_eval is not None:
            def torch_eval():
                with torch.inference_mode():
                    return self.torch_eval(self.xt)

            calls["torch"] = torch_eval
        return calls

    def train_calls(self):
        calls = {"unfused": lambda: self.unfused_train.train_on_batch(self.x, self.y),
                 "fused": lambda: self.fused_train.train_on_batch(self.x, self.y)}
        if self.torch_train is not None:
            def torch_step():
                self.torch_opt.zero_grad()
                loss = nn.functional.cross_entropy(self.torch_train(self.xt), self.yt)
                loss.backward()
                self.torch_opt.step()
                return loss

            calls["torch"] = torch_step
        return calls

    def check(self):
        """The fused model computes what the unfused one does (and torch, for the cnn)."""
        ref = self.unfused.predict_on_batch(self.x)
        np.testing.assert_allclose(self.fused_eval.predict_on_batch(self.x), ref, rtol=1e-3, atol=1e-3)
        if self.torch_eval is not None and self.name == "cnn":
            with torch.inference_mode():
                out = self.torch_eval(self.xt).numpy()
            np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)


def interleaved(calls, rounds, pause=PAUSE):
    """Median ms of each callable; every round runs each callable in turn.

    Each turn sleeps ``pause`` seconds, runs the callable once untimed, then once timed: OpenBLAS's
    worker threads spin for about 0.1 s after a GEMM (torch's OpenMP threads after a parallel region)
    before they sleep, so without the pause one library's spinning threads would steal the cores of
    the next call, and the untimed run makes the timed one a back-to-back call (threads awake, as
    in a loop over batches), for every variant alike.
    """
    names = list(calls)
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            time.sleep(pause)
            calls[name]()
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def peak_mib(fn):
    """Peak memory traced by ``tracemalloc`` (NumPy registers its buffers) during one call, in MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def table(rounds=ROUNDS, names=("cnn", "resnet")):
    """Rows ``(model, mode, unfused ms, fused ms, torch ms or None, unfused MiB, fused MiB)``."""
    if torch is not None:
        torch.set_num_threads(2)
    rows = []
    for name in names:
        case = Case(name)
        case.check()
        for mode, calls in (("eval", case.eval_calls()), ("train", case.train_calls())):
            med = interleaved(calls, rounds if mode == "eval" else max(3, rounds // 2))
            rows.append((name, mode, med["unfused"], med["fused"], med.get("torch"), peak_mib(calls["unfused"]),
                         peak_mib(calls["fused"])))
    return rows


def format_table(rows):
    lines = [f"{'model':<7} {'mode':<6} {'unfused ms':>10} {'fused ms':>9} {'torch ms':>9} "
             f"{'unfused/fused':>13} {'fused/torch':>11} {'peak MiB unfused/fused':>23}"]
    for name, mode, u, f, t, mu, mf in rows:
        torch_ms = f"{t:9.1f}" if t is not None else f"{'-':>9}"
        ratio = f"{f / t:10.2f}x" if t is not None else f"{'-':>11}"
        lines.append(f"{name:<7} {mode:<6} {u:10.1f} {f:9.1f} {torch_ms} {u / f:12.2f}x {ratio} {mu:11.1f} / {mf:<9.1f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- pytest-benchmark
_CASES = {}


def _case(name):
    if name not in _CASES:
        if torch is not None:
            torch.set_num_threads(2)
        _CASES[name] = Case(name)
    return _CASES[name]


try:
    import pytest
except ImportError:  # pragma: no cover - the table mode needs no pytest
    pytest = None

if pytest is not None:
    @pytest.mark.parametrize("variant", ["unfused", "fused", "torch"])
    @pytest.mark.parametrize("mode", ["eval", "train"])
    @pytest.mark.parametrize("name", ["cnn", "resnet"])
    def test_reference_model(benchmark, name, mode, variant):
        case = _case(name)
        calls = case.eval_calls() if mode == "eval" else case.train_calls()
        if variant not in calls:
            pytest.skip("torch is not installed")
        benchmark.group = f"{name}-{mode}"
        benchmark.pedantic(calls[variant], rounds=ROUNDS if mode == "eval" else ROUNDS // 2, warmup_rounds=1,
                           iterations=1)

    def test_side_by_side(benchmark, capsys):
        """All variants interleaved in one run: prints the table and records the ratios in extra_info."""
        rows = table(rounds=10)
        benchmark.group = "conv-fusion-side-by-side"
        case = _case("cnn")
        benchmark.pedantic(case.eval_calls()["fused"], rounds=3, warmup_rounds=1, iterations=1)
        for name, mode, u, f, t, _, _ in rows:
            benchmark.extra_info[f"{name} {mode} unfused/fused"] = round(u / f, 3)
            if t is not None:
                benchmark.extra_info[f"{name} {mode} fused/torch"] = round(f / t, 3)
        with capsys.disabled():
            print("\n" + format_table(rows))


if __name__ == "__main__":
    print(format_table(table(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)))
