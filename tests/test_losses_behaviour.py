"""Losses: Keras's documented values, masks, input conventions, CTC specifics, and errors."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from fusenet import losses
from tests.gradcheck import check_loss_gradient
from tests.parity import assert_close, requires_torch, tensor, torch

if torch is not None:  # pragma: no branch
    F = torch.nn.functional


# ---------------------------------------------------------------- Keras's documented examples
LOGITS_TRUE = np.array([[0, 1], [0, 0]])
LOGITS_PRED = np.array([[-18.6, 0.51], [2.94, -12.8]])
CAT_TRUE = np.array([[0, 1, 0], [0, 0, 1]])
CAT_PRED = np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])


def test_keras_binary_crossentropy_examples():
    bce = losses.BinaryCrossentropy(from_logits=True)
    assert bce([0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8]) == pytest.approx(0.8654, abs=1e-4)
    assert bce(LOGITS_TRUE, LOGITS_PRED) == pytest.approx(0.8654, abs=1e-4)
    assert bce(LOGITS_TRUE, LOGITS_PRED, sample_weight=[0.8, 0.2]) == pytest.approx(0.243, abs=1e-3)
    assert losses.BinaryCrossentropy(from_logits=True, reduction="sum")(LOGITS_TRUE, LOGITS_PRED) == pytest.approx(
        1.730, abs=1e-3)
    none = losses.BinaryCrossentropy(from_logits=True, reduction=None)(LOGITS_TRUE, LOGITS_PRED)
    np.testing.assert_allclose(none, [0.235, 1.496], atol=1e-3)
    probs = losses.BinaryCrossentropy(reduction="none")([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    np.testing.assert_allclose(probs, [0.916, 0.714], atol=1e-3)


def test_keras_binary_focal_examples():
    yt, yp = [0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8]
    assert losses.BinaryFocalCrossentropy(gamma=2, from_logits=True)(yt, yp) == pytest.approx(0.691, abs=1e-3)
    assert losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=2, from_logits=True)(yt, yp) == \
        pytest.approx(0.51, abs=1e-2)
    assert losses.BinaryFocalCrossentropy(gamma=3, from_logits=True)(LOGITS_TRUE, LOGITS_PRED) == pytest.approx(
        0.647, abs=1e-3)
    balanced = losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=3, from_logits=True)
    assert balanced(LOGITS_TRUE, LOGITS_PRED) == pytest.approx(0.482, abs=1e-3)
    assert balanced(LOGITS_TRUE, LOGITS_PRED, sample_weight=[0.8, 0.2]) == pytest.approx(0.097, abs=1e-3)
    assert losses.BinaryFocalCrossentropy(gamma=3, from_logits=True)(
        LOGITS_TRUE, LOGITS_PRED, sample_weight=[0.8, 0.2]) == pytest.approx(0.133, abs=1e-3)
    assert losses.BinaryFocalCrossentropy(gamma=4, from_logits=True, reduction="sum")(
        LOGITS_TRUE, LOGITS_PRED) == pytest.approx(1.222, abs=1e-3)
    none = losses.BinaryFocalCrossentropy(gamma=5, from_logits=True, reduction=None)(LOGITS_TRUE, LOGITS_PRED)
    np.testing.assert_allclose(none, [0.0017, 1.1561], atol=1e-4)
    none = losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=5, from_logits=True, reduction=None)(
        LOGITS_TRUE, LOGITS_PRED)
    np.testing.assert_allclose(none, [0.0004, 0.8670], atol=1e-4)
    probs = losses.BinaryFocalCrossentropy(gamma=2, reduction="none")([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    np.testing.assert_allclose(probs, [0.330, 0.206], atol=1e-3)


@pytest.mark.parametrize("sparse", [False, True])
def test_keras_categorical_crossentropy_examples(sparse):
    cls = losses.SparseCategoricalCrossentropy if sparse else losses.CategoricalCrossentropy
    yt = [1, 2] if sparse else CAT_TRUE
    assert cls()(yt, CAT_PRED) == pytest.approx(1.177, abs=1e-3)
    assert cls()(yt, CAT_PRED, sample_weight=np.array([0.3, 0.7])) == pytest.approx(0.814, abs=1e-3)
    assert cls(reduction="sum")(yt, CAT_PRED) == pytest.approx(2.354, abs=1e-3)
    np.testing.assert_allclose(cls(reduction=None)(yt, CAT_PRED), [0.0513, 2.303], atol=1e-3)


def test_keras_categorical_focal_examples():
    cfc = losses.CategoricalFocalCrossentropy()
    assert cfc(CAT_TRUE, CAT_PRED) == pytest.approx(0.23315276, rel=1e-5)
    assert cfc(CAT_TRUE, CAT_PRED, sample_weight=np.array([0.3, 0.7])) == pytest.approx(0.1632, abs=1e-4)
    assert losses.CategoricalFocalCrossentropy(reduction="sum")(CAT_TRUE, CAT_PRED) == pytest.approx(0.46631, abs=1e-5)
    np.testing.assert_allclose(losses.CategoricalFocalCrossentropy(reduction=None)(CAT_TRUE, CAT_PRED),
                               [3.2058331e-05, 4.6627346e-01], rtol=1e-5)
    np.testing.assert_allclose(
        losses.CategoricalFocalCrossentropy(reduction=None)(CAT_TRUE, [[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]]),
        [2.63401289e-04, 6.75912094e-01], rtol=1e-5)


def test_keras_regression_examples():
    assert losses.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) == pytest.approx(0.155, abs=1e-3)
    assert losses.LogCosh()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.108, abs=1e-3)
    cos = losses.CosineSimilarity(reduction="none")([[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]],
                                                   [[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    np.testing.assert_allclose(cos, [0.0, -1.0, 1.0], atol=1e-6)
    assert losses.CosineSimilarity()(np.zeros((2, 3)), np.ones((2, 3))) == 0.0  # zero vector: 0


def test_keras_dice_example():
    yt = np.array([[[[1.0], [1.0]], [[0.0], [0.0]]], [[[1.0], [1.0]], [[0.0], [0.0]]]])
    yp = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]], [[[0.4], [0.0]], [[0.0], [0.9]]]])
    np.testing.assert_allclose(losses.Dice(axis=(1, 2, 3), reduction=None)(yt, yp), [0.5, 0.75757575], rtol=1e-6)
    assert losses.Dice()(yt, yp) == pytest.approx(0.6164384, rel=1e-6)
    assert losses.Dice(reduction="none")(yt, yp).shape == ()  # axis=None: one value for the batch
    assert losses.Tversky()(yt, yp) == pytest.approx(losses.Dice()(yt, yp), rel=1e-6)  # alpha = beta = 0.5


def test_kl_divergence_is_keras_formula():
    rng = np.random.default_rng(0)
    yt, yp = rng.random((3, 4)), rng.random((3, 4))
    t, p = np.clip(yt, 1e-7, 1), np.clip(yp, 1e-7, 1)
    np.testing.assert_allclose(losses.KLDivergence(reduction="none")(yt, yp), np.sum(t * np.log(t / p), -1))


# ---------------------------------------------------------------- conventions
def test_rank_one_labels_match_column_predictions(rng):
    yt, yp = rng.normal(size=5), rng.normal(size=(5, 1))
    mse = losses.MeanSquaredError(reduction="none")
    np.testing.assert_allclose(mse(yt, yp), (yp[:, 0] - yt) ** 2)
    np.testing.assert_allclose(mse(yt[:, None], yp[:, 0]), (yp[:, 0] - yt) ** 2)
    assert losses.MeanSquaredError().gradient(yt, yp).shape == (5, 1)
    assert losses.MeanSquaredError().gradient(yt[:, None], yp[:, 0]).shape == (5,)


def test_hinge_converts_binary_labels(rng):
    yp = rng.normal(size=(3, 4))
    t = rng.integers(0, 2, size=(3, 4))
    assert losses.Hinge()(t, yp) == pytest.approx(losses.Hinge()(2 * t - 1, yp), rel=1e-12)
    assert losses.SquaredHinge()(t, yp) == pytest.approx(losses.SquaredHinge()(2 * t - 1, yp), rel=1e-12)


def test_integer_predictions_compute_in_floatx():
    value = losses.MeanSquaredError(reduction="none")([[1, 2]], np.array([[2, 4]]))
    assert value.dtype == np.float32 and value.tolist() == [2.5]
    assert losses.MeanSquaredError().gradient([[1, 2]], [[2, 4]]).dtype == np.float32


def test_mean_is_an_alias_and_none_is_keras_none(rng):
    yt, yp = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    assert losses.MeanSquaredError(reduction="mean")(yt, yp) == losses.MeanSquaredError()(yt, yp)
    assert losses.MeanSquaredError(reduction=None).reduction == "none"
    w = rng.uniform(0.5, 1.5, size=4)
    assert losses.MeanSquaredError(reduction="mean_with_sample_weight")(yt, yp) == losses.MeanSquaredError()(yt, yp)
    assert losses.MeanSquaredError(reduction="mean_with_sample_weight")(yt, yp, sample_weight=np.zeros(4)) == 0.0
    assert losses.MeanSquaredError()(yt, yp, sample_weight=w[:, None]) == losses.MeanSquaredError()(yt, yp, sample_weight=w)


def test_temporal_sample_weight_broadcasts(rng):
    labels, z = rng.integers(0, 3, size=(2, 4)), rng.normal(size=(2, 4, 3))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    per_step = loss(labels, z)
    assert per_step.shape == (2, 4)
    np.testing.assert_allclose(loss(labels, z, sample_weight=[2.0, 0.5]), per_step * np.array([[2.0], [0.5]]))


def test_empty_batch_gives_zero():
    assert losses.MeanSquaredError()(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert losses.MeanSquaredError().gradient(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 3)


def test_ignore_index_masks_like_keras_and_torch(rng):
    labels, z = rng.integers(0, 4, size=8), rng.normal(size=(8, 4))
    labels[[1, 4, 5]] = 255
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=255)
    keep = labels != 255
    full = losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(labels[keep], z[keep])
    assert loss(labels, z) == pytest.approx(full.mean(), rel=1e-12)
    assert losses.SparseCategoricalCrossentropy(from_logits=True, ignore_index=255, reduction="sum")(labels, z) == \
        pytest.approx(full.sum(), rel=1e-12)
    grad = loss.gradient(labels, z)
    assert np.all(grad[~keep] == 0)
    all_ignored = np.full(3, 255)
    assert loss(all_ignored, z[:3]) == 0.0 and np.all(loss.gradient(all_ignored, z[:3]) == 0)
    check_loss_gradient(loss, labels, z, sample_weight=rng.uniform(0.5, 2, 8))
    assert losses.SparseCategoricalCrossentropy(ignore_class=255).ignore_index == 255


@requires_torch
def test_nll_class_weight_through_mean_with_sample_weight(rng):
    labels, z = rng.integers(0, 4, size=(3, 5)), rng.normal(size=(3, 5, 4))
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    labels[0, 0] = -100
    weight = np.array([0.5, 1.0, 2.0, 1.5])
    zt = tensor(logp, requires_grad=True)
    ref = torch.nn.NLLLoss(weight=tensor(weight))(zt.movedim(-1, 1), tensor(labels))
    ref.backward()
    loss = losses.NLL(reduction="mean_with_sample_weight")
    sw = weight[np.where(labels == -100, 0, labels)]
    assert_close(np.asarray(loss(labels, logp, sample_weight=sw)), ref, np.float64)
    assert_close(loss.gradient(labels, logp, sample_weight=sw), zt.grad, np.float64)


@requires_torch
def test_gaussian_nll_variance_below_eps_follows_torch(rng):
    yt = rng.normal(size=(3, 2))
    yp = np.concatenate([rng.normal(size=(3, 2)), np.array([[1e-8, 0.5], [0.3, 0.0], [2.0, 1e-7]])], axis=-1)
    ypt = tensor(yp, requires_grad=True)
    ref = F.gaussian_nll_loss(ypt[:, :2], tensor(yt), ypt[:, 2:])
    ref.backward()
    loss = losses.GaussianNLL()
    assert_close(np.asarray(loss(yt, yp)), ref, np.float64)
    assert_close(loss.gradient(yt, yp), ypt.grad, np.float64)


def test_gaussian_nll_rank_one_targets(rng):
    yt, yp = rng.normal(size=4), np.stack([rng.normal(size=4), rng.uniform(0.5, 1, 4)], axis=1)
    assert losses.GaussianNLL(reduction="none")(yt, yp).shape == (4,)
    check_loss_gradient(losses.GaussianNLL(), yt, yp)


def test_circle_masks_samples_without_pairs(rng):
    labels = np.array([0, 0, 1, 2])  # samples 2 and 3 have no positive: loss 0, masked
    e = rng.normal(size=(4, 3))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    per_sample = losses.Circle(gamma=8.0, reduction="none")(labels, e)
    assert per_sample[2] == 0 and per_sample[3] == 0 and np.all(per_sample[:2] > 0)
    assert losses.Circle(gamma=8.0)(labels, e) == pytest.approx(per_sample[:2].mean(), rel=1e-12)
    grad = losses.Circle(gamma=8.0).gradient(labels, e)
    assert np.all(np.isfinite(grad))
    check_loss_gradient(losses.Circle(gamma=8.0), labels, e)
    assert losses.Circle()(np.zeros(3), e[:3]) == 0.0  # no negatives anywhere


def test_triplet_accepts_missing_labels(rng):
    yp = rng.normal(size=(4, 3, 2))
    loss = losses.TripletMargin()
    assert loss(None, yp) == loss(np.zeros(4), yp)


# ---------------------------------------------------------------- CTC
@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ctc_parity_edge_cases(dtype, rng):
    # empty label, repeated labels needing every time step, a full-length label
    labels = np.array([[0, 0, 0, 0], [1, 1, 2, 2], [3, 1, 2, 0], [2, 3, 1, 2]])
    z = (rng.normal(size=(4, 6, 4)) * 3).astype(dtype)
    zt = tensor(z, requires_grad=True)
    logp = torch.log_softmax(zt, -1).transpose(0, 1)
    ref = F.ctc_loss(logp, tensor(labels), torch.full((4,), 6), tensor((labels != 0).sum(1)), reduction="none")
    (ref * tensor(np.arange(1.0, 5.0).astype(dtype))).sum().backward()
    loss = losses.CTC(reduction="none")
    assert_close(loss(labels, z), ref, dtype, "ctc losses")
    assert_close(losses.CTC(reduction="sum").gradient(labels, z, sample_weight=np.arange(1.0, 5.0)), zt.grad, dtype,
                 "ctc gradient")
    check_loss_gradient(losses.CTC(), labels, z.astype(np.float64))


def test_ctc_infeasible_labels(rng):
    labels = np.array([[1, 1, 1], [1, 2, 0]])
    z = rng.normal(size=(2, 4, 3))
    with pytest.raises(ValueError, match=r"ctc.*label sequence 0 of length 3.*needs at least 5 time steps.*4 time steps"):
        losses.CTC()(labels, z)
    loss = losses.CTC(zero_infinity=True, reduction="none")
    values = loss(labels, z)
    assert values[0] == 0 and values[1] > 0
    grad = losses.CTC(zero_infinity=True).gradient(labels, z)
    assert np.all(grad[0] == 0) and np.all(np.isfinite(grad))
    assert losses.CTC(zero_infinity=True) == losses.deserialize(losses.serialize(losses.CTC(zero_infinity=True)))


def test_ctc_errors(rng):
    z = rng.normal(size=(2, 5, 3))
    with pytest.raises(ValueError, match=r"padded with 0.*at the end.*y_true\[0\]=\[1, 0, 2\]"):
        losses.CTC()([[1, 0, 2], [1, 2, 0]], z)
    with pytest.raises(ValueError, match=r"ctc.*3 classes.*Received: label 3"):
        losses.CTC()([[1, 3], [1, 2]], z)
    with pytest.raises(ValueError, match=r"shape \(batch, time, classes\).*y_pred.shape=\(2, 5\)"):
        losses.CTC()([[1], [2]], z[:, :, 0])
    with pytest.raises(ValueError, match=r"y_true of shape \(batch, max_label_len\).*y_true.shape=\(3, 1\)"):
        losses.CTC()([[1], [2], [1]], z)


# ---------------------------------------------------------------- errors
def test_shape_mismatch_names_loss_and_shapes():
    with pytest.raises(ValueError, match=r"'mean_squared_error' \(MeanSquaredError\).*y_true.shape=\(2, 3\).*"
                                         r"y_pred.shape=\(2, 4\)"):
        losses.MeanSquaredError()(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"categorical_crossentropy.*y_true.shape=\(2, 3\).*y_pred.shape=\(3, 3\)"):
        losses.CategoricalCrossentropy().gradient(np.zeros((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy.*expected y_true of shape \(2,\).*"
                                         r"y_true.shape=\(3,\), y_pred.shape=\(2, 4\)"):
        losses.SparseCategoricalCrossentropy()([0, 1, 2], np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"margin_ranking.*\(batch, 2, \.\.\.\).*y_pred.shape=\(4, 3\)"):
        losses.MarginRanking()(np.ones(4), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"triplet_margin.*\(batch, 3, dim\).*y_pred.shape=\(4, 2, 5\)"):
        losses.TripletMargin()(None, np.zeros((4, 2, 5)))
    with pytest.raises(ValueError, match=r"cosine_embedding.*y_true of shape \(4,\).*y_true.shape=\(3,\)"):
        losses.CosineEmbedding()(np.ones(3), np.zeros((4, 2, 5)))
    with pytest.raises(ValueError, match=r"gaussian_nll.*y_true.shape=\(3, 2\), y_pred.shape=\(3, 5\)"):
        losses.GaussianNLL()(np.zeros((3, 2)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"circle.*y_pred of shape \(batch, dim\).*y_pred.shape=\(3,\)"):
        losses.Circle()([0, 1, 0], np.ones(3))
    with pytest.raises(ValueError, match=r"multi_margin.*y_true.shape=\(3, 1, 1\), y_pred.shape=\(3, 4\)"):
        losses.MultiMargin()(np.zeros((3, 1, 1), int), np.ones((3, 4)))


def test_non_numeric_inputs_raise_type_error():
    with pytest.raises(TypeError, match=r"'mean_squared_error'.*y_pred.*numeric.*dtype <U1"):
        losses.MeanSquaredError()(np.zeros((1, 2)), np.array([["a", "b"]]))
    with pytest.raises(TypeError, match=r"'hinge'.*y_true.*numeric"):
        losses.Hinge()(np.array([["a", "b"]]), np.zeros((1, 2)))
    with pytest.raises(TypeError, match=r"sample_weight.*numeric"):
        losses.MeanSquaredError()(np.zeros((2, 2)), np.zeros((2, 2)), sample_weight=["x", "y"])
    with pytest.raises(TypeError, match=r"y_true to be a numeric array. Received: y_true=None"):
        losses.MeanSquaredError()(None, np.zeros((2, 2)))


def test_sparse_labels_checked():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy.*4 classes.*Received: label 7"):
        losses.SparseCategoricalCrossentropy()([0, 7, 1], z)
    with pytest.raises(ValueError, match=r"'nll'.*4 classes.*Received: label -1"):
        losses.NLL()([0, -1, 1], z)
    with pytest.raises(ValueError, match=r"integer class labels.*Received: label 1.5"):
        losses.SparseCategoricalCrossentropy()([0, 1.5, 1], z)
    with pytest.raises(ValueError, match=r"multi_margin.*4 classes.*label 4"):
        losses.MultiMargin()([0, 4, 1], z)
    with pytest.raises(ValueError, match=r"multilabel_margin.*4 classes.*label 9"):
        losses.MultiLabelMargin()(np.array([[9, -1, 0, 0]] * 3), z)
    with pytest.raises(ValueError, match=r"categorical_generalized_cross_entropy.*label 4"):
        losses.CategoricalGeneralizedCrossEntropy()([4, 0, 0], z + 0.25)
    losses.SparseCategoricalCrossentropy(ignore_index=-1)([0, -1, 1], z + 0.25)  # ignored labels are not checked


def test_sample_weight_shape_checked():
    with pytest.raises(ValueError, match=r"sample_weight to broadcast to the per-sample loss shape \(3,\).*"
                                         r"sample_weight.shape=\(4,\)"):
        losses.MeanSquaredError()(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"dice.*per-sample loss shape \(\).*sample_weight.shape=\(2,\)"):
        losses.Dice()(np.zeros((2, 3)), np.zeros((2, 3)), sample_weight=[1.0, 2.0])


def test_negative_variance_raises():
    with pytest.raises(ValueError, match=r"gaussian_nll.*non-negative variances.*-0.5"):
        losses.GaussianNLL()(np.zeros((2, 1)), np.array([[0.0, 1.0], [0.0, -0.5]]))


@pytest.mark.parametrize("make, match", [
    (lambda: losses.MeanSquaredError(reduction="avg"), r"MeanSquaredError.*reduction.*Received: reduction='avg'"),
    (lambda: losses.Huber(delta=0), r"Huber.*delta.*Received: delta=0"),
    (lambda: losses.SmoothL1(beta=-1), r"SmoothL1.*beta.*Received: beta=-1"),
    (lambda: losses.BinaryCrossentropy(label_smoothing=1.5), r"label_smoothing.*\[0, 1\].*Received: label_smoothing=1.5"),
    (lambda: losses.BinaryFocalCrossentropy(gamma=-1), r"gamma.*Received: gamma=-1"),
    (lambda: losses.BinaryFocalCrossentropy(alpha=2), r"alpha.*Received: alpha=2"),
    (lambda: losses.CategoricalFocalCrossentropy(alpha=[]), r"alpha.*non-empty"),
    (lambda: losses.CategoricalGeneralizedCrossEntropy(q=1.0), r"q.*\(0, 1\).*Received: q=1.0"),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_index=1, ignore_class=2), r"alias.*ignore_index=1"),
    (lambda: losses.MultiMargin(p=3), r"MultiMargin.*p to be 1 or 2.*Received: p=3"),
    (lambda: losses.PoissonNLL(eps=0), r"eps.*Received: eps=0"),
    (lambda: losses.TripletMargin(p=0.5), r"TripletMargin.*p.*Received: p=0.5"),
    (lambda: losses.Circle(gamma=0), r"Circle.*gamma.*Received: gamma=0"),
    (lambda: losses.Tversky(alpha=-0.1), r"Tversky.*alpha.*Received: alpha=-0.1"),
    (lambda: losses.CosineEmbedding(margin=2), r"CosineEmbedding.*margin.*Received: margin=2"),
    (lambda: losses.Contrastive(margin=-1), r"Contrastive.*margin.*Received: margin=-1"),
])
def test_invalid_hyper_parameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make, match", [
    (lambda: losses.MeanSquaredError(name=3), r"name.*Received: name=3"),
    (lambda: losses.BinaryCrossentropy(from_logits="yes"), r"from_logits.*True or False.*Received: from_logits='yes'"),
    (lambda: losses.CategoricalCrossentropy(axis=1.5), r"axis.*Received: axis=1.5"),
    (lambda: losses.Huber(delta="1"), r"delta to be a number.*Received: delta='1'"),
    (lambda: losses.NLL(ignore_index=1.0), r"ignore_index.*int.*Received: ignore_index=1.0"),
])
def test_invalid_hyper_parameter_types_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_axis_out_of_range():
    with pytest.raises(ValueError, match=r"categorical_crossentropy.*axis 2 is out of range.*rank 2"):
        losses.CategoricalCrossentropy(axis=2)(np.ones((2, 3)), np.ones((2, 3)))


def test_per_class_options_checked_against_classes():
    with pytest.raises(ValueError, match=r"one alpha per class \(3 classes\).*length 2"):
        losses.CategoricalFocalCrossentropy(alpha=[0.5, 0.5])(CAT_TRUE, CAT_PRED)
    with pytest.raises(ValueError, match=r"one weight per class \(3 classes\).*length 2"):
        losses.MultiMargin(weight=[1.0, 2.0])([0, 1], np.ones((2, 3)))


def test_unknown_names_and_bad_identifiers():
    with pytest.raises(ValueError, match=r"Unknown loss: 'msee'. Expected one of \[.*'mse'.*\]"):
        losses.get("msee")
    with pytest.raises(ValueError, match=r"Unknown loss class: 'Foo'. Expected one of \[.*'MeanSquaredError'"):
        losses.deserialize({"class_name": "Foo", "config": {}})
    with pytest.raises(ValueError, match=r"Unknown loss class: None"):
        losses.deserialize({"config": {}})
    with pytest.raises(TypeError, match=r"plain functions have no gradient"):
        losses.get(lambda y, p: 0.0)
    with pytest.raises(TypeError, match=r"Loss object"):
        losses.serialize("mse")
    assert losses.get(None) is None


# ---------------------------------------------------------------- layering
def test_losses_import_only_numpy_scipy_and_utils():
    allowed = {"numpy", "scipy", "math", "numbers", "__future__"}
    root = pathlib.Path(losses.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
                assert set(names) <= allowed, f"{path.name} imports {names}"
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert node.module.split(".")[0] in allowed, f"{path.name} imports {node.module}"
                elif node.level == 2:
                    assert node.module == "utils", f"{path.name} imports ..{node.module}"
                else:
                    assert node.level == 1, f"{path.name}: relative import of level {node.level}"


@pytest.mark.parametrize("from_logits", [False, True])
def test_focal_with_gamma_zero_is_crossentropy(from_logits, rng):
    """Keras: with gamma = 0 (and alpha = 1) the focal losses are the plain cross-entropies."""
    yt = rng.integers(0, 2, size=(3, 4)).astype(float)
    yp = rng.normal(size=(3, 4)) if from_logits else rng.uniform(0.05, 0.95, size=(3, 4))
    focal = losses.BinaryFocalCrossentropy(gamma=0.0, from_logits=from_logits)
    bce = losses.BinaryCrossentropy(from_logits=from_logits)
    assert focal(yt, yp) == pytest.approx(bce(yt, yp), rel=1e-12)
    np.testing.assert_allclose(focal.gradient(yt, yp), bce.gradient(yt, yp), rtol=1e-12)
    onehot = np.eye(4)[rng.integers(0, 4, size=3)]
    cfocal = losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, from_logits=from_logits)
    cce = losses.CategoricalCrossentropy(from_logits=from_logits)
    assert cfocal(onehot, yp) == pytest.approx(cce(onehot, yp), rel=1e-12)
    np.testing.assert_allclose(cfocal.gradient(onehot, yp), cce.gradient(onehot, yp), rtol=1e-10, atol=1e-14)
