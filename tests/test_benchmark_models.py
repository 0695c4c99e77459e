"""The benchmark reference models (``benchmarks/reference_models.py``): the torch versions hold the same
weights and compute the same function as the fusenet models, and the fused models agree too, so that
``benchmarks/compare.py`` compares like with like."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.parity import assert_close, requires_torch, torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_models as rm  # noqa: E402

BATCH = 4


@requires_torch
@pytest.mark.parametrize("name", rm.MODELS)
def test_torch_reference_model_matches_fusenet(name):
    model = rm.build_fusenet(name)
    x, y = rm.make_batch(name)
    x, y = x[:BATCH], y[:BATCH]
    module = rm.build_torch(name, model).eval()
    xt, _ = rm.torch_batch(name, x, y)
    assert_close(model(x), rm.torch_eval(module, xt), np.float32, f"{name} logits")
    assert sum(p.numel() for p in module.parameters()) > 0


@pytest.mark.parametrize("name", rm.MODELS)
def test_fused_reference_model_matches(name):
    model = rm.build_fusenet(name)
    x, _ = rm.make_batch(name)
    x = x[:BATCH]
    expected = model(x)
    np.testing.assert_allclose(model.fuse()(x), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@requires_torch
def test_train_steps_run_and_agree_on_the_first_loss():
    model = rm.build_fusenet("mlp")
    x, y = rm.make_batch("mlp")
    module = rm.build_torch("mlp", model).train()
    xt, yt = rm.torch_batch("mlp", x, y)
    # dropout draws differ between the libraries: compare the losses of a step without dropout
    for layer in model.layers:
        if type(layer).__name__ == "Dropout":
            layer.rate = 0.0
    for m in module:
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    loss = rm.fusenet_train_step(model, x, y)
    torch_loss = rm.torch_train_step(module, rm.torch_optimizer(module), xt, yt)
    assert loss == pytest.approx(float(torch_loss.detach()), rel=1e-5)


def test_unknown_reference_model():
    with pytest.raises(ValueError, match="Unknown reference model 'vgg'"):
        rm.build_fusenet("vgg")
