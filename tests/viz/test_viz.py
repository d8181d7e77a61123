"""Pictures of the app: colormaps, clip/log normalisation, upsampling, heat maps, markers, top-k."""
from __future__ import annotations

import numpy as np
import pytest

from ccnet.inference.geometry import cell_centre, cell_of
from ccnet.viz import pictures as viz


def test_colormaps_are_256_entry_tables_through_their_anchor_colours():
    for name in viz.COLORMAPS:
        table = viz.colormap(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8
    assert tuple(viz.colormap("viridis")[0]) == (68, 1, 84) and tuple(viz.colormap("viridis")[-1]) == (253, 231, 37)
    gray = viz.colormap("gray")
    assert (gray[:, 0] == np.arange(256)).all()
    with pytest.raises(ValueError, match="unknown colormap"):
        viz.colormap("parula")


def test_linear_normalise_saturates_above_the_clip_fraction():
    values = np.array([[0.0, 0.1, 0.2, 0.4]])
    np.testing.assert_allclose(viz.normalise(values), [[0.0, 0.25, 0.5, 1.0]])
    np.testing.assert_allclose(viz.normalise(values, clip=0.5), [[0.0, 0.5, 1.0, 1.0]])
    assert (viz.normalise(np.zeros((2, 2))) == 0).all()
    with pytest.raises(ValueError):
        viz.normalise(values, clip=0.0)


def test_log_normalise_spans_four_decades_below_the_clip_value():
    values = np.array([[1.0, 1e-1, 1e-2, 1e-4, 1e-6, 0.0]])
    np.testing.assert_allclose(viz.normalise(values, scale="log"), [[1.0, 0.75, 0.5, 0.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(viz.normalise(values, clip=0.1, scale="log")[0, :3], [1.0, 1.0, 0.75], atol=1e-6)
    with pytest.raises(ValueError, match="unknown scale"):
        viz.normalise(values, scale="sqrt")


def test_nearest_upsampling_uses_the_click_to_cell_rule():
    grid, size = (5, 7), (37, 50)
    cells = np.arange(35, dtype=np.float32).reshape(grid)
    big = viz.upsample(cells, size, "nearest")
    for y in range(size[0]):
        for x in range(size[1]):
            row, col = cell_of(x, y, size, grid)
            assert big[y, x] == cells[row, col]


def test_bilinear_upsampling_stays_within_the_values_and_keeps_constants():
    rng = np.random.default_rng(0)
    cells = rng.random((4, 6)).astype(np.float32)
    big = viz.upsample(cells, (32, 48), "bilinear")
    assert big.shape == (32, 48) and cells.min() - 1e-6 <= big.min() and big.max() <= cells.max() + 1e-6
    np.testing.assert_allclose(viz.upsample(np.full((3, 3), 0.3), (20, 30), "bilinear"), 0.3, rtol=1e-6)
    with pytest.raises(ValueError):
        viz.upsample(cells, (8, 8), "cubic")


def test_heatmap_colours_are_the_attention_values_through_the_colormap():
    rng = np.random.default_rng(1)
    weights = rng.random((4, 8)).astype(np.float32)
    image = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    picture = viz.heatmap(weights, image, cmap="gray", alpha=1.0)
    expected = np.rint(weights / weights.max() * 255)
    for row in range(4):
        for col in range(8):
            x, y = cell_centre(row, col, (4, 8), (32, 64))
            assert abs(int(picture[y, x, 0]) - expected[row, col]) <= 1
    assert picture.shape == image.shape and picture.dtype == np.uint8


def test_heatmap_grid_lines_fall_on_cell_borders():
    image = np.zeros((16, 24, 3), np.uint8)
    picture = viz.heatmap(np.zeros((2, 3)), image, cmap="gray", alpha=1.0, grid_lines=True)
    assert picture[8].max() > 0 and picture[:, 8].max() > 0 and picture[:, 16].max() > 0
    assert picture[4, 4].max() == 0


def test_cell_centre_lies_in_its_cell_for_uneven_grids():
    for grid, size in [((3, 5), (20, 33)), ((32, 64), (256, 512)), ((13, 17), (97, 129))]:
        for row in range(grid[0]):
            for col in range(grid[1]):
                x, y = cell_centre(row, col, grid, size)
                assert cell_of(x, y, size, grid) == (row, col)


def test_topk_returns_the_largest_weights_in_order():
    weights = np.array([[0.1, 0.5, 0.2], [0.5, 0.0, 0.9]])
    assert viz.topk(weights, 3) == [(1, 2, 0.9), (0, 1, 0.5), (1, 0, 0.5)]
    assert len(viz.topk(weights, 99)) == 6 and viz.topk(weights, 0) == []


def test_markers_draw_near_their_targets_only():
    image = np.zeros((64, 64, 3), np.uint8)
    marked = viz.mark_pixel(image, 32, 32)
    changed = np.argwhere(marked.any(axis=2))
    assert len(changed) and np.abs(changed - 32).max() <= 20
    boxed = viz.mark_cells(image, [(0, 0)], (8, 8))
    assert boxed[0, 0].any() and not boxed[40:, :].any()


def test_legend_lists_every_class_with_shares_most_frequent_first():
    mask = np.array([[0, 1, 1, 1]], np.uint8)
    rows = viz.legend(mask, ("road", "car", "sky"), ((1, 2, 3), (4, 5, 6), (7, 8, 9)))
    assert [r["name"] for r in rows] == ["car", "road", "sky"]
    assert [r["share"] for r in rows] == [0.75, 0.25, 0.0] and rows[0]["color"] == "#040506"


def test_overlay_blends_image_and_palette():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.zeros((2, 2), np.uint8)
    assert (viz.overlay(image, mask, ((200, 0, 100),), 0.5) == [150, 50, 100]).all()
    assert (viz.overlay(image, mask, ((200, 0, 100),), 0.0) == image).all()


@pytest.mark.parametrize("cell", [(3, 26), (0, 0), (15, 31)])
def test_a_top_k_number_stays_inside_its_own_cell(cell):
    """Bug (b): the numbers were drawn right of their boxes, over the neighbouring cell."""
    from ccnet.inference.geometry import cell_bounds

    grid, size = (16, 32), (256, 512)
    marked = viz.mark_cells(np.zeros((*size, 3), np.uint8), [cell], grid)
    ys, xs = cell_bounds(grid[0], size[0]), cell_bounds(grid[1], size[1])
    row, col = cell
    inside = np.zeros(size, bool)
    inside[ys[row]:ys[row + 1], xs[col]:xs[col + 1]] = True
    drawn = marked.any(axis=2)
    assert drawn[inside].sum() > 2 * (ys[row + 1] - ys[row])  # the outline and the number
    assert not drawn[~inside].any()
