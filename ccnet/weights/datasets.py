"""Class names and palettes of the datasets the released models were trained on, as
mmsegmentation defines them (datasets.json), and the names for a checkpoint's classes."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DATASET_BY_CLASSES = {19: "cityscapes", 150: "ade20k", 21: "voc"}
IGNORE_INDEX = 255  # label value that no loss or metric counts (mmsegmentation's ignore_index)
# Cityscapes labelIds -> trainIds (cityscapesScripts' table); every other id is ignored.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
Palette = tuple[tuple[int, int, int], ...]


@lru_cache(maxsize=1)
def dataset_info() -> dict:
    """Class names and palettes of Cityscapes, ADE20K and VOC."""
    return json.loads(Path(__file__).with_name("datasets.json").read_text())


def class_info(num_classes: int, meta: dict) -> tuple[tuple[str, ...], Palette]:
    """Names and colours from the checkpoint's meta, else from the dataset its class count implies."""
    if meta.get("classes") and meta.get("palette") and len(meta["classes"]) == num_classes:
        return tuple(meta["classes"]), tuple(tuple(int(c) for c in rgb) for rgb in meta["palette"])
    if num_classes in DATASET_BY_CLASSES:
        info = dataset_info()[DATASET_BY_CLASSES[num_classes]]
        return tuple(info["classes"]), tuple(tuple(rgb) for rgb in info["palette"])
    golden = [((i * 97) % 256, (i * 57 + 80) % 256, (i * 181 + 30) % 256) for i in range(num_classes)]
    return tuple(f"class {i}" for i in range(num_classes)), tuple(golden)
