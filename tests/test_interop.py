"""Weight interchange: PyTorch modules <-> fusenet models (same numbers both ways), Keras 3 ``.weights.h5``."""

import pickle

import numpy as np
import pytest

import fusenet
from fusenet import layers as L
from fusenet import models
from fusenet.errors import ModelFileError
from fusenet.fusion import FusedLayer
from fusenet.interop import from_torch, keras_weight_paths, to_torch
from fusenet.interop._keras_h5 import keras_snake_case

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the environment
    torch = nn = None
try:
    import h5py
except ImportError:  # pragma: no cover - depends on the environment
    h5py = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
requires_h5py = pytest.mark.skipif(h5py is None, reason="h5py is not installed")
TOL = 1e-5


def close(a, b, tol=TOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ---------------------------------------------------------------- torch helpers
def randomize_torch(net, seed=0):
    """Random parameters and BatchNorm statistics (positive variances), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(net.named_parameters()) + list(net.named_buffers()):
            if p.dtype not in (torch.float32, torch.float64):
                continue
            if "running_var" in name:
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return net.eval()


def torch_out(net, x):
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    return out.numpy()


def channels_last(x):
    return np.moveaxis(x, 1, -1) if x.ndim >= 3 else x


def check_round_trip(net, x_torch, x_fusenet=None, input_shape=None, tol=TOL, fuse=True):
    """torch == from_torch == (fused) == to_torch, on the same data in each framework's layout."""
    x_fusenet = channels_last(x_torch) if x_fusenet is None else x_fusenet
    ref = torch_out(net, x_torch)
    model = from_torch(net, input_shape=input_shape)
    close(model.predict(x_fusenet, verbose=0), ref, tol)
    back = to_torch(model)
    close(torch_out(back, x_torch), ref, tol)
    if fuse:
        fused = model.fuse()
        close(fused.predict(x_fusenet, verbose=0), ref, tol)
        close(torch_out(to_torch(fused), x_torch), ref, tol)
        return model, fused
    return model, None


# ---------------------------------------------------------------- torch -> fusenet -> torch
@requires_torch
def test_cnn_with_batchnorm(rng):
    net = randomize_torch(nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, eps=1e-3, momentum=0.2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
        nn.Linear(6 * 2 * 2, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Dropout(0.3), nn.Linear(10, 3)))
    x = rng.normal(size=(5, 3, 8, 8)).astype(np.float32)
    model, fused = check_round_trip(net, x)
    bn = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    assert bn[0].momentum == pytest.approx(0.8) and bn[0].epsilon == pytest.approx(1e-3)
    assert bn[1].momentum == pytest.approx(0.9) and bn[1].epsilon == pytest.approx(1e-5)
    assert any(isinstance(layer, FusedLayer) for layer in fused.layers)
    conv = model.layers[0]
    assert conv.padding == "same" and conv.kernel_size == (3, 3)
    np.testing.assert_array_equal(conv._params["kernel"], net[0].weight.detach().numpy().transpose(2, 3, 1, 0))
    back = to_torch(model)
    assert isinstance(back[0], nn.Conv2d) and not back.training


@requires_torch
def test_mlp_activations_and_normalizations(rng):
    net = randomize_torch(nn.Sequential(
        nn.Linear(6, 8), nn.LeakyReLU(0.1), nn.Linear(8, 8), nn.ELU(0.5), nn.LayerNorm(8, eps=1e-4), nn.GELU("tanh"),
        nn.Linear(8, 8), nn.Softplus(beta=2.0, threshold=3.0), nn.Hardtanh(-0.5, 1.5), nn.PReLU(8), nn.SiLU(),
        nn.Mish(), nn.Linear(8, 8), nn.CELU(0.7), nn.SELU(), nn.Hardswish(), nn.Hardsigmoid(), nn.Tanh(),
        nn.Softsign(), nn.LogSigmoid(), nn.Tanhshrink(), nn.Hardshrink(0.1), nn.Softshrink(0.05),
        nn.Threshold(-0.5, 0.25), nn.ReLU6(), nn.RReLU(), nn.Sigmoid(), nn.PReLU(), nn.Linear(8, 4), nn.Softmax(dim=1)))
    check_round_trip(net, rng.normal(size=(7, 6)).astype(np.float32))


@requires_torch
def test_log_softmax_softmin_glu_axes(rng):
    net = randomize_torch(nn.Sequential(nn.Linear(4, 6), nn.GLU(dim=-1), nn.LogSoftmax(dim=-1), nn.Softmin(dim=1)))
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)  # (batch, time, features): the same layout in both
    check_round_trip(net, x, x_fusenet=x, input_shape=(5, 4), fuse=False)


@requires_torch
def test_conv1d_padding_pooling(rng):
    net = randomize_torch(nn.Sequential(
        nn.Conv1d(3, 4, 3, padding=2, dilation=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, stride=2, groups=2),
        nn.BatchNorm1d(4), nn.AvgPool1d(2, stride=1), nn.Conv1d(4, 5, 3, padding="same", dilation=2), nn.Dropout1d(0.2),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(5, 2)))
    check_round_trip(net, rng.normal(size=(4, 3, 17)).astype(np.float32))


@requires_torch
def test_conv2d_options(rng):
    net = randomize_torch(nn.Sequential(
        nn.Conv2d(4, 6, (3, 2), padding=(1, 2), stride=2, groups=2), nn.ReLU(), nn.Dropout2d(0.1),
        nn.Conv2d(6, 6, 3, padding=2, dilation=2), nn.Softmax2d(), nn.AvgPool2d(2), nn.Conv2d(6, 3, 1, bias=False),
        nn.PReLU(3), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 2)))
    check_round_trip(net, rng.normal(size=(3, 4, 9, 8)).astype(np.float32))


@requires_torch
def test_flatten_permutation_through_per_feature_layers(rng):
    net = randomize_torch(nn.Sequential(
        nn.Conv2d(2, 3, 2), nn.Flatten(), nn.BatchNorm1d(27), nn.LayerNorm(27), nn.PReLU(27), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(27, 4)))
    x = rng.normal(size=(5, 2, 4, 4)).astype(np.float32)
    check_round_trip(net, x)
    model = from_torch(net)
    flat = model.predict(channels_last(x)[:1], verbose=0)
    assert flat.shape == (1, 4)


@requires_torch
def test_embedding_lstm_gru(rng):
    net = randomize_torch(nn.Sequential(
        nn.Embedding(20, 6), nn.LSTM(6, 5, batch_first=True, num_layers=2), fusenet.interop.RNNOutput(True),
        nn.GRU(5, 4, batch_first=True), fusenet.interop.RNNOutput(False), nn.Linear(4, 3)))
    ids = rng.integers(0, 20, size=(4, 7))
    ref = torch_out(net, ids)
    model = from_torch(net)
    assert [type(layer).__name__ for layer in model.layers] == ["Embedding", "LSTM", "LSTM", "GRU", "Dense"]
    close(model.predict(ids, verbose=0), ref)
    close(torch_out(to_torch(model), ids), ref)


@requires_torch
def test_recurrent_without_bias_and_sequence_to_convolution(rng):
    net = randomize_torch(nn.Sequential(
        nn.Embedding(20, 4), nn.GRU(4, 6, batch_first=True, bias=False), fusenet.interop.RNNOutput(True),
        fusenet.interop.ToChannelsFirst(), nn.Conv1d(6, 5, 3), nn.ReLU(), fusenet.interop.ToChannelsLast(),
        nn.LSTM(5, 3, batch_first=True, bias=False), fusenet.interop.RNNOutput(False), nn.Linear(3, 2)))
    ids = rng.integers(0, 20, size=(3, 9))
    ref = torch_out(net, ids)
    model = from_torch(net)
    close(model.predict(ids, verbose=0), ref)
    close(torch_out(to_torch(model), ids), ref)


@requires_torch
def test_float64_module(rng):
    net = randomize_torch(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
                                        nn.Linear(12, 2)).double())
    x = rng.normal(size=(3, 2, 4, 4))
    model = from_torch(net)
    assert model.layers[0].dtype == "float64"
    check_round_trip(net, x, tol=1e-10)


@requires_torch
def test_input_shape_argument(rng):
    net = randomize_torch(nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2)))
    with pytest.raises(ValueError, match=r"cannot tell the input shape from the first module MaxPool2d; pass input_shape="):
        from_torch(net)
    model = from_torch(net, input_shape=(3, 4, 4))
    assert model.input_shape == (None, 4, 4, 3)
    check_round_trip(net, rng.normal(size=(2, 3, 4, 4)).astype(np.float32), input_shape=(3, 4, 4))


@requires_torch
def test_fusenet_model_to_torch(rng):
    model = models.Sequential([
        L.Input((9, 9, 3)), L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), L.BatchNormalization(), L.ZeroPadding2D(((1, 0), (0, 2))),
        L.UpSampling2D(2), L.Conv2D(3, 2, strides=2, padding="same", use_bias=False), L.GlobalAveragePooling2D(),
        L.Dense(5, activation="gelu"), L.Dense(3, activation="softmax")])
    for w in model.weights:
        w[...] = rng.normal(scale=0.5, size=w.shape)
    model.layers[2]._state["moving_variance"][...] = rng.uniform(0.5, 1.5, size=8)
    x = rng.normal(size=(4, 9, 9, 3)).astype(np.float32)
    net = to_torch(model)
    close(torch_out(net, np.moveaxis(x, -1, 1)), model.predict(x, verbose=0))
    seq = models.Sequential([L.Input((8, 3)), L.Conv1D(4, 3, padding="causal", dilation_rate=2), L.MaxPooling1D(2),
                             L.GlobalMaxPooling1D(), L.Dense(2)])
    x = rng.normal(size=(3, 8, 3)).astype(np.float32)
    close(torch_out(to_torch(seq), np.moveaxis(x, -1, 1)), seq.predict(x, verbose=0))
    volume = models.Sequential([
        L.Input((4, 4, 4, 2)), L.Conv3D(3, 3, padding="same"), L.BatchNormalization(), L.Softmax(axis=-1),
        L.GaussianNoise(0.5), L.GaussianDropout(0.2), L.ActivityRegularization(0.1), L.Identity(), L.Flatten(),
        L.AlphaDropout(0.1), L.Dense(2)])
    for w in volume.weights:
        w[...] = rng.uniform(0.5, 1.5, size=w.shape)
    x = rng.normal(size=(2, 4, 4, 4, 2)).astype(np.float32)
    net = to_torch(volume)
    assert [type(m).__name__ for m in net] == ["Conv3d", "BatchNorm3d", "Softmax", "Flatten", "AlphaDropout", "Linear"]
    assert net[2].dim == 1
    close(torch_out(net, np.moveaxis(x, -1, 1)), volume.predict(x, verbose=0))


# ---------------------------------------------------------------- refusals
@requires_torch
@pytest.mark.parametrize("module, match", [
    (lambda: nn.Sequential(nn.Linear(3, 3), nn.Bilinear(3, 3, 2)),
     r"torch.nn.modules.linear.Bilinear is not supported. Supported modules: \[.*'Conv2d'"),
    (lambda: nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), r"cannot convert Conv2d.*padding_mode='reflect'"),
    (lambda: nn.Sequential(nn.LSTM(3, 3)), r"cannot convert LSTM.*only batch_first=True"),
    (lambda: nn.Sequential(nn.Linear(3, 3), fusenet.interop.RNNOutput()), r"must directly follow an nn.LSTM or nn.GRU"),
    (lambda: nn.Sequential(nn.Conv2d(3, 3, 3, stride=2, dilation=2)), r"does not combine strides > 1 with dilation > 1"),
    (lambda: nn.Sequential(nn.Conv2d(3, 3, 3), nn.Flatten(), nn.Conv1d(3, 3, 1)),
     r"between a Flatten of channels-first data and the next Linear"),
    (lambda: nn.Sequential(nn.Conv2d(3, 3, 3), nn.Linear(3, 3)), r"applies it to the last \(spatial\) axis"),
    (lambda: nn.Sequential(nn.Linear(3, 3), nn.Softmax()), r"an implicit dim \(dim=None\) is ambiguous"),
    (lambda: nn.Sequential(nn.Conv2d(3, 3, 1), nn.MaxPool2d(2, padding=1)), r"only padding=0 and ceil_mode=False"),
    (lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)),
     r"track_running_stats=False"),
])
def test_from_torch_refusals(module, match):
    with pytest.raises(ValueError, match=match):
        from_torch(module())


@requires_torch
def test_to_torch_refusals():
    with pytest.raises(TypeError, match=r"expected a torch.nn.Module. Received: Dense"):
        from_torch(L.Dense(3))
    with pytest.raises(TypeError, match=r"expected a fusenet Sequential model. Received: int"):
        to_torch(3)
    with pytest.raises(fusenet.errors.NotBuiltError, match=r"so to_torch\(\) is not available"):
        to_torch(models.Sequential([L.Dense(2)]))
    attention = models.Sequential([L.Input((4, 6)), L.MultiHeadAttention(2, 3, name="mha")])
    with pytest.raises(ValueError, match=r"layer 'mha' \(MultiHeadAttention\) has no torch.nn equivalent in a "
                                         r"Sequential. Supported layers: \[.*'Conv2D'"):
        to_torch(attention)
    gru = models.Sequential([L.Input((4, 6)), L.GRU(3, reset_after=False, name="gru_rb")])
    with pytest.raises(ValueError, match=r"layer 'gru_rb' \(GRU\): reset_after=False has no torch equivalent"):
        to_torch(gru)
    rms = models.Sequential([L.Input((6,)), L.LayerNormalization(rms_scaling=True, name="rms")])
    with pytest.raises(ValueError, match=r"layer 'rms' \(LayerNormalization\)"):
        to_torch(rms)
    relu = models.Sequential([L.Input((6,)), L.ReLU(threshold=0.5, name="thr")])
    with pytest.raises(ValueError, match=r"torch has no ReLU with a threshold"):
        to_torch(relu)
    same_pool = models.Sequential([L.Input((5, 5, 2)), L.MaxPooling2D(2, padding="same", name="pool")])
    with pytest.raises(ValueError, match=r"layer 'pool' \(MaxPooling2D\): padding='same' pads this input"):
        to_torch(same_pool)


# ---------------------------------------------------------------- Keras 3 .weights.h5
def keras_zoo():
    """A model with every weight layout Keras files hold: plain, recurrent cells, attention, wrappers."""
    return models.Sequential([
        L.Input((6, 4)), L.Conv1D(5, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.Residual([L.Dense(5), L.LayerNormalization()]), L.LSTM(6, return_sequences=True),
        L.Bidirectional(L.GRU(3, return_sequences=True)), L.MultiHeadAttention(2, 3),
        L.TimeDistributed(L.Dense(4)), L.SimpleRNN(4), L.Dense(3),
    ])


def randomize(model, rng):
    for w in model.weights:
        w[...] = rng.uniform(0.5, 1.5, size=w.shape)
    return model


def test_keras_snake_case():
    cases = {"Dense": "dense", "Conv2D": "conv2d", "Conv2DTranspose": "conv2d_transpose", "LSTM": "lstm",
             "BatchNormalization": "batch_normalization", "MultiHeadAttention": "multi_head_attention",
             "ReLU": "re_lu", "PReLU": "p_re_lu", "DepthwiseConv2D": "depthwise_conv2d", "GRU": "gru"}
    assert {k: keras_snake_case(k) for k in cases} == cases


def test_keras_layout_paths():
    model = keras_zoo()
    paths = [path for path, _, arrays in keras_weight_paths(model) if arrays]
    assert paths == [
        "layers/conv1d", "layers/batch_normalization", "layers/dense", "layers/layer_normalization", "layers/lstm/cell",
        "layers/bidirectional/forward_layer/cell", "layers/bidirectional/backward_layer/cell",
        "layers/multi_head_attention/query_dense", "layers/multi_head_attention/key_dense",
        "layers/multi_head_attention/value_dense", "layers/multi_head_attention/output_dense",
        "layers/time_distributed/layer", "layers/simple_rnn/cell", "layers/dense_1"]


@requires_h5py
def test_keras_h5_round_trip(tmp_path, rng):
    source = randomize(keras_zoo(), rng)
    path = tmp_path / "zoo.weights.h5"
    source.save_weights(path)  # a .weights.h5 path means the Keras format
    with h5py.File(path, "r") as f:
        assert "vars" in f and len(f["vars"]) == 0
        assert f["layers/lstm/cell/vars/1"].shape == (6, 24)
        assert f["layers/bidirectional/backward_layer/cell/vars/2"].shape == (2, 9)
        assert f["layers/multi_head_attention/query_dense/vars/0"].shape == (6, 2, 3)
        assert len(f["layers/re_lu/vars"]) == 0 and len(f["layers/add/vars"]) == 0
    target = keras_zoo()
    target.load_weights(path)
    for a, b in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = rng.normal(size=(2, 6, 4)).astype(np.float32)
    close(target.predict(x, verbose=0), source.predict(x, verbose=0), 1e-6)
    other = tmp_path / "zoo.h5"
    source.save_weights(other, format="keras-h5")
    assert open(other, "rb").read(8) == b"\x89HDF\r\n\x1a\n"


@requires_h5py
def test_keras_h5_into_a_fused_model(tmp_path, rng):
    source = randomize(models.Sequential([L.Input((5,)), L.Dense(4), L.BatchNormalization(), L.ReLU(), L.Dense(2)]), rng)
    path = tmp_path / "mlp.weights.h5"
    source.save_weights(path)
    fused = models.Sequential([L.Input((5,)), L.Dense(4), L.BatchNormalization(), L.ReLU(), L.Dense(2)]).fuse()
    assert isinstance(fused.layers[0], FusedLayer)
    fused.load_weights(path)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    close(fused.predict(x, verbose=0), source.predict(x, verbose=0))
    fused.save_weights(tmp_path / "again.weights.h5")
    with h5py.File(tmp_path / "again.weights.h5", "r") as f:
        assert sorted(f["layers"]) == ["batch_normalization", "dense", "dense_1", "re_lu"]


def write_keras_file(path, rng, tweak=None):
    """A small file written by hand in the layout Keras 3's save_weights produces (plus an optimizer group)."""
    arrays = {
        "layers/conv2d/vars": [rng.normal(size=(3, 3, 2, 4)), rng.normal(size=(4,))],
        "layers/batch_normalization/vars": [rng.normal(size=4), rng.normal(size=4), rng.normal(size=4),
                                            rng.uniform(0.5, 1.5, size=4)],
        "layers/activation/vars": [],  # Keras's Activation("relu") where the fusenet model has a ReLU layer
        "layers/flatten/vars": [],
        "layers/dense/vars": [rng.normal(size=(64, 8)), rng.normal(size=8)],
        "layers/dense_1/vars": [rng.normal(size=(8, 3)), rng.normal(size=3)],
    }
    with h5py.File(path, "w") as f:
        f.create_group("vars")
        for group, values in arrays.items():
            g = f.require_group(group)
            for i, a in enumerate(values):
                g.create_dataset(str(i), data=a.astype(np.float32))
        f.create_dataset("optimizer/vars/0", data=np.array(3, dtype=np.int64))
        if tweak is not None:
            tweak(f)
    return [a for values in arrays.values() for a in values]


def keras_cnn():
    return models.Sequential([L.Input((6, 6, 2)), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(),
                              L.Dense(8), L.Dense(3)])


@requires_h5py
def test_read_a_keras3_file_written_by_hand(tmp_path, rng):
    path = tmp_path / "keras.weights.h5"
    expected = write_keras_file(path, rng)
    model = keras_cnn()
    model.load_weights(str(path))
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    assert all(w.dtype == np.float32 for w in model.get_weights())


def _pickle_dataset(f):
    del f["layers/dense/vars/1"]
    blob = pickle.dumps(print)
    f.create_dataset("layers/dense/vars/1", data=np.array([np.void(blob)] * 8))


def _string_dataset(f):
    del f["layers/dense_1/vars/1"]
    f.create_dataset("layers/dense_1/vars/1", data=["__import__('os').system('echo pwned')"] * 3,
                     dtype=h5py.string_dtype())


def _external_link(f):
    del f["layers/dense_1/vars/0"]
    f["layers/dense_1/vars/0"] = h5py.ExternalLink("/etc/passwd", "/data")


def _soft_link(f):
    del f["layers/dense_1/vars/0"]
    f["layers/dense_1/vars/0"] = h5py.SoftLink("/layers/dense/vars/0")


def _wrong_shape(f):
    del f["layers/dense/vars/0"]
    f.create_dataset("layers/dense/vars/0", data=np.zeros((63, 8), dtype=np.float32))


def _extra_variable(f):
    f.create_dataset("layers/conv2d/vars/2", data=np.zeros(4, dtype=np.float32))


def _missing_layer(f):
    del f["layers/dense_1"]


def _nan(f):
    f["layers/batch_normalization/vars/3"][0] = np.nan


def _int_weights(f):
    del f["layers/dense_1/vars/1"]
    f.create_dataset("layers/dense_1/vars/1", data=np.zeros(3, dtype=np.int32))


@requires_h5py
@pytest.mark.parametrize("tweak, match", [
    (_pickle_dataset, r"layers/dense/vars/1 has dtype \|V\d+; weights must be floats"),
    (_string_dataset, r"layers/dense_1/vars/1 has dtype object; weights must be floats"),
    (_external_link, r"layers/dense_1/vars/0 is a ExternalLink, not data stored in the file. Refused."),
    (_soft_link, r"layers/dense_1/vars/0 is a SoftLink"),
    (_wrong_shape,
     r"layers/dense/vars/0 has shape \(63, 8\), but weight 0 of layer 'dense.*' \(Dense\) has shape \(64, 8\)"),
    (_extra_variable, r"'layers/conv2d/vars' holds the variables \['0', '1', '2'\], but layer .* expects 2"),
    (_missing_layer, r"no group 'layers/dense_1/vars' for layer .*Layers in the file: \["),
    (_nan, r"layers/batch_normalization/vars/3 holds NaN or infinite values"),
    (_int_weights, r"layers/dense_1/vars/1 has dtype int32; weights must be floats"),
])
def test_malformed_keras_files_change_nothing(tweak, match, tmp_path, rng, monkeypatch):
    path = tmp_path / "bad.weights.h5"
    write_keras_file(path, rng, tweak)
    model = keras_cnn()
    before = model.get_weights()

    def never(*args, **kwargs):
        raise AssertionError("something from the file was unpickled")

    monkeypatch.setattr(pickle, "loads", never)
    monkeypatch.setattr(pickle, "load", never)
    with pytest.raises(ModelFileError, match=match):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@requires_h5py
def test_not_an_hdf5_file(tmp_path, rng):
    model = keras_cnn()
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"import os; os.system('echo pwned')\n" * 10)
    with pytest.raises(ModelFileError, match=r"is not a Keras .weights.h5 file: it does not start with the HDF5 signature"):
        model.load_weights(garbage)
    good = tmp_path / "good.weights.h5"
    write_keras_file(good, rng)
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[:1200])
    with pytest.raises(ModelFileError, match=r"could not read the Keras weights file \(truncated or corrupt\?\)"):
        model.load_weights(truncated)
    with pytest.raises(ModelFileError, match=r"No such file"):
        model.load_weights(tmp_path / "missing.weights.h5")
    folder = tmp_path / "folder.weights.h5"
    folder.mkdir()
    with pytest.raises(ModelFileError, match=r"is not a file"):
        model.load_weights(folder)


@requires_h5py
def test_save_weights_format_argument(tmp_path, rng):
    model = randomize(keras_cnn(), rng)
    with pytest.raises(ValueError, match=r"expected format to be one of \[None, 'fusenet', 'keras-h5'\]. "
                                         r"Received: format='h5'"):
        model.save_weights(tmp_path / "w.h5", format="h5")
    model.save_weights(tmp_path / "w.zip")  # fusenet's own format is unchanged
    other = keras_cnn()
    other.load_weights(tmp_path / "w.zip")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "w.weights.h5"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        model.save_weights(path, overwrite=False)
    assert path.read_bytes() == b"old"
