"""LSTM benchmark: fusenet against torch.nn.LSTM, side by side in one run (pytest-benchmark).

Shape (BENCHMARKS.md, model "lstm"): batch 64, 100 time steps, 128 features -> 256 units, float32,
the last hidden state as output. "train" = forward + backward (input, kernel, recurrent kernel and
bias gradients); "train-weights" = the same without the input gradient (as in a model's training
step, where the engine tells the first layer that nobody reads it, and torch with an input that does
not require grad); "eval" = forward only (torch under ``inference_mode``). torch runs with 2 threads;
NumPy's BLAS uses its default (2 threads on the reference machine).

Run::

    cd /work/main && /work/venv/bin/python -m pytest benchmarks -k test_lstm_ --benchmark-only \
        --benchmark-columns=min,median,mean,stddev,rounds --benchmark-sort=name

pytest-benchmark prints, per group, each column with its ratio to the fastest in parentheses:
the fusenet row's ratio is fusenet time / torch time (target: within 1.5x for "train"). At the end
the module also prints the ratios of the minima ("lstm train: fusenet / torch = ...x"); on a
shared, noisy machine the minimum is the most stable statistic.
"""

import numpy as np
import pytest

from fusenet import layers

torch = pytest.importorskip("torch")

BATCH, STEPS, FEATURES, UNITS = 64, 100, 128, 256
ROUNDS = 15


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    dy = rng.normal(size=(BATCH, UNITS)).astype(np.float32)
    return x, dy


_MINIMA = {}


@pytest.fixture(scope="module", autouse=True)
def _torch_threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    for mode in ("train", "train-weights", "eval"):
        ours, theirs = _MINIMA.get(("fusenet", mode)), _MINIMA.get(("torch", mode))
        if reporter is not None and capture is not None and ours and theirs:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"lstm {mode}: fusenet / torch = {ours / theirs:.2f}x "
                                    f"(min {ours * 1e3:.1f} ms / {theirs * 1e3:.1f} ms)")


def _record(benchmark, framework, mode):
    if benchmark.stats is not None:
        _MINIMA[(framework, mode)] = benchmark.stats.stats.min


def _fusenet_lstm(x):
    layer = layers.LSTM(UNITS, seed=0)
    layer(x)
    return layer


def _torch_lstm():
    torch.manual_seed(0)
    return torch.nn.LSTM(FEATURES, UNITS, batch_first=True)


@pytest.mark.benchmark(group="lstm-train (forward+backward)")
def test_lstm_train_fusenet(benchmark, data):
    x, dy = data
    layer = _fusenet_lstm(x)

    def step():
        layer.zero_grad()
        layer(x, training=True)
        return layer.backward(dy)

    dx = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "fusenet", "train")
    assert dx.shape == x.shape and np.isfinite(layer.grads["recurrent_kernel"]).all()


@pytest.mark.benchmark(group="lstm-train (forward+backward)")
def test_lstm_train_torch(benchmark, data):
    x, dy = data
    module = _torch_lstm()
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def step():
        module.zero_grad()
        xt.grad = None
        _, (h, _) = module(xt)
        h[0].backward(dyt)
        return xt.grad

    dx = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "torch", "train")
    assert tuple(dx.shape) == x.shape


@pytest.mark.benchmark(group="lstm-train-weights (forward+backward, no input gradient)")
def test_lstm_train_weights_fusenet(benchmark, data):
    x, dy = data
    layer = _fusenet_lstm(x)

    def step():
        layer.zero_grad()
        layer(x, training=True)
        layer._input_grad_needed = False  # what the model engine sets in a training step
        try:
            return layer.backward(dy)
        finally:
            layer._input_grad_needed = True

    dx = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "fusenet", "train-weights")
    assert dx is None and np.isfinite(layer.grads["kernel"]).all()


@pytest.mark.benchmark(group="lstm-train-weights (forward+backward, no input gradient)")
def test_lstm_train_weights_torch(benchmark, data):
    x, dy = data
    module = _torch_lstm()
    xt = torch.from_numpy(x)
    dyt = torch.from_numpy(dy)

    def step():
        module.zero_grad()
        _, (h, _) = module(xt)
        h[0].backward(dyt)
        return module.weight_hh_l0.grad

    grad = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "torch", "train-weights")
    assert tuple(grad.shape) == (4 * UNITS, UNITS)


@pytest.mark.benchmark(group="lstm-eval (forward)")
def test_lstm_eval_fusenet(benchmark, data):
    x, _ = data
    layer = _fusenet_lstm(x)
    y = benchmark.pedantic(lambda: layer(x, training=False), rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "fusenet", "eval")
    assert y.shape == (BATCH, UNITS)


@pytest.mark.benchmark(group="lstm-eval (forward)")
def test_lstm_eval_torch(benchmark, data):
    x, _ = data
    module = _torch_lstm().eval()
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return module(xt)[1][0]

    h = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=2, iterations=1)
    _record(benchmark, "torch", "eval")
    assert tuple(h.shape) == (1, BATCH, UNITS)
