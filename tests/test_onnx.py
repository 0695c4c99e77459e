"""ONNX export: every layer type and the reference models, fusenet ``predict`` against onnxruntime.

Each case builds a small model, gives every weight a random value (positive variances), exports it
and runs the file with onnxruntime at two batch sizes (the batch dimension is dynamic): the outputs
agree with ``model.predict`` to 1e-5 (float32).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fusenet.onnx as fonnx
from fusenet import activations, layers, models

try:  # the optional extra 'onnx'; the module is skipped without it (no module-level importorskip: the
    import onnx  # contract tests import every test module to collect its CONTRACT_CASES)
    import onnxruntime as ort
except ImportError:  # pragma: no cover - depends on the environment
    onnx = ort = None

pytestmark = pytest.mark.skipif(onnx is None or ort is None, reason="onnx and onnxruntime are not installed")

L = layers
BATCHES = (2, 5)


def randomize(model, rng, scale=0.5):
    """Random weights in place (every layer, sublayers included); variances in [0.5, 1.5]."""
    for layer in model._all_layers():
        for key, arr in {**layer.params, **layer.state}.items():
            if "variance" in key:
                arr[...] = rng.uniform(0.5, 1.5, size=arr.shape)
            else:
                arr[...] = rng.normal(scale=scale, size=arr.shape)
    return model


def make_input(shape, batch, rng, kind="float"):
    if kind == "ids":
        return rng.integers(0, 20, size=(batch,) + tuple(shape)).astype(np.int64)
    return rng.normal(scale=1.5, size=(batch,) + tuple(shape)).astype(np.float32)


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check_export(model, shape, tmp_path, rng, kind="float", fused=True, opset=17, tol=1e-5):
    """Export ``model`` and compare onnxruntime with ``predict`` at two batch sizes; returns the proto."""
    path = tmp_path / f"{model.name}.onnx"
    proto = fonnx.export(model, path, opset=opset, fused=fused)
    for batch in BATCHES:
        x = make_input(shape, batch, rng, kind)
        expected = model.predict(x, verbose=0)
        got = run_onnx(path, x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    return proto


def sequential(build, shape, rng, dtype=None):
    model = models.Sequential([L.Input(shape, dtype=dtype)] + build())
    return randomize(model, rng)


# ---------------------------------------------------------------- every layer type
IMG = (6, 6, 3)
SEQ = (5, 4)
CASES = {
    # core
    "dense": (lambda: [L.Dense(6, activation="relu")], (5,)),
    "dense-rank3-nobias": (lambda: [L.Dense(6, use_bias=False, activation="tanh")], SEQ),
    "dense-flatten-input": (lambda: [L.Flatten(), L.Dense(3)], (2, 3)),
    # convolutions
    "conv2d-same-stride": (lambda: [L.Conv2D(4, 3, strides=2, padding="same")], (7, 7, 3)),
    "conv2d-dilated-groups": (lambda: [L.Conv2D(6, (3, 2), dilation_rate=2, groups=3, padding="same",
                                                activation="relu")], (8, 8, 3)),
    "conv2d-valid-stride": (lambda: [L.Conv2D(2, (2, 3), strides=(2, 1))], (7, 6, 3)),
    "conv1d-causal": (lambda: [L.Conv1D(4, 3, padding="causal", dilation_rate=2)], (9, 3)),
    "conv1d-same-stride": (lambda: [L.Conv1D(4, 4, strides=2, padding="same")], (9, 3)),
    "conv3d": (lambda: [L.Conv3D(2, 2, padding="same", activation="elu")], (4, 4, 4, 2)),
    "depthwise": (lambda: [L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")], (7, 7, 3)),
    "separable": (lambda: [L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu")], IMG),
    "conv2d-transpose-same": (lambda: [L.Conv2DTranspose(4, 3, strides=2, padding="same")], (4, 4, 3)),
    "conv2d-transpose-valid": (lambda: [L.Conv2DTranspose(2, (3, 2), strides=(2, 3))], (4, 4, 3)),
    "conv2d-transpose-outpad": (lambda: [L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)],
                                (4, 4, 3)),
    "conv2d-transpose-dilated": (lambda: [L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same")], (4, 4, 3)),
    "conv1d-transpose": (lambda: [L.Conv1DTranspose(3, 4, strides=2)], (5, 2)),
    # pooling
    "maxpool2d": (lambda: [L.MaxPooling2D(2)], IMG),
    "maxpool2d-same": (lambda: [L.MaxPooling2D(3, strides=2, padding="same")], (7, 7, 3)),
    "avgpool2d-same": (lambda: [L.AveragePooling2D(3, strides=2, padding="same")], (7, 7, 3)),
    "pool1d": (lambda: [L.MaxPooling1D(2), L.AveragePooling1D(2, padding="same")], (9, 3)),
    "pool3d": (lambda: [L.MaxPooling3D(2), L.AveragePooling3D(1)], (4, 4, 4, 2)),
    "global-pool-cf": (lambda: [L.Conv2D(3, 1), L.GlobalAveragePooling2D()], IMG),
    "global-max-cf-keepdims": (lambda: [L.Conv2D(3, 1), L.GlobalMaxPooling2D(keepdims=True)], IMG),
    "global-pool-native": (lambda: [L.GlobalMaxPooling2D(), L.Dense(2)], IMG),
    "global-pool-1d": (lambda: [L.GlobalAveragePooling1D(keepdims=True)], SEQ),
    "global-max-1d-cf": (lambda: [L.Conv1D(3, 2), L.SpatialDropout1D(0.5), L.GlobalMaxPooling1D()], SEQ),
    "global-pool-3d": (lambda: [L.GlobalMaxPooling3D()], (3, 3, 3, 2)),
    "global-avg-3d-cf": (lambda: [L.Conv3D(2, 1), L.GlobalAveragePooling3D()], (3, 3, 3, 2)),
    # normalization
    "batchnorm-dense": (lambda: [L.Dense(6), L.BatchNormalization(), L.ReLU()], (5,)),
    "batchnorm-conv": (lambda: [L.Conv2D(4, 3), L.BatchNormalization(epsilon=1e-2), L.ReLU()], IMG),
    "batchnorm-image-first": (lambda: [L.BatchNormalization(), L.Conv2D(2, 1)], IMG),
    "batchnorm-sequence": (lambda: [L.BatchNormalization(center=False)], SEQ),
    "batchnorm-axis1": (lambda: [L.BatchNormalization(axis=1, scale=False)], SEQ),
    "batchnorm-after-depthwise": (lambda: [L.DepthwiseConv2D(3), L.BatchNormalization()], IMG),
    "batchnorm-after-separable": (lambda: [L.SeparableConv2D(4, 3, use_bias=False), L.BatchNormalization()], IMG),
    "batchnorm-after-transpose": (lambda: [L.Conv2DTranspose(3, 2, strides=2), L.BatchNormalization()], (3, 3, 2)),
    "layernorm": (lambda: [L.LayerNormalization()], SEQ),
    "layernorm-two-axes": (lambda: [L.LayerNormalization(axis=[1, 2])], SEQ),
    "layernorm-rms": (lambda: [L.LayerNormalization(rms_scaling=True)], SEQ),
    "layernorm-no-center": (lambda: [L.LayerNormalization(center=False, epsilon=1e-5)], SEQ),
    "layernorm-axis1": (lambda: [L.LayerNormalization(axis=1)], SEQ),
    "groupnorm": (lambda: [L.GroupNormalization(groups=2)], (3, 3, 4)),
    "groupnorm-cf": (lambda: [L.Conv2D(4, 1), L.GroupNormalization(groups=-1)], (3, 3, 2)),
    "unitnorm": (lambda: [L.UnitNormalization()], (6,)),
    "unitnorm-cf-axes": (lambda: [L.Conv2D(3, 1), L.UnitNormalization(axis=[1, 2])], IMG),
    # reshaping
    "flatten-conv-dense": (lambda: [L.Conv2D(3, 3), L.Flatten(), L.Dense(4)], IMG),
    "flatten-conv-relu-dense": (lambda: [L.Conv2D(3, 3), L.Flatten(), L.ReLU(), L.Dropout(0.5), L.Dense(4)], IMG),
    "flatten-conv-output": (lambda: [L.Conv2D(3, 3), L.Flatten()], IMG),
    "flatten-conv-softmax": (lambda: [L.Conv2D(2, 3), L.Flatten(), L.Softmax()], IMG),
    "reshape": (lambda: [L.Reshape((2, -1))], SEQ),
    "reshape-after-conv": (lambda: [L.Conv2D(2, 1), L.Reshape((-1, 2))], IMG),
    "permute": (lambda: [L.Permute((2, 1))], SEQ),
    "repeat-vector": (lambda: [L.RepeatVector(3)], (4,)),
    # padding, cropping, up-sampling
    "zero-padding2d": (lambda: [L.Conv2D(2, 1), L.ZeroPadding2D(((1, 2), (0, 1)))], IMG),
    "zero-padding-native": (lambda: [L.ZeroPadding1D((2, 1))], SEQ),
    "zero-padding3d": (lambda: [L.ZeroPadding3D(1)], (2, 2, 2, 2)),
    "cropping2d": (lambda: [L.Conv2D(2, 1), L.Cropping2D(((1, 0), (2, 1)))], IMG),
    "cropping1d-3d": (lambda: [L.Cropping1D((1, 2))], (6, 2)),
    "cropping3d": (lambda: [L.Cropping3D(((0, 1), (1, 0), (1, 1)))], (3, 3, 4, 2)),
    "upsampling2d": (lambda: [L.Conv2D(2, 1), L.UpSampling2D((2, 3))], (3, 3, 2)),
    "upsampling1d-3d": (lambda: [L.UpSampling1D(3)], (4, 2)),
    "upsampling3d": (lambda: [L.UpSampling3D(2)], (2, 2, 2, 1)),
    # preprocessing
    "rescaling": (lambda: [L.Rescaling(1 / 255.0, offset=0.5)], (5,)),
    "rescaling-per-channel-cf": (lambda: [L.Conv2D(3, 1), L.Rescaling([1.0, 2.0, 3.0], offset=[0.0, 1.0, -1.0])], IMG),
    "normalization": (lambda: [L.Normalization(mean=[0.5, 1.0, -1.0], variance=[1.0, 4.0, 0.25])], IMG),
    "normalization-invert": (lambda: [L.Conv2D(3, 1), L.Normalization(mean=[0.5, 1.0, -1.0],
                                                                       variance=[1.0, 4.0, 0.25], invert=True)], IMG),
    # activation layers with hyper-parameters
    "relu-options": (lambda: [L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.5)], (6,)),
    "relu-threshold": (lambda: [L.ReLU(threshold=0.3)], (6,)),
    "leaky-elu-celu": (lambda: [L.LeakyReLU(0.2), L.ELU(0.5), L.CELU(0.7)], (6,)),
    "prelu": (lambda: [L.PReLU(alpha_initializer="ones")], (6,)),
    "prelu-shared-cf": (lambda: [L.Conv2D(3, 1), L.PReLU(shared_axes=[1, 2])], IMG),
    "rrelu": (lambda: [L.RReLU()], (6,)),
    "torch-style-activations": (lambda: [L.ReLU6(), L.SELU(), L.SiLU(), L.Mish(), L.Hardswish(), L.Hardsigmoid(),
                                         L.Sigmoid(), L.Tanh(), L.Softsign(), L.LogSigmoid(), L.Tanhshrink()], (6,)),
    "activation-layer": (lambda: [L.Dense(4), L.Activation("swish")], (6,)),
    "gelu-tanh": (lambda: [L.GELU(approximate="tanh")], (6,)),
    "softplus-options": (lambda: [L.Softplus(beta=2.0, threshold=3.0)], (6,)),
    "hardtanh": (lambda: [L.Hardtanh(-0.5, 2.0)], (6,)),
    "shrinks-threshold": (lambda: [L.Hardshrink(0.3), L.Softshrink(0.2), L.Threshold(0.1, -1.0)], (6,)),
    "softmax-axis1": (lambda: [L.Softmax(axis=1)], SEQ),
    "softmax-two-axes": (lambda: [L.Softmax(axis=[1, 2])], SEQ),
    "softmin-logsoftmax": (lambda: [L.Softmin(axis=1), L.LogSoftmax()], SEQ),
    "softmax2d-cf": (lambda: [L.Conv2D(3, 1), L.Softmax2d()], IMG),
    "softmax-channels-cf": (lambda: [L.Conv2D(3, 1), L.Softmax(axis=-1), L.MaxPooling2D(2)], IMG),
    "sparsemax": (lambda: [L.Sparsemax()], SEQ),
    "sparsemax-axis1": (lambda: [L.Sparsemax(axis=1)], SEQ),
    "glu": (lambda: [L.GLU(axis=1)], (4, 3)),
    "glu-cf": (lambda: [L.Conv2D(4, 1), L.GLU()], IMG),
    # embeddings
    "embedding": (lambda: [L.Embedding(20, 4), L.GlobalAveragePooling1D(), L.Dense(3)], (5,)),
    "positional-embedding": (lambda: [L.Embedding(20, 4), L.PositionalEmbedding(8)], (5,)),
    # recurrent
    "simple-rnn": (lambda: [L.SimpleRNN(5)], SEQ),
    "simple-rnn-relu-seq": (lambda: [L.SimpleRNN(5, activation="relu", return_sequences=True)], SEQ),
    "lstm": (lambda: [L.LSTM(6)], SEQ),
    "lstm-seq-backwards": (lambda: [L.LSTM(3, return_sequences=True, go_backwards=True)], SEQ),
    "lstm-activations": (lambda: [L.LSTM(3, activation="softsign", recurrent_activation="hard_sigmoid",
                                         return_sequences=True)], SEQ),
    "lstm-no-bias": (lambda: [L.LSTM(3, use_bias=False)], SEQ),
    "gru": (lambda: [L.GRU(4, return_sequences=True)], SEQ),
    "gru-reset-before-backwards": (lambda: [L.GRU(4, reset_after=False, go_backwards=True)], SEQ),
    "gru-backwards-seq": (lambda: [L.GRU(3, go_backwards=True, return_sequences=True, activation="relu")], SEQ),
    "bidirectional-concat": (lambda: [L.Bidirectional(L.LSTM(3, return_sequences=True))], SEQ),
    "bidirectional-sum": (lambda: [L.Bidirectional(L.GRU(3), merge_mode="sum")], SEQ),
    "bidirectional-ave-mul": (lambda: [L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave"),
                                       L.Bidirectional(L.LSTM(2), merge_mode="mul")], SEQ),
    # attention
    "mha": (lambda: [L.MultiHeadAttention(2, 3)], SEQ),
    "mha-causal-options": (lambda: [L.MultiHeadAttention(2, 3, value_dim=2, output_shape=5, use_causal_mask=True,
                                                         use_bias=False)], SEQ),
    "encoder-pre-norm": (lambda: [L.TransformerEncoderBlock(4, 2, 8)], SEQ),
    "encoder-post-norm": (lambda: [L.TransformerEncoderBlock(4, 2, 6, norm_first=False, activation="relu")], SEQ),
    # composites
    "residual-add": (lambda: [L.Conv2D(3, 1), L.Residual([L.Conv2D(3, 3, padding="same"), L.BatchNormalization(),
                                                          L.ReLU()])], IMG),
    "residual-projection-concat": (lambda: [L.Residual([L.Conv2D(4, 3, padding="same", strides=2)],
                                                       shortcut=[L.Conv2D(2, 1, strides=2)], merge="concatenate")], IMG),
    "residual-multiply-dense": (lambda: [L.Residual([L.Dense(5, activation="sigmoid")], merge="multiply")], (5,)),
    "residual-merges": (lambda: [L.Residual([L.Dense(4)], merge=L.Subtract()), L.Residual([L.Dense(4)], merge=L.Average()),
                                 L.Residual([L.Dense(4)], merge=L.Maximum()), L.Residual([L.Dense(4)], merge=L.Minimum())],
                        (4,)),
    "residual-native-vs-cf": (lambda: [L.Residual([L.Conv2D(3, 1)])], IMG),
    "time-distributed-dense": (lambda: [L.TimeDistributed(L.Dense(3))], SEQ),
    "time-distributed-conv": (lambda: [L.TimeDistributed(L.Conv2D(2, 2))], (3, 4, 4, 2)),
    # inference identities
    "identities": (lambda: [L.Dropout(0.5), L.GaussianNoise(1.0), L.GaussianDropout(0.3), L.AlphaDropout(0.2),
                            L.ActivityRegularization(l1=0.1), L.Identity(), L.Dense(3)], (5,)),
    "spatial-dropout": (lambda: [L.Conv2D(2, 1), L.SpatialDropout2D(0.5), L.Conv2D(2, 1)], IMG),
    "spatial-dropout3d": (lambda: [L.SpatialDropout3D(0.5), L.Conv3D(2, 1)], (2, 2, 2, 2)),
}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_onnxruntime(case, fused, tmp_path, rng):
    build, shape = CASES[case]
    kind = "ids" if "embedding" in case else "float"
    model = sequential(build, shape, rng)
    check_export(model, shape, tmp_path, rng, kind=kind, fused=fused)


@pytest.mark.parametrize("name", activations.available())
def test_every_activation_matches_onnxruntime(name, tmp_path, rng):
    model = sequential(lambda: [L.Dense(6), L.Activation(name)], (4, 5), rng)
    check_export(model, (4, 5), tmp_path, rng)


def test_dense_activation_argument_and_conv_activation(tmp_path, rng):
    model = sequential(lambda: [L.Conv2D(4, 3, activation="swish"), L.Flatten(), L.Dense(3, activation="softmax")],
                       IMG, rng)
    check_export(model, IMG, tmp_path, rng)


# ---------------------------------------------------------------- reference models
def mlp():
    return [L.Dense(16, activation="relu"), L.Dropout(0.2), L.Dense(16), L.BatchNormalization(), L.ReLU(),
            L.Dense(4, activation="softmax")], (10,), "float"


def cnn():
    return [L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(), L.MaxPooling2D(2),
            L.Conv2D(6, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dropout(0.3),
            L.Dense(8, activation="relu"), L.Dense(3)], (8, 8, 2), "float"


def resnet():
    def block(filters, strides=1):
        shortcut = None if strides == 1 else [L.Conv2D(filters, 1, strides=strides), L.BatchNormalization()]
        return L.Residual([L.Conv2D(filters, 3, strides=strides, padding="same"), L.BatchNormalization(), L.ReLU(),
                           L.Conv2D(filters, 3, padding="same"), L.BatchNormalization()], shortcut=shortcut)

    return [L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(), block(4), L.ReLU(), block(6, 2),
            L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(3)], (8, 8, 3), "float"


def transformer():
    return [L.Embedding(20, 8), L.PositionalEmbedding(6), L.TransformerEncoderBlock(8, 2, 16),
            L.TransformerEncoderBlock(8, 2, 12, norm_first=False), L.LayerNormalization(), L.Dense(8), L.GELU(),
            L.GlobalAveragePooling1D(), L.Dense(3)], (6,), "ids"


def lstm_classifier():
    return [L.Embedding(20, 6), L.LSTM(8, return_sequences=True), L.LSTM(5), L.Dense(3, activation="softmax")], \
        (7,), "ids"


REFERENCE = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "transformer": transformer, "lstm": lstm_classifier}


def reference_model(name, rng):
    build, shape, kind = REFERENCE[name]()
    model = sequential(lambda: build, shape, rng)
    return model, shape, kind


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_models(name, tmp_path, rng):
    model, shape, kind = reference_model(name, rng)
    check_export(model, shape, tmp_path, rng, kind=kind, fused=True)
    check_export(model, shape, tmp_path, rng, kind=kind, fused=False)
    fused = model.fuse()  # whatever patterns match (conv patterns included, where registered)
    proto = check_export(fused, shape, tmp_path, rng, kind=kind, fused=True)
    unfused_proto = check_export(fused, shape, tmp_path, rng, kind=kind, fused=False)
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops
    if name in ("mlp", "cnn", "resnet"):
        assert "BatchNormalization" in [n.op_type for n in unfused_proto.graph.node]


def test_cnn_transposes_only_at_the_input(tmp_path, rng):
    model, shape, _ = reference_model("cnn", rng)
    proto = check_export(model, shape, tmp_path, rng)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Transpose") == 1 and ops[0] == "Transpose"  # NHWC -> NCHW once; Flatten absorbed by the Dense
    assert "Gather" not in ops
    model, shape, _ = reference_model("resnet", rng)
    ops = [n.op_type for n in fonnx.build_model_proto(model).graph.node]
    assert ops.count("Transpose") == 1


def test_image_output_is_transposed_back_once(tmp_path, rng):
    model = sequential(lambda: [L.Conv2D(3, 3, padding="same"), L.ReLU(), L.Conv2D(2, 1)], IMG, rng)
    proto = check_export(model, IMG, tmp_path, rng)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Transpose") == 2 and ops[0] == ops[-1] == "Transpose"
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out] == ["batch", 6, 6, 2]


def test_node_names_are_layer_names_and_batch_is_dynamic(tmp_path, rng):
    model, shape, _ = reference_model("mlp", rng)
    proto = fonnx.export(model, tmp_path / "m.onnx", fused=False)
    names = {n.name for n in proto.graph.node}
    assert {layer.name for layer in model.layers if not isinstance(layer, L.Dropout)} <= names
    assert len(names) == len(proto.graph.node)
    (inp,) = proto.graph.input
    assert inp.name == "input" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert proto.graph.output[0].name == "output"
    assert "Dropout" not in {n.op_type for n in proto.graph.node}


def test_fused_layers_export_their_source_layers(tmp_path, rng):
    model = sequential(lambda: [L.Dense(6, name="d1"), L.BatchNormalization(name="bn"), L.ReLU(name="act"),
                                L.Dense(6, name="d2"), L.Dense(3, name="d3"), L.LayerNormalization(name="ln"),
                                L.Dense(4, name="d4"), L.ReLU(name="act2")], (5,), rng)
    fused = model.fuse()
    kinds = {type(layer).__name__ for layer in fused.layers}
    assert {"FusedDenseBNActivation", "FusedAffineDense", "FusedLayerNormDense"} <= kinds
    proto = check_export(fused, (5,), tmp_path, rng)
    names = {n.name for n in proto.graph.node}
    assert {"d1", "act", "d2", "d3", "ln", "d4", "act2"} <= names and "bn" not in names  # BN folded into d1
    unfused = fonnx.build_model_proto(fused, fused=False)
    assert "bn" in {n.name for n in unfused.graph.node}


def test_float64_model(tmp_path, rng):
    # onnxruntime's CPU kernels for double cover Gemm and the element-wise operators (not Conv)
    model = sequential(lambda: [L.Dense(6), L.BatchNormalization(), L.ReLU(), L.Dense(3), L.Softmax()],
                       (5,), rng, dtype="float64")
    path = tmp_path / "f64.onnx"
    proto = fonnx.export(model, path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = rng.normal(size=(3, 5))
    np.testing.assert_allclose(run_onnx(path, x), model.predict(x, verbose=0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("opset", [18, 20])
def test_newer_opsets(opset, tmp_path, rng):
    model = sequential(lambda: [L.Conv2D(3, 3), L.GlobalAveragePooling2D(keepdims=True), L.Softmax(axis=[1, 3]),
                                L.Flatten(), L.Dense(4), L.Reshape((2, 2)), L.LayerNormalization(rms_scaling=True),
                                L.UnitNormalization(), L.Sparsemax()], IMG, rng)
    proto = check_export(model, IMG, tmp_path, rng, opset=opset)
    assert proto.opset_import[0].version == opset


# ---------------------------------------------------------------- refusals and errors
class Doubler(layers.Layer):
    """A user layer without an ONNX mapping."""

    def forward(self, x, training=False):
        return 2 * x


class Cube(activations.ActivationFunction):
    name = "cube_for_onnx_test"

    def forward(self, x):
        return x ** 3


@pytest.mark.parametrize("build, match", [
    (lambda: [L.Dense(3), Doubler(name="doubler")],
     r"layer 'doubler' \(Doubler\) has no ONNX mapping .*Supported layers: \[.*'Conv2D'.*'Dense'"),
    (lambda: [L.Residual([L.Dense(5), Doubler(name="inner")])], r"layer 'inner' \(Doubler\) has no ONNX mapping"),
    (lambda: [L.Residual([L.Dense(5)], merge=L.Dot(axes=1, name="dot"))],
     r"merges with layer 'dot' \(Dot\), which has no ONNX mapping. Supported merges: \['Add'"),
    (lambda: [L.Dense(5, activation=Cube(), name="cubic")],
     r"layer 'cubic' \(Dense\) uses the activation 'cube_for_onnx_test'.*Supported activations: \["),
])
def test_unsupported_layers_are_refused(build, match, rng):
    model = sequential(build, (5,), rng)
    with pytest.raises(ValueError, match=match):
        fonnx.build_model_proto(model)


@pytest.mark.parametrize("layer, match", [
    (lambda: L.LSTM(3, activation="gelu", name="lstm_gelu"),
     r"layer 'lstm_gelu' \(LSTM\) uses the activation 'gelu' inside the recurrent cell; ONNX recurrent operators "
     r"support only \["),
    (lambda: L.GRU(3, return_state=True, name="gru_state"), r"layer 'gru_state' \(GRU\) returns its states"),
    (lambda: L.Bidirectional(L.LSTM(3), merge_mode=None, name="bi"), r"layer 'bi' \(Bidirectional\) returns two outputs"),
])
def test_unsupported_recurrent_configurations(layer, match, rng):
    # a Sequential cannot hold a layer with a list output, so the layer is emitted on its own
    from fusenet.onnx._export import _Context
    from fusenet.onnx._graph import GraphBuilder, Value

    layer = layer()
    layer(np.zeros((1,) + SEQ, dtype=np.float32))
    ctx = _Context(GraphBuilder(17, np.float32), fused=True)
    with pytest.raises(ValueError, match=match):
        ctx.emit_layer(layer, Value("input", (None,) + SEQ, np.float32))


def test_argument_errors(tmp_path, rng):
    model = sequential(lambda: [L.Dense(2)], (3,), rng)
    with pytest.raises(ValueError, match=r"expected opset between 17 .* Received: opset=16"):
        fonnx.export(model, tmp_path / "m.onnx", opset=16)
    with pytest.raises(TypeError, match=r"expected opset to be an int. Received: opset='17'"):
        fonnx.export(model, tmp_path / "m.onnx", opset="17")
    with pytest.raises(TypeError, match=r"expected a fusenet Sequential model. Received: Dense"):
        fonnx.export(L.Dense(2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"is not built"):
        fonnx.export(models.Sequential([L.Dense(2)]), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        fonnx.export(model, tmp_path / "missing" / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_failed_export_leaves_the_old_file(tmp_path, rng):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    model = sequential(lambda: [Doubler()], (3,), rng)
    with pytest.raises(ValueError):
        fonnx.export(model, path)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary file left behind
    good = sequential(lambda: [L.Dense(2)], (3,), rng)
    fonnx.export(good, path)
    onnx.checker.check_model(onnx.load(str(path)))


def test_supported_lists():
    assert {"Dense", "Conv2D", "LSTM", "GRU", "MultiHeadAttention", "Residual", "Dropout"} <= set(fonnx.supported_layers())
    assert {"relu", "gelu", "softmax", "hard_silu", "sparsemax"} <= set(fonnx.supported_activations())


# ---------------------------------------------------------------- command line
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-m", "fusenet.onnx", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_command_line(tmp_path, rng):
    model, shape, _ = reference_model("cnn", rng)
    model.compile("adam", "mse")
    model_file = tmp_path / "cnn.fnet"
    model.save(model_file)
    out = tmp_path / "cnn.onnx"
    result = _cli(model_file, out, "--opset", 18, "--no-fuse")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "opset 18" in result.stdout
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 18
    assert "BatchNormalization" in {n.op_type for n in proto.graph.node}
    x = make_input(shape, 3, rng)
    np.testing.assert_allclose(run_onnx(out, x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    result = _cli(model_file, out)
    assert result.returncode == 0 and "BatchNormalization" not in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_command_line_errors(tmp_path, rng, capsys):
    from fusenet.onnx.__main__ import main

    assert main([str(tmp_path / "missing.fnet"), str(tmp_path / "out.onnx")]) == 1
    err = capsys.readouterr().err
    assert "fusenet.onnx: error:" in err and "No such file" in err
    model = sequential(lambda: [L.Dense(2)], (3,), rng)
    model.save(tmp_path / "m.fnet")
    assert main([str(tmp_path / "m.fnet"), str(tmp_path / "out.onnx"), "--opset", "99"]) == 1
    assert "expected opset between 17" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "m.fnet"), str(tmp_path / "out.onnx"), "--opset", "x"])
    assert exc.value.code == 2
    assert not (tmp_path / "out.onnx").exists()
    assert main([str(tmp_path / "m.fnet"), str(tmp_path / "out.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------- unknown sizes besides the batch
@pytest.mark.parametrize("build, shapes", [
    (lambda: [L.Conv2D(3, 4, strides=2, padding="same"), L.MaxPooling2D(3, strides=2, padding="same"),
              L.Conv2D(2, 3, padding="same"), L.ReLU(), L.Flatten()],
     [(7, 9, 3), (6, 5, 3)]),
    (lambda: [L.Conv1D(4, 2, padding="same"), L.AveragePooling1D(2, padding="same"), L.GlobalMaxPooling1D()],
     [(7, 3), (4, 3)]),
    (lambda: [L.Dense(4), L.PositionalEmbedding(10), L.MultiHeadAttention(2, 2, use_causal_mask=True),
              L.LSTM(3, return_sequences=True), L.TimeDistributed(L.Dense(2))], [(5, 4), (3, 4)]),
])
def test_unknown_spatial_and_time_sizes(build, shapes, tmp_path, rng):
    model = sequential(build, (None,) * (len(shapes[0]) - 1) + shapes[0][-1:], rng)
    path = tmp_path / "dynamic.onnx"
    fonnx.export(model, path)
    for shape in shapes:
        for batch in BATCHES:
            x = make_input(shape, batch, rng)
            np.testing.assert_allclose(run_onnx(path, x), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_batchnorms_in_a_row_fold_into_one_kernel(tmp_path, rng):
    model = sequential(lambda: [L.Conv2D(3, 3), L.BatchNormalization(), L.BatchNormalization(epsilon=0.1), L.ReLU()],
                       IMG, rng)
    fused = model.fuse()
    for m in (model, fused):
        proto = check_export(m, IMG, tmp_path, rng)
        assert [n.op_type for n in proto.graph.node] == ["Transpose", "Conv", "Relu", "Transpose"]


def test_every_supported_layer_has_a_case():
    def classes(layer):
        found = {type(layer).__name__}
        for sub in list(layer._sublayers.values()) + [getattr(layer, "merge", None)]:
            if sub is not None:
                found |= classes(sub)
        return found

    covered = set()
    for build, _ in CASES.values():
        for layer in build():
            covered |= classes(layer)
    covered.add("Input")
    missing = sorted(set(fonnx.supported_layers()) - covered)
    assert not missing, f"supported layers without an onnxruntime case: {missing}"
