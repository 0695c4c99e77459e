"""Functional models: Model(inputs, outputs) on symbolic tensors, through the shared training engine."""

import copy

import numpy as np
import pytest

from fusenet import layers, models, optimizers
from fusenet.layers.symbolic import SymbolicTensor
from fusenet.models import Functional
from tests.gradcheck import assert_gradients_close, numerical_gradient


# ---------------------------------------------------------------- reference-style models
def mlp(n_in=6, n_classes=3):
    x = layers.Input((n_in,))
    h = layers.Dense(16, activation="relu")(x)
    h = layers.Dropout(0.1, seed=1)(h)
    y = layers.Dense(n_classes, activation="softmax")(h)
    return models.Model(inputs=x, outputs=y)


def cnn():
    x = layers.Input((8, 8, 1))
    h = layers.Conv2D(6, 3, padding="same")(x)
    h = layers.BatchNormalization()(h)
    h = layers.ReLU()(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.Flatten()(h)
    y = layers.Dense(2, activation="softmax")(h)
    return models.Model(x, y)


def resnet(dtype=None):
    """Two residual stages with Add skip connections (one identity, one 1x1 projection)."""
    x = layers.Input((8, 8, 2), dtype=dtype)
    h = layers.Conv2D(4, 3, padding="same")(x)
    h = layers.ReLU()(h)
    b = layers.Conv2D(4, 3, padding="same")(h)
    b = layers.BatchNormalization()(b)
    h = layers.ReLU()(layers.Add()([b, h]))
    b = layers.Conv2D(6, 3, padding="same", activation="relu")(h)
    b = layers.Conv2D(6, 3, padding="same")(b)
    s = layers.Conv2D(6, 1)(h)
    h = layers.ReLU()(layers.Add()([b, s]))
    h = layers.GlobalAveragePooling2D()(h)
    return models.Model(inputs=x, outputs=layers.Dense(2, activation="softmax")(h))


def two_inputs_two_outputs():
    a = layers.Input((6,), name="a")
    b = layers.Input((4,), name="b")
    ha = layers.Dense(8, activation="tanh", name="da")(a)
    hb = layers.Dense(8, activation="tanh", name="db")(b)
    cls = layers.Dense(3, activation="softmax", name="cls")(layers.Concatenate(name="concat")([ha, hb]))
    reg = layers.Dense(1, name="reg")(layers.Add(name="sum")([ha, hb]))
    return models.Model(inputs=[a, b], outputs=[cls, reg])


def classification(rng, shape, n_classes=2, n=64):
    x = rng.normal(size=(n,) + shape).astype("float32")
    flat = x.reshape(n, -1)
    y = (flat.mean(axis=1) > 0).astype("int64") if n_classes == 2 else np.argmax(flat[:, :n_classes], axis=1)
    return x, y


# ---------------------------------------------------------------- construction
def test_model_with_inputs_and_outputs_is_functional_and_sequential_still_works():
    model = mlp()
    assert isinstance(model, Functional) and isinstance(model, models.Model)
    assert model.name.startswith("functional")
    seq = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    assert type(seq) is models.Sequential and isinstance(seq, models.Model)
    assert isinstance(layers.Dense(2)(layers.Input((3,))), SymbolicTensor)


def test_symbolic_calls_carry_shape_and_dtype_and_build_the_layer():
    x = layers.Input((5, 7), dtype="float64")
    dense = layers.Dense(3)
    h = dense(x)
    assert h.shape == (None, 5, 3) and h.dtype == "float64" and dense.built and dense.dtype == "float64"
    assert h.layer is dense and h.node.inputs[0].layer is x
    lstm_out = layers.LSTM(4, return_state=True)(h)
    assert [t.shape for t in lstm_out] == [(None, 4), (None, 4), (None, 4)]
    with pytest.raises(TypeError, match="is symbolic and has no values"):
        np.asarray(h)


def test_layers_and_weights_follow_the_topological_order():
    model = two_inputs_two_outputs()
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["a", "b"]
    assert names.index("da") < names.index("cls") and names.index("db") < names.index("reg")
    assert model.input_names == ["a", "b"] and model.output_names == ["cls", "reg"]
    assert model.input_shape == [(None, 6), (None, 4)] and model.output_shape == [(None, 3), (None, 1)]
    assert model.connections()["sum"] == [("da", 0), ("db", 0)]
    assert len(model.get_weights()) == 8
    assert model.get_layer("reg") is model.layers[names.index("reg")]


def test_error_incompatible_symbolic_shapes_name_both_layers():
    x = layers.Input((4,))
    h = layers.Dense(5, name="first_dense")(x)
    with pytest.raises(ValueError, match=r"layer 'conv' \(Conv2D\) cannot be called on the output of layer "
                                         r"'first_dense' \(Dense\) with shape \(None, 5\)"):
        layers.Conv2D(3, 3, name="conv")(h)
    g = layers.Dense(6, name="other_dense")(x)
    with pytest.raises(ValueError, match=r"'first_dense'.*\(None, 5\).*'other_dense'.*\(None, 6\)"):
        layers.Add()([h, g])


def test_error_outputs_not_connected_to_inputs():
    a, b = layers.Input((3,), name="in_a"), layers.Input((3,), name="in_b")
    y = layers.Dense(2)(layers.Add()([layers.Dense(3)(a), b]))
    with pytest.raises(ValueError, match=r"output 0 .* is not connected to the given inputs \['in_a'\].*'in_b'"):
        models.Model(inputs=a, outputs=y)


def test_error_unused_inputs_and_bad_arguments():
    a, b = layers.Input((3,), name="used"), layers.Input((3,), name="unused")
    y = layers.Dense(2)(a)
    with pytest.raises(ValueError, match=r"layer 'unused' \(Input\) are not used by any output"):
        models.Model(inputs=[a, b], outputs=y)
    with pytest.raises(TypeError, match="expected outputs to be symbolic tensors"):
        models.Model(inputs=a, outputs=np.zeros(3))
    with pytest.raises(ValueError, match="model inputs must be the tensors of layers.Input"):
        models.Model(inputs=y, outputs=layers.Dense(1)(y))


def test_error_shared_layer_and_duplicate_names():
    x = layers.Input((3,))
    dense = layers.Dense(3)
    with pytest.raises(ValueError, match="is called more than once in the model"):
        models.Model(x, dense(dense(x)))
    h = layers.Dense(3, name="twin")(x)
    with pytest.raises(ValueError, match="unique names"):
        models.Model(x, layers.Dense(3, name="twin")(h))


def test_mixing_arrays_and_symbolic_tensors_is_refused():
    x = layers.Input((3,))
    with pytest.raises(TypeError, match="mixing symbolic tensors and other values"):
        layers.Add()([x, np.zeros((1, 3))])


def test_wrong_data_is_named(rng):
    model = two_inputs_two_outputs()
    with pytest.raises(ValueError, match=r"the model has 2 inputs \['a', 'b'\]"):
        model.predict(rng.normal(size=(4, 6)))
    with pytest.raises(ValueError, match=r"input 1 \(layer 'b' \(Input\)\) expects shape \(None, 4\), but received "
                                         r"x\[1\] with shape \(4, 5\)"):
        model([rng.normal(size=(4, 6)), rng.normal(size=(4, 5))])
    with pytest.raises(ValueError, match="keyed by"):
        model({"a": rng.normal(size=(4, 6)), "c": rng.normal(size=(4, 4))})
    model.compile("sgd", ["sparse_categorical_crossentropy", "mse"])
    with pytest.raises(ValueError, match="class_weight is only supported for models with a single output"):
        model.fit([rng.normal(size=(4, 6)), rng.normal(size=(4, 4))], [np.zeros(4), np.zeros((4, 1))],
                  class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="a list of losses needs 2 entries"):
        model.compile("sgd", ["mse"])
    with pytest.raises(ValueError, match=r"unknown outputs \['nope'\]"):
        model.compile("sgd", {"nope": "mse"})


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("build, shape, epochs", [(mlp, (6,), 8), (cnn, (8, 8, 1), 6), (resnet, (8, 8, 2), 8)])
def test_reference_models_train(rng, build, shape, epochs):
    model = build()
    x, y = classification(rng, shape, n_classes=3 if build is mlp else 2)
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.9 * losses[0]
    assert np.isfinite(model.evaluate(x, y, verbose=0)[0])


def test_several_inputs_and_outputs_train_with_a_loss_per_output(rng):
    model = two_inputs_two_outputs()
    a, b = rng.normal(size=(96, 6)).astype("float32"), rng.normal(size=(96, 4)).astype("float32")
    cls = (a[:, 0] + b[:, 0] > 0).astype("int64") + (a[:, 1] > 1)
    reg = (a[:, :1] - b[:, 1:2]).astype("float32")
    model.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"}, loss_weights={"reg": 0.5},
                  metrics={"cls": "accuracy", "reg": ["mae"]})
    history = model.fit({"a": a, "b": b}, {"cls": cls, "reg": reg}, epochs=10, batch_size=16, verbose=0,
                        validation_split=0.25)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert set(history.history) == {"loss", "cls_accuracy", "reg_mae", "val_loss", "val_cls_accuracy", "val_reg_mae"}
    logs = model.evaluate([a, b], [cls, reg], verbose=0, return_dict=True)
    out_cls, out_reg = model.predict([a, b], batch_size=40, verbose=0)
    expected = (np.mean(-np.log(out_cls[np.arange(96), cls])) + 0.5 * np.mean((out_reg - reg) ** 2))
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-4)
    np.testing.assert_allclose(logs["reg_mae"], np.mean(np.abs(out_reg - reg)), rtol=1e-5)


def test_one_loss_for_every_output_and_untrained_outputs(rng):
    model = two_inputs_two_outputs()
    model.compile("sgd", loss=["mse", None])
    x = [rng.normal(size=(8, 6)), rng.normal(size=(8, 4))]
    y = [rng.normal(size=(8, 3)), rng.normal(size=(8, 1))]
    reg_before = model.get_layer("reg").get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(reg_before, model.get_layer("reg").get_weights()):  # no gradient reaches the untrained head
        np.testing.assert_array_equal(a, b)
    model.compile("sgd", loss="mse")
    value = model.test_on_batch(x, y)
    out = model.predict_on_batch(x)
    np.testing.assert_allclose(value, sum(np.mean((o - t) ** 2) for o, t in zip(out, y)), rtol=1e-5)


def test_single_output_model_equals_the_sequential_model(rng):
    seq = models.Sequential([layers.Input((5,)), layers.Dense(7, activation="relu"), layers.Dense(2)])
    x = layers.Input((5,))
    fun = models.Model(x, layers.Dense(2)(layers.Dense(7, activation="relu")(x)))
    fun.set_weights(seq.get_weights())
    xs, ys = rng.normal(size=(40, 5)).astype("float32"), rng.normal(size=(40, 2)).astype("float32")
    for model in (seq, fun):
        model.compile("sgd", "mse")
    h1 = seq.fit(xs, ys, epochs=3, batch_size=8, shuffle=False, verbose=0)
    h2 = fun.fit(xs, ys, epochs=3, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-6)
    for a, b in zip(seq.get_weights(), fun.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---------------------------------------------------------------- gradients through the DAG
def _fan_out_model():
    """x feeds two Dense layers and the Add directly; h feeds two branches and a Multiply (fan-out everywhere)."""
    x = layers.Input((4,), dtype="float64")
    h = layers.Dense(5, activation="tanh", dtype="float64")(x)
    p = layers.Dense(5, activation="sigmoid", dtype="float64")(h)
    q = layers.Dense(5, dtype="float64")(h)
    m = layers.Multiply()([p, h])
    s = layers.Add()([m, q, h])
    y1 = layers.Dense(3, dtype="float64")(layers.Concatenate()([s, layers.Dense(2, dtype="float64")(x)]))
    return models.Model(x, [y1, layers.Dense(1, dtype="float64")(h)])


def test_gradient_with_fan_out_equals_finite_differences(rng):
    model = _fan_out_model()
    x = rng.normal(size=(3, 4))
    r = [rng.normal(size=(3, 3)), rng.normal(size=(3, 1))]

    def loss():
        return float(sum(np.sum(o * ri) for o, ri in zip(model(x), r)))

    for layer in model.layers:
        layer.zero_grad()
    model(x, training=True)
    dx = model._backward(r)
    assert_gradients_close(dx, numerical_gradient(loss, x), "d/dx")
    for layer in model.layers:
        for name, param in layer.params.items():
            assert_gradients_close(layer.grads[name], numerical_gradient(loss, param), f"{layer.name}/{name}")


def test_functional_residual_equals_the_residual_layer(rng):
    block = layers.Residual([layers.Dense(6, activation="relu", dtype="float64"), layers.Dense(6, dtype="float64")],
                            shortcut=[layers.Dense(6, dtype="float64")], dtype="float64")
    seq = models.Sequential([layers.Input((6,), dtype="float64"), block, layers.Dense(2, dtype="float64")])
    x = layers.Input((6,), dtype="float64")
    body = layers.Dense(6, dtype="float64")(layers.Dense(6, activation="relu", dtype="float64")(x))
    y = layers.Dense(2, dtype="float64")(layers.Add()([body, layers.Dense(6, dtype="float64")(x)]))
    fun = models.Model(x, y)
    fun.set_weights(seq.get_weights())
    xs = rng.normal(size=(5, 6))
    np.testing.assert_allclose(fun(xs), seq(xs), rtol=1e-12)
    dy = rng.normal(size=(5, 2))
    grads = []
    for model in (seq, fun):
        for layer in model._all_layers():
            layer.zero_grad()
        model(xs, training=True)
        grads.append((model._backward(dy), [g.copy() for l in model._all_layers() for g in l.grads.values()]))
    np.testing.assert_allclose(grads[1][0], grads[0][0], rtol=1e-12)
    for a, b in zip(grads[0][1], grads[1][1]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- summary, saving, fusion
def test_summary_shows_connections():
    lines = []
    two_inputs_two_outputs().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "(Concatenate)" in text
    add_row = next(i for i, line in enumerate(lines) if "(Add)" in line)
    assert "da[0][0]" in lines[add_row] and "db[0][0]" in lines[add_row + 1]
    assert "Total params: 156" in text


@pytest.mark.parametrize("build", [resnet, two_inputs_two_outputs])
def test_save_and_load_give_identical_predictions(rng, tmp_path, build):
    model = build()
    if build is resnet:
        x, y = classification(rng, (8, 8, 2), n=16)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    else:
        x = [rng.normal(size=(16, 6)).astype("float32"), rng.normal(size=(16, 4)).astype("float32")]
        y = [rng.integers(0, 3, size=16), rng.normal(size=(16, 1)).astype("float32")]
        model.compile("adam", ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.25],
                      metrics=[["accuracy"], None])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "functional.fnet"
    model.save(path)
    loaded = models.load_model(path)
    assert type(loaded) is Functional and [l.name for l in loaded.layers] == [l.name for l in model.layers]
    as_list = lambda out: out if isinstance(out, list) else [out]  # noqa: E731
    for a, b in zip(as_list(loaded.predict(x, verbose=0)), as_list(model.predict(x, verbose=0))):
        np.testing.assert_array_equal(a, b)
    # training continues exactly where it stopped (optimizer state and per-output loss weights restored)
    clone = copy.deepcopy(model)
    assert clone.get_config() == model.get_config()
    clone.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(loaded.get_weights(), clone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert models.model_from_json(model.to_json()).output_names == model.output_names
    assert loaded.get_compile_config() == model.get_compile_config()


def test_fuse_gives_an_equivalent_model_that_saves_and_loads(rng, tmp_path):
    model = resnet()
    x, y = classification(rng, (8, 8, 2), n=16)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    fused, report = model.fuse(report=True)
    assert len(report.fused) >= 1 and fused.compiled
    assert len(fused.layers) < len(model.layers)
    np.testing.assert_allclose(fused.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    lines = []
    fused.summary(print_fn=lines.append)
    assert any("fuses Conv2D(" in line for line in lines)
    fused.save(tmp_path / "fused.fnet")
    np.testing.assert_array_equal(models.load_model(tmp_path / "fused.fnet").predict(x, verbose=0),
                                  fused.predict(x, verbose=0))


def test_fuse_for_training_trains_like_the_unfused_model(rng):
    x = layers.Input((6,))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Dense(8)(x)))
    model = models.Model(x, layers.Dense(2)(layers.Add()([h, layers.Dense(8)(x)])))
    model.compile("sgd", "mse")
    fused = model.fuse(training=True)
    xs, ys = rng.normal(size=(32, 6)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    ha = model.fit(xs, ys, epochs=2, batch_size=8, shuffle=False, verbose=0)
    hb = fused.fit(xs, ys, epochs=2, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_allclose(hb.history["loss"], ha.history["loss"], rtol=1e-5)
