"""Metrics: Keras reference values, scikit-learn parity, batch independence, config round trips, errors."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusenet import metrics
from fusenet.metrics import _registry

sk = pytest.importorskip("sklearn.metrics")


def one_hot(labels, num_classes):
    return np.eye(num_classes)[labels]


# ---------------------------------------------------------------- Keras documentation values
# (factory, y_true, y_pred, sample_weight, expected): the examples of the Keras 3 docstrings and tests,
# whose expected values are derived by hand there.
KERAS_CASES = [
    (metrics.Accuracy, [[1], [2], [3], [4]], [[0], [2], [3], [4]], None, 0.75),
    (metrics.Accuracy, [[1], [2], [3], [4]], [[0], [2], [3], [4]], [1, 1, 0, 0], 0.5),
    (metrics.BinaryAccuracy, [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], None, 0.75),
    (metrics.BinaryAccuracy, [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]], [1, 0, 0, 1], 0.5),
    (metrics.CategoricalAccuracy, [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 0.5),
    (metrics.CategoricalAccuracy, [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (metrics.SparseCategoricalAccuracy, [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], None, 0.5),
    (metrics.SparseCategoricalAccuracy, [[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (lambda: metrics.TopKCategoricalAccuracy(k=1), [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], [0.7, 0.3], 0.3),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=1), [2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 0.5),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), [2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], None, 1.0),
    (metrics.Precision, [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
    (metrics.Precision, [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], 1.0),
    (lambda: metrics.Precision(top_k=2), [0, 0, 1, 1], [1, 1, 1, 1], None, 0.0),
    (lambda: metrics.Precision(top_k=4), [0, 0, 1, 1], [1, 1, 1, 1], None, 0.5),
    (metrics.Recall, [0, 1, 1, 1], [1, 0, 1, 1], None, 2 / 3),
    (metrics.Recall, [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], 1.0),
    (metrics.TruePositives, [0, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], 1.0),
    (metrics.FalsePositives, [0, 1, 0, 0], [0, 0, 1, 1], None, 2.0),
    (metrics.TrueNegatives, [0, 1, 0, 0], [1, 1, 0, 0], None, 2.0),
    (metrics.FalseNegatives, [0, 1, 1, 1], [0, 1, 0, 0], None, 2.0),
    (lambda: metrics.AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], None, 0.75),
    (lambda: metrics.AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 0, 0, 1], 1.0),
    (lambda: metrics.AUC(num_thresholds=2, thresholds=[0.5]), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], None, 0.75),
    (lambda: metrics.AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4], (1 + 4 / 7) / 2),
    (lambda: metrics.AUC(num_thresholds=3, summation_method="majoring"), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4], 1.0),
    (lambda: metrics.AUC(num_thresholds=3, summation_method="minoring"), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4], 4 / 7),
    (lambda: metrics.AUC(num_thresholds=3, curve="PR", summation_method="majoring"),
     [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4], 1.0),
    (lambda: metrics.AUC(num_thresholds=3, curve="PR", summation_method="minoring"),
     [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4], 0.7 * 3 / 7),
    # Davis & Goadrich: slope [0.5, 1], intercept [2, 0], P ratio [2.5, 1] -> (0.5 (3 + 2 log 2.5) + 4) / 7
    (lambda: metrics.AUC(num_thresholds=3, curve="PR"), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4],
     (0.5 * (3 + 2 * np.log(2.5)) + 4) / 7),
    (lambda: metrics.AUC(num_thresholds=3, curve="PR"), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [-1, -2, -3, -4], 0.0),
    (metrics.MeanSquaredError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.25),
    (metrics.MeanAbsoluteError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], 0.5),
    (metrics.RootMeanSquaredError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, 0.5),
    (metrics.RootMeanSquaredError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], np.sqrt(0.5)),
    (metrics.MeanSquaredLogarithmicError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], None, (np.log(2) - np.log1p(1e-7)) ** 2 / 4),  # y_true clipped at 1e-7
    (metrics.LogCoshError, [[0, 1], [0, 0]], [[1, 1], [0, 0]], [1, 0], np.log(np.cosh(1.0)) / 2),
    (lambda: metrics.CosineSimilarity(axis=1), [[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]], [0.3, 0.7], 0.7),
    (metrics.R2Score, [[1], [4], [3]], [[2], [4], [4]], None, 1 - 2 / (14 / 3)),
    (lambda: metrics.IoU(num_classes=2, target_class_ids=[0]), [0, 0, 1, 1], [0, 1, 0, 1], None, 1 / 3),
    (lambda: metrics.IoU(num_classes=2, target_class_ids=[0]), [0, 0, 1, 1], [0, 1, 0, 1], [0.3, 0.3, 0.3, 0.1], 1 / 3),
    (lambda: metrics.BinaryIoU(target_class_ids=[0, 1], threshold=0.3), [0, 1, 0, 1], [0.1, 0.2, 0.4, 0.7], None, 1 / 3),
    (lambda: metrics.BinaryIoU(target_class_ids=[0, 1], threshold=0.3), [0, 1, 0, 1], [0.1, 0.2, 0.4, 0.7],
     [0.2, 0.3, 0.4, 0.1], (0.2 / 0.9 + 0.1 / 0.8) / 2),
    (lambda: metrics.MeanIoU(num_classes=2), [0, 0, 1, 1], [0, 1, 0, 1], [0.3, 0.3, 0.3, 0.1], (0.3 / 0.9 + 0.1 / 0.7) / 2),
]


@pytest.mark.parametrize("case", KERAS_CASES, ids=lambda c: None)
def test_keras_documented_values(case):
    factory, y_true, y_pred, sample_weight, expected = case
    metric = factory()
    value = metric(np.array(y_true), np.array(y_pred, dtype=np.float64), sample_weight=sample_weight)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_fbeta_keras_example():
    y_true = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    y_pred = np.array([[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]])
    f2 = metrics.FBetaScore(beta=2.0, threshold=0.5)(y_true, y_pred)
    np.testing.assert_allclose(f2, [5 / 13, 10 / 11, 5 / 6], rtol=1e-12)
    f1 = metrics.F1Score(threshold=0.5)(y_true, y_pred)
    np.testing.assert_allclose(f1, [0.5, 0.8, 2 / 3], rtol=1e-12)


# ---------------------------------------------------------------- scikit-learn parity
@pytest.fixture
def binary_data(rng):
    y_true = rng.integers(0, 2, size=300)
    y_pred = np.clip(0.35 * y_true + rng.uniform(0, 0.75, size=300), 0, 1)
    weight = rng.uniform(0.1, 2.0, size=300)
    return y_true, y_pred, weight


@pytest.fixture
def multiclass_data(rng):
    n, c = 250, 5
    labels = rng.integers(0, c, size=n)
    scores = rng.normal(size=(n, c)) + 1.5 * one_hot(labels, c)
    weight = rng.uniform(0.1, 2.0, size=n)
    return labels, scores, weight


@pytest.mark.parametrize("weighted", [False, True])
def test_accuracies_match_sklearn(binary_data, multiclass_data, weighted):
    y, p, wb = binary_data
    wb = wb if weighted else None
    expected = sk.accuracy_score(y, p > 0.5, sample_weight=wb)
    assert metrics.BinaryAccuracy()(y[:, None], p[:, None], sample_weight=wb) == pytest.approx(expected, rel=1e-12)
    assert metrics.BinaryAccuracy()(y, p, sample_weight=wb) == pytest.approx(expected, rel=1e-12)
    expected_07 = sk.accuracy_score(y, p > 0.7, sample_weight=wb)
    assert metrics.BinaryAccuracy(threshold=0.7)(y, p, sample_weight=wb) == pytest.approx(expected_07, rel=1e-12)

    labels, scores, wm = multiclass_data
    wm = wm if weighted else None
    expected = sk.accuracy_score(labels, scores.argmax(1), sample_weight=wm)
    assert metrics.SparseCategoricalAccuracy()(labels, scores, sample_weight=wm) == pytest.approx(expected, rel=1e-12)
    assert metrics.SparseCategoricalAccuracy()(labels[:, None], scores, sample_weight=wm) == pytest.approx(expected, rel=1e-12)
    assert metrics.CategoricalAccuracy()(one_hot(labels, 5), scores, sample_weight=wm) == pytest.approx(expected, rel=1e-12)
    assert metrics.Accuracy()(labels, scores.argmax(1), sample_weight=wm) == pytest.approx(expected, rel=1e-12)
    for k in (1, 2, 3):
        expected = sk.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(5), sample_weight=wm)
        assert metrics.SparseTopKCategoricalAccuracy(k=k)(labels, scores, sample_weight=wm) == pytest.approx(expected, rel=1e-12)
        got = metrics.TopKCategoricalAccuracy(k=k)(one_hot(labels, 5), scores, sample_weight=wm)
        assert got == pytest.approx(expected, rel=1e-12)


def test_top_k_ties_count_as_inside():
    # Keras in_top_k: a target tied with the k-th largest score is inside the top k.
    scores = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.2, 0.2, 0.2]])
    assert metrics.sparse_top_k_categorical_accuracy([2, 3], scores, k=1).tolist() == [1.0, 0.0]
    assert metrics.sparse_top_k_categorical_accuracy([2, 3], scores, k=2).tolist() == [1.0, 1.0]


def test_sequence_accuracy_averages_per_sample(rng):
    labels = rng.integers(0, 3, size=(6, 4))
    scores = rng.normal(size=(6, 4, 3))
    weight = rng.uniform(0.5, 1.5, size=6)
    per_step = (scores.argmax(-1) == labels).astype(float)
    got = metrics.SparseCategoricalAccuracy()(labels, scores, sample_weight=weight)
    assert got == pytest.approx(np.sum(per_step.mean(1) * weight) / weight.sum(), rel=1e-12)
    step_weight = rng.uniform(0.5, 1.5, size=(6, 4))
    got = metrics.SparseCategoricalAccuracy()(labels, scores, sample_weight=step_weight)
    assert got == pytest.approx(np.sum(per_step * step_weight) / step_weight.sum(), rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_precision_recall_match_sklearn(binary_data, multiclass_data, weighted):
    y, p, w = binary_data
    w = w if weighted else None
    for threshold in (0.3, 0.5, 0.8):
        exp_p = sk.precision_score(y, p > threshold, sample_weight=w, zero_division=0)
        exp_r = sk.recall_score(y, p > threshold, sample_weight=w, zero_division=0)
        assert metrics.Precision(thresholds=threshold)(y, p, sample_weight=w) == pytest.approx(exp_p, rel=1e-12)
        assert metrics.Recall(thresholds=threshold)(y, p, sample_weight=w) == pytest.approx(exp_r, rel=1e-12)
    # several thresholds, in the caller's (unsorted) order
    thresholds = [0.8, 0.3, 0.5]
    many = metrics.Precision(thresholds=thresholds)(y, p, sample_weight=w)
    assert isinstance(many, np.ndarray) and many.shape == (3,)
    expected = [sk.precision_score(y, p > t, sample_weight=w, zero_division=0) for t in thresholds]
    np.testing.assert_allclose(many, expected, rtol=1e-12)

    labels, scores, wm = multiclass_data
    wm = wm if weighted else None
    probs = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    target = one_hot(labels, 5)
    for class_id in (0, 3):
        pred = probs[:, class_id] > 0.5
        exp_p = sk.precision_score(target[:, class_id], pred, sample_weight=wm, zero_division=0)
        exp_r = sk.recall_score(target[:, class_id], pred, sample_weight=wm, zero_division=0)
        assert metrics.Precision(class_id=class_id)(target, probs, sample_weight=wm) == pytest.approx(exp_p, rel=1e-12)
        assert metrics.Recall(class_id=class_id)(target, probs, sample_weight=wm) == pytest.approx(exp_r, rel=1e-12)


def test_precision_recall_top_k(multiclass_data):
    labels, scores, _ = multiclass_data
    target = one_hot(labels, 5)
    top2 = np.argsort(-scores, axis=1)[:, :2]
    hits = (top2 == labels[:, None]).any(1).sum()
    assert metrics.Precision(top_k=2)(target, scores) == pytest.approx(hits / (2 * len(labels)), rel=1e-12)
    assert metrics.Recall(top_k=2)(target, scores) == pytest.approx(hits / len(labels), rel=1e-12)
    # top_k with class_id: class 1 counts as predicted where it is in the row's top 2
    in_top = (top2 == 1).any(1)
    exp = np.sum(in_top & (labels == 1)) / np.sum(in_top)
    assert metrics.Precision(top_k=2, class_id=1)(target, scores) == pytest.approx(exp, rel=1e-12)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("weighted", [False, True])
def test_f_scores_match_sklearn(rng, average, weighted):
    n, c = 200, 4
    y_true = (rng.uniform(size=(n, c)) < 0.4).astype(int)
    y_pred = np.clip(0.3 * y_true + rng.uniform(0, 0.8, size=(n, c)), 0, 1)
    w = rng.uniform(0.1, 2.0, size=n) if weighted else None
    predicted = (y_pred > 0.5).astype(int)
    got = metrics.F1Score(average=average, threshold=0.5)(y_true, y_pred, sample_weight=w)
    np.testing.assert_allclose(got, sk.f1_score(y_true, predicted, average=average, sample_weight=w, zero_division=0), rtol=1e-12)
    got = metrics.FBetaScore(average=average, beta=0.5, threshold=0.5)(y_true, y_pred, sample_weight=w)
    expected = sk.fbeta_score(y_true, predicted, beta=0.5, average=average, sample_weight=w, zero_division=0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # threshold=None: the row maximum is the prediction (multi-class)
    labels = rng.integers(0, c, size=n)
    scores = rng.uniform(0.01, 1, size=(n, c)) + one_hot(labels, c) * 0.5
    got = metrics.F1Score(average=average)(one_hot(labels, c), scores, sample_weight=w)
    expected = sk.f1_score(labels, scores.argmax(1), labels=np.arange(c), average=average, sample_weight=w, zero_division=0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_f1_all_zero_row_predicts_nothing():
    # threshold=None marks the row maximum, but an all-zero row predicts no class (Keras).
    got = metrics.F1Score(average="micro")(np.array([[1, 0], [0, 1]]), np.array([[0.0, 0.0], [0.2, 0.9]]))
    assert got == pytest.approx(2 / 3, rel=1e-12)


# ---------------------------------------------------------------- AUC
def brute_force_counts(y_true, y_pred, w, thresholds):
    """TP/FP/TN/FN by the definition ``y_pred > t``, one threshold at a time (the reference)."""
    y = np.asarray(y_true, bool).ravel()
    p = np.asarray(y_pred, float).ravel()
    rows = []
    for t in thresholds:
        pos = p > t
        rows.append([np.sum(w * (y & pos)), np.sum(w * (~y & pos)), np.sum(w * (~y & ~pos)), np.sum(w * (y & ~pos))])
    return np.array(rows).T


def keras_pr_auc(tp, fp, fn):
    """The Davis & Goadrich interval sum of Keras ``AUC.interpolate_pr_auc``, written out one interval at a time."""
    total = 0.0
    for i in range(len(tp) - 1):
        dtp = tp[i] - tp[i + 1]
        p_a, p_b = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        dp = p_a - p_b
        slope = dtp / dp if dp > 0 else 0.0
        intercept = tp[i + 1] - slope * p_b
        ratio = p_a / p_b if (p_a > 0 and p_b > 0) else 1.0
        denom = tp[i + 1] + fn[i + 1]
        total += slope * (dtp + intercept * np.log(ratio)) / denom if denom > 0 else 0.0
    return total


@pytest.mark.parametrize("num_thresholds", [3, 7, 200])
@pytest.mark.parametrize("curve", ["ROC", "PR"])
@pytest.mark.parametrize("summation_method", ["interpolation", "minoring", "majoring"])
def test_auc_follows_keras_formula_exactly(rng, num_thresholds, curve, summation_method):
    y = rng.integers(0, 2, size=40)
    p = np.round(rng.uniform(size=40), 2)  # repeated values and values on the threshold grid
    p[:3] = [0.0, 1.0, 0.5]
    w = rng.uniform(0.2, 2.0, size=40)
    auc = metrics.AUC(num_thresholds=num_thresholds, curve=curve, summation_method=summation_method)
    got = auc(y, p, sample_weight=w)
    tp, fp, tn, fn = brute_force_counts(y, p, w, auc.thresholds)
    np.testing.assert_allclose(auc.true_positives, tp, rtol=1e-12)
    np.testing.assert_allclose(auc.false_positives, fp, rtol=1e-12)
    np.testing.assert_allclose(auc.true_negatives, tn, rtol=1e-12)
    np.testing.assert_allclose(auc.false_negatives, fn, rtol=1e-12)
    if curve == "PR" and summation_method == "interpolation":
        expected = keras_pr_auc(tp, fp, fn)
    else:
        recall = tp / (tp + fn)
        x, yv = (fp / (fp + tn), recall) if curve == "ROC" else (recall, np.nan_to_num(tp / np.maximum(tp + fp, 1e-300)))
        pick = {"interpolation": lambda a, b: (a + b) / 2, "minoring": np.minimum, "majoring": np.maximum}[summation_method]
        expected = np.sum((x[:-1] - x[1:]) * pick(yv[:-1], yv[1:]))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_roc_auc_matches_sklearn(binary_data):
    y, p, w = binary_data
    # The 200-threshold grid approximates the ROC curve: within 0.01 of the exact area here.
    assert metrics.AUC()(y, p, sample_weight=w) == pytest.approx(sk.roc_auc_score(y, p, sample_weight=w), abs=0.01)
    # With a threshold at every distinct score the trapezoids are the exact ROC curve.
    exact = metrics.AUC(thresholds=np.unique(p).tolist())
    assert exact(y, p, sample_weight=w) == pytest.approx(sk.roc_auc_score(y, p, sample_weight=w), rel=1e-12)


def test_pr_auc_close_to_average_precision(binary_data):
    y, p, w = binary_data
    # Interpolated PR area vs scikit-learn's step-wise average precision: different estimators, close here.
    assert metrics.AUC(curve="PR")(y, p, sample_weight=w) == pytest.approx(
        sk.average_precision_score(y, p, sample_weight=w), abs=0.02
    )


def test_auc_multi_label_matches_sklearn(rng):
    n, labels = 120, 3
    y = rng.integers(0, 2, size=(n, labels))
    p = np.clip(0.3 * y + rng.uniform(0, 0.8, size=(n, labels)), 0, 1)
    thresholds = np.unique(p).tolist()
    got = metrics.AUC(thresholds=thresholds, multi_label=True)(y, p)
    assert got == pytest.approx(sk.roc_auc_score(y, p, average="macro"), rel=1e-12)
    lw = [1.0, 2.0, 0.5]
    got = metrics.AUC(thresholds=thresholds, multi_label=True, label_weights=lw)(y, p)
    per_label = sk.roc_auc_score(y, p, average=None)
    assert got == pytest.approx(np.dot(per_label, lw) / sum(lw), rel=1e-12)
    # multi_label=False flattens every entry into one curve
    flat = metrics.AUC(thresholds=thresholds)(y, p)
    assert flat == pytest.approx(sk.roc_auc_score(y.ravel(), p.ravel()), rel=1e-12)
    # ... where label_weights weight the entries of each column
    flat = metrics.AUC(thresholds=thresholds, label_weights=lw)(y, p)
    expected = sk.roc_auc_score(y.ravel(), p.ravel(), sample_weight=np.tile(lw, n))
    assert flat == pytest.approx(expected, rel=1e-12)


def test_auc_from_logits_and_clipping(binary_data):
    y, p, _ = binary_data
    logits = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    plain = metrics.AUC()(y, np.clip(p, 1e-6, 1 - 1e-6))
    assert metrics.AUC(from_logits=True)(y, logits) == pytest.approx(plain, rel=1e-12)
    assert metrics.AUC()(y, y) == 1.0
    # out-of-range predictions are clipped into [0, 1] before thresholding
    assert metrics.AUC()(y, 3.0 * y - 1.0) == 1.0


# ---------------------------------------------------------------- IoU
@pytest.mark.parametrize("weighted", [False, True])
def test_iou_matches_sklearn_jaccard(rng, weighted):
    c = 5
    y = rng.integers(0, c - 1, size=(4, 6, 7))  # class 4 never appears in the labels
    p = np.where(rng.uniform(size=y.shape) < 0.7, y, rng.integers(0, c - 1, size=y.shape))
    w = rng.uniform(0.1, 2.0, size=4) if weighted else None
    wf = None if w is None else np.repeat(w, 42)
    per_class = sk.jaccard_score(y.ravel(), p.ravel(), labels=np.arange(c - 1), average=None, sample_weight=wf)
    assert metrics.MeanIoU(num_classes=c)(y, p, sample_weight=w) == pytest.approx(per_class.mean(), rel=1e-12)
    got = metrics.IoU(num_classes=c, target_class_ids=[1, 3])(y, p, sample_weight=w)
    assert got == pytest.approx(per_class[[1, 3]].mean(), rel=1e-12)
    scores = rng.normal(size=y.shape + (c,)) + 10 * one_hot(p, c)
    got = metrics.OneHotMeanIoU(num_classes=c)(one_hot(y, c), scores, sample_weight=w)
    assert got == pytest.approx(per_class.mean(), rel=1e-12)
    got = metrics.OneHotIoU(num_classes=c, target_class_ids=[2])(one_hot(y, c), scores, sample_weight=w)
    assert got == pytest.approx(per_class[2], rel=1e-12)


def test_iou_ignore_class(rng):
    y = rng.integers(0, 3, size=50)
    p = rng.integers(0, 3, size=50)
    y_void = np.where(rng.uniform(size=50) < 0.3, 255, y)
    keep = y_void != 255
    expected = sk.jaccard_score(y[keep], p[keep], labels=[0, 1, 2], average="macro")
    assert metrics.MeanIoU(num_classes=3, ignore_class=255)(y_void, p) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- regression
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_sklearn(rng, weighted, outputs):
    n = 150
    y = rng.normal(size=(n, outputs)) * [2.0, 1.0, 0.5][:outputs] + 3.0
    p = y + rng.normal(scale=0.7, size=(n, outputs))
    w = rng.uniform(0.1, 2.0, size=n) if weighted else None
    avg = {"sample_weight": w, "multioutput": "uniform_average"}
    assert metrics.MeanSquaredError()(y, p, sample_weight=w) == pytest.approx(sk.mean_squared_error(y, p, **avg), rel=1e-12)
    assert metrics.RootMeanSquaredError()(y, p, sample_weight=w) == pytest.approx(
        np.sqrt(sk.mean_squared_error(y, p, **avg)), rel=1e-12
    )
    assert metrics.MeanAbsoluteError()(y, p, sample_weight=w) == pytest.approx(sk.mean_absolute_error(y, p, **avg), rel=1e-12)
    assert metrics.MeanAbsolutePercentageError()(y, p, sample_weight=w) == pytest.approx(
        100 * sk.mean_absolute_percentage_error(y, p, **avg), rel=1e-12
    )
    yp, pp = np.abs(y), np.abs(p)
    assert metrics.MeanSquaredLogarithmicError()(yp, pp, sample_weight=w) == pytest.approx(
        sk.mean_squared_log_error(yp, pp, **avg), rel=1e-12
    )
    for aggregation, multioutput in [("uniform_average", "uniform_average"),
                                     ("variance_weighted_average", "variance_weighted"), (None, "raw_values")]:
        got = metrics.R2Score(class_aggregation=aggregation)(y, p, sample_weight=w)
        np.testing.assert_allclose(got, sk.r2_score(y, p, sample_weight=w, multioutput=multioutput), rtol=1e-12)


def test_regression_rank_one_inputs_are_per_sample(rng):
    y, p = rng.normal(size=20), rng.normal(size=20)
    assert metrics.MeanSquaredError()(y, p) == pytest.approx(sk.mean_squared_error(y, p), rel=1e-12)
    assert metrics.MeanSquaredError()(y[:, None], p) == pytest.approx(sk.mean_squared_error(y, p), rel=1e-12)
    assert metrics.R2Score()(y, p) == pytest.approx(sk.r2_score(y, p), rel=1e-12)


def test_r2_constant_target_and_adjusted(rng):
    assert metrics.R2Score()([[2.0], [2.0]], [[2.0], [2.0]]) == 1.0
    assert metrics.R2Score()([[2.0], [2.0]], [[1.0], [2.0]]) == 0.0
    y, p = rng.normal(size=(30, 1)), rng.normal(size=(30, 1))
    r2 = sk.r2_score(y, p)
    assert metrics.R2Score(num_regressors=3)(y, p) == pytest.approx(1 - (1 - r2) * 29 / 26, rel=1e-12)
    with pytest.warns(UserWarning, match="returning the plain R2 score"):
        assert metrics.R2Score(num_regressors=40)(y, p) == pytest.approx(r2, rel=1e-12)


def test_r2_is_precise_for_large_offsets(rng):
    # sum(y^2) - sum(y)^2 / n cancels catastrophically at this offset; the merged deviations do not.
    y = 1e8 + rng.normal(size=(400, 1))
    p = y + rng.normal(scale=0.5, size=(400, 1))
    metric = metrics.R2Score()
    for chunk in np.array_split(np.arange(400), 7):
        metric.update_state(y[chunk], p[chunk])
    assert metric.result() == pytest.approx(sk.r2_score(y, p), rel=1e-6)


# ---------------------------------------------------------------- Mean and MeanMetricWrapper
def test_mean_tracks_a_batch_loss_like_keras():
    mean = metrics.Mean(name="loss")
    mean.update_state(2.0, sample_weight=3)
    mean.update_state(5.0, sample_weight=1)
    assert mean.result() == pytest.approx((6 + 5) / 4, rel=1e-12)
    assert metrics.Mean()([1, 3, 5, 7]) == 4.0
    assert metrics.Mean()([1, 3, 5, 7], sample_weight=[1, 1, 0, 0]) == 2.0
    assert metrics.Sum()([1, 3, 5, 7], sample_weight=[1, 1, 0, 0]) == 4.0
    assert metrics.Mean().result() == 0.0


def test_mean_metric_wrapper(rng):
    def abs_error(y_true, y_pred):
        return np.abs(np.asarray(y_true) - np.asarray(y_pred))

    y, p, w = rng.normal(size=10), rng.normal(size=10), rng.uniform(size=10)
    wrapper = metrics.MeanMetricWrapper(abs_error)
    assert wrapper.name == "abs_error"
    assert wrapper(y, p, sample_weight=w) == pytest.approx(np.sum(np.abs(y - p) * w) / w.sum(), rel=1e-12)
    # a function that reduces the batch itself is weighted by the batch size
    reduced = metrics.MeanMetricWrapper(lambda t, q: float(np.mean(np.abs(t - q))), name="l1")
    reduced.update_state(y[:3], p[:3])
    reduced.update_state(y[3:], p[3:])
    assert reduced.result() == pytest.approx(np.mean(np.abs(y - p)), rel=1e-12)
    with pytest.raises(ValueError, match="single value for the whole batch"):
        reduced.update_state(y, p, sample_weight=w)
    # kwargs reach the function and the config; only registered functions serialize
    wrapped = metrics.MeanMetricWrapper(metrics.binary_accuracy, threshold=0.3)
    clone = metrics.deserialize(json.loads(json.dumps(metrics.serialize(wrapped))))
    yb, pb = rng.integers(0, 2, size=20), rng.uniform(size=20)
    assert clone(yb, pb) == wrapped(yb, pb) == pytest.approx(np.mean(yb == (pb > 0.3)), rel=1e-12)
    with pytest.raises(TypeError, match="cannot be serialized"):
        metrics.serialize(metrics.MeanMetricWrapper(abs_error))


def test_get_wraps_plain_functions_and_instantiates_classes():
    assert isinstance(metrics.get(metrics.mean_absolute_error), metrics.MeanMetricWrapper)
    assert isinstance(metrics.get(metrics.AUC), metrics.AUC)
    auc = metrics.AUC()
    assert metrics.get(auc) is auc
    assert metrics.get(None) is None


# ---------------------------------------------------------------- dtype
def test_dtype_of_computation():
    y = np.array([0.1, 0.2, 0.3])
    p = np.array([0.1, 0.25, 0.3])
    exact = float(np.mean((y - p) ** 2))
    assert metrics.MeanSquaredError()(y, p) == exact  # float64 input stays float64
    f32 = metrics.MeanSquaredError()(y.astype(np.float32), p.astype(np.float32))
    assert f32 != exact and f32 == pytest.approx(exact, rel=1e-6)
    # dtype is the precision of the per-sample values (Keras casts the function's output)
    values32 = ((y - p) ** 2).astype(np.float32)
    assert metrics.MeanSquaredError(dtype="float32")(y, p) == pytest.approx(np.sum(values32, dtype=np.float64) / 3, rel=1e-15)
    with pytest.raises(TypeError, match="float dtype"):
        metrics.Mean(dtype="int32")


# ---------------------------------------------------------------- batch independence
def batch_factories():
    return {
        "accuracy": (metrics.SparseCategoricalAccuracy, "sparse"),
        "categorical": (metrics.CategoricalAccuracy, "onehot"),
        "top_k": (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), "sparse"),
        "binary_accuracy": (metrics.BinaryAccuracy, "binary"),
        "precision": (lambda: metrics.Precision(thresholds=[0.3, 0.6]), "binary"),
        "recall_class": (lambda: metrics.Recall(class_id=1), "multilabel"),
        "f1_macro": (lambda: metrics.F1Score(average="macro", threshold=0.5), "multilabel"),
        "f1_weighted": (lambda: metrics.F1Score(average="weighted"), "onehot"),
        "auc_roc": (metrics.AUC, "binary"),
        "auc_pr_multi": (lambda: metrics.AUC(curve="PR", multi_label=True), "multilabel"),
        "mean_iou": (lambda: metrics.MeanIoU(num_classes=3), "ids"),
        "mse": (metrics.MeanSquaredError, "regression"),
        "rmse": (metrics.RootMeanSquaredError, "regression"),
        "mae": (metrics.MeanAbsoluteError, "regression"),
        "r2": (lambda: metrics.R2Score(class_aggregation=None), "regression"),
    }


def make_data(kind, rng, n):
    if kind == "sparse":
        labels = rng.integers(0, 3, size=n)
        return labels, rng.normal(size=(n, 3))
    if kind == "onehot":
        return one_hot(rng.integers(0, 3, size=n), 3), rng.uniform(size=(n, 3))
    if kind == "binary":
        return rng.integers(0, 2, size=(n, 1)), rng.uniform(size=(n, 1))
    if kind == "multilabel":
        return rng.integers(0, 2, size=(n, 3)), rng.uniform(size=(n, 3))
    if kind == "ids":
        return rng.integers(0, 3, size=(n, 4)), rng.integers(0, 3, size=(n, 4))
    return rng.normal(size=(n, 2)), rng.normal(size=(n, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(batch_factories())),
    seed=st.integers(0, 2**31),
    n=st.integers(1, 40),
    cuts=st.lists(st.floats(0, 1), max_size=5),
    weighted=st.booleans(),
)
def test_batch_size_independence(name, seed, n, cuts, weighted):
    factory, kind = batch_factories()[name]
    rng = np.random.default_rng(seed)
    y, p = make_data(kind, rng, n)
    w = rng.uniform(0.0, 2.0, size=n) if weighted else None
    whole = factory()
    whole.update_state(y, p, sample_weight=w)
    batched = factory()
    bounds = sorted({0, n, *(int(c * n) for c in cuts)})
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        batched.update_state(y[lo:hi], p[lo:hi], sample_weight=None if w is None else w[lo:hi])
    np.testing.assert_allclose(batched.result(), whole.result(), rtol=1e-9, atol=1e-12)


def test_batch_independence_with_scalar_weight(rng):
    # A scalar sample_weight weights every sample (Keras would count each batch as one sample).
    y, p = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    batched = metrics.MeanAbsoluteError()
    batched.update_state(y[:3], p[:3], sample_weight=2.0)
    batched.update_state(y[3:], p[3:], sample_weight=2.0)
    assert batched.result() == pytest.approx(metrics.MeanAbsoluteError()(y, p), rel=1e-12)


# ---------------------------------------------------------------- reset_state
@pytest.mark.parametrize("name", sorted(batch_factories()))
def test_reset_state(name, rng):
    factory, kind = batch_factories()[name]
    metric = factory()
    fresh_result = factory().result()
    metric.update_state(*make_data(kind, rng, 12))
    metric.reset_state()
    np.testing.assert_array_equal(metric.result(), fresh_result)
    y, p = make_data(kind, rng, 9)
    np.testing.assert_allclose(metric(y, p), factory()(y, p), rtol=1e-12)


# ---------------------------------------------------------------- configs and names
CONFIG_CASES = [
    metrics.Mean(name="loss"), metrics.Sum(dtype="float64"),
    metrics.MeanMetricWrapper(metrics.top_k_categorical_accuracy, name="top3", k=3),
    metrics.Accuracy(), metrics.BinaryAccuracy(threshold=0.3), metrics.CategoricalAccuracy(name="acc"),
    metrics.SparseCategoricalAccuracy(dtype="float64"), metrics.TopKCategoricalAccuracy(k=3),
    metrics.SparseTopKCategoricalAccuracy(k=2), metrics.TruePositives(thresholds=[0.2, 0.7]),
    metrics.FalsePositives(), metrics.TrueNegatives(thresholds=0.4), metrics.FalseNegatives(),
    metrics.Precision(thresholds=[0.3, 0.5], class_id=2), metrics.Precision(top_k=3), metrics.Recall(thresholds=0.7),
    metrics.FBetaScore(average="macro", beta=2.0, threshold=0.4), metrics.F1Score(average="weighted"),
    metrics.AUC(num_thresholds=50, curve="PR", summation_method="majoring", multi_label=True, num_labels=2,
                label_weights=[1.0, 2.0], from_logits=True),
    metrics.AUC(thresholds=[0.5, 0.3]),
    metrics.IoU(num_classes=4, target_class_ids=[1, 2], ignore_class=255), metrics.MeanIoU(num_classes=3, sparse_y_pred=False),
    metrics.BinaryIoU(target_class_ids=[1], threshold=0.3), metrics.OneHotIoU(num_classes=3, target_class_ids=[0]),
    metrics.OneHotMeanIoU(num_classes=3, axis=-1),
    metrics.MeanSquaredError(), metrics.RootMeanSquaredError(), metrics.MeanAbsoluteError(),
    metrics.MeanAbsolutePercentageError(), metrics.MeanSquaredLogarithmicError(), metrics.LogCoshError(),
    metrics.CosineSimilarity(axis=1), metrics.R2Score(class_aggregation=None, num_regressors=2),
]  # fmt: skip


def test_every_class_has_a_config_case():
    assert {type(m).__name__ for m in CONFIG_CASES} == set(_registry.CLASSES)


@pytest.mark.parametrize("metric", CONFIG_CASES, ids=lambda m: f"{type(m).__name__}-{m.name}")
def test_config_round_trip(metric):
    config = metric.get_config()
    clone = type(metric).from_config(config)
    assert type(clone) is type(metric) and clone.get_config() == config and clone.name == metric.name
    spec = json.loads(json.dumps(metrics.serialize(metric)))
    again = metrics.deserialize(spec)
    assert type(again) is type(metric) and again.get_config() == config


@pytest.mark.parametrize(
    "name, cls",
    [("accuracy", metrics.Accuracy), ("acc", metrics.Accuracy), ("binary_accuracy", metrics.BinaryAccuracy),
     ("categorical_accuracy", metrics.CategoricalAccuracy),
     ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
     ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
     ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
     ("precision", metrics.Precision), ("recall", metrics.Recall), ("f1_score", metrics.F1Score),
     ("fbeta_score", metrics.FBetaScore), ("auc", metrics.AUC), ("AUC", metrics.AUC),
     ("mse", metrics.MeanSquaredError), ("mean_squared_error", metrics.MeanSquaredError),
     ("rmse", metrics.RootMeanSquaredError), ("root_mean_squared_error", metrics.RootMeanSquaredError),
     ("mae", metrics.MeanAbsoluteError), ("mean_absolute_error", metrics.MeanAbsoluteError),
     ("MeanAbsoluteError", metrics.MeanAbsoluteError), ("mape", metrics.MeanAbsolutePercentageError),
     ("r2_score", metrics.R2Score), ("R2Score", metrics.R2Score), ("SparseCategoricalAccuracy", metrics.SparseCategoricalAccuracy)],
)  # fmt: skip
def test_get_by_name(name, cls):
    metric = metrics.get(name)
    assert type(metric) is cls


def test_get_with_config_dict_and_required_arguments():
    metric = metrics.get({"class_name": "MeanIoU", "config": {"num_classes": 3}})
    assert isinstance(metric, metrics.MeanIoU) and metric.num_classes == 3 and metric.name == "mean_io_u"
    with pytest.raises(ValueError, match=r"'mean_iou' \(MeanIoU\) needs the argument\(s\) \['num_classes'\]"):
        metrics.get("mean_iou")


def test_default_names_follow_keras():
    assert [m.name for m in (metrics.Precision(), metrics.AUC(), metrics.F1Score(), metrics.FBetaScore(),
                             metrics.MeanIoU(2), metrics.R2Score(), metrics.LogCoshError())] == [
        "precision", "auc", "f1_score", "fbeta_score", "mean_io_u", "r2_score", "logcosh"]  # fmt: skip


# ---------------------------------------------------------------- compile-time "accuracy"
@pytest.mark.parametrize(
    "y_true_shape, y_pred_shape, expected",
    [((32,), (32, 10), metrics.SparseCategoricalAccuracy),
     ((32, 1), (32, 10), metrics.SparseCategoricalAccuracy),
     ((32, 10), (32, 10), metrics.CategoricalAccuracy),
     ((32, 1), (32, 1), metrics.BinaryAccuracy),
     ((32,), (32, 1), metrics.BinaryAccuracy),
     ((32,), (32,), metrics.BinaryAccuracy),
     ((8, 20), (8, 20, 5), metrics.SparseCategoricalAccuracy),
     ((None, 3), (None, 3), metrics.CategoricalAccuracy)],
)  # fmt: skip
def test_resolve_accuracy_follows_keras_compile_utils(y_true_shape, y_pred_shape, expected):
    metric = metrics.resolve_accuracy("whatever_loss", y_true_shape, y_pred_shape)
    assert type(metric) is expected and metric.name == "accuracy"


def test_resolve_from_the_loss_and_names():
    assert type(metrics.resolve_accuracy("sparse_categorical_crossentropy")) is metrics.SparseCategoricalAccuracy
    assert type(metrics.resolve_accuracy("binary_crossentropy")) is metrics.BinaryAccuracy
    assert type(metrics.resolve_accuracy("categorical_crossentropy")) is metrics.CategoricalAccuracy

    class SparseCategoricalCrossentropy:
        pass

    assert type(metrics.resolve_accuracy(SparseCategoricalCrossentropy(), None, (None, 4))) is metrics.SparseCategoricalAccuracy
    assert type(metrics.resolve_accuracy("categorical_crossentropy", None, (None, 4))) is metrics.CategoricalAccuracy
    with pytest.raises(ValueError, match="Cannot tell which accuracy"):
        metrics.resolve_accuracy("mse")
    acc = metrics.resolve("acc", loss="sparse_categorical_crossentropy", y_true_shape=(5,), y_pred_shape=(5, 3))
    assert type(acc) is metrics.SparseCategoricalAccuracy and acc.name == "acc"
    assert metrics.resolve("mse").name == "mse"
    auc = metrics.AUC(name="my_auc")
    assert metrics.resolve(auc) is auc and auc.name == "my_auc"
    # the resolved metric scores labels the way the loss reads them
    got = metrics.resolve("accuracy", y_true_shape=(2,), y_pred_shape=(2, 3))([2, 0], [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    assert got == 1.0


# ---------------------------------------------------------------- errors
def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown metric: 'acuracy'. Expected one of \[.*'accuracy'.*'rmse'"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match=r"Unknown metric class: 'os.system'"):
        metrics.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(TypeError, match="Expected a metric name"):
        metrics.get(3)
    with pytest.raises(ValueError, match="Unknown metric function: 'eval'"):
        metrics.deserialize({"class_name": "MeanMetricWrapper", "config": {"fn": "eval"}})


@pytest.mark.parametrize(
    "make, match",
    [(lambda: metrics.TopKCategoricalAccuracy(k=0), r"expected k to be a positive integer. Received: k=0"),
     (lambda: metrics.SparseTopKCategoricalAccuracy(k=-1), r"Received: k=-1"),
     (lambda: metrics.MeanIoU(num_classes=0), r"num_classes to be a positive integer. Received: num_classes=0"),
     (lambda: metrics.IoU(num_classes=3, target_class_ids=[3]), r"target_class_ids in \[0, 3\)"),
     (lambda: metrics.BinaryAccuracy(threshold=1.0), r"threshold in the interval \(0, 1\). Received: threshold=1.0"),
     (lambda: metrics.Precision(thresholds=[0.5, 1.5]), r"thresholds to be in \[0, 1\]"),
     (lambda: metrics.Recall(class_id=-1), r"class_id to be a non-negative integer"),
     (lambda: metrics.AUC(num_thresholds=1), r"num_thresholds to be an integer > 1. Received: num_thresholds=1"),
     (lambda: metrics.AUC(curve="ROCK"), r"curve to be one of \['ROC', 'PR'\]. Received: curve='ROCK'"),
     (lambda: metrics.AUC(summation_method="simpson"), r"summation_method to be one of"),
     (lambda: metrics.AUC(num_labels=3), r"num_labels is needed only when multi_label=True"),
     (lambda: metrics.F1Score(average="samples"), r"average to be one of \[None, 'micro', 'macro', 'weighted'\]"),
     (lambda: metrics.FBetaScore(beta=0.0), r"beta to be a float > 0. Received: beta=0.0"),
     (lambda: metrics.F1Score(threshold=0.0), r"threshold in the interval \(0, 1\]"),
     (lambda: metrics.R2Score(class_aggregation="median"), r"class_aggregation to be one of"),
     (lambda: metrics.R2Score(num_regressors=-1), r"num_regressors to be an integer >= 0")],
)  # fmt: skip
def test_invalid_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "metric, y_true, y_pred, match",
    [(metrics.MeanSquaredError(), np.zeros((4, 3)), np.zeros((4, 2)),
      r"'mean_squared_error' \(MeanSquaredError\)|mean_squared_error: expected y_true and y_pred to have the same shape. "
      r"Received: y_true.shape=\(4, 3\), y_pred.shape=\(4, 2\)"),
     (metrics.BinaryAccuracy(), np.zeros(5), np.zeros(4), r"same shape. Received: y_true.shape=\(5,\), y_pred.shape=\(4,\)"),
     (metrics.CategoricalAccuracy(), np.zeros(4), np.zeros((4, 3)), r"for integer labels use sparse_categorical_accuracy"),
     (metrics.SparseCategoricalAccuracy(), np.zeros((4, 2)), np.zeros((4, 3)), r"y_true of shape y_pred.shape\[:-1\]=\(4,\)"),
     (metrics.SparseCategoricalAccuracy(), np.array([0, 3]), np.zeros((2, 3)), r"class ids in \[0, 3\).*Received: labels in \[0, 3\]"),
     (metrics.SparseTopKCategoricalAccuracy(), np.array([0.5, 1]), np.zeros((2, 3)), r"integer class ids"),
     (metrics.Precision(), np.zeros((4, 2)), np.zeros((4, 3)), r"Metric 'precision' \(Precision\): expected y_true and y_pred to have the same shape"),
     (metrics.Precision(class_id=3), np.zeros((4, 3)), np.zeros((4, 3)), r"class_id in \[0, 3\).*Received: class_id=3"),
     (metrics.Recall(top_k=4), np.zeros((4, 3)), np.zeros((4, 3)), r"top_k=4 needs y_pred with at least 4 classes"),
     (metrics.AUC(), np.zeros(4), np.zeros(5), r"same shape"),
     (metrics.AUC(multi_label=True), np.zeros(4), np.zeros(4), r"multi_label=True, y_pred must have shape \(batch, labels\)"),
     (metrics.F1Score(), np.zeros(4), np.zeros(4), r"same shape \(batch, classes\)"),
     (metrics.MeanIoU(num_classes=3), np.array([0, 1, 5]), np.array([0, 1, 2]), r"class ids in \[0, 3\).*Received: y_true in \[0, 5\]"),
     (metrics.MeanIoU(num_classes=3), np.array([0, 1]), np.array([0.2, 0.7]), r"pass sparse_y_pred=False"),
     (metrics.MeanIoU(num_classes=3), np.zeros(3), np.zeros(4), r"same shape"),
     (metrics.R2Score(), np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), r"shape \(batch, outputs\) or \(batch,\)"),
     (metrics.CosineSimilarity(), np.zeros(3), np.zeros(3), r"shape \(batch, ..., features\)")],
    ids=lambda v: None,
)  # fmt: skip
def test_bad_inputs(metric, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        metric.update_state(y_true, y_pred)


def test_bad_sample_weight_and_types():
    with pytest.raises(ValueError, match=r"sample_weight must broadcast to the per-sample values of shape \(4,\)"):
        metrics.MeanSquaredError().update_state(np.zeros((4, 2)), np.zeros((4, 2)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"sample_weight must broadcast to the shape \(4,\)"):
        metrics.Precision().update_state(np.zeros(4), np.zeros(4), sample_weight=np.ones(3))
    with pytest.raises(TypeError, match=r"y_pred"):
        metrics.MeanSquaredError().update_state(np.zeros(2), np.array(["a", "b"]))
    f1 = metrics.F1Score()
    f1.update_state(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"was built for 3 classes"):
        f1.update_state(np.zeros((2, 4)), np.zeros((2, 4)))
