"""The profiler: report structure, to_dict/to_csv, FLOP counts against hand counts, nested and fused
layers, the sum-of-layers check, and the command line on saved, missing and corrupt files."""

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusenet import layers, models
from fusenet.fusion import FusedLayer
from fusenet.profiling import ProfileReport, backward_flops, forward_flops, profile, register_flops
from fusenet.profiling.flops import Gemm, backward_gemm_shapes, gemm_shapes

ROOT = Path(__file__).resolve().parents[1]


def mlp(in_dim=12, units=16):
    return models.Sequential([
        layers.Input((in_dim,)),
        layers.Dense(units, name="d1"), layers.BatchNormalization(name="bn1"), layers.ReLU(name="r1"),
        layers.Dropout(0.2, seed=0, name="drop1"),
        layers.Dense(3, name="out"),
    ], name="mlp")


def small_cnn():
    return models.Sequential([
        layers.Input((8, 8, 3)),
        layers.Conv2D(4, 3, padding="same", use_bias=False, name="stem"), layers.BatchNormalization(name="stem_bn"),
        layers.ReLU(name="stem_relu"),
        layers.Residual([layers.Conv2D(4, 3, padding="same", name="c1"), layers.BatchNormalization(name="b1"),
                         layers.ReLU(name="r1"), layers.Conv2D(4, 3, padding="same", name="c2")], name="block"),
        layers.GlobalAveragePooling2D(name="gap"), layers.Dense(3, name="head"),
    ], name="cnn")


@pytest.fixture
def x_mlp(rng):
    return rng.standard_normal((8, 12)).astype(np.float32)


# ---------------------------------------------------------------- report structure
def test_inference_report_structure(x_mlp):
    report = profile(mlp(), x_mlp, repeats=3)
    assert isinstance(report, ProfileReport)
    assert [row.name for row in report.layers] == ["d1", "bn1", "r1", "drop1", "out"]
    assert [row.class_name for row in report.layers] == ["Dense", "BatchNormalization", "ReLU", "Dropout", "Dense"]
    assert [row.output_shape for row in report.layers] == [(8, 16)] * 4 + [(8, 3)]
    assert all(row.depth == 0 and row.backward is None for row in report.layers)
    assert all(len(row.forward.samples_ms) == 3 and row.forward.median_ms > 0 for row in report.layers)
    assert all(row.forward.min_ms <= row.forward.median_ms <= row.forward.max_ms for row in report.layers)
    assert report.layers[0].forward_alloc_bytes >= 8 * 16 * 4  # at least the float32 output
    assert report.layers[2].forward_flops is None  # ReLU has no GEMM
    assert sum(row.share for row in report.layers) == pytest.approx(report.layer_sum_ms / report.total.median_ms)
    assert report.loss is None and report.training is False and report.input_shape == (8, 12)
    text = str(report)
    for needle in ("d1 (Dense)", "bn1 (BatchNormalization)", "(8, 16)", "Model total", "model.fuse()",
                   "dense_bn_activation_dropout", "interquartile"):
        assert needle in text


def test_training_report_with_loss_and_backward(x_mlp, rng):
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    y = rng.integers(0, 3, size=8)
    report = profile(model, x_mlp, y, training=True, repeats=3)
    assert report.training and report.loss is not None and report.loss.median_ms > 0
    for row in report.layers:
        assert row.backward is not None and len(row.backward.samples_ms) == 3
        assert row.time_ms == pytest.approx(row.forward.median_ms + row.backward.median_ms)
    dense = report.layers[0]
    assert dense.backward_flops == 2 * dense.forward_flops
    assert dense.backward_alloc_bytes is not None
    assert "(loss value and gradient)" in str(report)


def test_training_without_y_uses_a_random_gradient(x_mlp):
    report = profile(mlp(), x_mlp, training=True, repeats=2, fused=False, memory=False)
    assert report.loss is None and all(row.backward is not None for row in report.layers)
    assert report.fused_total is None and report.fuse_speedup is None
    assert report.layers[0].forward_alloc_bytes is None


def test_profile_does_not_change_the_model(x_mlp, rng):
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model(x_mlp)
    before = model.get_weights()
    profile(model, x_mlp, rng.integers(0, 3, size=8), training=True, repeats=2)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # moving statistics included
    assert all(not g.any() for layer in model.layers for g in layer.grads.values())


def test_list_of_layers(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    report = profile([layers.Dense(5, name="a"), layers.ReLU(name="b"), layers.Dense(2, name="c")], x, repeats=2)
    assert [row.name for row in report.layers] == ["a", "b", "c"]
    assert report.model_name == "a list of 3 layer(s)"
    assert [run.pattern for run in report.fusion_runs] == ["dense_activation"]


# ---------------------------------------------------------------- to_dict / to_csv
def test_to_dict_is_json_safe_and_complete(x_mlp):
    report = profile(mlp(), x_mlp, repeats=2)
    d = report.to_dict()
    json.dumps(d)
    assert d["model"] == "Sequential 'mlp'" and d["repeats"] == 2 and d["training"] is False
    assert [row["name"] for row in d["layers"]] == ["d1", "bn1", "r1", "drop1", "out"]
    assert d["layers"][0]["forward_flops"] == 2 * 8 * 12 * 16
    assert d["layers"][0]["output_shape"] == [8, 16]
    assert d["total"]["median_ms"] == report.total.median_ms
    assert d["coverage"] == report.coverage and d["layer_sum_ms"] == report.layer_sum_ms
    assert d["pass_sum"]["samples_ms"] == report.pass_sum.samples_ms
    assert d["fusion_runs"][0]["layers"] == ["Dense(d1)", "BatchNormalization(bn1)", "ReLU(r1)", "Dropout(drop1)"]
    assert d["fuse_speedup"] == pytest.approx(report.total.median_ms / report.fused_total.median_ms)


def test_to_csv_returns_and_writes(x_mlp, tmp_path):
    report = profile(mlp(), x_mlp, training=True, repeats=2)
    path = tmp_path / "profile.csv"
    text = report.to_csv(path)
    assert path.read_text(encoding="utf-8") == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == ["d1", "bn1", "r1", "drop1", "out"]
    assert float(rows[0]["forward_median_ms"]) == report.layers[0].forward.median_ms
    assert int(rows[0]["backward_flops"]) == 2 * 2 * 8 * 12 * 16
    assert rows[1]["forward_flops"] == ""  # BatchNormalization: no GEMM
    assert report.to_csv() == text


# ---------------------------------------------------------------- FLOP counts against hand counts
def test_dense_flops_hand_count():
    dense = layers.Dense(5)
    dense.build((4, 6))
    # y = x @ W: (4, 6) @ (6, 5) -> 4 * 5 outputs, each 6 multiplies and 6 adds
    assert forward_flops(dense, (4, 6)) == 4 * 5 * 6 * 2 == 240
    assert backward_flops(dense, (4, 6)) == 480  # dW = x^T dy and dx = dy W^T, each 240
    # leading axes fold into the GEMM's rows: (2, 3, 6) -> M = 6
    assert forward_flops(dense, (2, 3, 6)) == 6 * 5 * 6 * 2 == 360


def test_conv2d_flops_hand_count():
    conv = layers.Conv2D(4, 3, strides=2, padding="valid")
    conv.build((2, 7, 7, 3))
    # output 3 x 3 per image; each of the 2 * 3 * 3 * 4 outputs sums 3 * 3 * 3 = 27 products
    assert forward_flops(conv, (2, 7, 7, 3)) == 2 * 3 * 3 * 4 * 27 * 2 == 3888
    same = layers.Conv2D(8, (3, 5), padding="same", use_bias=False)
    same.build((1, 6, 6, 2))
    # "same": 6 x 6 outputs; im2col multiplies every tap, padding included: 3 * 5 * 2 = 30 per output
    assert forward_flops(same, (1, 6, 6, 2)) == 36 * 8 * 30 * 2 == 17280
    grouped = layers.Conv2D(6, 1, groups=3)
    grouped.build((1, 4, 4, 9))
    # 3 groups of 3 -> 2 channels: each output sums 1 * 1 * 3 products
    assert forward_flops(grouped, (1, 4, 4, 9)) == 16 * 6 * 3 * 2 == 576


def test_other_gemm_layer_counts():
    lstm = layers.LSTM(3)
    assert forward_flops(lstm, (2, 5, 4)) == 2 * 2 * 5 * (4 + 3) * 4 * 3
    depthwise = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    assert forward_flops(depthwise, (1, 4, 4, 3)) == 2 * 16 * 9 * 3 * 2
    mha = layers.MultiHeadAttention(2, 4)
    # four (5 x 8) @ (8 x 8) projections per sample, QK^T and AV: 2 heads * 5 * 5 * 4 each
    assert forward_flops(mha, (3, 5, 8)) == 3 * (4 * 2 * 5 * 8 * 8 + 2 * (2 * 2 * 5 * 5 * 4))
    assert forward_flops(layers.ReLU(), (2, 3)) is None
    assert forward_flops(layers.Dense(2), (None, 3)) is None


def test_gemm_shapes_behind_the_counts():
    dense = layers.Dense(5)
    assert gemm_shapes(dense, (4, 6)) == [Gemm(4, 6, 5)]
    assert backward_gemm_shapes(dense, (4, 6)) == [Gemm(4, 5, 6), Gemm(6, 4, 5)]  # dx = dy W^T, dW = x^T dy
    conv = layers.Conv2D(6, 3, padding="same", groups=2)
    assert gemm_shapes(conv, (2, 5, 5, 4)) == [Gemm(2 * 25, 9 * 2, 3, 2)]  # im2col, one GEMM per group
    lstm = layers.LSTM(3)
    assert gemm_shapes(lstm, (2, 5, 4)) == [Gemm(10, 4, 12), Gemm(2, 3, 12, 5)]  # input GEMM, 5 recurrent steps
    for layer, shape in [(dense, (4, 6)), (conv, (2, 5, 5, 4)), (lstm, (2, 5, 4)),
                         (layers.TransformerEncoderBlock(8, 2, 16), (3, 5, 8))]:
        assert sum(g.flops for g in gemm_shapes(layer, shape)) == forward_flops(layer, shape)
        assert sum(g.flops for g in backward_gemm_shapes(layer, shape)) == backward_flops(layer, shape)
    assert gemm_shapes(layers.ReLU(), (2, 3)) is None and backward_gemm_shapes(layers.ReLU(), (2, 3)) is None


def test_register_flops_for_a_custom_layer():
    class Scale(layers.Layer):
        def forward(self, x, training=False):
            return 2 * x

    register_flops(Scale, lambda layer, shape: int(np.prod(shape)))
    assert forward_flops(Scale(), (3, 4)) == 12 and gemm_shapes(Scale(), (3, 4)) is None
    register_flops(Scale, lambda layer, shape: [(shape[0], shape[1], 2)])
    assert gemm_shapes(Scale(), (3, 4)) == [Gemm(3, 4, 2)] and forward_flops(Scale(), (3, 4)) == 48
    with pytest.raises(TypeError, match="expected a subclass of fusenet.layers.Layer"):
        register_flops(int, lambda layer, shape: 0)
    with pytest.raises(TypeError, match="expected fn to be callable"):
        register_flops(Scale, 3)


# ---------------------------------------------------------------- nested composites and fused layers
def test_nested_composites_are_listed_under_their_parent(rng):
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    report = profile(small_cnn(), x, training=True, repeats=2)
    names = [(row.name, row.depth) for row in report.layers]
    i = names.index(("block", 0))
    assert names[i + 1:i + 5] == [("c1", 1), ("b1", 1), ("r1", 1), ("c2", 1)]
    assert names[i + 5] == ("gap", 0)
    block = report.layers[i]
    children = report.layers[i + 1:i + 5]
    assert block.path == str(i) and children[0].path.startswith(f"{i}/")
    assert block.forward_flops == children[0].forward_flops + children[3].forward_flops
    assert block.self_ms == pytest.approx(block.time_ms - sum(c.time_ms for c in children))
    assert report.layers[0].forward_flops == 2 * 2 * 64 * 9 * 3 * 4
    assert str(report).count("\n  c1 (Conv2D)") == 1  # indented under the block


def test_transformer_block_sublayers(rng):
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    model = models.Sequential([layers.Input((6, 8)), layers.TransformerEncoderBlock(8, 2, 16, name="enc"),
                               layers.GlobalAveragePooling1D(), layers.Dense(2)])
    report = profile(model, x, repeats=2)
    children = [row for row in report.layers if row.depth == 1]
    assert {row.class_name for row in children} >= {"MultiHeadAttention", "LayerNormalization", "Dense"}
    enc = report.layers[0]
    gemm_children = sum(row.forward_flops for row in children if row.forward_flops is not None)
    assert enc.forward_flops == gemm_children
    runs = [run for run in report.fusion_runs if run.layers == ["TransformerEncoderBlock(enc)"]]
    assert len(runs) == 1 and runs[0].fused_time_ms is not None


def test_fusion_runs_inside_a_composite(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    model = models.Sequential([layers.Input((6,)), layers.Dense(6, name="pre"),
                               layers.Residual([layers.Dense(6, name="inner"), layers.ReLU(name="act")], name="res")])
    report = profile(model, x, training=True, repeats=2)
    runs = {run.pattern: run for run in report.fusion_runs}
    inner = runs["dense_activation"]
    assert inner.layers == ["Dense(inner)", "ReLU(act)"] and inner.position.startswith("1/")
    rows = {row.name: row for row in report.layers}
    assert inner.position == rows["inner"].path
    assert inner.time_ms == pytest.approx(rows["inner"].time_ms + rows["act"].time_ms)
    assert inner.fused_time_ms is not None


def test_fused_model_profile_shows_what_was_replaced(x_mlp):
    model = mlp()
    model(x_mlp)
    fused = model.fuse()
    assert isinstance(fused.layers[0], FusedLayer)
    report = profile(fused, x_mlp, repeats=2)
    first = report.layers[0]
    assert first.class_name.startswith("Fused")
    assert first.replaces == "Dense(d1) + BatchNormalization(bn1) + ReLU(r1) + Dropout(drop1)"
    assert first.forward_flops == 2 * 8 * 12 * 16  # the Dense's GEMM
    assert "replaces: Dense(d1) + BatchNormalization(bn1)" in str(report)
    assert report.fusion_runs == [] and report.fuse_speedup is not None


def test_fusion_runs_of_an_unfused_model(x_mlp):
    report = profile(mlp(), x_mlp, repeats=3)
    (run,) = report.fusion_runs
    assert run.pattern == "dense_bn_activation_dropout" and run.position == "0"  # the path of Dense(d1)
    assert run.time_ms == pytest.approx(sum(row.time_ms for row in report.layers[:4]))
    assert run.share == pytest.approx(run.time_ms / report.total.median_ms)
    assert run.saving_ms == pytest.approx(run.time_ms - run.fused_time_ms)
    assert "intermediate array" in run.estimate
    assert any(note["pattern"] and note["reason"] for note in report.fusion_notes)
    assert report.fuse_speedup == pytest.approx(report.total.median_ms / report.fused_total.median_ms)


# ---------------------------------------------------------------- the per-layer times add up
def _one_blas_thread():
    """One BLAS thread while timing: on a shared 2-core machine a GEMM split over two threads stalls
    whenever either is descheduled, which makes single passes jump by whole scheduler ticks."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


@pytest.mark.parametrize("training", [False, True])
def test_layer_times_add_up_to_the_total(training):
    # short passes (about 0.4 ms inference, 1.2 ms training) with enough work per layer that the timer
    # overhead is negligible, and many repeats: the per-pass sums of the layer times are compared with
    # the totals measured next to them (median of the ratios), which a busy machine disturbs alike
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 256)).astype(np.float32)
    model = models.Sequential([layers.Input((256,)), layers.Dense(256), layers.ReLU(), layers.Dense(256),
                               layers.Activation("tanh"), layers.Dense(256)])
    with _one_blas_thread():
        report = profile(model, x, training=training, repeats=61, fused=False, memory=False)
    assert report.coverage == pytest.approx(1.0, abs=0.10), (report.total.samples_ms, report.pass_sum.samples_ms)
    assert len(report.pass_sum.samples_ms) == len(report.total.samples_ms) == 61


# ---------------------------------------------------------------- errors
def test_argument_errors(x_mlp):
    with pytest.raises(TypeError, match="expected model to be a fusenet Sequential model or a list of layers"):
        profile("mlp", x_mlp)
    with pytest.raises(ValueError, match="expected at least one layer"):
        profile([], x_mlp)
    with pytest.raises(ValueError, match="repeats"):
        profile(mlp(), x_mlp, repeats=0)
    with pytest.raises(TypeError, match="expected training to be True or False"):
        profile(mlp(), x_mlp, training="yes")
    with pytest.raises(ValueError, match="there is no loss to compute"):
        profile(mlp(), x_mlp, np.zeros(8, dtype=int), training=True)
    with pytest.raises(ValueError, match="one entry per sample"):
        profile(mlp(), x_mlp, np.zeros(3, dtype=int), training=True, loss="sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="expected loss to be a loss name"):
        profile(mlp(), x_mlp, np.zeros(8, dtype=int), training=True, loss=len)
    with pytest.raises(ValueError, match="expects input of shape"):
        profile(mlp(), np.zeros((8, 5), dtype=np.float32))


# ---------------------------------------------------------------- the command line
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "fusenet.profiling", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_cli_on_a_saved_model(tmp_path, x_mlp):
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model(x_mlp)
    path = tmp_path / "mlp.fusenet"
    model.save(path)
    result = _cli(path, "--batch-size", 4, "--repeats", 2, "--training", "--csv", tmp_path / "p.csv")
    assert result.returncode == 0, result.stderr
    assert "Profile of Sequential 'mlp' on input (4, 12) float32, training" in result.stdout
    assert "d1 (Dense)" in result.stdout and "model.fuse()" in result.stdout
    assert (tmp_path / "p.csv").read_text().startswith("path,depth,name")


def test_cli_refuses_missing_and_corrupt_files(tmp_path):
    missing = _cli(tmp_path / "nope.fusenet", "--batch-size", 4)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("error: No such file") and missing.stderr.count("\n") == 1
    corrupt = tmp_path / "corrupt.fusenet"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    bad = _cli(corrupt, "--batch-size", 4)
    assert bad.returncode == 1 and "not a fusenet model file" in bad.stderr and bad.stderr.count("\n") == 1


def test_cli_argument_errors(tmp_path, x_mlp):
    model = mlp()
    model(x_mlp)
    path = tmp_path / "mlp.fusenet"
    model.save(path)
    result = _cli(path, "--batch-size", 0)
    assert result.returncode == 1 and "expected --batch-size to be a positive integer" in result.stderr
