"""A small CNN (Conv-BatchNorm-ReLU blocks, then Dense) on scikit-learn's 8x8 handwritten digits.

Run with ``python -m fusenet.examples.digits``. The data set ships with scikit-learn (1797
grey-scale 8x8 images of the digits 0-9, no download). The script holds out a stratified 20% as
the test set, trains with a progress bar, and prints the model's summary and its test accuracy
(above 99% with the default seed, in a few seconds on two cores).
"""

from __future__ import annotations

import time

import fusenet
from fusenet import callbacks, layers, models, optimizers

__all__ = ["load_data", "build_model", "main"]


def load_data(seed: int = 0):
    """``(x_train, y_train), (x_test, y_test)``: images ``(n, 8, 8, 1)`` in [0, 1] (float32), labels 0-9."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError(
            "The digits demo reads scikit-learn's bundled digits set: install it with pip install -e '.[examples]'."
        ) from exc

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return (x_train, y_train), (x_test, y_test)


def conv_block(filters: int, name: str) -> list:
    """``Conv2D (3x3, same, no bias) -> BatchNormalization (momentum 0.9: the moving statistics settle
    within the first epochs of this small data set) -> ReLU``."""
    return [
        layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv"),
        layers.BatchNormalization(momentum=0.9, name=f"{name}_bn"),
        layers.ReLU(name=f"{name}_relu"),
    ]


def build_model() -> models.Sequential:
    """``(8, 8, 1) -> [32] -> [32] -> pool -> [64] -> pool -> Dense(10, softmax)``, ``[f]`` a conv block."""
    return models.Sequential(
        [layers.Input((8, 8, 1))]
        + conv_block(32, "block1")
        + conv_block(32, "block2")
        + [layers.MaxPooling2D(2, name="pool1")]
        + conv_block(64, "block3")
        + [layers.MaxPooling2D(2, name="pool2"), layers.Flatten(name="flatten"), layers.Dropout(0.3, name="dropout"),
           layers.Dense(10, activation="softmax", name="classifier")],
        name="digits_cnn",
    )


def main(epochs: int = 12, seed: int = 0) -> float:
    """Train and evaluate; returns the test accuracy."""
    fusenet.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_data(seed)
    model = build_model()
    model.summary()
    model.compile(optimizers.Adam(learning_rate=3e-3), "sparse_categorical_crossentropy", ["accuracy"])
    start = time.perf_counter()
    model.fit(
        x_train, y_train, batch_size=32, epochs=epochs, validation_split=0.1,
        callbacks=[callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)],
    )
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    print(f"\nTest accuracy: {accuracy:.4f} (loss {loss:.4f}) on {len(x_test)} held-out digits; "
          f"training took {seconds:.1f} s.")
    return accuracy


if __name__ == "__main__":
    main()
