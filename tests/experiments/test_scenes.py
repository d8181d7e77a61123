"""Synthetic street scenes: determinism, shapes, the cue-flip property and the long-range layout."""
from __future__ import annotations

import numpy as np
import pytest

from ccnet.experiments import scene_classes as classes
from ccnet.experiments.scenes import Scene, generate_scene, scene_batch
from ccnet.nn.model import EMBEDDED_CONFIG
from ccnet.weights.datasets import dataset_info

SMALL = (128, 256)


def _hsv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = img.astype(np.float32) / 255
    mx, chroma = f.max(2), np.maximum(np.ptp(f, axis=2), 1e-6)
    r, g, b = np.moveaxis(f, 2, 0)
    hue = np.where(mx == r, ((g - b) / chroma) % 6,
                   np.where(mx == g, (b - r) / chroma + 2, (r - g) / chroma + 4)) / 6
    return hue, np.ptp(f, axis=2) / np.maximum(mx, 1e-6), mx


def _box_mask(shape: tuple[int, int], box) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_constants_are_consistent():
    assert len(classes.CLASS_NAMES) == len(classes.PALETTE) == len(classes.CITYSCAPES_TRAIN_ID_OF_CLASS) == 11
    assert EMBEDDED_CONFIG.num_classes == len(classes.CLASS_NAMES) == len(classes.TEXTURE_BY_CLASS)
    assert [classes.CLASS_NAMES[c] for c in classes.CONTEXT_CLASSES] == ["car", "truck"]
    cityscapes = dataset_info()["cityscapes"]
    assert tuple(cityscapes["classes"][i] for i in classes.CITYSCAPES_TRAIN_ID_OF_CLASS) == classes.CLASS_NAMES
    assert tuple(tuple(cityscapes["palette"][i]) for i in classes.CITYSCAPES_TRAIN_ID_OF_CLASS) == classes.PALETTE
    assert classes.PALETTE[classes.CAR] == (0, 0, 142) and classes.CITYSCAPES_TRAIN_ID_OF_CLASS[classes.TRUCK] == 14


def test_same_arguments_give_identical_scenes():
    a, b = generate_scene(7, *SMALL), generate_scene(7, *SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert (a.cue, a.sign_box, a.vehicle_boxes) == (b.cue, b.sign_box, b.vehicle_boxes)
    assert not np.array_equal(a.image, generate_scene(8, *SMALL).image)


def test_splits_do_not_share_scenes():
    train = generate_scene(3, *SMALL, split="train")
    assert not np.array_equal(train.image, generate_scene(3, *SMALL, split="eval").image)
    assert not np.array_equal(train.image, generate_scene(3, *SMALL, split="demo").image)


@pytest.mark.parametrize("size", [(97, 129), (64, 128), (300, 1000), (256, 512), (200, 120)])
def test_shapes_dtypes_and_classes(size):
    scene = generate_scene(11, *size)
    assert isinstance(scene, Scene)
    assert scene.image.shape == (*size, 3) and scene.image.dtype == np.uint8
    assert scene.label.shape == size and scene.label.dtype == np.uint8
    assert scene.label.max() <= classes.TRUCK
    present = set(np.unique(scene.label).tolist())
    assert {classes.ROAD, classes.SKY} <= present and present & {classes.SIGN, classes.LIGHT}
    assert present & set(classes.CONTEXT_CLASSES)


@pytest.mark.parametrize("seed", range(6))
def test_every_scene_has_the_key_classes(seed):
    present = set(np.unique(generate_scene(seed, *SMALL).label).tolist())
    assert {classes.ROAD, classes.SKY} <= present and present & {classes.SIGN, classes.LIGHT}
    assert present & set(classes.CONTEXT_CLASSES)


@pytest.mark.parametrize("seed,size",
                         [(s, SMALL) for s in range(8)] + [(1, (256, 512)), (2, (97, 129))])
def test_cue_flip_changes_only_the_panel_and_vehicle_labels(seed, size):
    car, truck = generate_scene(seed, *size, cue="car"), generate_scene(seed, *size, cue="truck")
    assert (car.sign_box, car.vehicle_boxes) == (truck.sign_box, truck.vehicle_boxes)
    changed = np.any(car.image != truck.image, axis=2)
    assert changed.any() and not (changed & ~_box_mask(size, car.sign_box)).any()
    relabelled = car.label != truck.label
    assert np.array_equal(relabelled, (car.label == classes.CAR) | (car.label == classes.SIGN))
    assert (truck.label[car.label == classes.CAR] == classes.TRUCK).all() and not (car.label == classes.TRUCK).any()
    assert (truck.label[car.label == classes.SIGN] == classes.LIGHT).all() and not (car.label == classes.LIGHT).any()


def test_panel_colour_encodes_the_cue():
    """Blue-ish panel for car, red/orange-ish for truck; nothing else has those colours."""
    for seed in range(10):
        for cue in ("car", "truck"):
            scene = generate_scene(seed, *SMALL, cue=cue)
            hue, sat, val = _hsv(scene.image)
            blue = (hue > 0.55) & (hue < 0.7)
            red = (hue < 0.1) | (hue > 0.95)
            inside = _box_mask(SMALL, scene.sign_box)
            panel = inside & (sat > 0.65) & (val > 0.3)
            sign_pixels = np.isin(scene.label, [classes.SIGN, classes.LIGHT]).sum()
            assert (panel & (blue if cue == "car" else red)).sum() > 0.2 * sign_pixels
            assert not (panel & (red if cue == "car" else blue)).any()
            cue_coloured = (sat > 0.65) & (val > 0.3) & (blue | red)
            assert cue_coloured[~inside].mean() < 0.005


def test_layout_is_long_range():
    """Panel and vehicles share no row or column (with margin) and lie >= W/4 apart."""
    h, w = 256, 512
    for seed in range(50):
        scene = generate_scene(seed, h, w)
        x0, y0, x1, y1 = scene.sign_box
        assert x1 - x0 == y1 - y0 == 64 and y1 <= 0.45 * h
        panel = np.isin(scene.label, [classes.SIGN, classes.LIGHT])
        assert panel[y0:y1, x0:x1].any()
        assert not panel[~_box_mask((h, w), scene.sign_box)].any()
        assert 1 <= len(scene.vehicle_boxes) <= 4
        for vx0, vy0, vx1, vy1 in scene.vehicle_boxes:
            assert 0 <= vx0 < vx1 <= w and 0 <= vy0 < vy1 <= h
            assert max(vy0 - y1, y0 - vy1) >= 16
            assert max(vx0 - x1, x0 - vx1) >= w / 4


def test_aligned_scenes_put_the_cue_one_step_away_and_change_nothing_else_for_eval():
    """The training curriculum's layout: the panel in a vehicle's columns, rows still apart."""
    h, w = 128, 256
    for seed in range(30):
        scene = generate_scene(seed, h, w, aligned=True)
        x0, y0, x1, y1 = scene.sign_box
        shared = [v for v in scene.vehicle_boxes if min(x1, v[2]) > max(x0, v[0])]
        assert shared, f"seed {seed}: no vehicle under the panel"
        assert all(max(v[1] - y1, y0 - v[3]) >= 8 for v in scene.vehicle_boxes)
        assert np.isin(scene.label[y0:y1, x0:x1], [classes.SIGN, classes.LIGHT]).any()
    plain = generate_scene(3, h, w)
    assert np.array_equal(plain.image, generate_scene(3, h, w, aligned=False).image)


@pytest.mark.parametrize("size", [(64, 128), (97, 129), (300, 1000), (512, 256)])
def test_layout_margins_scale_with_size(size):
    h, w = size
    margin = max(8, round(h / 16))
    for seed in range(10):
        scene = generate_scene(seed, h, w)
        x0, y0, x1, y1 = scene.sign_box
        assert x1 - x0 >= 16 and y1 - y0 >= 16  # at least 2x2 cells of the stride-8 grid
        for vx0, vy0, vx1, vy1 in scene.vehicle_boxes:
            assert max(vy0 - y1, y0 - vy1) >= margin
            assert max(vx0 - x1, x0 - vx1) >= max(w / 4, margin)


def test_vehicle_class_follows_the_cue():
    cues = []
    for seed in range(30):
        scene = generate_scene(seed, 64, 128)
        cues.append(scene.cue)
        vehicles = scene.label[np.isin(scene.label, classes.CONTEXT_CLASSES)]
        assert vehicles.size and (vehicles == (classes.CAR if scene.cue == "car" else classes.TRUCK)).all()
    assert 8 <= cues.count("car") <= 22


def test_vehicle_colours_do_not_reveal_the_class():
    """Mean vehicle colour per scene: car and truck groups agree within their spread."""
    means: dict[str, list[np.ndarray]] = {"car": [], "truck": []}
    seed = 0
    while min(len(m) for m in means.values()) < 40:
        scene = generate_scene(seed, 64, 128)
        seed += 1
        if len(means[scene.cue]) < 40:
            means[scene.cue].append(scene.image[np.isin(scene.label, classes.CONTEXT_CLASSES)].mean(0))
    car, truck = np.array(means["car"]), np.array(means["truck"])
    spread = np.concatenate([car, truck]).std(0)
    assert (np.abs(car.mean(0) - truck.mean(0)) < 0.5 * spread).all()


def test_scene_batch_matches_generate_scene():
    images, labels = scene_batch([4, 5], 64, 128, "eval")
    assert images.shape == (2, 64, 128, 3) and images.dtype == np.uint8
    assert labels.shape == (2, 64, 128) and labels.dtype == np.int64
    single = generate_scene(5, 64, 128, split="eval")
    assert np.array_equal(images[1], single.image) and np.array_equal(labels[1], single.label)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        generate_scene(0, split="test")
    with pytest.raises(ValueError):
        generate_scene(0, cue="bus")


def test_colorize_label_uses_the_palette():
    label = np.array([[0, classes.CAR], [classes.TRUCK, 255]], np.uint8)
    rgb = classes.colorize_label(label)
    assert rgb.dtype == np.uint8 and tuple(rgb[0, 1]) == classes.PALETTE[classes.CAR]
    assert tuple(rgb[1, 1]) == (0, 0, 0)
