"""The synthetic clips: the cue lives in the panel's pixels of one frame and nowhere else, the
panel is three criss-cross steps from every vehicle of the other frames, and seeds reproduce."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet.experiments import scene_classes as classes
from ccnet.experiments.street_clips import FRAMES, HEIGHT, WIDTH, generate_clip
from ccnet.nn.attention_maps3d import reach

SEEDS = range(12)
VEHICLE, PANEL = [classes.CAR, classes.TRUCK], [classes.SIGN, classes.LIGHT]


def _inside(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


@pytest.mark.parametrize("seed", SEEDS)
def test_the_cue_changes_only_the_panel_of_one_frame(seed):
    car, truck = generate_clip(seed, cue="car"), generate_clip(seed, cue="truck")
    assert (car.panel_frame, car.sign_box, car.vehicle_boxes) == (truck.panel_frame, truck.sign_box,
                                                                  truck.vehicle_boxes)
    changed = (car.frames != truck.frames).any(-1)  # (T, H, W)
    assert changed[car.panel_frame].any()
    assert not np.delete(changed, car.panel_frame, axis=0).any()  # the other frames are identical
    assert not changed[car.panel_frame][~_inside(car.sign_box, (HEIGHT, WIDTH))].any()
    swapped = {(classes.CAR, classes.TRUCK), (classes.SIGN, classes.LIGHT)}
    differ = car.labels != truck.labels
    assert set(zip(car.labels[differ].tolist(), truck.labels[differ].tolist())) <= swapped
    assert np.array_equal(np.isin(car.labels, VEHICLE), np.isin(truck.labels, VEHICLE))
    assert (car.labels == classes.CAR).any() and not (car.labels == classes.TRUCK).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_panel_is_visible_in_exactly_one_frame(seed):
    clip = generate_clip(seed)
    panel = np.isin(clip.labels, PANEL)
    assert [t for t in range(FRAMES) if panel[t].any()] == [clip.panel_frame]
    inside = _inside(clip.sign_box, (HEIGHT, WIDTH))
    for t in range(FRAMES):
        hsv = Image.fromarray(clip.frames[t]).convert("HSV").split()
        hue, sat, val = (np.asarray(channel) / 255 for channel in hsv)
        cue_like = (sat > 0.65) & (val > 0.3) & (((hue > 0.55) & (hue < 0.7)) | (hue < 0.1) | (hue > 0.95))
        if t == clip.panel_frame:
            assert cue_like[inside].sum() > 0.2 * panel[t].sum()
        else:  # hidden by foliage: no cue colour where the panel is, the box labelled vegetation
            assert not cue_like[inside].any() and (clip.labels[t][inside] == classes.VEGETATION).all()


def _cells(mask: np.ndarray) -> tuple[set[int], set[int]]:
    """Rows and columns of the stride-8 feature cells a pixel mask touches."""
    ys, xs = np.nonzero(mask)
    return set((ys * (HEIGHT // 8) // HEIGHT).tolist()), set((xs * (WIDTH // 8) // WIDTH).tolist())


@pytest.mark.parametrize("seed", SEEDS)
def test_from_a_vehicle_of_another_frame_the_panel_is_three_steps_away(seed):
    clip = generate_clip(seed)
    panel_rows, panel_cols = _cells(np.isin(clip.labels[clip.panel_frame], PANEL))
    grid = (FRAMES, HEIGHT // 8, WIDTH // 8)
    for t in range(FRAMES):
        vehicle = np.isin(clip.labels[t], VEHICLE)
        assert vehicle.any()
        rows, cols = _cells(vehicle)
        assert not rows & panel_rows and not cols & panel_cols  # no shared row, no shared column
        for box in clip.vehicle_boxes[t]:
            x0, y0, x1, y1 = clip.sign_box
            assert max(box[1] - y1, y0 - box[3]) >= 16 and max(box[0] - x1, x0 - box[2]) >= WIDTH / 4
        if t != clip.panel_frame:
            start = (t, min(rows), min(cols))
            two, three = reach(*grid, 3, start)[1:]
            panel = np.zeros(grid, bool)
            panel[clip.panel_frame][np.ix_(sorted(panel_rows), sorted(panel_cols))] = True
            assert not (two.numpy() & panel).any() and three.numpy()[panel].all()


def test_seeds_reproduce_and_splits_never_coincide():
    first, again = generate_clip(3), generate_clip(3, split="train")
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.labels, again.labels)
    assert first.panel_frame == again.panel_frame and first.frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    assert not np.array_equal(generate_clip(3, split="eval").frames, again.frames)
    moved = [generate_clip(s).vehicle_boxes for s in SEEDS]
    assert sum(boxes[0] != boxes[-1] for boxes in moved) >= len(moved) - 1  # the vehicles move
    with pytest.raises(ValueError, match="unknown split"):
        generate_clip(0, split="test")


def test_aligned_clips_hang_the_panel_over_a_vehicle_two_steps_from_the_other_frames():
    """The training curriculum's layout: the panel in a vehicle's columns, rows still apart."""
    for seed in range(10):
        clip = generate_clip(seed, aligned=True)
        panel_rows, panel_cols = _cells(np.isin(clip.labels[clip.panel_frame], PANEL))
        shared = 0
        for t in range(FRAMES):
            rows, cols = _cells(np.isin(clip.labels[t], VEHICLE))
            assert not rows & panel_rows
            shared += bool(cols & panel_cols)
        assert shared >= FRAMES - 1, f"seed {seed}: the panel is over a vehicle in {shared} frames"
    assert np.array_equal(generate_clip(3).frames, generate_clip(3, aligned=False).frames)
