"""Input checks and batching for the training loop (private).

Everything is vectorised over the batch: a batch is one slice (or one fancy-index gather when
shuffling) of the arrays, never a Python loop over samples.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..utils import check_non_negative_int, check_positive_int

__all__ = [
    "as_input", "as_target", "check_non_negative", "check_positive", "as_sample_weight", "check_batch_size", "check_verbose", "check_same_length",
    "split_validation", "unpack_validation_data", "class_weight_to_sample_weights", "batch_slices",
    "epoch_order",
]


def as_input(x, owner: str, what: str = "x") -> np.ndarray:
    """``x`` as a numeric ndarray with at least one sample (``ValueError``/``TypeError`` otherwise)."""
    if x is None:
        raise ValueError(f"{owner}: expected {what} to be an array of samples. Received: {what}=None")
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{owner}: expected {what} to be a rectangular numeric array. Received a ragged sequence.") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{owner}: expected {what} to be a numeric array (bool, int or float), but received an array of dtype "
            f"{arr.dtype} with shape {arr.shape}."
        )
    if arr.ndim == 0:
        raise ValueError(
            f"{owner}: expected {what} to have a batch axis (shape (samples, ...)). Received a scalar {what}={arr!r}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{owner}: received an empty array {what} with shape {arr.shape}: expected at least one sample.")
    return arr


def as_target(y, owner: str) -> np.ndarray:
    """The targets ``y`` as a numeric ndarray with at least one sample."""
    return as_input(y, owner, "y")


def as_sample_weight(sample_weight, n: int, owner: str):
    """``sample_weight`` as a float array with ``n`` rows, or ``None``."""
    if sample_weight is None:
        return None
    sw = as_input(sample_weight, owner, "sample_weight")
    if sw.shape[0] != n:
        raise ValueError(
            f"{owner}: expected sample_weight to have one entry per sample ({n}). "
            f"Received: sample_weight with shape {sw.shape}"
        )
    if sw.dtype.kind == "f" and not np.all(np.isfinite(sw)):
        raise ValueError(f"{owner}: sample_weight must be finite. Received non-finite values.")
    return sw


def check_same_length(owner: str, **arrays) -> int:
    """The common number of samples of ``arrays`` (``None`` entries skipped), else ``ValueError``."""
    sizes = {name: a.shape[0] for name, a in arrays.items() if a is not None}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{name} has {n} samples (shape {arrays[name].shape})" for name, n in sizes.items())
        raise ValueError(f"{owner}: x and y must have the same number of samples, but {detail}.")
    return next(iter(sizes.values()))


def check_batch_size(batch_size, owner: str) -> int:
    if batch_size is None:
        return 32
    return check_positive_int(batch_size, "batch_size", owner)


def check_non_negative(value, name: str, owner: str) -> int:
    return check_non_negative_int(value, name, owner)


def check_positive(value, name: str, owner: str) -> int:
    return check_positive_int(value, name, owner)


def check_verbose(verbose, owner: str) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"{owner}: expected verbose to be 'auto', 0, 1 or 2. Received: verbose={verbose!r}")
    return int(verbose)


def split_validation(validation_split, arrays: list, owner: str):
    """Keras ``validation_split``: the LAST ``validation_split`` fraction (before any shuffling).

    Returns ``(train_arrays, val_arrays)``; ``None`` entries stay ``None``.
    """
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
        raise TypeError(f"{owner}: expected validation_split to be a float in [0, 1). Received: {validation_split!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"{owner}: expected validation_split to be a float in [0, 1). Received: validation_split={validation_split}")
    n = arrays[0].shape[0]
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(
            f"{owner}: the training data has {n} samples, which is not enough to split it into a training and a "
            f"validation set with validation_split={validation_split}. Provide more data or another validation_split."
        )
    train = [None if a is None else a[:split_at] for a in arrays]
    val = [None if a is None else a[split_at:] for a in arrays]
    return train, val


def unpack_validation_data(validation_data, owner: str):
    """``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)`` as a triple."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            f"{owner}: expected validation_data to be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight). "
            f"Received: {type(validation_data).__name__} of length {len(validation_data) if hasattr(validation_data, '__len__') else '?'}"
        )
    x_val, y_val = validation_data[0], validation_data[1]
    sw_val = validation_data[2] if len(validation_data) == 3 else None
    return x_val, y_val, sw_val


def class_weight_to_sample_weights(y: np.ndarray, class_weight, owner: str) -> np.ndarray:
    """Per-sample weights ``class_weight[label]`` (1.0 for classes not in the dict), Keras rules.

    Labels are ``argmax(y, -1)`` for one-hot/probability targets ``(n, k>1)``, else ``round(y)``.
    """
    if not isinstance(class_weight, dict):
        raise TypeError(f"{owner}: expected class_weight to be a dict {{class index: weight}}. Received: {class_weight!r}")
    if y.ndim > 1:
        labels = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    else:
        labels = y
    labels = np.round(labels).astype(np.int64)
    if labels.ndim > 1:
        raise ValueError(
            f"{owner}: class_weight needs one label per sample; targets of shape {y.shape} give several. "
            "Use sample_weight instead."
        )
    weights = np.ones(labels.shape[0], dtype=np.float64)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise TypeError(f"{owner}: expected the keys of class_weight to be class indices (ints). Received: {key!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{owner}: expected the weights of class_weight to be finite numbers. Received: {key}: {value!r}")
        weights[labels == key] = float(value)
    return weights


def epoch_order(n: int, shuffle, batch_size: int, seed: int, epoch: int):
    """The sample order of one epoch: ``None`` (in order) or a permutation.

    ``shuffle=True`` permutes all samples; ``shuffle="batch"`` permutes whole batches (Keras).
    The permutation depends only on ``(seed, epoch)``, so a resumed run replays it exactly.
    """
    if shuffle is False:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    if shuffle == "batch":
        n_batches = -(-n // batch_size)
        order = rng.permutation(n_batches)
        starts = order * batch_size
        return np.concatenate([np.arange(s, min(s + batch_size, n)) for s in starts])
    return rng.permutation(n)


def batch_slices(n: int, batch_size: int):
    """``[(start, stop), ...]`` covering ``range(n)`` in batches of ``batch_size`` (the last may be smaller)."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
