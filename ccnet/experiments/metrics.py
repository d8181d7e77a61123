"""Segmentation metrics as mmsegmentation computes them: one confusion matrix over the whole set.

IoU of class c = TP / (TP + FP + FN) from the matrix summed over every image (not a mean of
per-image IoUs). A class absent from both the ground truth and the predictions has IoU NaN and
is left out of the mean, as mmseg's nanmean does; a class that is only predicted counts as 0.
"""
from __future__ import annotations

import numpy as np

from ccnet.weights.datasets import IGNORE_INDEX


def confusion_matrix(
    pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """(K, K) int64 counts, rows = ground-truth class, columns = predicted class.

    Pixels labelled ``ignore_index`` (or any value outside 0..K-1) are not counted.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in shape")
    label = label.astype(np.int64).ravel()
    pred = pred.astype(np.int64).ravel()
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    if np.any((pred[keep] < 0) | (pred[keep] >= num_classes)):
        raise ValueError(f"predictions must be class indices below {num_classes}")
    counts = np.bincount(label[keep] * num_classes + pred[keep], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """TP / (TP + FP + FN) per class; NaN where the class is in neither labels nor predictions."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(iou: np.ndarray) -> float:
    """Mean over the classes with a defined IoU; NaN if there is none."""
    valid = iou[~np.isnan(iou)]
    return float(valid.mean()) if valid.size else float("nan")


def pixel_accuracy(matrix: np.ndarray) -> float:
    """Share of counted pixels predicted right (mmseg's aAcc); NaN when nothing was counted."""
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")
