"""Sequential models of the layer library train end to end through fit (the loss falls)."""

import numpy as np

import fusenet
from fusenet import layers, models


def _basic_block(filters, strides=1):
    body = [layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False), layers.BatchNormalization(),
            layers.ReLU(), layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization()]
    shortcut = None
    if strides != 1:
        shortcut = [layers.Conv2D(filters, 1, strides=strides, use_bias=False), layers.BatchNormalization()]
    return [layers.Residual(body, shortcut=shortcut), layers.ReLU()]


def _fit(model, x, y, epochs):
    model.compile(fusenet.optimizers.Adam(learning_rate=3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    return model.fit(x, y, batch_size=16, epochs=epochs, verbose=0).history


def test_resnet_style_cnn_with_residual_blocks_trains(rng):
    fusenet.set_random_seed(1)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int64")
    model = models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(8, 3, padding="same", use_bias=False),
                               layers.BatchNormalization(), layers.ReLU(), *_basic_block(8), *_basic_block(16, strides=2),
                               layers.GlobalAveragePooling2D(), layers.Dense(2, activation="softmax")])
    history = _fit(model, x, y, epochs=6)
    assert history["loss"][-1] < 0.7 * history["loss"][0]


def test_small_transformer_classifier_trains(rng):
    fusenet.set_random_seed(2)
    x = rng.integers(0, 20, size=(64, 10))
    y = (x[:, 0] > 9).astype("int64")
    model = models.Sequential([layers.Input((10,)), layers.Embedding(20, 16), layers.PositionalEmbedding(10),
                               layers.TransformerEncoderBlock(16, 2, 32), layers.GlobalAveragePooling1D(),
                               layers.Dense(2, activation="softmax")])
    history = _fit(model, x, y, epochs=20)
    assert history["loss"][-1] < 0.7 * history["loss"][0]


def test_lstm_classifier_trains(rng):
    fusenet.set_random_seed(3)
    x = rng.normal(size=(64, 12, 4)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int64")
    model = models.Sequential([layers.Input((12, 4)), layers.LSTM(16), layers.Dense(2, activation="softmax")])
    history = _fit(model, x, y, epochs=8)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
