"""Sequential.fuse(): an equivalent model, inference and training, saved and loaded like any other."""

import numpy as np
import pytest

from fusenet import layers, models
from fusenet.fusion import FusedDenseBNActivation


def _mlp():
    return models.Sequential([
        layers.Input((12,)), layers.Dense(16), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.2, seed=1),
        layers.Dense(16), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.2, seed=2),
        layers.Dense(4, activation="softmax"),
    ])


@pytest.fixture
def data(rng):
    x = rng.normal(size=(96, 12)).astype("float32")
    y = (x[:, :4].argmax(axis=1)).astype("int64")
    return x, y


def test_fused_model_predicts_the_same(data, tmp_path):
    x, y = data
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    before = model.get_weights()
    fused, rep = model.fuse(report=True)
    assert sum(isinstance(layer, FusedDenseBNActivation) for layer in fused.layers) == 2
    assert len(rep.fused) == 2
    np.testing.assert_allclose(fused.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    for a, b in zip(model.get_weights(), before):  # the source model is unchanged
        np.testing.assert_array_equal(a, b)
    assert [w.shape for w in fused.get_weights()] == [w.shape for w in before]  # the replaced layers' weights
    lines = []
    fused.summary(print_fn=lines.append)
    assert "fuses Dense(" in "\n".join(lines)
    path = tmp_path / "fused.fnet"
    fused.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), fused.predict(x, verbose=0))


def test_fused_training_model_trains_like_the_unfused(data):
    x, y = data
    a = _mlp()
    a.compile("sgd", "sparse_categorical_crossentropy")
    a.build((None, 12))
    b = a.fuse(training=True)
    assert b.compiled
    ha = a.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    hb = b.fit(x, y, epochs=3, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6)


def test_nothing_to_fuse_gives_the_same_layer_types(data):
    x, _ = data
    model = models.Sequential([layers.Input((12,)), layers.Dense(3, activation="relu"), layers.Flatten()])
    fused = model.fuse()
    assert [type(layer) for layer in fused.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(fused.predict(x, verbose=0), model.predict(x, verbose=0))
