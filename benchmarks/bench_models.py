"""Whole-model inference and train step of the reference models (mlp, cnn, resnet, transformer, lstm):
fusenet, ``model.fuse()`` and PyTorch eager side by side (``benchmarks/reference_models.py``).

Run::

    cd /work/main && /work/venv/bin/python -m pytest benchmarks/bench_models.py --benchmark-only \
        --benchmark-columns=min,median,rounds --benchmark-sort=name

One group per model and mode (``<model>-eval``, ``<model>-train``) with three rows: ``fusenet``
(unfused), ``fused`` (``model.fuse()``; ``model.fuse(training=True)`` for the train step) and ``torch``
(2 threads, ``eval()`` under ``torch.inference_mode()`` for inference; skipped without torch). The
train step is one ``train_on_batch`` (forward, sparse categorical cross-entropy, backward, SGD with
momentum 0.9); torch runs the same step with ``torch.optim.SGD``. ``extra_info``: ``flops`` (the GEMM
FLOPs of the pass, :mod:`fusenet.profiling.flops`), ``gflops_per_s`` over the median, and
``gemm_gflops_per_s``, plain float32 ``np.matmul`` on the model's own GEMM shapes measured in the same
run, with ``of_gemm`` their ratio (how close the model gets to the BLAS limit on its shapes). For side
by side medians and ratios from alternating runs use ``python benchmarks/compare.py``.

Few rounds in pedantic mode keep the whole ``pytest benchmarks --benchmark-only`` well under 10 minutes
on a 2-core machine.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_models as rm
from gemm_baseline import flops_of, gemm_gflops, model_gemms

ROUNDS = {  # (eval rounds, train rounds)
    "mlp": (20, 10), "cnn": (8, 4), "resnet": (5, 3), "transformer": (10, 4), "lstm": (6, 3),
}
VARIANTS = ("fusenet", "fused", "torch")


@pytest.fixture(scope="module", autouse=True)
def _torch_threads():
    if rm.torch is None:
        yield
        return
    before = rm.torch.get_num_threads()
    rm.torch.set_num_threads(2)
    yield
    rm.torch.set_num_threads(before)


_GEMMS: dict = {}


def _gemm_info(name, model, training):
    key = (name, training)
    if key not in _GEMMS:
        gemms = model_gemms(model, rm.SPECS[name]["batch"], training=training)
        _GEMMS[key] = (flops_of(gemms), gemm_gflops(gemms))
    return _GEMMS[key]


def _report(benchmark, name, model, training):
    flops, gemm = _gemm_info(name, model, training)
    rate = flops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info.update({"flops": flops, "gflops_per_s": round(rate, 2), "gemm_gflops_per_s": round(gemm, 2),
                                 "of_gemm": round(rate / gemm, 3)})


def _contender(name, variant, training):
    """``(fusenet model for the FLOP count, callable running one eval / train step)``."""
    model = rm.build_fusenet(name)
    x, y = rm.make_batch(name)
    if variant == "fused":
        fused = rm.compiled(model.fuse(training=training))
        if training:
            return model, lambda: rm.fusenet_train_step(fused, x, y)
        return model, lambda: rm.fusenet_eval(fused, x)
    if variant == "fusenet":
        if training:
            return model, lambda: rm.fusenet_train_step(model, x, y)
        return model, lambda: rm.fusenet_eval(model, x)
    if rm.torch is None:
        pytest.skip("PyTorch is not installed")
    module = rm.build_torch(name, model)
    xt, yt = rm.torch_batch(name, x, y)
    if training:
        module.train()
        optimizer = rm.torch_optimizer(module)
        return model, lambda: rm.torch_train_step(module, optimizer, xt, yt)
    module.eval()
    return model, lambda: rm.torch_eval(module, xt)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", rm.MODELS)
def test_eval(benchmark, name, variant):
    model, run = _contender(name, variant, training=False)
    benchmark.group = f"{name}-eval"
    out = benchmark.pedantic(run, rounds=ROUNDS[name][0], warmup_rounds=1, iterations=1)
    assert tuple(np.shape(out)) == (rm.SPECS[name]["batch"], rm.CLASSES)
    _report(benchmark, name, model, training=False)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", rm.MODELS)
def test_train_step(benchmark, name, variant):
    model, run = _contender(name, variant, training=True)
    benchmark.group = f"{name}-train"
    loss = benchmark.pedantic(run, rounds=ROUNDS[name][1], warmup_rounds=1, iterations=1)
    assert np.isfinite(float(loss.detach() if hasattr(loss, "detach") else loss))
    _report(benchmark, name, model, training=True)
