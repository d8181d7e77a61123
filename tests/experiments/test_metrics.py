"""Metric functions against confusion matrices and IoUs worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ccnet.experiments.metrics import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)


def test_confusion_matrix_counts_rows_gt_columns_pred_and_skips_ignore():
    label = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    expected = np.array([
        [1, 1, 0],  # gt 0: one right, one predicted 1
        [0, 2, 0],  # gt 1: both right
        [1, 0, 0],  # gt 2: predicted 0; the 255 pixel (pred 2) is not counted
    ])
    np.testing.assert_array_equal(confusion_matrix(pred, label, 3), expected)


def test_labels_outside_the_classes_are_ignored_and_bad_predictions_refused():
    label = np.array([0, 7, 1])
    np.testing.assert_array_equal(confusion_matrix(np.array([0, 1, 1]), label, 2), [[1, 0], [0, 1]])
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 0, 5]), label, 2)
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)


def test_iou_mean_and_accuracy_by_hand():
    matrix = np.array([
        [3, 1, 0, 0],  # class 0: TP 3, FN 1, FP 2 (from rows 1 and 2) -> 3 / 6
        [1, 4, 0, 0],  # class 1: TP 4, FN 1, FP 1 -> 4 / 6
        [1, 0, 0, 0],  # class 2: TP 0, FN 1, FP 0 -> 0
        [0, 0, 0, 0],  # class 3: never labelled, never predicted -> NaN, left out of the mean
    ])
    iou = iou_per_class(matrix)
    assert iou[:3] == pytest.approx([0.5, 4 / 6, 0.0])
    assert math.isnan(iou[3])
    assert mean_iou(iou) == pytest.approx((0.5 + 4 / 6 + 0.0) / 3)
    assert pixel_accuracy(matrix) == pytest.approx(7 / 10)


def test_predicted_only_class_counts_as_zero():
    # Class 1 is absent from the labels but predicted once: IoU 0, included in the mean (mmseg).
    matrix = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    iou = iou_per_class(matrix)
    assert iou.tolist() == [0.5, 0.0]
    assert mean_iou(iou) == pytest.approx(0.25)


def test_accumulating_matrices_equals_one_matrix_over_all_pixels():
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 4, size=(5, 6)) for _ in range(3)]
    preds = [rng.integers(0, 4, size=(5, 6)) for _ in range(3)]
    summed = sum(confusion_matrix(p, g, 4) for p, g in zip(preds, labels))
    whole = confusion_matrix(np.concatenate(preds), np.concatenate(labels), 4)
    np.testing.assert_array_equal(summed, whole)


def test_empty_inputs_give_nan():
    matrix = np.zeros((3, 3), dtype=np.int64)
    assert math.isnan(mean_iou(iou_per_class(matrix)))
    assert math.isnan(pixel_accuracy(matrix))
