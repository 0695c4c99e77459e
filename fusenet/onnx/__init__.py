"""Export fusenet models to ONNX: ``fusenet.onnx.export(model, "model.onnx")``.

Needs the optional ``onnx`` package (the fusenet extra ``onnx``; ``onnxruntime`` runs the files).
Every inference-time layer maps to standard ONNX operators (opset 17 by default):

- Dense -> Gemm (MatMul + Add beyond rank 2); Conv1D/2D/3D, DepthwiseConv2D (grouped Conv),
  SeparableConv2D -> Conv (groups, dilations, strides, Keras ``"same"``/``"causal"`` padding as explicit
  pads); Conv1D/2DTranspose -> ConvTranspose; BatchNormalization -> BatchNormalization, or folded into
  the preceding Dense/convolution (``fused=True``); pooling -> MaxPool/AveragePool/GlobalAveragePool/
  GlobalMaxPool; LayerNormalization -> LayerNormalization; SimpleRNN/LSTM/GRU/Bidirectional -> RNN/LSTM/GRU;
  MultiHeadAttention and TransformerEncoderBlock -> MatMul/Softmax; Embedding -> Gather; Flatten,
  Reshape, Permute (Transpose), padding, cropping, up-sampling (Resize), merges inside Residual
  (Add/Concat/Mul/...), every activation (see :func:`supported_activations`); Dropout and the other
  training-only layers are removed.
- Images stay channels-last at the graph's input and output; the convolutional part runs
  channels-first inside the graph, with one Transpose where it starts (and one where it ends, if the
  output is still an image). A Flatten of a channels-first tensor feeding a Dense is absorbed by a
  permutation of the Dense kernel's rows, so the result equals Keras's channels-last flatten.
- The batch dimension is dynamic (``"batch"``); node names are the layers' names.

Command line: ``python -m fusenet.onnx MODEL_FILE OUT.onnx [--opset N] [--no-fuse]``.
"""

from ._activations import supported_activations
from ._export import DEFAULT_OPSET, MIN_OPSET, build_model_proto, export, supported_layers

__all__ = ["export", "build_model_proto", "supported_layers", "supported_activations", "DEFAULT_OPSET", "MIN_OPSET"]
