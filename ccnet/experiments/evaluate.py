"""`python -m ccnet evaluate`: mIoU on a dataset folder (Cityscapes, ADE20K, VOC) or on synthetic scenes.

Dataset mode follows mmsegmentation's evaluation: the preset's test protocol, labels in the
dataset's standard layout mapped to train ids (255 ignored), one confusion matrix over the set.
Test-time augmentation (``--multiscale``, ``--flip``) is mmseg's MultiScaleFlipAug + aug_test:
ratios 0.5 .. 1.75 of the protocol's test-resize scale (of the image's own size when the
protocol has none), each optionally with its horizontal mirror; every pass gives logits at the
image's size, their SOFTMAX probabilities are averaged (mmseg 0.x ``aug_test`` and 1.x
``SegTTAModel.merge_preds`` both average probabilities, not raw logits), then argmax.

Synthetic mode scores held-out scenes of ccnet.experiments.scenes (split "eval"): scene i of ``--seed S``
uses seed ``S * 100000 + i``, so different S never share a scene for counts up to 100000.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet.errors import CCNetError
from ccnet.experiments.distributed import SINGLE, Group, RankError
from ccnet.experiments.metrics import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)
from ccnet.inference.images import decode_image
from ccnet.inference.predictor import Predictor
from ccnet.weights.datasets import (
    CITYSCAPES_LABEL_TO_TRAIN_ID,
    IGNORE_INDEX,
    dataset_info,
)
from ccnet.weights.load import LoadedModel

DATASETS = ("cityscapes", "ade20k", "voc")
MS_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
SEED_STRIDE = 100_000
StepFn = Callable[[int, int | None], None]  # (images done, total or None)

CITYSCAPES_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
CITYSCAPES_LUT[list(CITYSCAPES_LABEL_TO_TRAIN_ID)] = list(CITYSCAPES_LABEL_TO_TRAIN_ID.values())

LAYOUTS = {
    "cityscapes": "leftImg8bit/val/<city>/*_leftImg8bit.png with gtFine/val/<city>/*_gtFine_labelIds.png",
    "ade20k": "images/validation/*.jpg with annotations/validation/*.png",
    "voc": "ImageSets/Segmentation/val.txt, JPEGImages/<id>.jpg, SegmentationClass/<id>.png",
}


# ---- dataset folders -------------------------------------------------------------------------

def dataset_files(root: str | Path, dataset: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of the validation split in the dataset's standard layout, sorted."""
    root = Path(root)
    if dataset == "cityscapes":
        pairs = []
        for image in sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
            stem = image.name.removesuffix("_leftImg8bit.png")
            folder = root / "gtFine" / "val" / image.parent.name
            label, train_ids = folder / f"{stem}_gtFine_labelIds.png", folder / f"{stem}_gtFine_labelTrainIds.png"
            # mmseg's converted copies may carry only *_labelTrainIds.png: accept those as they are.
            pairs.append((image, train_ids if train_ids.exists() and not label.exists() else label))
    elif dataset == "ade20k":
        pairs = [
            (image, root / "annotations" / "validation" / f"{image.stem}.png")
            for image in sorted((root / "images" / "validation").glob("*.jpg"))
        ]
    elif dataset == "voc":
        listing = root / "ImageSets" / "Segmentation" / "val.txt"
        if not listing.is_file():
            raise CCNetError(f"no {listing}: expected the VOC2012 layout ({LAYOUTS['voc']})")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        pairs = [(root / "JPEGImages" / f"{n}.jpg", root / "SegmentationClass" / f"{n}.png") for n in names]
    else:
        raise CCNetError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    if not pairs:
        raise CCNetError(f"no {dataset} validation images under {root}: expected {LAYOUTS[dataset]}")
    for image, label in pairs:
        for path in (image, label):
            if not path.is_file():
                raise CCNetError(f"{dataset}: missing {path}")
    return pairs


def read_label(path: Path, dataset: str) -> np.ndarray:
    """Train-id label (uint8, 255 = ignore) from a dataset's annotation PNG."""
    with Image.open(path) as img:
        label = np.asarray(img)
    if label.ndim != 2:
        raise CCNetError(f"{path.name} is not a single-channel label image (mode {img.mode})")
    label = label.astype(np.uint8)
    if dataset == "cityscapes" and path.name.endswith("_labelIds.png"):
        return CITYSCAPES_LUT[label]
    if dataset == "ade20k":  # mmseg's reduce_zero_label: 0 ("other") is ignored, classes shift down
        return np.where((label == 0) | (label == IGNORE_INDEX), IGNORE_INDEX, label - 1).astype(np.uint8)
    return label


def dataset_samples(pairs: Sequence[tuple[Path, Path]], dataset: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Images (RGB uint8) and labels, read one at a time."""
    for image_path, label_path in pairs:
        image, label = decode_image(image_path), read_label(label_path, dataset)
        if image.shape[:2] != label.shape:
            raise CCNetError(f"{image_path.name} is {image.shape[:2]} but its label {label_path.name} {label.shape}")
        yield image, label


# ---- predictions and scores ------------------------------------------------------------------

def class_scores(predictor: Predictor, image: np.ndarray, multiscale: bool = False, flip: bool = False) -> torch.Tensor:
    """(K, H, W) scores whose argmax is the prediction: the logits, or with test-time
    augmentation the summed softmax probabilities of every scale and mirror (as mmseg)."""
    if not multiscale and not flip:
        return predictor.predict(image, with_attention=False).logits
    height, width = image.shape[:2]
    base = predictor.protocol.test_resize or (max(height, width), min(height, width))
    probs = None
    for ratio in MS_RATIOS if multiscale else (1.0,):
        scaled = copy.copy(predictor)
        scaled.protocol = replace(predictor.protocol, test_resize=(int(base[0] * ratio), int(base[1] * ratio)))
        for mirrored in (False, True) if flip else (False,):
            view = np.ascontiguousarray(image[:, ::-1]) if mirrored else image
            logits = scaled.predict(view, with_attention=False).logits
            p = torch.softmax(logits.float(), dim=0)
            p = p.flip(-1) if mirrored else p
            probs = p if probs is None else probs + p
    return probs


def tally(
    predictor: Predictor,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    multiscale: bool = False,
    flip: bool = False,
    ignore_index: int = IGNORE_INDEX,
    total: int | None = None,
    progress: StepFn | None = None,
) -> tuple[np.ndarray, int]:
    """The (K, K) int64 confusion matrix of the samples' predictions, and how many samples there were."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    count = 0
    for image, label in samples:
        scores = class_scores(predictor, image, multiscale, flip)
        if scores.shape[0] != num_classes:
            raise CCNetError(f"the model predicts {scores.shape[0]} classes, but the data has {num_classes}")
        matrix += confusion_matrix(scores.argmax(0).numpy(), label, num_classes, ignore_index)
        count += 1
        if progress is not None:
            progress(count, total)
    return matrix, count


def reduce_tally(group: Group, matrix: np.ndarray, count: int, expected: int | None) -> tuple[np.ndarray, list[int]]:
    """The ranks' matrices summed (int64: exact in any order) and every rank's image count, in one
    all-reduce; the counts must add up to the set's size (no image padded, dropped or repeated)."""
    if not group.distributed:
        return matrix, [count]
    counts = np.zeros(group.world_size, dtype=np.int64)
    counts[group.rank] = count
    flat = torch.from_numpy(np.concatenate([matrix.ravel(), counts]))
    summed = group.all_reduce_sum(flat).numpy()
    shards = [int(c) for c in summed[matrix.size:]]
    if expected is not None and sum(shards) != expected:
        raise RankError(f"the ranks scored {sum(shards)} images ({shards}), but the set has {expected}")
    return summed[:matrix.size].reshape(matrix.shape), shards


def evaluate_samples(
    predictor: Predictor,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    *,
    multiscale: bool = False,
    flip: bool = False,
    ignore_index: int = IGNORE_INDEX,
    total: int | None = None,
    progress: StepFn | None = None,
    group: Group = SINGLE,
    with_matrix: bool = False,
) -> dict:
    """Score (image, label) pairs: ``miou`` (0-1), ``per_class`` {name: IoU or None}, ``accuracy``,
    ``images`` and ``seconds``. Shared by the dataset and synthetic modes (and training).

    In a distributed ``group`` the samples are this rank's shard and ``total`` the whole set's size:
    the confusion matrices are summed over ranks, and ``world_size`` and ``shards`` (images per rank)
    are added. ``with_matrix`` adds the matrix itself (rows: ground truth, columns: prediction)."""
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(num_classes)]
    start = time.perf_counter()
    shard_total = len(group.shard(range(total))) if total is not None else None
    matrix, count = group.checked(tally, predictor, samples, num_classes, multiscale=multiscale, flip=flip,
                                  ignore_index=ignore_index, total=shard_total, progress=progress)
    matrix, shards = reduce_tally(group, matrix, count, total)
    iou = iou_per_class(matrix)
    result = {
        "miou": _number(mean_iou(iou)),
        "per_class": {name: _number(value) for name, value in zip(names, iou)},
        "accuracy": _number(pixel_accuracy(matrix)),
        "images": sum(shards),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if group.distributed:
        result.update(world_size=group.world_size, shards=shards)
    if with_matrix:
        result["confusion_matrix"] = matrix.tolist()
    return result


def evaluate_dataset(
    predictor: Predictor,
    root: str | Path,
    dataset: str,
    *,
    multiscale: bool = False,
    flip: bool = False,
    limit: int | None = None,
    progress: StepFn | None = None,
    group: Group = SINGLE,
    with_matrix: bool = False,
) -> dict:
    """mIoU on a dataset's validation folder; the model must predict the dataset's classes.
    In a distributed ``group`` each rank scores images rank, rank + N, ... of the sorted list."""
    pairs = group.checked(dataset_files, root, dataset)[:limit]
    names = dataset_info()[dataset]["classes"]
    result = evaluate_samples(
        predictor, dataset_samples(group.shard(pairs), dataset), len(names), names,
        multiscale=multiscale, flip=flip, total=len(pairs), progress=progress, group=group, with_matrix=with_matrix,
    )
    return {"dataset": dataset, "multiscale": multiscale, "flip": flip, **result}


def synthetic_seeds(seed: int, count: int) -> list[int]:
    """The scene seeds of an evaluation: ``seed * 100000 + i`` for i < count."""
    if not 0 < count <= SEED_STRIDE:
        raise CCNetError(f"the number of synthetic scenes must be 1..{SEED_STRIDE}, got {count}")
    return [seed * SEED_STRIDE + i for i in range(count)]


def synthetic_report(
    predictor: Predictor, count: int, seed: int, height: int = 256, width: int = 512,
    progress: StepFn | None = None, *, multiscale: bool = False, flip: bool = False, aligned: bool = False,
    group: Group = SINGLE, with_matrix: bool = False,
) -> dict:
    """Scores on held-out synthetic scenes, with ``context_miou`` over scenes.CONTEXT_CLASSES.

    ``aligned`` renders the same scenes in the training curriculum's layout (the panel in a
    vehicle's columns, one criss-cross step away) to tell "cannot reach the cue" from "never
    learned to read it". In a distributed ``group`` each rank scores scenes rank, rank + N, ...
    """
    from ccnet.experiments import (
        scenes,  # imported late: only this mode needs the generator
    )

    seeds = group.shard(group.checked(synthetic_seeds, seed, count))
    samples = (
        (scene.image, scene.label)
        for scene in (scenes.generate_scene(s, height, width, split="eval", aligned=aligned) for s in seeds)
    )
    result = evaluate_samples(
        predictor, samples, len(scenes.CLASS_NAMES), scenes.CLASS_NAMES, multiscale=multiscale, flip=flip,
        ignore_index=IGNORE_INDEX, total=count, progress=progress, group=group, with_matrix=with_matrix,
    )
    context = [c if isinstance(c, str) else scenes.CLASS_NAMES[c] for c in scenes.CONTEXT_CLASSES]
    values = [result["per_class"][name] for name in context if result["per_class"][name] is not None]
    return {
        "dataset": "synthetic", "seed": seed, "height": height, "width": width, "aligned": aligned, **result,
        "context_miou": _number(float(np.mean(values))) if values else None,
        "context_classes": context,
    }


def evaluate_synthetic(
    loaded_model: LoadedModel, count: int, seed: int, height: int = 256, width: int = 512,
    device: str = "auto", progress: StepFn | None = None, aligned: bool = False,
) -> dict:
    """``synthetic_report`` for a loaded model; the network's train/eval mode is restored after,
    so training code can call it between steps (it runs on ``device``: pass the training one)."""
    was_training = loaded_model.net.training
    try:
        predictor = Predictor(loaded_model.net, loaded_model.protocol, device=device)
        report = synthetic_report(predictor, count, seed, height, width, progress, aligned=aligned)
        return {"model": loaded_model.name, **report}
    finally:
        loaded_model.net.train(was_training)


def _number(value: float) -> float | None:
    """JSON has no NaN: undefined scores become null."""
    return None if np.isnan(value) else round(float(value), 6)


# ---- command line ----------------------------------------------------------------------------
