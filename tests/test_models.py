"""Models: Sequential's structure and shape checks, the training loop (fit/evaluate/predict and the
single-batch methods), Keras semantics of the loop, determinism, and errors."""

import numpy as np
import pytest

import fusenet
from fusenet import callbacks, layers, losses, models, optimizers, regularizers
from fusenet.errors import NotBuiltError, NotCompiledError


def small_classifier(n_in=6, n_classes=3, dropout=0.0, **dense_kwargs):
    stack = [layers.Input((n_in,)), layers.Dense(16, activation="relu", **dense_kwargs)]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(n_classes, activation="softmax"))
    return models.Sequential(stack)


def blobs(rng, n=120, n_in=6, n_classes=3):
    centers = rng.normal(scale=3.0, size=(n_classes, n_in))
    y = rng.integers(0, n_classes, size=n)
    x = (centers[y] + rng.normal(size=(n, n_in))).astype("float32")
    return x, y


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


# ---------------------------------------------------------------- structure
def test_input_layer_gives_shapes_and_builds_at_add_time():
    model = models.Sequential([layers.Input((5,)), layers.Dense(4), layers.Dense(2)])
    assert model.built and model.input_shape == (None, 5) and model.output_shape == (None, 2)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]  # Input is not listed
    assert all(layer.built for layer in model.layers)
    assert model.count_params() == 5 * 4 + 4 + 4 * 2 + 2
    assert [w.shape for w in model.get_weights()] == [(5, 4), (4,), (4, 2), (2,)]


def test_input_shape_argument_of_first_layer():
    model = models.Sequential()
    model.add(layers.Dense(3, input_shape=(7,)))
    assert model.built and model.input_shape == (None, 7)
    model.add(layers.Dense(2))
    assert model.layers[-1].built and model.output_shape == (None, 2)


def test_deferred_build_on_first_call_and_explicit_build(rng):
    model = models.Sequential([layers.Dense(4), layers.Dense(1)])
    assert not model.built
    with pytest.raises(NotBuiltError, match="not built"):
        model.count_params()
    y = model(rng.normal(size=(3, 9)))
    assert y.shape == (3, 1) and model.input_shape == (None, 9)
    other = models.Sequential([layers.Dense(4)])
    other.build((None, 2))
    assert other.count_params() == 12


def test_deferred_build_keeps_float64_data_in_float64(rng):
    model = models.Sequential([layers.Dense(4), layers.Dense(1)])
    assert model(rng.normal(size=(3, 2))).dtype == np.float64
    model32 = models.Sequential([layers.Input((2,)), layers.Dense(4)])
    assert model32(rng.normal(size=(3, 2))).dtype == np.float32


def test_pop_and_layer_access():
    model = models.Sequential([layers.Input((3,)), layers.Dense(4, name="a"), layers.Dense(2, name="b")])
    popped = model.pop()
    assert popped.name == "b" and model.output_shape == (None, 4)
    model.add(layers.Dense(5, name="c"))
    assert model.output_shape == (None, 5)
    assert model.get_layer("a") is model.layers[0] and model.get_layer(index=-1).name == "c"
    with pytest.raises(ValueError, match="no layer named 'zzz'"):
        model.get_layer("zzz")
    model.pop()
    model.pop()
    with pytest.raises(ValueError, match="no layers"):
        model.pop()


def test_add_rejects_a_layer_whose_input_does_not_fit():
    model = models.Sequential([layers.Input((5,), name="inp"), layers.Dense(4, name="first")])
    stranger = layers.Dense(3, name="stranger")
    stranger(np.zeros((1, 7), "float32"))
    with pytest.raises(ValueError, match=r"'stranger' \(Dense\) cannot take the output of layer 'first' \(Dense\), "
                                         r"which has shape \(None, 4\).*expected axis -1 of input shape to have value 7"):
        model.add(stranger)
    assert [layer.name for layer in model.layers] == ["first"]  # unchanged
    with pytest.raises(ValueError, match=r"'conv' \(Conv2D\) cannot take the output of layer 'first'.*\(None, 4\)"):
        model.add(layers.Conv2D(2, 3, name="conv"))
    with pytest.raises(ValueError, match=r"'reshape' \(Reshape\) cannot take .*'first'.*\(None, 4\)"):
        model.add(layers.Reshape((3, 3), name="reshape"))


def test_add_type_and_name_errors():
    model = models.Sequential([layers.Input((2,)), layers.Dense(2, name="d")])
    with pytest.raises(TypeError, match="expected a fusenet.layers.Layer instance"):
        model.add("dense")
    with pytest.raises(ValueError, match="unique names.*'d'"):
        model.add(layers.Dense(3, name="d"))
    with pytest.raises(ValueError, match="already in the model"):
        model.add(model.layers[0])
    with pytest.raises(ValueError, match="Input layer can only be the first"):
        model.add(layers.Input((2,)))


def test_get_set_weights_all_or_nothing(rng):
    model = small_classifier()
    weights = model.get_weights()
    new = [w + 1.0 for w in weights]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b.astype(a.dtype))
    bad = list(new)
    bad[-1] = np.zeros(7)
    with pytest.raises(ValueError, match=r"weight 1 of layer 'dense_\d+' \(Dense\) expects shape \(3,\)"):
        model.set_weights(bad)
    for a, b in zip(model.get_weights(), new):  # nothing changed, not even the first layers
        np.testing.assert_array_equal(a, b.astype(a.dtype))
    with pytest.raises(ValueError, match="expects 4 arrays"):
        model.set_weights(new[:-1])


def test_trainable_and_non_trainable_weights():
    model = models.Sequential([layers.Input((4,)), layers.Dense(3), layers.BatchNormalization(), layers.Dense(2)])
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2
    model.layers[0].trainable = False
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 4


def test_summary_table(rng):
    model = models.Sequential([layers.Input((4,)), layers.Dense(8, name="hidden"), layers.BatchNormalization(name="bn"),
                               layers.Dense(2, name="out")], name="tiny")
    lines = []
    assert model.summary(print_fn=lines.append) is None
    text = "\n".join(lines)
    assert 'Model: "tiny"' in text
    assert "hidden (Dense)" in text and "(None, 8)" in text and " 40" in text
    assert "bn (BatchNormalization)" in text and " 32" in text
    assert "out (Dense)" in text and "(None, 2)" in text and " 18" in text
    assert "Total params: 90 (360.00 B)" in text
    assert "Trainable params: 74 (296.00 B)" in text
    assert "Non-trainable params: 16 (64.00 B)" in text


def test_summary_of_an_unbuilt_model_and_to_stdout(capsys):
    model = models.Sequential([layers.Dense(3, name="lazy")])
    model.summary()
    out = capsys.readouterr().out
    assert "lazy (Dense)" in out and "?" in out and "0 (unbuilt)" in out


def test_config_roundtrip_gives_the_same_function(rng):
    model = small_classifier(dropout=0.25, kernel_regularizer="l2")
    clone = models.Sequential.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    x = rng.normal(size=(5, 6)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), clone.predict(x, verbose=0))
    again = models.model_from_json(model.to_json())
    assert again.get_config() == model.get_config()


def test_call_runs_the_layers_in_order(rng):
    model = models.Sequential([layers.Input((3,)), layers.Dense(4, activation="relu"), layers.Dense(2)])
    x = rng.normal(size=(5, 3)).astype("float32")
    h = x
    for layer in model.layers:
        h = layer(h)
    np.testing.assert_array_equal(model(x), h)


# ---------------------------------------------------------------- the training loop
def test_one_sgd_step_equals_the_hand_written_step(rng):
    model = models.Sequential([layers.Input((3,)), layers.Dense(4, activation="tanh", kernel_regularizer=regularizers.L2(0.1)),
                               layers.Dense(2)])
    model.compile(optimizers.SGD(learning_rate=0.5), "mse")
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    w0 = model.get_weights()
    loss_fn = losses.MeanSquaredError()
    d1, d2 = model.layers
    h = d1(x, training=True)
    out = d2(h, training=True)
    expected_loss = loss_fn(y, out) + 0.1 * np.sum(w0[0].astype(np.float64) ** 2)
    d1.zero_grad()
    d2.zero_grad()
    d1.backward(d2.backward(loss_fn.gradient(y, out)))
    grads = [d1.grads["kernel"] + 0.2 * w0[0], d1.grads["bias"], d2.grads["kernel"], d2.grads["bias"]]
    loss = model.train_on_batch(x, y)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for w, g, new in zip(w0, grads, model.get_weights()):
        np.testing.assert_allclose(new, w - 0.5 * g, rtol=1e-5, atol=1e-6)


def test_fit_evaluate_predict_on_a_small_problem(rng):
    x, y = blobs(rng, n=150)
    model = small_classifier()
    model.compile(optimizers.Adam(learning_rate=0.02), "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert isinstance(history, callbacks.History) and model.history is history
    assert set(history.history) == {"loss", "accuracy"} and history.epoch == list(range(15))
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.95 and loss < 0.3
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs == {"loss": loss, "accuracy": acc}
    probs = model.predict(x, verbose=0)
    assert probs.shape == (150, 3) and probs.dtype == np.float32
    assert np.mean(probs.argmax(1) == y) == pytest.approx(acc)


@pytest.mark.parametrize("batch_size", [1, 7, 32, 1000])
def test_predict_is_independent_of_the_batch_size_and_bounded_by_it(rng, batch_size):
    model = small_classifier()
    x = rng.normal(size=(45, 6)).astype("float32")
    rows = []
    spy = callbacks.LambdaCallback(on_predict_batch_end=lambda batch, logs: rows.append(len(logs["outputs"])))
    out = model.predict(x, batch_size=batch_size, verbose=0, callbacks=[spy])
    np.testing.assert_allclose(out, model(x), rtol=1e-6, atol=1e-7)
    assert max(rows) <= batch_size and sum(rows) == 45


def test_epoch_loss_is_the_batch_size_weighted_mean_plus_regularization(rng):
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, kernel_regularizer=regularizers.L2(0.05))])
    model.compile(optimizers.SGD(learning_rate=0.0), "mse", ["mae"])
    x = rng.normal(size=(23, 3)).astype("float32")
    y = rng.normal(size=(23, 2)).astype("float32")
    history = model.fit(x, y, batch_size=5, epochs=1, verbose=0)
    expected = losses.MeanSquaredError()(y, model(x)) + 0.05 * float(np.sum(model.get_weights()[0].astype(np.float64) ** 2))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert history.history["mae"][0] == pytest.approx(float(np.mean(np.abs(model(x) - y))), rel=1e-5)
    assert model.evaluate(x, y, batch_size=4, verbose=0)[0] == pytest.approx(expected, rel=1e-5)


def test_validation_split_takes_the_last_samples_before_shuffling(rng):
    x, y = blobs(rng, n=50)
    model = small_classifier()
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    seen = []
    spy = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.evaluate(x[40:], y[40:], verbose=0)))
    history = model.fit(x, y, validation_split=0.2, epochs=2, batch_size=8, verbose=0, callbacks=[spy])
    assert history.params["steps"] == 5  # 40 training samples
    for (loss, acc), vl, va in zip(seen, history.history["val_loss"], history.history["val_accuracy"]):
        assert vl == pytest.approx(loss) and va == pytest.approx(acc)


def test_validation_data_with_sample_weights_and_validation_freq(rng):
    x, y = blobs(rng, n=40)
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    sw = np.linspace(0.0, 2.0, 20)
    history = model.fit(x[:20], y[:20], validation_data=(x[20:], y[20:], sw), epochs=4, validation_freq=2, verbose=0)
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    expected = model.evaluate(x[20:], y[20:], sample_weight=sw, verbose=0)[0]
    assert history.history["val_loss"][-1] == pytest.approx(expected)


def test_class_weight_equals_the_matching_sample_weight(rng):
    x, y = blobs(rng, n=32, n_classes=2)
    results = []
    for kwargs in ({"class_weight": {0: 1.0, 1: 3.0}}, {"sample_weight": np.where(y == 1, 3.0, 1.0)}):
        fusenet.set_random_seed(3)
        model = small_classifier(n_classes=2)
        model.compile("sgd", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, **kwargs)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_one_hot_class_weight_and_shuffle_batch(rng):
    x, y = blobs(rng, n=30)
    model = small_classifier()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    history = model.fit(x, np.eye(3)[y], class_weight={2: 5.0}, shuffle="batch", epochs=2, batch_size=4, verbose=0)
    assert len(history.history["accuracy"]) == 2


def test_same_seed_twice_gives_bit_identical_weights(rng):
    x, y = blobs(rng, n=64)

    def run():
        fusenet.set_random_seed(42)
        model = small_classifier(dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=10, validation_split=0.25, verbose=0)
        return model.get_weights(), history.history

    (w1, h1), (w2, h2) = run(), run()
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes()
    assert h1 == h2
    fusenet.set_random_seed(43)
    model = small_classifier(dropout=0.3)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=10, validation_split=0.25, verbose=0)
    assert any(a.tobytes() != b.tobytes() for a, b in zip(w1, model.get_weights()))


def test_stop_training_and_initial_epoch(rng):
    x, y = blobs(rng, n=40)
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    batches = []

    def stop(batch, logs):
        batches.append(batch)
        if batch == 1:
            model.stop_training = True

    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[callbacks.LambdaCallback(on_train_batch_end=stop)])
    assert history.epoch == [0] and batches == [0, 1]
    history = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0)
    assert history.epoch == [2, 3] and not model.stop_training


def test_train_test_predict_on_batch(rng):
    x, y = blobs(rng, n=16)
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    loss, acc = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and model.metrics_names == ["loss", "accuracy"]
    model.reset_metrics()
    tl, ta = model.test_on_batch(x, y)
    assert tl == pytest.approx(model.evaluate(x, y, verbose=0)[0])
    np.testing.assert_array_equal(model.predict_on_batch(x), model(x))
    plain = small_classifier()
    plain.compile("sgd", "sparse_categorical_crossentropy")
    assert isinstance(plain.train_on_batch(x, y), float)


def test_activity_regularizer_reaches_the_loss_and_the_gradient(rng):
    x = rng.normal(size=(10, 3)).astype("float32")
    y = rng.normal(size=(10, 2)).astype("float32")
    model = models.Sequential([layers.Input((3,)), layers.Dense(2, activity_regularizer=regularizers.L2(0.5))])
    model.compile(optimizers.SGD(learning_rate=0.0), "mse")
    loss = model.train_on_batch(x, y)
    out = model(x)
    expected = losses.MeanSquaredError()(y, out) + 0.5 * float(np.sum(out.astype(np.float64) ** 2)) / 10
    assert loss == pytest.approx(expected, rel=1e-5)


def test_float64_model_trains_in_float64(rng):
    model = models.Sequential([layers.Input((3,), dtype="float64"), layers.Dense(2, dtype="float64"), layers.Dense(1)])
    model.compile("sgd", "mse")
    x = rng.normal(size=(12, 3))
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    assert model.predict(x, verbose=0).dtype == np.float64
    assert all(w.dtype == np.float64 for w in model.weights)


def test_keras_style_digits_script_reaches_95_percent():
    x_train, x_test, y_train, y_test = digits_split()
    model = models.Sequential([
        layers.Input((64,)),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    history = model.fit(x_train, y_train, epochs=30, batch_size=32, validation_split=0.2, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.9
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.95


# ---------------------------------------------------------------- errors
def test_fit_before_compile_is_named():
    model = small_classifier()
    x = np.zeros((4, 6), "float32")
    for call in (lambda: model.fit(x, np.zeros(4)), lambda: model.evaluate(x, np.zeros(4)),
                 lambda: model.train_on_batch(x, np.zeros(4)), lambda: model.test_on_batch(x, np.zeros(4))):
        with pytest.raises(NotCompiledError, match="must call compile"):
            call()


def test_compile_without_loss_fails_at_fit():
    model = small_classifier()
    model.compile("adam")
    with pytest.raises(ValueError, match="no loss to compute"):
        model.fit(np.zeros((4, 6)), np.zeros(4), verbose=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"optimizer": "adamm"}, ValueError, "Unknown optimizer: 'adamm'"),
    ({"optimizer": 3}, TypeError, "expected optimizer"),
    ({"loss": "msee"}, ValueError, "Unknown loss: 'msee'"),
    ({"loss": lambda a, b: 0.0}, TypeError, "plain functions have none"),
    ({"loss": "mse", "metrics": "accuracy"}, TypeError, "expected metrics to be a list"),
    ({"loss": "mse", "metrics": ["acuracy"]}, ValueError, "acuracy"),
])
def test_compile_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        small_classifier().compile(**kwargs)


def test_x_and_y_of_different_lengths():
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"x and y must have the same number of samples, but x has 10 samples.*y has 9"):
        model.fit(np.zeros((10, 6)), np.zeros(9), verbose=0)
    with pytest.raises(ValueError, match="one entry per sample"):
        model.fit(np.zeros((10, 6)), np.zeros(10), sample_weight=np.ones(3), verbose=0)


def test_empty_arrays():
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"empty array x with shape \(0, 6\)"):
        model.fit(np.zeros((0, 6)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError, match="empty array y"):
        model.evaluate(np.zeros((3, 6)), np.zeros(0), verbose=0)
    with pytest.raises(ValueError, match="empty array x"):
        model.predict(np.zeros((0, 6)), verbose=0)


def test_labels_out_of_range_reach_the_user():
    model = small_classifier(n_classes=3)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expected every label in \[0, 3\).*Received: label 7"):
        model.fit(np.zeros((8, 6)), np.array([0, 1, 2, 7, 0, 1, 2, 0]), verbose=0)


def test_wrong_input_shape_names_the_first_layer(rng):
    model = models.Sequential([layers.Dense(4, input_shape=(6,), name="entry"), layers.Dense(2)])
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 6\), but received x with shape \(5, 4\)"):
        model.fit(rng.normal(size=(5, 4)), rng.normal(size=(5, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"first layer.*expects input of shape \(None, 6\)"):
        model.predict(rng.normal(size=(5, 6, 1)), verbose=0)
    with pytest.raises(TypeError, match="numeric array"):
        model.predict(np.array([["a"] * 6]), verbose=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"verbose": 3}, "verbose"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"validation_split": 1.0}, "validation_split"),
    ({"validation_split": 0.99}, "not enough to split"),
    ({"validation_data": (np.zeros((2, 6)),)}, "validation_data"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(20)}, "not both"),
    ({"class_weight": {0: float("nan")}}, "finite"),
])
def test_fit_argument_errors(kwargs, match):
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(np.zeros((20, 6)), np.zeros(20), **{"verbose": 0, **kwargs})


def test_digits_cnn_demo_reaches_97_percent(capsys):
    from fusenet.examples import digits

    accuracy = digits.main()
    out = capsys.readouterr().out
    assert accuracy >= 0.97
    assert 'Model: "digits_cnn"' in out and "block1_conv (Conv2D)" in out and "Total params: 31,018" in out
    assert "Epoch 12/12" in out and "41/41 [==============================]" in out
    assert f"Test accuracy: {accuracy:.4f}" in out


# ---------------------------------------------------------------- smaller paths
def test_data_checks(rng):
    model = small_classifier()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.zeros((6, 6), "float32")
    with pytest.raises(ValueError, match="x to be an array of samples. Received: x=None"):
        model.fit(None, np.zeros(6), verbose=0)
    with pytest.raises(ValueError, match="batch axis"):
        model.predict(np.float32(3.0), verbose=0)
    with pytest.raises(ValueError, match="rectangular"):
        model.predict([[1.0, 2.0], [3.0]], verbose=0)
    with pytest.raises(ValueError, match="sample_weight must be finite"):
        model.fit(x, np.zeros(6), sample_weight=np.full(6, np.nan), verbose=0)
    with pytest.raises(TypeError, match="class_weight to be a dict"):
        model.fit(x, np.zeros(6), class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(TypeError, match="class indices"):
        model.fit(x, np.zeros(6), class_weight={"a": 1.0}, verbose=0)
    with pytest.raises(TypeError, match="validation_split to be a float"):
        model.fit(x, np.zeros(6), validation_split="0.2", verbose=0)
    seq = models.Sequential([layers.Input((6,)), layers.Reshape((2, 3)), layers.Dense(2)])
    seq.compile("sgd", "mse")
    with pytest.raises(ValueError, match="one label per sample"):
        seq.fit(x, np.zeros((6, 2, 2)), class_weight={0: 2.0}, verbose=0)
    seq.fit(x, np.zeros((6, 2, 2)), verbose=0)
    logs = model.train_on_batch(x, np.array([0, 1, 2, 0, 1, 2]), class_weight={1: 2.0}, return_dict=True)
    assert set(logs) == {"loss"}
    with pytest.raises(ValueError, match="not both"):
        model.train_on_batch(x, np.zeros(6), class_weight={1: 2.0}, sample_weight=np.ones(6))


def test_metric_functions_names_and_unreduced_losses(rng, tmp_path):
    def half_error(y_true, y_pred):
        return 0.5 * np.abs(y_true - y_pred).mean(axis=-1)

    x = rng.normal(size=(10, 3)).astype("float32")
    y = rng.normal(size=(10, 2)).astype("float32")
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizers.SGD(learning_rate=0.0), losses.MeanSquaredError(reduction="none"), metrics=[half_error])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["half_error"] == pytest.approx(float(half_error(y, model(x)).mean()), rel=1e-6)
    assert logs["loss"] == pytest.approx(float(np.sum(np.mean((model(x) - y) ** 2, axis=-1))), rel=1e-5)
    with pytest.raises(TypeError, match="cannot be serialized|plain Python function"):
        model.save(tmp_path / "m.fnet")
    twice = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    twice.compile("sgd", "mse", metrics=["mae", "mae"])
    with pytest.raises(ValueError, match="two compiled metrics are named 'mae'"):
        twice.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"metrics\[0\] is None"):
        twice.compile("sgd", "mse", metrics=[None])
    with pytest.raises(TypeError, match=r"metrics\[0\] to be a metric"):
        twice.compile("sgd", "mse", metrics=[3])
    with pytest.raises(ValueError, match="non-empty string"):
        models.Sequential(name="")


def test_sequential_build_and_config_errors():
    model = models.Sequential(layers.Dense(2))
    with pytest.raises(ValueError, match="expected an input_shape"):
        model.build()
    with pytest.raises(TypeError, match="tuple of ints"):
        model.build((None, "x"))
    with pytest.raises(ValueError, match="batch axis"):
        model.build(())
    model.build((None, 3))
    model.build()  # already built: nothing to do
    model.build((8, 3))  # another batch size fits
    with pytest.raises(ValueError, match=r"built for input shape \(None, 3\)"):
        model.build((None, 4))
    with pytest.raises(TypeError, match="list of Layer objects"):
        models.Sequential(layers=3)
    with pytest.raises(ValueError, match="expected a dict"):
        models.Sequential.from_config([])
    with pytest.raises(ValueError, match="'layers' to be a list"):
        models.Sequential.from_config({"layers": {}})
    with pytest.raises(ValueError, match="name or index, not both"):
        model.get_layer("dense", 0)
    with pytest.raises(ValueError, match="out of range"):
        model.get_layer(index=3)
    rebuilt = models.Sequential.from_config({"name": "r", "layers": [layers.serialize(layers.Dense(2))],
                                             "build_input_shape": [None, 5]})
    assert rebuilt.input_shape == (None, 5) and repr(rebuilt) == "<Sequential name='r' layers=1 built=True>"


def test_summary_options():
    model = models.Sequential([layers.Input((4,)), layers.Dense(400_000, name="wide")], name="big")
    model.layers[0].trainable = False
    lines = []
    model.summary(line_length=80, positions=[0.4, 0.7, 0.9, 1.0], show_trainable=True, print_fn=lines.append)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines) and "Trainable" in text
    assert "wide (Dense)" in text and " N" in text and "(7.63 MB)" in text
    with pytest.raises(ValueError, match="expected 3 positions"):
        model.summary(positions=[0.5, 1.0])


def test_weight_constraints_hold_after_every_step(rng):
    x, y = blobs(rng, n=40)
    model = small_classifier(kernel_constraint=fusenet.constraints.MaxNorm(0.5))
    model.compile(optimizers.SGD(learning_rate=0.5), "sparse_categorical_crossentropy")
    norms = []
    spy = callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: norms.append(np.linalg.norm(model.layers[0].get_weights()[0], axis=0).max()))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[spy])
    assert max(norms) <= 0.5 + 1e-6


def test_train_step_tells_the_first_layer_its_input_gradient_is_unused():
    """Around a training step's backward, the layer that reads the model input sees
    ``_input_grad_needed`` False (it may skip dx); every other layer, and every other time, True."""
    seen = []

    class Spy(layers.Dense):
        def backward(self, dy):
            seen.append((self.name, self._input_grad_needed))
            return super().backward(dy)

    model = models.Sequential([layers.Input((3,)), Spy(4, name="spy_first"), Spy(2, name="spy_second")])
    model.compile("sgd", "mse")
    x, y = np.ones((5, 3), np.float32), np.zeros((5, 2), np.float32)
    model.train_on_batch(x, y)
    assert seen == [("spy_second", True), ("spy_first", False)]
    assert all(layer._input_grad_needed for layer in model.layers)
    seen.clear()
    model(x, training=True)
    model._backward(np.ones((5, 2), np.float32))  # a plain backward still wants every gradient
    assert seen == [("spy_second", True), ("spy_first", True)]
