"""``python -m fusenet.onnx MODEL_FILE OUT.onnx [--opset N] [--no-fuse]``: export a saved fusenet model to ONNX.

``MODEL_FILE`` is a file written by ``model.save(path)``; it is loaded with
:func:`fusenet.models.load_model` (no code from the file runs) and exported with
:func:`fusenet.onnx.export`. Exit status 0 on success, 1 when the model cannot be read or exported
(the reason is printed on stderr), 2 for wrong arguments.
"""

from __future__ import annotations

import argparse
import sys

from ._export import DEFAULT_OPSET

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(prog="python -m fusenet.onnx",
                                     description="Export a saved fusenet model (model.save) to an ONNX file.")
    parser.add_argument("model_file", help="a fusenet model file written by model.save(path)")
    parser.add_argument("output", help="the ONNX file to write")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"the ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-fuse", action="store_true",
                        help="keep BatchNormalization as its own operator instead of folding it into the weights")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from ..errors import ModelFileError
    from ..models import load_model
    from ._export import export

    try:
        model = load_model(args.model_file, compile=False)
        proto = export(model, args.output, opset=args.opset, fused=not args.no_fuse)
    except (ModelFileError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"fusenet.onnx: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(proto.graph.node)} nodes, opset {args.opset}, "
          f"{'unfused' if args.no_fuse else 'fused'} ({model.describe()})")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the tests
    sys.exit(main())
