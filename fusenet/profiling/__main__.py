"""``python -m fusenet.profiling MODEL_FILE --batch-size N [--training] [--repeats R]``

Loads a model saved with ``model.save`` (:func:`fusenet.models.load_model`), profiles it on a
random batch of the model's input shape (standard normal floats; integer ids below ``input_dim``
when the first layer is an ``Embedding``) and prints the report. ``--training`` profiles forward
and backward passes (with a random output gradient); ``--csv PATH`` also writes the per-layer CSV.
A missing, corrupt or unusable file prints one line ``error: ...`` to stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fusenet.profiling",
        description="Profile a saved fusenet model layer by layer on a random batch.",
    )
    parser.add_argument("model_file", help="a model file written by model.save(path)")
    parser.add_argument("--batch-size", type=int, required=True, help="samples in the random input batch")
    parser.add_argument("--training", action="store_true", help="profile forward + backward passes")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats (default 10)")
    parser.add_argument("--input-shape", default=None,
                        help="the input shape without the batch axis, e.g. 64,128 (needed when the saved model "
                             "has unknown input sizes)")
    parser.add_argument("--no-fuse", action="store_true", help="do not time model.fuse() side by side")
    parser.add_argument("--csv", default=None, help="also write the per-layer table to this CSV file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    return parser


def _input_shape(model, override):
    if override is not None:
        try:
            return tuple(int(d) for d in override.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise ValueError(f"expected --input-shape to be sizes separated by commas, e.g. 64,128. "
                             f"Received: {override!r}") from None
    shape = model.input_shape
    if shape is None:
        raise ValueError(f"the saved {model.describe()} has no input shape (it was saved unbuilt); pass --input-shape")
    shape = tuple(shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"the saved {model.describe()} has unknown input sizes {shape}; pass --input-shape")
    return shape


def _random_input(model, shape, batch_size, seed):
    from ..layers import Embedding

    rng = np.random.default_rng(seed)
    first = model.layers[0] if model.layers else None
    if isinstance(first, Embedding):
        return rng.integers(0, first.input_dim, size=(batch_size,) + shape)
    dtype = next((layer.dtype for layer in model.layers if layer.dtype is not None), "float32")
    return rng.standard_normal((batch_size,) + shape).astype(dtype)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on an error)."""
    args = _parser().parse_args(argv)
    from ..errors import ModelFileError
    from ..models import load_model
    from .profiler import profile

    try:
        if args.batch_size < 1:
            raise ValueError(f"expected --batch-size to be a positive integer. Received: {args.batch_size}")
        if args.repeats < 1:
            raise ValueError(f"expected --repeats to be a positive integer. Received: {args.repeats}")
        model = load_model(args.model_file)
        shape = _input_shape(model, args.input_shape)
        x = _random_input(model, shape, args.batch_size, args.seed)
        report = profile(model, x, training=args.training, repeats=args.repeats, fused=not args.no_fuse)
        if args.csv:
            report.to_csv(args.csv)
    except (ModelFileError, ValueError, TypeError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in the tests
    sys.exit(main())
